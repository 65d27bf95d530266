"""A grid of training runs (`gptlab sweep`): every point of the grid times every seed, one run each.

    gptlab sweep --config C --grid "train.data_fraction=0.1,0.3,1.0" --grid "model.dropout=0,0.1,0.2" \
        --seeds 2 --out DIR [--set key=value ...]

The grid is the product of the ``--grid`` axes (``section.key=v1,v2,...``, each value read as in
an override: TOML, or a bare word); seed i of ``--seeds N`` trains with ``train.seed`` = the
config's + i. Each run is an ordinary run directory, ``DIR/runs/<name>``, named from its point
(``train.data_fraction-0.1__model.dropout-0__s0``), with the config, then ``--set`` overrides,
then the point's values. When no axis is a ``data.*`` key, the token data is prepared once into
``DIR/data`` and every run reads it (``data.dir``); ``train.data_fraction`` cuts the train split
per run.

DIR/sweep.json records what the sweep is (the resolved base config, the grid, the seeds) and, as
each run ends, its result: the last evaluation's loss on the fixed train and val windows (eval
mode, no dropout, no label smoothing: the plain cross-entropy) and the gap val - train. Per
point it holds the mean, standard deviation (n - 1), min and max of each over the seeds. The
table is printed, and DIR/gap.png plots the gap per point (bars: mean, whiskers: min..max, dots:
seeds) next to the train and val losses; DIR/curves.png the eval losses over steps per point.

Resuming: run the same command again. A run recorded in sweep.json is skipped; a run directory
with a checkpoint is resumed from it (exact resume, gptlab.train.trainer); one without (it died
before its first checkpoint) is started over. DIR holding a different sweep (another config,
grid or seeds), or anything that is not a sweep, is refused: nothing is overwritten. Ctrl-C ends
the current run with a checkpoint and stops the sweep; the next call resumes it.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptlab.config import RunConfig, check_values, load_config, parse_override, set_value
from gptlab.errors import GptlabError
from gptlab.io import atomic_write_bytes, atomic_write_json, read_json
from gptlab.report import figure_png

SWEEP_FILE = "sweep.json"
SWEEP_FORMAT = "gptlab-sweep"
SWEEP_VERSION = 1
RUNS_DIR = "runs"
DATA_DIR = "data"
GAP_PLOT = "gap.png"
CURVES_PLOT = "curves.png"
METRICS = ("train_loss", "val_loss", "gap")
# set by the sweep itself: an axis or --set on them would be overridden or break the layout
RESERVED_KEYS = ("train.seed", "train.out_dir", "train.progress")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass
class SweepSpec:
    """What a sweep is: the base config (a file or shipped name, plus overrides), the grid axes
    (``[(key, [values])]`` in order) and the number of seeds."""

    config: str | None
    grid: list[tuple[str, list[Any]]]
    seeds: int = 1
    overrides: list[str] = field(default_factory=list)

    def base_config(self) -> RunConfig:
        return load_config(self.config, self.overrides)

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the axes' values, the first axis varying slowest."""
        keys = [key for key, _ in self.grid]
        return [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in self.grid))]

    def check(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise GptlabError(f"seeds must be a positive integer, got {self.seeds!r}")
        if not self.grid:
            raise GptlabError('a sweep needs at least one grid axis (--grid "section.key=v1,v2")')
        keys = [key for key, _ in self.grid]
        for key in keys:
            if key in RESERVED_KEYS:
                raise GptlabError(
                    f"{key} cannot be a grid axis: the sweep sets it (seeds: --seeds, runs: --out)"
                )
            if keys.count(key) > 1:
                raise GptlabError(f"grid axis {key} is given twice")
        for text in self.overrides:
            if parse_override(text)[0] in RESERVED_KEYS:
                raise GptlabError(f"--set {text}: the sweep sets {parse_override(text)[0]} itself")
        base = self.base_config()
        check_values(base)
        for point in self.points():  # every value type-checked and range-checked before any run
            config = self.base_config()
            for key, value in point.items():
                set_value(config, key, value, f"grid {key}={value!r}")
            check_values(config)

    def identity(self) -> dict[str, Any]:
        """What sweep.json compares: the resolved base config (not the file's name), grid, seeds."""
        base = self.base_config().to_dict()
        for key in RESERVED_KEYS:
            section, _, name = key.partition(".")
            base[section].pop(name, None)
        return {"base_config": base, "grid": [[k, list(v)] for k, v in self.grid], "seeds": self.seeds}


def parse_grid(text: str) -> tuple[str, list[Any]]:
    """``"model.dropout=0,0.1"`` -> ``("model.dropout", [0, 0.1])``: values split on commas, each
    read as a TOML value (or a bare word), in the order given; a repeated value is an error."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise GptlabError(
            f"grid axis {text!r} must look like section.key=v1,v2,... (e.g. model.dropout=0,0.1)"
        )
    values = [parse_override(f"{key}={part}")[1] for part in raw.split(",")]
    if any(isinstance(v, str) and not v for v in values):
        raise GptlabError(f"grid axis {text!r} has an empty value")
    shown = [json.dumps(v) for v in values]
    if len(set(shown)) != len(shown):
        raise GptlabError(f"grid axis {text!r} repeats a value")
    return key.strip(), values


def run_name(point: dict[str, Any], seed_index: int) -> str:
    """The run's folder name: ``key-value`` per axis, then ``s<seed index>``, joined by ``__``."""
    parts = [f"{key}-{_UNSAFE.sub('_', _format(value))}" for key, value in point.items()]
    return "__".join(parts + [f"s{seed_index}"])


def _format(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class SweepResult:
    out_dir: Path
    runs: dict[str, dict]  # run name -> its record (point, seed, losses, ...)
    points: list[dict]  # per point: its values, n, and mean/std/min/max of each metric
    stopped: str | None  # "interrupted" (Ctrl-C) or "terminated" (SIGTERM): run it again to go on
    plots: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.stopped is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "complete": self.complete,
            "stopped": self.stopped,
            "points": self.points,
            "runs": self.runs,
            "plots": [str(p) for p in self.plots],
        }


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    log: Callable[[str], None] | None = None,
    on_run: Callable[[str, dict], None] | None = None,
    on_step: Callable[[int, dict], None] | None = None,
) -> SweepResult:
    """Run (or resume) the sweep into ``out_dir``; see the module doc. ``log`` gets a line per
    run; ``on_run(name, record)`` is called after each run is recorded and ``on_step`` is
    passed to every run's trainer (tests use them to interrupt)."""
    from gptlab.train.checkpoint import has_checkpoint
    from gptlab.train.trainer import read_metrics, train

    spec.check()
    out = Path(out_dir)
    state = _claim(out, spec)
    log = log or (lambda line: print(line, file=sys.stderr))
    data_dir = _shared_data(spec, out)
    jobs = [(point, i) for point in spec.points() for i in range(spec.seeds)]
    stopped = None
    for number, (point, seed_index) in enumerate(jobs, 1):
        name = run_name(point, seed_index)
        if name in state["runs"]:
            continue
        run_dir = out / RUNS_DIR / name
        config = _run_config(spec, point, seed_index, run_dir, data_dir)
        resume = has_checkpoint(run_dir)
        if run_dir.exists() and not resume:  # died before its first checkpoint: start over
            shutil.rmtree(run_dir)
        log(f"[{number}/{len(jobs)}] {name}: {'resuming' if resume else 'training'}")
        result = train(config, resume=resume, on_step=on_step)
        if result.stop_reason in ("interrupted", "terminated"):
            log(f"{result.stop_reason}: {name} is checkpointed; run the same sweep again to go on")
            stopped = result.stop_reason
            break
        record = _run_record(point, config.train.seed, run_dir, out, result, read_metrics(run_dir))
        state["runs"][name] = record
        atomic_write_json(out / SWEEP_FILE, state)
        log(f"[{number}/{len(jobs)}] {name}: " + _metrics_text(record))
        if on_run is not None:
            on_run(name, record)
    state["points"] = summarise(spec, state["runs"])
    atomic_write_json(out / SWEEP_FILE, state)
    plots = write_plots(out, state["points"], state["runs"]) if state["points"] else []
    return SweepResult(out, state["runs"], state["points"], stopped, plots)


def _claim(out: Path, spec: SweepSpec) -> dict:
    """sweep.json's state: the existing one if DIR holds this very sweep, a new one if DIR is
    empty or absent; anything else is an error (and nothing is written)."""
    identity = spec.identity()
    path = out / SWEEP_FILE
    if path.is_file():
        state = read_json(path, "sweep file")
        if not isinstance(state, dict) or state.get("format") != SWEEP_FORMAT:
            raise GptlabError(f"{path} is not a gptlab sweep file")
        if state.get("spec") != json.loads(json.dumps(identity)):
            differs = [
                k for k in identity if state.get("spec", {}).get(k) != json.loads(json.dumps(identity[k]))
            ]
            raise GptlabError(
                f"{out} holds a different sweep (it differs in: {', '.join(differs) or 'spec'}): "
                "choose another --out, or run the same config, grid and seeds to resume it"
            )
        return state
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GptlabError(f"{out} exists and is not an empty folder nor a sweep: choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    state = {"format": SWEEP_FORMAT, "version": SWEEP_VERSION, "spec": identity, "runs": {}, "points": []}
    atomic_write_json(path, state)
    return state


def _shared_data(spec: SweepSpec, out: Path) -> Path | None:
    """DIR/data, tokenized once from the base config's data.input, when no axis changes the data."""
    from gptlab.train.trainer import prepare_run_data

    base = spec.base_config()
    if base.data.dir or any(key.startswith("data.") for key, _ in spec.grid):
        return None
    return prepare_run_data(base, out, progress=False)  # writes (or checks and reuses) out/data


def _run_config(spec: SweepSpec, point: dict, seed_index: int, run_dir: Path, data_dir: Path | None):
    config = spec.base_config()
    for key, value in point.items():
        set_value(config, key, value, f"grid {key}={value!r}")
    config.train.seed += seed_index
    config.train.out_dir = str(run_dir)
    config.train.progress = False
    if data_dir is not None:
        config.data.dir, config.data.input = str(data_dir), []
    return config


def _run_record(point, seed, run_dir: Path, out: Path, result, history: list[dict]) -> dict:
    evals = [r for r in history if r.get("kind") == "eval" and "train_loss" in r]
    last = evals[-1] if evals else {}
    train_loss, val_loss = last.get("train_loss"), last.get("val_loss")
    return {
        "point": point,
        "seed": seed,
        "run_dir": str(run_dir.relative_to(out)),
        "step": result.step,
        "stop_reason": result.stop_reason,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "gap": None if train_loss is None or val_loss is None else val_loss - train_loss,
        "best_val_loss": result.best_val_loss,
        "elapsed_s": result.elapsed_s,
        "curve": [[r["step"], r["train_loss"], r.get("val_loss")] for r in evals],
    }


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """mean, std (n - 1; 0 for one value), min and max; None without values."""
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "min": min(values), "max": max(values)}


def summarise(spec: SweepSpec, runs: dict[str, dict]) -> list[dict]:
    """Per point of the grid (in grid order), over its recorded seeds: n and each metric's spread."""
    out = []
    for point in spec.points():
        records = [runs[n] for i in range(spec.seeds) if (n := run_name(point, i)) in runs]
        if not records:
            continue
        row: dict[str, Any] = {"point": point, "n": len(records)}
        for metric in METRICS:
            row[metric] = spread([r[metric] for r in records if r[metric] is not None])
        out.append(row)
    return out


def _metrics_text(record: dict) -> str:
    shown = [f"{m.replace('_', ' ')} {record[m]:.4f}" for m in METRICS if record[m] is not None]
    return ", ".join(shown) or "no evaluation (no val split?)"


def format_table(points: list[dict]) -> str:
    """One row per point: its values, the seeds, and each metric as mean ± std."""
    if not points:
        return "no finished runs"
    keys = list(points[0]["point"])
    header = keys + ["seeds", "train loss", "val loss", "gap (val - train)"]
    rows = []
    for p in points:
        cells = [_format(p["point"][k]) for k in keys] + [str(p["n"])]
        for metric in METRICS:
            s = p[metric]
            cells.append("-" if s is None else f"{s['mean']:.4f} ± {s['std']:.4f}")
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _label(point: dict) -> str:
    return "\n".join(f"{k.split('.')[-1]}={_format(v)}" for k, v in point.items())


def write_plots(out: Path, points: list[dict], runs: dict[str, dict]) -> list[Path]:
    """DIR/gap.png (per point: the val - train gap, and the two losses) and DIR/curves.png (per
    point: eval train and val loss over steps, each seed a line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [_label(p["point"]) for p in points]
    xs = range(len(points))
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(points) + 2), 4.2))
    for ax, metrics, title in (
        (axes[0], ("gap",), "generalisation gap: val loss - train loss"),
        (axes[1], ("train_loss", "val_loss"), "final train and val loss"),
    ):
        width = 0.8 / len(metrics)
        for j, metric in enumerate(metrics):
            offset = (j - (len(metrics) - 1) / 2) * width
            stats = [p[metric] for p in points]
            means = [s["mean"] if s else float("nan") for s in stats]
            low = [s["mean"] - s["min"] if s else 0 for s in stats]
            high = [s["max"] - s["mean"] if s else 0 for s in stats]
            ax.bar(
                [x + offset for x in xs], means, width, yerr=[low, high], capsize=3, label=metric, alpha=0.7
            )
            for x, p in zip(xs, points):  # each seed as a dot
                seeds = [
                    r[metric] for r in runs.values() if r["point"] == p["point"] and r[metric] is not None
                ]
                ax.plot([x + offset] * len(seeds), seeds, "k.", markersize=4)
        ax.set_xticks(list(xs), labels, fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.axhline(0, color="black", linewidth=0.6)
        if len(metrics) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    gap = _save(fig, out / GAP_PLOT)

    columns = min(4, len(points))
    rows = -(-len(points) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False, sharey=True)
    for ax, p, label in zip(axes.flat, points, labels):
        for r in runs.values():
            if r["point"] != p["point"] or not r["curve"]:
                continue
            steps = [c[0] for c in r["curve"]]
            ax.plot(steps, [c[1] for c in r["curve"]], color="tab:blue", alpha=0.7)
            if all(c[2] is not None for c in r["curve"]):
                ax.plot(steps, [c[2] for c in r["curve"]], color="tab:orange", alpha=0.7)
        ax.set_title(label.replace("\n", ", "), fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(points) :]:
        ax.axis("off")
    axes[0][0].plot([], [], color="tab:blue", label="train (eval windows)")
    axes[0][0].plot([], [], color="tab:orange", label="val")
    axes[0][0].legend(fontsize=7)
    fig.supxlabel("step", fontsize=8)
    fig.tight_layout()
    return [gap, _save(fig, out / CURVES_PLOT)]


def _save(fig, path: Path) -> Path:
    atomic_write_bytes(path, figure_png(fig, dpi=100))
    return path
