// The live status page served at GET /: one self-contained HTML document (no framework, no build
// step, nothing fetched from elsewhere). It polls ./status every second and shows the servers (host
// and database, never a user), each side's outage, lag with a five-minute chart, the copy's pace
// and ETA, the backlog per table, the phases with their times, the cutover's outcome, the running
// and recent operations, warnings and errors apart from the other events (newest first). It sends
// pause, resume, verify and cutover with the token the operator types (kept in sessionStorage, so it
// dies with the tab). Text from the API is set through textContent only. server.ts serves it with a
// CSP that allows exactly these inline blocks. Here: the document's markup and that CSP; its
// stylesheet is status-page-style.ts, its script status-page-script.ts.
import { createHash } from 'node:crypto';
import { statusPageScript } from './status-page-script.js';
import { statusPageStyle } from './status-page-style.js';

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** Content-Security-Policy for the page: its own inline style and script, requests to this origin. */
export const statusPageCsp = [
  "default-src 'none'",
  `style-src ${sha256(statusPageStyle)}`,
  `script-src ${sha256(statusPageScript)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const statusPageHtml = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pgferry</title>
<link rel="icon" href="data:,">
<style>${statusPageStyle}</style>
</head>
<body>
<header>
  <h1>pgferry</h1>
  <span id="phase" class="badge">…</span>
  <span id="pause-reason"></span>
  <span id="updated" class="muted"></span>
</header>
<main>
  <section class="wide problems" id="problems-section" hidden>
    <h2>Warnings and errors</h2>
    <ol id="problems"></ol>
  </section>
  <section>
    <h2>Servers</h2>
    <table>
      <thead><tr><th></th><th>host</th><th>database</th><th>state</th></tr></thead>
      <tbody>
        <tr><th>source</th><td id="source-host">–</td><td id="source-db">–</td><td id="source-state" class="muted">–</td></tr>
        <tr><th>target</th><td id="target-host">–</td><td id="target-db">–</td><td id="target-state" class="muted">–</td></tr>
      </tbody>
    </table>
  </section>
  <section>
    <h2>Cutover</h2>
    <dl>
      <dt>state</dt><dd id="cutover-state">–</dd>
      <dt>write downtime</dt><dd id="downtime">–</dd>
      <dt>reverse replication</dt><dd id="reverse">–</dd>
      <dt>started → finished</dt><dd id="cutover-times">–</dd>
    </dl>
  </section>
  <section>
    <h2>Replication</h2>
    <div class="figures">
      <div class="figure"><span class="muted">lag</span><b id="lag">–</b></div>
      <div class="figure"><span class="muted">backlog</span><b id="backlog">–</b></div>
      <div class="figure"><span class="muted">rate</span><b id="rate">–</b></div>
      <div class="figure"><span class="muted">applied</span><b id="applied">–</b></div>
    </div>
    <svg id="chart" viewBox="0 0 600 140" preserveAspectRatio="none" aria-label="lag over the last 5 minutes"></svg>
  </section>
  <section>
    <h2>Control</h2>
    <div class="controls">
      <input id="token" type="password" placeholder="API token" autocomplete="off" aria-label="API token">
      <input id="reason" type="text" placeholder="pause reason (optional)" aria-label="pause reason">
    </div>
    <div class="controls gap">
      <button id="pause" type="button">Pause</button>
      <button id="resume" type="button">Resume</button>
      <button id="verify" type="button">Verify</button>
      <label><input id="checksums" type="checkbox"> checksums</label>
    </div>
    <div class="controls gap">
      <select id="freeze" aria-label="freeze method">
        <option value="">freeze: daemon default</option>
        <option value="readonly">readonly</option>
        <option value="revoke">revoke</option>
        <option value="external">external</option>
      </select>
      <button id="cutover" type="button" class="danger">Cutover</button>
    </div>
    <div id="message" role="status"></div>
  </section>
  <section class="wide">
    <h2>Operations</h2>
    <table>
      <thead><tr><th>operation</th><th>state</th><th>started</th><th>took</th><th>progress or result</th></tr></thead>
      <tbody id="operations"></tbody>
    </table>
  </section>
  <section class="wide">
    <h2>Copy</h2>
    <div class="figures">
      <div class="figure"><span class="muted">done</span><b id="copy-total">–</b></div>
      <div class="figure"><span class="muted">pace</span><b id="copy-rate">–</b></div>
      <div class="figure"><span class="muted">ETA</span><b id="copy-eta">–</b></div>
    </div>
    <table>
      <thead><tr><th>table</th><th>rows copied / estimate</th><th>progress</th><th>chunks</th><th>format</th></tr></thead>
      <tbody id="tables"></tbody>
    </table>
  </section>
  <section>
    <h2>Backlog per table</h2>
    <table>
      <thead><tr><th>table</th><th>changes waiting</th></tr></thead>
      <tbody id="backlog-tables"></tbody>
    </table>
  </section>
  <section>
    <h2>Phases</h2>
    <table>
      <thead><tr><th>phase</th><th>started</th><th>finished</th><th>took</th></tr></thead>
      <tbody id="phases"></tbody>
    </table>
  </section>
  <section class="wide">
    <h2>Recent events (newest first)</h2>
    <ol id="events"></ol>
  </section>
</main>
<script>${statusPageScript}</script>
</body>
</html>
`;
