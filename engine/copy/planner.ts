// Plans a table's copy as primary-key ranges of bounded size. Integer keys are split by
// arithmetic over [min, max]; other and composite keys by boundaries sampled from the table
// (TABLESAMPLE reads a bounded number of pages, never the whole table). The first and last
// ranges are open-ended, so rows beyond the sampled extremes are still covered.
import type pg from 'pg';
import { qualified, quoteIdent } from '../../lib/sql.js';
import type { KeyColumn, TableInfo } from '../shared/catalog.js';
import { q } from '../shared/db.js';

export interface PlannedChunk {
  lo: string[] | null;
  hi: string[] | null;
}

export interface PlanOptions {
  /** Target size of one chunk in bytes of table data. */
  chunkBytes: number;
  /** Workers: a big table is split into at least this many chunks so that all of them help. */
  jobs: number;
}

const INTEGER_TYPES = new Set([20, 21, 23]); // int8, int2, int4
const SAMPLE_ROWS_PER_CHUNK = 64;
const MAX_SAMPLE_ROWS = 100_000;
/** From this size on, a table is split into at least one chunk per worker, so that all help. */
const SPREAD_MIN_BYTES = 16 * 1024 * 1024;

export function chunkCount(bytes: number, opts: PlanOptions): number {
  const n = Math.max(1, Math.ceil(bytes / opts.chunkBytes));
  return bytes >= SPREAD_MIN_BYTES ? Math.max(n, opts.jobs) : n;
}

const openRanges = (bounds: string[][]): PlannedChunk[] => {
  const chunks: PlannedChunk[] = [];
  let lo: string[] | null = null;
  for (const b of bounds) {
    chunks.push({ lo, hi: b });
    lo = b;
  }
  chunks.push({ lo, hi: null });
  return chunks;
};

export async function planChunks(
  client: pg.Client,
  table: TableInfo,
  opts: PlanOptions,
): Promise<PlannedChunk[]> {
  const key = table.primaryKey;
  const n = chunkCount(table.bytes, opts);
  if (!key || n <= 1) return [{ lo: null, hi: null }];
  const bounds =
    key.length === 1 && INTEGER_TYPES.has(key[0]!.typeOid)
      ? await integerBounds(client, table, key[0]!, n)
      : await sampledBounds(client, table, key, n);
  return openRanges(bounds);
}

async function integerBounds(
  client: pg.Client,
  table: TableInfo,
  key: KeyColumn,
  n: number,
): Promise<string[][]> {
  const col = quoteIdent(key.name);
  const [row] = await q<{ min: string | null; max: string | null }>(
    client,
    'source',
    `SELECT min(${col})::text AS min, max(${col})::text AS max FROM ONLY ${qualified(table.schema, table.name)}`,
    [],
    `${table.schema}.${table.name}`,
  );
  if (!row || row.min === null || row.max === null) return [];
  const min = BigInt(row.min);
  const span = BigInt(row.max) - min + 1n;
  const bounds: string[][] = [];
  let last = min;
  for (let i = 1n; i < BigInt(n); i++) {
    const b = min + (span * i) / BigInt(n);
    if (b > last) {
      bounds.push([b.toString()]);
      last = b;
    }
  }
  return bounds;
}

async function sampledBounds(
  client: pg.Client,
  table: TableInfo,
  key: KeyColumn[],
  n: number,
): Promise<string[][]> {
  const rowsGuess = table.rowsEstimate > 0 ? table.rowsEstimate : Math.max(1, table.bytes / 100);
  const want = Math.min(n * SAMPLE_ROWS_PER_CHUNK, MAX_SAMPLE_ROWS);
  const percent = Math.min(100, Math.max(0.0001, (want / rowsGuess) * 100));
  const cols = key.map((k) => quoteIdent(k.name));
  const rows = await q<Record<string, string>>(
    client,
    'source',
    `SELECT ${cols.map((c, i) => `${c}::text AS k${i}`).join(', ')}
       FROM (SELECT ${cols.join(', ')} FROM ONLY ${qualified(table.schema, table.name)}
             TABLESAMPLE SYSTEM (${percent})) s
      ORDER BY ${cols.join(', ')}`,
    [],
    `${table.schema}.${table.name}`,
  );
  const bounds: string[][] = [];
  let last = '';
  for (let i = 1; i < n; i++) {
    const row = rows[Math.floor((rows.length * i) / n)];
    if (!row) continue;
    const b = key.map((_, j) => row[`k${j}`]!);
    const id = JSON.stringify(b);
    if (id !== last) {
      bounds.push(b);
      last = id;
    }
  }
  return bounds;
}
