"""Shared fixtures: the real data in ../shared/data (never copied into the project)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder with tinyshakespeare.txt, the-verdict.txt, sms-spam.tsv, unicode-*.txt, ..."""
    if not SHARED_DATA.is_dir():
        pytest.fail(
            f"shared data folder not found at {SHARED_DATA} (expected ../shared/data beside the repo)"
        )
    return SHARED_DATA
