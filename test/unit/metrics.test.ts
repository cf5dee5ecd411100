// The Prometheus registry: every error code has a series before its first error (so increase()
// sees that error), the build is labelled, and the replay gauges take the state file's last
// figures at startup without moving back past what this process saw.
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../../lib/error-codes.js';
import { Metrics } from '../../src/metrics.js';
import { VERSION } from '../../src/version.js';

const value = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe('Metrics', () => {
  it('has every error code at 0 before any error, and the build', async () => {
    const m = new Metrics(() => ({ phase: 'copy', downtimeSeconds: null }));
    const text = await m.text();
    for (const code of Object.keys(ERRORS))
      expect(value(text, `pgferry_errors_total{code="${code}"}`), code).toBe(0);
    m.error('PGFERRY_TARGET_QUERY');
    expect(value(await m.text(), 'pgferry_errors_total{code="PGFERRY_TARGET_QUERY"}')).toBe(1);
    expect(VERSION).toMatch(/^\d+\.\d+\.\d+/);
    expect(value(text, `pgferry_build_info{version="${VERSION}",node="${process.versions.node}"}`)).toBe(1);
    expect(value(text, 'process_start_time_seconds')).toBeGreaterThan(0);
  });

  it('shows the estimates, the snapshot age and the capture log', async () => {
    const m = new Metrics(() => ({ phase: 'copy', downtimeSeconds: null, snapshotAgeSeconds: 42.5 }));
    m.seedCopy([
      {
        schema: 'public',
        name: 'orders',
        rowsEstimate: 1000,
        bytesEstimate: 65536,
        rowsCopied: 10,
        bytesCopied: 300,
        chunksDone: 1,
        chunksTotal: 4,
      } as Parameters<Metrics['seedCopy']>[0][number],
    ]);
    m.captureLog({ bytes: 8192, rows: 17 });
    const text = await m.text();
    expect(value(text, 'pgferry_copy_estimated_rows{table="public.orders"}')).toBe(1000);
    expect(value(text, 'pgferry_copy_estimated_bytes{table="public.orders"}')).toBe(65536);
    expect(value(text, 'pgferry_copy_rows_total{table="public.orders"}')).toBe(10);
    expect(value(text, 'pgferry_copy_snapshot_age_seconds')).toBe(42.5);
    expect(value(text, 'pgferry_capture_log_bytes')).toBe(8192);
    expect(value(text, 'pgferry_capture_log_rows')).toBe(17);
  });

  it('takes the last batch time and per-table backlogs from the replay stats', async () => {
    const m = new Metrics(() => ({ phase: 'replicating', downtimeSeconds: null }));
    expect(value(await m.text(), 'pgferry_replay_last_batch_timestamp_seconds')).toBe(0);
    const saved = '2026-01-02T03:04:05.000Z';
    m.replayStats({
      lagSeconds: 1,
      backlog: 30,
      lastBatchAt: saved,
      tableBacklogs: [
        { table: 'public.a', changes: 20 },
        { table: 'public.b', changes: 10 },
      ],
    });
    let text = await m.text();
    expect(value(text, 'pgferry_replay_last_batch_timestamp_seconds')).toBe(Date.parse(saved) / 1000);
    expect(value(text, 'pgferry_replay_backlog_changes{table="public.b"}')).toBe(10);
    const before = Date.now() / 1000;
    m.replayBatch('public.a', 20, 0.1);
    // Stats saved before that batch do not move the time back; a drained table's series goes.
    m.replayStats({
      lagSeconds: 0,
      backlog: 10,
      lastBatchAt: saved,
      tableBacklogs: [{ table: 'public.b', changes: 10 }],
    });
    text = await m.text();
    expect(value(text, 'pgferry_replay_last_batch_timestamp_seconds')).toBeGreaterThanOrEqual(before);
    expect(value(text, 'pgferry_replay_backlog_changes{table="public.a"}')).toBeUndefined();
    expect(value(text, 'pgferry_replay_backlog_changes{table="public.b"}')).toBe(10);
  });
});
