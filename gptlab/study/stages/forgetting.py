"""Stage ``forgetting``: the cross-task matrix (gptlab.eval.forgetting) of a fine-tuning chain,
with and without a mitigation.

Task A is sentiment (`finetune classify`), task B a generation task (`finetune instruct`:
translation by default), both on the tasks stage's training files with its settings. Rows: the
base model, A, A -> B, and A -> B with each mitigation the continual-learning API has (replay of
A's texts as a fraction of B's training split, an EWC penalty). Columns: A's and B's held-out
files (the first ``eval_examples`` items): accuracy (A's own head put back on a later body: what
survives of A) and corpus BLEU (chrF too), each with a 95% percentile bootstrap interval over items.

Forgetting is A -> B minus A on task A. The matrix gives each cell's interval, not the items, so
the difference's interval is the normal approximation from the two cells' intervals taken as
independent (half-width / 1.96 as the standard error): wider than a paired interval on the same
items, so it errs against claiming an effect. The fine-tunes run inside this stage's folder, where
the matrix reads them (the chain records each run's path, and A's head is found through it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.study import findings
from gptlab.study.stage import Section, Stage, StageContext, Table
from gptlab.study.stages import tasks as task_stage

FIRST = "sentiment"
SECOND_TASKS = ("translation", "summarisation")
Z95 = 1.959963984540054
RUNS_DIR, MATRIX_DIR = "runs", "matrix"


@dataclass
class ForgettingSection:
    second: str = "translation"  # task B, fine-tuned after sentiment
    replay: float = 0.2  # fraction of B's training split made of A's texts (0: no replay row)
    ewc: float = 0.0  # EWC lambda (0: no EWC row)
    eval_examples: int = 100  # items of each held-out file scored
    resamples: int = 1000


def run(ctx: StageContext) -> dict:
    from gptlab.eval.forgetting import ForgettingOptions, Task, evaluate_forgetting, write_forgetting
    from gptlab.finetune.classify import finetune_classifier
    from gptlab.finetune.instruct import finetune_instruct

    section: ForgettingSection = ctx.section
    if section.second not in SECOND_TASKS:
        raise GptlabError(
            f"forgetting.second must be one of {', '.join(SECOND_TASKS)}, got {section.second!r}"
        )
    tasks_section = ctx.config.sections["tasks"]
    study = ctx.config.study
    model = str(ctx.study_dir / ctx.upstream["pretrain"]["result"]["run"])
    data_dir = ctx.upstream_dirs["tasks"] / task_stage.DATA_DIR
    runs = ctx.dir / RUNS_DIR
    for task in (FIRST, section.second):  # trained on the tasks stage's copies (their paths stay)
        if not (data_dir / f"{task}.jsonl").is_file():
            raise GptlabError(f"forgetting needs the tasks stage to include {task!r} (tasks.tasks)")
    variants = [("", {})]
    if section.replay:
        variants.append(("replay", {"replay": section.replay}))
    if section.ewc:
        variants.append(("EWC", {"ewc": section.ewc}))
    bar = ctx.bar(1 + len(variants) + 1, unit="step")  # the fine-tunes, then the matrix
    first = runs / FIRST
    finetune_classifier(
        task_stage.classify_options(model, data_dir / f"{FIRST}.jsonl", first, tasks_section, study)
    )
    rows = [("base", model), (FIRST, first)]
    bar.update(1)
    for name, extra in variants:
        out = runs / (section.second + (f"-{name.lower()}" if name else ""))
        options = task_stage.instruct_options(
            section.second, model, data_dir / f"{section.second}.jsonl", out, tasks_section, study
        )
        options.model, options.after, options.compare_base = None, str(first), False
        for key, value in extra.items():
            setattr(options, key, value)
        finetune_instruct(options)
        rows.append((f"{FIRST}→{section.second}" + (f" + {name}" if name else ""), out))
        bar.update(1)
    eval_dir = ctx.dir / "eval"
    columns = [
        Task("sentiment", task_stage.subset_file(FIRST, tasks_section, eval_dir, "eval", section.eval_examples), FIRST),
        Task("translation", task_stage.subset_file(section.second, tasks_section, eval_dir, "eval", section.eval_examples), section.second),
    ]  # fmt: skip
    input_field, target_field, template = task_stage.PAIRS[section.second]
    matrix = evaluate_forgetting(
        [(label, str(path)) for label, path in rows],
        columns,
        ForgettingOptions(
            text_field="sentence",
            label_field="label",
            template=template,
            input_field=input_field,
            target_field=target_field,
            max_new_tokens=tasks_section.max_new_tokens,
            resamples=section.resamples,
            seed=study.seed,
            device=study.device,
        ),
    )
    write_forgetting(matrix, ctx.dir / MATRIX_DIR)
    bar.update(1)
    bar.close()
    d = matrix.to_dict()
    for row in d["rows"]:  # paths inside the stage folder (the chain holds absolute ones)
        row["run"] = _relative(Path(row["run"]), ctx)
        del row["chain"]
    for column in d["columns"]:
        column["data"] = _relative(Path(column["data"]), ctx)
    del d["settings"]
    return {
        "first": FIRST,
        "second": section.second,
        "matrix": d,
        "figure": f"{MATRIX_DIR}/heatmap.png",
    } | _changes(d)


def _changes(m: dict) -> dict:
    """What the second fine-tune did to task A (A -> B minus A), and each mitigation's row minus
    the unmitigated A -> B row on every task, with their intervals."""
    labels = [r["label"] for r in m["rows"]]
    a, chained = 1, 2  # rows: base, A, A -> B, then the mitigated chains
    diff, ci = cell_difference(m["cells"][a][0], m["cells"][chained][0])
    mitigations = []
    for i in range(chained + 1, len(labels)):
        for j, c in enumerate(m["columns"]):
            d, interval = cell_difference(m["cells"][chained][j], m["cells"][i][j])
            mitigations.append(
                {"row": labels[i], "task": c["name"], "metric": c["metric"], "diff": d, "diff_ci95": interval}
            )
    return {"forgetting": {"diff": diff, "diff_ci95": ci}, "mitigations": mitigations}  # fmt: skip


def _relative(path: Path, ctx: StageContext) -> str:
    try:
        return str(path.resolve().relative_to(ctx.dir.resolve()))
    except ValueError:
        return "pretrain model"


def cell_difference(a: dict, b: dict) -> tuple[float, list[float]]:
    """b minus a, and its normal-approximation 95% interval from the two cells' percentile
    intervals taken as independent (see the module docstring)."""
    se = math.hypot((a["high"] - a["low"]) / (2 * Z95), (b["high"] - b["low"]) / (2 * Z95))
    diff = b["value"] - a["value"]
    return diff, [diff - Z95 * se, diff + Z95 * se]


def forgot_sentence(
    task: str, metric: str, before: dict, after: dict, change: dict, higher_is_better: bool
) -> str:
    """ "forgot" only when the interval of the change excludes 0 in the worse direction."""
    diff, ci = change["diff"], change["diff_ci95"]
    numbers = (
        f"{metric} {findings.fmt(before['value'])} -> {findings.fmt(after['value'])}, "
        f"difference {findings.fmt(diff)}, {findings.fmt_interval(ci)}"
    )
    if not findings.excludes(ci):
        return f"No measurable forgetting of {task} ({numbers})."
    worse = (ci[1] < 0) if higher_is_better else (ci[0] > 0)
    return f"The second fine-tune {'forgot part of' if worse else 'improved'} {task} ({numbers})."


def report(result: dict, stage_dir: Path) -> Section:
    m = result["matrix"]
    section = Section("Forgetting")
    first, second = result["first"], result["second"]
    section.method = [
        ("chain", f"base -> {first} (classifier) -> {second} (instruct)"),
        ("interval", m["interval"]),
    ] + [(f"{c['name']} items", m["cells"][0][j]["n"]) for j, c in enumerate(m["columns"])]
    head = ["model"]
    for c in m["columns"]:
        head += [f"{c['name']} {c['metric']}", "interval"]
    rows = []
    for r, cells in zip(m["rows"], m["cells"]):
        line = [r["label"]]
        for c in cells:
            line += [c["value"], findings.fmt_interval([c["low"], c["high"]])]
        rows.append(line)
    section.tables.append(Table("The forgetting matrix: each model on each task", head, rows))
    section.figures.append((result["figure"], "the matrix as a heat map (colour: value / column best)"))
    col = m["columns"][0]
    section.findings.append(
        forgot_sentence(
            first,
            col["metric"],
            m["cells"][1][0],
            m["cells"][2][0],
            result["forgetting"],
            col["higher_is_better"],
        )
    )
    for x in result["mitigations"]:
        section.findings.append(
            findings.difference(
                f"{x['task']} {x['metric']}", x["row"], "no mitigation", x["diff"], x["diff_ci95"]
            )
        )
    section.notes.append(
        "Differences between rows: a normal approximation from the two cells' intervals taken as independent."
    )
    return section


STAGE = Stage("forgetting", "Forgetting", ForgettingSection, run, report, needs=("pretrain", "tasks"))
