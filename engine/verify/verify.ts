// verify: are source and target equal? Row counts per table always; with checksums, a hash of
// every row compared per primary-key range (the ranges of all tables checked in parallel), and a
// range that differs narrowed down to the keys that differ. A key ordered by a collation (text)
// is not split into ranges, which each server would evaluate in its own collation and so fill
// with other rows: its rows are grouped by a hash of the key instead, the same on both sides,
// in one pass per side. Rows are hashed from their text form, in sessions whose
// output settings are pinned (engine/shared/db.ts) and whose TimeZone is UTC, so equal values hash
// equally on servers of different versions and settings. Between databases of different encodings
// (LATIN1 to UTF8) the same text is other bytes on each side: there every row is hashed from its
// UTF-8 bytes, and every key grouped by hash, since text order differs with the bytes too.
import type pg from 'pg';
import { PgferryError } from '../../lib/errors.js';
import { rangePredicate } from '../copy/chunk-sql.js';
import { planChunks } from '../copy/planner.js';
import { displayName, listTables, type TableInfo } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect } from '../shared/db.js';
import type { TableFilter } from '../shared/table-filter.js';
import {
  ALIAS,
  bucketHashes,
  bucketOf,
  countRows,
  encodingsDiffer,
  keyHashes,
  rangeHash,
} from './row-hashes.js';

export interface KeyDifference {
  key: Record<string, string>;
  kind: 'missing-on-target' | 'extra-on-target' | 'different';
}

export interface TableVerdict {
  table: string;
  equal: boolean;
  sourceRows: number;
  targetRows: number;
  /** Present with checksums. */
  rangesChecked?: number;
  rangesDiffering?: number;
  differences?: KeyDifference[];
  /** Differences beyond those listed. */
  moreDifferences?: number;
  note?: string;
}

export interface VerifyReport {
  equal: boolean;
  checksums: boolean;
  tables: TableVerdict[];
}

export interface VerifyOptions {
  source: ConnInfo;
  target: ConnInfo;
  filter: TableFilter;
  checksums: boolean;
  jobs: number;
  /** Rows hashed per range (bounded memory when a range is narrowed down). */
  rangeRows?: number;
  /** Differing keys listed per table at most. */
  maxDifferences?: number;
  /** The tables to compare (verifiedTables), when the caller listed them already. */
  tables?: TableInfo[];
  /** Read the source in this exported snapshot (a drained point of a running replication). */
  sourceSnapshot?: string;
  /**
   * Without checksums: the verdict of a table the caller already proved equal by other means (the
   * cutover's count ledger), which is then not counted; null for a table to count.
   */
  known?: (t: TableInfo) => TableVerdict | null;
  /** After each table counted and each range hashed: what is done of the stage. */
  onProgress?: (p: VerifyProgress) => void;
}

export interface VerifyProgress {
  stage: 'counting rows' | 'hashing ranges';
  done: number;
  total: number;
}

async function session(conn: ConnInfo, snapshotId?: string): Promise<pg.Client> {
  const c = await connect(conn, 'copy');
  await c.query("SET TimeZone = 'UTC'");
  if (snapshotId) {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await c.query(`SET TRANSACTION SNAPSHOT '${snapshotId.replace(/'/g, '')}'`);
  }
  return c;
}

/** Runs fn over items with `jobs` workers, each with its own source and target session. */
async function pool<T>(
  opts: VerifyOptions,
  items: T[],
  fn: (item: T, src: pg.Client, dst: pg.Client) => Promise<void>,
): Promise<void> {
  const queue = [...items];
  let failure: unknown;
  const worker = async () => {
    const src = await session(opts.source, opts.sourceSnapshot);
    try {
      const dst = await session(opts.target);
      try {
        for (let item = queue.shift(); item !== undefined && !failure; item = queue.shift()) {
          await fn(item, src, dst);
        }
      } finally {
        await dst.end().catch(() => {});
      }
    } catch (err) {
      failure ??= err;
    } finally {
      await src.end().catch(() => {});
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.jobs, items.length)) }, worker));
  if (failure) throw failure;
}

/** A part of a table compared on both sides: a key range, or a bucket of key hashes. */
interface Range {
  table: TableInfo;
  verdict: TableVerdict;
  where: string;
  /** Already known to differ (a bucket): narrowed down without hashing it again. */
  differs?: boolean;
}

/** The tables verify compares: on the source, matching the filter, partitions at their root. */
export async function verifiedTables(source: ConnInfo, filter: TableFilter): Promise<TableInfo[]> {
  const control = await connect(source, 'control');
  try {
    return (await listTables(control, 'source', filter)).filter((t) => t.partitionRoot === null);
  } finally {
    await control.end().catch(() => {});
  }
}

export async function verify(opts: VerifyOptions): Promise<VerifyReport> {
  let tables = opts.tables ?? (await verifiedTables(opts.source, opts.filter));
  // Comparing nothing proves nothing: an error (exit 2), not "equal".
  if (tables.length === 0) {
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      'no table on the source matches the --include/--exclude patterns: nothing to compare',
      { side: 'config', hint: 'Check the patterns: they match schema.table, with * as a wildcard.' },
    );
  }
  const portable = opts.checksums && (await encodingsDiffer(opts));
  const max = opts.maxDifferences ?? 20;
  const rangeRows = opts.rangeRows ?? 100_000;
  const verdicts: TableVerdict[] = [];
  const ranges: Range[] = [];
  const totals = new Map<TableVerdict, number>();
  const totalTables = tables.length;
  if (opts.known && !opts.checksums) {
    const known = opts.known;
    tables = tables.filter((t) => {
      const v = known(t);
      if (v) verdicts.push(v);
      return !v;
    });
  }

  // Counts per table; with checksums, a table without a key is hashed whole and the others are
  // planned into primary-key ranges (by rows: bytes per row times rows per range).
  if (tables.length > 0)
    await pool(opts, tables, async (t, src, dst) => {
      const [sourceRows, targetRows] = await Promise.all([
        countRows(src, 'source', t),
        countRows(dst, 'target', t),
      ]);
      const verdict: TableVerdict = {
        table: displayName(t),
        equal: sourceRows === targetRows,
        sourceRows,
        targetRows,
      };
      verdicts.push(verdict);
      opts.onProgress?.({ stage: 'counting rows', done: verdicts.length, total: totalTables });
      if (!opts.checksums) return;
      if (!t.primaryKey) {
        const [a, b] = await Promise.all([
          rangeHash(src, 'source', t, 'true', portable),
          rangeHash(dst, 'target', t, 'true', portable),
        ]);
        Object.assign(verdict, {
          equal: verdict.equal && a === b,
          rangesChecked: 1,
          rangesDiffering: a === b ? 0 : 1,
          note: 'no primary key: compared whole',
        });
        return;
      }
      if (portable || t.primaryKey.some((k) => k.collated)) {
        const buckets = Math.max(1, Math.ceil(Math.max(sourceRows, targetRows) / rangeRows));
        const [a, b] = await Promise.all([
          bucketHashes(src, 'source', t, buckets, portable),
          bucketHashes(dst, 'target', t, buckets, portable),
        ]);
        Object.assign(verdict, {
          rangesChecked: buckets,
          rangesDiffering: 0,
          differences: [],
          moreDifferences: 0,
        });
        for (let i = 0; i < buckets; i++) {
          if (a.get(i) !== b.get(i))
            ranges.push({
              table: t,
              verdict,
              where: `${bucketOf(t, buckets, portable)} = ${i}`,
              differs: true,
            });
        }
        return;
      }
      const bytesPerRow = t.rowsEstimate > 0 ? t.bytes / t.rowsEstimate : 100;
      const chunks = await planChunks(
        src,
        { ...t, kind: 'r' },
        { chunkBytes: Math.max(8192, rangeRows * bytesPerRow), jobs: opts.jobs },
      );
      Object.assign(verdict, {
        rangesChecked: chunks.length,
        rangesDiffering: 0,
        differences: [],
        moreDifferences: 0,
      });
      const key = t.primaryKey.map((k) => ({ name: k.name, type: k.type }));
      for (const c of chunks)
        ranges.push({ table: t, verdict, where: rangePredicate(key, c.lo, c.hi, ALIAS) });
    });

  // Every range of every table, in parallel; a range that differs is narrowed to its keys.
  let hashed = 0;
  if (ranges.length > 0)
    await pool(opts, ranges, async (r, src, dst) => {
      await compareRange(r, src, dst);
      opts.onProgress?.({ stage: 'hashing ranges', done: ++hashed, total: ranges.length });
    });
  async function compareRange(r: Range, src: pg.Client, dst: pg.Client): Promise<void> {
    const t = r.table;
    const key = t.primaryKey!;
    const { where } = r;
    if (!r.differs) {
      const [a, b] = await Promise.all([
        rangeHash(src, 'source', t, where, portable),
        rangeHash(dst, 'target', t, where, portable),
      ]);
      if (a === b) return;
    }
    const v = r.verdict;
    v.equal = false;
    v.rangesDiffering = (v.rangesDiffering ?? 0) + 1;
    const [hs, ht] = await Promise.all([
      keyHashes(src, 'source', t, where, portable),
      keyHashes(dst, 'target', t, where, portable),
    ]);
    const note = (k: string, kind: KeyDifference['kind']) => {
      totals.set(v, (totals.get(v) ?? 0) + 1);
      const list = v.differences!;
      if (list.length < max) {
        const values = JSON.parse(k) as string[];
        list.push({ key: Object.fromEntries(key.map((col, i) => [col.name, values[i]!])), kind });
      }
    };
    for (const [k, h] of hs) {
      const other = ht.get(k);
      if (other === undefined) note(k, 'missing-on-target');
      else if (other !== h) note(k, 'different');
    }
    for (const k of ht.keys()) if (!hs.has(k)) note(k, 'extra-on-target');
  }
  for (const [v, total] of totals) v.moreDifferences = Math.max(0, total - (v.differences?.length ?? 0));

  verdicts.sort((a, b) => a.table.localeCompare(b.table));
  return { equal: verdicts.every((v) => v.equal), checksums: opts.checksums, tables: verdicts };
}
