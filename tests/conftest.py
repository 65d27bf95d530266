"""Shared fixtures: the real data in ../shared/data (never copied into the project)."""

from __future__ import annotations

import os
import shutil
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


def _chromium() -> str | None:
    return os.environ.get("GPTLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by playwright, for the tests that open pages (marker ``browser``).
    In CI both must be there (scripts/test.sh installs them): a missing browser fails the run
    there instead of skipping the test. Module scope: playwright's sync API owns an event loop
    while it runs, so it is closed before other modules' tests."""
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if executable is None or sync_playwright is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium and playwright for the browser tests (scripts/setup-browser.sh)")
        pytest.skip("no chromium or playwright here: run scripts/setup-browser.sh")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train faster on one thread than on two fighting over a shared machine; modules
    that train several opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
