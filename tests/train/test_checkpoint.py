"""Checkpoint folders and their pointer: fallback from a damaged checkpoint, step checks on every
file (the weights' metadata too), damaged trainer state, runs in the earlier top-level layout,
and torn metrics lines on resume. (The kill-at-every-point tests: test_checkpoint_crash.py.)"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from samples import SHAKESPEARE

from gptlab.config import load_config
from gptlab.errors import GptlabError
from gptlab.train import read_metrics, train
from gptlab.train.checkpoint import find_checkpoint, has_checkpoint, load_checkpoint

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # every test trains


def tiny_config(tmp_path, name="run", max_steps=12):
    return load_config(
        None,
        [
            f"data.input={json.dumps(str(SHAKESPEARE))}",
            "data.tokenizer=char",
            "model.block_size=16",
            "model.n_layer=1",
            "model.n_head=2",
            "model.n_embd=16",
            "model.dropout=0.1",
            "train.batch_size=2",
            f"train.max_steps={max_steps}",
            "train.eval_every=4",
            "train.eval_batches=1",
            "train.log_every=1",
            "train.sample_tokens=0",
            "train.progress=false",
            "train.device=cpu",
            "optim.warmup_steps=2",
            "optim.decay_steps=12",  # the schedule of the full run, whatever max_steps a part stops at
            f"train.out_dir={json.dumps(str(tmp_path / name))}",
        ],
    )


def weights(run):
    return load_file(str(run / "model.safetensors"))


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread):
    """A 12-step run that was never stopped."""
    path = tmp_path_factory.mktemp("reference")
    train(tiny_config(path))
    return path / "run"


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_complete_one(tmp_path, reference, capsys):
    config = tiny_config(tmp_path, max_steps=4)
    train(config)
    run = tmp_path / "run"
    kept = tmp_path / "step-4-copy"
    shutil.copytree(run / "checkpoints" / "step-00000004", kept)
    config.train.max_steps = 8
    train(config, resume=True)
    # as a kill between the pointer switch and the cleanup leaves it: both folders, pointer at 8
    shutil.copytree(kept, run / "checkpoints" / "step-00000004")
    (run / "checkpoints" / "step-00000008" / "optimizer.pt").unlink()  # then step 8 is damaged

    assert find_checkpoint(run).name == "step-00000004"
    assert "optimizer.pt missing" in capsys.readouterr().err
    config.train.max_steps = 12
    assert train(config, resume=True).step == 12
    assert "resuming from the previous complete one" in capsys.readouterr().err
    assert_same_weights(run, reference)


def test_a_damaged_only_checkpoint_is_a_clear_error(tmp_path):
    config = tiny_config(tmp_path, max_steps=4)
    train(config)
    (tmp_path / "run" / "checkpoints" / "step-00000004" / "optimizer.pt").unlink()
    with pytest.raises(GptlabError, match="optimizer.pt missing.*no earlier complete checkpoint"):
        train(config, resume=True)


def test_weights_of_another_step_refuse_to_resume(tmp_path):
    """The weights file's own step (its safetensors metadata) is checked, not only the JSON files."""
    config = tiny_config(tmp_path, max_steps=4)
    train(config)
    path = tmp_path / "run" / "checkpoints" / "step-00000004" / "model.safetensors"
    save_file(load_file(str(path)), str(path), metadata={"format": "pt", "step": "3"})
    with pytest.raises(GptlabError, match=r"different steps.*'model.safetensors': 3"):
        load_checkpoint(tmp_path / "run")


@pytest.mark.parametrize("field", ["sampler", "rng", "tokens_seen"])
def test_a_trainer_state_missing_a_field_names_it(tmp_path, field):
    config = tiny_config(tmp_path, max_steps=4)
    train(config)
    path = tmp_path / "run" / "checkpoints" / "step-00000004" / "trainer_state.json"
    state = json.loads(path.read_text())
    del state[field]
    path.write_text(json.dumps(state))
    with pytest.raises(GptlabError, match=f"trainer_state.json: field '{field}' missing"):
        train(config, resume=True)


def to_legacy_layout(run):
    """What gptlab wrote before checkpoint folders: every file at the top of RUN."""
    folder = run / "checkpoints" / "step-00000004"
    for path in folder.iterdir():
        (run / path.name).unlink(missing_ok=True)
        shutil.copy(path, run / path.name)
    shutil.rmtree(run / "checkpoints")


def test_a_run_in_the_earlier_layout_resumes_exactly_and_moves_to_folders(tmp_path, reference):
    config = tiny_config(tmp_path, max_steps=4)
    train(config)
    run = tmp_path / "run"
    to_legacy_layout(run)
    assert has_checkpoint(run) and find_checkpoint(run) == run
    config.train.max_steps = 12
    assert train(config, resume=True).step == 12
    assert_same_weights(run, reference)
    assert not (run / "trainer_state.json").exists() and not (run / "optimizer.pt").exists()
    assert find_checkpoint(run).name == "step-00000012"


def test_a_torn_last_metrics_line_is_ignored_on_resume(tmp_path, reference):
    config = tiny_config(tmp_path, max_steps=4)
    train(config)
    run = tmp_path / "run"
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 5, "lo')  # killed while appending
    assert [r["step"] for r in read_metrics(run)][-1] == 4
    config.train.max_steps = 12
    train(config, resume=True)
    assert [(r["kind"], r["step"], r.get("loss")) for r in read_metrics(run)] == [
        (r["kind"], r["step"], r.get("loss")) for r in read_metrics(reference)
    ]


def test_a_torn_metrics_line_in_the_middle_is_an_error_naming_it(tmp_path):
    config = tiny_config(tmp_path, max_steps=4)
    train(config)
    path = tmp_path / "run" / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:20]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(GptlabError, match=r"metrics.jsonl, line 2: not a metrics record"):
        read_metrics(tmp_path / "run")
    with pytest.raises(GptlabError, match=r"line 2"):
        train(config, resume=True)
