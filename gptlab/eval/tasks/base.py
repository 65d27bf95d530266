"""What a benchmark task is: a small declarative definition, scored the way lm-evaluation-harness
scores it.

A task names its data (a file of the data registry; ``--data-dir DIR`` reads ``DIR/<path>``
instead), how one item (a *doc*, one row of that file) becomes a prompt, and what is measured.
The runner (gptlab.eval.tasks.runner) turns each doc into requests of one of the harness's
three request types, asks the model, and hands the answers back to the task::

    output_type              request per doc                         the answer process_results gets
    "multiple_choice"        one log-likelihood per choice:          list[Loglikelihood], one per choice
                             context + target_delimiter + choice
    "loglikelihood"          one: context + target_delimiter + target  Loglikelihood
    "loglikelihood_rolling"  the whole text, in windows of the model   float (summed log-likelihood, nats)
    "generate_until"         greedy text after the context, cut at    str
                             the first stop string of ``until``

``context`` is the few-shot examples (each ``doc_to_text(ex) + target_delimiter + target text``,
joined by ``fewshot_delimiter``), then ``fewshot_delimiter``, then ``doc_to_text(doc)``, exactly
as the harness builds it. An empty context is conditioned on ``<|endoftext|>``.

``process_results(doc, answer)`` returns the per-item metric values (``{"acc": 1.0, ...}``); each
metric's ``aggregation`` turns the items' values into the task's number (``mean`` unless said),
which the runner reports with its standard error and a 95% bootstrap interval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

OutputType = Literal["multiple_choice", "loglikelihood", "loglikelihood_rolling", "generate_until"]
OUTPUT_TYPES: tuple[str, ...] = (
    "multiple_choice",
    "loglikelihood",
    "loglikelihood_rolling",
    "generate_until",
)
# how a metric's per-item values become the task's number (gptlab.eval.tasks.metrics implements them):
# mean; perplexity = exp(-mean log-likelihood); word_perplexity / byte_perplexity / bits_per_byte take
# (log-likelihood, words or bytes) pairs, as the harness's weighted_perplexity does
Aggregation = Literal["mean", "perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"]


class Loglikelihood(NamedTuple):
    """The answer to one log-likelihood request: ``logprob`` (nats, summed over the continuation's
    tokens) and ``is_greedy`` (every continuation token is the model's argmax given what precedes)."""

    logprob: float
    is_greedy: bool


@dataclass(frozen=True)
class TaskFile:
    """One data file of a task: ``dataset`` is its data-registry name (downloaded and cached on first
    use, or copied from ``$GPTLAB_DATA_MIRROR``), ``path`` its place under a ``--data-dir`` (the
    layout of ``../shared/data/tasks``: ``<task folder>/<file>``)."""

    dataset: str
    path: str


@dataclass(frozen=True)
class Doc:
    """One item of a task's data: ``index`` in file order (what ``--limit N`` counts), ``fields``
    as the loader parsed them, and ``where`` (``file:line``) for error messages."""

    index: int
    fields: Mapping[str, Any]
    where: str

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]


# A loader reads a task's files (their local paths, in the order of ``Task.data``) into docs in file
# order; a malformed row is a GptlabError naming the file and line.
Loader = Callable[[Sequence[Path]], list[Doc]]


@dataclass(frozen=True)
class Task:
    """A benchmark task: see the module docstring. ``doc_to_target`` is the gold choice's index for
    ``multiple_choice`` and the target text otherwise (few-shot examples print it after the
    prompt). ``category`` (optional) names each doc's category for the per-category breakdown.
    ``fewshot`` is where ``--shots K`` examples come from (a train/validation file; None: the task
    takes no shots). ``metrics`` maps each metric ``process_results`` returns to its aggregation,
    and ``higher_is_better`` says which way is better (for the report)."""

    name: str
    family: str  # the file that defines it: "lambada", "truthfulqa", ...
    description: str  # one line: what it tests
    output_type: OutputType
    data: tuple[TaskFile, ...]  # one file, or several read together (WinoBias's pro/anti files)
    load: Loader
    doc_to_text: Callable[[Doc], str]
    doc_to_target: Callable[[Doc], Any]
    process_results: Callable[[Doc, Any], dict[str, float]]
    metrics: Mapping[str, Aggregation]
    higher_is_better: Mapping[str, bool]
    doc_to_choice: Callable[[Doc], Sequence[str]] | None = None  # multiple_choice only
    category: Callable[[Doc], str] | None = None
    fewshot: tuple[TaskFile, ...] | None = None
    fewshot_load: Loader | None = None  # the few-shot file's loader (default: ``load``)
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    until: tuple[str, ...] = ("\n",)  # generate_until: stop strings
    max_gen_tokens: int = 32  # generate_until: most new tokens
    # loglikelihood_rolling: the doc's text and its unit counts for the weighted perplexities
    doc_to_rolling_text: Callable[[Doc], str] | None = None
    chance: Mapping[str, float] = field(default_factory=dict)  # metric -> its value for a random guesser

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError(f"task {self.name}: data names no file")
        if self.output_type not in OUTPUT_TYPES:
            raise ValueError(f"task {self.name}: output_type must be one of {OUTPUT_TYPES}")
        if (self.output_type == "multiple_choice") != (self.doc_to_choice is not None):
            raise ValueError(f"task {self.name}: doc_to_choice goes with output_type multiple_choice only")
        if set(self.higher_is_better) != set(self.metrics):
            raise ValueError(f"task {self.name}: higher_is_better must name each metric once")
