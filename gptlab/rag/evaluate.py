"""Score retrieval and retrieval-augmented answers on a QA file.

Rows (JSONL): ``{"question": str, "answers": [str, ...], "doc": str (optional)}``.

- A retrieved chunk is *relevant* when it comes from the row's gold document ``doc`` (the index's
  document ids: JSONL ids, or file paths relative to the --docs folder); for a row without
  ``doc``, when the chunk's text contains one of the answers (PopQA's match: as written,
  lower-cased or capitalised), a weaker criterion (a chunk can name the answer by chance).
- recall@k: the share of questions with a relevant chunk among the top k; MRR: the mean of
  1 / rank of the first relevant chunk in the top k (0 when there is none), i.e. MRR@k.
- answer match (PopQA's ``acc``): an answer occurs in the greedy reply, with the retrieved sources
  in the prompt and without (closed book); each a Wilson 95% interval. ``both``/``rag_only``/
  ``closed_only`` count the paired outcomes, which is where a difference comes from.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gptlab.audit.common import wilson_interval
from gptlab.errors import GptlabError
from gptlab.eval.tasks.popqa import matches
from gptlab.io import parse_json
from gptlab.rag.ask import MAX_NEW_TOKENS, answer, answer_closed_book
from gptlab.rag.dense import Embedder
from gptlab.rag.index import RagIndex


@dataclass(frozen=True)
class QARow:
    question: str
    answers: list[str]
    doc: str | None
    where: str


def read_qa(path: str | os.PathLike) -> list[QARow]:
    path = Path(path)
    if not path.is_file():
        raise GptlabError(f"QA file not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            row = parse_json(line, where)  # invalid or absurdly nested: a GptlabError naming file:line
            if (
                not isinstance(row, dict)
                or not isinstance(row.get("question"), str)
                or not row["question"].strip()
            ):
                raise GptlabError(f"{where}: needs a non-empty string 'question'")
            answers = row.get("answers")
            if (
                not isinstance(answers, list)
                or not answers
                or not all(isinstance(a, str) and a for a in answers)
            ):
                raise GptlabError(f"{where}: 'answers' must be a non-empty list of strings")
            doc = row.get("doc")
            if doc is not None and not isinstance(doc, str):
                raise GptlabError(f"{where}: 'doc' must be a string (a document id of the index)")
            rows.append(QARow(row["question"], answers, doc, where))
    if not rows:
        raise GptlabError(f"{path}: no questions")
    return rows


def first_relevant(row: QARow, hits) -> int | None:
    """1-based rank of the first relevant hit, or None."""
    for rank, hit in enumerate(hits, 1):
        if (hit.chunk.doc == row.doc) if row.doc is not None else matches(hit.chunk.text, row.answers):
            return rank
    return None


def _rate(k: int, n: int) -> dict:
    lo, hi = wilson_interval(k, n)
    return {"value": k / n, "count": k, "n": n, "ci95": [lo, hi]}


def evaluate_rag(
    model,
    tokenizer,
    index: RagIndex,
    embedder: Embedder | None,
    rows: list[QARow],
    k: int = 4,
    mode: str = "hybrid",
    max_new_tokens: int = MAX_NEW_TOKENS,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> dict:
    found = 0
    reciprocal = 0.0
    rag_ok = closed_ok = both = 0
    per_question = []
    for i, row in enumerate(rows):
        result = answer(model, tokenizer, index, embedder, row.question, k, mode, max_new_tokens)
        rank = first_relevant(row, result.hits)
        closed = answer_closed_book(model, tokenizer, row.question, max_new_tokens)
        with_ok, without_ok = matches(result.answer, row.answers), matches(closed, row.answers)
        found += rank is not None
        reciprocal += 1.0 / rank if rank else 0.0
        rag_ok += with_ok
        closed_ok += without_ok
        both += with_ok and without_ok
        per_question.append(
            {
                "question": row.question,
                "rank": rank,
                "rag_answer": result.answer,
                "closed_answer": closed,
                "rag_match": with_ok,
                "closed_match": without_ok,
            }
        )
        progress(i + 1, len(rows))
    n = len(rows)
    return {
        "questions": n,
        "k": k,
        "mode": mode,
        "relevance": "gold doc" if all(r.doc is not None for r in rows) else "gold doc or answer in chunk",
        "recall_at_k": _rate(found, n),
        "mrr": reciprocal / n,
        "answer_match_rag": _rate(rag_ok, n),
        "answer_match_closed_book": _rate(closed_ok, n),
        "paired": {"both": both, "rag_only": rag_ok - both, "closed_only": closed_ok - both},
        "per_question": per_question,
    }
