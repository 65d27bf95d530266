"""Fixtures the fine-tuning tests share."""

from __future__ import annotations

import string

import pytest
import torch

from gptlab.model import GPT, GPTConfig
from gptlab.rundir import save_model
from gptlab.tokenizers.base import EOT
from gptlab.tokenizers.char import CharTokenizer


@pytest.fixture(scope="session")
def base_run(tmp_path_factory):
    """An untrained 2-layer char-level GPT (letters, digits, `` .,:#`` and newline, plus
    <|endoftext|>, which ends every response) saved as a run: the base model of the instruct and
    --peft tests. test_classify.py overrides it with a wider context for its longer rows."""
    tok = CharTokenizer.train(string.ascii_letters + string.digits + " .,:#\n", special_tokens=[EOT])
    torch.manual_seed(0)
    gpt = GPT(
        GPTConfig(vocab_size=tok.vocab_size, block_size=48, n_layer=2, n_head=2, n_embd=48, dropout=0.0)
    )
    return save_model(tmp_path_factory.mktemp("base") / "run", gpt, tok)
