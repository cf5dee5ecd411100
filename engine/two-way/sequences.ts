// Keys from sequences in two-way sync: both sides insert rows, so a key column filled by a
// sequence (serial, identity) must never give the same value on both sides. Accepted: the two
// sequences step by the same increment of at least 2 from different residues (odd/even, or one of
// n), or their MINVALUE..MAXVALUE ranges are disjoint. Keys that do not come from a sequence (uuid,
// natural keys) need nothing. Checked before two-way sync starts, and by `pgferry preflight --two-way`.
import type pg from 'pg';
import { qualified } from '../../lib/sql.js';
import type { Finding } from '../preflight/findings.js';
import { q } from '../shared/db.js';

interface KeySequence {
  key: string;
  seq: string;
  increment: bigint;
  min: bigint;
  max: bigint;
  /** The value nextval gives next. */
  last: bigint;
}

async function keySequences(
  client: pg.Client,
  side: 'source' | 'target',
  tables: { schema: string; name: string }[],
): Promise<Map<string, KeySequence>> {
  const rows = await q<{ key: string; seq: string; inc: string; min: string; max: string }>(
    client,
    side,
    `SELECT format('%I.%I.%I', n.nspname, c.relname, a.attname) AS key, ps.name AS seq,
            s.seqincrement::text AS inc, s.seqmin::text AS min, s.seqmax::text AS max
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
       CROSS JOIN LATERAL (SELECT pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) AS name) ps
       JOIN pg_sequence s ON s.seqrelid = ps.name::regclass
      WHERE c.oid IN (SELECT to_regclass(t) FROM unnest($1::text[]) t) AND ps.name IS NOT NULL`,
    [tables.map((t) => qualified(t.schema, t.name))],
  );
  const out = new Map<string, KeySequence>();
  for (const r of rows) {
    // The sequence's own row: pg_sequences hides last_value before the first nextval after a RESTART.
    const [state] = await q<{ last: string; called: boolean }>(
      client,
      side,
      `SELECT last_value::text AS last, is_called AS called FROM ${r.seq}`,
    );
    const increment = BigInt(r.inc);
    const last = BigInt(state?.last ?? '0');
    out.set(r.key, {
      key: r.key,
      seq: r.seq,
      increment,
      min: BigInt(r.min),
      max: BigInt(r.max),
      last: state?.called ? last + increment : last,
    });
  }
  return out;
}

const residue = (x: bigint, n: bigint) => ((x % n) + n) % n;

/** Whether two sequences can never give the same value. */
export function disjoint(a: Omit<KeySequence, 'key' | 'seq'>, b: Omit<KeySequence, 'key' | 'seq'>): boolean {
  if (a.max < b.min || b.max < a.min) return true;
  const n = a.increment < 0n ? -a.increment : a.increment;
  return n >= 2n && a.increment === b.increment && residue(a.last, n) !== residue(b.last, n);
}

export interface SequencePlan {
  /** Key columns whose sequences would give both sides one value, each with the fix. */
  problems: Finding[];
  /**
   * The target's sequences where the source's steps by n ≥ 2 (the operator's odd/even, or one of
   * n, scheme): given the same step from the next residue, above both sides' values. The operator
   * picks the scheme on the source; pgferry completes it on the target.
   */
  adjust: { key: string; sql: string }[];
}

/** Each key column whose sequences on the two sides may give one value twice. */
export async function planSequences(
  src: pg.Client,
  dst: pg.Client,
  tables: { schema: string; name: string }[],
): Promise<SequencePlan> {
  const [s, t] = await Promise.all([
    keySequences(src, 'source', tables),
    keySequences(dst, 'target', tables),
  ]);
  const plan: SequencePlan = { problems: [], adjust: [] };
  for (const [key, a] of s) {
    const b = t.get(key);
    if (!b || disjoint(a, b)) continue;
    let top = a.last;
    if (b.last > top) top = b.last;
    const n = a.increment < 0n ? -a.increment : a.increment;
    if (n >= 2n && a.increment > 0n) {
      const want = (residue(a.last, n) + 1n) % n;
      const value = top + ((want - residue(top, n) + n) % n);
      plan.adjust.push({ key, sql: `ALTER SEQUENCE ${b.seq} INCREMENT BY ${n} RESTART WITH ${value}` });
      continue;
    }
    const odd = top % 2n === 0n ? top + 1n : top;
    plan.problems.push({
      code: 'two-way-sequences',
      object: key,
      message: `${key} takes its values from ${a.seq} on both sides (increment ${a.increment} on the source, ${b.increment} on the target): both sides would give the same keys`,
      fix: `Give the sides values that never meet: e.g. on the source \`ALTER SEQUENCE ${a.seq} INCREMENT BY 2 RESTART WITH ${odd}\` (odd keys; pgferry then gives the target the even ones), or disjoint MINVALUE..MAXVALUE ranges on each side, or uuid keys`,
    });
  }
  return plan;
}

/**
 * What `pgferry preflight --two-way` reports before a run: trigger capture, and each key sequence
 * of the source that steps by 1 (both sides would give the same keys; with the source on odd
 * values pgferry gives the target the even ones; disjoint ranges are checked once the target has
 * its copy), compared with the target's when it has the tables already.
 */
export async function twoWayProblems(
  src: pg.Client,
  dst: pg.Client,
  tables: { schema: string; name: string }[],
  capture: string,
): Promise<Finding[]> {
  const out: Finding[] = [];
  if (capture !== 'triggers') {
    out.push({
      code: 'two-way-capture',
      message: `two-way sync needs --capture triggers, not ${capture}: only the trigger capture can skip pgferry's own writes`,
      fix: 'Run with --capture triggers (the default).',
    });
  }
  const plan = await planSequences(src, dst, tables);
  out.push(...plan.problems);
  const onTarget = new Set([...plan.adjust.map((a) => a.key), ...plan.problems.map((p) => p.object)]);
  for (const [key, a] of await keySequences(src, 'source', tables)) {
    if (onTarget.has(key) || (a.increment !== 1n && a.increment !== -1n)) continue;
    const odd = a.last % 2n === 0n ? a.last + 1n : a.last;
    out.push({
      code: 'two-way-sequences',
      object: key,
      message: `${key} takes its values from ${a.seq}, stepping by ${a.increment}: both sides would give the same keys`,
      fix: `On the source \`ALTER SEQUENCE ${a.seq} INCREMENT BY 2 RESTART WITH ${odd}\` (odd keys; pgferry gives the target the even ones), or disjoint MINVALUE..MAXVALUE ranges on each side, or uuid keys`,
    });
  }
  return out;
}
