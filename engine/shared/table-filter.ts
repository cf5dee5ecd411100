// --include / --exclude patterns. A pattern matches `schema.table` (identifiers unquoted, as
// stored in the catalog) with `*` as a wildcard; a pattern without a dot matches the table name in
// any schema. A partition follows its partitioned root: a partitioned table is copied whole or not.

export interface TableFilter {
  readonly include: readonly string[];
  readonly exclude: readonly string[];
}

function compile(pattern: string): RegExp {
  const body = pattern
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return pattern.includes('.') ? new RegExp(`^${body}$`, 's') : new RegExp(`^[^]*?\\.${body}$`, 's');
}

export function makeMatcher(filter: TableFilter): (schema: string, table: string) => boolean {
  const inc = filter.include.map(compile);
  const exc = filter.exclude.map(compile);
  return (schema, table) => {
    const name = `${schema}.${table}`;
    if (inc.length > 0 && !inc.some((re) => re.test(name))) return false;
    return !exc.some((re) => re.test(name));
  };
}
