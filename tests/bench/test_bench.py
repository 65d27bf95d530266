"""The benchmark scripts run end to end (smoke sizes) and the ``gptlab bench`` verb finds them.
The figures themselves are measured by running bench/*.py and recorded in docs/performance.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from samples import SHAKESPEARE

from gptlab.cli import main
from gptlab.commands import bench as bench_command

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_script(*args: str) -> dict:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)  # the whole output is one JSON object


@pytest.mark.slow
def test_train_bench_worker_runs_gptlab_as_the_trainer_does():
    r = run_script(
        str(BENCH / "train.py"), "--worker", "gptlab", "--shape", "tiny", "--steps", "2", "--warmup", "1"
    )
    assert len(r["step_seconds"]) == 2 and all(s > 0 for s in r["step_seconds"])
    assert "fused" in r["optimizer"] and r["grad_clip"] == 1.0
    assert r["peak_rss_mb"] >= r["rss_after_setup_mb"] > 0


def test_train_bench_flops_formula_counts_every_matmul():
    sys.path.insert(0, str(BENCH))
    try:
        import train as train_bench
    finally:
        sys.path.remove(str(BENCH))
    # GPT-2 small: 12 blocks of 12 C^2 weights, the 50257 x 768 head (tied: counted as a matmul)
    n, c, layers, t = 12 * 12 * 768**2 + 50257 * 768, 768, 12, 256
    biases_and_norms = 12 * (3 * c + c + 4 * c + c + 4 * c) + 2 * c
    expected = 6 * (n + biases_and_norms) + 12 * layers * t * c
    assert train_bench.model_flops_per_token("gpt2-124m") == expected


@pytest.mark.slow
def test_speedrun_reports_the_time_to_target():
    r = run_script(
        str(BENCH / "speedrun.py"), "--data", str(SHAKESPEARE),
        "--only", "best", "--max-steps", "6", "--target", "10", "--json",
    )  # fmt: skip
    best = r["runs"]["best"]
    assert r["target_val_loss"] == 10 and best["step_at_target"] == 6  # the first (and last) evaluation
    assert 0 < r["seconds_to_target"] <= best["wall_seconds"]
    assert best["final_val_loss"] < 10


@pytest.mark.slow
def test_speedrun_never_reached_is_null():
    r = run_script(
        str(BENCH / "speedrun.py"), "--data", str(SHAKESPEARE),
        "--only", "best", "--max-steps", "4", "--target", "0.01", "--json",
    )  # fmt: skip
    assert r["seconds_to_target"] is None and r["final_val_loss"] > 0.01


@pytest.mark.slow
def test_bench_verb_runs_a_script_and_passes_arguments(capsys):
    assert main(["bench", "speedrun", "--data", "/nonexistent.txt"]) == 1  # the script's own error


def test_bench_verb_without_a_checkout_says_where_benchmarks_live(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench_command, "bench_dir", lambda: tmp_path)
    assert main(["bench", "train"]) == 2
    assert "source checkout" in capsys.readouterr().err


def test_bench_verb_rejects_unknown_benchmarks():
    assert main(["bench", "nope"]) == 2
