"""One report for several audits: ``audit.json`` (every finding, detail and plot name) and a
self-contained ``report.html`` with the summary table (threat, metric, value, interval, verdict
against its threshold) and each audit's plots embedded as data: URIs, so it opens offline."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

from gptlab.audit.common import AuditResult, to_jsonable
from gptlab.io import atomic_write_text
from gptlab.report import html_page, image

AUDIT_JSON = "audit.json"
REPORT_HTML = "report.html"

_CSS = (
    "<style>td.pass{background:#e3f4e3}td.fail{background:#f9dcdc;font-weight:bold}td.info{color:#555}"
    "td.inconclusive{background:#fdf1d0}#preconditions{border:2px solid #c60;padding:.3rem 1rem}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}details{margin:.5rem 0}</style>"
)


def _num(v) -> str:
    if v is None:
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def summary_rows(results: Sequence[AuditResult]) -> str:
    rows = []
    for result in results:
        for f, j in zip(result.findings, result.judgements()):
            iv = "–" if f.interval is None else f"[{_num(f.interval[0])}, {_num(f.interval[1])}]"
            threshold = (
                "–" if f.threshold is None else ("> " if f.higher_is_worse else "< ") + _num(f.threshold)
            )
            rows.append(
                f"<tr><td>{html.escape(result.name)}</td><td>{html.escape(f.threat)}</td>"
                f"<td>{html.escape(f.metric)}</td><td class='num'>{_num(f.value)}</td>"
                f"<td class='num'>{iv}</td><td class='num'>{html.escape(threshold)}</td>"
                f"<td class='{j.verdict}'>{j.verdict}</td><td>{html.escape(j.reason)}</td>"
                f"<td>{html.escape(f.note)}</td></tr>"
            )
    head = (
        "<tr><th>audit</th><th>threat</th><th>metric</th><th>value</th><th>95% interval</th>"
        "<th>fails when</th><th>verdict</th><th>why</th><th>note</th></tr>"
    )
    return f'<table id="summary">{head}{"".join(rows)}</table>'


def counts(results: Sequence[AuditResult]) -> dict[str, dict[str, int]]:
    """{audit: {"pass": .., "fail": .., "inconclusive": .., "info": ..}} (audit all's summary)."""
    return {r.name: r.counts() for r in results}


def counts_table(results: Sequence[AuditResult]) -> str:
    """Plain text: one line per audit with its pass / fail / inconclusive / info counts."""
    lines = [f"{'audit':<16} {'pass':>5} {'fail':>5} {'inconclusive':>13} {'info':>5}"]
    for name, c in counts(results).items():
        lines.append(f"{name:<16} {c['pass']:>5} {c['fail']:>5} {c['inconclusive']:>13} {c['info']:>5}")
    return "\n".join(lines)


def _preconditions(results: Sequence[AuditResult]) -> str:
    """The failed preconditions, for the top of the report: what makes findings inconclusive."""
    failed = [(r.name, p) for r in results for p in r.failed_preconditions]
    if not failed:
        return ""
    items = "".join(
        f"<li><b>{html.escape(name)}</b>: {html.escape(p.name)} does not hold ({html.escape(p.detail)}); "
        f"its findings are inconclusive</li>"
        for name, p in failed
    )
    return f'<div id="preconditions"><h2>Preconditions that failed</h2><ul>{items}</ul></div>'


def render_report(
    results: Sequence[AuditResult],
    title: str = "gptlab security audit",
    skipped: dict[str, str] | None = None,
) -> str:
    sections = []
    for result in results:
        plots = "".join(
            f"<figure>{image(png, name)}<figcaption>{html.escape(name)}</figcaption></figure>"
            for name, png in sorted(result.plots.items())
        )
        details = html.escape(json.dumps(result.details, indent=1, default=to_jsonable)[:200_000])
        sections.append(
            f'<section id="audit-{html.escape(result.name)}"><h2>{html.escape(result.name)}</h2>{plots}'
            f"<details><summary>details (JSON)</summary><pre>{details}</pre></details></section>"
        )
    tally = {v: sum(r.counts()[v] for r in results) for v in ("fail", "inconclusive")}
    total = sum(len(r.findings) for r in results)
    modes = sorted({r.verdict_mode for r in results}) or ["interval"]
    body = (
        f"{_CSS}{_preconditions(results)}<p>{len(results)} audits, {total} findings, {tally['fail']} "
        f"failed, {tally['inconclusive']} inconclusive ({'/'.join(modes)} verdicts). Intervals are 95% "
        f"(Wilson for proportions, percentile bootstrap for the rest); thresholds are configurable.</p>"
        f"<h2>Summary</h2>{summary_rows(results)}{_skipped(skipped or {})}{''.join(sections)}"
    )
    return html_page(title, body)


def _skipped(skipped: dict[str, str]) -> str:
    if not skipped:
        return ""
    items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in skipped.items())
    return f'<h2>Not run</h2><ul id="skipped">{items}</ul>'


def write_report(
    results: Sequence[AuditResult],
    out_dir: str | Path,
    title: str = "gptlab security audit",
    skipped: dict[str, str] | None = None,
) -> Path:
    """Write every audit's JSON and plots, ``audit.json`` and ``report.html`` into ``out_dir``;
    returns the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for result in results:
        result.save(out)
    combined = {"audits": [r.to_dict() for r in results], "counts": counts(results), "skipped": skipped or {}}
    atomic_write_text(out / AUDIT_JSON, json.dumps(combined, indent=2, default=to_jsonable) + "\n")
    path = out / REPORT_HTML
    atomic_write_text(path, render_report(results, title, skipped))
    return path
