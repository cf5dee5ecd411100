// Fault injection for the crash tests: PGFERRY_TEST_CRASH_AT=<point> kills the process at that
// point with SIGKILL, as `kill -9` would, so a test can stop pgferry exactly between two steps.
export function crashPoint(point: string): void {
  if (process.env.PGFERRY_TEST_CRASH_AT === point) process.kill(process.pid, 'SIGKILL');
}
