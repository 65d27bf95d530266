"""Smoke test of bench/eval_tasks.py: on a tiny model and 8 items it runs gptlab and lm-evaluation-harness
on the same items, prints one JSON object with the keys the issue asks for, and both sides agree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "eval_tasks.py"


@pytest.mark.slow
def test_eval_tasks_bench_smoke_json():
    pytest.importorskip("lm_eval")
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--json"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)  # the whole output is one JSON object
    assert report["items"] == 8 and report["requests"] == 32  # four choices per item
    assert report["gptlab_items_per_s"] > 0 and report["lm_eval_items_per_s"] > 0
    assert report["speedup"] == pytest.approx(report["gptlab_items_per_s"] / report["lm_eval_items_per_s"])
    assert report["max_abs_loglik_diff"] < 1e-4  # the same work on both sides
