"""Stage ``tasks``: the pretrained model fine-tuned on each task, with its metrics and intervals.

Tasks (each a fine-tune from the pretrained run, ``seed`` = the study's):

* ``sentiment``: SST-2, `finetune classify` (gptlab.finetune.classify); test accuracy with its
  Wilson 95% interval and macro-F1; the classifier's own error analysis of the test split
  (results.json: the most confident mistakes, accuracy by length and with/without negation,
  each bucket with its Wilson interval).
* ``translation``: Multi30k English -> German, and ``summarisation``: SciTLDR abstract -> TLDR,
  `finetune instruct` on input -> output pairs (a prompt template, the prompt masked out).
* ``instruction``: instruction following, `finetune instruct` on Alpaca-format examples.

The data is read through the data registry (gptlab.data.registry: the mirror or cache) or from
``data_dir`` in the layout of ../shared/data/tasks (instruction data: the registry's
``instruction-data-subset`` or ``instruction_data``); the first ``train_examples`` examples of each
training file are copied into the stage folder (``data/``) and the fine-tune splits them
train/val/test, seeded: the test split is held out. For the generation tasks the test outputs of
the fine-tuned and of the base model (same prompts, greedy) are scored with corpus BLEU and
chrF (sacrebleu's definitions) and mean ROUGE-L F, each with a 95% percentile bootstrap interval
over test items, and the fine-tuned minus base difference with a paired bootstrap interval (the
same resampled items for both).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gptlab.errors import GptlabError
from gptlab.study import findings
from gptlab.study.stage import Section, Stage, StageContext, Table

TASKS = ("sentiment", "translation", "summarisation", "instruction")
# task -> (data registry name, its path under a data_dir laid out as ../shared/data/tasks)
TRAIN_FILES = {
    "sentiment": ("sst2-train-subset", "sst2/train.jsonl"),
    "translation": ("multi30k-train-subset", "multi30k/train.jsonl"),
    "summarisation": ("scitldr-train", "scitldr/train.jsonl"),
    "instruction": ("instruction-data-subset", ""),  # the registry, or instruction_data FILE
}
EVAL_FILES = {  # the held-out files the forgetting matrix scores
    "sentiment": ("sst2-validation-subset", "sst2/validation.jsonl"),
    "translation": ("multi30k-val-subset", "multi30k/val.jsonl"),
    "summarisation": ("scitldr-val", "scitldr/val.jsonl"),
}
# input -> output tasks: (input field, output field, prompt template)
PAIRS = {
    "translation": ("en", "de", "Translate English to German:\n{input}\n"),
    "summarisation": ("document", "summary", "Summarise in one sentence:\n{input}\n"),
}
GENERATION_METRICS = ("bleu", "chrf", "rougeL")
DATA_DIR, RUNS_DIR = "data", "runs"


@dataclass
class TasksSection:
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    data_dir: str = ""  # task files in the layout of ../shared/data/tasks ("": the data registry)
    instruction_data: str = ""  # an Alpaca-format JSON file ("": the registry's instruction-data-subset)
    train_examples: int = 2000  # the first N examples of each training file (0: all)
    test_fraction: float = 0.1  # held out for the test metrics
    test_examples: int = 200  # generation tasks: at most N test outputs (0: the whole test split)
    epochs: int = 2
    batch_size: int = 16
    lr: float = 3e-4
    max_new_tokens: int = 48
    resamples: int = 1000  # bootstrap draws of each interval


def run(ctx: StageContext) -> dict:
    section: TasksSection = ctx.section
    unknown = [t for t in section.tasks if t not in TASKS]
    if unknown:
        raise GptlabError(f"tasks.tasks: unknown task {', '.join(unknown)} (tasks: {', '.join(TASKS)})")
    if not 0 < section.test_fraction < 0.5:
        raise GptlabError(f"tasks.test_fraction must be in (0, 0.5), got {section.test_fraction}")
    model = str(ctx.study_dir / ctx.upstream["pretrain"]["result"]["run"])
    out: dict[str, dict] = {}
    bar = ctx.bar(len(section.tasks), unit="task")
    for task in section.tasks:
        data = subset_file(task, section, ctx.dir / DATA_DIR)
        run_dir = ctx.dir / RUNS_DIR / task
        if task == "sentiment":
            out[task] = _sentiment(model, data, run_dir, section, ctx)
        else:
            out[task] = _generation(task, model, data, run_dir, section, ctx)
        out[task] |= {"data": f"{DATA_DIR}/{data.name}", "run": f"{RUNS_DIR}/{task}"}
        bar.update(1)
    bar.close()
    return {"tasks": out}


# --- data ----------------------------------------------------------------------------------------


def source_file(task: str, section: TasksSection, split: str = "train") -> Path:
    """The ``train`` (or ``eval``) file of ``task``: ``data_dir``'s copy, else the data registry's
    (mirror or cache)."""
    registry_name, relative = (TRAIN_FILES if split == "train" else EVAL_FILES)[task]
    if task == "instruction" and section.instruction_data:
        return Path(section.instruction_data)
    if section.data_dir and task != "instruction":  # data_dir holds the task folders only
        path = Path(section.data_dir) / relative
        if not path.is_file():
            raise GptlabError(f"tasks.data_dir: {path} is missing (the layout of ../shared/data/tasks)")
        return path
    from gptlab.data.registry import download

    return download(registry_name, progress=False)


def subset_file(
    task: str, section: TasksSection, out_dir: Path, split: str = "train", limit: int | None = None
) -> Path:
    """The first ``limit`` examples (default ``train_examples``; 0 or None: all) of the task's
    ``split`` file, written to ``out_dir`` in the same format."""
    from gptlab.data.corpus import read_text_file
    from gptlab.io import atomic_write_text

    path = source_file(task, section, split)
    text = read_text_file(path)
    limit = (section.train_examples if split == "train" else limit) or None
    if path.suffix == ".json":  # a JSON list (Alpaca)
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise GptlabError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
        if not isinstance(items, list):
            raise GptlabError(f"{path}: expected a JSON list of examples")
        body, suffix = json.dumps(items[:limit], indent=1, ensure_ascii=False) + "\n", ".json"
    else:  # JSONL: the first lines, kept verbatim
        lines = [line for line in text.splitlines() if line.strip()]
        body, suffix = "\n".join(lines[:limit]) + "\n", ".jsonl"
    out = out_dir / (f"{task}{suffix}" if split == "train" else f"{task}-{split}{suffix}")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, body)
    return out


# --- sentiment -----------------------------------------------------------------------------------


def _training(section: TasksSection, study) -> dict:
    """The settings every fine-tune of the stage shares (the val split is as large as the test's)."""
    return {
        "val_fraction": section.test_fraction,
        "test_fraction": section.test_fraction,
        "seed": study.seed,
        "epochs": section.epochs,
        "batch_size": section.batch_size,
        "lr": section.lr,
        "device": study.device,
    }


def classify_options(model: str, data: Path, out: Path, section: TasksSection, study):
    """The `finetune classify` options of the sentiment task (also the forgetting stage's task A)."""
    from gptlab.finetune.classify import ClassifyOptions

    return ClassifyOptions(
        model=model,
        data=str(data),
        out=str(out),
        text_column="sentence",
        label_column="label",
        **_training(section, study),
        prompting_shots=(),
        progress=False,
    )


def _sentiment(model: str, data: Path, run_dir: Path, section: TasksSection, ctx: StageContext) -> dict:
    from gptlab.audit.common import wilson_interval
    from gptlab.finetune.classify import finetune_classifier

    options = classify_options(model, data, run_dir, section, ctx.config.study)
    result = finetune_classifier(options)
    test = result.summary["test"]
    confusion = test["confusion_matrix"]
    n = sum(sum(row) for row in confusion)
    correct = sum(confusion[i][i] for i in range(len(confusion)))
    errors = result.summary["error_analysis"]
    return {
        "kind": "classify",
        "splits": {"test": n},
        "accuracy": correct / n if n else None,
        "accuracy_ci95": list(wilson_interval(correct, n) or []) or None,
        "chance": 1 / len(confusion),
        "correct": correct,
        "macro_f1": test["macro_f1"],
        "labels": test["labels"],
        "error_analysis": {
            "confident_mistakes": errors.get("confident_mistakes", [])[:5],
            "by_length": errors.get("by_length", []),
            "by_negation": errors.get("by_negation", []),
        },
        "elapsed_s": result.summary.get("train_seconds"),
    }


# --- generation tasks ----------------------------------------------------------------------------


def instruct_options(task: str, model: str, data: Path, out: Path, section: TasksSection, study):
    """The `finetune instruct` options of a generation task (also the forgetting stage's task B)."""
    from gptlab.finetune.instruct import InstructOptions

    fields = PAIRS.get(task)
    return InstructOptions(
        model=model,
        data=str(data),
        out=str(out),
        template=fields[2] if fields else "alpaca",
        input_field=fields[0] if fields else None,
        output_field=fields[1] if fields else None,
        mask_prompt=True,
        **_training(section, study),
        max_new_tokens=section.max_new_tokens,
        max_test_examples=section.test_examples or None,
        compare_base=True,
        progress=False,
    )


def _generation(
    task: str, model: str, data: Path, run_dir: Path, section: TasksSection, ctx: StageContext
) -> dict:
    from gptlab.finetune.instruct import BASE_RESPONSES_FILE, RESPONSES_FILE, finetune_instruct

    options = instruct_options(task, model, data, run_dir, section, ctx.config.study)
    result = finetune_instruct(options)
    tuned = json.loads((run_dir / RESPONSES_FILE).read_text(encoding="utf-8"))
    base = json.loads((run_dir / BASE_RESPONSES_FILE).read_text(encoding="utf-8"))
    scores = generation_scores(
        [r["generated"] for r in tuned],
        [r["generated"] for r in base],
        [r["reference"] for r in tuned],
        section.resamples,
        ctx.config.study.seed,
    )
    return {
        "kind": "instruct",
        "splits": result.summary["splits"],
        "metrics": scores,
        "examples": [
            {k: r[k] for k in ("instruction", "input", "reference", "generated")} for r in tuned[:3]
        ],
        "elapsed_s": result.summary.get("train_seconds"),
    }


def _item_stats(outputs: list[str], references: list[str]) -> dict[str, np.ndarray]:
    """Per item, each metric's sufficient statistics (summed over items, they give the corpus score)."""
    from gptlab.eval.bleu import segment_bleu_stats
    from gptlab.eval.chrf import segment_chrf_stats
    from gptlab.eval.rouge import rouge

    bleu, chrf, rouge_l = [], [], []
    for out, ref in zip(outputs, references):
        sys_len, ref_len, correct, total = segment_bleu_stats(out, [ref])
        bleu.append([sys_len, ref_len, *correct, *total])
        chrf.append([x for triple in segment_chrf_stats(out, [ref]) for x in triple])
        rouge_l.append([rouge(out, ref, ("rougeL",))["rougeL"].fmeasure])
    return {"bleu": np.array(bleu, float), "chrf": np.array(chrf, float), "rougeL": np.array(rouge_l, float)}


def _statistic(metric: str, n: int):
    """The corpus score from summed per-item statistics (``n`` items)."""
    from gptlab.eval.bleu import bleu_from_stats
    from gptlab.eval.chrf import chrf_from_stats

    if metric == "bleu":

        def bleu(s: np.ndarray) -> float:
            orders = (len(s) - 2) // 2
            return bleu_from_stats(s[2 : 2 + orders], s[2 + orders :], int(s[0]), int(s[1]), "exp").score

        return bleu
    if metric == "chrf":
        return lambda s: chrf_from_stats([tuple(int(v) for v in s[i : i + 3]) for i in range(0, len(s), 3)])
    return lambda s: 100.0 * float(s[0]) / n  # mean ROUGE-L F, in points like BLEU and chrF


def generation_scores(
    tuned: list[str], base: list[str], references: list[str], resamples: int, seed: int
) -> dict[str, dict]:
    """Each metric of the fine-tuned and the base outputs with bootstrap 95% intervals over items,
    and their difference with a paired bootstrap interval (both resampled on the same items)."""
    from gptlab.eval.forgetting import bootstrap_interval

    if not references:
        raise GptlabError("no test outputs to score")
    n = len(references)
    stats_t, stats_b = _item_stats(tuned, references), _item_stats(base, references)
    scores = {}
    for metric in GENERATION_METRICS:
        f = _statistic(metric, n)
        width = stats_t[metric].shape[1]
        both = np.concatenate([stats_t[metric], stats_b[metric]], axis=1)
        value_t, value_b = f(stats_t[metric].sum(0)), f(stats_b[metric].sum(0))
        scores[metric] = {
            "n": n,
            "tuned": value_t,
            "tuned_ci95": list(bootstrap_interval(stats_t[metric], f, resamples, seed)),
            "base": value_b,
            "base_ci95": list(bootstrap_interval(stats_b[metric], f, resamples, seed)),
            "diff": value_t - value_b,
            "diff_ci95": list(
                bootstrap_interval(both, lambda s, f=f, w=width: f(s[:w]) - f(s[w:]), resamples, seed)
            ),
        }
    return scores


# --- report --------------------------------------------------------------------------------------


def report(result: dict, stage_dir: Path) -> Section:
    section = Section("Fine-tuning tasks")
    rows = []
    for task, r in result["tasks"].items():
        section.method.append((f"{task} data", f"{r['data']} ({_splits(r['splits'])})"))
        section.method.append((f"{task} fine-tuning time (s)", r["elapsed_s"]))
        if task == "sentiment":
            rows.append(
                [task, "accuracy", r["accuracy"], findings.fmt_interval(r["accuracy_ci95"]), None, None]
            )
            section.findings.append(
                findings.against_reference(
                    f"Sentiment test accuracy over {r['splits']['test']} items",
                    r["accuracy"],
                    r["accuracy_ci95"],
                    r["chance"],
                    "chance",
                )
            )
            continue
        for metric, m in r["metrics"].items():
            rows.append(
                [task, metric, m["tuned"], findings.fmt_interval(m["tuned_ci95"]), m["base"], m["diff"]]
            )
            section.findings.append(
                findings.difference(
                    f"{task} {metric} over {m['n']} test items",
                    f"{task} fine-tuning",
                    "the base model",
                    m["diff"],
                    m["diff_ci95"],
                    "points",
                )
            )
    section.tables.append(
        Table(
            "Test metrics of each fine-tuned model (accuracy: Wilson 95% interval; BLEU, chrF, ROUGE-L F in "
            "points: bootstrap 95% interval over items) and the base model's score on the same prompts",
            ["task", "metric", "fine-tuned", "interval", "base", "difference"],
            rows,
        )
    )
    sentiment = result["tasks"].get("sentiment")
    if sentiment:
        section.tables.append(_buckets(sentiment["error_analysis"]))
        mistakes = sentiment["error_analysis"]["confident_mistakes"]
        if mistakes:
            section.tables.append(
                Table(
                    "Sentiment: the most confident mistakes",
                    ["text", "gold", "predicted", "probability"],
                    [[m["text"], m["gold"], m["predicted"], m["probability"]] for m in mistakes],
                )
            )
    return section


def _splits(splits: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in splits.items())


def _buckets(errors: dict) -> Table:
    rows = [
        [b["bucket"], b["n"], b["accuracy"], findings.fmt_interval(b["interval"])]
        for b in errors["by_length"] + errors["by_negation"]
    ]
    return Table("Sentiment accuracy by length and negation (Wilson 95% intervals)", ["bucket", "n", "accuracy", "interval"], rows)  # fmt: skip


STAGE = Stage("tasks", "Fine-tuning tasks", TasksSection, run, report, needs=("pretrain",))
