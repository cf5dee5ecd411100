// What each bench entry point shares: whole-number flags, the check that the CLI is built (the
// benches run it as users do), the results file under bench/results/, the machine's facts, and a
// cleanup that runs once however the bench ends.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** True when `moduleUrl` is the script node was started with (`npm run bench:<name>`). */
export const isMain = (moduleUrl: string): boolean =>
  Boolean(process.argv[1]) && path.resolve(process.argv[1]!) === fileURLToPath(moduleUrl);

/** A flag's whole-number value (or the fallback when absent); exits 2 naming the flag otherwise. */
export function wholeNumber(flag: string, raw: string | undefined, fallback: number, min = 1): number {
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${flag} must be a whole number of at least ${min}, not "${raw}"`);
    process.exit(2);
  }
  return n;
}

export function requireBuiltCli(): void {
  if (!fs.existsSync(path.join(HERE, '../dist/src/cli.js'))) {
    console.error('dist/ is missing: run `npm run build` first (the bench runs the built CLI)');
    process.exit(2);
  }
}

/** Writes bench/results/<name>-<date><suffix>.json and says where. */
export function writeResults(name: string, date: string, suffix: string, data: object): void {
  const out = path.join(HERE, 'results', `${name}-${date}${suffix}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify(data, null, 2)}\n`);
  console.error(`[bench] results written to ${path.relative(process.cwd(), out)}`);
}

/**
 * The command line of a bench driven by pgbench's scale (`--scale N`, `--quick`): runs it, prints
 * its markdown, keeps its results; a failure is printed and exits 1.
 */
export async function scaleBenchMain(
  name: string,
  defaults: { full: number; quick: number },
  bench: (o: { scale: number; quick: boolean }) => Promise<{ result: { date: string }; markdown: string }>,
): Promise<void> {
  const { values: flags } = parseArgs({
    options: { scale: { type: 'string' }, quick: { type: 'boolean', default: false } },
  });
  const quick = flags.quick ?? false;
  const defaultScale = quick ? defaults.quick : defaults.full;
  const scale = wholeNumber('scale', flags.scale, defaultScale);
  requireBuiltCli();
  try {
    const { result, markdown } = await bench({ scale, quick });
    console.log(markdown);
    const suffix = `${quick ? '-quick' : ''}${scale !== defaultScale ? `-s${scale}` : ''}`;
    writeResults(name, result.date, suffix, { ...result, markdown });
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  }
}

/** The machine a figure was taken on. */
export const hostFacts = () => ({
  cpus: os.cpus().length,
  memoryGB: Math.round(os.totalmem() / 1024 ** 3),
  node: process.version,
});

/**
 * Runs a bench, then `cleanup` (once, whatever happens). A SIGINT or SIGTERM meanwhile says what it
 * stops (`stopping`), runs `cleanup` and exits 130.
 */
export async function withCleanup<T>(
  say: (msg: string) => void,
  stopping: string,
  cleanup: () => Promise<void>,
  run: () => Promise<T>,
): Promise<T> {
  let cleaned: Promise<void> | undefined;
  const once = () => {
    cleaned ??= cleanup();
    return cleaned;
  };
  const onSignal = (signal: NodeJS.Signals) => {
    say(`${signal}: stopping ${stopping}`);
    void once().then(() => process.exit(130));
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, onSignal);
  try {
    return await run();
  } finally {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.off(signal, onSignal);
    await once();
  }
}
