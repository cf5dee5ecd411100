// The live status page in a real headless browser (Debian's chromium, driven by playwright-core,
// no browser download) against `migrate --http` on real clusters: it shows the phase, the servers
// (host and database, no user or password anywhere), the copy's pace and ETA, the tables, the
// phases with their times, the backlog per table, warnings apart from the events (newest first),
// a target outage while it lasts, verify and cutover as operations with their outcome and the
// write downtime; the token typed into it pauses and resumes replay, and a wrong token shows the
// API's error. The screenshot README.md shows (docs/status-page.png) is taken here.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCli } from '../support/cli.js';
import { type Cluster, freePort, startCluster } from '../support/cluster.js';
import { startProxy } from '../support/proxy.js';
import { waitFor } from '../support/wait.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = fs.existsSync(CHROMIUM);
if (!hasChromium) {
  console.warn(`status-page test skipped: ${CHROMIUM} is missing (apt-get install chromium; .ci/run does)`);
}
const TOKEN = 'page-token-8d2e61b0c3';
// A login of its own, so that the page can be searched for its name and password.
const USER = 'ferry_login_q7z';
const PASSWORD = 'pw-Zx81kq0-never-shown';
const SCREENSHOT = path.resolve(import.meta.dirname, '../../docs/status-page.png');

let source: Cluster;
let target: Cluster;
let proxy: Awaited<ReturnType<typeof startProxy>> | undefined;
let dir: string;
let daemon: ReturnType<typeof startCli> | undefined;
let browser: BrowserContext | undefined;

beforeAll(async () => {
  if (!hasChromium) return;
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-page-'));
  await source.query('CREATE DATABASE app');
  await target.query('CREATE DATABASE app');
  for (const c of [source, target])
    await c.query(`CREATE ROLE ${USER} LOGIN SUPERUSER PASSWORD '${PASSWORD}'`);
  await source.query(
    `CREATE TABLE customers (id int PRIMARY KEY, name text);
     INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 3000) g;
     CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int, total numeric);
     INSERT INTO orders SELECT g, g % 3000 + 1, g * 1.5 FROM generate_series(1, 20000) g;`,
    [],
    'app',
  );
});

afterAll(async () => {
  await browser?.close().catch(() => {});
  if (daemon) {
    daemon.child.kill('SIGTERM');
    await daemon.done;
  }
  await proxy?.close();
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!hasChromium)('status page', () => {
  it('shows the run, its servers, operations and outages, and pauses, verifies and cuts over with the token', async () => {
    const port = await freePort();
    proxy = await startProxy(target.port);
    const api = `http://127.0.0.1:${port}`;
    daemon = startCli(
      [
        'migrate',
        '--http',
        `127.0.0.1:${port}`,
        '--source',
        source.url({ db: 'app', user: USER, password: PASSWORD }),
        '--target',
        proxy.via(target.url({ db: 'app', user: USER, password: PASSWORD })),
        '--state',
        path.join(dir, 'state.sqlite'),
        '--jobs',
        '2',
      ],
      { PGFERRY_API_TOKEN: TOKEN },
    );
    const getStatus = async () => (await (await fetch(`${api}/status`)).json()) as Record<string, unknown>;
    await waitFor('replicating', async () => (await getStatus()).phase === 'replicating').catch((err) => {
      throw new Error(`${(err as Error).message}\npgferry said:\n${daemon?.output().stderr.slice(-3000)}`);
    });

    browser = await chromium.launchPersistentContext(path.join(dir, 'chromium-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1280, height: 900 },
    });
    const page = browser.pages()[0] ?? (await browser.newPage());
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      // The 401 of the wrong-token click is logged by the browser; the page itself must not fail.
      if (msg.type() === 'error' && !msg.text().includes('status of 401')) pageErrors.push(msg.text());
    });
    await page.goto(`${api}/`);

    // What it shows: the phase, both tables fully copied, events, a lag chart.
    await page.locator('#phase', { hasText: 'replicating' }).waitFor({ timeout: 10_000 });
    const orders = page.locator('#tables tr[data-table="public.orders"]');
    await orders.waitFor({ timeout: 10_000 });
    expect(await orders.textContent()).toContain('20,000');
    expect(await orders.textContent()).toContain('100 %');
    expect(await page.locator('#tables tr[data-table="public.customers"]').count()).toBe(1);
    expect(await page.locator('#events li').count()).toBeGreaterThan(0);
    await page.locator('#chart polyline').waitFor({ state: 'attached', timeout: 10_000 });
    expect(await page.locator('#lag').textContent()).toMatch(/\d s$/);

    // The servers by host and database; the copy's pace and ETA; the phases with their times.
    expect(await page.locator('#source-host').textContent()).toBe('127.0.0.1');
    expect(await page.locator('#source-db').textContent()).toBe('app');
    expect(await page.locator('#target-db').textContent()).toBe('app');
    expect(await page.locator('#target-state').textContent()).toBe('reachable');
    expect(await page.locator('#copy-rate').textContent()).toMatch(/[\d,]+ rows\/s · [\d.,]+ \S*B\/s/);
    expect(await page.locator('#copy-eta').textContent()).toBe('done');
    for (const phase of ['schema', 'copy', 'indexes']) {
      const cells = await page.locator(`#phases tr[data-phase="${phase}"] td`).allTextContents();
      expect(cells[0]).toBe(phase);
      expect(cells[2], phase).toMatch(/\d:\d\d/);
    }
    expect(await page.locator('#phases tr[data-phase="replicating"] td').nth(3).textContent()).toBe(
      'running',
    );
    expect(await page.locator('#backlog-tables').textContent()).toContain('no changes waiting');
    expect(await page.locator('#cutover-state').textContent()).toBe('not started');
    expect(await page.locator('#operations').textContent()).toContain('no cutover or verification');
    const noCredentials = async () => {
      for (const text of [await page.content(), await page.locator('body').textContent()]) {
        expect(text).not.toContain(USER);
        expect(text).not.toContain(PASSWORD);
      }
    };
    await noCredentials();

    // No token, then a wrong one: the page says why.
    await page.click('#pause');
    await page.locator('#message', { hasText: 'enter the API token' }).waitFor({ timeout: 5_000 });
    await page.fill('#token', 'not-the-token');
    await page.click('#pause');
    await page.locator('#message', { hasText: 'PGFERRY_API_UNAUTHORIZED' }).waitFor({ timeout: 5_000 });
    expect((await getStatus()).phase).toBe('replicating');

    // The token: pause, and the page and the API agree.
    await page.fill('#token', TOKEN);
    await page.fill('#reason', 'month-end batch on the source');
    await page.click('#pause');
    await page.locator('#phase', { hasText: 'paused' }).waitFor({ timeout: 10_000 });
    await page
      .locator('#pause-reason', { hasText: 'month-end batch on the source' })
      .waitFor({ timeout: 5_000 });
    expect(await getStatus()).toMatchObject({
      phase: 'paused',
      pauseReason: 'month-end batch on the source',
    });
    // The token stays for the tab's life, not beyond it.
    expect(await page.evaluate("sessionStorage.getItem('pgferry.token')")).toBe(TOKEN);
    // The pause is a warning: set apart, and the newest event comes first.
    await page.locator('#problems li.warn', { hasText: 'replay paused' }).waitFor({ timeout: 5_000 });
    expect(await page.locator('#problems-section').isVisible()).toBe(true);
    expect(await page.locator('#events li').first().textContent()).toContain('replay paused');

    // Writes while paused: the page shows the backlog growing; then the picture README.md shows.
    await source.query('INSERT INTO orders SELECT g, 1, 1 FROM generate_series(20001, 20500) g', [], 'app');
    await page.locator('#backlog', { hasText: '500' }).waitFor({ timeout: 10_000 });
    await page
      .locator('#backlog-tables tr[data-table="public.orders"]', { hasText: '500' })
      .waitFor({ timeout: 10_000 });
    await page.waitForTimeout(1_500);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    await page.click('#resume');
    await page.locator('#phase', { hasText: 'replicating' }).waitFor({ timeout: 10_000 });
    expect(await getStatus()).toMatchObject({ phase: 'replicating', pauseReason: null });
    await page.locator('#backlog', { hasText: /^0$/ }).waitFor({ timeout: 20_000 });

    // The target goes away while changes wait: the page shows its outage while it lasts.
    proxy.down();
    await source.query("UPDATE customers SET name = name || '!' WHERE id <= 50", [], 'app');
    await page.locator('#target-state', { hasText: 'UNREACHABLE since' }).waitFor({ timeout: 60_000 });
    expect(await page.locator('#target-state').getAttribute('class')).toBe('state-bad');
    expect(await page.locator('#source-state').textContent()).toBe('reachable');
    proxy.up();
    await page.locator('#target-state', { hasText: /^reachable$/ }).waitFor({ timeout: 90_000 });
    await page.locator('#backlog', { hasText: /^0$/ }).waitFor({ timeout: 30_000 });

    // Verify as an operation: started at once, its outcome in the Operations table.
    await page.check('#checksums');
    await page.click('#verify');
    await page.locator('#message', { hasText: /verify started \(operation / }).waitFor({ timeout: 5_000 });
    const verified = page.locator('#operations tr[data-state="succeeded"]', { hasText: 'verify' });
    await verified.waitFor({ timeout: 60_000 });
    expect(await verified.textContent()).toContain('equal (2 tables, checksums)');

    // The cutover: the operation, then the write downtime and the cutover phase's times.
    page.on('dialog', (dialog) => void dialog.accept());
    await page.selectOption('#freeze', 'revoke');
    await page.click('#cutover');
    await page.locator('#message', { hasText: /cutover started \(operation / }).waitFor({ timeout: 5_000 });
    const cut = page.locator('#operations tr[data-state="succeeded"]', { hasText: 'cutover' });
    await cut.waitFor({ timeout: 60_000 });
    expect(await cut.textContent()).toMatch(/done: write downtime [\d.]+ s \(revoke\)/);
    await page.locator('#phase', { hasText: 'done' }).waitFor({ timeout: 10_000 });
    const downtime = (await getStatus()).cutoverDowntimeSeconds as number;
    expect(downtime).toBeGreaterThan(0);
    expect(await page.locator('#downtime').textContent()).toMatch(/^[\d.]+ s$/);
    expect(await page.locator('#cutover-state').textContent()).toBe('done: the target took over');
    expect(await page.locator('#cutover-times').textContent()).toMatch(/\d:\d\d.* → .*\d:\d\d/);
    await noCredentials();
    expect(pageErrors).toEqual([]);
  });
});
