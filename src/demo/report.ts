// The demo's two reports: the per-table comparison of source and target, and what cleanup removed.
import type { Removed } from '../../engine/capture/cleanup.js';
import { tableHashes } from '../embedded/row-hash.js';
import { int, table } from '../format.js';

export interface Comparison {
  equal: boolean;
  /** Tables compared (a partitioned table with its partitions is one). */
  tables: number;
  /** Tables whose rows differ, or that exist on one side only. */
  different: string[];
  /** The per-table verdicts, ready to print. */
  table: string;
}

/** Compares every user table by row count and a hash of all its rows (a partition counts in its parent). */
export async function compareShop(sourceUrl: string, targetUrl: string): Promise<Comparison> {
  const [s, t] = await Promise.all([tableHashes(sourceUrl), tableHashes(targetUrl)]);
  const names = [...new Set([...s.keys(), ...t.keys()])].sort();
  const different: string[] = [];
  const rows = names.map((name) => {
    const a = s.get(name);
    const b = t.get(name);
    const same = a !== undefined && b !== undefined && a.rows === b.rows && a.hash === b.hash;
    if (!same) different.push(name);
    return [
      name,
      a ? int(a.rows) : 'missing',
      b ? int(b.rows) : 'missing',
      same ? `equal (${a.hash.slice(0, 8)})` : 'DIFFERENT',
    ];
  });
  return {
    equal: different.length === 0 && names.length > 0,
    tables: names.length,
    different,
    table: table(['table', 'source rows', 'target rows', 'rows hash'], rows),
  };
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

export function describeRemoved(removed: Removed[]): string {
  if (removed.length === 0) return 'nothing to remove';
  const count = new Map<string, number>();
  for (const r of removed) count.set(r.kind, (count.get(r.kind) ?? 0) + 1);
  const parts = [...count].map(([kind, n]) => plural(n, kind));
  return `removed ${parts.join(', ')}: the source holds nothing of pgferry any more`;
}
