// Issue 10, finding 1: a refused run, run again, is refused again and never becomes a "resume"
// that deletes rows on a database pgferry did not fill; the same database on both sides is refused
// however its URL is spelled; a resume writes only into the target carrying the run's id.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, startCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { tableHashes } from '../support/row-hash.js';

const SCHEMA = `
CREATE TABLE notes (id bigint PRIMARY KEY, body text);
INSERT INTO notes SELECT g, 'source ' || g FROM generate_series(1, 5000) g;
CREATE TABLE tags (name text PRIMARY KEY);
INSERT INTO tags SELECT 'tag' || g FROM generate_series(1, 300) g;
`;

const pair = clusterPair({ name: 'identity', sourceSql: SCHEMA, db: 'app' });

const hashes = async (url: string) => JSON.stringify(await tableHashes(url));
const localhost = (url: string) => url.replace('127.0.0.1', 'localhost');

async function captureSchemaOnSource(db = 'app'): Promise<boolean> {
  const rows = await pair.source.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'pgferry'",
    [],
    db,
  );
  return rows[0]!.n > 0;
}

describe('a refused run stays refused', () => {
  it('is refused three times over a target with rows of its own, which stay untouched', async () => {
    await pair.target.query('CREATE DATABASE busy');
    // The target's own tables have the source's names and keys in the source's ranges.
    await pair.target.query(
      `CREATE TABLE notes (id bigint PRIMARY KEY, body text);
       INSERT INTO notes SELECT g, 'target''s own ' || g FROM generate_series(1, 4000) g;
       CREATE TABLE tags (name text PRIMARY KEY);
       INSERT INTO tags SELECT 'tag' || g FROM generate_series(1, 100) g;`,
      [],
      'busy',
    );
    const targetUrl = pair.target.url({ db: 'busy' });
    const sourceUrl = pair.source.url({ db: 'app' });
    const before = { source: await hashes(sourceUrl), target: await hashes(targetUrl) };
    const state = path.join(pair.dir, 'busy.sqlite');
    for (const mode of ['--exit-when-synced', '--exit-when-synced', '--copy-only']) {
      const res = await runCli([
        'migrate',
        '--source',
        sourceUrl,
        '--target',
        targetUrl,
        '--state',
        state,
        mode,
      ]);
      expect(res.code, res.stderr).toBe(1);
      expect(res.stderr).toContain('PGFERRY_TARGET_NOT_EMPTY');
      expect(res.stdout).not.toContain('resumed');
    }
    expect(await hashes(targetUrl)).toBe(before.target);
    expect(await hashes(sourceUrl)).toBe(before.source);
    // Refused before capture: nothing was installed on the source either.
    expect(await captureSchemaOnSource()).toBe(false);
  });

  it('refuses the source as its own target, spelled the same or another way, three times each', async () => {
    const sourceUrl = pair.source.url({ db: 'app' });
    const before = await hashes(sourceUrl);
    for (const targetUrl of [sourceUrl, localhost(sourceUrl)]) {
      const state = path.join(pair.dir, `self-${targetUrl === sourceUrl ? 'same' : 'other'}.sqlite`);
      for (let i = 0; i < 3; i++) {
        const res = await runCli([
          'migrate',
          '--source',
          sourceUrl,
          '--target',
          targetUrl,
          '--state',
          state,
          '--exit-when-synced',
        ]);
        expect(res.code, res.stderr).toBe(2);
        expect(res.stderr).toContain('PGFERRY_SAME_DATABASE');
      }
    }
    expect(await hashes(sourceUrl)).toBe(before);
    expect(await captureSchemaOnSource()).toBe(false);
    const pre = await runCli([
      'preflight',
      '--source',
      sourceUrl,
      '--target',
      localhost(sourceUrl),
      '--json',
    ]);
    expect(pre.code).toBe(1);
    expect(JSON.parse(pre.stdout).problems.map((p: { code: string }) => p.code)).toContain('same-database');
  });
});

describe('a resume writes only into its own target', () => {
  it('resumes through another spelling of the same servers, and refuses a replaced target', async () => {
    await pair.target.query('CREATE DATABASE mine');
    const sourceUrl = pair.source.url({ db: 'app' });
    const targetUrl = pair.target.url({ db: 'mine' });
    const state = path.join(pair.dir, 'mine.sqlite');
    const args = (s: string, t: string) => ['migrate', '--source', s, '--target', t, '--state', state];
    const first = await runCli([...args(sourceUrl, targetUrl), '--exit-when-synced']);
    expect(first.code, first.stderr).toBe(0);
    const mark = await pair.target.query<{ run_id: string }>('SELECT run_id FROM pgferry.run', [], 'mine');
    expect(mark).toHaveLength(1);

    // The same servers spelled localhost: the same run, resumed.
    const again = await runCli([...args(localhost(sourceUrl), localhost(targetUrl)), '--exit-when-synced']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('(resumed)');

    // The target database dropped and created again under its name, holding someone's rows.
    await pair.target.query('DROP DATABASE mine');
    await pair.target.query('CREATE DATABASE mine');
    await pair.target.query(
      `CREATE TABLE notes (id bigint PRIMARY KEY, body text);
       INSERT INTO notes SELECT g, 'other ' || g FROM generate_series(1, 100) g;`,
      [],
      'mine',
    );
    const before = await hashes(targetUrl);
    const replaced = await runCli([...args(sourceUrl, targetUrl), '--exit-when-synced']);
    expect(replaced.code).toBe(2);
    expect(replaced.stderr).toContain('PGFERRY_STATE_MISMATCH');
    expect(await hashes(targetUrl)).toBe(before);

    // Its mark removed, but the database the same: the run refuses to write into it.
    await pair.target.query('DROP DATABASE mine');
    await pair.target.query('CREATE DATABASE mine');
    const state2 = path.join(pair.dir, 'mine2.sqlite');
    const args2 = ['migrate', '--source', sourceUrl, '--target', targetUrl, '--state', state2];
    expect((await runCli([...args2, '--exit-when-synced'])).code).toBe(0);
    await pair.target.query('DROP TABLE pgferry.run', [], 'mine');
    await pair.target.query("UPDATE notes SET body = 'changed by the application'", [], 'mine');
    const marked = await hashes(targetUrl);
    const unmarked = await runCli([...args2, '--exit-when-synced']);
    expect(unmarked.code).toBe(2);
    expect(unmarked.stderr).toContain('PGFERRY_TARGET_MISMATCH');
    expect(await hashes(targetUrl)).toBe(marked);
  });

  it('two new runs started at once into one empty target: one goes on, the other is refused and wrote nothing', async () => {
    await Promise.all([pair.source.query('CREATE DATABASE race'), pair.target.query('CREATE DATABASE race')]);
    await pair.source.query(SCHEMA, [], 'race');
    const run = (n: number) =>
      startCli([
        'migrate',
        '--source',
        pair.source.url({ db: 'race' }),
        '--target',
        pair.target.url({ db: 'race' }),
        '--state',
        path.join(pair.dir, `race-${n}.sqlite`),
        '--exit-when-synced',
      ]).done;
    const results = await Promise.all([run(1), run(2)]);
    expect(results.map((r) => r.code).sort(), results.map((r) => r.stderr.slice(-600)).join('\n')).toEqual([
      0, 1,
    ]);
    const refused = results.find((r) => r.code === 1)!;
    // Found empty by both, the target got the other run's schema first: named as such, not a schema fault.
    expect(refused.stderr).toContain('PGFERRY_TARGET_NOT_EMPTY');
    expect(refused.stderr).not.toContain('PGFERRY_SCHEMA_APPLY_FAILED');
    const [mark] = await pair.target.query<{ run_id: string }>('SELECT run_id FROM pgferry.run', [], 'race');
    expect(refused.stderr).toContain(`it is the target of pgferry run ${mark!.run_id}`);
    // Only the run that went on captures on the source.
    const triggers = await pair.source.query<{ tgname: string }>(
      'SELECT DISTINCT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1',
      [],
      'race',
    );
    expect(triggers.map((t) => t.tgname)).toEqual([
      `pgferry_capture_${mark!.run_id}`,
      `pgferry_capture_truncate_${mark!.run_id}`,
    ]);
    expect(await hashes(pair.target.url({ db: 'race' }))).toBe(await hashes(pair.source.url({ db: 'race' })));
  });
});
