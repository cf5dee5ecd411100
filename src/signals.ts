// SIGINT and SIGTERM from the moment the CLI starts. Loading pgferry takes a noticeable time, and
// a stop signal arriving meanwhile would end the process by node's default (killed by the signal,
// no exit code) before a daemon could say it stopped. bin/pgferry.js holds them from its first
// line; a command that stops on a signal takes them over (and gets one held meanwhile); any other
// command gives them back to the defaults, a held one delivered then.
import { signalPoint } from '../lib/crash-point.js';

const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

let held: NodeJS.Signals | null = null;
const hold = (signal: NodeJS.Signals) => {
  held ??= signal;
};

export function holdStopSignals(): void {
  for (const s of STOP_SIGNALS) process.on(s, hold);
  signalPoint('cli:loading');
}

/**
 * Installs the command's handler for SIGINT and SIGTERM; a signal held since the start is handed
 * to it at once (synchronously: the caller can check its abort signal right after). Returns the
 * function that removes the handler.
 */
export function onStopSignal(handler: (signal: NodeJS.Signals) => void): () => void {
  for (const s of STOP_SIGNALS) {
    process.off(s, hold);
    process.on(s, handler);
  }
  const early = held;
  held = null;
  if (early) handler(early);
  return () => {
    for (const s of STOP_SIGNALS) process.off(s, handler);
  };
}

/** The commands that stop cleanly on SIGINT/SIGTERM (each through onStopSignal). */
const STOPPED_BY_SIGNALS = new Set(['migrate', 'reverse', 'cutover', 'rollback', 'dump-restore', 'demo']);

/**
 * Before `command` runs (or once the CLI is done, without one): unless it stops on signals, the
 * defaults again, a held signal delivered now.
 */
export function releaseStopSignals(command?: string): void {
  if (command !== undefined && STOPPED_BY_SIGNALS.has(command)) return;
  for (const s of STOP_SIGNALS) process.off(s, hold);
  const early = held;
  held = null;
  if (early) process.kill(process.pid, early);
}
