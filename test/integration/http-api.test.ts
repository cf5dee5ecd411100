// The HTTP API of `migrate --http` on real clusters: health and readiness, the Prometheus
// exposition parsed and checked for the named series, /status; control calls refused without a
// token, with a wrong one, and when the daemon has none; a pause that holds replay while the
// backlog grows and survives a SIGTERM and restart; resume drains; body validation; verify and
// cutover as operations (202 at once, followed by pgferry ctl, one at a time, exit codes); answers
// in the documented shapes; a Host header naming another host refused; and no bind beyond
// loopback without a token.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Status } from '../../src/http/api-schemas.js';
import { runCli, startCli } from '../support/cli.js';
import { type Cluster, freePort, startCluster } from '../support/cluster.js';
import { waitFor } from '../support/wait.js';

const TOKEN = 'test-token-4f1c9a7e2b';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format strictly enough to catch a malformed line. */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a metric line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!;
    const value = m[3] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[3]);
    if (Number.isNaN(value)) throw new Error(`not a number: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return samples;
}

const sample = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

/** A GET with the Host header given (fetch does not let a caller choose it). */
function rawGet(port: number, route: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: route, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

let source: Cluster;
let target: Cluster;
let dir: string;
let daemon: ReturnType<typeof startCli> | undefined;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-http-'));
  await source.query('CREATE DATABASE app');
  await target.query('CREATE DATABASE app');
  await source.query(
    `CREATE TABLE items (id int PRIMARY KEY, name text);
     INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5000) g;
     CREATE TABLE notes (k text PRIMARY KEY, v text);
     INSERT INTO notes SELECT 'n' || g, 'v' || g FROM generate_series(1, 200) g;`,
    [],
    'app',
  );
});

afterAll(async () => {
  daemon?.child.kill('SIGKILL');
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('migrate --http', () => {
  it('refuses to bind beyond this machine without a token: exit 2, one line', async () => {
    const url = source.url({ db: 'app' });
    const res = await runCli(['migrate', '--http', '0.0.0.0:9999', '--source', url, '--target', url], {
      PGFERRY_API_TOKEN: '',
    });
    expect(res.code).toBe(2);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stderr).toContain('PGFERRY_CONFIG_INVALID');
    expect(res.stderr).toContain('PGFERRY_API_TOKEN');
  });

  it('serves status and metrics; pause survives a restart; resume, verify and cutover', async () => {
    const port = await freePort();
    const api = `http://127.0.0.1:${port}`;
    const state = path.join(dir, 'state.sqlite');
    const args = [
      'migrate',
      '--http',
      `127.0.0.1:${port}`,
      '--source',
      source.url({ db: 'app' }),
      '--target',
      target.url({ db: 'app' }),
      '--state',
      state,
      '--jobs',
      '2',
    ];
    const get = async (route: string) => {
      const res = await fetch(`${api}${route}`);
      return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
    };
    const getJson = async (route: string) => JSON.parse((await get(route)).text);
    const post = async (route: string, body?: unknown, token: string | null = TOKEN) => {
      const headers: Record<string, string> = {};
      if (token !== null) headers.authorization = `Bearer ${token}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(`${api}${route}`, {
        method: 'POST',
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      // biome-ignore lint/suspicious/noExplicitAny: the tests read whatever the API answered
      return { status: res.status, location: res.headers.get('location'), json: (await res.json()) as any };
    };
    interface Op {
      state: string;
      result: Record<string, unknown>;
      finishedAt: string | null;
    }
    const getAuthorized = async (route: string) => {
      const res = await fetch(`${api}${route}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      return (await res.json()) as { operation: Op };
    };
    const start = (env: Record<string, string> = { PGFERRY_API_TOKEN: TOKEN }) => {
      daemon = startCli(args, env);
      return waitFor('/healthz', async () => (await get('/healthz')).status === 200, 30_000);
    };
    const stop = async () => {
      daemon!.child.kill('SIGTERM');
      const res = await daemon!.done;
      daemon = undefined;
      expect(res.code, res.stderr.slice(-2000)).toBe(0);
      return res;
    };
    const failWithLog = (err: Error) => {
      throw new Error(`${err.message}\npgferry said:\n${daemon?.output().stderr.slice(-3000)}`);
    };

    await start();
    expect(await getJson('/healthz')).toEqual({ ok: true });
    const ready = await get('/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.text)).toMatchObject({ ok: true, source: { ok: true }, target: { ok: true } });
    await waitFor('replicating', async () => {
      const s = await getJson('/status');
      return s.phase === 'replicating' && s.backlog !== null;
    }).catch(failWithLog);

    // The status and the tables, in the documented shape.
    const status = await getJson('/status');
    expect(Status.parse(status)).toEqual(status);
    expect(status).toMatchObject({ phase: 'replicating', pauseReason: null, backlog: 0 });
    expect(typeof status.lagSeconds).toBe('number');
    expect(typeof status.changesPerSec).toBe('number');
    expect(status.events.length).toBeGreaterThan(0);
    expect(status.tables).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ table: 'public.items', rowsCopied: 5000, percent: 100 }),
      ]),
    );
    expect((await getJson('/tables')).tables).toHaveLength(2);

    // The thin client, pgferry ctl.
    const ctlStatus = await runCli(['ctl', 'status', '--api', api]);
    expect(ctlStatus.code, ctlStatus.stderr).toBe(0);
    expect(JSON.parse(ctlStatus.stdout).phase).toBe('replicating');
    // Beside a daemon configured by PGFERRY_HTTP (the container), ctl finds it without --api.
    const ctlBeside = await runCli(['ctl', 'status'], {
      PGFERRY_HTTP: `0.0.0.0:${port}`,
      PGFERRY_API_URL: '',
    });
    expect(ctlBeside.code, ctlBeside.stderr).toBe(0);
    expect(JSON.parse(ctlBeside.stdout).phase).toBe('replicating');
    const ctlNoToken = await runCli(['ctl', 'pause', '--api', api], { PGFERRY_API_TOKEN: '' });
    expect(ctlNoToken.code).toBe(2);
    expect(ctlNoToken.stderr).toContain('PGFERRY_API_UNAUTHORIZED');
    const ctlDown = await runCli(['ctl', 'status', '--api', `http://127.0.0.1:${await freePort()}`]);
    expect(ctlDown.code).toBe(2);
    expect(ctlDown.stderr).toContain('cannot reach the pgferry API');

    // The metrics.
    const metrics = await get('/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.type).toContain('text/plain');
    const samples = parseMetrics(metrics.text);
    expect(sample(samples, 'pgferry_phase', { phase: 'replicating' })?.value).toBe(1);
    expect(sample(samples, 'pgferry_phase', { phase: 'copy' })?.value).toBe(0);
    expect(sample(samples, 'pgferry_replication_lag_seconds')).toBeDefined();
    expect(sample(samples, 'pgferry_backlog_changes')?.value).toBe(0);
    expect(sample(samples, 'pgferry_paused')?.value).toBe(0);
    expect(sample(samples, 'pgferry_copy_rows_total', { table: 'public.items' })?.value).toBe(5000);
    expect(sample(samples, 'pgferry_copy_bytes_total', { table: 'public.items' })?.value).toBeGreaterThan(0);
    expect(sample(samples, 'pgferry_copy_chunks', { table: 'public.items', state: 'done' })?.value).toBe(1);
    expect(sample(samples, 'process_cpu_user_seconds_total')).toBeDefined();
    expect(sample(samples, 'process_resident_memory_bytes')).toBeDefined();
    expect(metrics.text).toContain('# TYPE pgferry_replay_batch_duration_seconds histogram');

    // Control calls need the token.
    const none = await post('/pause', { reason: 'x' }, null);
    expect(none.status).toBe(401);
    expect(none.json.error.code).toBe('PGFERRY_API_UNAUTHORIZED');
    const wrong = await post('/pause', { reason: 'x' }, 'not-the-token');
    expect(wrong.status).toBe(401);
    expect(wrong.json.error.code).toBe('PGFERRY_API_UNAUTHORIZED');
    expect((await getJson('/status')).phase).toBe('replicating');

    // Pause: replay holds, capture keeps recording.
    const paused = await post('/pause', { reason: 'load test on the source' });
    expect(paused.status).toBe(200);
    expect((await getJson('/status')).pauseReason).toBe('load test on the source');
    await source.query(
      `INSERT INTO items SELECT g, 'new ' || g FROM generate_series(5001, 5300) g;
       UPDATE notes SET v = 'changed' WHERE k IN ('n1', 'n2');`,
      [],
      'app',
    );
    await waitFor('the backlog to grow while paused', async () => {
      const s = await getJson('/status');
      return s.phase === 'paused' && s.backlog === 302;
    });
    const whilePaused = parseMetrics((await get('/metrics')).text);
    expect(sample(whilePaused, 'pgferry_paused')?.value).toBe(1);
    expect(sample(whilePaused, 'pgferry_phase', { phase: 'paused' })?.value).toBe(1);
    expect(sample(whilePaused, 'pgferry_backlog_changes')?.value).toBe(302);
    const onTarget = await target.query<{ n: string }>('SELECT count(*) AS n FROM items', [], 'app');
    expect(Number(onTarget[0]!.n)).toBe(5000);
    const refused = await post('/cutover', { freeze: 'revoke' });
    expect(refused.status).toBe(409);
    expect(refused.json.error.code).toBe('PGFERRY_CUTOVER_REFUSED');
    const ctlRefused = await runCli(['ctl', 'cutover', '--api', api], { PGFERRY_API_TOKEN: TOKEN });
    expect(ctlRefused.code).toBe(1);
    expect(ctlRefused.stderr).toContain('PGFERRY_CUTOVER_REFUSED');

    // SIGTERM, and a daemon without a token refuses every control call.
    await stop();
    await start({ PGFERRY_API_TOKEN: '' });
    const forbidden = await post('/resume', undefined, TOKEN);
    expect(forbidden.status).toBe(403);
    expect(forbidden.json.error.code).toBe('PGFERRY_API_FORBIDDEN');
    await stop();

    // Restarted: still paused, nothing applied.
    await start();
    await waitFor('paused after the restart', async () => {
      const s = await getJson('/status');
      return s.phase === 'paused' && s.pauseReason === 'load test on the source';
    });
    expect((await target.query<{ n: string }>('SELECT count(*) AS n FROM items', [], 'app'))[0]!.n).toBe(
      '5000',
    );

    // Bodies are validated.
    const badFreeze = await post('/cutover', { freeze: 'melt' });
    expect(badFreeze.status).toBe(400);
    expect(badFreeze.json.error.code).toBe('PGFERRY_CONFIG_INVALID');
    expect(badFreeze.json.error.message).toContain('freeze');
    const badType = await post('/verify', { checksums: 'yes' });
    expect(badType.status).toBe(400);
    expect(badType.json.error.code).toBe('PGFERRY_CONFIG_INVALID');
    const noRoute = await get('/nowhere');
    expect(noRoute.status).toBe(404);
    expect(JSON.parse(noRoute.text).error.code).toBe('PGFERRY_API_NOT_FOUND');

    // Resume (through pgferry ctl): the backlog drains.
    const resumed = await runCli(['ctl', 'resume', '--api', api, '--token', TOKEN]);
    expect(resumed.code, resumed.stderr).toBe(0);
    await waitFor('the backlog to drain', async () => {
      const s = await getJson('/status');
      return s.phase === 'replicating' && s.backlog === 0 && s.replay.appliedTotal >= 302;
    }).catch(failWithLog);
    const drained = parseMetrics((await get('/metrics')).text);
    expect(sample(drained, 'pgferry_replay_changes_total', { table: 'public.items' })?.value).toBe(300);
    expect(sample(drained, 'pgferry_replay_batch_duration_seconds_count')?.value).toBeGreaterThan(0);
    expect(sample(drained, 'pgferry_replay_batches_total', { table: 'public.items' })?.value).toBeGreaterThan(
      0,
    );
    // Restarted after the copy: the copy counters come from the state file.
    expect(sample(drained, 'pgferry_copy_rows_total', { table: 'public.items' })?.value).toBe(5000);

    // Verify starts an operation and answers 202 at once; the report is in the operation.
    const started = await post('/verify', { checksums: true });
    expect(started.status, JSON.stringify(started.json)).toBe(202);
    expect(started.json.operation).toMatchObject({ kind: 'verify', state: 'running', finishedAt: null });
    expect(started.location).toBe(`/operations/${started.json.operation.id}`);
    expect((await fetch(`${api}${started.location}`)).status).toBe(401);
    let op: Op;
    await waitFor('the verification to end', async () => {
      op = (await getAuthorized(started.location!)).operation;
      return op.state !== 'running';
    });
    expect(op!.state).toBe('succeeded');
    expect(op!.result.equal).toBe(true);
    expect(op!.result.tables).toHaveLength(2);
    expect(typeof op!.finishedAt).toBe('string');
    const listed = await getJson('/status');
    expect(Status.parse(listed)).toEqual(listed);
    expect(listed.operations[0]).toMatchObject({ id: started.json.operation.id, state: 'succeeded' });

    const ctlVerify = await runCli(['ctl', 'verify', '--checksums', '--api', api], {
      PGFERRY_API_TOKEN: TOKEN,
    });
    expect(ctlVerify.code, ctlVerify.stderr).toBe(0);
    expect(JSON.parse(ctlVerify.stdout).equal).toBe(true);
    expect(ctlVerify.stderr).toMatch(/verify running \(operation [0-9a-f-]+/);

    // A row that differs: ctl verify exits 1 and prints the differing key; /status lists the
    // verdict without the key (anyone who reaches the port reads /status).
    await target.query("UPDATE notes SET v = 'drifted' WHERE k = 'n7'", [], 'app');
    const different = await runCli(['ctl', 'verify', '--checksums', '--api', api], {
      PGFERRY_API_TOKEN: TOKEN,
    });
    expect(different.code, different.stderr).toBe(1);
    const report = JSON.parse(different.stdout);
    expect(report.equal).toBe(false);
    expect(report.tables.find((t: { table: string }) => t.table === 'public.notes').differences).toEqual([
      { key: { k: 'n7' }, kind: 'different' },
    ]);
    const afterDiff = await getJson('/status');
    expect(afterDiff.operations[0].result.equal).toBe(false);
    expect(JSON.stringify(afterDiff)).not.toContain('"n7"');
    expect(Status.parse(afterDiff)).toEqual(afterDiff);
    await target.query("UPDATE notes SET v = 'v7' WHERE k = 'n7'", [], 'app');

    // The cutover through pgferry ctl, run by the daemon's own replay: ctl follows the operation.
    // An external freeze waits --settle (2 s) for quiet: meanwhile a second cutover, and a
    // verification, are refused (409), and ctl verify says so with exit 2.
    const ctlCut = startCli(['ctl', 'cutover', '--freeze', 'external', '--api', api], {
      PGFERRY_API_TOKEN: TOKEN,
    });
    await waitFor('the cutover operation', async () =>
      (await getJson('/status')).operations.some((o: { kind: string }) => o.kind === 'cutover'),
    );
    const second = await post('/cutover', { freeze: 'revoke' });
    expect(second.status).toBe(409);
    expect(second.json.error.code).toBe('PGFERRY_API_CONFLICT');
    expect(second.json.error.message).toContain('a cutover is already running');
    const busyVerify = await runCli(['ctl', 'verify', '--api', api], { PGFERRY_API_TOKEN: TOKEN });
    expect(busyVerify.code).toBe(2);
    expect(busyVerify.stderr).toContain('PGFERRY_API_CONFLICT');
    const cut = await ctlCut.done;
    expect(cut.code, cut.stderr).toBe(0);
    expect(cut.stderr).toMatch(/cutover running \(operation/);
    const cutResult = JSON.parse(cut.stdout);
    expect(cutResult).toMatchObject({ ok: true, freeze: 'external' });
    expect(cutResult.downtimeSeconds).toBeGreaterThan(0);
    const done = await getJson('/status');
    expect(Status.parse(done)).toEqual(done);
    expect(done.phase).toBe('done');
    expect(done.cutoverDowntimeSeconds).toBe(cutResult.downtimeSeconds);
    expect(done.operations[0]).toMatchObject({
      kind: 'cutover',
      state: 'succeeded',
      result: { downtimeSeconds: cutResult.downtimeSeconds },
    });
    expect(done.setup.source).toEqual(expect.not.objectContaining({ user: expect.anything() }));
    const after = parseMetrics((await get('/metrics')).text);
    expect(sample(after, 'pgferry_phase', { phase: 'done' })?.value).toBe(1);
    expect(sample(after, 'pgferry_cutover_downtime_seconds')?.value).toBe(cutResult.downtimeSeconds);

    // Bound to loopback: a request naming another host (DNS rebinding) is refused.
    const rebound = await rawGet(port, '/status', 'evil.example');
    expect(rebound.status).toBe(421);
    expect(JSON.parse(rebound.body).error.code).toBe('PGFERRY_API_MISDIRECTED');
    expect((await rawGet(port, '/status', `localhost:${port}`)).status).toBe(200);
    const res = await stop();
    expect(res.stdout).toMatch(/cutover done: write downtime/);
    expect(res.stderr).not.toContain(TOKEN);
  });
});
