// Fault injection for the crash and race tests. PGFERRY_TEST_CRASH_AT=<point> kills the process at
// that point with SIGKILL, as `kill -9` would, so a test can stop pgferry exactly between two
// steps. PGFERRY_TEST_DELAY_AT=<point>=<ms> pauses there for a random time up to ms, to widen a race
// window (random, so that concurrent workers fall out of step).
import { sleep } from './sleep.js';

export function crashPoint(point: string): void {
  if (process.env.PGFERRY_TEST_CRASH_AT === point) process.kill(process.pid, 'SIGKILL');
}

export async function delayPoint(point: string): Promise<void> {
  const spec = process.env.PGFERRY_TEST_DELAY_AT;
  if (!spec?.startsWith(`${point}=`)) return;
  await sleep(Math.random() * (Number(spec.slice(point.length + 1)) || 0));
}

/** delayPoint for synchronous code (the checkpoint store): blocks the thread, as slow I/O would. */
export function delayPointSync(point: string): void {
  const spec = process.env.PGFERRY_TEST_DELAY_AT;
  if (!spec?.startsWith(`${point}=`)) return;
  const ms = Math.random() * (Number(spec.slice(point.length + 1)) || 0);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
