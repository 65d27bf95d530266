"""Stage ``benchmarks``: ``eval tasks`` on the pretrained model (gptlab.eval.tasks), the first
``limit`` items of each task, scored as lm-evaluation-harness scores them; each metric with its
bootstrap 95% interval, compared with the task's chance level."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gptlab.study import findings
from gptlab.study.stage import Section, Stage, StageContext, Table

MIN_ITEMS = 10  # fewer scored items: no comparison with chance is claimed


@dataclass
class BenchmarksSection:
    tasks: list[str] = field(
        default_factory=lambda: ["lambada", "hellaswag", "truthfulqa_mc1", "crows_pairs"]
    )
    limit: int = 100  # items per task (0: all)
    shots: int = 0
    data_dir: str = ""  # task files in the layout of ../shared/data/tasks ("" : the data registry)


def run(ctx: StageContext) -> dict:
    from gptlab.eval.tasks.report import jsonable
    from gptlab.eval.tasks.runner import TaskOptions, evaluate_run

    section: BenchmarksSection = ctx.section
    options = TaskOptions(
        shots=section.shots,
        limit=section.limit or None,
        seed=ctx.config.study.seed,
        device=ctx.config.study.device,
        data_dir=section.data_dir or None,
        progress=ctx.progress,
    )
    model = ctx.study_dir / ctx.upstream["pretrain"]["result"]["run"]
    result = evaluate_run(model, section.tasks, options)
    chance = {name: dict(task.chance) for name, task in result.tasks.items()}
    return {"results": jsonable(result.results), "chance": chance, "timing": jsonable(result.timing)}


def report(result: dict, stage_dir: Path) -> Section:
    section = Section("Benchmarks")
    rows = []
    for task, metrics in result["results"].items():
        section.method.append((f"{task} items", metrics.get("n")))
        for metric, value in metrics.items():
            if metric == "n" or metric.endswith(("_stderr", "_ci95")) or not isinstance(value, (int, float)):
                continue
            ci = metrics.get(f"{metric}_ci95")
            chance = result["chance"].get(task, {}).get(metric)
            rows.append([task, metric, value, findings.fmt_interval(ci), chance])
            if chance is None:
                continue
            what = f"{task} {metric} over {metrics.get('n')} items"
            if (
                metrics.get("n") or 0
            ) < MIN_ITEMS:  # a bootstrap of a handful of items has no spread to trust
                section.findings.append(f"{what}: too few items to compare with chance.")
            else:
                section.findings.append(findings.against_reference(what, value, ci, chance, "chance"))
    section.tables.append(
        Table(
            "Benchmark metrics (bootstrap 95% intervals)",
            ["task", "metric", "value", "interval", "chance"],
            rows,
        )
    )
    return section


STAGE = Stage("benchmarks", "Benchmarks", BenchmarksSection, run, report, needs=("pretrain",))
