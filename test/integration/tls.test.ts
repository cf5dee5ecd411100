// Issue 11, part 1: URLs mean what libpq says, for node-postgres, pg_dump and psql alike, on
// servers that accept TLS only, as Heroku (a self-signed certificate, sslmode=require) and RDS
// (a CA-signed one, sslmode=verify-full with the CA bundle) do.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { compareDatabases } from '../support/row-hash.js';
import { makeCerts, type TestCerts } from '../support/tls.js';

const SCHEMA = `
CREATE TABLE accounts (id bigint PRIMARY KEY, balance numeric NOT NULL, note text);
INSERT INTO accounts SELECT g, g, 'n' || g FROM generate_series(1, 20000) g;
CREATE TABLE kv (k text PRIMARY KEY, v jsonb);
INSERT INTO kv SELECT 'k' || g, jsonb_build_object('g', g) FROM generate_series(1, 3000) g;
`;

let certs: TestCerts;
let source: Cluster;
let target: Cluster;
let dir: string;

beforeAll(async () => {
  certs = makeCerts();
  [source, target] = await Promise.all([
    startCluster(15, { tls: certs.selfSigned }),
    startCluster(15, { tls: certs.signed }),
  ]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-tls-'));
  await source.query('CREATE DATABASE app');
  await source.query(SCHEMA, [], 'app');
  await target.query('CREATE DATABASE app');
  // Preflight's checks after the migration need an empty target.
  await target.query('CREATE DATABASE fresh');
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  for (const d of [dir, certs?.dir]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

/** Heroku's URL: TLS, nothing verified. */
const herokuLike = () => source.url({ db: 'app' });
/** RDS's URL: the certificate verified against the CA bundle, the host name checked. */
const rdsLike = (ca = certs.ca, db = 'app') =>
  `${target.url({ db, sslmode: 'verify-full' })}&sslrootcert=${ca}`;
/** What the harness compares with: node-postgres's spelling of "encrypt, do not verify". */
const plainClient = (c: Cluster) => c.url({ db: 'app', sslmode: 'no-verify' });

describe('TLS-only servers', () => {
  it('refuses connections without TLS', async () => {
    const res = await runCli([
      'preflight',
      '--source',
      source.url({ db: 'app', sslmode: 'disable' }),
      '--target',
      rdsLike(),
    ]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('PGFERRY_SOURCE_CONNECT');
    expect(res.stderr).toContain('no encryption');
  });

  it('preflight passes with sslmode=require on the source and verify-full on the target, for every client', async () => {
    const res = await runCli(['preflight', '--source', herokuLike(), '--target', rdsLike(), '--json']);
    expect(res.code, res.stdout + res.stderr).toBe(0);
    const report = JSON.parse(res.stdout);
    expect(report.problems).toEqual([]);
  });

  it('migrates, replicates, cuts over and verifies over TLS', async () => {
    const state = path.join(dir, 'tls.sqlite');
    const base = ['--source', herokuLike(), '--target', rdsLike(), '--state', state];
    const synced = await runCli(['migrate', '--exit-when-synced', ...base]);
    expect(synced.code, synced.stderr.slice(-2000)).toBe(0);
    await source.query(
      `UPDATE accounts SET balance = balance + 1 WHERE id % 7 = 0;
       DELETE FROM kv WHERE k LIKE 'k1%';
       INSERT INTO kv VALUES ('new', '{"n": 1}');`,
      [],
      'app',
    );
    const cut = await runCli(['cutover', '--freeze', 'readonly', ...base]);
    expect(cut.code, cut.stderr.slice(-2000)).toBe(0);
    expect(cut.stdout).toContain('cutover done');
    const verify = await runCli(['verify', '--checksums', '--source', herokuLike(), '--target', rdsLike()]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const cmp = await compareDatabases(plainClient(source), plainClient(target));
    expect(cmp.target).toEqual(cmp.source);
  });

  it('refuses a certificate the given CA did not sign, in one line that says what to change (exit 2)', async () => {
    const wrongCa = await runCli(['preflight', '--source', herokuLike(), '--target', rdsLike(certs.otherCa)]);
    expect(wrongCa.code).toBe(2);
    expect(wrongCa.stderr).toContain('PGFERRY_TARGET_CONNECT');
    expect(wrongCa.stderr).toMatch(/TLS certificate was not accepted/);
    expect(wrongCa.stderr).toContain('sslrootcert');
    expect(wrongCa.stderr.trim().split('\n'), wrongCa.stderr).toHaveLength(1);

    // Heroku's self-signed certificate cannot be verified: verify-full says so and names require.
    const selfSigned = await runCli([
      'preflight',
      '--source',
      `${source.url({ db: 'app', sslmode: 'verify-full' })}&sslrootcert=${certs.ca}`,
      '--target',
      rdsLike(),
    ]);
    expect(selfSigned.code).toBe(2);
    expect(selfSigned.stderr).toContain('PGFERRY_SOURCE_CONNECT');
    expect(selfSigned.stderr).toContain('sslmode=require');
  });

  it('takes node-postgres spellings and libpq ones alike, and rejects what libpq would not know', async () => {
    const noVerify = await runCli([
      'preflight',
      '--source',
      source.url({ db: 'app', sslmode: 'no-verify' }),
      '--target',
      rdsLike(certs.ca, 'fresh'),
    ]);
    expect(noVerify.code, noVerify.stdout + noVerify.stderr).toBe(0);
    const bogus = await runCli([
      'preflight',
      '--source',
      source.url({ db: 'app', sslmode: 'sometimes' }),
      '--target',
      rdsLike(),
    ]);
    expect(bogus.code).toBe(2);
    expect(bogus.stderr).toContain('sslmode=sometimes');
    const verifyWithoutCa = await runCli([
      'preflight',
      '--source',
      herokuLike(),
      '--target',
      target.url({ db: 'app', sslmode: 'verify-full' }),
    ]);
    expect(verifyWithoutCa.code).toBe(2);
    expect(verifyWithoutCa.stderr).toContain('sslrootcert');
  });
});
