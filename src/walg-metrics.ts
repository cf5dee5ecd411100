// The Prometheus metrics of `pgferry walg status --http`, read from the copy at each scrape: where
// it replays, how far behind, what it fetched from the archive, and whether it keeps up.
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { StandbyStatus } from '../engine/walg/walg.js';

export class WalgMetrics {
  readonly registry = new Registry();
  private readonly gauges: Record<string, Gauge>;
  last: StandbyStatus | null = null;

  constructor(private readonly read: () => Promise<StandbyStatus>) {
    const registers = [this.registry];
    const g = (name: string, help: string) => new Gauge({ name, help, registers });
    this.gauges = {
      running: g('pgferry_walg_running', '1 while the copy accepts connections'),
      recovery: g('pgferry_walg_in_recovery', '1 while the copy is a standby (0 once promoted)'),
      lag: g(
        'pgferry_walg_replay_lag_seconds',
        'Seconds since the last replayed transaction committed on the primary (-1 before one)',
      ),
      bytes: g('pgferry_walg_lag_bytes', 'Bytes of WAL the copy is behind the primary (-1 without --source)'),
      fetched: g('pgferry_walg_segments_fetched', 'WAL segments wal-fetch brought from the archive'),
      failed: g('pgferry_walg_fetch_failures', 'wal-fetch calls that failed (not counting the archive end)'),
      keepingUp: g(
        'pgferry_walg_keeping_up',
        '1 while the copy reached the end of the archive recently, with no failure since',
      ),
    };
    collectDefaultMetrics({ register: this.registry });
  }

  async status(): Promise<StandbyStatus> {
    this.last = await this.read();
    return this.last;
  }

  async refresh(): Promise<void> {
    const s = await this.status();
    const set = (k: string, v: number) => this.gauges[k]!.set(v);
    set('running', s.running ? 1 : 0);
    set('recovery', s.inRecovery ? 1 : 0);
    set('lag', s.lagSeconds ?? -1);
    set('bytes', s.lagBytes ?? -1);
    set('fetched', s.fetch.fetched);
    set('failed', s.fetch.failed);
    set('keepingUp', s.keepingUp ? 1 : 0);
  }
}
