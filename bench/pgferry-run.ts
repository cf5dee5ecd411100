// Runs `pgferry migrate --copy-only` as a user would (the built CLI, a child process) and reads its
// phase times from the JSON log lines on stderr (their ISO `time`, read as ms since the epoch) and its
// peak RSS from GNU time, or from /proc/<pid>/status VmHWM when GNU time is not installed.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckpointStore } from '../checkpoints/store.js';

export const PGFERRY_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/pgferry.js');
/** Node's flags as the container's ENTRYPOINT gives them (Dockerfile): the bench runs pgferry as it is deployed. */
export const NODE_FLAGS = ['--max-semi-space-size=2', '--initial-old-space-size=32'];
/** How the results files write the command pgferry ran as. */
export const PGFERRY_COMMAND = `node ${NODE_FLAGS.join(' ')} bin/pgferry.js`;
const GNU_TIME = '/usr/bin/time';

export interface LogLine {
  /** ms since the epoch (the line carries ISO 8601) */
  time: number;
  msg: string;
  level: string;
  [k: string]: unknown;
}

export interface PgferryTable {
  table: string;
  format: 'binary' | 'text';
  chunks: number;
  rows: number;
  bytes: number;
}

export interface PgferryRun {
  args: string[];
  wallSeconds: number;
  /**
   * Phase times from log timestamps: "<phase> started" to the phase's closing line. startup is from
   * spawning the process to "schema started" (node, config, preflight checks); exit from the closing
   * line to the process's exit.
   */
  phases: { startup: number; schema: number; copy: number; indexes: number; finalize: number; exit: number };
  /**
   * Rows and bytes from the "copy finished" line; streamSeconds from "copy planned in primary-key
   * ranges" to "copy finished" (the line's own `seconds` field is rounded to whole seconds).
   */
  copy: { rows: number; bytes: number; streamSeconds: number };
  tables: PgferryTable[];
  peakRssMB: number;
  /** CPU seconds of the pgferry process (and the pg_dump/psql it ran), from GNU time. */
  cpu: { user: number; system: number } | null;
  rssSource: 'gnu-time' | 'proc-vmhwm';
}

// The closing line of the whole run has been "migrate --copy-only done" and "migrate (copy-only) done".
const DONE = /^migrate\b.*\bdone$/;
const phaseSpans = {
  schema: ['schema started', 'copy started'],
  copy: ['copy started', 'copy finished'],
  indexes: ['indexes started', 'primary keys and indexes built'],
  finalize: ['cutover started', DONE],
} as const;

export function parseLog(stderr: string): LogLine[] {
  const lines: LogLine[] = [];
  for (const text of stderr.split('\n')) {
    if (!text.startsWith('{')) continue;
    try {
      const line = JSON.parse(text) as { time: string; msg: string; level: string; [k: string]: unknown };
      lines.push({ ...line, time: Date.parse(line.time) });
    } catch {
      // not a log line
    }
  }
  return lines;
}

/** Peak RSS by polling VmHWM (the kernel's own high-water mark) until the process exits. */
function pollVmHwm(pid: number): { stop: () => number } {
  let peakKb = 0;
  const read = () => {
    try {
      const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) peakKb = Math.max(peakKb, Number(m[1]));
    } catch {
      // the process is gone
    }
  };
  const timer = setInterval(read, 50);
  return {
    stop: () => {
      clearInterval(timer);
      return peakKb;
    },
  };
}

export async function runPgferry(opts: {
  sourceUrl: string;
  targetUrl: string;
  stateFile: string;
  jobs: number;
  workDir: string;
  /** PGFERRY_LOG_LEVEL (default info; debug adds a "chunk copied" line per chunk, with its worker). */
  logLevel?: string;
  /** Given every parsed log line once the run succeeded (they are not kept in the result). */
  onLog?: (log: LogLine[]) => void;
}): Promise<PgferryRun> {
  const args = ['migrate', '--copy-only', '--jobs', String(opts.jobs), '--state', opts.stateFile];
  const useTime = fs.existsSync(GNU_TIME);
  const timeFile = path.join(opts.workDir, 'gnu-time.txt');
  const [file, argv] = useTime
    ? [GNU_TIME, ['-v', '-o', timeFile, process.execPath, ...NODE_FLAGS, PGFERRY_BIN, ...args]]
    : [process.execPath, [...NODE_FLAGS, PGFERRY_BIN, ...args]];
  const t0 = performance.now();
  const spawnedAt = Date.now();
  // The URLs carry passwords: they go in the environment (a documented way), not on argv.
  const child = spawn(file, argv, {
    env: {
      ...process.env,
      PGFERRY_SOURCE_URL: opts.sourceUrl,
      PGFERRY_TARGET_URL: opts.targetUrl,
      PGFERRY_LOG_LEVEL: opts.logLevel ?? 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const poll = useTime ? null : pollVmHwm(child.pid!);
  let stderr = '';
  child.stdout.resume();
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c));
  });
  const wallSeconds = (performance.now() - t0) / 1000;
  const exitedAt = Date.now();
  const polledKb = poll?.stop() ?? 0;
  if (code !== 0)
    throw new Error(`pgferry exited with ${code}:\n${stderr.trim().split('\n').slice(-20).join('\n')}`);

  const log = parseLog(stderr);
  opts.onLog?.(log);
  const at = (msg: string | RegExp) => {
    const line = log.find((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg)));
    if (!line) throw new Error(`pgferry logged no "${msg}" line; the bench needs it to time the phases`);
    return line;
  };
  const span = ([from, to]: readonly [string, string | RegExp]) => (at(to).time - at(from).time) / 1000;
  const finished = at('copy finished');

  let peakKb = polledKb;
  let cpu: PgferryRun['cpu'] = null;
  if (useTime) {
    const text = fs.readFileSync(timeFile, 'utf8');
    const field = (name: string) => Number(new RegExp(`${name}: ([\\d.]+)`).exec(text)?.[1] ?? Number.NaN);
    peakKb = field('Maximum resident set size \\(kbytes\\)');
    cpu = { user: field('User time \\(seconds\\)'), system: field('System time \\(seconds\\)') };
  }

  const store = CheckpointStore.open(opts.stateFile, { create: false, readonly: true });
  let tables: PgferryTable[];
  try {
    tables = store.tables().map((t) => ({
      table: `${t.schema}.${t.name}`,
      format: t.copyFormat,
      chunks: t.chunksTotal,
      rows: t.rowsCopied,
      bytes: t.bytesCopied,
    }));
  } finally {
    store.close();
  }

  return {
    args,
    wallSeconds,
    phases: {
      startup: (at(phaseSpans.schema[0]).time - spawnedAt) / 1000,
      schema: span(phaseSpans.schema),
      copy: span(phaseSpans.copy),
      indexes: span(phaseSpans.indexes),
      finalize: span(phaseSpans.finalize),
      exit: (exitedAt - at(DONE).time) / 1000,
    },
    copy: {
      rows: Number(finished.rows),
      bytes: Number(finished.bytes),
      streamSeconds: span(['copy planned in primary-key ranges', 'copy finished']),
    },
    tables,
    peakRssMB: peakKb / 1024,
    cpu,
    rssSource: useTime ? 'gnu-time' : 'proc-vmhwm',
  };
}
