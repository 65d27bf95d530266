"""Shared helpers of the benchmark-task tests (tests/eval/tasks, tests/commands/test_eval_tasks.py):
the tiny task files in tests/data/tasks and a seeded random GPT."""

from __future__ import annotations

from pathlib import Path

import torch

TASKS_DATA = Path(__file__).resolve().parent / "data" / "tasks"


def small_gpt(vocab_size: int, block_size: int = 64, seed: int = 0):
    from gptlab.model import GPT, GPTConfig

    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32, dropout=0.0
    )
    return GPT(config).eval()


def task_tokenizer():
    """A small BPE tokenizer with ``<|endoftext|>``, trained on the task fixtures."""
    from gptlab.tokenizers import BPETokenizer
    from gptlab.tokenizers.base import EOT

    text = "".join(p.read_text("utf-8") for p in sorted(TASKS_DATA.rglob("*.jsonl")))
    return BPETokenizer.train(text * 3, vocab_size=300, special_tokens=[EOT])
