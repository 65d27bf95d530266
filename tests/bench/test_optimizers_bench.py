"""bench/optimizers.py end to end at smoke size (--quick); the figures themselves are in
docs/experiments.md, produced by the full run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from samples import SHAKESPEARE

from gptlab.commands.bench import BENCHMARKS

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.slow
def test_optimizers_bench_quick_reports_every_optimizer_and_state_size(tmp_path):
    script, saved, plot = str(BENCH / "optimizers.py"), tmp_path / "r.json", tmp_path / "sweep.png"
    done = subprocess.run(
        [sys.executable, script, "--quick", "--json", "--data", str(SHAKESPEARE),
         "--save", str(saved), "--plot", str(plot)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert json.loads(saved.read_text()) == r and plot.read_bytes().startswith(b"\x89PNG")
    table = subprocess.run(
        [sys.executable, script, "--from-json", str(saved)], capture_output=True, text=True
    )
    assert table.returncode == 0 and "| adafactor (no beta1) |" in table.stdout
    assert set(r["optimizers"]) == {"adamw", "adam", "sgd", "adafactor", "lion", "adamw-scratch", "muon"}
    for name, result in r["optimizers"].items():
        assert result["val_loss"] is not None and 0 < result["val_loss"] < 10, name
        assert result["train_s"] > 0
    # the from-scratch AdamW takes torch's steps: the same loss at the same lr
    scratch, fused = r["optimizers"]["adamw-scratch"], r["optimizers"]["adamw"]
    assert scratch["best_lr"] == fused["best_lr"] and scratch["val_loss"] == pytest.approx(
        fused["val_loss"], abs=1e-4
    )
    memory = r["state_bytes_per_param"]
    assert memory["adam"] == 8 and memory["lion"] == 4 and memory["sgd (momentum)"] == 4
    # Muon keeps one momentum buffer per hidden matrix; only the AdamW part keeps two moments
    assert 4 < memory["muon (+ adamw for the rest)"] < memory["adam"]
    assert (
        memory["adafactor (no beta1)"] < memory["adafactor (beta1=0.9)"] - 3.5
    )  # the factored second moment


def test_bench_verb_lists_the_optimizers_bench():
    assert "optimizers" in BENCHMARKS and (BENCH / "optimizers.py").is_file()
