"""Config values that make no sense fail with one `error:` line before any work, and KEY=VALUE
overrides may come anywhere among a verb's options."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from samples import SHAKESPEARE

from gptlab.cli import build_parser, main
from gptlab.config import MAX_SEED, check_values, load_config
from gptlab.errors import GptlabError


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=nan", "optim.lr must be a finite number, got nan"),
        ("optim.lr=-0.001", "optim.lr must be > 0"),
        ("optim.beta1=2", r"optim.beta1 must be in \[0, 1\), got 2.0"),
        ("optim.beta2=1", r"optim.beta2 must be in \[0, 1\)"),
        ("optim.eps=-1", "optim.eps must be > 0"),
        ("optim.weight_decay=-0.1", "optim.weight_decay must be >= 0"),
        ("optim.grad_clip=-1", "optim.grad_clip must be >= 0"),
        ("optim.min_lr=inf", "optim.min_lr must be a finite number"),
        ("train.max_minutes=inf", "train.max_minutes must be a finite number"),
        ("train.stop_val_loss=nan", "train.stop_val_loss must be a finite number"),
        ("data.val_fraction=-inf", "data.val_fraction must be a finite number"),
        ("dp.delta=nan", "dp.delta must be a finite number"),
        ("model.dropout=nan", "model.dropout must be a finite number"),
        ("train.seed=-1", r"train.seed must be an integer in \[0, 2\*\*63 - 1\], got -1"),
        ("train.seed=9223372036854775808", r"train.seed must be an integer in \[0, 2\*\*63 - 1\]"),
    ],
)
def test_a_bad_value_is_one_error_line_before_any_work(tmp_path, capsys, override, message):
    run = tmp_path / "run"
    # data.input names a file that does not exist: reaching the data would be another error
    args = ["train", override, "data.input=missing.txt", "--out", str(run)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not run.exists()  # nothing was made


@given(seed=st.integers())
def test_seeds_are_accepted_exactly_in_the_range_torch_takes(seed):
    config = load_config(None, [f"train.seed={seed}"])
    if 0 <= seed <= MAX_SEED:
        check_values(config)
        import torch

        torch.Generator().manual_seed(seed)  # what the trainer does with it
    else:
        with pytest.raises(GptlabError, match="train.seed"):
            check_values(config)


@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_no_float_setting_takes_a_non_finite_value(value):
    for key in ("optim.lr", "optim.eps", "optim.step_gamma", "train.sample_temperature", "dp.epsilon"):
        config = load_config(None, [f"{key}={value!r}"])  # repr: nan, inf, -inf, 1e-05 ... all TOML
        if math.isfinite(value):
            try:
                check_values(config)
            except GptlabError as e:  # out of range, maybe, but never called non-finite
                assert "finite" not in str(e)
        else:
            with pytest.raises(GptlabError, match=f"{key} must be a finite number"):
                check_values(config)


def test_the_schedule_is_checked_before_any_work(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(["train", "optim.min_lr=1.0", "optim.lr=0.1", "data.input=missing.txt", "--out", str(run)]) == 2
    )
    assert "min_lr" in capsys.readouterr().err and not run.exists()


def parse(argv):
    return build_parser(argv[0]).parse_args(argv)


def test_overrides_and_options_mix_in_any_order():
    args = parse(["train", "train.max_steps=3", "--out", "o/x", "train.seed=1"])  # the command
    assert args.overrides == ["train.max_steps=3", "train.seed=1"] and args.out == "o/x"
    args = parse(["train", "--json", "a.b=1", "--config", "tiny-cpu", "c.d=2", "--out", "r", "e.f=3"])
    assert args.overrides == ["a.b=1", "c.d=2", "e.f=3"] and args.config == "tiny-cpu" and args.json
    args = parse(["audit", "memorization", "train.max_steps=3", "--corpus", "c.txt", "train.seed=1"])
    assert args.overrides == ["train.max_steps=3", "train.seed=1"] and args.corpus == "c.txt"


def test_a_stray_word_is_still_an_error(capsys):
    try:
        code = main(["train", "train.max_steps=3", "--out", "o/x", "oops"])
    except SystemExit as e:  # argparse's own exit
        code = e.code
    assert code == 2 and "unrecognized arguments: oops" in capsys.readouterr().err


@pytest.mark.slow
def test_the_intermixed_command_trains(tmp_path, capsys):
    run = tmp_path / "o" / "x"
    small = [f"data.input={json.dumps(str(SHAKESPEARE))}", "data.tokenizer=char"]
    small += [
        "model.block_size=8",
        "model.n_layer=1",
        "model.n_head=1",
        "model.n_embd=8",
        "train.batch_size=2",
    ]
    small += ["train.eval_batches=1", "train.sample_tokens=0", "train.progress=false", "train.device=cpu"]
    assert main(["train", "train.max_steps=3", "--out", str(run), "train.seed=1", "--json", *small]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 3
    saved = load_config(str(run / "config.toml"))
    assert saved.train.seed == 1 and saved.train.max_steps == 3
