"""Fixtures of the benchmark-task tests (helpers in tests/benchmark_tasks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_tasks import TASKS_DATA, small_gpt, task_tokenizer


@pytest.fixture(scope="session")
def tasks_data() -> Path:
    return TASKS_DATA


@pytest.fixture(scope="session")
def bpe():
    return task_tokenizer()


@pytest.fixture
def bpe_model(bpe):
    return small_gpt(bpe.vocab_size)
