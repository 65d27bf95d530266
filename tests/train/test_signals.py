"""SIGTERM stops a training like Ctrl-C does (checkpoint, then exit 143; 130 for SIGINT), and a
stop signal never lands between an optimizer update and the step counter that records it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from samples import SHAKESPEARE

from gptlab.train.checkpoint import find_checkpoint, read_trainer_state
from gptlab.train.signals import Terminated, deferred, stop_signals

CONFIG = """
[data]
input = [{input}]
tokenizer = "char"
[model]
block_size = 16
n_layer = 1
n_head = 2
n_embd = 16
[train]
max_steps = 100000
batch_size = 2
eval_every = 100000
eval_batches = 1
log_every = 1
sample_tokens = 0
progress = false
device = "cpu"
"""


@pytest.fixture(autouse=True)
def default_stop_signals():
    """Ctrl-C and SIGTERM as a fresh process has them. Run after the whole suite, these tests found
    SIGINT blocked or ignored at the OS level (the Python-level handler unchanged: some earlier test
    or library in the same pytest process left it so; not yet traced), and a child inherits both."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    previous = (
        signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.signal(signal.SIGTERM, signal.SIG_DFL),
    )
    yield
    signal.signal(signal.SIGINT, previous[0])
    signal.signal(signal.SIGTERM, previous[1])


def train_steps(run):
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines[:-1]) if r["kind"] == "train"]  # last: maybe torn


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_saves_a_checkpoint_and_resume_continues(tmp_path, signum, code):
    (tmp_path / "tiny.toml").write_text(CONFIG.format(input=json.dumps(str(SHAKESPEARE))))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "gptlab", "train", "--config", "tiny.toml", "--out", "run", "--json"]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(train_steps(tmp_path / "run")) < 3:  # mid-training, well past the setup
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.1)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr.decode()
    stopped = "terminated" if signum == signal.SIGTERM else "interrupted"
    assert f"{stopped}: checkpoint of step" in stderr.decode()

    run = tmp_path / "run"
    step = read_trainer_state(find_checkpoint(run) / "trainer_state.json")["step"]
    assert step >= 3
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records) <= step + 1  # nothing logged past the next, unsaved, step

    more = [
        sys.executable,
        "-m",
        "gptlab",
        "train",
        "--resume",
        "run",
        f"train.max_steps={step + 2}",
        "--json",
    ]
    resumed = subprocess.run(more, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["step"] == step + 2
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == list(range(1, step + 3))  # continued right after the checkpoint, no gap, no repeat


def test_a_signal_inside_a_deferred_block_waits_for_its_end():
    before = signal.getsignal(signal.SIGTERM)
    finished = False
    with stop_signals():
        with pytest.raises(Terminated), deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler has run by now: it only noted the signal
            finished = True
        assert finished
    assert signal.getsignal(signal.SIGTERM) is before  # restored after training


def test_a_second_signal_does_not_wait():
    """A step that hangs (a stuck collective) can still be stopped with a second signal."""
    with stop_signals(), pytest.raises(KeyboardInterrupt), deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        pytest.fail("the second signal should have raised")
