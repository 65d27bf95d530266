"""Stage ``architecture``: the build choices, one at a time against the pretraining config, at
equal tokens (every variant trains the same steps x batch x block_size) and the same seeds.

Each variant is ``baseline`` (the pretraining config as it is) or a ``key=value`` override on it
(``model.pos_encoding=rope``); every variant trains ``seeds`` runs (train.seed = study seed + i) on
the pretraining run's prepared data, and its val loss is the last evaluation's (the trainer's fixed
val windows, eval mode). Per variant: mean and spread over seeds, and the difference from the
baseline with a Welch t 95% interval (none with one seed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.io import atomic_write_bytes
from gptlab.study import findings
from gptlab.study.stage import Section, Stage, StageContext, Table

BASELINE = "baseline"
FIGURE = "val_loss.png"
# what GPTConfig supports today: each an alternative to the default (learned, gelu, pre, layernorm)
DEFAULT_VARIANTS = [
    BASELINE,
    "model.pos_encoding=sinusoidal",
    "model.pos_encoding=rope",
    "model.activation=relu",
    "model.norm_position=post",
    "model.norm=rmsnorm",
]


@dataclass
class ArchitectureSection:
    variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS))
    seeds: int = 2
    set: list[str] = field(default_factory=list)  # overrides for every variant (fewer steps)


def run(ctx: StageContext) -> dict:
    from gptlab.config import check_values, load_config, parse_override, set_value
    from gptlab.train import read_metrics, train

    section: ArchitectureSection = ctx.section
    pre = ctx.config.sections["pretrain"]
    if section.seeds < 1:
        raise GptlabError(f"architecture.seeds must be at least 1, got {section.seeds}")
    if BASELINE not in section.variants:
        raise GptlabError(f"architecture.variants must include {BASELINE!r}: the differences are against it")
    data_dir = _pretrain_data(ctx)
    runs: dict[str, list[dict]] = {}
    bar = ctx.bar(len(section.variants) * section.seeds, unit="run")
    for variant in section.variants:
        runs[variant] = []
        for i in range(section.seeds):
            config = load_config(pre.config, [*pre.set, *section.set])
            if variant != BASELINE:
                key, value = parse_override(variant)
                set_value(config, key, value, f"architecture variant {variant!r}")
            config.train.seed = ctx.config.study.seed + i
            config.train.out_dir = str(ctx.dir / "runs" / f"{_slug(variant)}__s{i}")
            config.train.progress = False
            config.train.sample_tokens = 0
            if data_dir is not None:
                config.data.dir, config.data.input = str(data_dir), []
            check_values(config)
            result = train(config)
            if result.stop_reason in ("interrupted", "terminated"):
                raise KeyboardInterrupt
            evals = [
                r for r in read_metrics(config.train.out_dir) if r.get("kind") == "eval" and "val_loss" in r
            ]
            tokens = config.train.max_steps * config.train.batch_size * config.train.grad_accum
            runs[variant].append(
                {
                    "seed": config.train.seed,
                    "val_loss": evals[-1]["val_loss"] if evals else None,
                    "steps": result.step,
                    "tokens": tokens * config.model.build(256).block_size,
                    "n_params": result.n_params,
                    "elapsed_s": result.elapsed_s,
                }
            )
            bar.update(1)
    bar.close()
    total = sum(r["elapsed_s"] for records in runs.values() for r in records)
    table = _table(runs)
    atomic_write_bytes(ctx.dir / FIGURE, _figure(runs))
    return {"runs": runs, "table": table, "total_elapsed_s": total, "figure": FIGURE}


def _figure(runs: dict[str, list[dict]]) -> bytes:
    """Val loss per variant: each seed a dot, the mean a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gptlab.report import figure_png

    fig, ax = plt.subplots(figsize=(7, 0.5 * len(runs) + 1.5), dpi=110)
    for y, records in enumerate(runs.values()):
        losses = [r["val_loss"] for r in records if r["val_loss"] is not None]
        if losses:
            ax.barh(y, sum(losses) / len(losses), color="#9ecae1")
            ax.plot(losses, [y] * len(losses), "o", color="#08519c", markersize=4)
    ax.set_yticks(range(len(runs)), list(runs))
    ax.set_xlabel("val loss (nats/token): bars the mean over seeds, dots each seed")
    low = min((r["val_loss"] for rs in runs.values() for r in rs if r["val_loss"] is not None), default=0)
    ax.set_xlim(left=max(0.0, low - 0.2))
    ax.invert_yaxis()
    fig.tight_layout()
    return figure_png(fig)


def _pretrain_data(ctx: StageContext) -> Path | None:
    """The prepared data the pretrained model read (so every variant trains on the same tokens)."""
    from gptlab.run import Run

    return Run.open(ctx.study_dir / ctx.upstream["pretrain"]["result"]["run"]).data_dir


def _slug(variant: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in variant)


def _table(runs: dict[str, list[dict]]) -> list[dict]:
    from gptlab.train.sweep import spread

    base = [r["val_loss"] for r in runs[BASELINE] if r["val_loss"] is not None]
    rows = []
    for variant, records in runs.items():
        losses = [r["val_loss"] for r in records if r["val_loss"] is not None]
        row = {"variant": variant, "n": len(losses), "val_loss": spread(losses)}
        if variant != BASELINE and losses and base:
            diff, interval = findings.welch_interval(losses, base)
            row |= {"diff": diff, "diff_ci95": list(interval) if interval else None}
        rows.append(row)
    return rows


def report(result: dict, stage_dir: Path) -> Section:
    section = Section("Architecture choices")
    first = result["runs"][BASELINE][0]
    seeds = [r["seed"] for r in result["runs"][BASELINE]]
    section.method = [
        ("seeds", ", ".join(str(s) for s in seeds)),
        ("tokens per run", first["tokens"]),
        ("steps per run", first["steps"]),
        ("parameters (baseline)", first["n_params"]),
        ("training time, all runs (s)", result["total_elapsed_s"]),
    ]
    rows = []
    for row in result["table"]:
        s = row["val_loss"] or {}
        ci = row.get("diff_ci95")
        rows.append(
            [
                row["variant"],
                row["n"],
                s.get("mean"),
                s.get("std"),
                s.get("min"),
                s.get("max"),
                row.get("diff"),
                findings.fmt_interval(ci) if row["variant"] != BASELINE else None,
            ]  # fmt: skip
        )
        if row["variant"] != BASELINE and row.get("diff") is not None:
            section.findings.append(
                findings.difference(
                    "validation loss", row["variant"], BASELINE, row["diff"], ci, "nats/token"
                )
            )
    section.figures.append((result["figure"], "val loss per variant: the mean over seeds and each seed"))
    section.tables.append(
        Table(
            "Val loss (nats/token) per variant over seeds; difference from the baseline with a Welch t 95% interval",
            ["variant", "seeds", "mean", "std", "min", "max", "difference", "interval"],
            rows,
        )
    )
    return section


STAGE = Stage("architecture", "Architecture choices", ArchitectureSection, run, report, needs=("pretrain",))
