"""The report's stylesheet, inline: system fonts only, nothing fetched."""

CSS = """
:root { --fg: #1b1b1b; --muted: #5f6368; --line: #d0d4d9; --pass: #1e7b34; --fail: #b3261e;
  --na: #6b6b6b; --inc: #8a6100; --bg-code: #f3f4f6; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
  margin: 0 auto; max-width: 1100px; padding: 1.2rem 1.5rem 3rem; }
h1 { font-size: 1.6rem; margin: 0 0 .2rem; } h2 { font-size: 1.2rem; margin: 2rem 0 .6rem;
  border-bottom: 1px solid var(--line); padding-bottom: .2rem; } h3 { font-size: 1rem; margin: 1.2rem 0 .3rem; }
.intent { color: var(--muted); margin: 0 0 .6rem; }
.verdict { display: inline-block; font-weight: 700; padding: .15rem .6rem; border-radius: 4px; color: #fff; }
.verdict.pass { background: var(--pass); } .verdict.fail { background: var(--fail); }
.verdict.error, .verdict.skipped { background: var(--inc); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; margin: .8rem 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
.warn { background: #fff4e0; border-left: 4px solid var(--inc); padding: .4rem .7rem; margin: .4rem 0; }
nav.toc { font-size: .9rem; margin: .6rem 0; } nav.toc a { margin-right: .9rem; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .88em; }
pre { background: var(--bg-code); padding: .6rem .8rem; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f7f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.outcome { font-weight: 700; white-space: nowrap; }
.outcome.pass { color: var(--pass); } .outcome.fail { color: var(--fail); }
.outcome.na { color: var(--na); } .outcome.inconclusive { color: var(--inc); }
tr.requested td { background: #eef6ff; }
figure { margin: 1rem 0 1.6rem; } figcaption { color: var(--muted); font-size: .9rem; margin-top: .3rem; }
figure > svg { max-width: 100%; height: auto; display: block; }
.legend li { margin: .1rem 0; } .swatches span { margin-right: .9rem; white-space: nowrap; }
.ref { border-left: 3px solid var(--line); padding-left: .8rem; margin: .8rem 0; font-size: .92rem; }
.ref h3 { margin-top: 0; }
footer { color: var(--muted); font-size: .85rem; margin-top: 2rem; }
/* the ladder */
svg.ladder text { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
svg.ladder .host { font: 700 13px system-ui, sans-serif; }
svg.ladder .end { stroke: #333; stroke-width: 1.5; }
svg.ladder .router { stroke: #b5179e; stroke-width: 1; stroke-dasharray: 2 4; opacity: .6; }
svg.ladder .axis { stroke: #333; fill: none; } svg.ladder .axis.burst { stroke-width: 3; }
svg.ladder .axis.quiet { stroke-dasharray: 1 3; stroke-width: 1.5; }
svg.ladder .tick { font-size: 10px; fill: #555; } svg.ladder .gap { font-size: 10px; fill: #777; font-style: italic; }
svg.ladder .arrow { fill: none; stroke-width: 1.4; }
svg.ladder .arrow.ack { stroke: #555; } svg.ladder .arrow.syn { stroke: #1f6fb2; }
svg.ladder .arrow.fin { stroke: #0a8a72; stroke-width: 1.8; }
svg.ladder .arrow.rst { stroke: #c62828; stroke-width: 1.8; }
svg.ladder .arrow.data { stroke: #6a3d9a; } svg.ladder .arrow.replay { stroke: #b5179e; stroke-dasharray: 5 3; }
svg.ladder .seg.lost .arrow { stroke-dasharray: 6 3; }
svg.ladder .seg.unknown .arrow { stroke-dasharray: 2 3; }
svg.ladder .head.ack { fill: #555; } svg.ladder .head.syn { fill: #1f6fb2; } svg.ladder .head.fin { fill: #0a8a72; }
svg.ladder .head.rst { fill: #c62828; } svg.ladder .head.data { fill: #6a3d9a; }
svg.ladder .head.replay { fill: #b5179e; }
svg.ladder .label { font-size: 10.5px; fill: #222; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
svg.ladder .lost-mark { fill: #c62828; font: 700 15px sans-serif; }
svg.ladder .unknown-mark { fill: #8a6100; font: 700 13px sans-serif; }
svg.ladder .copy-mark { fill: #fff; stroke: #b5179e; stroke-width: 1.5; }
svg.ladder .seg.held .arrow { stroke-dasharray: 1 0; }
svg.ladder .seg:hover .arrow { stroke-width: 3; } svg.ladder .seg:hover .label { font-weight: 700; }
svg.ladder path.fault { fill: #b5179e; } svg.ladder text.fault { font-size: 10px; fill: #b5179e;
  paint-order: stroke; stroke: #fff; stroke-width: 3px; }
svg.ladder .state { font-size: 10px; fill: #333; }
svg.ladder .span { stroke: #0003; stroke-width: .5; }
svg.ladder .change { fill: url(#hatch); stroke: #555; stroke-width: .6; }
svg.ladder .hatch { stroke: #444; stroke-width: 1; } svg.ladder .seen { stroke: #000; stroke-width: 1.5; }
.st-ESTABLISHED { fill: #9ccc65; } .st-SYN_SENT, .st-SYN_RECV { fill: #b3d4f5; }
.st-FIN_WAIT1 { fill: #ffcc80; } .st-FIN_WAIT2 { fill: #ffa726; } .st-CLOSE_WAIT { fill: #90caf9; }
.st-LAST_ACK { fill: #42a5f5; } .st-CLOSING { fill: #ce93d8; } .st-TIME_WAIT { fill: #e57373; }
.st-CLOSE { fill: #bdbdbd; } .st-LISTEN { fill: #e0e0e0; }
.swatch { display: inline-block; width: .9em; height: .9em; vertical-align: -.1em; border: 1px solid #0003; }
"""
