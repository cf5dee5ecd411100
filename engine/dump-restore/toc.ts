// A directory dump's table of contents as `pg_restore --list` prints it, one entry per line:
// `ID; TABLEOID OID TYPE SCHEMA NAME OWNER`, where TYPE may hold spaces (FK CONSTRAINT) and NAME
// too (a constraint is named "table constraint"). The entries a restore keeps are passed back to
// pg_restore as a list (--use-list), line for line; pg_restore's --section picks a section's entries.

export interface TocEntry {
  line: string;
  type: string;
  /** '-' for objects outside any schema. */
  schema: string;
  name: string;
}

// Multi-word types first, longest first, so that "MATERIALIZED VIEW DATA" is not read as "MATERIALIZED VIEW".
const TYPES = [
  'MATERIALIZED VIEW DATA',
  'TEXT SEARCH CONFIGURATION',
  'TEXT SEARCH DICTIONARY',
  'TEXT SEARCH TEMPLATE',
  'TEXT SEARCH PARSER',
  'FOREIGN DATA WRAPPER',
  'SEQUENCE OWNED BY',
  'PUBLICATION TABLE',
  'MATERIALIZED VIEW',
  'CHECK CONSTRAINT',
  'OPERATOR FAMILY',
  'OPERATOR CLASS',
  'FK CONSTRAINT',
  'EVENT TRIGGER',
  'FOREIGN TABLE',
  'ACCESS METHOD',
  'INDEX ATTACH',
  'TABLE ATTACH',
  'ROW SECURITY',
  'SEQUENCE SET',
  'USER MAPPING',
  'LARGE OBJECT',
  'DEFAULT ACL',
  'TABLE DATA',
  'BLOB DATA',
];

export function parseToc(text: string): TocEntry[] {
  const entries: TocEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^\d+;\s+\d+\s+\d+\s+(.*)$/.exec(line);
    if (!m) continue;
    const rest = m[1]!;
    const type = TYPES.find((t) => rest.startsWith(`${t} `)) ?? rest.split(' ')[0]!;
    const words = rest.slice(type.length + 1).split(' ');
    const schema = words[0] ?? '-';
    // The owner is the last word (empty with --no-owner dumps it is still printed); the name is between.
    const name = words.slice(1, -1).join(' ');
    entries.push({ line, type, schema, name });
  }
  return entries;
}
