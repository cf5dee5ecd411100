// The documents name only what exists: every `pgferry <command>` a document shows is a command,
// every flag on it one of that command's options, every other --flag an option of some command
// (or of a tool named in the allowlist below), every pgferry_* metric one the registry exposes,
// every PGFERRY_* name an error code or a variable the code reads, and every path a file or
// folder of the repository.
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../../lib/error-codes.js';
import { DumpRestoreMetrics } from '../../src/dump-restore-metrics.js';
import { Metrics } from '../../src/metrics.js';
import { WalgMetrics } from '../../src/walg-metrics.js';

const root = path.resolve(new URL('../..', import.meta.url).pathname);
const DOCS = [
  'README.md',
  'deploy/README.md',
  'bench/README.md',
  ...fs
    .readdirSync(path.join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const read = (f: string) => fs.readFileSync(path.join(root, f), 'utf8');

/** Flags of other programs that the documents mention, each with the program it belongs to. */
const OTHER_TOOLS: Record<string, string> = {
  '--snapshot': 'pg_dump',
  '--section': 'pg_dump',
  '--schema-only': 'pg_dump',
  '--large-objects': 'pg_dump',
  '--no-owner': 'pg_dump / pg_restore',
  '--no-acl': 'pg_dump / pg_restore',
  '--single-transaction': 'psql',
  '--omit': 'npm install --omit=dev',
  '--ignore-scripts': 'npm ci',
  '--init': 'docker run',
  '--name': 'docker run',
  '--rm': 'docker run',
  '--allow-scripts': 'npm install',
  '--scale': 'npm run bench',
  '--quick': 'npm run bench',
  '--rounds': 'npm run bench:copy',
  '--backlog': 'npm run bench:replay',
  '--tables': 'npm run bench:drift-cost',
  '--samples': 'npm run bench:drift-cost',
  '--split-tables-larger-than': 'pgcopydb',
  '--table-jobs': 'pgcopydb',
  '--index-jobs': 'pgcopydb',
  '--no-compression': 'pg_dump',
  '--format': 'pg_dump',
  '--jobs': 'pg_dump / pgbench',
  '--exclude-schema': 'pg_dump',
  '--exit-on-error': 'pg_restore',
  '--dir': 'pgcopydb',
  '--data-only': 'pg_dump / pg_restore',
  '--table': 'pg_dump',
  '--list': 'pg_restore',
  '--max-semi-space-size': 'node, in the container ENTRYPOINT',
  '--initial-old-space-size': 'node, in the container ENTRYPOINT',
  '--trace-gc': 'node',
};

interface Cmd {
  name: string;
  flags: Set<string>;
}

// The built CLI (npm test builds first): src/cli.ts reads the version from the package.json beside dist/.
const { buildProgram } = (await import(new URL('../../dist/src/cli.js', import.meta.url).href)) as {
  buildProgram: () => Command;
};

function commands(): Map<string, Cmd> {
  const out = new Map<string, Cmd>();
  const walk = (c: Command, prefix: string) => {
    for (const sub of c.commands) {
      const name = `${prefix}${sub.name()}`;
      const flags = new Set(['--help', ...sub.options.map((o) => o.long!).filter(Boolean)]);
      out.set(name, { name, flags });
      walk(sub, `${name} `);
    }
  };
  walk(buildProgram(), '');
  return out;
}

/** Code: fenced blocks' lines and inline code spans, with the document and line they are on. */
function codeIn(file: string): { text: string; where: string }[] {
  const found: { text: string; where: string }[] = [];
  let fenced = false;
  read(file)
    .split('\n')
    .forEach((line, i) => {
      const where = `${file}:${i + 1}`;
      if (line.trimStart().startsWith('```')) {
        fenced = !fenced;
        return;
      }
      if (fenced) found.push({ text: line, where });
      else for (const m of line.matchAll(/`([^`]+)`/g)) found.push({ text: m[1]!, where });
    });
  return found;
}

describe('the documents', () => {
  const cmds = commands();
  const allFlags = new Set([...cmds.values()].flatMap((c) => [...c.flags]));

  it('show only commands that exist, each with its own flags', () => {
    const wrong: string[] = [];
    for (const file of DOCS) {
      for (const { text, where } of codeIn(file)) {
        // A command is what starts the code or follows a separator: `pgferry ctl pause`,
        // `npx pgferry demo`, `... && pgferry status`; the word pgferry in output or prose is not.
        for (const segment of text.split(/&&|;|\||\$\(/)) {
          const m = /^\s*(?:\$\s+)?(?:npx\s+)?pgferry\s+([a-z][a-z-]*)(?:\s+([a-z][a-z-]*))?/.exec(segment);
          if (!m) continue;
          const cmd = (m[2] && cmds.get(`${m[1]} ${m[2]}`)) || cmds.get(m[1]!);
          if (!cmd) {
            wrong.push(`${where}: pgferry ${m[1]} is not a command`);
            continue;
          }
          // Its flags, up to a comment.
          const rest = segment.slice(m[0].length).split(/\s#/)[0]!;
          for (const f of rest.matchAll(/(?<![\w-])(--[a-z][a-z-]*)/g)) {
            if (!cmd.flags.has(f[1]!)) wrong.push(`${where}: pgferry ${cmd.name} has no ${f[1]}`);
          }
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('name only flags that some command (or a tool they name) has', () => {
    const wrong: string[] = [];
    for (const file of DOCS) {
      read(file)
        .split('\n')
        .forEach((line, i) => {
          for (const f of line.matchAll(/(?<![\w-])(--[a-z][a-z-]*)/g)) {
            if (!allFlags.has(f[1]!) && !(f[1]! in OTHER_TOOLS)) wrong.push(`${file}:${i + 1}: ${f[1]}`);
          }
        });
    }
    expect(wrong).toEqual([]);
  });

  it('name only metrics that pgferry exposes', async () => {
    const metrics = new Metrics(() => ({ phase: 'copy', downtimeSeconds: null }));
    const names = new Set<string>();
    for (const m of [
      ...(await metrics.registry.getMetricsAsJSON()),
      ...(await new DumpRestoreMetrics().registry.getMetricsAsJSON()),
      ...(await new WalgMetrics(async () => ({}) as never).registry.getMetricsAsJSON()),
    ]) {
      names.add(m.name);
      for (const s of ['_bucket', '_sum', '_count']) names.add(`${m.name}${s}`);
    }
    const wrong: string[] = [];
    for (const file of DOCS) {
      // Not a metric: a placeholder (pgferry_capture_<run>) or a JSON key (clone.pgferry_s).
      for (const m of read(file).matchAll(/(?<![\w.])pgferry_[a-z0-9_]+(?![<\w])/g)) {
        if (!names.has(m[0])) wrong.push(`${file}: ${m[0]}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('name only PGFERRY_* error codes and variables that exist', () => {
    const source = ['src', 'lib', 'engine', 'checkpoints', 'sinks', 'bin']
      .flatMap((d) =>
        fs
          .readdirSync(path.join(root, d), { recursive: true, encoding: 'utf8' })
          .map((f) => path.join(root, d, f)),
      )
      .filter((f) => /\.(ts|js)$/.test(f))
      .map((f) => fs.readFileSync(f, 'utf8'))
      .join('\n');
    const wrong: string[] = [];
    for (const file of [...DOCS, 'Dockerfile']) {
      for (const m of read(file).matchAll(/\bPGFERRY_[A-Z0-9_]+\b/g)) {
        if (!(m[0] in ERRORS) && !new RegExp(`env\\.${m[0]}\\b|env\\[?'${m[0]}'`).test(source))
          wrong.push(`${file}: ${m[0]}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('point only at files and folders that exist', () => {
    const wrong: string[] = [];
    const PATH =
      /(?<![\w/.-])((?:engine|src|sinks|checkpoints|deploy|docs|test|bench|scripts|bin|\.ci)\/[\w./-]*[\w/])/g;
    for (const file of DOCS) {
      const text = read(file);
      for (const m of text.matchAll(PATH)) {
        const p = m[1]!;
        // Placeholders and globs name a family of files, not one.
        if (/^[\w.-]*[<*{…]/.test(text.slice(m.index! + p.length, m.index! + p.length + 40))) continue;
        if (!fs.existsSync(path.join(root, p))) wrong.push(`${file}: ${p}`);
      }
      for (const m of text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue;
        if (!fs.existsSync(path.resolve(path.dirname(path.join(root, file)), target)))
          wrong.push(`${file}: link ${target}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
