// The status page's stylesheet (light and dark), inlined into status-page.ts's document and allowed
// by its CSP hash: a change here changes the hash with it.
export const statusPageStyle = `
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
#problems li { padding: 4px 8px; border-left: 4px solid var(--warn); margin-bottom: 2px; }
#problems li.error { border-left-color: var(--bad); font-weight: 600; }
section.problems { border-color: var(--bad); }
.state-ok { color: var(--ok); font-weight: 600; } .state-bad { color: var(--bad); font-weight: 600; }
.state-run { color: var(--accent); font-weight: 600; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; }
.controls.gap { margin-top: 8px; }
.error { color: var(--bad); }
.controls { display: flex; gap: 8px; flex-wrap: wrap; align-items: center; }
input, select, button { font: inherit; padding: 5px 10px; border-radius: 6px; border: 1px solid var(--line);
  background: var(--bg); color: var(--fg); }
button { cursor: pointer; background: var(--accent); color: #fff; border-color: var(--accent); }
button.danger { background: var(--bad); border-color: var(--bad); }
#message { margin-top: 8px; min-height: 1.4em; } #message.error { color: var(--bad); } #message.ok { color: var(--ok); }
`;
