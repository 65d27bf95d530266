"""Stage ``overfitting``: a data size x regularisation grid of from-scratch runs
(gptlab.train.sweep) on the pretraining config and data.

Each point of the grid (``train.data_fraction`` x ``model.dropout`` by default; any ``key=v1,v2``
axes, e.g. ``optim.weight_decay`` or ``train.label_smoothing``) trains ``seeds`` runs; a run's
train and val losses are its last evaluation's on the trainer's fixed windows (eval mode: no
dropout, no label smoothing), the gap is val - train. Per point: the mean gap with a normal 95%
interval over seeds (none with one seed), and each point's gap against the first point's (the
least data, no regularisation by default) with a Welch t 95% interval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.study import findings
from gptlab.study.stage import Section, Stage, StageContext, Table

SWEEP_DIR = "sweep"


@dataclass
class OverfittingSection:
    grid: list[str] = field(default_factory=lambda: ["train.data_fraction=0.1,1.0", "model.dropout=0.0,0.2"])
    seeds: int = 2
    set: list[str] = field(default_factory=list)  # overrides for every run (fewer steps)


def run(ctx: StageContext) -> dict:
    from gptlab.run import Run
    from gptlab.train.sweep import SweepSpec, parse_grid, run_sweep

    section: OverfittingSection = ctx.section
    if section.seeds < 1:
        raise GptlabError(f"overfitting.seeds must be at least 1, got {section.seeds}")
    if not section.grid:
        raise GptlabError("overfitting.grid needs at least one axis (key=v1,v2)")
    pre = ctx.config.sections["pretrain"]
    data_dir = Run.open(ctx.study_dir / ctx.upstream["pretrain"]["result"]["run"]).data_dir
    overrides = [*pre.set, *section.set, "train.sample_tokens=0", "data.input=[]"]
    overrides.append(f"data.dir={json.dumps(str(data_dir))}")
    spec = SweepSpec(pre.config, [parse_grid(axis) for axis in section.grid], section.seeds, overrides)
    bar = ctx.bar(len(spec.points()) * spec.seeds, unit="run")
    result = run_sweep(
        spec, ctx.dir / SWEEP_DIR, log=lambda line: None, on_run=lambda name, record: bar.update(1)
    )
    bar.close()
    if not result.complete:
        raise KeyboardInterrupt  # the stage is lost; the study's rerun trains it again
    return {
        "axes": [key for key, _ in spec.grid],
        "seeds": section.seeds,
        "table": _table(result.points, result.runs, section.seeds),
        "total_elapsed_s": sum(r["elapsed_s"] for r in result.runs.values()),
        "steps": next(iter(result.runs.values()))["step"],
        "figures": [f"{SWEEP_DIR}/{p.name}" for p in result.plots],
    }


def _table(points: list[dict], runs: dict[str, dict], seeds: int) -> list[dict]:
    """Per point: its values, train/val loss and gap spreads, the gap's interval over seeds, and
    its gap minus the first point's with a Welch interval."""
    gaps = [
        [r["gap"] for r in runs.values() if r["point"] == p["point"] and r["gap"] is not None] for p in points
    ]
    rows = []
    for p, values in zip(points, gaps):
        row = {"point": p["point"], "n": p["n"], **{m: p[m] for m in ("train_loss", "val_loss", "gap")}}
        if values:
            _, interval = findings.mean_interval(values)
            row["gap_ci95"] = list(interval) if interval else None
        if rows and values and gaps[0]:
            diff, interval = findings.welch_interval(values, gaps[0])
            row |= {"gap_diff": diff, "gap_diff_ci95": list(interval) if interval else None}
        rows.append(row)
    return rows


def _label(point: dict) -> str:
    return ", ".join(
        f"{k.split('.')[-1]}={findings.fmt(v) if isinstance(v, float) else v}" for k, v in point.items()
    )


def report(result: dict, stage_dir: Path) -> Section:
    section = Section("Overfitting")
    section.method = [
        ("grid", " x ".join(result["axes"])),
        ("seeds per point", result["seeds"]),
        ("steps per run", result["steps"]),
        ("training time, all runs (s)", result["total_elapsed_s"]),
    ]
    rows = []
    first = _label(result["table"][0]["point"])
    for row in result["table"]:
        label = _label(row["point"])
        mean = {m: (row[m] or {}).get("mean") for m in ("train_loss", "val_loss", "gap")}
        rows.append(
            [
                label,
                row["n"],
                mean["train_loss"],
                mean["val_loss"],
                mean["gap"],
                findings.fmt_interval(row.get("gap_ci95")),
                row.get("gap_diff"),
                findings.fmt_interval(row.get("gap_diff_ci95")) if "gap_diff" in row else None,
            ]
        )
        if mean["gap"] is not None:
            section.findings.append(
                findings.against_reference(
                    f"The generalisation gap (val - train loss) at {label}",
                    mean["gap"],
                    row.get("gap_ci95"),
                    0.0,
                    "zero",
                )
            )
        if "gap_diff" in row:
            section.findings.append(
                findings.difference(
                    "the generalisation gap",
                    label,
                    first,
                    row["gap_diff"],
                    row.get("gap_diff_ci95"),
                    "nats/token",
                )
            )
    section.tables.append(
        Table(
            "Train and val loss (nats/token, means over seeds) and the gap val - train per grid point; "
            f"the gap's difference from the first point ({first}) with a Welch t 95% interval",
            ["point", "seeds", "train loss", "val loss", "gap", "gap interval", "gap vs first", "interval"],
            rows,
        )
    )  # fmt: skip
    captions = {"gap.png": "the gap per point (bars: mean, whiskers: min..max, dots: seeds)", "curves.png": "eval losses over steps per point"}  # fmt: skip
    section.figures += [(f, captions.get(Path(f).name, Path(f).name)) for f in result["figures"]]
    return section


STAGE = Stage("overfitting", "Overfitting", OverfittingSection, run, report, needs=("pretrain",))
