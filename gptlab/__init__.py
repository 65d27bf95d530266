"""gptlab: build, train, fine-tune, evaluate, interpret and attack GPT-style language models.

The public API is imported lazily so ``import gptlab`` is cheap and does not pull in torch
until a model is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "BPETokenizer": "gptlab.tokenizers",
    "CharTokenizer": "gptlab.tokenizers",
    "load_tokenizer": "gptlab.tokenizers",
    "GptlabError": "gptlab.errors",
    "GPT": "gptlab.model",
    "GPTConfig": "gptlab.model",
    "load_model": "gptlab.rundir",
    "save_model": "gptlab.rundir",
    "generate": "gptlab.generate",
    "generate_text": "gptlab.generate",
    "Sampler": "gptlab.generate",
    "train": "gptlab.train",
    "TrainResult": "gptlab.train",
    "RunConfig": "gptlab.config",
    "load_config": "gptlab.config",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gptlab' has no attribute {name!r}")
