// Issue 11, part 4: a password given in a URL (in its userinfo, or as ?password=) reaches no
// child's command line or environment (pg_dump and psql get a password file of their own, removed
// after), and appears in no log, status, metric, API answer or state file; the state file is the
// owner's only.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, startCli } from '../support/cli.js';
import { freePort } from '../support/cluster.js';
import { clusterPair } from '../support/pair.js';
import { waitFor } from '../support/wait.js';

const SOURCE_PW = 'Zq9-distinctive-source-pw-7781';
const TARGET_PW = 'Tg4-distinctive-target-pw-5530';
const TOKEN = 'secrets-test-token-91c2d7';

const pair = clusterPair({
  name: 'secrets',
  db: 'app',
  sourceSql: `CREATE TABLE notes (id bigint PRIMARY KEY, body text);
              INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 2000) g;`,
});

/** pg_dump and psql wrapped: each call's arguments and environment are written to a log, then the real program runs. */
function wrapTools(dir: string): { binDir: string; log: string } {
  const binDir = path.join(dir, 'bin');
  const log = path.join(dir, 'children.log');
  fs.mkdirSync(binDir);
  for (const tool of ['pg_dump', 'psql']) {
    const real = `/usr/lib/postgresql/15/bin/${tool}`;
    const script = `#!/bin/sh
{ echo "== ${tool} $*"; env; if [ -n "$PGPASSFILE" ]; then echo "passfile $PGPASSFILE"; fi; } >> '${log}'
exec '${real}' "$@"
`;
    fs.writeFileSync(path.join(binDir, tool), script, { mode: 0o755 });
  }
  return { binDir, log };
}

describe('secrets stay secret', () => {
  it('keeps URL passwords out of children, logs, status, metrics, the API and the state file', async () => {
    await pair.source.query(`ALTER ROLE postgres PASSWORD '${SOURCE_PW}'`);
    await pair.target.query(`ALTER ROLE postgres PASSWORD '${TARGET_PW}'`);
    // The source's password as ?password=, the target's in the userinfo.
    const source = `${pair.source.url({ db: 'app', password: '' }).replace(':@', '@')}?password=${SOURCE_PW}`;
    const target = pair.target.url({ db: 'app', password: TARGET_PW });
    const { binDir, log } = wrapTools(pair.dir);
    const state = path.join(pair.dir, 'secret.sqlite');
    const port = await freePort();
    const env = { PGFERRY_PG_BIN: binDir, PGFERRY_API_TOKEN: TOKEN };
    const daemon = startCli(
      ['migrate', '--source', source, '--target', target, '--state', state, '--http', `127.0.0.1:${port}`],
      env,
    );
    const api = `http://127.0.0.1:${port}`;
    let answers = '';
    try {
      await waitFor('replication', async () => {
        const res = await fetch(`${api}/status`);
        return res.ok && ((await res.json()) as { phase: string }).phase === 'replicating';
      });
      for (const route of ['/status', '/metrics', '/healthz', '/tables', '/openapi.json', '/']) {
        answers += await (await fetch(`${api}${route}`)).text();
      }
      const paused = await fetch(`${api}/pause`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'secrets test' }),
      });
      answers += await paused.text();
    } finally {
      daemon.child.kill('SIGTERM');
    }
    const done = await daemon.done;
    const status = await runCli(['status', '--state', state, '--json']);
    const preflight = await runCli(['preflight', '--source', source, '--target', target, '--json'], env);

    const children = fs.readFileSync(log, 'utf8');
    expect(children).toContain('== pg_dump');
    expect(children).toContain('== psql');
    const passfiles = [...children.matchAll(/^passfile (.+)$/gm)].map((m) => m[1]!);
    expect(passfiles.length).toBeGreaterThan(0);
    // Each child's password file is gone once the child has exited.
    for (const f of passfiles) expect(fs.existsSync(f), f).toBe(false);

    const stateBytes = ['', '-wal', '-shm']
      .map((suffix) => `${state}${suffix}`)
      .filter((f) => fs.existsSync(f))
      .map((f) => fs.readFileSync(f).toString('latin1'))
      .join('');
    const everything = {
      children,
      daemonOut: done.stdout + done.stderr,
      answers,
      status: status.stdout + status.stderr,
      preflight: preflight.stdout + preflight.stderr,
      stateBytes,
    };
    for (const [where, text] of Object.entries(everything)) {
      expect(text, where).not.toContain(SOURCE_PW);
      expect(text, where).not.toContain(TARGET_PW);
      expect(text, where).not.toContain(TOKEN);
    }
    // No PGFERRY_* variable (the URLs, the token) reaches a child.
    expect(children).not.toMatch(/^PGFERRY_/m);
    expect(fs.statSync(state).mode & 0o777).toBe(0o600);
    for (const suffix of ['-wal', '-shm']) {
      if (fs.existsSync(`${state}${suffix}`)) expect(fs.statSync(`${state}${suffix}`).mode & 0o077).toBe(0);
    }
  });
});
