"""Scaling-law sweeps (gptlab.train.scaling, `gptlab sweep scaling`): the power-law fitter against
known curves and scipy, the shape rule, and a tiny ladder end to end (resumable)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from samples import TINY_TRAINING

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.model import GPT, GPTConfig
from gptlab.train.scaling import fit_power_law, parse_count, power_law, shape_for

N = np.array([1e5, 3e5, 1e6, 3e6, 1e7, 3e7])


def test_the_fitter_recovers_a_noise_free_power_law():
    y = power_law(N, 40.0, 0.3, 1.5)
    fit = fit_power_law(N, y, bootstrap=0)
    assert (fit.a, fit.alpha, fit.b) == pytest.approx((40.0, 0.3, 1.5), rel=1e-5)
    assert fit.rmse < 1e-8


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fitter_recovers_a_alpha_b_from_noisy_points_and_matches_scipy(seed):
    curve_fit = pytest.importorskip("scipy.optimize").curve_fit
    rng = np.random.default_rng(seed)
    y = power_law(N, 12.0, 0.25, 2.0) + rng.normal(0, 0.003, len(N))
    fit = fit_power_law(N, y, bootstrap=300, seed=seed)
    assert fit.alpha == pytest.approx(0.25, abs=0.03)
    assert fit.b == pytest.approx(2.0, abs=0.03)
    assert fit.a == pytest.approx(12.0, rel=0.4)
    assert fit.alpha_low < fit.alpha < fit.alpha_high
    assert fit.bootstrap == 300
    # the same least-squares optimum as scipy's trust-region fit from the true parameters
    (a, alpha, b), _ = curve_fit(power_law, N, y, p0=(12.0, 0.25, 2.0), maxfev=20000)
    assert (fit.a, fit.alpha, fit.b) == pytest.approx((a, alpha, b), rel=1e-4)


@pytest.mark.slow
def test_the_bootstrap_interval_covers_the_true_alpha_most_of_the_time():
    """Over 40 noisy ladders of 6 points, the 95% interval holds alpha = 0.25 in at least 80% (a
    residual bootstrap on so few points is known to under-cover; far below 95% would be a bug)."""
    rng = np.random.default_rng(0)
    covered = 0
    for seed in range(40):
        y = power_law(N, 12.0, 0.25, 2.0) + rng.normal(0, 0.003, len(N))
        fit = fit_power_law(N, y, bootstrap=200, seed=seed)
        covered += fit.alpha_low <= 0.25 <= fit.alpha_high
    assert covered >= 32


def test_the_fitter_needs_three_distinct_points():
    with pytest.raises(GptlabError, match="at least 3 points"):
        fit_power_law([1e5, 1e6, 1e6], [3.0, 2.5, 2.5])


@pytest.mark.parametrize(
    "text,value",
    [("0.3M", 300_000), ("500k", 500_000), ("2B", 2_000_000_000), ("1e6", 1_000_000), ("64", 64)],
)
def test_parse_count(text, value):
    assert parse_count(text) == value


def test_parse_count_refuses_junk():
    with pytest.raises(GptlabError, match="not a count"):
        parse_count("3 million")


@pytest.mark.parametrize("target", [100_000, 300_000, 1_000_000, 3_000_000, 10_000_000])
def test_the_shape_rule_builds_models_near_the_target_size(target):
    shape = shape_for(target)
    assert shape["n_embd"] % shape["n_head"] == 0 and shape["n_embd"] // shape["n_head"] in (16, 32)
    assert 16 <= shape["n_embd"] / shape["n_layer"] <= 64  # the aspect ratio stays near 32
    model = GPT(GPTConfig(vocab_size=65, block_size=64, tie_weights=False, **shape))
    n = model.num_params(non_embedding=True) - model.lm_head.weight.numel()  # the blocks alone
    assert n == pytest.approx(target, rel=0.4)


def tiny_ladder_args(out, *ladder):
    overrides = [o for o in TINY_TRAINING if not o.startswith(("data.input", "model."))] + [
        "model.block_size=16"
    ]
    data = json.loads(TINY_TRAINING[0].partition("=")[2])
    sets = [a for o in overrides for a in ("--set", o)]
    return [
        "sweep",
        "scaling",
        "--data",
        data,
        *ladder,
        "--out",
        str(out),
        "--bootstrap",
        "50",
        *sets,
        "--json",
    ]


@pytest.mark.slow
def test_a_three_point_ladder_trains_fits_and_resumes(tmp_path, capsys):
    out = tmp_path / "ladder"
    args = tiny_ladder_args(out, "--n-params", "2k,8k,30k", "--tokens", "64")
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["rows"]
    assert [r["n_embd"] for r in rows] == [16, 32, 48] and all(r["steps"] == 2 for r in rows)
    assert rows[0]["n_params"] < rows[1]["n_params"] < rows[2]["n_params"]
    assert result["fit"] is not None and result["fit"]["bootstrap"] > 0
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["scaling"]["rows"] == rows and saved["scaling"]["fit"] == result["fit"]
    assert (out / "scaling.png").stat().st_size > 0
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/model.safetensors")}
    assert len(mtimes) == 3
    assert main(args) == 0  # resumed: every point is kept, none retrained
    assert json.loads(capsys.readouterr().out)["rows"] == rows
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


@pytest.mark.slow
def test_a_two_point_data_ladder_runs_without_a_fit(tmp_path, capsys):
    out = tmp_path / "data-ladder"
    assert main(tiny_ladder_args(out, "--n-params", "2k", "--tokens", "32,64")) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["axis"] == "tokens" and result["fit"] is None
    assert [r["tokens"] for r in result["rows"]] == [32, 64]
    assert all(r["val_loss"] is not None for r in result["rows"])


def test_scaling_mode_refuses_mixed_flags(tmp_path, capsys):
    assert (
        main(["sweep", "scaling", "--n-params", "2k,8k", "--tokens", "32,64", "--out", str(tmp_path / "x")])
        == 2
    )
    assert "not both" in capsys.readouterr().err
    assert main(["sweep", "scaling", "--sizes", "huge", "--tokens", "32", "--out", str(tmp_path / "x")]) == 2
    assert "unknown size" in capsys.readouterr().err
    assert main(["sweep", "--config", "tiny-cpu", "--out", str(tmp_path / "y")]) == 2
    assert "--grid" in capsys.readouterr().err
    assert (
        main(["sweep", "--grid", "model.dropout=0,0.1", "--tokens", "3", "--out", str(tmp_path / "y")]) == 2
    )
    assert "belongs to `gptlab sweep scaling`" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
