"""Training under torchrun (2 CPU processes, gloo): DDP and FSDP follow the loss trajectory of one
process with the same global batch, checkpoints resume under both, and activation checkpointing
changes memory, not numbers.

Why the runs see the same data: in ``data.sampler=epoch`` mode all ranks shuffle the windows the
same way and rank r of W takes every W-th one, so the W ranks' micro-batch k together hold exactly
the windows of a single process's micro-batch k with a W times larger batch_size (the trainer's
eval batches are split the same way). One process with batch 4 x grad_accum 2 and two processes
with batch 2 x grad_accum 2 therefore train on the same 8 windows per step; only the order of
float additions differs. dtype is float32: bf16 autocast (``auto`` on CPUs with native bf16)
would add rounding differences of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from samples import SHAKESPEARE

from gptlab.config import load_config
from gptlab.model import GPT
from gptlab.model.config import GPTConfig
from gptlab.rundir import load_model
from gptlab.train import read_metrics, train
from gptlab.train.checkpoint import find_checkpoint, load_checkpoint, read_trainer_state
from gptlab.train.optim import make_adamw

STEPS = 8
TOLERANCE = 1e-5  # float32 sums in another order, over 8 AdamW steps


def overrides(out_dir, per_rank_batch: int, max_steps: int = STEPS, model: tuple[str, ...] = ()) -> list[str]:
    """``model``: more model overrides (an architecture variant)."""
    return [
        *model,
        f"data.input={json.dumps(str(SHAKESPEARE))}",
        "data.tokenizer=char",
        "data.sampler=epoch",
        "model.block_size=32",
        "model.n_layer=2",
        "model.n_head=2",
        "model.n_embd=32",
        "model.dropout=0.0",  # each rank would draw its own masks
        f"train.batch_size={per_rank_batch}",
        "train.grad_accum=2",  # exercises no_sync / set_requires_gradient_sync
        f"train.max_steps={max_steps}",
        "train.eval_every=4",
        "train.eval_batches=2",
        "train.log_every=1",
        "train.sample_tokens=4",
        "train.progress=false",
        "train.dtype=float32",
        "optim.warmup_steps=3",
        f"optim.decay_steps={STEPS}",  # the schedule must not depend on max_steps (split runs)
        f"train.out_dir={json.dumps(str(out_dir))}",
    ]


def torchrun(args: list[str], cwd) -> None:
    """``torchrun --nproc_per_node=2 -m gptlab train ARGS`` on CPU (a free port: --standalone)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "gptlab", "train", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


def records(run_dir, kind: str) -> list[dict]:
    return [r for r in read_metrics(run_dir) if r["kind"] == kind]


def assert_same_trajectory(run_dir, reference_dir, tolerance: float = TOLERANCE) -> float:
    """Same steps, train losses, grad norms and eval losses within ``tolerance``; the max difference."""
    worst = 0.0
    for kind, keys in (("train", ("loss", "grad_norm")), ("eval", ("train_loss", "val_loss"))):
        got, want = records(run_dir, kind), records(reference_dir, kind)
        assert [r["step"] for r in got] == [r["step"] for r in want]
        for a, b in zip(got, want):
            for key in keys:
                assert a[key] == pytest.approx(b[key], abs=tolerance), (kind, a["step"], key)
                worst = max(worst, abs(a[key] - b[key]))
    assert [r["step"] for r in records(run_dir, "train")] == list(range(1, STEPS + 1))
    return worst


def assert_same_weights(run_dir, reference_dir, tolerance: float = TOLERANCE) -> None:
    a, _ = load_model(run_dir)
    b, _ = load_model(reference_dir)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(p, q, atol=tolerance, rtol=0), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, batch 4 x grad_accum 2: the global batch of 2 ranks x batch 2 x grad_accum 2."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    train(load_config(None, overrides(run_dir, per_rank_batch=4)))
    return run_dir


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    torchrun(overrides(run_dir, per_rank_batch=2), cwd=run_dir.parent)
    return run_dir


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_follows_the_single_process_trajectory(ddp_run, reference):
    assert assert_same_trajectory(ddp_run, reference) < TOLERANCE
    assert_same_weights(ddp_run, reference)
    assert (ddp_run / "report.html").is_file() and (ddp_run / "best" / "model.safetensors").is_file()
    state = read_trainer_state(find_checkpoint(ddp_run) / "trainer_state.json")
    assert state["sampler"]["world_size"] == 2 and state["tokens_seen"] == STEPS * 8 * 32


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_run_resumes_under_ddp(tmp_path, ddp_run):
    """Rank 0 wrote the step-4 checkpoint; both ranks load it (were rank 1 to skip the AdamW
    moments, its weights would drift from rank 0's and the mean loss from the uninterrupted run)."""
    run_dir = tmp_path / "run"
    torchrun(overrides(run_dir, per_rank_batch=2, max_steps=4), cwd=tmp_path)
    assert find_checkpoint(run_dir).name == "step-00000004"
    torchrun(["--resume", str(run_dir), f"train.max_steps={STEPS}"], cwd=tmp_path)
    assert assert_same_trajectory(run_dir, ddp_run, tolerance=1e-6) <= 1e-6
    assert_same_weights(run_dir, ddp_run, tolerance=1e-6)


VARIANTS = {
    "lstm": ('model.arch="lstm"',),
    # balance loss off: each rank's f and P come from its own tokens, and the mean of the ranks'
    # E * sum f P is not the loss of the union (f * P is not linear); the routing itself is
    # per token (dropless), so DDP then equals one process
    "moe": ('model.mlp="moe"', "model.n_experts=4", "model.top_k=2", "model.moe_aux_loss=0.0"),
}


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("variant", VARIANTS)
def test_ddp_of_an_architecture_variant_follows_the_single_process_trajectory(tmp_path, variant):
    """An LSTM (one fused nn.LSTM) and a mixture of experts (experts a rank's tokens may skip:
    gptlab's DDP has no find_unused_parameters) train under DDP as in one process."""
    single, ddp = tmp_path / "single" / "run", tmp_path / "ddp" / "run"
    train(load_config(None, overrides(single, per_rank_batch=4, model=VARIANTS[variant])))
    ddp.parent.mkdir()
    torchrun(overrides(ddp, per_rank_batch=2, model=VARIANTS[variant]), cwd=ddp.parent)
    assert_same_trajectory(ddp, single)
    assert_same_weights(ddp, single)
    if variant == "moe":
        assert all(len(r["expert_fraction"]) == 2 for r in records(ddp, "train"))


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    """FSDP2 with activation checkpointing (how a too-big model would train)."""
    run_dir = tmp_path_factory.mktemp("fsdp") / "run"
    args = overrides(run_dir, per_rank_batch=2) + ["train.activation_checkpointing=true"]
    torchrun(["--strategy", "fsdp", *args], cwd=run_dir.parent)
    return run_dir


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_follows_the_single_process_trajectory(fsdp_run, reference):
    assert assert_same_trajectory(fsdp_run, reference) < TOLERANCE
    assert_same_weights(fsdp_run, reference)
    assert (fsdp_run / "best" / "model.safetensors").is_file()
    # the checkpoint has the single-process format: a plain AdamW loads it, moments in place
    model, _ = load_model(fsdp_run)
    optimizer = make_adamw(model, 1e-3)
    load_checkpoint(fsdp_run, optimizer)
    ref_model, _ = load_model(reference)
    ref_optimizer = make_adamw(ref_model, 1e-3)
    load_checkpoint(reference, ref_optimizer)
    for p, q in zip(optimizer.param_groups[0]["params"], ref_optimizer.param_groups[0]["params"]):
        assert p.shape == q.shape
        got, want = optimizer.state[p], ref_optimizer.state[q]
        assert torch.allclose(got["exp_avg"], want["exp_avg"], atol=1e-6)
        assert torch.allclose(got["exp_avg_sq"], want["exp_avg_sq"], atol=1e-7)
        assert float(got["step"]) == float(want["step"]) == STEPS


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_run_resumes_under_fsdp(tmp_path, fsdp_run):
    run_dir = tmp_path / "run"
    args = overrides(run_dir, per_rank_batch=2, max_steps=4) + ["train.activation_checkpointing=true"]
    torchrun(["--strategy", "fsdp", *args], cwd=tmp_path)
    torchrun(
        ["--resume", str(run_dir), f"train.max_steps={STEPS}"], cwd=tmp_path
    )  # strategy from config.toml
    assert assert_same_trajectory(run_dir, fsdp_run, tolerance=1e-6) <= 1e-6
    assert_same_weights(run_dir, fsdp_run, tolerance=1e-6)


# ----- activation checkpointing (one process) ----------------------------------------------------


def test_activation_checkpointing_gives_the_same_gradients_and_saves_fewer_tensors():
    config = GPTConfig.preset(
        "tiny", vocab_size=50, n_layer=3, n_head=2, n_embd=32, block_size=16, dropout=0.1
    )
    torch.manual_seed(0)
    model = GPT(config).train()
    x, y = torch.randint(0, 50, (4, 16)), torch.randint(0, 50, (4, 16))

    def step(recompute: bool):
        model.activation_checkpointing = recompute
        model.zero_grad()
        saved: list[int] = []  # bytes kept for backward, tensor by tensor

        def pack(t):
            saved.append(t.numel() * t.element_size())
            return t

        torch.manual_seed(1)  # dropout: the recomputation must replay the same masks
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _, loss = model(x, y)
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}, sum(saved)

    loss, grads, saved = step(False)
    loss_ac, grads_ac, saved_ac = step(True)
    assert loss_ac == loss
    for name, g in grads.items():
        assert torch.allclose(grads_ac[name], g, atol=1e-6, rtol=0), name
    assert saved_ac < saved / 4  # 3 blocks: only their inputs are kept (726,660 -> 83,076 bytes here)

    model.eval()  # no backward in eval and generation: the flag does nothing there
    with torch.no_grad():
        assert torch.equal(model(x)[0], GPT.forward(model, x)[0])


@pytest.mark.slow
def test_training_with_activation_checkpointing_logs_the_same_losses(tmp_path):
    def run(name, recompute):
        args = overrides(tmp_path / name, per_rank_batch=4, max_steps=4)
        config = load_config(
            None, args + ["model.dropout=0.1", f"train.activation_checkpointing={recompute}"]
        )
        train(config)
        return [(r["step"], r["loss"]) for r in records(tmp_path / name, "train")]

    plain, recomputed = run("plain", "false"), run("recomputed", "true")
    assert [s for s, _ in plain] == [1, 2, 3, 4]
    for (_, a), (_, b) in zip(plain, recomputed):
        assert a == pytest.approx(b, abs=1e-6)


def test_strategy_is_checked_and_has_a_cli_flag(tmp_path, capsys):
    from gptlab.cli import main

    code = main(["train", *overrides(tmp_path / "x", 4), "train.strategy=zero3"])
    assert code != 0 and "train.strategy must be one of auto, ddp, fsdp" in capsys.readouterr().err
    assert main(["train", "--strategy", "zero3"]) == 2
