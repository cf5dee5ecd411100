// `migrate()` called in the test's process on a cluster pair, for the options the CLI does not
// expose (a batch size far below the default, to cut batch windows inside a test's few rows).
import path from 'node:path';
import pino from 'pino';
import { type MigrateResult, migrate } from '../../engine/migrate.js';
import { ConnInfo } from '../../engine/shared/conn-info.js';
import type { ClusterPair } from './pair.js';

/**
 * `migrate --exit-when-synced --jobs 2` on the pair's databases, with its state file in `dir`;
 * with `signal`, `migrate` that replicates until it aborts.
 */
export const migrateInProcess = (
  pair: ClusterPair,
  opts: { batchSize: number; signal?: AbortSignal },
): Promise<MigrateResult> =>
  migrate({
    source: new ConnInfo('source', pair.source.url({ db: pair.db })),
    target: new ConnInfo('target', pair.target.url({ db: pair.db })),
    statePath: path.join(pair.dir, 'state.sqlite'),
    jobs: 2,
    filter: { include: [], exclude: [] },
    mode: opts.signal ? 'run' : 'exit-when-synced',
    chunkBytes: 128 * 1024 * 1024,
    maxSnapshotAgeMs: 600_000,
    batchSize: opts.batchSize,
    log: pino({ level: 'silent' }),
    signal: opts.signal ?? new AbortController().signal,
  });
