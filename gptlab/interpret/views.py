"""Self-contained HTML views of the interpretability numbers: attention (head view and model view,
as bertviz draws them), token attributions coloured in the text, and the logit-lens heat map.

Every page is one file with its data inlined as JSON and a few lines of plain JavaScript: no CDN,
no fonts or scripts from the network, so it opens offline and can be attached to a report. Text
from the model (tokens) only reaches the page escaped (``html.escape``) or as JSON read by
``textContent``, never as markup, so a token like ``<script>`` shows as itself.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

import torch

from gptlab.report import html_page


def _json_for_script(data) -> str:
    """JSON safe inside <script>: '</' and '<!--' can't close or open anything once '<' is escaped."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def _show(token: str) -> str:
    """A token as a person can read it: whitespace made visible."""
    return token.replace("\n", "\u21b5").replace("\t", "\u21e5").replace(" ", "\u2423")


# --------------------------------------------------------------------------------------- attention

_ATTENTION_CSS = """
#head-view .controls{margin:.5rem 0}
.head-btn{border:2px solid transparent;border-radius:4px;margin:0 2px;padding:2px 8px;cursor:pointer;
  color:#fff;opacity:.35}
.head-btn.active{opacity:1;border-color:#222}
#head-svg text{font:13px monospace;cursor:default}
#head-svg text.hot{font-weight:bold}
#model-view{display:grid;gap:6px;margin:1rem 0}
#model-view .thumb{border:1px solid #ccc;cursor:pointer;text-align:center;font:11px sans-serif}
#model-view .thumb.selected{border:2px solid #222}
#model-view canvas{display:block;margin:auto}
.note{color:#555;font-size:.9rem}
"""

_ATTENTION_JS = r"""
(function () {
  const D = JSON.parse(document.getElementById("attention-data").textContent);
  const L = D.attn.length, H = D.attn[0].length, T = D.tokens.length;
  const rowH = 20, leftX = 150, rightX = 450, width = 600;
  const state = {layer: 0, heads: new Set([...Array(H).keys()]), query: null};
  const color = (h) => `hsl(${Math.round(h * 360 / H)},70%,45%)`;
  const svg = document.getElementById("head-svg");
  const NS = "http://www.w3.org/2000/svg";
  const layerSelect = document.getElementById("layer-select");
  const buttons = document.getElementById("head-buttons");

  for (let l = 0; l < L; l++) {
    const o = document.createElement("option"); o.value = l; o.textContent = `layer ${l}`;
    layerSelect.appendChild(o);
  }
  for (let h = 0; h < H; h++) {
    const b = document.createElement("button");
    b.className = "head-btn active"; b.dataset.head = h; b.textContent = `head ${h}`;
    b.style.background = color(h);
    b.addEventListener("click", () => {
      if (state.heads.has(h)) state.heads.delete(h); else state.heads.add(h);
      b.classList.toggle("active", state.heads.has(h)); draw();
    });
    buttons.appendChild(b);
  }
  layerSelect.addEventListener("change", () => { state.layer = +layerSelect.value; draw(); });

  const y = (i) => 20 + i * rowH;
  svg.setAttribute("height", T * rowH + 30);
  svg.setAttribute("width", width);
  const lineGroup = document.createElementNS(NS, "g");
  const tokenGroup = document.createElementNS(NS, "g");
  svg.append(lineGroup, tokenGroup);  // tokens on top; only the lines are redrawn
  D.tokens.forEach((s, i) => {
    for (const [x, anchor, side] of [[leftX, "end", "query"], [rightX, "start", "key"]]) {
      const t = document.createElementNS(NS, "text");
      t.setAttribute("x", x); t.setAttribute("y", y(i)); t.setAttribute("text-anchor", anchor);
      t.setAttribute("dominant-baseline", "middle"); t.textContent = s;
      t.dataset.index = i; t.dataset.side = side;
      if (side === "query") {
        t.addEventListener("mouseenter", () => { state.query = i; draw(); });
        t.addEventListener("mouseleave", () => { state.query = null; draw(); });
      }
      tokenGroup.appendChild(t);
    }
  });

  function draw() {
    lineGroup.replaceChildren();
    svg.dataset.layer = state.layer;
    svg.dataset.heads = [...state.heads].sort((a, b) => a - b).join(",");
    let lines = 0;
    for (const h of state.heads) {
      const a = D.attn[state.layer][h];
      for (let i = 0; i < T; i++) {
        if (state.query !== null && state.query !== i) continue;
        for (let j = 0; j <= i; j++) {
          const w = a[i][j];
          if (w < 0.02) continue;
          const line = document.createElementNS(NS, "line");
          line.setAttribute("x1", leftX + 6); line.setAttribute("y1", y(i));
          line.setAttribute("x2", rightX - 6); line.setAttribute("y2", y(j));
          line.setAttribute("stroke", color(h)); line.setAttribute("stroke-width", 2);
          line.setAttribute("stroke-opacity", Math.min(1, w).toFixed(3));
          lineGroup.appendChild(line); lines++;
        }
      }
    }
    svg.dataset.lines = lines;
    tokenGroup.querySelectorAll("text[data-side='query']").forEach((t) => {
      t.classList.toggle("hot", +t.dataset.index === state.query);
    });
    document.querySelectorAll("#model-view .thumb").forEach((el) => {
      el.classList.toggle("selected", +el.dataset.layer === state.layer && state.heads.size === 1
        && state.heads.has(+el.dataset.head));
    });
  }

  // Model view: one thumbnail per (layer, head), lines drawn on a canvas (cheap for many heads).
  const grid = document.getElementById("model-view");
  grid.style.gridTemplateColumns = `repeat(${H}, minmax(104px, 1fr))`;
  const thumbH = Math.max(40, Math.min(120, T * 4));
  for (let l = 0; l < L; l++) {
    for (let h = 0; h < H; h++) {
      const cell = document.createElement("div");
      cell.className = "thumb"; cell.dataset.layer = l; cell.dataset.head = h;
      cell.title = `layer ${l}, head ${h}: click to open in the head view`;
      const c = document.createElement("canvas"); c.width = 100; c.height = thumbH;
      const ctx = c.getContext("2d"); ctx.strokeStyle = color(h); ctx.lineWidth = 1;
      const a = D.attn[l][h], yy = (i) => 4 + (T > 1 ? i * (thumbH - 8) / (T - 1) : 0);
      for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) {
        if (a[i][j] < 0.02) continue;
        ctx.globalAlpha = Math.min(1, a[i][j]);
        ctx.beginPath(); ctx.moveTo(8, yy(i)); ctx.lineTo(92, yy(j)); ctx.stroke();
      }
      const label = document.createElement("div"); label.textContent = `${l}.${h}`;
      cell.append(c, label);
      cell.addEventListener("click", () => {
        state.layer = l; layerSelect.value = l; state.heads = new Set([h]);
        buttons.querySelectorAll(".head-btn").forEach((b) => b.classList.toggle("active", +b.dataset.head === h));
        draw(); document.getElementById("head-view").scrollIntoView();
      });
      grid.appendChild(cell);
    }
  }
  draw();
})();
"""


def _heads_table(stats: Sequence[dict]) -> str:
    head = "<tr><th>layer</th><th>head</th><th>entropy</th><th>mean distance</th><th>first token</th>"
    head += "<th>previous token</th><th>duplicate token</th></tr>"
    rows = []
    for s in stats:
        dup = "–" if s["duplicate_token"] is None else f"{s['duplicate_token']:.3f}"
        rows.append(
            f"<tr><td>{s['layer']}</td><td>{s['head']}</td><td>{s['entropy']:.3f}</td>"
            f"<td>{s['mean_distance']:.2f}</td><td>{s['first_token']:.3f}</td>"
            f"<td>{s['previous_token']:.3f}</td><td>{dup}</td></tr>"
        )
    return f'<table id="head-stats">{head}{"".join(rows)}</table>'


def attention_page(
    tokens: Sequence[str],
    attns: Sequence[torch.Tensor],
    stats: Sequence[dict],
    rollout: torch.Tensor,
    noise: Sequence[dict],
    title: str = "Attention",
) -> str:
    """The head view (lines from each query token to the keys it attends; layer and heads
    selectable, hover a token to isolate it), the model view (every head as a thumbnail; click
    one to open it), the per-head statistics, the rollout into the last token and the noise table."""
    data = {
        "tokens": [_show(t) for t in tokens],
        "attn": [[[[round(float(w), 4) for w in row] for row in head] for head in a] for a in attns],
    }
    flow = sorted(zip(rollout[-1].tolist(), tokens), key=lambda p: -p[0])[:8]
    rollout_rows = "".join(f"<tr><td>{html.escape(_show(t))}</td><td>{w:.3f}</td></tr>" for w, t in flow)
    noise_rows = "".join(
        f"<tr><td>{r['sigma']:g}</td><td>{r['tv_mean']:.4f}</td><td>"
        + ", ".join(f"{v:.4f}" for v in r["tv_per_layer"])
        + "</td></tr>"
        for r in noise
    )
    body = f"""<style>{_ATTENTION_CSS}</style>
<p class="note">{len(tokens)} tokens, {len(attns)} layers × {attns[0].shape[0]} heads. Weights are the
softmax of q·k/√d from the model's explicit attention path; lines under 0.02 are not drawn.</p>
<section id="head-view"><h2>Head view</h2>
<div class="controls"><label>Layer <select id="layer-select"></select></label>
<span id="head-buttons"></span></div>
<p class="note">Left: the query token; right: the keys it attends to. Hover a token on the left to see
only its lines; click a head to show or hide it.</p>
<svg id="head-svg" xmlns="http://www.w3.org/2000/svg"></svg></section>
<section><h2>Model view</h2><p class="note">Rows are layers, columns heads. Click a thumbnail to open
it in the head view.</p><div id="model-view"></div></section>
<section><h2>Per-head statistics</h2>{_heads_table(stats)}</section>
<section id="rollout"><h2>Attention rollout into the last token</h2>
<table><tr><th>token</th><th>share</th></tr>{rollout_rows}</table></section>
<section id="noise"><h2>Robustness to noise on Q, K, V</h2>
<table><tr><th>sigma</th><th>mean TV distance</th><th>per layer</th></tr>{noise_rows}</table></section>
<script type="application/json" id="attention-data">{_json_for_script(data)}</script>
<script>{_ATTENTION_JS}</script>"""
    return html_page(title, body)


# ---------------------------------------------------------------------------------------- saliency

_SALIENCY_CSS = """
.attr-row{margin:.6rem 0;line-height:2}
.attr-row .method{display:inline-block;width:13rem;font-weight:bold}
.tok{font-family:monospace;padding:2px 3px;margin:0 1px;border-radius:3px;white-space:pre}
.legend{font-size:.9rem;color:#555}
"""


def _colour(value: float, scale: float) -> str:
    """Red for a positive attribution, blue for a negative one, stronger for a larger |value|."""
    alpha = 0.0 if scale <= 0 else min(1.0, abs(value) / scale)
    rgb = "220,40,40" if value >= 0 else "40,90,220"
    return f"rgba({rgb},{alpha:.3f})"


def saliency_page(
    tokens: Sequence[str], attributions: dict[str, Sequence[float]], target: str, gap: float
) -> str:
    """The text once per method, each token's background coloured by its attribution (scaled per
    method by the largest |value|: red pushes the target up, blue pushes it down)."""
    rows = []
    for method, values in attributions.items():
        scale = max((abs(v) for v in values), default=0.0)
        spans = "".join(
            f'<span class="tok" style="background:{_colour(v, scale)}" title="{html.escape(t)}: {v:.4f}">'
            f"{html.escape(_show(t))}</span>"
            for t, v in zip(tokens, values)
        )
        rows.append(
            f'<div class="attr-row" data-method="{html.escape(method)}"><span class="method">'
            f"{html.escape(method.replace('_', ' '))}</span>{spans}</div>"
        )
    table_rows = "".join(
        f"<tr><td>{html.escape(_show(t))}</td>"
        + "".join(f"<td>{attributions[m][i]:.4f}</td>" for m in attributions)
        + "</tr>"
        for i, t in enumerate(tokens)
    )
    header = "".join(f"<th>{html.escape(m.replace('_', ' '))}</th>" for m in attributions)
    body = f"""<style>{_SALIENCY_CSS}</style>
<p>Target: <b>{html.escape(target)}</b>. Integrated-gradients completeness gap (|sum of attributions −
(f(x) − f(baseline))|): {gap:.2e}.</p>
<p class="legend">Red: the token raises the target score; blue: it lowers it; each row is scaled by its
own largest |value|. Hover a token for its number.</p>
<section id="attributions">{"".join(rows)}</section>
<section><h2>Values</h2><table id="attribution-table"><tr><th>token</th>{header}</tr>{table_rows}</table></section>"""
    return html_page("Token attributions", body)


# -------------------------------------------------------------------------------------------- lens

_LENS_CSS = """
#lens td{font-family:monospace;white-space:pre;text-align:center;min-width:3rem}
#lens th.pos{font-family:monospace;white-space:pre}
"""


def lens_page(tokens: Sequence[str], lens: Sequence[Sequence[Sequence[dict]]], piece) -> str:
    """Heat map: one row per layer (0 = embeddings, last = the model's output), one column per
    position; each cell names the top next-token prediction there, shaded by its probability, with
    the top-k in the tooltip. ``piece(id)`` turns an id into text."""
    n_layers = len(lens)
    header = "<tr><th>layer \\ position</th>" + "".join(
        f'<th class="pos">{html.escape(_show(t))}</th>' for t in tokens
    )
    rows = []
    for layer in range(n_layers - 1, -1, -1):  # the output layer on top, as it reads best
        cells = []
        for preds in lens[layer]:
            top = preds[0]
            tip = "\n".join(f"{piece(p['id'])!r} {p['prob']:.3f}" for p in preds)
            shade = f"rgba(30,120,60,{top['prob']:.3f})"
            fg = "#fff" if top["prob"] > 0.55 else "#111"
            cells.append(
                f'<td style="background:{shade};color:{fg}" title="{html.escape(tip)}">'
                f"{html.escape(_show(piece(top['id'])))}</td>"
            )
        name = "embeddings" if layer == 0 else f"after block {layer - 1}"
        rows.append(f"<tr><th>{layer} ({name})</th>{''.join(cells)}</tr>")
    body = f"""<style>{_LENS_CSS}</style>
<p>Each cell: the most likely next token read from that layer's residual stream (through the final
norm and unembedding) at that position; darker = more probable. The top row is the model's own
prediction. Hover a cell for the top-{len(lens[0][0])}.</p>
<table id="lens">{header}</tr>{"".join(rows)}</table>"""
    return html_page("Logit lens", body)


def index_page(title: str, links: Sequence[tuple[str, str, str]]) -> str:
    """The report's front page: (file name, title, one-line description) per view."""
    items = "".join(
        f'<li><a href="{html.escape(href)}">{html.escape(name)}</a>: {html.escape(desc)}</li>'
        for href, name, desc in links
    )
    return html_page(title, f'<ul id="views">{items}</ul>')
