// The layout the code is read by: imports flow one way, src/ (the shell) → engine/ → sinks/ and
// checkpoints/ → lib/, and engine/shared/ (what every phase uses) imports no phase; the
// orchestrator fits on a screen and no module grows past what one reads at once. A module that
// breaks a rule fails here, named with what it breaks.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(new URL('../..', import.meta.url).pathname);

/** Which top-level layers (or engine/shared) each layer may import, besides itself and npm packages. */
const ALLOWED: Record<string, string[]> = {
  lib: [],
  checkpoints: ['lib'],
  sinks: ['lib'],
  'engine/shared': ['lib', 'checkpoints', 'sinks'],
  engine: ['lib', 'checkpoints', 'sinks', 'engine/shared'],
  src: ['lib', 'checkpoints', 'sinks', 'engine', 'engine/shared'],
  scripts: ['lib', 'checkpoints', 'sinks', 'engine', 'engine/shared', 'src'],
};

const layerOf = (file: string): string => {
  const rel = path.relative(root, file).split(path.sep);
  if (rel[0] === 'engine' && rel[1] === 'shared') return 'engine/shared';
  return rel[0]!;
};

function sources(dir: string): string[] {
  return fs
    .readdirSync(path.join(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => path.join(root, dir, f));
}

describe('the layout', () => {
  it('imports flow one way: src → engine → sinks, checkpoints → lib', () => {
    const wrong: string[] = [];
    for (const layer of Object.keys(ALLOWED).filter((l) => !l.includes('/'))) {
      for (const file of sources(layer)) {
        const from = layerOf(file);
        const text = fs.readFileSync(file, 'utf8');
        for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
          const to = layerOf(path.resolve(path.dirname(file), m[1]!));
          if (to !== from && !ALLOWED[from]!.includes(to)) {
            wrong.push(`${path.relative(root, file)} (${from}) imports ${m[1]} (${to})`);
          }
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('keeps modules readable: none over 350 lines, the migrate orchestrator about a page', () => {
    const long = ['src', 'lib', 'engine', 'sinks', 'checkpoints', 'scripts']
      .flatMap(sources)
      .map((f) => ({ file: path.relative(root, f), lines: fs.readFileSync(f, 'utf8').split('\n').length }))
      .filter((f) => f.lines > 350)
      .map((f) => `${f.file}: ${f.lines} lines`);
    expect(long).toEqual([]);
    const orchestrator = fs.readFileSync(path.join(root, 'engine/migrate.ts'), 'utf8').split('\n').length;
    expect(orchestrator).toBeLessThanOrEqual(150);
  });
});
