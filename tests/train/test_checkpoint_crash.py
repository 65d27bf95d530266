"""Kill a training at every step of writing a checkpoint, resume it, and get the same model.

Each case runs ``python -m gptlab train`` in a subprocess with GPTLAB_CHECKPOINT_FAULT set, so the
process kills itself (``os._exit(137)``: no cleanup, as SIGKILL) at one point of saving the second
checkpoint (step 8), then ``gptlab train --resume`` to step 12. A kill before the pointer switch
resumes from the previous checkpoint (step 4), a kill after it from the new one (step 8); either
way the final weights are those of a run that was never killed, bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from samples import SHAKESPEARE

from gptlab.rundir import load_model
from gptlab.train.checkpoint import FAULT_ENV, FAULT_POINTS, find_checkpoint

pytestmark = pytest.mark.slow  # ~20 subprocess trainings: about a minute on 2 cores

CONFIG = """
[data]
input = [{input}]
tokenizer = "char"
[model]
block_size = 16
n_layer = 1
n_head = 2
n_embd = 16
dropout = 0.1  # dropout draws random numbers: the resumed run must restore the RNG state
[optim]
warmup_steps = 2
[train]
max_steps = 12
batch_size = 2
eval_every = 4  # checkpoints at steps 4, 8 and 12
eval_batches = 1
log_every = 1
sample_tokens = 4
progress = false
device = "cpu"
"""

# the step each kill resumes from: the pointer switch is the commit
EXPECTED_RESUME_STEP = {
    "after:model.safetensors": 4,
    "after:optimizer.pt": 4,
    "after:tokenizer.json": 4,
    "after:model.json": 4,
    "after:trainer_state.json": 4,
    "after:pointer": 8,
    "after:publish:model.safetensors": 8,
    "after:publish:tokenizer.json": 8,
    "after:publish:model.json": 8,
    "after:cleanup": 8,
}


def gptlab(args, cwd, fault=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.run(
        [sys.executable, "-m", "gptlab", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("crash")
    (path / "tiny.toml").write_text(CONFIG.format(input=json.dumps(str(SHAKESPEARE))))
    done = gptlab(["train", "--config", "tiny.toml", "--out", "reference", "--json"], cwd=path)
    assert done.returncode == 0, done.stderr
    return path


def train_losses(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if r["kind"] == "train"]


def test_every_fault_point_is_covered():
    assert list(EXPECTED_RESUME_STEP) == list(FAULT_POINTS)


@pytest.mark.parametrize("point", list(EXPECTED_RESUME_STEP))
def test_a_kill_while_checkpointing_resumes_to_the_same_weights(workdir, point):
    run = workdir / point.replace(":", "-")
    killed = gptlab(
        ["train", "--config", "tiny.toml", "--out", run.name, "--json"], workdir, fault=f"{point}@8"
    )
    assert killed.returncode == 137, killed.stderr

    expected = EXPECTED_RESUME_STEP[point]
    source = find_checkpoint(run)
    assert source.name == f"step-{expected:08d}"
    # `--model RUN` meanwhile loads the committed checkpoint, even when the kill left the
    # top-level model files half published
    model, _ = load_model(run)
    committed = load_file(str(source / "model.safetensors"))
    for name, tensor in committed.items():
        assert torch.equal(model.state_dict()[name], tensor), name

    resumed = gptlab(["train", "--resume", run.name, "--json"], workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["step"] == 12

    want = load_file(str(workdir / "reference" / "model.safetensors"))
    got = load_file(str(run / "model.safetensors"))
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name
    assert train_losses(run) == train_losses(workdir / "reference")
    # nothing of the killed save is left: one checkpoint folder, no temporary files
    assert sorted(os.listdir(run / "checkpoints")) == ["latest.json", "step-00000012"]
    assert not [p for p in os.listdir(run) if p.startswith(".")]
