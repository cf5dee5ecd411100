// The status page's browser script, plain ES5-style JavaScript as the page runs it (no build step):
// it polls ./status every second and renders it into status-page.ts's elements (API text through
// textContent only), keeps the lag samples for the five-minute chart, and sends pause, resume,
// verify and cutover with the token the operator types (kept in sessionStorage, so it dies with the
// tab). Inlined into the document and allowed by its CSP hash.
export const statusPageScript = `
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

function bytesText(n) {
  if (n === null || n === undefined) return '–';
  var units = ['B', 'kB', 'MB', 'GB', 'TB'], i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return fmt(n, i === 0 ? 0 : 1) + ' ' + units[i];
}
function durationText(sec) {
  if (sec === null || sec === undefined) return '–';
  sec = Math.round(sec);
  var h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), x = sec % 60;
  return (h ? h + 'h ' : '') + (h || m ? m + 'm ' : '') + x + 's';
}
function timeText(iso) {
  if (!iso) return '–';
  var d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleTimeString();
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
function row(cells, attrs) {
  var tr = el('tr');
  for (var k in attrs || {}) tr.dataset[k] = attrs[k];
  cells.forEach(function (c) { tr.appendChild(typeof c === 'string' ? el('td', c) : c); });
  return tr;
}
function emptyRow(body, cols, text) {
  var tr = el('tr'), td = el('td', text, 'muted'); td.colSpan = cols; tr.appendChild(td); body.appendChild(tr);
}

function renderServers(s) {
  ['source', 'target'].forEach(function (side) {
    var server = s.setup ? s.setup[side] : null;
    $(side + '-host').textContent = server ? server.host : '–';
    $(side + '-db').textContent = server ? server.database : '–';
    var o = s.outage ? s.outage[side] : null;
    var state = $(side + '-state');
    state.textContent = o
      ? 'UNREACHABLE since ' + timeText(o.since) + ' (' + o.attempts + ' attempts): ' + o.lastError
      : server ? 'reachable' : '–';
    state.className = o ? 'state-bad' : server ? 'state-ok' : 'muted';
  });
}

function operationText(op) {
  if (op.state === 'running') return op.progress || 'running';
  if (op.state === 'failed') return (op.error ? op.error.code + ': ' + op.error.message : 'failed');
  var r = op.result || {};
  if (op.kind === 'cutover') return 'done: write downtime ' + fmt(r.downtimeSeconds, 2) + ' s (' + r.freeze + ')';
  var bad = (r.tables || []).filter(function (t) { return !t.equal; }).map(function (t) { return t.table; });
  return (r.equal ? 'equal' : 'DIFFERENT: ' + bad.join(', ')) + ' (' + (r.tables || []).length + ' tables' + (r.checksums ? ', checksums' : ', counts') + ')';
}

function renderOperations(s) {
  var body = clear($('operations'));
  (s.operations || []).forEach(function (op) {
    var state = el('td', op.state, op.state === 'failed' ? 'state-bad' : op.state === 'running' ? 'state-run' : 'state-ok');
    var ended = op.finishedAt ? durationText((Date.parse(op.finishedAt) - Date.parse(op.startedAt)) / 1000) : 'running ' + durationText((Date.now() - Date.parse(op.startedAt)) / 1000);
    body.appendChild(row([op.kind, state, timeText(op.startedAt), ended, el('td', operationText(op), op.state === 'failed' ? 'error' : '')], { operation: op.id, state: op.state }));
  });
  if (!s.operations || !s.operations.length) emptyRow(body, 5, 'no cutover or verification started here yet');
}

function renderCutover(s) {
  var phase = (s.phases || []).filter(function (p) { return p.name === 'cutover'; })[0];
  var ops = (s.operations || []).filter(function (o) { return o.kind === 'cutover'; });
  var last = ops[0];
  var text;
  if (s.interruptedCutover) text = 'INTERRUPTED: ' + s.interruptedCutover.message + ' (' + s.interruptedCutover.next + ')';
  else if (s.cutoverDowntimeSeconds !== null && s.cutoverDowntimeSeconds !== undefined) text = 'done: the target took over';
  else if (last && last.state === 'running') text = 'running: ' + (last.progress || '');
  else if (last && last.state === 'failed') text = 'failed: ' + operationText(last);
  else text = 'not started';
  $('cutover-state').textContent = text;
  $('cutover-state').className = s.interruptedCutover || (last && last.state === 'failed' && s.cutoverDowntimeSeconds === null) ? 'state-bad' : '';
  $('downtime').textContent = s.cutoverDowntimeSeconds === null || s.cutoverDowntimeSeconds === undefined ? '–' : fmt(s.cutoverDowntimeSeconds, 2) + ' s';
  $('cutover-times').textContent = phase ? timeText(phase.startedAt) + ' → ' + timeText(phase.finishedAt) : '–';
  $('reverse').textContent = reverseText(s.reverse);
}

// Reverse replication after the cutover: the new side's changes kept flowing to the old source.
function reverseText(r) {
  if (!r) return 'off';
  var tw = r.twoWay ? 'two-way (--conflict ' + r.twoWay.conflict + (r.twoWay.startedAt ? '' : ', after the copy') + '): ' + r.twoWay.conflicts.total + ' conflicts · ' : '';
  return tw + reverseState(r);
}

function reverseState(r) {
  var rb = r.rollback;
  var back = rb ? (rb.step === 'done' ? ' · rolled back (' + fmt(rb.downtimeSeconds, 2) + ' s of write downtime)' : ' · ROLLBACK INTERRUPTED after ' + rb.step) : '';
  if (!r.installedAt) return (r.requested ? 'requested: the cutover installs it' : 'off') + back;
  var p = r.replay;
  return (p ? 'lag ' + fmt(p.lagSeconds, 1) + ' s · backlog ' + p.backlog + ' changes · ' + p.appliedTotal + ' applied to the source' : 'installed, nothing replayed yet') + back;
}

function renderPhases(s) {
  var body = clear($('phases'));
  (s.phases || []).forEach(function (p) {
    var took = p.finishedAt ? durationText((Date.parse(p.finishedAt) - Date.parse(p.startedAt)) / 1000) : 'running';
    body.appendChild(row([p.name, timeText(p.startedAt), p.finishedAt ? timeText(p.finishedAt) : '–', took], { phase: p.name }));
  });
  if (!s.phases || !s.phases.length) emptyRow(body, 4, 'no phase started yet');
}

function renderBacklog(s) {
  var body = clear($('backlog-tables'));
  ((s.replay && s.replay.tableBacklogs) || []).forEach(function (t) {
    body.appendChild(row([t.table, fmt(t.changes)], { table: t.table }));
  });
  if (!body.firstChild) emptyRow(body, 2, s.replay ? 'no changes waiting' : 'replay has not started');
}

function renderEvents(list, events) {
  clear(list);
  (events || []).slice().reverse().forEach(function (e) {
    list.appendChild(el('li', timeText(e.at) + '  ' + (e.phase || '-') + ': ' + e.message, e.level));
  });
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
  var rate = s.copy && s.copy.rate;
  $('copy-rate').textContent = rate ? fmt(rate.rowsPerSec) + ' rows/s · ' + bytesText(rate.bytesPerSec) + '/s' : '–';
  $('copy-eta').textContent = !rate ? '–' : s.copy.percent >= 100 ? 'done' : rate.etaSeconds === null ? 'estimating' : durationText(rate.etaSeconds);

  var body = clear($('tables'));
  (s.tables || []).forEach(function (t) {
    var td = el('td'), bar = el('span', undefined, 'bar'), fill = el('span');
    fill.style.width = Math.max(0, Math.min(100, t.percent)) + '%';
    bar.appendChild(fill); td.appendChild(bar); td.appendChild(document.createTextNode(fmt(t.percent, 1) + ' %'));
    body.appendChild(row([t.table, fmt(t.rowsCopied) + ' / ' + (t.rowsEstimate > 0 ? fmt(t.rowsEstimate) : '?'), td, t.chunksDone + ' / ' + t.chunksTotal, t.format], { table: t.table }));
  });
  if (!s.tables || !s.tables.length) emptyRow(body, 5, 'no tables planned yet');

  renderServers(s);
  renderOperations(s);
  renderCutover(s);
  renderPhases(s);
  renderBacklog(s);
  renderEvents($('problems'), s.problems);
  $('problems-section').hidden = !(s.problems && s.problems.length);
  renderEvents($('events'), s.events);

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
    say(answer.operation ? route + ' started (operation ' + answer.operation.id + '): see Operations' : route + ': ok', 'ok');
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
$('verify').addEventListener('click', function () { control('verify', { checksums: $('checksums').checked }); });
poll();
`;
