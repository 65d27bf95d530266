"""Fixtures of the data-package tests."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from file_server import serving_folder
from samples import SHAKESPEARE

from gptlab.data.registry import REGISTRY


@pytest.fixture
def verdict_bytes(monkeypatch) -> bytes:
    """The bytes a source serves as ``the-verdict`` in the download tests, with the registry entry
    re-pinned to them: the Shakespeare sample, as the real file is not in the repository (what is
    tested is the download, not the text)."""
    data = SHAKESPEARE.read_bytes()
    pinned = dataclasses.replace(
        REGISTRY["the-verdict"], sha256=hashlib.sha256(data).hexdigest(), size=len(data)
    )
    monkeypatch.setitem(REGISTRY, "the-verdict", pinned)
    return data


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder, request counter) of a static file server on 127.0.0.1 and a free
    port (tests/file_server.py)."""
    served = tmp_path / "served"
    served.mkdir()
    with serving_folder(served) as (base, counter):
        yield base, served, counter


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return SHAKESPEARE.read_text("utf-8")


@pytest.fixture(scope="module")
def bpe(shakespeare):
    """A byte-level BPE of 400 tokens with <|endoftext|>, trained on the sample's start."""
    from gptlab.tokenizers import BPETokenizer

    return BPETokenizer.train(shakespeare[:30_000], vocab_size=400, special_tokens=["<|endoftext|>"])
