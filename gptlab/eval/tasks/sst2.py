"""SST-2 (GLUE): is a movie-review sentence positive or negative? lm-evaluation-harness's ``sst2``:
the prompt ``{sentence}\\nQuestion: Is this sentence positive or negative?\\nAnswer:``, the choices
`` negative`` and `` positive``, ``acc``; scored on the GLUE validation sentences, few-shot
examples from the training rows. Categories: the gold label (accuracy per class shows a model
that always answers one way)."""

from __future__ import annotations

from gptlab.errors import GptlabError
from gptlab.eval.tasks.base import Doc, Loglikelihood, Task, TaskFile
from gptlab.eval.tasks.metrics import choice_metrics
from gptlab.eval.tasks.readers import jsonl_docs

CHOICES = ("negative", "positive")


def _load(paths) -> list[Doc]:
    docs = jsonl_docs(paths[0], {"sentence": str, "label": int})
    for doc in docs:
        if doc["label"] not in (0, 1):
            raise GptlabError(
                f"{doc.where}: label should be 0 (negative) or 1 (positive), got {doc['label']!r}"
            )
    return docs


def _results(doc: Doc, answer: list[Loglikelihood]) -> dict[str, float]:
    return {"acc": choice_metrics([a.logprob for a in answer], doc["label"], CHOICES)["acc"]}


TASKS = [
    Task(
        name="sst2",
        family="sst2",
        description="sentence sentiment, positive or negative (GLUE SST-2)",
        output_type="multiple_choice",
        data=(TaskFile("sst2-validation-subset", "sst2/validation.jsonl"),),
        load=_load,
        doc_to_text=lambda doc: (
            f"{doc['sentence']}\nQuestion: Is this sentence positive or negative?\nAnswer:"
        ),
        doc_to_target=lambda doc: doc["label"],
        doc_to_choice=lambda doc: CHOICES,
        process_results=_results,
        metrics={"acc": "mean"},
        higher_is_better={"acc": True},
        category=lambda doc: CHOICES[doc["label"]],
        fewshot=(TaskFile("sst2-train-subset", "sst2/train.jsonl"),),
        chance={"acc": 0.5},
    )
]
