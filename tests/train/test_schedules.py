"""Learning-rate schedules: each curve's value at named steps, worked out by hand, and the
``gptlab schedule plot`` command over them."""

from __future__ import annotations

import json
import math

import pytest

from gptlab.cli import main
from gptlab.config import load_config
from gptlab.errors import GptlabError
from gptlab.train.schedule import SCHEDULES, LRSchedule, schedule_from_config


def sched(kind, **kw):
    return LRSchedule(**{"lr": 1.0, "min_lr": 0.1, "warmup": 10, "decay_steps": 110, "kind": kind, **kw})


@pytest.mark.parametrize(
    "shape, values",
    [
        ("linear", {0: 0.1, 4: 0.5, 9: 1.0}),
        # 0.5 * (1 - cos(pi * (step + 1) / 10)); step 0: 0.5 * (1 - cos(pi / 10))
        ("cosine", {0: 0.5 * (1 - 0.9510565163), 4: 0.5, 9: 1.0}),
    ],
)
@pytest.mark.parametrize("kind", SCHEDULES)
def test_warmup_rises_to_the_peak_whatever_follows(kind, shape, values):
    schedule = sched(kind, warmup_shape=shape)
    for step, lr in values.items():
        assert schedule.lr_at(step) == pytest.approx(lr, abs=1e-9), step


@pytest.mark.parametrize(
    "kind, kw, values",
    [
        ("cosine", {}, {10: 1.0, 60: 0.55, 110: 0.1, 500: 0.1}),
        ("linear", {}, {10: 1.0, 35: 0.775, 60: 0.55, 110: 0.1, 500: 0.1}),
        ("constant", {}, {10: 1.0, 1000: 1.0}),
        ("step", {"gamma": 0.5, "step_every": 20}, {29: 1.0, 30: 0.5, 70: 0.125}),
        ("exponential", {"gamma": 0.5, "step_every": 20}, {10: 1.0, 20: math.sqrt(0.5), 50: 0.25}),
        # lr * sqrt(10 / (step + 1)): 1 where the warmup ends, 1/2 at 4x that, 1/10 at 100x
        ("inverse-sqrt", {}, {9: 1.0, 39: 0.5, 999: 0.1}),
        ("inverse-sqrt", {"warmup": 0}, {0: 1.0, 3: 0.5, 99: 0.1}),
        # decay over the last 20% of 100 steps: held to step 79, then a quarter of the way at 85
        ("wsd", {"decay_steps": 100}, {10: 1.0, 79: 1.0, 80: 1.0, 85: 0.775, 100: 0.1, 300: 0.1}),
        (
            "wsd",
            {"decay_steps": 100, "wsd_decay": "cosine"},
            {79: 1.0, 85: 0.1 + 0.45 * (1 + math.sqrt(0.5))},
        ),
        (
            "wsd",
            {"decay_steps": 100, "wsd_decay": "sqrt"},
            {79: 1.0, 85: 0.55, 90: 0.1 + 0.9 * (1 - math.sqrt(0.5))},
        ),
        ("wsd", {"decay_steps": 100, "wsd_fraction": 0.5}, {49: 1.0, 75: 0.55, 100: 0.1}),
    ],
)
def test_schedule_values_at_named_steps(kind, kw, values):
    schedule = sched(kind, **kw)
    for step, lr in values.items():
        assert schedule.lr_at(step) == pytest.approx(lr, abs=1e-9), step


def test_curve_is_lr_at_each_step():
    schedule = sched("wsd", warmup_shape="cosine")
    assert schedule.curve(120) == [schedule.lr_at(s) for s in range(120)]


def test_config_keys_reach_the_schedule():
    config = load_config(
        None,
        ["train.max_steps=400", "optim.schedule=wsd", "optim.wsd_decay_fraction=0.1", "optim.wsd_decay=sqrt",
         "optim.warmup_shape=cosine", "optim.warmup_steps=20", "optim.lr=0.01", "optim.min_lr=0.001"],
    )  # fmt: skip
    s = schedule_from_config(config)
    assert (s.kind, s.decay_steps, s.wsd_fraction, s.wsd_decay, s.warmup_shape) == (
        "wsd",
        400,
        0.1,
        "sqrt",
        "cosine",
    )
    assert s.lr_at(359) == 0.01 and s.lr_at(400) == pytest.approx(0.001)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"kind": "exp"}, "optim.schedule"),
        ({"warmup_shape": "step"}, "optim.warmup_shape"),
        ({"kind": "wsd", "wsd_decay": "exponential"}, "optim.wsd_decay"),
        ({"kind": "wsd", "wsd_fraction": 0.0}, "optim.wsd_decay_fraction"),
        ({"kind": "exponential", "gamma": 1.5}, "step_gamma"),
    ],
)
def test_bad_schedules_are_refused(kw, message):
    with pytest.raises(GptlabError, match=message):
        LRSchedule(lr=1.0, **kw)


def test_schedule_plot_json_and_png(tmp_path, capsys):
    out = tmp_path / "lr.png"
    args = ["schedule", "plot", "--config", "tiny-cpu", "--out", str(out), "--json", "optim.schedule=wsd",
            "train.max_steps=50", "optim.warmup_steps=5", "optim.lr=0.002", "optim.min_lr=0.0002"]  # fmt: skip
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    config = load_config("tiny-cpu", ["optim.schedule=wsd", "train.max_steps=50", "optim.warmup_steps=5",
                                      "optim.lr=0.002", "optim.min_lr=0.0002"])  # fmt: skip
    assert printed["lr"] == schedule_from_config(config).curve(50)
    # wsd over 50 steps: decay from step 40 to 50; the last step shown (49) is 9/10 of the way
    assert printed["lr"][4] == 0.002 and printed["lr"][-1] == pytest.approx(0.0002 + 0.0018 * 0.1)
    assert out.read_bytes().startswith(b"\x89PNG")
    assert main(args) == 2  # the plot exists: not replaced without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--steps", "20"]) == 0
    assert len(json.loads(capsys.readouterr().out)["lr"]) == 20
