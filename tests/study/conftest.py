from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> Path:
    """One finished study-tiny study (every stage), shared by the study tests: do not modify it."""
    import torch
    from tiny_study import tiny

    from gptlab.study import run_study

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the results must not depend on the machine's thread count
    try:
        out = tmp_path_factory.mktemp("study") / "s"
        run_study(tiny(), out, progress=False, log=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    return out
