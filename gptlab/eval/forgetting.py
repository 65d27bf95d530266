"""The forgetting matrix (``gptlab eval forgetting``): every run of a fine-tuning chain on every
task, so that what fine-tuning on B did to task A reads off one table.

    matrix = evaluate_forgetting(["runs/base", "runs/sst2", "runs/sst2-m30k"],
                                 parse_tasks("lm:val.txt,sentiment:sst2/validation.jsonl,translation:m30k/val.jsonl"))
    write_forgetting(matrix, "out/forgetting")   # matrix.json, matrix.md, heatmap.png

Rows are runs, labelled by the chain they record (gptlab.finetune.continual: "base", "sst2",
"sst2→multi30k") unless given as ``LABEL=PATH``. Columns are tasks ``KIND:FILE``; the metric
depends on the kind, each with a 95% interval (percentile bootstrap over the task's items,
``resamples`` draws, seeded):

* ``lm``: perplexity of the GPT on a text file, one item per non-empty line
  (gptlab.eval.perplexity, each line after <|endoftext|>); the interval resamples lines and
  recomputes exp(total NLL / total tokens). Lower is better.
* ``sentiment`` (any labelled classification file, ``text_field``/``label_field``): accuracy.
  A classifier run uses its own head. A run that is not a classifier but descends from one
  (its chain has a classify step whose run is still there) gets that classifier's head put back on
  its own GPT: the head of task A did not move while B trained the body, so this is exactly how
  much of A survives in the body (the usual multi-head measure of forgetting). Any other run
  (the base) is scored by zero-shot prompting (gptlab.eval.prompting, "Text: ...\\nLabel:" and
  the ``label_words``, one per label in sorted order). The cell says which (``method``).
* ``translation`` (input -> output JSONL): corpus BLEU (and chrF, in ``also``) of greedy outputs
  (gptlab.eval.generation). The prompt is the run's own template and fields, else
  ``template``/``input_field``/``target_field``, else those of the first run in the list that
  records a prompt template: a run never fine-tuned on the task is asked the same way. The
  interval resamples segments and recomputes corpus BLEU / chrF from their statistics.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gptlab.errors import GptlabError
from gptlab.report import figure_png

TASK_KINDS = ("lm", "sentiment", "translation")
HIGHER_IS_BETTER = {"perplexity": False, "accuracy": True, "bleu": True}
MATRIX_JSON, MATRIX_TABLE, HEATMAP = "matrix.json", "matrix.md", "heatmap.png"


@dataclass(frozen=True)
class Task:
    kind: str
    path: Path
    name: str  # the column's label


def parse_tasks(spec: str | Sequence[str]) -> list[Task]:
    """``"lm:FILE,sentiment:FILE,translation:FILE"`` (or a list of ``KIND:FILE``) -> tasks."""
    parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    if not parts:
        raise GptlabError("no tasks: give --tasks KIND:FILE,... with KIND one of " + ", ".join(TASK_KINDS))
    raw = []
    for part in parts:
        kind, sep, path = part.partition(":")
        if not sep or kind not in TASK_KINDS or not path:
            raise GptlabError(f"task {part!r}: expected KIND:FILE with KIND one of {', '.join(TASK_KINDS)}")
        if not Path(path).is_file():
            raise GptlabError(f"task {part!r}: {path} is not a file")
        raw.append((kind, Path(path)))
    kinds = [k for k, _ in raw]
    return [Task(k, p, k if kinds.count(k) == 1 else f"{k}:{p.stem}") for k, p in raw]


def parse_runs(spec: str | Sequence[str]) -> list[tuple[str | None, Path]]:
    """``"base=runs/a,runs/b"`` (or a list) -> (label or None: the chain's, path) per run."""
    parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    if not parts:
        raise GptlabError("no runs: give --runs RUN,... (or LABEL=RUN)")
    runs = []
    for part in parts:
        label, sep, path = part.partition("=")
        runs.append((label, Path(path)) if sep and label and path else (None, Path(part)))
    return runs


@dataclass
class ForgettingOptions:
    limit: int | None = None  # the first N items of each task
    text_field: str = "sentence"
    label_field: str = "label"
    label_words: tuple[str, ...] = ("negative", "positive")  # prompting: one per label, sorted order
    template: str | None = None
    input_field: str | None = None
    target_field: str | None = None
    max_new_tokens: int = 64
    batch_size: int = 16
    resamples: int = 1000
    seed: int = 0
    device: str = "cpu"

    def check(self) -> None:
        from gptlab.eval.generation import check_positive_ints

        check_positive_ints(self, ("max_new_tokens", "batch_size", "resamples"), optional=("limit",))


@dataclass
class Cell:
    metric: str
    value: float
    low: float
    high: float
    n: int  # items scored
    method: str  # how this run was scored on this task
    also: dict[str, dict[str, float]] = field(default_factory=dict)  # secondary metrics, same layout


@dataclass
class ForgettingMatrix:
    rows: list[dict[str, Any]]  # label, run, chain
    columns: list[dict[str, Any]]  # name, kind, data, metric, higher_is_better
    cells: list[list[Cell]]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "columns": self.columns,
            "cells": [[asdict(c) for c in row] for row in self.cells],
            "interval": f"95% percentile bootstrap over items, {self.settings['resamples']} resamples",
            "settings": self.settings,
        }

    def table(self) -> str:
        """A Markdown table: one row per run, ``value [low, high]`` per task (secondary metrics
        after it), then how each column's cells were scored."""
        head = ["model"] + [
            f"{c['name']} ({'/'.join([c['metric'], *self.cells[0][j].also])}"
            f"{'' if c['higher_is_better'] else ', lower is better'})"
            for j, c in enumerate(self.columns)
        ]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row, cells in zip(self.rows, self.cells):
            values = []
            for c in cells:
                d = _digits(c)
                shown = [f"{c.value:.{d}f} [{c.low:.{d}f}, {c.high:.{d}f}]"]
                shown += [
                    f"{m['value']:.{d}f} [{m['low']:.{d}f}, {m['high']:.{d}f}]" for m in c.also.values()
                ]
                values.append(" / ".join(shown))
            lines.append("| " + " | ".join([row["label"], *values]) + " |")
        lines.append("")
        for j, column in enumerate(self.columns):
            methods = dict.fromkeys(
                f"{r['label']}: {cells[j].method}" for r, cells in zip(self.rows, self.cells)
            )
            lines.append(
                f"- {column['name']} ({column['data']}, n = {self.cells[0][j].n}): " + "; ".join(methods)
            )
        return "\n".join(lines) + "\n"


def _digits(cell: Cell) -> int:
    return 3 if cell.metric == "accuracy" else 2


# --- bootstrap -----------------------------------------------------------------------------------


def bootstrap_interval(
    stats: np.ndarray, statistic: Callable[[np.ndarray], float], resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of ``statistic(summed rows)`` over resamples of the rows of
    ``stats`` (items x sufficient statistics), drawn with replacement (seeded)."""
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim != 2 or len(stats) == 0:
        raise GptlabError("bootstrap: need a non-empty (items, statistics) array")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, len(stats), size=len(stats))
        values.append(statistic(stats[idx].sum(axis=0)))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


# --- one cell per task kind ----------------------------------------------------------------------


def _lines(path: Path, limit: int | None) -> list[str]:
    from gptlab.data.corpus import read_text_file

    lines = [line for line in read_text_file(path).splitlines() if line.strip()]
    return lines[:limit] if limit else lines


def evaluate_lm(run, task: Task, options: ForgettingOptions) -> Cell:
    """Perplexity on the task's lines, bootstrap over lines (see the module docstring)."""
    from gptlab.eval.perplexity import evaluate_text

    gpt, tokenizer = run.load(device=options.device)
    minimum = 1 if tokenizer.eot_id is not None else 2
    rows = []
    for line in _lines(task.path, options.limit):
        if len(tokenizer.encode(line)) < minimum:
            continue
        result = evaluate_text(gpt, tokenizer, line, batch_size=options.batch_size)
        rows.append((result.mean_nll * result.tokens, result.tokens))
    if not rows:
        raise GptlabError(f"{task.path}: no line long enough to score")
    stats = np.array(rows)

    def ppl(s: np.ndarray) -> float:
        return math.exp(s[0] / s[1])

    low, high = bootstrap_interval(stats, ppl, options.resamples, options.seed)
    return Cell("perplexity", ppl(stats.sum(0)), low, high, len(rows), "perplexity of the GPT")


def _classifier_for(run, gpt, tokenizer):
    """(a LoadedClassifier on ``gpt``, method) from the run's own head or its chain's last
    classifier; (None, None) when there is none."""
    from gptlab.finetune.classifier_run import LoadedClassifier, load_classifier, pad_id
    from gptlab.finetune.continual import read_chain
    from gptlab.model.heads import GPTClassifier

    if run.kind == "classifier":
        return run.load_classifier(), "own classifier head"
    for step in reversed(read_chain(run.path)):
        source = Path(step.get("run", ""))
        if step.get("finetune") == "classify" and (source / "classifier.json").is_file():
            earlier = load_classifier(source)
            model = GPTClassifier(gpt, len(earlier.label_names), pooling=earlier.meta["pooling"])
            model.head.load_state_dict(earlier.model.head.state_dict())
            model.to(next(gpt.parameters()).device).eval()
            max_length = min(earlier.max_length, gpt.config.block_size)
            clf = LoadedClassifier(
                model, tokenizer, earlier.label_names, max_length, pad_id(tokenizer), earlier.meta
            )
            return clf, f"head of {step['label']} on this GPT"
    return None, None


def evaluate_sentiment(run, task: Task, options: ForgettingOptions) -> Cell:
    """Accuracy on a labelled file: a head (own or from the chain) or zero-shot prompting."""
    from gptlab.data.tasks import load_classification

    gpt, tokenizer = run.load(device=options.device)
    clf, method = _classifier_for(run, gpt, tokenizer)
    labels = clf.label_names if clf else None
    data = load_classification(task.path, options.text_field, options.label_field, labels=labels)
    texts, gold = data.texts[: options.limit], data.labels[: options.limit]
    if clf is not None:
        predicted = clf.predict_proba(texts).argmax(-1).tolist()
    else:
        from gptlab.eval.prompting import classify_by_prompting

        if len(options.label_words) != len(data.label_names):
            raise GptlabError(
                f"{task.path}: {len(data.label_names)} labels ({', '.join(data.label_names)}) but "
                f"{len(options.label_words)} label words for prompting"
            )
        predicted = classify_by_prompting(gpt, tokenizer, texts, options.label_words).predictions
        method = f"0-shot prompt ({'/'.join(options.label_words)})"
    stats = np.array([[float(p == y)] for p, y in zip(predicted, gold)])
    low, high = bootstrap_interval(stats, lambda s: s[0] / len(stats), options.resamples, options.seed)
    return Cell("accuracy", float(stats.mean()), low, high, len(stats), method)


def _prompt_source(runs: Sequence, options: ForgettingOptions) -> tuple[str | None, str | None, str | None]:
    """(template, input field, target field) to ask runs that record none: the options', else the
    first run's in ``runs`` that records a prompt template."""
    from gptlab.data.tasks import is_prompt_template

    for run in runs:
        if is_prompt_template(run.template):
            input_field, target_field = run.fields
            return (
                options.template or run.template,
                options.input_field or input_field,
                options.target_field or target_field,
            )
    return options.template, options.input_field, options.target_field


def evaluate_translation(run, task: Task, options: ForgettingOptions, fallback) -> Cell:
    """Corpus BLEU (chrF in ``also``) of greedy outputs, bootstrap over segments."""
    from gptlab.data.tasks import is_prompt_template
    from gptlab.eval.bleu import bleu_from_stats, segment_bleu_stats
    from gptlab.eval.chrf import chrf_from_stats, segment_chrf_stats
    from gptlab.eval.generation import GenerationOptions, evaluate_generation

    own = is_prompt_template(run.template)
    template, input_field, target_field = (
        (options.template, options.input_field, options.target_field) if own else fallback
    )
    result = evaluate_generation(
        run,
        task.path,
        GenerationOptions(
            input_field=input_field,
            target_field=target_field,
            template=template,
            metrics=("bleu", "chrf"),
            max_new_tokens=options.max_new_tokens,
            batch_size=options.batch_size,
            limit=options.limit,
            device=options.device,
        ),
    )
    bleu_rows, chrf_rows = [], []
    for item in result.items:
        sys_len, ref_len, correct, total = segment_bleu_stats(item["output"], item["references"])
        bleu_rows.append([sys_len, ref_len, *correct, *total])
        chrf_rows.append(
            [x for triple in segment_chrf_stats(item["output"], item["references"]) for x in triple]
        )
    bleu_stats, chrf_stats = np.array(bleu_rows), np.array(chrf_rows)
    orders = (bleu_stats.shape[1] - 2) // 2

    def bleu(s: np.ndarray) -> float:
        return bleu_from_stats(s[2 : 2 + orders], s[2 + orders :], int(s[0]), int(s[1]), "exp").score

    def chrf(s: np.ndarray) -> float:
        return chrf_from_stats([tuple(s[i : i + 3]) for i in range(0, len(s), 3)])

    b_low, b_high = bootstrap_interval(bleu_stats, bleu, options.resamples, options.seed)
    c_low, c_high = bootstrap_interval(chrf_stats, chrf, options.resamples, options.seed)
    method = "own template" if own else "template of the chain's translation run"
    also = {"chrf": {"value": result.scores["chrf"], "low": c_low, "high": c_high}}
    return Cell("bleu", result.scores["bleu"], b_low, b_high, len(result.items), method, also)


# --- the matrix ----------------------------------------------------------------------------------


def evaluate_forgetting(
    runs: Sequence[str | os.PathLike | tuple[str | None, str | os.PathLike]],
    tasks: Sequence[Task],
    options: ForgettingOptions | None = None,
    on_cell: Callable[[str, str, Cell], None] | None = None,
) -> ForgettingMatrix:
    """Every run on every task (see the module docstring)."""
    from gptlab.finetune.continual import chain_label, read_chain
    from gptlab.run import Run

    options = options or ForgettingOptions()
    options.check()
    if not tasks:
        raise GptlabError("no tasks to evaluate")
    pairs = [r if isinstance(r, tuple) else (None, r) for r in runs]
    opened = [Run.open(path) for _, path in pairs]  # every run checked before any work
    fallback = _prompt_source(opened, options)
    rows, cells = [], []
    for (label, path), run in zip(pairs, opened):
        chain = read_chain(path)
        row = {"label": label or chain_label(chain), "run": str(path), "chain": [s["label"] for s in chain]}
        rows.append(row)
        row_cells = []
        for task in tasks:
            if task.kind == "lm":
                cell = evaluate_lm(run, task, options)
            elif task.kind == "sentiment":
                cell = evaluate_sentiment(run, task, options)
            else:
                cell = evaluate_translation(run, task, options, fallback)
            row_cells.append(cell)
            if on_cell:
                on_cell(row["label"], task.name, cell)
        cells.append(row_cells)
    columns = [
        {
            "name": t.name,
            "kind": t.kind,
            "data": str(t.path),
            "metric": cells[0][i].metric,
            "higher_is_better": HIGHER_IS_BETTER[cells[0][i].metric],
        }
        for i, t in enumerate(tasks)
    ]
    return ForgettingMatrix(
        rows, columns, cells, asdict(options) | {"label_words": list(options.label_words)}
    )


def heatmap_png(matrix: ForgettingMatrix) -> bytes:
    """The matrix as a heat map: each column coloured by its value relative to the column's best
    (best = 1; perplexity inverted so that brighter is always better), annotated with value and interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(matrix.rows), len(matrix.columns)
    shade = np.zeros((n_rows, n_cols))
    for j, column in enumerate(matrix.columns):
        values = np.array([matrix.cells[i][j].value for i in range(n_rows)], dtype=float)
        if column["higher_is_better"]:
            best = values.max()
            shade[:, j] = values / best if best > 0 else 0.0
        else:
            shade[:, j] = values.min() / np.maximum(values, 1e-12)
    fig, ax = plt.subplots(figsize=(2.6 * n_cols + 1.5, 0.7 * n_rows + 1.5), dpi=110)
    ax.imshow(shade, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(n_cols), [f"{c['name']}\n{c['metric']}" for c in matrix.columns])
    ax.set_yticks(range(n_rows), [r["label"] for r in matrix.rows])
    for i in range(n_rows):
        for j in range(n_cols):
            c = matrix.cells[i][j]
            d = _digits(c)
            ax.text(
                j,
                i,
                f"{c.value:.{d}f}\n[{c.low:.{d}f}, {c.high:.{d}f}]",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shade[i, j] < 0.6 else "black",
            )
    ax.set_title("forgetting matrix (colour: value / column best)")
    fig.tight_layout()
    return figure_png(fig)


def write_forgetting(matrix: ForgettingMatrix, out: str | os.PathLike) -> Path:
    """matrix.json, matrix.md and heatmap.png in ``out`` (claimed by the caller)."""
    from gptlab.io import atomic_write, atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / MATRIX_JSON, json.dumps(matrix.to_dict(), indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(out / MATRIX_TABLE, matrix.table())
    png = heatmap_png(matrix)
    atomic_write(out / HEATMAP, lambda tmp: Path(tmp).write_bytes(png))
    return out
