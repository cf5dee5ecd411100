// The live status page served at GET /: one self-contained HTML document (no framework, no build
// step, nothing fetched from elsewhere). It polls ./status every second, keeps the last five minutes
// of lag in memory for the chart, and sends pause, resume and cutover with the token the operator
// types (kept in sessionStorage, so it dies with the tab). Text from the API is set through
// textContent only. server.ts serves it with a CSP that allows exactly these inline blocks.
import { createHash } from 'node:crypto';

const STYLE = `
:root { color-scheme: light dark; --fg: #1d2330; --muted: #6b7385; --bg: #f6f7f9; --card: #fff;
  --line: #dde1e8; --accent: #2f6fdd; --ok: #1f9d55; --warn: #c27c0e; --bad: #c53030; }
@media (prefers-color-scheme: dark) { :root { --fg: #e4e7ee; --muted: #98a0b3; --bg: #14171d;
  --card: #1c2029; --line: #2c3240; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 12px; padding: 12px 20px; border-bottom: 1px solid var(--line);
  background: var(--card); flex-wrap: wrap; }
header h1 { font-size: 18px; margin: 0 8px 0 0; }
main { padding: 16px 20px; display: grid; gap: 16px; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); margin: 0 0 8px; }
.badge { padding: 2px 10px; border-radius: 12px; font-weight: 600; background: var(--line); }
.badge.replicating, .badge.done { background: var(--ok); color: #fff; }
.badge.paused, .badge.cutover { background: var(--warn); color: #fff; }
.badge.failed { background: var(--bad); color: #fff; }
.badge.copy, .badge.schema, .badge.indexes, .badge.preflight { background: var(--accent); color: #fff; }
.muted { color: var(--muted); }
.figures { display: flex; gap: 24px; flex-wrap: wrap; margin-bottom: 8px; }
.figure b { display: block; font-size: 22px; font-variant-numeric: tabular-nums; }
svg { width: 100%; height: 140px; display: block; }
svg .axis { stroke: var(--line); } svg .lag { fill: none; stroke: var(--accent); stroke-width: 2; }
svg text { fill: var(--muted); font-size: 11px; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 500; }
.bar { width: 160px; height: 10px; background: var(--line); border-radius: 5px; overflow: hidden; display: inline-block;
  vertical-align: middle; margin-right: 6px; }
.bar > span { display: block; height: 100%; background: var(--ok); }
ol { list-style: none; margin: 0; padding: 0; max-height: 260px; overflow: auto; font-size: 13px; }
ol li { padding: 3px 0; border-bottom: 1px solid var(--line); }
ol li.warn { color: var(--warn); } ol li.error { color: var(--bad); }
.controls.gap { margin-top: 8px; }
.error { color: var(--bad); }
.controls { display: flex; gap: 8px; flex-wrap: wrap; align-items: center; }
input, select, button { font: inherit; padding: 5px 10px; border-radius: 6px; border: 1px solid var(--line);
  background: var(--bg); color: var(--fg); }
button { cursor: pointer; background: var(--accent); color: #fff; border-color: var(--accent); }
button.danger { background: var(--bad); border-color: var(--bad); }
#message { margin-top: 8px; min-height: 1.4em; } #message.error { color: var(--bad); } #message.ok { color: var(--ok); }
`;

const SCRIPT = `
'use strict';
var WINDOW_MS = 5 * 60 * 1000;
var samples = [];
var $ = function (id) { return document.getElementById(id); };
var tokenInput = $('token');
tokenInput.value = sessionStorage.getItem('pgferry.token') || '';
tokenInput.addEventListener('input', function () { sessionStorage.setItem('pgferry.token', tokenInput.value); });

function fmt(n, digits) {
  if (n === null || n === undefined) return '–';
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 0 : digits });
}
function el(tag, text, cls) {
  var e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function svgEl(tag, attrs) {
  var e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (var k in attrs) e.setAttribute(k, attrs[k]);
  return e;
}

function drawChart() {
  var svg = $('chart');
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  var W = 600, H = 140, L = 44, B = 20, now = Date.now();
  var max = 1;
  samples.forEach(function (s) { if (s.lag > max) max = s.lag; });
  max = Math.ceil(max);
  svg.appendChild(svgEl('line', { x1: L, y1: H - B, x2: W, y2: H - B, class: 'axis' }));
  svg.appendChild(svgEl('line', { x1: L, y1: 4, x2: L, y2: H - B, class: 'axis' }));
  var top = svgEl('text', { x: L - 6, y: 12, 'text-anchor': 'end' }); top.textContent = max + ' s'; svg.appendChild(top);
  var zero = svgEl('text', { x: L - 6, y: H - B, 'text-anchor': 'end' }); zero.textContent = '0'; svg.appendChild(zero);
  var left = svgEl('text', { x: L, y: H - 4 }); left.textContent = '−5 min'; svg.appendChild(left);
  var right = svgEl('text', { x: W, y: H - 4, 'text-anchor': 'end' }); right.textContent = 'now'; svg.appendChild(right);
  var pts = samples.map(function (s) {
    var x = L + ((s.t - (now - WINDOW_MS)) / WINDOW_MS) * (W - L);
    var y = H - B - (s.lag / max) * (H - B - 6);
    return x.toFixed(1) + ',' + y.toFixed(1);
  });
  if (pts.length) svg.appendChild(svgEl('polyline', { points: pts.join(' '), class: 'lag' }));
}

function render(s) {
  var badge = $('phase');
  badge.textContent = s.phase;
  badge.className = 'badge ' + s.phase;
  var outages = s.outage ? [s.outage.source, s.outage.target].filter(Boolean) : [];
  $('pause-reason').textContent = outages.length
    ? outages.map(function (o) { return o.side + ' unreachable since ' + o.since + ' (' + o.attempts + ' attempts)'; }).join('; ')
    : s.interruptedCutover
    ? 'CUTOVER INTERRUPTED: ' + s.interruptedCutover.message + ' (' + s.interruptedCutover.next + ')'
    : s.pauseReason ? 'paused: ' + s.pauseReason : '';
  $('lag').textContent = s.lagSeconds === null ? '–' : fmt(s.lagSeconds, 1) + ' s';
  $('backlog').textContent = fmt(s.backlog);
  $('rate').textContent = s.changesPerSec === null ? '–' : fmt(s.changesPerSec, 1) + '/s';
  $('applied').textContent = fmt(s.replay ? s.replay.appliedTotal : null);
  $('copy-total').textContent = s.copy ? fmt(s.copy.percent, 1) + ' %' : '–';

  var body = $('tables');
  while (body.firstChild) body.removeChild(body.firstChild);
  (s.tables || []).forEach(function (t) {
    var tr = el('tr');
    tr.dataset.table = t.table;
    tr.appendChild(el('td', t.table));
    tr.appendChild(el('td', fmt(t.rowsCopied) + ' / ' + (t.rowsEstimate > 0 ? fmt(t.rowsEstimate) : '?')));
    var td = el('td'), bar = el('span', undefined, 'bar'), fill = el('span');
    fill.style.width = Math.max(0, Math.min(100, t.percent)) + '%';
    bar.appendChild(fill); td.appendChild(bar); td.appendChild(document.createTextNode(fmt(t.percent, 1) + ' %'));
    tr.appendChild(td);
    tr.appendChild(el('td', t.chunksDone + ' / ' + t.chunksTotal));
    tr.appendChild(el('td', t.format));
    body.appendChild(tr);
  });
  if (!s.tables || !s.tables.length) {
    var empty = el('tr'), cell = el('td', 'no tables planned yet', 'muted');
    cell.colSpan = 5; empty.appendChild(cell); body.appendChild(empty);
  }

  var events = $('events');
  while (events.firstChild) events.removeChild(events.firstChild);
  (s.events || []).forEach(function (e) {
    var when = new Date(e.at);
    var li = el('li', (isNaN(when) ? e.at : when.toLocaleTimeString()) + '  ' + (e.phase || '-') + ': ' + e.message, e.level);
    events.appendChild(li);
  });

  var now = Date.now();
  if (typeof s.lagSeconds === 'number') samples.push({ t: now, lag: s.lagSeconds });
  while (samples.length && samples[0].t < now - WINDOW_MS) samples.shift();
  drawChart();
}

async function poll() {
  try {
    var res = await fetch('status', { cache: 'no-store' });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    render(await res.json());
    $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    $('updated').className = 'muted';
  } catch (err) {
    $('updated').textContent = 'cannot reach pgferry: ' + err.message;
    $('updated').className = 'error';
  }
  setTimeout(poll, 1000);
}

function say(text, kind) { var m = $('message'); m.textContent = text; m.className = kind; }

async function control(route, body) {
  var token = tokenInput.value.trim();
  if (!token) { say('enter the API token (PGFERRY_API_TOKEN) first', 'error'); tokenInput.focus(); return; }
  say(route + '…', 'muted');
  try {
    var res = await fetch(route, {
      method: 'POST',
      headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
      body: JSON.stringify(body || {}),
    });
    var answer = await res.json().catch(function () { return {}; });
    if (!res.ok) {
      var e = answer.error || {};
      say(route + ' failed: ' + (e.code ? e.code + ': ' : '') + (e.message || 'HTTP ' + res.status), 'error');
      return;
    }
    var detail = route === 'cutover' && answer.downtimeSeconds !== undefined
      ? ' (write downtime ' + fmt(answer.downtimeSeconds, 2) + ' s)' : '';
    say(route + ': ok' + detail, 'ok');
  } catch (err) {
    say(route + ' failed: ' + err.message, 'error');
  }
}

$('pause').addEventListener('click', function () {
  var reason = $('reason').value.trim();
  control('pause', reason ? { reason: reason } : {});
});
$('resume').addEventListener('click', function () { control('resume'); });
$('cutover').addEventListener('click', function () {
  var freeze = $('freeze').value;
  if (!confirm('Cut over now? Writes to the source stop while the target catches up.')) return;
  control('cutover', freeze ? { freeze: freeze } : {});
});
poll();
`;

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** Content-Security-Policy for the page: its own inline style and script, requests to this origin. */
export const statusPageCsp = [
  "default-src 'none'",
  `style-src ${sha256(STYLE)}`,
  `script-src ${sha256(SCRIPT)}`,
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
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>pgferry</h1>
  <span id="phase" class="badge">…</span>
  <span id="pause-reason"></span>
  <span id="updated" class="muted"></span>
</header>
<main>
  <section>
    <h2>Replication</h2>
    <div class="figures">
      <div class="figure"><span class="muted">lag</span><b id="lag">–</b></div>
      <div class="figure"><span class="muted">backlog</span><b id="backlog">–</b></div>
      <div class="figure"><span class="muted">rate</span><b id="rate">–</b></div>
      <div class="figure"><span class="muted">applied</span><b id="applied">–</b></div>
      <div class="figure"><span class="muted">copy</span><b id="copy-total">–</b></div>
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
    <h2>Tables</h2>
    <table>
      <thead><tr><th>table</th><th>rows copied / estimate</th><th>progress</th><th>chunks</th><th>format</th></tr></thead>
      <tbody id="tables"></tbody>
    </table>
  </section>
  <section class="wide">
    <h2>Recent events</h2>
    <ol id="events"></ol>
  </section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
