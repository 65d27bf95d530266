"""What `gptlab eval tasks` shows and writes: a table on stdout, ``tasks.json`` (every per-item
score, to re-analyse) and a self-contained ``tasks.html`` (a bar chart per task with its 95%
intervals and chance level, per-category tables, a few example items with the model's choice and
the gold answer). The HTML draws its charts as inline SVG: no script, no external resource."""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

from gptlab.eval.tasks.runner import TasksResult
from gptlab.io import atomic_write_text
from gptlab.report import format_value, html_page

TASKS_JSON = "tasks.json"
TASKS_HTML = "tasks.html"
OUTPUT_FILES = (TASKS_JSON, TASKS_HTML)
EXAMPLES_SHOWN = 3  # example items per task in the HTML
CONTEXT_SHOWN = 600  # characters of an example's context (its end: where the answer follows)


def jsonable(value: Any) -> Any:
    """``value`` with every non-finite float as None, so the document is strict JSON (a random
    model's perplexity overflows to inf)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _num(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format_value(v)


def format_table(result: TasksResult) -> str:
    """The results as a text table: task, metric, value, ± stderr, 95% interval, n, chance."""
    rows = [("task", "metric", "value", "± stderr", "95% interval", "n", "chance", "truncated")]
    for name, res in result.results.items():
        task = result.tasks[name]
        for i, metric in enumerate(task.metrics):
            lo, hi = res[f"{metric}_ci95"]
            arrow = "↑" if task.higher_is_better[metric] else "↓"
            chance = task.chance.get(metric)
            rows.append((
                name if i == 0 else "", f"{metric} {arrow}", _num(res[metric]), _num(res[f"{metric}_stderr"]),
                f"[{_num(lo)}, {_num(hi)}]", str(res["n"]) if i == 0 else "",
                "" if chance is None else _num(chance), str(result.truncated[name]) if i == 0 else "",
            ))  # fmt: skip
    return text_table(rows)


def text_table(rows: list) -> str:
    """Rows of strings as aligned columns, the first row a header underlined with dashes."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- HTML -----------------------------------------------------------------------------------------


def _bar_chart(result: TasksResult, name: str) -> str:
    """One horizontal bar per metric with its 95% interval as a whisker and chance as a dashed
    line; a metric in [0, 1] is drawn on 0..1, any other (perplexity) on 0..its interval's top."""
    task, res = result.tasks[name], result.results[name]
    width, label_w, row_h = 560, 150, 34
    plot_w = width - label_w - 70
    parts = []
    for i, metric in enumerate(task.metrics):
        value, (lo, hi) = res[metric], res[f"{metric}_ci95"]
        finite = [v for v in (value, lo, hi) if v is not None and math.isfinite(v)]
        bounded = finite and all(0.0 <= v <= 1.0 for v in finite)
        top = 1.0 if bounded else max(finite or [1.0]) * 1.1 or 1.0

        def x(v: float, top: float = top) -> float:
            return label_w + plot_w * min(max(v, 0.0), top) / top

        y = 10 + i * row_h
        parts.append(f'<text x="0" y="{y + 15}" font-size="13">{html.escape(metric)}</text>')
        if value is not None and math.isfinite(value):
            parts.append(
                f'<rect x="{label_w}" y="{y + 4}" width="{x(value) - label_w:.1f}" height="16" fill="#4c78a8"/>'
            )
            right = max(finite)  # the label goes past the whisker
            parts.append(f'<text x="{x(right) + 6:.1f}" y="{y + 15}" font-size="12">{_num(value)}</text>')
        if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
            parts.append(
                f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{y + 12}" y2="{y + 12}" stroke="#222" stroke-width="1.5"/>'
            )
            for end in (lo, hi):
                parts.append(
                    f'<line x1="{x(end):.1f}" x2="{x(end):.1f}" y1="{y + 7}" y2="{y + 17}" stroke="#222"/>'
                )
        chance = task.chance.get(metric)
        if chance is not None:
            parts.append(
                f'<line x1="{x(chance):.1f}" x2="{x(chance):.1f}" y1="{y}" y2="{y + 24}" stroke="#d62728" '
                f'stroke-dasharray="3,2"><title>chance {_num(chance)}</title></line>'
            )
    height = 20 + row_h * len(task.metrics)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(name)} metrics with 95% intervals">{"".join(parts)}</svg>'
    )


def _category_table(result: TasksResult, name: str) -> str:
    categories = result.categories.get(name)
    if not categories:
        return ""
    metrics = list(result.tasks[name].metrics)
    head = "".join(f"<th>{html.escape(m)}</th>" for m in ["category", *metrics, "n"])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_num(v) if k != 'category' else v)}</td>"
                         for k, v in [("category", c), *[(m, row[m]) for m in metrics], ("n", row["n"])]) + "</tr>"
        for c, row in categories.items()
    )  # fmt: skip
    return f"<h3>Per category</h3><table><tr>{head}</tr>{body}</table>"


def _gold_and_choice(task, item) -> list[tuple[str, Any]]:
    """The gold answer and the model's, in words: a choice's text, or whether greedy decoding
    reproduces a log-likelihood target."""
    if task.output_type == "multiple_choice":
        choices = item["choices"]
        return [("gold", repr(choices[item["gold"]])), ("model's choice", repr(choices[item["choice"]]))]
    if task.output_type == "loglikelihood":
        return [("target", repr(item["gold"])), ("greedy reproduces it", "yes" if item["choice"] else "no")]
    if task.output_type == "generate_until":
        return [("gold", repr(item["gold"])), ("model's text", repr(item["choice"]))]
    return []


def _examples(result: TasksResult, name: str) -> str:
    items = result.items[name][:EXAMPLES_SHOWN]
    if not items:
        return ""
    out = ["<h3>Examples</h3>"]
    for item in items:
        context = item["context"]
        shown = ("…" + context[-CONTEXT_SHOWN:]) if len(context) > CONTEXT_SHOWN else context
        facts = [("item", item["index"]), *_gold_and_choice(result.tasks[name], item)]
        if item["category"] is not None:
            facts.append(("category", item["category"]))
        facts.append(("answer", json.dumps(jsonable(item["answer"]))[:300]))
        aggregation = result.tasks[name].metrics
        facts += [(f"{m} (item log-likelihood)" if aggregation.get(m) == "perplexity" else m, v)
                  for m, v in item["metrics"].items()]  # fmt: skip
        cells = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_num(v))}</td></tr>" for k, v in facts
        )
        out.append(f"<pre>{html.escape(shown)}</pre><table>{cells}</table>")
    return "".join(out)


def render_html(result: TasksResult) -> str:
    """The self-contained tasks.html."""
    body = [f"<p>Model: <code>{html.escape(result.model)}</code>; {result.options.shots}-shot"
            f"{'' if result.options.limit is None else f', first {result.options.limit} items'}; seed "
            f"{result.options.seed}. Bars: the metric; whiskers: its 95% bootstrap interval; dashed red: "
            f"chance level.</p>", f"<pre>{html.escape(format_table(result))}</pre>"]  # fmt: skip
    for name in result.results:
        task = result.tasks[name]
        body.append(f"<h2>{html.escape(name)}</h2><p>{html.escape(task.description)} "
                    f"({task.output_type}, {result.results[name]['n']} items, "
                    f"{result.truncated[name]} cut to the model's context)</p>")  # fmt: skip
        body += [_bar_chart(result, name), _category_table(result, name), _examples(result, name)]
    return html_page(f"gptlab eval tasks: {result.model}", "\n".join(body))


def write_outputs(result: TasksResult, out: str | os.PathLike) -> list[Path]:
    """Write tasks.json (every per-item score) and tasks.html into ``out`` (claimed beforehand
    with gptlab.outputs.claim_files); both are rendered before either is written."""
    out = Path(out)
    doc = json.dumps(jsonable(result.to_json(items=True)), indent=1, allow_nan=False) + "\n"
    page = render_html(result)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / TASKS_JSON, doc)
    atomic_write_text(out / TASKS_HTML, page)
    return [out / TASKS_JSON, out / TASKS_HTML]
