// What the alert rules and the dashboard need from /metrics, scraped from `migrate --http` on real
// clusters: every error code at 0 before any error (increase() cannot see an error that creates
// its series), the build, the copy's estimates, and once replay runs the capture log's size on the
// source, the per-table backlog and the time of the last batch. A failing run keeps its reason in
// its log (a JSON line) and in the state file's events, since it exits before any scrape.
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ERRORS } from '../../lib/error-codes.js';
import { runCli, startCli } from '../support/cli.js';
import { freePort } from '../support/cluster.js';
import { clusterPair } from '../support/pair.js';
import { waitFor } from '../support/wait.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };
const TOKEN = 'test-token-metrics-7d3e';

const pair = clusterPair({
  name: 'metrics',
  sourceSql: `CREATE TABLE items (id int PRIMARY KEY, name text);
              INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5000) g;
              CREATE TABLE notes (k text PRIMARY KEY, v text);
              INSERT INTO notes SELECT 'n' || g, 'v' || g FROM generate_series(1, 200) g;
              ANALYZE items; ANALYZE notes;`,
});

let daemon: ReturnType<typeof startCli> | undefined;
afterAll(() => {
  daemon?.child.kill('SIGKILL');
});

/** One sample per series: `name{labels}` → value (labels in the order pgferry writes them). */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

describe('/metrics for the alert rules and the dashboard', () => {
  it('every error code at 0 from the start, the build, the estimates, the capture log and the last batch', async () => {
    const port = await freePort();
    const api = `http://127.0.0.1:${port}`;
    const scrape = async () => parse(await (await fetch(`${api}/metrics`)).text());
    const post = (route: string) =>
      fetch(`${api}${route}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    const said = () => `\npgferry said:\n${daemon?.output().stderr.slice(-3000)}`;
    const started = Date.now() / 1000;
    daemon = startCli([...pair.migrate('--http', `127.0.0.1:${port}`, '--jobs', '2')], {
      PGFERRY_API_TOKEN: TOKEN,
    });
    const first = await waitFor('metrics', () => scrape().catch(() => undefined), 30_000);

    // Before anything could fail: every code of the registry has its series, at 0.
    for (const code of Object.keys(ERRORS))
      expect(first.get(`pgferry_errors_total{code="${code}"}`), code).toBe(0);
    expect(first.get(`pgferry_build_info{version="${version}",node="${process.versions.node}"}`)).toBe(1);
    expect(first.get('process_start_time_seconds')).toBeGreaterThan(0);

    await waitFor('replicating', async () => {
      const m = await scrape();
      return m.get('pgferry_phase{phase="replicating"}') === 1;
    }).catch((err: Error) => {
      throw new Error(`${err.message}${said()}`);
    });
    let m = await scrape();
    // The plan's estimates (ANALYZE gave exact row counts), beside what was copied.
    expect(m.get('pgferry_copy_estimated_rows{table="public.items"}')).toBe(5000);
    expect(m.get('pgferry_copy_estimated_rows{table="public.notes"}')).toBe(200);
    expect(m.get('pgferry_copy_estimated_bytes{table="public.items"}')).toBeGreaterThan(0);
    expect(m.get('pgferry_copy_rows_total{table="public.items"}')).toBe(5000);
    expect(m.get('pgferry_copy_snapshot_age_seconds')).toBe(0);

    // Changes held back by a pause: the backlog per table, and the log's size on the source
    // (measured with the heartbeat, every 10 seconds).
    expect((await post('/pause')).status).toBe(200);
    await pair.source.query(
      `INSERT INTO items SELECT g, 'new ' || g FROM generate_series(5001, 5300) g`,
      [],
      pair.db,
    );
    m = await waitFor(
      'backlog and capture log measured',
      async () => {
        const s = await scrape();
        return (s.get('pgferry_replay_backlog_changes{table="public.items"}') ?? 0) === 300 &&
          (s.get('pgferry_capture_log_rows') ?? 0) > 0 &&
          (s.get('pgferry_capture_log_bytes') ?? 0) > 0
          ? s
          : undefined;
      },
      40_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}${said()}`);
    });
    expect(m.get('pgferry_backlog_changes')).toBe(300);
    expect(m.get('pgferry_replay_backlog_changes{table="public.notes"}')).toBeUndefined();

    // Resumed: a batch is applied; its time is the last batch's, and the drained table's series goes.
    expect((await post('/resume')).status).toBe(200);
    m = await waitFor('a batch applied', async () => {
      const s = await scrape();
      return s.get('pgferry_backlog_changes') === 0 &&
        (s.get('pgferry_replay_last_batch_timestamp_seconds') ?? 0) > 0
        ? s
        : undefined;
    });
    const last = m.get('pgferry_replay_last_batch_timestamp_seconds')!;
    expect(last).toBeGreaterThanOrEqual(started);
    expect(last).toBeLessThanOrEqual(Date.now() / 1000);
    expect(m.get('pgferry_replay_backlog_changes{table="public.items"}')).toBeUndefined();

    daemon.child.kill('SIGTERM');
    const res = await daemon.done;
    daemon = undefined;
    expect(res.code, res.stderr.slice(-2000)).toBe(0);

    // Restarted: the last batch's time comes back from the state file before any new batch.
    daemon = startCli([...pair.migrate('--http', `127.0.0.1:${port}`, '--jobs', '2')], {
      PGFERRY_API_TOKEN: TOKEN,
    });
    const again = await waitFor('metrics after the restart', () => scrape().catch(() => undefined), 30_000);
    expect(again.get('pgferry_replay_last_batch_timestamp_seconds')).toBeCloseTo(last, 0);
    daemon.child.kill('SIGTERM');
    expect((await daemon.done).code).toBe(0);
    daemon = undefined;
  });

  it('a failing run keeps its reason in its log and in the state file', async () => {
    await pair.source.query('CREATE DATABASE busy');
    await pair.target.query('CREATE DATABASE busy');
    await pair.source.query('CREATE TABLE t (id int PRIMARY KEY)', [], 'busy');
    await pair.target.query('CREATE TABLE already_here (id int PRIMARY KEY)', [], 'busy');
    const state = path.join(pair.dir, 'busy.sqlite');
    const res = await runCli([
      'migrate',
      '--source',
      pair.source.url({ db: 'busy' }),
      '--target',
      pair.target.url({ db: 'busy' }),
      '--state',
      state,
    ]);
    expect(res.code, res.stderr).not.toBe(0);
    const failed = res.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: string; msg: string; code?: string; hint?: string })
      .find((l) => l.msg === 'migrate failed');
    expect(failed, res.stderr).toMatchObject({ level: 'error', code: 'PGFERRY_TARGET_NOT_EMPTY' });
    expect(failed?.hint).toBeTruthy();
    const status = await runCli(['status', '--state', state, '--json']);
    const events = (JSON.parse(status.stdout) as { events: { level: string; message: string }[] }).events;
    expect(events.some((e) => e.level === 'error' && e.message.includes('PGFERRY_TARGET_NOT_EMPTY'))).toBe(
      true,
    );
  });
});
