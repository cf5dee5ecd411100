// The Dockerfile replayer's own rules (test/support/dockerfile.ts): what it skips, it checks.
import { describe, expect, it } from 'vitest';
import { dockerignore, osPackageLine, parseDockerfile } from '../support/dockerfile.js';

describe('Dockerfile replayer', () => {
  it('skips an apt-get line only when it does nothing but install packages', () => {
    const line =
      'apt-get update && apt-get install -y --no-install-recommends ca-certificates tini && rm -rf /var/lib/apt/lists/*';
    expect(osPackageLine(line, 1)).toEqual(['ca-certificates', 'tini']);
    expect(() => osPackageLine('apt-get install -y tini && npm ci', 1)).toThrow(/`npm ci`/);
    expect(() => osPackageLine('apt-get update; mkdir /state', 1)).toThrow(/`mkdir \/state`/);
    expect(osPackageLine('npm run build && npm prune --omit=dev', 1)).toBeNull();
  });

  it('joins continued lines and drops comments inside them', () => {
    const ins = parseDockerfile('FROM x AS b\n# c\nRUN a \\\n# inner\n && b\nCMD ["m"]\n');
    expect(ins.map((i) => [i.keyword, i.args.replace(/\s+/g, ' '), i.line])).toEqual([
      ['FROM', 'x AS b', 1],
      ['RUN', 'a && b', 3],
      ['CMD', '["m"]', 6],
    ]);
  });

  it('reads .dockerignore as Docker does: anchored at the root, ** across directories, ! re-includes', () => {
    const ignored = dockerignore('# c\ndist\n**/node_modules\n**/*.sqlite\n/tmp/\n*.md\n!README.md\n');
    expect(ignored('dist')).toBe(true);
    expect(ignored('dist/src/cli.js')).toBe(true);
    expect(ignored('src/dist')).toBe(false);
    expect(ignored('node_modules/pg/index.js')).toBe(true);
    expect(ignored('a/b/node_modules')).toBe(true);
    expect(ignored('run.sqlite')).toBe(true);
    expect(ignored('state/run.sqlite')).toBe(true);
    expect(ignored('run.sqlite-wal')).toBe(false);
    expect(ignored('tmp/x')).toBe(true);
    expect(ignored('docs/a.md')).toBe(false);
    expect(ignored('NOTES.md')).toBe(true);
    expect(ignored('README.md')).toBe(false);
  });
});
