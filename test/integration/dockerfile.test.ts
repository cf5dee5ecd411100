// The Dockerfile builds, and its image starts, answers its HEALTHCHECK on the configured port and
// stops cleanly on SIGTERM. No container engine on these machines: the file is replayed step by
// step (test/support/dockerfile.ts), its npm ci, build and prune run for real in scratch
// directories, only its apt-get line is checked instead of run. Then ENTRYPOINT + CMD start the way
// the image starts them: its ENV, its USER, its WORKDIR, under tini when this machine has it
// (.ci/run installs it), against two test clusters.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { freePort } from '../support/cluster.js';
import { containerCommand, replayDockerfile } from '../support/dockerfile.js';
import { clusterPair } from '../support/pair.js';
import { waitFor } from '../support/wait.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const pair = clusterPair({
  name: 'dockerfile',
  sourceSql: 'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);',
});

/** The newest PostgreSQL client tools installed here (Debian's 15 on these machines). */
function localPgBin(): string {
  const majors = fs
    .readdirSync('/usr/lib/postgresql')
    .filter((v) => fs.existsSync(`/usr/lib/postgresql/${v}/bin/pg_dump`))
    .sort((a, b) => Number(b) - Number(a));
  if (!majors[0]) throw new Error('no PostgreSQL client tools in /usr/lib/postgresql');
  return `/usr/lib/postgresql/${majors[0]}/bin`;
}

/**
 * better-sqlite3's install script downloads its prebuilt addon from GitHub, which these machines
 * cannot reach: it would compile it instead (two minutes here). Its download is served from the
 * checkout's own addon (built by `npm ci` for this Node), as prebuild-install's local prebuilds.
 */
function localPrebuild(scratch: string): Record<string, string> {
  const pkg = path.join(ROOT, 'node_modules/better-sqlite3');
  const { version } = JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'), 'utf8')) as {
    version: string;
  };
  const dir = path.join(scratch, 'prebuilds');
  fs.mkdirSync(dir);
  const file = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  execFileSync('tar', ['-czf', path.join(dir, file), '-C', pkg, 'build/Release/better_sqlite3.node']);
  return { npm_config_better_sqlite3_local_prebuilds: dir };
}

describe('Dockerfile', () => {
  it('builds; the image runs as its user under tini, is healthy on PGFERRY_HTTP, exits 0 on SIGTERM', {
    timeout: 600_000,
  }, async () => {
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-dockerfile-'));
    // The image's user must reach its files, as it can in the image.
    fs.chmodSync(scratch, 0o755);
    try {
      const replay = await replayDockerfile({
        dockerfile: path.join(ROOT, 'Dockerfile'),
        context: ROOT,
        scratch,
        runEnv: localPrebuild(scratch),
      });
      const { image } = replay;
      const build = replay.stages[0]!;

      // better-sqlite3's addon is built in the build stage for the runtime's Node and libc: both
      // stages come from the same image family (Node major, Debian release).
      const family = (ref: string) => /^node:(\d+)-([a-z]+)(?:-slim)?$/.exec(ref)?.slice(1);
      expect(family(build.image)).toBeDefined();
      expect(family(image.image)).toEqual(family(build.image));
      expect(
        fs.existsSync(
          path.join(image.root, 'app/node_modules/better-sqlite3/build/Release/better_sqlite3.node'),
        ),
      ).toBe(true);
      expect(replay.osPackages.flatMap((l) => l.packages)).toEqual(
        expect.arrayContaining(['tini', 'postgresql-client-17']),
      );
      // .dockerignore kept the checkout's own state out of the build context.
      for (const junk of ['.git', '.ci', 'test', 'bench', 'docs'])
        expect(fs.existsSync(path.join(build.root, 'app', junk)), junk).toBe(false);
      // The runtime stage holds the compiled tree and production dependencies, nothing else.
      expect(fs.readdirSync(path.join(image.root, 'app')).sort()).toEqual([
        'bin',
        'dist',
        'node_modules',
        'package.json',
      ]);
      for (const dev of ['typescript', 'vitest', 'pg15', '@biomejs/biome'])
        expect(fs.existsSync(path.join(image.root, 'app/node_modules', dev)), dev).toBe(false);

      const port = await freePort();
      const c = containerCommand(image, {
        PGFERRY_SOURCE_URL: pair.source.url({ db: pair.db }),
        PGFERRY_TARGET_URL: pair.target.url({ db: pair.db }),
        PGFERRY_HTTP: `127.0.0.1:${port}`,
      });
      expect(c.user?.uid, 'the image runs as a user of its own').toBeGreaterThan(0);
      // The state file lives on a volume, mapped to the stage's scratch here.
      const state = image.env.PGFERRY_STATE!;
      expect(
        image.volumes.some((v) => state.startsWith(`${v}/`)),
        state,
      ).toBe(true);
      expect(c.env.PGFERRY_STATE).toBe(path.join(image.root, state));
      // The image has the client tools 17 from apt.postgresql.org; this machine has Debian's 15,
      // which dumps the 15 test clusters.
      expect(c.env.PGFERRY_PG_BIN).toBe('/usr/lib/postgresql/17/bin');
      c.env.PGFERRY_PG_BIN = localPgBin();
      expect(c.argv.slice(0, 2)).toEqual(['/usr/bin/tini', '--']);
      const argv = fs.existsSync('/usr/bin/tini') ? c.argv : c.argv.slice(2);
      const ids = c.user ? { uid: c.user.uid, gid: c.user.gid } : {};

      const check = (env: Record<string, string> = {}) =>
        new Promise<number | null>((resolve) => {
          const hc = c.healthcheck!;
          const child = spawn(hc[0]!, hc.slice(1), {
            cwd: c.cwd,
            env: { ...c.env, ...env },
            stdio: 'ignore',
            ...ids,
          });
          child.on('close', (code) => resolve(code));
        });
      expect(c.healthcheck).not.toBeNull();
      expect(await check(), 'nothing listens yet').toBe(1);

      const child = spawn(argv[0]!, argv.slice(1), {
        cwd: c.cwd,
        env: c.env,
        stdio: ['ignore', 'ignore', 'pipe'],
        ...ids,
      });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.on('close', (code, signal) => resolve({ code, signal })),
      );
      try {
        await waitFor(
          'the HEALTHCHECK command to pass',
          async () => (await check()) === 0,
          60_000,
          200,
        ).catch((err: Error) => {
          throw new Error(`${err.message}\n${stderr.slice(-3000)}`);
        });
        // The image's default, an unspecified address, is checked through loopback.
        expect(await check({ PGFERRY_HTTP: `0.0.0.0:${port}` })).toBe(0);
        const status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { phase: string };
        expect(['preflight', 'schema', 'copy', 'indexes', 'replicating']).toContain(status.phase);
        // The state file is on the volume, written by the image's user.
        expect(fs.statSync(c.env.PGFERRY_STATE!).uid).toBe(c.user!.uid);
      } finally {
        child.kill('SIGTERM');
        expect(await exited, stderr.slice(-3000)).toEqual({ code: 0, signal: null });
      }
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  });
});
