"""Smoke test of bench/decode.py on a tiny shape: it runs and prints one JSON object with the keys
the issue asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "decode.py"


@pytest.mark.slow
def test_decode_bench_quick_json_on_a_tiny_shape():
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--shape", "tiny", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    for key in (
        "gptlab_decode_tokens_per_s",
        "hf_decode_tokens_per_s",
        "int8_decode_tokens_per_s",
        "int4_decode_tokens_per_s",
        "torch_dynamic_int8_decode_tokens_per_s",
        "bandwidth_bound_tokens_per_s",
        "gptlab_prefill_tokens_per_s",
        "gptlab_batched_decode_tokens_per_s",
    ):
        assert report[key] > 0, key
    assert {"decode_vs_hf", "fraction_of_bandwidth_bound"} <= set(report["ratios"])
    assert report["greedy_tokens_identical_to_hf"] is True
    assert report["torch"] and report["threads"] >= 1 and report["machine"]["cpu_count"]
