"""Evaluation: teacher-forced scoring (scoring.py), perplexity and bits per byte (perplexity.py),
text metrics (text_metrics.py: BLEU, chrF, ROUGE, distinct-n, exact match).

Names are imported lazily, so using the text metrics does not import torch. The function
``perplexity`` is imported from its module (gptlab.eval.perplexity), whose name it shares.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "continuation_logprobs": "gptlab.eval.scoring",
    "continuation_scores": "gptlab.eval.scoring",
    "PerplexityResult": "gptlab.eval.perplexity",
    "evaluate_text": "gptlab.eval.perplexity",
    "judge_responses": "gptlab.eval.judge",
    "classify_by_prompting": "gptlab.eval.prompting",
    "corpus_chrf": "gptlab.eval.chrf",
    "sentence_chrf": "gptlab.eval.chrf",
    "evaluate_generation": "gptlab.eval.generation",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gptlab.eval' has no attribute {name!r}")
