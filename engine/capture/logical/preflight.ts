// What `--capture logical` needs of the source, each problem with its fix (reads only): logical
// WAL, a role that may stream (REPLICATION; on RDS the rds_replication role), a free slot and WAL
// sender, CREATE on the database (the run's publication), ownership of each table (ALTER
// PUBLICATION … ADD TABLE), and a replica identity that sends the primary key of a deleted row.
import type pg from 'pg';
import { qualified } from '../../../lib/sql.js';
import type { Finding } from '../../preflight/findings.js';
import { displayName, type TableInfo } from '../../shared/catalog.js';
import { q } from '../../shared/db.js';

const problem = (message: string, fix: string, object?: string): Finding => ({
  code: 'PGFERRY_PREFLIGHT_PROBLEMS',
  message,
  fix,
  ...(object ? { object } : {}),
});

export async function logicalProblems(client: pg.Client, tables: TableInfo[]): Promise<Finding[]> {
  const out: Finding[] = [];
  const [s] = await q<{
    wal_level: string;
    version: number;
    may_stream: boolean;
    rds: boolean;
    may_create: boolean;
    slots_free: number;
    senders_free: number;
    role: string;
  }>(
    client,
    'source',
    `SELECT current_setting('wal_level') AS wal_level, current_setting('server_version_num')::int AS version,
            r.rolreplication OR r.rolsuper
              OR EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'rds_replication' AND pg_has_role(r.oid, g.oid, 'MEMBER')) AS may_stream,
            EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication') AS rds,
            has_database_privilege(current_database(), 'CREATE') AS may_create,
            current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots)::int AS slots_free,
            current_setting('max_wal_senders')::int - (SELECT count(*) FROM pg_stat_replication)::int AS senders_free,
            r.rolname AS role
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  if (!s) return out;
  if (s.version < 100000) {
    out.push(
      problem('logical decoding with pgoutput needs PostgreSQL 10 or later', 'Use --capture triggers.'),
    );
    return out;
  }
  if (s.wal_level !== 'logical') {
    out.push(
      problem(
        `the source's wal_level is ${s.wal_level}, not logical`,
        s.rds
          ? 'Set rds.logical_replication = 1 in the instance parameter group and reboot it, or use --capture triggers.'
          : 'ALTER SYSTEM SET wal_level = logical and restart the server, or use --capture triggers (Heroku allows no slot).',
      ),
    );
  }
  if (!s.may_stream) {
    out.push(
      problem(
        `role ${s.role} may not stream changes (no REPLICATION attribute)`,
        s.rds ? `GRANT rds_replication TO ${s.role};` : `ALTER ROLE ${s.role} REPLICATION; (as a superuser)`,
      ),
    );
  }
  if (!s.may_create) {
    out.push(
      problem(
        `role ${s.role} may not create the run's publication (CREATE on the database)`,
        `GRANT CREATE ON DATABASE … TO ${s.role};`,
      ),
    );
  }
  if (s.slots_free < 1) {
    out.push(
      problem(
        'no replication slot is free (max_replication_slots)',
        'Drop an unused slot, or raise max_replication_slots and restart.',
      ),
    );
  }
  if (s.senders_free < 1) {
    out.push(
      problem('no WAL sender is free (max_wal_senders)', 'Raise max_wal_senders and restart the server.'),
    );
  }
  if (s.version < 130000 && tables.some((t) => t.kind === 'p')) {
    const t = tables.find((x) => x.kind === 'p')!;
    out.push(
      problem(
        `${displayName(t)} is partitioned: PostgreSQL before 13 cannot publish a partitioned table`,
        'Use --capture triggers.',
        displayName(t),
      ),
    );
  }
  if (tables.length === 0) return out;
  const rows = await q<{ oid: number; owned: boolean; ident: string; pk_ident: boolean }>(
    client,
    'source',
    `SELECT c.oid::int8 AS oid, pg_has_role(current_user, c.relowner, 'USAGE') AS owned, c.relreplident::text AS ident,
            EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident AND i.indisprimary) AS pk_ident
       FROM pg_class c WHERE c.oid = ANY ($1::oid[])`,
    [tables.map((t) => t.oid)],
  );
  const byOid = new Map(rows.map((r) => [Number(r.oid), r]));
  for (const t of tables) {
    const r = byOid.get(t.oid);
    if (!r) continue;
    const name = displayName(t);
    if (!r.owned && t.partitionRoot === null) {
      out.push(
        problem(
          `${name} is not owned by ${s.role}: only its owner may add it to a publication`,
          `ALTER TABLE ${qualified(t.schema, t.name)} OWNER TO ${s.role}; or run pgferry as its owner`,
          name,
        ),
      );
    }
    // A partitioned table's own setting is not used: each partition's is.
    if (t.kind === 'p') continue;
    if (r.ident === 'n' || (r.ident === 'i' && !r.pk_ident)) {
      out.push(
        problem(
          `${name} has REPLICA IDENTITY ${r.ident === 'n' ? 'NOTHING' : 'USING INDEX (not its primary key)'}: a deleted row's key would not be streamed`,
          `ALTER TABLE ${qualified(t.schema, t.name)} REPLICA IDENTITY DEFAULT;`,
          name,
        ),
      );
    }
  }
  return out;
}
