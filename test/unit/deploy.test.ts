// deploy/: the dashboard and the alert rules use only metrics that pgferry's registry defines, every
// dashboard query is scoped to the `instance` variable, every rule has a runbook section in
// docs/operations.md, and Prometheus's own promtool parses the rules, the dashboard's queries, and
// passes the rules' unit tests (deploy/alerts.test.yml).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PHASES } from '../../checkpoints/store.js';
import { Metrics } from '../../src/metrics.js';

const root = new URL('../../', import.meta.url);
const file = (f: string) => new URL(f, root).pathname;
const read = (f: string) => fs.readFileSync(file(f), 'utf8');

/** Every series name the registry exposes (histograms with their _bucket, _sum and _count). */
async function registered(): Promise<Set<string>> {
  const metrics = new Metrics(() => ({ phase: 'copy', downtimeSeconds: null }));
  const names = new Set<string>();
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === 'histogram')
      for (const s of ['_bucket', '_sum', '_count']) names.add(`${m.name}${s}`);
  }
  return names;
}

/** Metric names in PromQL: pgferry's own and prom-client's default process and Node.js metrics. */
const METRIC = /\b((?:pgferry|process|nodejs)_[a-z0-9_]+)(\{[^}]*\})?/g;
const metricsIn = (text: string) => new Set([...text.matchAll(METRIC)].map((m) => m[1]!));

interface Panel {
  type: string;
  title: string;
  targets?: { expr: string }[];
  panels?: Panel[];
  fieldConfig?: { defaults?: { mappings?: { options: Record<string, { text: string }> }[] } };
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: unknown }[] };
}

const dashboard = () => JSON.parse(read('deploy/grafana-dashboard.json')) as Dashboard;
const allPanels = (ps: Panel[]): Panel[] => ps.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
const queries = (d: Dashboard) =>
  allPanels(d.panels).flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));

/** The alert rules, split on `- alert:`: each rule's name and the text of its definition. */
const rules = () =>
  read('deploy/alerts.yml')
    .split(/^\s*- alert: /m)
    .slice(1)
    .map((text) => ({ name: text.split('\n')[0]!.trim(), text }));

function promtool(args: string[], cwd: string): string {
  const found = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  if (found.error) {
    throw new Error(
      "promtool is not installed: it comes with Debian's `prometheus` package (apt-get install prometheus); .ci/run installs it",
    );
  }
  try {
    return execFileSync('promtool', args, { cwd, encoding: 'utf8', stdio: 'pipe' });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`promtool ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

describe('deploy/', () => {
  it('the Grafana dashboard is valid JSON and uses only metrics the registry defines', async () => {
    const defined = await registered();
    const names = metricsIn(
      queries(dashboard())
        .map((q) => q.expr)
        .join('\n'),
    );
    expect(names.size).toBeGreaterThan(10);
    for (const n of names) expect(defined, `${n} is not a metric pgferry defines`).toContain(n);
  });

  it('a metric the registry does not know fails that check', async () => {
    const defined = await registered();
    expect(defined.has('pgferry_phase')).toBe(true);
    expect(defined.has('process_start_time_seconds')).toBe(true);
    expect(defined.has('pgferry_no_such_metric')).toBe(false);
    expect(metricsIn('rate(pgferry_no_such_metric{instance=~"$instance"}[5m])')).toContain(
      'pgferry_no_such_metric',
    );
  });

  it('every dashboard query is scoped to the instance variable', () => {
    const d = dashboard();
    const instance = d.templating.list.find((v) => v.name === 'instance');
    expect(instance?.type).toBe('query');
    for (const q of queries(d)) {
      const selectors = [...q.expr.matchAll(METRIC)];
      expect(selectors.length, q.panel).toBeGreaterThan(0);
      for (const m of selectors) expect(m[2] ?? '', `${q.panel}: ${m[1]}`).toContain('instance=~"$instance"');
    }
  });

  it('the phase panels name every phase', () => {
    const phasePanels = allPanels(dashboard().panels).filter((p) =>
      (p.targets ?? []).some((t) => t.expr.includes('pgferry_phase')),
    );
    expect(phasePanels.map((p) => p.type).sort()).toEqual(['stat', 'state-timeline']);
    for (const p of phasePanels) {
      const options = p.fieldConfig?.defaults?.mappings?.[0]?.options ?? {};
      expect(PHASES.map((_, i) => options[String(i)]?.text)).toEqual([...PHASES]);
      for (const [i, phase] of PHASES.entries()) {
        if (i > 0) expect(p.targets![0]!.expr).toContain(`${i} * max by (instance) (pgferry_phase{`);
        expect(p.targets![0]!.expr.includes(`phase="${phase}"`)).toBe(i > 0);
      }
    }
  });

  it('the alert rules use only metrics the registry defines', async () => {
    const defined = await registered();
    const names = metricsIn(read('deploy/alerts.yml'));
    expect(names.size).toBeGreaterThan(8);
    for (const n of names) expect(defined, `${n} is not a metric pgferry defines`).toContain(n);
  });

  it('every alert rule has a runbook_url to its section of docs/operations.md', () => {
    const headings = new Set(
      [...read('docs/operations.md').matchAll(/^#{2,4} (.+)$/gm)].map((m) => m[1]!.trim()),
    );
    const all = rules();
    expect(all.length).toBeGreaterThan(10);
    for (const r of all) {
      expect(r.text, r.name).toContain(`runbook_url: "docs/operations.md#${r.name.toLowerCase()}"`);
      expect(headings, `docs/operations.md has no section "${r.name}"`).toContain(r.name);
    }
  });

  it("promtool checks the rules and the scrape config, and passes the rules' unit tests", () => {
    expect(promtool(['check', 'rules', 'alerts.yml'], file('deploy/'))).toContain('SUCCESS');
    expect(promtool(['check', 'config', 'prometheus.yml'], file('deploy/'))).toContain('SUCCESS');
    const out = promtool(['test', 'rules', 'alerts.test.yml'], file('deploy/'));
    expect(out).toContain('SUCCESS');
    // Every rule is exercised by at least one test case.
    const tested = new Set(
      [...read('deploy/alerts.test.yml').matchAll(/alertname: (\w+)/g)].map((m) => m[1]!),
    );
    const untested = rules()
      .map((r) => r.name)
      .filter((n) => !tested.has(n));
    expect(untested).toEqual([]);
  });

  it('promtool parses every dashboard query', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-dash-'));
    try {
      const exprs = queries(dashboard()).map((q) => q.expr.replaceAll('$instance', '.+'));
      const yaml = [
        'groups:',
        '  - name: dashboard',
        '    rules:',
        ...exprs.flatMap((e, i) => [
          `      - record: dashboard_query_${i}`,
          `        expr: ${JSON.stringify(e)}`,
        ]),
      ].join('\n');
      fs.writeFileSync(path.join(dir, 'dashboard.yml'), `${yaml}\n`);
      expect(promtool(['check', 'rules', 'dashboard.yml'], dir)).toContain(
        `SUCCESS: ${exprs.length} rules found`,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
