"""Fixtures of the data-package tests."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
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
