"""The training loop: exact resume, interruption, checkpoints, configs, schedules, reports."""

from __future__ import annotations

import json
import math
import os
import re

import pytest
import torch
from samples import SHAKESPEARE

from gptlab.cli import main
from gptlab.config import load_config, parse_override, to_toml
from gptlab.errors import GptlabError
from gptlab.rundir import load_model
from gptlab.train import LRSchedule, read_metrics, train
from gptlab.train.checkpoint import load_checkpoint
from gptlab.train.optim import make_adamw, param_groups


def small_config(tmp_path, name="run", **extra):
    overrides = [
        f"data.input={json.dumps(str(SHAKESPEARE))}",
        "data.tokenizer=char",
        "model.block_size=32",
        "model.n_layer=2",
        "model.n_head=2",
        "model.n_embd=32",
        "model.dropout=0.1",  # dropout draws random numbers: resume must restore the RNG
        "train.batch_size=4",
        "train.grad_accum=2",
        "train.max_steps=12",
        "train.eval_every=4",
        "train.eval_batches=2",
        "train.log_every=1",
        "train.sample_tokens=8",
        "train.progress=false",
        "optim.warmup_steps=3",
        f"train.out_dir={json.dumps(str(tmp_path / name))}",
    ]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return load_config(None, overrides)


def losses(run_dir):
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir) if r["kind"] == "train"]


@pytest.mark.slow
def test_interrupted_and_resumed_run_logs_the_same_losses(tmp_path):
    full = train(small_config(tmp_path, "full"))
    assert full.step == 12 and full.stop_reason == "max_steps"

    def interrupt(step, record):
        if step == 6:  # between evaluations: the checkpoint is written by the Ctrl-C handler
            raise KeyboardInterrupt

    config = small_config(tmp_path, "split")
    first = train(config, on_step=interrupt)
    assert first.stop_reason == "interrupted" and first.step == 6
    resumed = train(config, resume=True)
    assert resumed.step == 12
    assert losses(tmp_path / "split") == losses(tmp_path / "full")  # exactly, float for float
    a, _ = load_model(tmp_path / "full")
    b, _ = load_model(tmp_path / "split")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


@pytest.mark.slow
def test_training_learns_and_writes_the_run_directory(tmp_path):
    result = train(
        small_config(tmp_path, **{"train.max_steps": 150, "train.eval_every": 75, "optim.lr": 3e-3})
    )
    run = tmp_path / "run"
    for name in ("config.toml", "model.json", "model.safetensors", "tokenizer.json", "metrics.jsonl",
                 "loss.png", "samples.txt", "report.html", "checkpoints/latest.json"):  # fmt: skip
        assert (run / name).is_file(), name
    # one checkpoint folder, the last step's; the earlier ones were removed once it was committed
    assert sorted(os.listdir(run / "checkpoints")) == ["latest.json", "step-00000150"]
    assert sorted(os.listdir(run / "checkpoints" / "step-00000150")) == [
        "model.json", "model.safetensors", "optimizer.pt", "tokenizer.json", "trainer_state.json"
    ]  # fmt: skip
    assert not (run / "trainer_state.json").exists() and not (run / "optimizer.pt").exists()
    assert (run / "best" / "model.safetensors").is_file()
    assert result.final_val_loss < result.unigram_val_loss  # beats a context-free model
    train_losses = [loss for _, loss in losses(run)]
    assert sum(train_losses[-5:]) / 5 < sum(train_losses[:5]) / 5
    report = (run / "report.html").read_text("utf-8")
    # self-contained: no link out (the embedded PNGs' base64 may spell "http" by chance: not counted)
    outside_images = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", report)
    assert "data:image/png;base64," in report and "unigram" in report and "http" not in outside_images.lower()
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the saved config reproduces the run's settings
    again = load_config(str(run / "config.toml"))
    assert (
        again.to_dict()
        == small_config(
            tmp_path, **{"train.max_steps": 150, "train.eval_every": 75, "optim.lr": 3e-3}
        ).to_dict()
    )


@pytest.mark.slow
def test_a_crash_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    config = small_config(tmp_path, **{"train.max_steps": 4})
    train(config)
    run = tmp_path / "run"
    names = ["model.safetensors", "model.json", "checkpoints/latest.json"]
    names += [
        f"checkpoints/step-00000004/{n}" for n in ("model.safetensors", "trainer_state.json", "optimizer.pt")
    ]
    before = {name: (run / name).read_bytes() for name in names}

    import gptlab.train.checkpoint as checkpoint

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(checkpoint.torch, "save", crash)  # optimizer.pt fails after weights are staged
    config.train.max_steps = 8
    with pytest.raises(OSError, match="simulated"):
        train(config, resume=True)
    after = {name: (run / name).read_bytes() for name in before}
    assert after == before
    assert not [p for p in os.listdir(run / "checkpoints" / "step-00000008") if p.endswith(".staged")]
    state, _ = load_checkpoint(run)
    assert state["step"] == 4
    load_model(run)  # still loads
    monkeypatch.undo()
    assert train(config, resume=True).step == 8  # and resumes; the uncommitted folder was replaced
    assert sorted(os.listdir(run / "checkpoints")) == ["latest.json", "step-00000008"]


@pytest.mark.slow
def test_mixed_step_checkpoint_files_refuse_to_resume(tmp_path):
    config = small_config(tmp_path, **{"train.max_steps": 4})
    train(config)
    state_path = tmp_path / "run" / "checkpoints" / "step-00000004" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    state["step"] = 3
    state_path.write_text(json.dumps(state))
    with pytest.raises(GptlabError, match="different steps.*no earlier complete checkpoint"):
        train(config, resume=True)


@pytest.mark.slow
def test_a_new_run_never_overwrites_an_existing_one(tmp_path):
    config = small_config(tmp_path, **{"train.max_steps": 2})
    train(config)
    with pytest.raises(GptlabError, match="already holds a training run"):
        train(config)
    with pytest.raises(GptlabError, match="holds no checkpoint"):
        train(small_config(tmp_path, "other"), resume=True)


@pytest.mark.slow
def test_early_stop_and_time_budget(tmp_path):
    config = small_config(tmp_path, "early", **{"optim.lr": 1e-9, "optim.min_lr": 0.0,
                          "train.eval_every": 1, "train.early_stop_patience": 2, "train.max_steps": 50})  # fmt: skip
    result = train(config)
    assert result.stop_reason == "early stop" and result.step < 50
    budget = train(small_config(tmp_path, "budget", **{"train.max_minutes": 1e-6}))
    assert budget.stop_reason == "time budget" and budget.step == 1


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(GptlabError, match="unknown key 'train.max_step'"):
        load_config(None, ["train.max_step=3"])
    with pytest.raises(GptlabError, match="unknown key 'model.layers'"):
        load_config(None, ["model.layers=3"])
    with pytest.raises(GptlabError, match="is not a config key"):
        load_config(None, ["trian.max_steps=3"])
    with pytest.raises(GptlabError, match="must be a int"):
        load_config(None, ["train.max_steps=lots"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nmax_steps = \n")
    with pytest.raises(GptlabError, match="not valid TOML"):
        load_config(str(bad))
    bad.write_text("[optimizer]\nlr = 1.0\n")
    with pytest.raises(GptlabError, match=r"unknown section \[optimizer\]"):
        load_config(str(bad))
    with pytest.raises(GptlabError, match="not found"):
        load_config("no-such-preset")


def test_overrides_parse_toml_values_and_bare_words():
    assert parse_override("train.max_steps=500") == ("train.max_steps", 500)
    assert parse_override("train.device=cpu") == ("train.device", "cpu")
    assert parse_override('data.input=["a.txt", "b"]') == ("data.input", ["a.txt", "b"])
    assert parse_override("optim.lr=3e-4") == ("optim.lr", 3e-4)
    config = load_config("tiny-cpu", ["model.n_layer=6", 'train.sample_prompt="a \\"quoted\\"\\nline"'])
    assert config.model.overrides["n_layer"] == 6 and config.model.preset == "tiny"
    import tomllib

    assert tomllib.loads(to_toml(config.to_dict()))["train"]["sample_prompt"] == 'a "quoted"\nline'


@pytest.mark.parametrize("name", ["tiny-cpu", "shakespeare-char", "gpt2-124m"])
def test_shipped_configs_load(name):
    config = load_config(name)
    config.model.build(vocab_size=100)


def test_schedules():
    cos = LRSchedule(lr=1.0, min_lr=0.1, warmup=10, decay_steps=110, kind="cosine")
    assert cos.lr_at(0) == pytest.approx(0.1) and cos.lr_at(9) == pytest.approx(1.0)
    assert cos.lr_at(10) == pytest.approx(1.0) and cos.lr_at(60) == pytest.approx(0.55)
    assert cos.lr_at(110) == pytest.approx(0.1) and cos.lr_at(500) == pytest.approx(0.1)
    lin = LRSchedule(lr=1.0, min_lr=0.0, warmup=0, decay_steps=100, kind="linear")
    assert lin.lr_at(25) == pytest.approx(0.75)
    assert LRSchedule(lr=0.5, kind="constant", warmup=0).lr_at(1000) == 0.5
    step = LRSchedule(lr=1.0, warmup=0, kind="step", step_every=10, gamma=0.5)
    assert [step.lr_at(s) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    values = [cos.lr_at(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay
    with pytest.raises(GptlabError, match="schedule"):
        LRSchedule(lr=1.0, kind="exp")
    assert math.isclose(cos.lr_at(35), 0.1 + 0.45 * (1 + math.cos(math.pi * 0.25)))


def test_weight_decay_only_on_matrices(tiny_model):
    model = tiny_model
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    n = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert n == model.num_params()  # the tied head counted once
    opt = make_adamw(model, lr=1e-3)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


def test_fused_cpu_adamw_matches_the_reference_loop(tiny_model):
    """make_adamw uses the fused kernel on CPU (the speed of issue 5); it must take the same steps
    as torch's single-tensor reference AdamW with the same groups."""
    import copy

    model = tiny_model
    ref = copy.deepcopy(model)
    opt = make_adamw(model, lr=1e-2)
    assert opt.defaults["fused"] is True
    ref_opt = torch.optim.AdamW(param_groups(ref, 0.1), lr=1e-2, betas=(0.9, 0.95), foreach=False)
    x = torch.randint(0, 50, (4, 16))
    for _ in range(5):
        for m, o in ((model, opt), (ref, ref_opt)):
            m(x, x)[1].backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            o.step()
            o.zero_grad(set_to_none=True)
    for (name, a), b in zip(model.named_parameters(), ref.parameters()):
        if name.endswith("c_attn.bias"):  # the key bias's gradient is exactly 0 in exact arithmetic
            a, b = a[torch.arange(96) // 32 != 1], b[torch.arange(96) // 32 != 1]  # (softmax ignores
            # it): Adam scales its float noise to full-size steps, differently in each kernel
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
def test_cli_train_and_resume(tmp_path, capsys):
    run = tmp_path / "cli"
    args = ["train", "--config", "shakespeare-char", f"data.input={SHAKESPEARE}",
            "model.block_size=16", "model.n_layer=1", "model.n_embd=16", "model.n_head=2",
            "train.max_steps=4", "train.eval_every=2", "train.eval_batches=1", "--out", str(run), "--json"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 4 and result["final_val_loss"] > 0
    assert main(["train", "--resume", str(run), "train.max_steps=6", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 6
    assert main(args) == 2  # exists: refuses to overwrite
    assert "already holds" in capsys.readouterr().err
    assert main(["train", "train.nope=1"]) == 2
    assert "unknown key" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "nodata")]) == 2
    assert "no training data" in capsys.readouterr().err


def test_auto_dtype_uses_bf16_only_with_native_hardware_bf16(monkeypatch):
    from gptlab.train import trainer

    cpu = torch.device("cpu")
    monkeypatch.setattr(trainer, "native_bf16", lambda device: False)
    assert trainer.resolve_autocast("auto", cpu) is None
    assert trainer.resolve_autocast("bfloat16", cpu) is torch.bfloat16  # asked for: given
    monkeypatch.setattr(trainer, "native_bf16", lambda device: True)
    assert trainer.resolve_autocast("auto", cpu) is torch.bfloat16
    assert trainer.resolve_autocast("float32", cpu) is None
    with pytest.raises(GptlabError, match="train.dtype"):
        trainer.resolve_autocast("int8", cpu)
