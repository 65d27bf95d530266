"""Shared by the retrieval tests: a tiny run whose char vocabulary covers the RAG prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).parents[1] / "data" / "rag"


@pytest.fixture(scope="session")
def rag_run(tmp_path_factory) -> Path:
    """A two-step char-level run whose vocabulary holds the prompt's brackets and digits (the
    Shakespeare run's has neither) and every character of the fixture documents."""
    from gptlab.cli import main

    root = tmp_path_factory.mktemp("rag-run")
    corpus = root / "corpus.txt"
    corpus.write_text(
        ((DATA / "docs.jsonl").read_text() + (DATA / "qa.jsonl").read_text()) * 2
        + "Sources:\n[0123456789]\n\nQ: A:\n"
    )
    args = ["train", f"data.input={json.dumps(str(corpus))}", "data.tokenizer=char", "model.block_size=64",
            "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "train.batch_size=4", "train.max_steps=2",
            "train.eval_every=2", "train.eval_batches=1", "train.sample_tokens=0", "train.progress=false",
            "--out", str(root / "run"), "--json"]  # fmt: skip
    assert main(args) == 0
    return root / "run"
