// Fault injection for the crash and race tests. PGFERRY_TEST_CRASH_AT=<point> kills the process at
// that point with SIGKILL, as `kill -9` would, so a test can stop pgferry exactly between two
// steps. PGFERRY_TEST_DELAY_AT=<point>=<ms> pauses there for a random time up to ms, to widen a race
// window (random, so that concurrent workers fall out of step).
import { sleep } from './sleep.js';

export function crashPoint(point: string): void {
  if (process.env.PGFERRY_TEST_CRASH_AT === point) process.kill(process.pid, 'SIGKILL');
}

/** The pause PGFERRY_TEST_DELAY_AT asks for at this point, in ms (0 almost always). */
function delayAt(point: string): number {
  const spec = process.env.PGFERRY_TEST_DELAY_AT;
  if (!spec?.startsWith(`${point}=`)) return 0;
  return Math.random() * (Number(spec.slice(point.length + 1)) || 0);
}

export async function delayPoint(point: string): Promise<void> {
  const ms = delayAt(point);
  if (ms > 0) await sleep(ms);
}

/** delayPoint for synchronous code (the checkpoint store): blocks the thread, as slow I/O would. */
export function delayPointSync(point: string): void {
  const ms = delayAt(point);
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** PGFERRY_TEST_SIGNAL_AT=<point> sends the process SIGTERM at that point (an operator's early stop). */
export function signalPoint(point: string): void {
  if (process.env.PGFERRY_TEST_SIGNAL_AT === point) process.kill(process.pid, 'SIGTERM');
}
