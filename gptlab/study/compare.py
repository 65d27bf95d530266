"""``gptlab study compare A B --out DIR``: two finished studies side by side (two model sizes,
with and without DP-SGD), as DIR/compare.md, DIR/compare.html (self-contained) and DIR/compare.json.

For every stage both studies finished (with the same stage version), each report table of A is
aligned with B's (rows matched on their leading text cells; every number column shown for A, for B
and as the difference B - A) and the method rows are merged. Where a stage's results carry the
spread of a number (`MEASURES`), a differences table gives B - A with a 95% interval:

- per-seed values on both sides (architecture val losses): Welch's t interval
  (`gptlab.study.findings.welch_interval`);
- a proportion k/n on both sides (audit rates with Wilson intervals): Newcombe's hybrid score
  interval (Newcombe 1998, method 10), built from the two Wilson intervals:
  d - sqrt((p_b - l_b)^2 + (u_a - p_a)^2) .. d + sqrt((u_b - p_b)^2 + (p_a - l_a)^2);
- per-window values on both sides (pretraining val loss): Welch's interval over the windows
  (the two studies' windows are treated as independent samples: conservative when both read the
  same val text, whose windows are positively correlated across models);
- any other 95% interval on both sides (bootstrap intervals of benchmark metrics, audit
  bootstraps): the normal approximation, each side's standard error taken as its interval's
  half-width / 1.96, the difference's as the root of the sum of their squares (the studies are
  independent samples).

A number without an interval on either side gets a difference but no interval, and so no claim.
The findings are `gptlab.study.findings.difference` sentences: "raised"/"lowered" only when the
difference's interval excludes zero. A stage only one study has is named, not compared.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gptlab.errors import GptlabError
from gptlab.study import findings
from gptlab.study.findings import newcombe_interval
from gptlab.study.stage import Section, Table

MARKDOWN, HTML, JSON = "compare.md", "compare.html", "compare.json"
Z95 = 1.959963984540054


@dataclass
class Measure:
    """One number of a stage's results that can be compared across studies, with its spread."""

    key: str  # what it is, e.g. "val loss, model.norm=rmsnorm"
    value: float
    interval: Sequence[float] | None = None  # its 95% interval
    samples: Sequence[float] | None = None  # the values it is the mean of (seeds, windows)
    count: tuple[int, int] | None = None  # k of n, for a proportion
    unit: str = ""


@dataclass
class Difference:
    key: str
    a: float
    a_interval: list[float] | None
    b: float
    b_interval: list[float] | None
    diff: float  # b - a
    interval: list[float] | None  # 95% interval of b - a
    method: str  # how the interval was computed ("none" without one)
    unit: str = ""


def normal_difference(
    a: float, a_interval: Sequence[float], b: float, b_interval: Sequence[float]
) -> tuple[float, tuple[float, float]]:
    """b - a with the normal-approximation 95% interval from each side's 95% interval."""
    se = math.hypot((a_interval[1] - a_interval[0]) / (2 * Z95), (b_interval[1] - b_interval[0]) / (2 * Z95))
    d = b - a
    return d, (d - Z95 * se, d + Z95 * se)


def difference(a: Measure, b: Measure) -> Difference:
    """B - A with the best interval both sides allow (see the module doc)."""
    interval, method = None, "none"
    diff = b.value - a.value
    if a.samples is not None and b.samples is not None and len(a.samples) > 1 and len(b.samples) > 1:
        _, interval = findings.welch_interval(b.samples, a.samples)
        method = "Welch t"
    elif a.count is not None and b.count is not None:
        diff, interval = newcombe_interval(*b.count, *a.count)
        method = "Newcombe hybrid score"
    elif a.interval is not None and b.interval is not None:
        _, interval = normal_difference(a.value, a.interval, b.value, b.interval)
        method = "normal approximation"
    return Difference(
        a.key,
        a.value,
        _list(a.interval),
        b.value,
        _list(b.interval),
        diff,
        _list(interval),
        method if interval is not None else "none",
        a.unit,
    )


def _list(interval) -> list[float] | None:
    return None if interval is None else [float(interval[0]), float(interval[1])]


# --- the comparable numbers of each stage -------------------------------------------------------


def _pretrain(result: dict) -> list[Measure]:
    e = result.get("eval")
    if not e:
        return []
    windows = e.get("window_losses")  # recorded by studies since the compare verb; older ones lack it
    measures = (
        []
        if not windows
        else [
            Measure(
                "val loss (mean over windows)",
                math.fsum(windows) / len(windows),
                samples=windows,
                unit="nats/token",
            )
        ]
    )
    return measures + [
        Measure(
            "val loss minus the unigram's", e["minus_unigram"], e["minus_unigram_ci95"], unit="nats/token"
        ),
    ]


def _architecture(result: dict) -> list[Measure]:
    out = []
    for variant, runs in result["runs"].items():
        losses = [r["val_loss"] for r in runs if r["val_loss"] is not None]
        if losses:
            mean, interval = findings.mean_interval(losses)
            out.append(Measure(f"val loss, {variant}", mean, interval, samples=losses, unit="nats/token"))
    return out


def _benchmarks(result: dict) -> list[Measure]:
    out = []
    for task, metrics in result["results"].items():
        for metric, value in metrics.items():
            if metric == "n" or metric.endswith(("_stderr", "_ci95")) or not isinstance(value, (int, float)):
                continue
            out.append(Measure(f"{task} {metric}", value, metrics.get(f"{metric}_ci95")))
    return out


def _vulnerabilities(result: dict) -> list[Measure]:
    out = []
    for model, m in result.get("models", {}).items():
        for audit, a in m["audits"].items():
            for f in a["findings"]:
                if not isinstance(f["value"], (int, float)):
                    continue
                count = None
                if f.get("interval_kind") == "wilson" and f.get("n"):
                    count = (round(f["value"] * f["n"]), f["n"])
                out.append(
                    Measure(f"{model} model, {audit}: {f['metric']}", f["value"], f["interval"], count=count)
                )
    return out


MEASURES: dict[str, Callable[[dict], list[Measure]]] = {
    "pretrain": _pretrain,
    "architecture": _architecture,
    "benchmarks": _benchmarks,
    "vulnerabilities": _vulnerabilities,
}


# --- reading a study ----------------------------------------------------------------------------


@dataclass
class StudyView:
    """A finished study folder: its config, the label the comparison gives it, each stage's record."""

    path: Path
    label: str
    config: dict
    records: dict[str, dict]  # stage name -> DIR/<stage>/result.json


def open_study(path: str | Path, label: str) -> StudyView:
    """A finished study (study.json and a finished report stage), or a GptlabError saying what it lacks."""
    from gptlab.io import read_json
    from gptlab.study.runner import RESULT_FILE, STUDY_FILE, STUDY_FORMAT
    from gptlab.study.stages import STAGES

    path = Path(path)
    if not path.is_dir():
        raise GptlabError(f"{path}: no such study folder")
    marker = path / STUDY_FILE
    if not marker.is_file():
        raise GptlabError(f"{path} is not a study: it has no {STUDY_FILE} (made by `gptlab study`)")
    meta = read_json(marker, "study file")
    if not isinstance(meta, dict) or meta.get("format") != STUDY_FORMAT:
        raise GptlabError(f"{marker}: not a gptlab study file (field 'format' must be {STUDY_FORMAT!r})")
    if not (path / "report" / RESULT_FILE).is_file():
        raise GptlabError(
            f"{path} is not a finished study: its report stage has not run (rerun the same `gptlab study` "
            "command to finish it)"
        )
    records = {}
    for name in (*STAGES, *sorted(p.name for p in path.iterdir() if p.is_dir())):
        if name not in records and not name.startswith(".") and (path / name / RESULT_FILE).is_file():
            records[name] = read_json(path / name / RESULT_FILE, f"{name} stage result")
    return StudyView(path, label, meta.get("config") or {}, records)


# --- the comparison -----------------------------------------------------------------------------


@dataclass
class Comparison:
    out_dir: Path
    a: str  # the studies' folders
    b: str
    labels: tuple[str, str]
    compared: list[str] = field(default_factory=list)  # stages both have
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    not_compared: dict[str, str] = field(default_factory=dict)  # stage -> why (version, unknown)
    differences: dict[str, list[Difference]] = field(default_factory=dict)
    files: list[str] = field(default_factory=lambda: [MARKDOWN, HTML, JSON])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


def compare_studies(
    dir_a: str | Path, dir_b: str | Path, out_dir: str | Path, overwrite: bool = False
) -> Comparison:
    """Compare two finished studies into ``out_dir`` (refused when not empty, unless ``overwrite``)."""
    from gptlab.io import atomic_write_json, atomic_write_text
    from gptlab.outputs import claim_folder
    from gptlab.study import render
    from gptlab.study.stages import STAGES

    names = _labels(Path(dir_a), Path(dir_b))
    a, b = open_study(dir_a, names[0]), open_study(dir_b, names[1])
    out = Path(out_dir)
    comparison = Comparison(out, str(a.path), str(b.path), names)
    comparison.only_a = [n for n in a.records if n not in b.records and n != "report"]
    comparison.only_b = [n for n in b.records if n not in a.records and n != "report"]
    parts, figures = [], []
    for name in [n for n in a.records if n in b.records and n != "report"]:
        stage = STAGES.get(name)
        ra, rb = a.records[name], b.records[name]
        if stage is None or stage.report is None:
            comparison.not_compared[name] = "this gptlab has no such stage to read its results"
            continue
        if ra.get("version") != stage.version or rb.get("version") != stage.version:
            comparison.not_compared[name] = (
                f"recorded by stage versions {ra.get('version')} and {rb.get('version')}, this gptlab reads "
                f"version {stage.version}: rerun the studies to compare it"
            )
            continue
        sa = stage.report(ra["result"], a.path / name)
        sb = stage.report(rb["result"], b.path / name)
        diffs = [
            difference(ma, mb)
            for ma in MEASURES.get(name, lambda r: [])(ra["result"])
            for mb in MEASURES.get(name, lambda r: [])(rb["result"])
            if ma.key == mb.key
        ]
        comparison.compared.append(name)
        comparison.differences[name] = diffs
        section = _side_by_side(sa, sb, names, diffs)
        for side, study, source in (("a", a, sa), ("b", b, sb)):
            for file, caption in source.figures:
                figures.append((study.path / name / file, Path(name) / f"{side}-{file}"))
                section.figures.append((f"{side}-{file}", f"{study.label}: {caption}"))
        parts.append((name, section))
    intro = _intro(comparison, a, b)
    closing = _environment(a, b)
    title = f"Study comparison: {names[0]} vs {names[1]}"
    claim_folder(out, what="--out folder", overwrite=overwrite, sources=[a.path, b.path])
    for source, target in figures:
        (out / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out / target)
    atomic_write_text(out / MARKDOWN, render.markdown(title, intro, [(n, s, n) for n, s in parts], closing))
    page = render.html_document(title, intro, [(n, s, out / n) for n, s in parts], closing)
    atomic_write_text(out / HTML, page)
    atomic_write_json(out / JSON, comparison.to_dict() | {"format": "gptlab-study-compare", "version": 1})
    return comparison


def _labels(a: Path, b: Path) -> tuple[str, str]:
    """What the report calls the studies: their folder names, or "A: name"/"B: name" when equal."""
    na, nb = a.resolve().name, b.resolve().name
    return (na, nb) if na != nb else (f"A: {na}", f"B: {nb}")


def _intro(c: Comparison, a: StudyView, b: StudyView) -> list[str]:
    la, lb = c.labels
    profile = lambda s: (s.config.get("study") or {}).get("profile", "unknown")  # noqa: E731
    lines = [
        f"{la} = {a.path} ({profile(a)} profile) and {lb} = {b.path} ({profile(b)} profile). Every number "
        "is read from the two studies' DIR/<stage>/result.json; a difference is always "
        f"{lb} minus {la}.",
        "Intervals of a difference: Welch t over seeds or windows, Newcombe's hybrid score interval for "
        "two proportions, otherwise the normal approximation from the two 95% intervals; a finding claims "
        "a direction only when that interval excludes zero.",
    ]
    for who, stages in ((la, c.only_a), (lb, c.only_b)):
        if stages:
            lines.append(f"Only {who} has the stage(s) {', '.join(stages)}: not compared.")
    for name, why in c.not_compared.items():
        lines.append(f"Stage {name} is not compared: {why}.")
    return lines


def _side_by_side(sa: Section, sb: Section, labels: tuple[str, str], diffs: list[Difference]) -> Section:
    section = Section(sa.title)
    section.method = _merged_rows(sa.method, sb.method, labels)
    for ta, tb in zip(sa.tables, sb.tables):
        if ta.columns == tb.columns:
            section.tables.append(aligned_table(ta, tb, labels))
        else:
            section.tables += [_labelled(ta, labels[0]), _labelled(tb, labels[1])]
    section.tables += [_labelled(t, labels[0]) for t in sa.tables[len(sb.tables) :]]
    section.tables += [_labelled(t, labels[1]) for t in sb.tables[len(sa.tables) :]]
    la, lb = labels
    if diffs:
        section.tables.append(
            Table(
                f"Differences {lb} - {la} with 95% intervals",
                ["measure", la, f"{la} interval", lb, f"{lb} interval", "difference", "interval", "method"],
                [
                    [
                        d.key,
                        d.a,
                        findings.fmt_interval(d.a_interval),
                        d.b,
                        findings.fmt_interval(d.b_interval),
                        d.diff,
                        findings.fmt_interval(d.interval),
                        d.method,
                    ]  # fmt: skip
                    for d in diffs
                ],
            )
        )
    section.findings = [findings.difference(d.key, lb, la, d.diff, d.interval, d.unit) for d in diffs]
    section.notes = [f"{la}: {n}" for n in sa.notes] + [f"{lb}: {n}" for n in sb.notes]
    return section


def _merged_rows(ra: list, rb: list, labels: tuple[str, str]) -> list[tuple[str, Any]]:
    from gptlab.study.render import cell

    a, b = dict(ra), dict(rb)
    rows = []
    for what in [*a, *(k for k in b if k not in a)]:
        va, vb = a.get(what), b.get(what)
        if what in a and what in b and cell(va) == cell(vb):
            rows.append((what, va))
        else:
            shown = lambda s, v, has: cell(v) if has else "absent"  # noqa: E731
            rows.append(
                (what, f"{labels[0]}: {shown(a, va, what in a)}; {labels[1]}: {shown(b, vb, what in b)}")
            )
    return rows


def _labelled(table: Table, label: str) -> Table:
    return Table(f"{label}: {table.caption}", table.columns, table.rows)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def aligned_table(ta: Table, tb: Table, labels: tuple[str, str]) -> Table:
    """A's and B's rows of one table side by side: matched on the leading text cells (at least the
    first column), each other column once per study, and numbers' differences B - A."""
    rows = ta.rows + tb.rows
    width = len(ta.columns)
    keys = 1
    while keys < width - 1 and all(not _is_number(r[keys]) for r in rows):
        keys += 1
    if not all(not _is_number(r[0]) for r in rows):
        keys = 1
    numeric = [any(_is_number(r[c]) for r in rows) for c in range(width)]
    la, lb = labels
    columns = list(ta.columns[:keys])
    for c in range(keys, width):
        name = ta.columns[c]
        columns += [f"{name} ({la})", f"{name} ({lb})"] + ([f"{name}: difference"] if numeric[c] else [])
    index_b = {tuple(r[:keys]): r for r in tb.rows}
    seen = set()
    out = []
    for key in [tuple(r[:keys]) for r in ta.rows] + [tuple(r[:keys]) for r in tb.rows]:
        if key in seen:
            continue
        seen.add(key)
        ra = next((r for r in ta.rows if tuple(r[:keys]) == key), None)
        rb = index_b.get(key)
        row = list(key)
        for c in range(keys, width):
            va = ra[c] if ra is not None else None
            vb = rb[c] if rb is not None else None
            row += [va, vb]
            if numeric[c]:
                row.append(vb - va if _is_number(va) and _is_number(vb) else None)
        out.append(row)
    caption = ta.caption if ta.caption == tb.caption else f"{la}: {ta.caption}; {lb}: {tb.caption}"
    return Table(f"{caption} ({lb} - {la} in the difference columns)", columns, out)


def _environment(a: StudyView, b: StudyView) -> Section:
    def rows(study: StudyView) -> list[tuple[str, Any]]:
        report = study.records.get("report", {}).get("result", {})
        env = list((report.get("environment") or {}).items())
        times = [(f"time of {n} (s)", t) for n, t in (report.get("stage_seconds") or {}).items()]
        return env + times

    return Section("Environment", method=_merged_rows(rows(a), rows(b), (a.label, b.label)))
