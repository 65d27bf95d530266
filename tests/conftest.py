"""Shared fixtures: small data files in tests/data, the real datasets through the data registry's
cache (tests marked ``data``), and a tiny model, tokenizer and trained run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from samples import SHAKESPEARE

from gptlab.data import registry

TINY_RUN_STEPS = 8


def pytest_collection_modifyitems(items):
    """A test that reads a real dataset is a ``data`` test, whether or not it says so."""
    for item in items:
        if "dataset" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """``dataset(name) -> Path``: the real dataset ``name`` (a data registry entry), taken from the
    data mirror ``$GPTLAB_DATA_MIRROR`` through the registry's checks into a cache for this session.

    Without a mirror the test skips, except under ``CI=true``, where it fails: CI must run them.
    ``scripts/test.sh`` points the variable at ../shared/data when that folder exists."""
    if not os.environ.get(registry.MIRROR_ENV):
        reason = f"no data mirror: set {registry.MIRROR_ENV} (scripts/test.sh uses ../shared/data)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI runs the data tests: {reason}")
        pytest.skip(reason)
    cache = tmp_path_factory.mktemp("datasets")
    return lambda name: registry.download(name, directory=cache, progress=False)


@pytest.fixture(scope="session")
def tiny_config():
    """A GPTConfig small enough to train in seconds on a CPU; its vocabulary fits ``char_tokenizer``."""
    from gptlab.model import GPTConfig

    return GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=4, n_embd=32, dropout=0.0)


@pytest.fixture(scope="session")
def char_tokenizer():
    """gptlab's char-level tokenizer over the Shakespeare excerpt (the 65 characters of tinyshakespeare)."""
    from gptlab.tokenizers import CharTokenizer

    return CharTokenizer.train(SHAKESPEARE.read_text("utf-8"))


@pytest.fixture
def tiny_model(tiny_config):
    """A seeded GPT from ``tiny_config``, in eval mode (a fresh one per test: tests may change it)."""
    import torch

    from gptlab.model import GPT

    torch.manual_seed(0)
    return GPT(tiny_config).eval()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A pretraining run directory trained once per session by ``gptlab train`` on the Shakespeare
    excerpt (char tokenizer, TINY_RUN_STEPS steps). Read-only: a test that changes a run copies it
    first (``shutil.copytree``)."""
    from gptlab.cli import main

    out = tmp_path_factory.mktemp("tiny-run") / "run"
    args = ["train", f"data.input={json.dumps(str(SHAKESPEARE))}", "data.tokenizer=char",
            "model.block_size=32", "model.n_layer=2", "model.n_head=2", "model.n_embd=32",
            "train.batch_size=4", f"train.max_steps={TINY_RUN_STEPS}", "train.eval_every=4",
            "train.eval_batches=2", "train.sample_tokens=8", "train.progress=false",
            "--out", str(out), "--json"]  # fmt: skip
    assert main(args) == 0, "the tiny run failed to train"
    return out


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
