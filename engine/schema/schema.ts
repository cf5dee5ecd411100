// Schema: pre-data from pg_dump applied to the target in one transaction; post-data split into
// what is built after the copy (primary keys, unique constraints, indexes) and what waits for the
// cutover (foreign keys, triggers, rules, policies, materialized view data, comments), so that the
// copy and replay write into bare tables and no target trigger fires twice.
import type { ObjectStage } from '../../checkpoints/store.js';
import { PgferryError, redact } from '../../lib/errors.js';
import { BUCARDO_SCHEMA, PGFERRY_SCHEMA, type TableInfo } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { DUMP_FLAGS, exactPattern, lostConnection, type PgTool, runAgainst } from '../shared/pg-tools.js';

export interface DumpEntry {
  name: string;
  type: string;
  schema: string;
  sql: string;
}

export interface DeferredObject {
  stage: ObjectStage;
  kind: string;
  name: string;
  sql: string;
}

const HEADER = /^--\n-- (?:Data for )?Name: (.*?); Type: (.*?); Schema: (.*?); Owner: .*\n--\n/gm;

/** Splits pg_dump's plain output into its preamble and one entry per TOC item. */
export function parseDump(text: string): { preamble: string; entries: DumpEntry[] } {
  const matches = [...text.matchAll(HEADER)];
  const preamble = text.slice(0, matches[0]?.index ?? text.length);
  const entries = matches.map((m, i) => {
    const end = matches[i + 1]?.index ?? text.length;
    const sql = text
      .slice((m.index ?? 0) + m[0].length, end)
      .split('\n')
      // psql meta-commands (\restrict, \unrestrict of recent pg_dump releases) are not SQL.
      .filter((line) => !line.startsWith('\\'))
      .join('\n')
      .replace(/\n--\n-- PostgreSQL database dump complete\n--\n/, '')
      .trim();
    return { name: m[1] ?? '', type: m[2] ?? '', schema: m[3] ?? '', sql };
  });
  return { preamble, entries };
}

const STAGE_BY_TYPE: Record<string, ObjectStage> = {
  CONSTRAINT: 'indexes',
  INDEX: 'indexes',
  'INDEX ATTACH': 'post-indexes',
  STATISTICS: 'post-indexes',
  'CHECK CONSTRAINT': 'post-indexes',
  'FK CONSTRAINT': 'cutover',
  TRIGGER: 'cutover',
  RULE: 'cutover',
  POLICY: 'cutover',
  'ROW SECURITY': 'cutover',
  'MATERIALIZED VIEW DATA': 'cutover',
  COMMENT: 'cutover',
};

/**
 * Unique and exclusion constraints (and unique indexes) get a stage of their own: with capture,
 * chunks are copied under different snapshots, so until replay has caught up once the copied rows
 * may hold a unique value twice (two rows that swapped it between two chunks' snapshots). Primary
 * keys cannot: every key lies in exactly one chunk's range.
 */
function stageOf(e: DumpEntry): ObjectStage {
  if (e.type === 'CONSTRAINT' && !/\bPRIMARY KEY\b/.test(e.sql)) return 'unique';
  if (e.type === 'INDEX' && /^CREATE UNIQUE INDEX\b/.test(e.sql)) return 'unique';
  return STAGE_BY_TYPE[e.type] ?? 'post-indexes';
}

/**
 * pgferry's own capture triggers (any run's, whatever pgferry version named them), and Bucardo's
 * delta and truncate triggers: pg_dump's --exclude-schema leaves out their functions but not the
 * triggers, which live on user tables. On the target they would call functions that do not exist
 * there and fail the cutover.
 */
const CALLS_PGFERRY = new RegExp(
  `\\bEXECUTE (?:FUNCTION|PROCEDURE) (?:${PGFERRY_SCHEMA}|"${PGFERRY_SCHEMA}"|${BUCARDO_SCHEMA}|"${BUCARDO_SCHEMA}")\\.`,
);
export const isPgferryTrigger = (e: DumpEntry): boolean => e.type === 'TRIGGER' && CALLS_PGFERRY.test(e.sql);

/** Post-data entries in dump order, each assigned the stage at which it is created. */
export function classifyPostData(entries: DumpEntry[]): { objects: DeferredObject[]; skipped: DumpEntry[] } {
  const objects: DeferredObject[] = [];
  const skipped: DumpEntry[] = [];
  for (const e of entries) {
    if (!e.sql || isPgferryTrigger(e)) continue;
    // Event triggers need a superuser on the target (and are unavailable on Heroku and RDS).
    if (e.type === 'EVENT TRIGGER' || (e.type === 'COMMENT' && e.name.startsWith('EVENT TRIGGER '))) {
      skipped.push(e);
      continue;
    }
    objects.push({
      stage: stageOf(e),
      kind: e.type,
      name: entryName(e),
      sql: e.sql,
    });
  }
  return { objects, skipped };
}

const entryName = (e: DumpEntry) => (e.schema && e.schema !== '-' ? `${e.schema}.${e.name}` : e.name);

/** Turns the pre-data dump into the script applied to the target. */
export function preparePreData(text: string): { script: string; skipped: DumpEntry[] } {
  const { preamble, entries } = parseDump(text);
  const skipped: DumpEntry[] = [];
  const kept: string[] = [];
  const created = new Set<string>();
  const needed = new Set<string>();
  for (const e of entries) {
    // COMMENT ON EXTENSION needs ownership of the extension, which RDS's master user lacks.
    if (e.type === 'COMMENT' && e.name.startsWith('EXTENSION ')) {
      skipped.push(e);
      continue;
    }
    let sql = e.sql;
    if (e.type === 'SCHEMA') {
      // The target may already have the schema (public, or one an operator created).
      sql = sql.replace(/^CREATE SCHEMA (?!IF NOT EXISTS)/, 'CREATE SCHEMA IF NOT EXISTS ');
      created.add(e.name);
    }
    if (e.type === 'EXTENSION') {
      // Heroku installs extensions into heroku_ext, which pg_dump may not create on the target.
      const m = /WITH SCHEMA (\S+);/.exec(sql);
      if (m?.[1]) needed.add(m[1]);
    }
    kept.push(sql);
  }
  const extraSchemas = [...needed]
    .filter((s) => !created.has(s.replace(/^"|"$/g, '')))
    .map((s) => `CREATE SCHEMA IF NOT EXISTS ${s};`);
  const settings = preamble
    .split('\n')
    .filter((line) => !line.startsWith('\\'))
    // pgferry sets its own timeouts (PGOPTIONS); transaction_timeout is unknown before PostgreSQL 17.
    .filter(
      (line) =>
        !/^SET (statement_timeout|lock_timeout|idle_in_transaction_session_timeout|transaction_timeout) = /.test(
          line,
        ),
    )
    .join('\n');
  return { script: [settings, ...extraSchemas, ...kept, ''].join('\n'), skipped };
}

/** pg_dump patterns that match one name exactly: quoted, with quotes doubled. */

export interface DumpOptions {
  pgDump: PgTool;
  source: ConnInfo;
  snapshot?: string;
  /** Source tables not selected by the filter: left out of the dump. */
  excludedTables: Pick<TableInfo, 'schema' | 'name'>[];
  /** Only these tables (a table joining a running migration), with what belongs to them. */
  tables?: Pick<TableInfo, 'schema' | 'name'>[];
}

export async function dumpSection(section: 'pre-data' | 'post-data', opts: DumpOptions): Promise<string> {
  const args = [
    '--schema-only',
    `--section=${section}`,
    ...DUMP_FLAGS,
    ...opts.excludedTables.map((t) => `--exclude-table=${exactPattern(t.schema, t.name)}`),
    ...(opts.tables ?? []).map((t) => `--table=${exactPattern(t.schema, t.name)}`),
  ];
  if (opts.snapshot) args.push(`--snapshot=${opts.snapshot}`);
  const res = await runAgainst(opts.pgDump, opts.source, args);
  if (lostConnection(opts.pgDump, res)) {
    throw new PgferryError(
      'PGFERRY_SOURCE_CONNECT',
      `pg_dump lost the source: ${redact(res.stderr.trim())}`,
      {
        side: 'source',
      },
    );
  }
  if (res.code !== 0) {
    throw new PgferryError(
      'PGFERRY_SCHEMA_DUMP_FAILED',
      `pg_dump --section=${section} failed: ${redact(res.stderr.trim())}`,
      {
        side: 'source',
      },
    );
  }
  return res.stdout;
}

/** Applies the pre-data script to the target with psql, in one transaction: all or nothing. */
export async function applyPreData(psql: PgTool, target: ConnInfo, script: string): Promise<void> {
  const res = await runAgainst(
    psql,
    target,
    ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction', '-f', '-'],
    {
      input: script,
      pgoptions: '-c statement_timeout=3600000 -c lock_timeout=30000',
    },
  );
  if (res.code !== 0) {
    const message = redact(res.stderr.trim().split('\n').slice(0, 6).join(' | '));
    // One transaction: a connection lost meanwhile left the target as it was, and a retry is safe.
    if (lostConnection(psql, res)) {
      throw new PgferryError('PGFERRY_TARGET_CONNECT', `psql lost the target: ${message}`, {
        side: 'target',
      });
    }
    throw new PgferryError('PGFERRY_SCHEMA_APPLY_FAILED', `creating the schema failed: ${message}`, {
      side: 'target',
    });
  }
}

const IDENT = '(?:"(?:[^"]|"")*"|[^\\s."]+)';
const ON_TABLE = new RegExp(
  `^(?:ALTER TABLE (?:ONLY )?|CREATE (?:UNIQUE )?INDEX ${IDENT} ON (?:ONLY )?)(${IDENT})\\.(${IDENT})\\s`,
);
const unquote = (id: string) => (id.startsWith('"') ? id.slice(1, -1).replace(/""/g, '"') : id);

/** The table a post-data statement (constraint or index) is on, as `schema.table` unquoted. */
export function objectTable(sql: string): { schema: string; name: string } | null {
  const m = ON_TABLE.exec(sql);
  return m ? { schema: unquote(m[1]!), name: unquote(m[2]!) } : null;
}
