"""HellaSwag (Zellers et al. 2019): pick the most plausible continuation of an everyday scene.

As lm-evaluation-harness's ``hellaswag`` task defines it: the prompt is ``activity_label + ": " +
ctx_a + " " + ctx_b.capitalize()``, the four choices the endings, each passed through the
harness's ``preprocess`` (strip, `` [title]`` -> ``". "``, drop other ``[...]`` WikiHow markup,
double spaces -> one); acc and acc_norm; few-shot examples come from the training split. The
data is the upstream validation file (the data registry's ``hellaswag-val``; no mirror copy).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.eval.tasks.base import Doc, Loglikelihood, Task, TaskFile
from gptlab.eval.tasks.metrics import choice_metrics
from gptlab.eval.tasks.readers import json_rows, text_field


def preprocess(text: str) -> str:
    """The harness's clean-up of HellaSwag text (WikiHow's bracketed markup)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def load(paths: Sequence[Path]) -> list[Doc]:
    docs = []
    for where, row in json_rows(paths[0]):
        label, ctx_a = text_field(where, row, "activity_label"), text_field(where, row, "ctx_a")
        ctx_b, endings, gold = row.get("ctx_b"), row.get("endings"), row.get("label")
        if not isinstance(ctx_b, str):
            raise GptlabError(f"{where}: 'ctx_b' must be a string, got {ctx_b!r}")
        if not isinstance(endings, list) or len(endings) < 2 or not all(isinstance(e, str) for e in endings):
            raise GptlabError(f"{where}: 'endings' must be a list of at least 2 strings")
        if isinstance(gold, str) and gold.isdigit():  # the Hugging Face copy stores it as a string
            gold = int(gold)
        if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(endings):
            raise GptlabError(f"{where}: 'label' must be the index of one of the {len(endings)} endings")
        fields = {
            "query": preprocess(label + ": " + ctx_a + " " + ctx_b.capitalize()),
            "choices": [preprocess(e) for e in endings],
            "gold": gold,
            "split_type": row.get("split_type", ""),
        }
        docs.append(Doc(len(docs), fields, where))
    return docs


def process_results(doc: Doc, answers: Sequence[Loglikelihood]) -> dict[str, float]:
    return choice_metrics([a.logprob for a in answers], doc["gold"], doc["choices"])


TASKS = [
    Task(
        name="hellaswag",
        family="hellaswag",
        description="commonsense continuation of everyday scenes (4 endings)",
        output_type="multiple_choice",
        data=(TaskFile("hellaswag-val", "hellaswag/hellaswag_val.jsonl"),),
        load=load,
        doc_to_text=lambda doc: doc["query"],
        doc_to_target=lambda doc: doc["gold"],
        doc_to_choice=lambda doc: doc["choices"],
        process_results=process_results,
        metrics={"acc": "mean", "acc_norm": "mean"},
        higher_is_better={"acc": True, "acc_norm": True},
        fewshot=(TaskFile("hellaswag-train", "hellaswag/hellaswag_train.jsonl"),),
        chance={"acc": 0.25, "acc_norm": 0.25},
    )
]
