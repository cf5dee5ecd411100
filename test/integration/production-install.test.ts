// The Dockerfile's install and start steps, outside Docker (no engine on these machines): the
// built tree with production dependencies only (`npm prune --omit=dev`), started the way the
// image starts it (`node bin/pgferry.js migrate`, configured by environment variables only), and
// its HEALTHCHECK command answers.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, freePort, startCluster } from '../support/cluster.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let source: Cluster;
let target: Cluster;
let dir: string;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  await source.query('CREATE DATABASE app');
  await target.query('CREATE DATABASE app');
  await source.query(
    'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);',
    [],
    'app',
  );
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-prod-'));
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('production install (the Dockerfile steps)', () => {
  it('runs with production dependencies only and answers its health check', async () => {
    const app = path.join(dir, 'app');
    fs.mkdirSync(app);
    for (const f of ['package.json', 'package-lock.json'])
      fs.copyFileSync(path.join(ROOT, f), path.join(app, f));
    fs.cpSync(path.join(ROOT, 'dist'), path.join(app, 'dist'), { recursive: true });
    fs.cpSync(path.join(ROOT, 'bin'), path.join(app, 'bin'), { recursive: true });
    // A hard-linked copy of the installed tree stands in for the build stage's `npm ci`.
    execFileSync('cp', ['-al', path.join(ROOT, 'node_modules'), path.join(app, 'node_modules')]);
    // npm rewrites its hidden lockfile in place: unlink the copy's, or the prune would write
    // through the hard link into the checkout's own node_modules.
    fs.rmSync(path.join(app, 'node_modules', '.package-lock.json'), { force: true });
    execFileSync('npm', ['prune', '--omit=dev', '--no-audit', '--no-fund', '--ignore-scripts'], {
      cwd: app,
      stdio: 'pipe',
    });
    for (const dev of ['typescript', 'vitest', 'pg15', '@biomejs/biome']) {
      expect(fs.existsSync(path.join(app, 'node_modules', dev)), dev).toBe(false);
    }

    const port = await freePort();
    const child = spawn(process.execPath, [path.join(app, 'bin/pgferry.js'), 'migrate'], {
      cwd: app,
      env: {
        PATH: process.env.PATH ?? '',
        PGFERRY_SOURCE_URL: source.url({ db: 'app' }),
        PGFERRY_TARGET_URL: target.url({ db: 'app' }),
        PGFERRY_STATE: path.join(dir, 'state.sqlite'),
        PGFERRY_HTTP: `127.0.0.1:${port}`,
        PGFERRY_API_TOKEN: 'prod-install-token',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
      const check = /CMD node -e "(.*)"\n/.exec(dockerfile)?.[1];
      expect(check).toBeDefined();
      const healthcheck = check!.replace('127.0.0.1:8080', `127.0.0.1:${port}`);
      const deadline = Date.now() + 30_000;
      let healthy = false;
      while (!healthy && Date.now() < deadline) {
        try {
          execFileSync(process.execPath, ['-e', healthcheck], { stdio: 'ignore' });
          healthy = true;
        } catch {
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      expect(healthy, stderr.slice(-2000)).toBe(true);
      const status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { phase: string };
      // The API answers from the start; the pipeline may not have entered its first phase yet.
      expect(['preflight', 'schema', 'copy', 'indexes', 'replicating']).toContain(status.phase);
    } finally {
      child.kill('SIGTERM');
      expect(await exited, stderr.slice(-2000)).toBe(0);
    }
  });
});
