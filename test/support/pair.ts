// The setup most integration tests share: a source and a target cluster with a database of the
// same name on each, the source's tables made by one SQL script, and a temp directory for state
// files; all of it stopped and removed after the file's tests.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { ServerVersion } from './binaries.js';
import { type Cluster, startCluster } from './cluster.js';

export interface ClusterPair {
  source: Cluster;
  target: Cluster;
  /** The temp directory (state files). */
  dir: string;
  /** The database on each side. */
  db: string;
  /** `migrate` on the pair's databases with its state file in `dir`, then `extra`. */
  migrate(...extra: string[]): string[];
}

/** Registers beforeAll/afterAll; the returned object is filled in before the first test runs. */
export function clusterPair(opts: {
  /** Prefix of the temp directory's name. */
  name: string;
  /** Run on the source's database before the tests. */
  sourceSql?: string;
  db?: string;
  versions?: [ServerVersion, ServerVersion];
}): ClusterPair {
  const pair = {
    db: opts.db ?? 'app',
    migrate: (...extra: string[]) => [
      'migrate',
      '--source',
      pair.source.url({ db: pair.db }),
      '--target',
      pair.target.url({ db: pair.db }),
      '--state',
      path.join(pair.dir, 'state.sqlite'),
      ...extra,
    ],
  } as ClusterPair;
  beforeAll(async () => {
    const [s, t] = opts.versions ?? [15, 15];
    [pair.source, pair.target] = await Promise.all([startCluster(s), startCluster(t)]);
    pair.dir = fs.mkdtempSync(path.join(os.tmpdir(), `pgferry-${opts.name}-`));
    await pair.source.query(`CREATE DATABASE ${pair.db}`);
    await pair.target.query(`CREATE DATABASE ${pair.db}`);
    if (opts.sourceSql) await pair.source.query(opts.sourceSql, [], pair.db);
  });
  afterAll(async () => {
    await Promise.all([pair.source?.stop(), pair.target?.stop()]);
    if (pair.dir) fs.rmSync(pair.dir, { recursive: true, force: true });
  });
  return pair;
}
