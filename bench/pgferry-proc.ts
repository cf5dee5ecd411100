// One pgferry process of the replay benchmark (the built CLI as a child, in any mode, including the
// daemon that runs until SIGTERM), with its peak RSS (the kernel's VmHWM) and CPU time (utime +
// stime from /proc/<pid>/stat) polled while it runs, and its JSON log lines parsed from stderr.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import { type LogLine, NODE_FLAGS, PGFERRY_BIN, parseLog } from './pgferry-run.js';

export interface PgferryExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  wallSeconds: number;
  stdout: string;
  stderr: string;
  log: LogLine[];
  peakRssMB: number;
  cpuSeconds: number;
}

export interface PgferryProc {
  readonly child: ChildProcess;
  readonly args: string[];
  readonly done: Promise<PgferryExit>;
  /** The log lines written so far. */
  log(): LogLine[];
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Polls VmHWM and CPU ticks every 50 ms; the last reading before exit is at most 50 ms old. */
function sampleProc(pid: number): { stop: () => { peakKb: number; cpuSeconds: number } } {
  let peakKb = 0;
  let ticks = 0;
  const read = () => {
    try {
      const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) peakKb = Math.max(peakKb, Number(m[1]));
      // Fields after the parenthesised command name: state is the 3rd field, utime the 14th.
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks = Math.max(ticks, Number(f[11]) + Number(f[12]));
    } catch {
      // the process is gone
    }
  };
  read();
  const timer = setInterval(read, 50);
  return {
    stop: () => {
      clearInterval(timer);
      return { peakKb, cpuSeconds: ticks / CLK_TCK };
    },
  };
}

/** Starts `node <NODE_FLAGS> bin/pgferry.js <args>`; the URLs (with passwords) go in its environment, not argv. */
export function startPgferry(args: string[], urls: { source: string; target: string }): PgferryProc {
  const t0 = performance.now();
  const child = spawn(process.execPath, [...NODE_FLAGS, PGFERRY_BIN, ...args], {
    env: {
      ...process.env,
      PGFERRY_SOURCE_URL: urls.source,
      PGFERRY_TARGET_URL: urls.target,
      PGFERRY_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const sampler = sampleProc(child.pid!);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<PgferryExit>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const { peakKb, cpuSeconds } = sampler.stop();
      resolve({
        code,
        signal,
        wallSeconds: (performance.now() - t0) / 1000,
        stdout,
        stderr,
        log: parseLog(stderr),
        peakRssMB: peakKb / 1024,
        cpuSeconds,
      });
    });
  });
  return { child, args, done, log: () => parseLog(stderr) };
}

/** Waits for a clean exit; anything else is an error carrying pgferry's last log lines. */
export async function expectSuccess(proc: PgferryProc): Promise<PgferryExit> {
  const exit = await proc.done;
  if (exit.code !== 0) {
    const tail = exit.stderr.trim().split('\n').slice(-20).join('\n');
    throw new Error(`pgferry ${proc.args.join(' ')} exited with ${exit.code ?? exit.signal}:\n${tail}`);
  }
  return exit;
}

/** The first log line with this message (string: exact; RegExp: tested). */
export function logLine(log: LogLine[], msg: string | RegExp): LogLine {
  const line = log.find((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg)));
  if (!line) throw new Error(`pgferry logged no "${msg}" line; the bench needs it to time the run`);
  return line;
}
