// pgbench as the replay benchmark's application: `pgbench -i` builds its four tables, `pgbench -n`
// runs its TPC-B-like transaction (three UPDATEs, one SELECT, one INSERT into pgbench_history).
// The password reaches pgbench through PGPASSWORD in its environment, never on its command line.
import { spawn } from 'node:child_process';
import { PG_BIN } from './pipe.js';

export const PGBENCH = `${PG_BIN}/pgbench`;

export interface PgbenchTarget {
  port: number;
  user: string;
  db: string;
  password: string;
}

export interface PgbenchRun {
  /** The command line as run (no password on it). */
  commandLine: string;
  clients: number;
  threads: number;
  seconds: number;
  /** pgbench's own figure, "without initial connection time". */
  tps: number;
  transactions: number;
  latencyMs: number;
}

const connArgs = (t: PgbenchTarget) => ['-h', '127.0.0.1', '-p', String(t.port), '-U', t.user];

async function pgbench(args: string[], t: PgbenchTarget): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(PGBENCH, args, {
      env: { ...process.env, PGPASSWORD: t.password },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`pgbench ${args.join(' ')} exited with ${code}:\n${out.trim().slice(-2000)}`));
    });
  });
}

export const initCommand = (scale: number, t: PgbenchTarget) => [
  '-i',
  '-s',
  String(scale),
  '-q',
  ...connArgs(t),
  t.db,
];

/** `pgbench -i -s N`: pgbench_accounts gets N × 100,000 rows, with primary keys on three tables. */
export async function pgbenchInit(scale: number, t: PgbenchTarget): Promise<string> {
  const args = initCommand(scale, t);
  await pgbench(args, t);
  return `${PGBENCH} ${args.join(' ')}`;
}

/** `pgbench -c C -j J -T S -n`: the built-in TPC-B-like script, no vacuum before the run. */
export async function pgbenchRun(
  t: PgbenchTarget,
  opts: { clients: number; threads: number; seconds: number },
): Promise<PgbenchRun> {
  const args = [
    '-c',
    String(opts.clients),
    '-j',
    String(opts.threads),
    '-T',
    String(opts.seconds),
    '-n',
    ...connArgs(t),
    t.db,
  ];
  const out = await pgbench(args, t);
  const num = (re: RegExp) => {
    const m = re.exec(out);
    if (!m) throw new Error(`pgbench printed no ${re.source}:\n${out.trim().slice(-2000)}`);
    return Number(m[1]);
  };
  return {
    commandLine: `${PGBENCH} ${args.join(' ')}`,
    ...opts,
    tps: num(/^tps = ([\d.]+) \(without initial connection time\)/m),
    transactions: num(/^number of transactions actually processed: (\d+)/m),
    latencyMs: num(/^latency average = ([\d.]+) ms/m),
  };
}
