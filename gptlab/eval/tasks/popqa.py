"""PopQA (Mallen et al. 2023): factual knowledge of entities from the very popular to the obscure,
so the report can show common facts against rare ones.

lm-evaluation-harness has no PopQA task; this follows the paper's own evaluation
(AlexTMallen/adaptive-retrieval ``run_model.py``, "vanilla" method), zero-shot:

- prompt ``"Q: {question} A:"``; the model's greedy reply, up to 15 new tokens, cut at the first
  newline. (The paper also drops a leading blank line first; here the generation stops at it, so
  a reply that starts with a newline is empty.)
- ``acc`` = 1 when any of ``possible_answers`` (the object's name and its aliases) occurs in the
  reply as the paper matches it: the answer as written, lower-cased, or capitalised
  (``str.capitalize``) is a substring of the reply.
- category: the subject's popularity ``s_pop`` (monthly Wikipedia page views), in powers of ten as
  the paper's plots bin it: ``"s_pop <10^2"``, ``"s_pop 10^2-10^3"``, ... ``"s_pop >=10^5"``.

The paper's few-shot prompts draw from the same file by relation; with one split only, shots
would come from the items being scored, so the task takes none.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.eval.tasks.base import Doc, Task, TaskFile
from gptlab.eval.tasks.readers import read_text

COLUMNS = ("question", "possible_answers", "s_pop")
LOWEST_DECADE, HIGHEST_DECADE = 2, 5  # bins: below 10^2, one per power of ten, 10^5 and above


def popularity_bin(s_pop: int) -> str:
    decade = math.floor(math.log10(s_pop)) if s_pop > 0 else 0
    if decade < LOWEST_DECADE:
        return f"s_pop <10^{LOWEST_DECADE}"
    if decade >= HIGHEST_DECADE:
        return f"s_pop >=10^{HIGHEST_DECADE}"
    return f"s_pop 10^{decade}-10^{decade + 1}"


def load(paths: Sequence[Path]) -> list[Doc]:
    path = paths[0]
    lines = read_text(path).splitlines()
    if not lines:
        raise GptlabError(f"{path}: empty file (expected a header row)")
    header = lines[0].split("\t")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise GptlabError(f"{path}:1: the header has no column {', '.join(map(repr, missing))}")
    docs = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        values = line.split("\t")
        if len(values) != len(header):
            raise GptlabError(f"{where}: {len(values)} tab-separated fields, the header has {len(header)}")
        row = dict(zip(header, values, strict=True))
        try:
            answers = json.loads(row["possible_answers"])
        except json.JSONDecodeError as e:
            raise GptlabError(f"{where}: possible_answers is not a JSON list ({e.msg})") from None
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a for a in answers):
            raise GptlabError(f"{where}: possible_answers must be a non-empty JSON list of strings")
        if not row["s_pop"].strip().isdigit():
            raise GptlabError(f"{where}: s_pop must be a whole number of page views, got {row['s_pop']!r}")
        if not row["question"].strip():
            raise GptlabError(f"{where}: empty question")
        fields = {"question": row["question"], "answers": answers, "s_pop": int(row["s_pop"])}
        docs.append(Doc(len(docs), fields, where))
    return docs


def matches(reply: str, answers: Sequence[str]) -> bool:
    """The paper's test: some answer, as written, lower-cased or capitalised, is in the reply."""
    return any(a in reply or a.lower() in reply or a.capitalize() in reply for a in answers)


def process_results(doc: Doc, reply: str) -> dict[str, float]:
    return {"acc": 1.0 if matches(reply, doc["answers"]) else 0.0}


TASKS = [
    Task(
        name="popqa",
        family="popqa",
        description="factual knowledge by subject popularity: common vs rare facts",
        output_type="generate_until",
        data=(TaskFile("popqa", "popqa/popQA.tsv"),),
        load=load,
        doc_to_text=lambda doc: f"Q: {doc['question']} A:",
        doc_to_target=lambda doc: doc["answers"][0],
        process_results=process_results,
        metrics={"acc": "mean"},
        higher_is_better={"acc": True},
        category=lambda doc: popularity_bin(doc["s_pop"]),
        until=("\n",),
        max_gen_tokens=15,
    )
]
