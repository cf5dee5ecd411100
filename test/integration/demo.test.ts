// `pgferry demo` end to end, as a user runs it: every step told, the cutover made while the shop
// writes, the tables equal, and nothing
// left behind (no server process, no directory).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { SUPERUSER_PASSWORD } from '../support/cluster.js';

const PREFIX = 'pgferry-demo-';

const demoDirs = () => new Set(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith(PREFIX)));

/** Command lines of every process still mentioning `dir` (a server's `-D dir/.../data`). */
function processesIn(dir: string): string[] {
  const found: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(dir)) found.push(`${pid} ${cmd}`);
    } catch {
      // the process ended meanwhile
    }
  }
  return found;
}

describe('pgferry demo', () => {
  it('migrates a live sample shop, proves the tables equal, and cleans up', async () => {
    const before = demoDirs();
    const res = await runCli(['demo', '--rows', '5000']);
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0);

    for (let step = 1; step <= 7; step++) expect(res.stdout).toMatch(new RegExp(`^${step}/7 `, 'm'));
    expect(res.stdout).toMatch(/copy 100%/);
    expect(res.stdout).toMatch(/replicating · lag/);
    // The cutover, while the shop writes: frozen, drained, verified, the downtime told.
    expect(res.stdout).toMatch(/writes frozen on the source \(\w+\)/);
    expect(res.stdout).toMatch(/verified: equal/);
    expect(res.stdout).toMatch(/the shop could not write for \d+\.\d\ds/);
    expect(res.stdout).toMatch(/cut over with \d+\.\d\ds of write downtime/);
    for (const table of ['customers', 'orders', 'order_items', 'events']) {
      expect(res.stdout).toMatch(new RegExp(`public\\.${table}\\s+[\\d,]+\\s+[\\d,]+\\s+equal`));
    }
    expect(res.stdout).not.toMatch(/DIFFER/);
    expect(res.stdout).toMatch(/every table is equal on both sides/);
    expect(res.stdout).toMatch(/the source holds nothing of pgferry any more/);
    expect(res.stdout).not.toContain(SUPERUSER_PASSWORD);

    const dir = /Stopped both servers and deleted (\S+)\.$/m.exec(res.stdout)?.[1];
    expect(dir).toBeDefined();
    expect(path.basename(dir!).startsWith(PREFIX)).toBe(true);
    expect(fs.existsSync(dir!)).toBe(false);
    expect(processesIn(dir!)).toEqual([]);
    // Nothing new under the prefix either, but for a demo another process is running right now.
    const left = [...demoDirs()].filter((d) => !before.has(d));
    expect(left.filter((d) => processesIn(path.join(os.tmpdir(), d)).length === 0)).toEqual([]);
  });

  it('refuses a sample size out of range with a usage error', async () => {
    const res = await runCli(['demo', '--rows', '12']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/PGFERRY_CONFIG_INVALID: .*--rows "12"/);
  });
});
