// The dashboard and the alert rules only use metrics that pgferry defines.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';

const read = (f: string) => fs.readFileSync(new URL(`../../${f}`, import.meta.url), 'utf8');
const defined = new Set([...read('src/metrics.ts').matchAll(/name: '(pgferry_[a-z_]+)'/g)].map((m) => m[1]!));
const used = (text: string) =>
  new Set([...text.matchAll(/\b(pgferry_[a-z_]+?)(?:_bucket|_count|_sum)?\b/g)].map((m) => m[1]!));

describe('deploy/', () => {
  it('the Grafana dashboard is valid JSON and uses only defined metrics', () => {
    const dash = JSON.parse(read('deploy/grafana-dashboard.json')) as {
      panels: { targets: { expr: string }[] }[];
    };
    const exprs = dash.panels.flatMap((p) => p.targets.map((t) => t.expr)).join('\n');
    const names = used(exprs);
    expect(names.size).toBeGreaterThan(5);
    for (const n of names) expect(defined, n).toContain(n);
  });

  it('the alert rules use only defined metrics', () => {
    const names = used(read('deploy/alerts.yml'));
    expect(names.size).toBeGreaterThan(3);
    for (const n of names) expect(defined, n).toContain(n);
  });
});
