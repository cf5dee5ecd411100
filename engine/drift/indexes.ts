// With --drift additive, an index (or a unique or exclusion constraint) new on the source is built
// on the target too: it changes no row, and the target would otherwise serve the application
// without it after the cutover. Indexes are not part of a table's shape (one missing never pauses
// replay), so they are compared only in this mode, by name, on the replicated tables. The builds
// run one at a time in the background on a session of their own (a big index takes minutes, and
// replay must go on meanwhile): CONCURRENTLY on an ordinary table, so replay's writes are not
// blocked; plainly on a partitioned one, which does not allow it.
import type pg from 'pg';
import type { Logger } from 'pino';
import { qualified, quoteIdent, quoteLiteral } from '../../lib/sql.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect } from '../shared/db.js';

interface IndexRow {
  table: string;
  schema: string;
  tableName: string;
  partitioned: boolean;
  name: string;
  def: string;
  constraintName: string | null;
  constraintDef: string | null;
  valid: boolean;
}

/** Indexes of these tables but their primary keys, search_path pinned so every name comes qualified. */
const INDEXES = (where: string) => `
SELECT n.nspname || '.' || c.relname AS table, n.nspname AS schema, c.relname AS "tableName",
       c.relkind = 'p' AS partitioned, ic.relname AS name, pg_get_indexdef(i.indexrelid) AS def,
       k.conname AS "constraintName", pg_get_constraintdef(k.oid) AS "constraintDef", i.indisvalid AS valid
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class ic ON ic.oid = i.indexrelid
  LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('u', 'x')
 WHERE NOT i.indisprimary AND ${where}`;

async function read(client: pg.Client, where: string): Promise<IndexRow[]> {
  try {
    const res = (await client.query(
      `BEGIN; SET LOCAL search_path = pg_catalog; ${INDEXES(where)}; COMMIT`,
    )) as unknown as pg.QueryResult<IndexRow>[];
    return res.find((r) => r.command === 'SELECT')?.rows ?? [];
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** The statement that builds a source index on the target. */
export function buildIndexDdl(ix: IndexRow): string {
  const table = qualified(ix.schema, ix.tableName);
  if (ix.constraintName && ix.constraintDef) {
    return `ALTER TABLE ${table} ADD CONSTRAINT ${quoteIdent(ix.constraintName)} ${ix.constraintDef}`;
  }
  // pg_get_indexdef says ON ONLY for a partitioned table's index: built that way it would stay
  // invalid until every partition's index is attached. Without ONLY it is built on all of them.
  const def = ix.def.replace(/ ON ONLY /, ' ON ');
  return ix.partitioned ? def : def.replace(/^CREATE (UNIQUE )?INDEX /, 'CREATE $1INDEX CONCURRENTLY ');
}

export interface IndexBuilderOptions {
  target: ConnInfo;
  log: Logger;
  /** A line in the run's events. */
  note: (level: 'info' | 'warn', message: string) => void;
}

export class IndexBuilder {
  private building: Promise<void> | null = null;
  private closing = false;
  private session: pg.Client | null = null;
  /** Builds that failed: not tried again every check (the operator is told once). */
  private readonly failed = new Set<string>();

  constructor(private readonly opts: IndexBuilderOptions) {}

  /**
   * Compares the indexes of these tables (present on both sides, named as the source names them
   * now) and starts building what the target lacks, unless a build is under way.
   */
  async check(
    src: pg.Client,
    dst: pg.Client,
    tables: { oid: number; schema: string; name: string }[],
    /** Names pgferry builds itself later (its pending schema objects: a joining table's, unique ones before the first catch-up). */
    pending: ReadonlySet<string>,
  ): Promise<void> {
    if (this.building || tables.length === 0) return;
    const source = await read(
      src,
      `i.indrelid IN (${tables.map((t) => Math.trunc(t.oid)).join(', ')}) AND i.indisvalid`,
    );
    if (source.length === 0) return;
    const regclasses = tables.map((t) => `to_regclass(${quoteLiteral(qualified(t.schema, t.name))})`);
    const target = await read(dst, `i.indrelid IN (${regclasses.join(', ')})`);
    const there = new Map(target.map((t) => [`${t.schema}.${t.name}`, t]));
    const missing = source.filter((s) => {
      const t = there.get(`${s.schema}.${s.name}`);
      const own =
        pending.has(s.name) || (s.constraintName && pending.has(`${s.tableName} ${s.constraintName}`));
      return !t?.valid && !own && !this.failed.has(`${s.schema}.${s.name}`);
    });
    if (missing.length === 0) return;
    this.building = this.build(missing, there).finally(() => {
      this.building = null;
    });
  }

  private async build(missing: IndexRow[], there: Map<string, IndexRow>): Promise<void> {
    for (const ix of missing) {
      const name = `${ix.schema}.${ix.name}`;
      try {
        this.session ??= await connect(this.opts.target, 'index');
        // A concurrent build that was interrupted leaves an invalid index: built again.
        if (there.get(name) && !there.get(name)!.valid)
          await this.session.query(`DROP INDEX IF EXISTS ${qualified(ix.schema, ix.name)}`);
        const started = Date.now();
        await this.session.query(buildIndexDdl(ix));
        this.opts.note(
          'info',
          `${ix.table}: index ${ix.name} new on the source, built on the target (--drift additive, ${((Date.now() - started) / 1000).toFixed(1)}s)`,
        );
      } catch (err) {
        await this.session?.end().catch(() => {});
        this.session = null;
        if (this.closing) return;
        this.failed.add(name);
        this.opts.note(
          'warn',
          `${ix.table}: index ${ix.name} new on the source could not be built on the target: ${(err as Error).message}; build it there yourself: ${buildIndexDdl(ix).replace(' CONCURRENTLY', '')}`,
        );
      }
    }
  }

  /** Ends a build under way (an interrupted concurrent build is done again by the next run). */
  async close(): Promise<void> {
    this.closing = true;
    const s = this.session;
    this.session = null;
    await s?.end().catch(() => {});
    await this.building?.catch(() => {});
    this.closing = false;
  }
}
