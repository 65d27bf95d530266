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
        "gemv_bound_tokens_per_s",
        "gemv_gbs",
        "int8_weight_only_head_decode_tokens_per_s",
        "gptlab_prefill_tokens_per_s",
        "gptlab_batched_decode_tokens_per_s",
    ):
        assert report[key] > 0, key
    assert {"decode_vs_hf", "fraction_of_bandwidth_bound", "fraction_of_gemv_bound"} <= set(report["ratios"])
    # bf16: timed only where native (else null), its greedy agreement with fp32 always reported
    assert (report["bf16_decode_tokens_per_s"] is None) == (not report["bf16_native"])
    if report["bf16_native"]:
        assert report["bf16_decode_tokens_per_s"] > 0 and report["ratios"]["bf16_vs_hf"] > 0
    agreement = report["bf16_greedy_agreement_with_fp32"]
    assert agreement["prompts"] == 10 and 0 <= agreement["tokens_equal_fraction"] <= 1
    assert report["greedy_tokens_identical_to_hf"] is True
    assert report["torch"] and report["threads"] >= 1 and report["machine"]["cpu_count"]
