"""The pretraining loop: ``train(config)`` turns a `RunConfig` into a run directory.

    RUN/config.toml        the resolved config (every field), enough to reproduce the run
    RUN/data/              the token shards, when the config gave raw text (data.input), with
                           the fingerprint of what they were made from (gptlab.train.fingerprint)
    RUN/checkpoints/       the last checkpoint: step-N/ (model, optimizer.pt, trainer_state.json)
                           and latest.json naming it (gptlab.train.checkpoint)
    RUN/model.*, tokenizer.json    the last checkpoint's model, what ``--model RUN`` loads
    RUN/best/              the model with the lowest val loss so far (load with --model RUN/best)
    RUN/metrics.jsonl      one JSON object per log step ("train") and per evaluation ("eval")
    RUN/samples.txt, loss.png, report.html

One optimizer step = ``grad_accum`` micro-batches of ``batch_size`` windows (times the number of
processes under torchrun), loss averaged, gradients clipped to ``grad_clip``, AdamW with the
learning rate of the schedule for that step (optim.name: AdamW or another optimiser of
gptlab.train.optimizers). Every ``eval_every`` steps (and at the last step):
mean loss on fixed train and val windows, a sample, a checkpoint, and ``best/`` when val improves.

Exact resume: everything a step depends on is a function of the step (learning rate, batches) or
saved with the checkpoint (weights, AdamW moments, RNG state for dropout), so a run interrupted
after step k and resumed with ``resume=True`` logs the same losses as one that never stopped.
Ctrl-C, SIGTERM (gptlab.train.signals), the ``max_minutes`` budget, early stopping and
``stop_val_loss`` all end with a checkpoint of the last completed step.

Under ``torchrun`` (gptlab.train.distributed, docs/scaling.md) every rank draws its own batches,
gradients are averaged (DDP) or reduce-scattered (FSDP), the logged loss is the mean over ranks,
and rank 0 alone writes the run directory, in the same format as a single process.

Differential privacy (``[dp]`` with ``dp.epsilon`` > 0, gptlab.train.dp): each step is a DP-SGD
step instead. The train split is cut into fixed windows of block_size + 1 tokens (the protected
unit), every window joins a step's batch independently with probability q = batch_size *
grad_accum / N (Poisson sampling, a function of seed and step, so resume stays exact), each
window's gradient is clipped to ``dp.max_grad_norm``, Gaussian noise calibrated to spend
``dp.epsilon`` over ``train.max_steps`` steps is added, and AdamW steps on the result
(``optim.grad_clip`` is not applied). Eval records carry ``dp_epsilon`` (spent so far); the
end writes RUN/privacy.json (epsilon, delta, noise multiplier, clip, sample rate, steps). Single
process only.

Host syncs: the loss is read back (``.item()``) only at log steps, so the GPU is not stalled
every step.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptlab.config import RunConfig, check_values, save_toml
from gptlab.data.corpus import BUILTIN_CORPUS
from gptlab.data.shards import BatchSampler, TokenDataset, iter_eval_batches, prepare
from gptlab.errors import GptlabError
from gptlab.io import atomic_write_json, atomic_write_text
from gptlab.model import build_model, model_from_state_dict
from gptlab.model.modes import native_bf16, resolve_device
from gptlab.model.moe import RouterStats, aux_loss, tokens_per_expert
from gptlab.rundir import save_model
from gptlab.train import distributed, signals
from gptlab.train.checkpoint import (
    find_checkpoint,
    foreign_entries,
    has_checkpoint,
    load_checkpoint,
    recover_checkpoints,
    remove_stale,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from gptlab.train.compile import compile_model
from gptlab.train.fingerprint import check_prepared_data, data_fingerprint, record_fingerprint
from gptlab.train.optim import set_lr
from gptlab.train.optimizers import check_optim_section, make_optimizer
from gptlab.train.schedule import schedule_from_config

METRICS_FILE = "metrics.jsonl"
PRIVACY_FILE = "privacy.json"  # DP runs: the privacy spent (gptlab.train.dp.DPPlan.report)
SAMPLES_FILE = "samples.txt"
BEST_DIR = "best"
DATA_DIR = "data"
EOT = "<|endoftext|>"
UNIGRAM_SAMPLE_TOKENS = 10_000_000  # train tokens counted for the unigram baseline


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    # "max_steps" | "time budget" | "early stop" | "target val loss" | "interrupted" (Ctrl-C)
    # | "terminated" (SIGTERM)
    stop_reason: str
    final_val_loss: float | None
    best_val_loss: float | None
    unigram_val_loss: float | None  # cross-entropy of the val split under the train unigram distribution
    tokens_per_s: float
    elapsed_s: float
    n_params: int
    history: list[dict] = field(default_factory=list)  # the metrics.jsonl records
    privacy: dict | None = None  # DP runs: epsilon spent, delta, noise multiplier, ... (privacy.json)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "history"}
        d["run_dir"] = str(self.run_dir)
        return d


# ---------------------------------------------------------------------------------------------
# setup


def resolve_autocast(dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.dtype`` (None: plain fp32). ``auto``: bf16 where the
    hardware runs it natively (on an AVX512-BF16 CPU, bf16 matmuls are 2-4x faster than fp32 at
    every shape of the tiny and 124M models, measured: docs/performance.md), else fp32."""
    if dtype == "auto":
        return torch.bfloat16 if native_bf16(device) else None
    if dtype in ("float32", "fp32"):
        return None
    if dtype in ("bfloat16", "bf16"):
        return torch.bfloat16
    if dtype in ("float16", "fp16") and device.type == "cuda":
        return torch.float16  # note: no loss scaler; prefer bfloat16
    raise GptlabError(f"train.dtype must be auto, float32 or bfloat16 (float16 on CUDA), got {dtype!r}")


def make_tokenizer(kind: str, texts: list[str], vocab_size: int):
    """``bpe`` (trained on ``texts``), ``char``, or the path of a tokenizer file."""
    from gptlab.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer

    if kind == "bpe":
        return BPETokenizer.train(texts, vocab_size=vocab_size, special_tokens=[EOT])
    if kind == "char":
        return CharTokenizer.train(texts, special_tokens=[EOT])
    return load_tokenizer(kind)


def prepare_run_data(config: RunConfig, run_dir: Path, progress: bool, check: bool = True) -> Path:
    """The prepared data folder: ``data.dir``, or RUN/data tokenized from ``data.input``. RUN/data
    is reused only if it was made from what the config asks for (``check``: compare fingerprints,
    gptlab.train.fingerprint; other ranks of a torchrun leave that to rank 0)."""
    data = config.data
    if data.dir:
        if data.input:
            raise GptlabError("give data.dir (a prepared folder) or data.input (raw text), not both")
        return Path(data.dir)
    if not data.input:
        raise GptlabError(
            "no training data: set data.dir to a folder from `gptlab data prepare`, or data.input to text "
            f'files/folders (data.input=["{BUILTIN_CORPUS}"] for the built-in corpus)'
        )
    out = run_dir / DATA_DIR
    if (out / "meta.json").is_file():  # already prepared (a resumed run, or a failed start)
        if check:
            check_prepared_data(out, data)
        return out
    fingerprint = data_fingerprint(data)  # before the work: a missing input fails at once
    from gptlab.data.corpus import config_texts, default_documents

    inputs: list[Any] = []
    for item in data.input:
        inputs += default_documents() if item == BUILTIN_CORPUS else [Path(item)]
    tokenizer = make_tokenizer(data.tokenizer, config_texts(data), data.vocab_size)
    prepare(inputs, tokenizer, out, val_fraction=data.val_fraction, progress=progress)
    record_fingerprint(out, fingerprint)
    return out


def unigram_loss(train: TokenDataset, val: TokenDataset) -> float | None:
    """Mean -log p(token) of the val split under the train split's token frequencies (add-one
    smoothed): the loss of a model that ignores context, which a trained model must beat."""
    if len(val) == 0:
        return None
    counts = np.bincount(np.asarray(train.tokens[:UNIGRAM_SAMPLE_TOKENS]), minlength=train.vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    val_counts = np.bincount(np.asarray(val.tokens), minlength=train.vocab_size)
    return float(-(val_counts * logp).sum() / val_counts.sum())


# ---------------------------------------------------------------------------------------------
# the loop


class _Run:
    """The state of one training run: model, optimizer, data, counters. ``train`` drives it."""

    def __init__(self, config: RunConfig, resume: bool, dist: distributed.DistInfo, objective=None) -> None:
        self.config, self.dist, self.objective = config, dist, objective
        t = config.train
        self.run_dir = Path(t.out_dir)
        _check_train_section(config)  # every value, before any work
        if resume:
            if not has_checkpoint(self.run_dir):
                raise GptlabError(
                    f"cannot resume: {self.run_dir} holds no checkpoint (no checkpoints/latest.json)"
                )
        elif has_checkpoint(self.run_dir):
            raise GptlabError(
                f"{self.run_dir} already holds a training run: resume it with --resume {self.run_dir}, "
                "or choose another train.out_dir (or --overwrite to start over)"
            )
        elif foreign := foreign_entries(self.run_dir):
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise GptlabError(
                f"{self.run_dir} is not empty and not a gptlab run (it holds {shown}): choose another "
                "train.out_dir, or --overwrite to empty it first"
            )
        self.strategy = distributed.resolve_strategy(t.strategy, dist)  # single | ddp | fsdp
        self.device = dist.device if dist.enabled else resolve_device(t.device)
        self.autocast_dtype = resolve_autocast(t.dtype, self.device)

        if dist.is_main:
            data_dir = prepare_run_data(config, self.run_dir, t.progress)
        dist.barrier()
        if not dist.is_main:
            data_dir = prepare_run_data(config, self.run_dir, progress=False, check=False)  # only reads
        self.train_data = TokenDataset(data_dir, "train").head(t.data_fraction)
        val = TokenDataset(data_dir, "val")
        self.val_data = val if len(val) else None
        self.tokenizer = self.train_data.load_tokenizer()

        model_config = config.model.build(vocab_size=self.train_data.vocab_size)
        if t.objective == "mlm":  # an encoder: [MASK] reserved after the tokenizer's ids
            from gptlab.train.mlm import MLMObjective, mlm_model_config

            model_config = mlm_model_config(model_config, self.train_data.vocab_size)
            if objective is not None:
                raise GptlabError(
                    "train.objective=mlm has its own loss: it cannot be combined with distillation"
                )
            self.objective = objective = MLMObjective()
        elif model_config.arch in ("encoder", "encdec"):
            raise GptlabError(
                f"model.arch={model_config.arch} is not a next-token model: pretrain an encoder with "
                "train.objective=mlm (an encoder-decoder trains on pairs: gptlab.finetune.seq2seq)"
            )
        if model_config.vocab_size < self.train_data.vocab_size:
            raise GptlabError(
                f"model.vocab_size {model_config.vocab_size} is smaller than the data's {self.train_data.vocab_size}"
            )
        if config.dp.epsilon > 0:
            from gptlab.train.dp import check_dp_model

            check_dp_model(model_config)
        torch.manual_seed(t.seed)
        self.raw_model = build_model(model_config)
        self.raw_model.activation_checkpointing = t.activation_checkpointing
        if self.strategy == "fsdp":
            # in place, before the optimizer sees the parameters; built on the CPU, each block is
            # moved to the device and sharded in turn, so the whole model never sits on one device
            distributed.shard(self.raw_model, dist)
        else:
            self.raw_model.to(self.device)
        if self.strategy == "fsdp" and config.optim.name == "adafactor":
            raise GptlabError("optim.name=adafactor factors whole matrices: it cannot step FSDP shards")
        self.optimizer = make_optimizer(self.raw_model, config.optim, self.device.type)
        self.schedule = schedule_from_config(config)
        block_size = model_config.block_size
        self.sampler = BatchSampler(
            self.train_data, t.batch_size, block_size, t.seed, dist.rank, dist.world_size, config.data.sampler
        )
        self.dp = _make_dp(config, self.train_data, block_size, dist) if config.dp.epsilon > 0 else None
        self.tokens_per_step = t.batch_size * t.grad_accum * block_size * dist.world_size
        self.state: dict[str, Any] = {
            "step": 0,
            "tokens_seen": 0,
            "best_val_loss": None,
            "evals_since_best": 0,
            "elapsed_s": 0.0,
        }
        if resume:
            # every rank reads the same files (rank 0 wrote them); FSDP keeps only its shards
            fsdp = self.strategy == "fsdp"
            load_optimizer = (
                (lambda sd: distributed.load_full_optimizer_state(self.raw_model, self.optimizer, sd))
                if fsdp
                else None
            )
            source = find_checkpoint(self.run_dir)
            state, weights = load_checkpoint(self.run_dir, self.optimizer, load_optimizer, source=source)
            weights = {k: v.to(self.device) for k, v in weights.items()}
            if fsdp:
                missing, unexpected = distributed.load_full_model_state(self.raw_model, weights)
            else:
                missing, unexpected = self.raw_model.load_state_dict(weights, strict=False)
            missing = [k for k in missing if not (k == "lm_head.weight" and model_config.tie_weights)]
            if missing or unexpected:
                raise GptlabError(
                    f"cannot resume {self.run_dir}: its weights do not fit the configured model "
                    f"(missing {missing[:3]}, unexpected {unexpected[:3]}): was [model] changed?"
                )
            self.sampler.load_state_dict(state["sampler"])
            set_rng_state(state["rng"])
            self.state.update({k: state[k] for k in self.state})
            dist.barrier()  # every rank has read the checkpoint before rank 0 tidies the folder
            if dist.is_main:
                recover_checkpoints(self.run_dir, source)
                _truncate_metrics(self.run_dir / METRICS_FILE, self.state["step"])
        elif dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale(self.run_dir, keep=None)  # a save that never committed, of a failed start
            (self.run_dir / METRICS_FILE).unlink(missing_ok=True)
        if dist.is_main:
            save_toml(config, self.run_dir / "config.toml")
        self.model = distributed.wrap(self.raw_model, dist, self.strategy)
        self.model = compile_model(self.model, enabled=t.compile)
        if objective is not None:  # e.g. distillation: its teacher, checked against this run's data
            objective.setup(self)
        self.unigram = unigram_loss(self.train_data, self.val_data) if self.val_data is not None else None
        # the RNG state at the last step boundary: what a checkpoint (and a resumed run) restarts from
        self.rng = rng_state()
        self.router = RouterStats()

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def step_gradients(self, step: int) -> tuple[torch.Tensor, float | None]:
        """The gradients of optimizer step ``step`` (nothing else changes: it can be interrupted);
        returns the mean loss (a tensor: no sync) and the grad norm."""
        set_lr(self.optimizer, self.schedule.lr_at(step))
        if self.dp is not None:
            return self.dp_gradients(step), None
        return self.gradients()

    def update(self, step: int) -> None:
        """Apply step ``step``, and advance the counters that say it happened (step, tokens, the
        boundary RNG state). The caller holds stop signals meanwhile (module doc)."""
        self.optimizer.step()  # under DP it sees only the private gradient: post-processing
        self.optimizer.zero_grad(set_to_none=True)
        self.rng = rng_state()
        self.state["step"] = step + 1
        self.state["tokens_seen"] += self.tokens_per_step

    def gradients(self) -> tuple[torch.Tensor, float | None]:
        """Accumulate ``grad_accum`` micro-batches' gradients and clip them: (mean loss, grad norm)."""
        t = self.config.train
        total = torch.zeros((), device=self.device)
        for micro in range(t.grad_accum):
            x, y = self.sampler.next_batch()
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            sync = distributed.sync_gradients(self.model, micro == t.grad_accum - 1)
            with sync, self.autocast():
                if self.objective is not None:  # the batch's window starts: a lookup key for it
                    loss = self.objective(self.model, x, y, self.sampler.batch_starts(self.sampler.step - 1))
                else:
                    _, loss = self.model(x, y, label_smoothing=self.config.optim.label_smoothing)
                loss = loss / t.grad_accum
                balance = aux_loss(self.raw_model)  # 0.0 without experts
            (loss + balance / t.grad_accum).backward()
            total += loss.detach()  # the logged loss stays the cross-entropy
            self.router.add(balance, tokens_per_expert(self.raw_model))
        norm = None
        if self.config.optim.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.config.optim.grad_clip)
            if hasattr(norm, "full_tensor"):  # FSDP: a DTensor (already reduced over the ranks)
                norm = norm.full_tensor()
        return total, norm

    def dp_gradients(self, step: int) -> torch.Tensor:
        """The gradients of one DP-SGD step (module doc); returns the mean loss of the sampled
        windows (0 for the rare empty batch, a noise-only step)."""
        from gptlab.train.dp import dp_sgd_gradients, lm_sample_loss, set_gradients

        plan, windows, sampler = self.dp
        x, y = windows.batch(sampler.indices(step))  # (B, T) each, B ~ Binomial(N, q)
        x, y = x.to(self.device), y.to(self.device)
        with self.autocast():
            grads, stats = dp_sgd_gradients(
                self.raw_model,
                lm_sample_loss,
                (x, y),
                plan.max_grad_norm,
                plan.noise_multiplier,
                plan.expected_batch_size,
                chunk_size=self.config.train.batch_size,
            )
        set_gradients(self.raw_model, grads)
        return torch.tensor(stats.loss_sum / max(1, stats.batch_size), device=self.device)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss on fixed windows of each split (the same windows at every evaluation).

        Under torchrun the ranks share ``eval_batches * world_size`` batches of ``batch_size``: the
        windows a single process with the same global batch evaluates, so losses compare."""
        t = self.config.train
        block = self.raw_model.config.block_size
        self.model.eval()
        out = {}
        try:
            for name, data in (("train", self.train_data), ("val", self.val_data)):
                if data is None or len(data) <= block:
                    continue
                total = torch.zeros(2, device=self.device)  # (sum of losses * tokens, tokens)
                batches = iter_eval_batches(
                    data,
                    t.batch_size,
                    block,
                    t.eval_batches * self.dist.world_size,
                    self.dist.rank,
                    self.dist.world_size,
                )
                n = 0
                for x, y in batches:
                    with self.autocast():
                        if hasattr(self.objective, "eval_loss"):  # e.g. MLM: its own masked loss
                            loss = self.objective.eval_loss(self.raw_model, x.to(self.device))
                        else:
                            _, loss = self.raw_model(x.to(self.device), y.to(self.device))
                    total += torch.stack([loss.float() * y.numel(), torch.tensor(float(y.numel()))])
                    n += 1
                if self.strategy == "fsdp":  # every forward gathers weights: all ranks run as many
                    padding = torch.zeros((1, 1), dtype=torch.long, device=self.device)
                    for _ in range(self.dist.max_int(n) - n):
                        self.raw_model(padding)
                self.dist.all_reduce_sum(total)
                out[f"{name}_loss"] = (total[0] / total[1]).item()
        finally:
            self.model.train()
        return out

    def sample(self) -> str:
        from gptlab.generate import Sampler, generate_text

        t = self.config.train
        return generate_text(
            self.raw_model,
            self.tokenizer,
            t.sample_prompt,
            max_new_tokens=t.sample_tokens,
            sampler=Sampler(temperature=t.sample_temperature, top_k=t.sample_top_k or None),
            seed=t.seed,
        )

    def checkpoint(self) -> None:
        """Rank 0 writes the checkpoint of the last completed step (under FSDP all ranks first
        gather the full state to it)."""
        weights = optimizer_state = None
        if self.strategy == "fsdp":
            weights = distributed.full_model_state(self.raw_model)
            optimizer_state = distributed.full_optimizer_state(self.raw_model, self.optimizer)
        if not self.dist.is_main:
            return
        t = self.config.train
        # the sampler position of the step boundary (a Ctrl-C mid-step drew batches it never used)
        self.sampler.step = self.state["step"] * t.grad_accum
        state = dict(self.state, sampler=self.sampler.state_dict(), rng=self.rng)
        save_checkpoint(
            self.run_dir, self.raw_model, self.tokenizer, self.optimizer, state, weights, optimizer_state
        )

    def log(self, record: dict) -> None:
        if self.dist.is_main:
            with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def _make_dp(config: RunConfig, train_data: TokenDataset, block_size: int, dist):
    """(DPPlan, WindowData, PoissonSampler) of a DP run, checking what DP training supports."""
    from gptlab.train.dp import DPPlan, PoissonSampler, WindowData

    t = config.train
    if dist.enabled:
        raise GptlabError("DP training (dp.epsilon > 0) runs in a single process: launch it without torchrun")
    windows = WindowData(train_data.tokens, block_size)
    plan = DPPlan.make(
        config.dp.epsilon,
        config.dp.max_grad_norm,
        len(windows),
        t.batch_size * t.grad_accum,
        t.max_steps,
        config.dp.delta or None,
        unit=f"one window of {block_size + 1} tokens of the train split",
    )
    return plan, windows, PoissonSampler(len(windows), plan.sample_rate, t.seed)


def _check_train_section(config: RunConfig) -> None:
    t = config.train
    check_values(config)
    schedule_from_config(config)  # its own checks (schedule name, min_lr <= lr, ...)
    check_optim_section(config.optim)
    if config.dp.epsilon > 0 and config.optim.label_smoothing > 0:
        raise GptlabError("DP training does not apply optim.label_smoothing: set it to 0 with dp.epsilon > 0")
    if config.dp.epsilon > 0 and (t.compile or t.activation_checkpointing):
        raise GptlabError(
            "DP training computes per-window gradients with torch.func: set train.compile=false and "
            "train.activation_checkpointing=false"
        )


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics logged after the checkpoint ``step`` (an interrupted run logged them, the
    resumed run will log them again), and a torn last line (the run was killed mid-write)."""
    if not path.is_file():
        return
    kept = [line for line, record in _parse_metrics(path) if record["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [record for _, record in _parse_metrics(path)]


def _parse_metrics(path: Path) -> list[tuple[str, dict]]:
    """``(line, record)`` for each record of metrics.jsonl. A torn last line (a kill while it was
    being appended) is ignored, as log readers do; a bad line before it is a GptlabError."""
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            if number == len(lines) and record is None:
                break  # the torn last line
            raise GptlabError(
                f"{path}, line {number}: not a metrics record (expected a JSON object with a step): "
                f"{line[:80]!r}; fix or delete that line"
            )
        out.append((line, record))
    return out


def train(
    config: RunConfig,
    resume: bool = False,
    on_step: Callable[[int, dict], None] | None = None,
    objective=None,
) -> TrainResult:
    """Train (or, with ``resume``, continue) the run described by ``config``; see the module doc.
    ``on_step(step, record)`` is called after every logged step (tests use it to interrupt).
    ``objective`` replaces the training loss: ``setup(run)`` once the run has its data, then
    ``objective(model, x, y, window_starts) -> loss`` per micro-batch (gptlab.train.distill);
    evaluations stay the plain cross-entropy."""
    dist = distributed.init()
    try:
        with signals.stop_signals():  # SIGTERM: checkpoint and stop, as Ctrl-C
            return _train(config, resume, on_step, dist, objective)
    finally:
        distributed.shutdown(dist)


def _train(config, resume, on_step, dist, objective=None) -> TrainResult:
    run = _Run(config, resume, dist, objective)
    t = config.train
    tokens_per_step = run.tokens_per_step
    start_time = time.perf_counter()
    elapsed_before = run.state["elapsed_s"]
    step = run.state["step"]
    stop_reason = "max_steps"
    last_eval: dict[str, float] = {}
    bar = _progress(t, step, dist)
    window_start, window_steps = time.perf_counter(), 0
    try:
        while step < t.max_steps:
            loss, norm = run.step_gradients(step)
            # the update, the counters that record it and its log line go together: a stop signal
            # waits for them, so a checkpoint never holds a half-applied or an unlogged step
            with signals.deferred():
                run.update(step)
                step += 1
                window_steps += 1
                now = time.perf_counter()
                run.state["elapsed_s"] = elapsed_before + now - start_time
                if step % t.log_every == 0 or step == t.max_steps:
                    loss_value = dist.mean_item(loss)
                    tokens_per_s = window_steps * tokens_per_step / max(now - window_start, 1e-9)
                    record = {
                        "kind": "train",
                        "step": step,
                        "loss": loss_value,
                        "lr": run.schedule.lr_at(step - 1),
                        "grad_norm": None if norm is None else float(norm),
                        "tokens_seen": run.state["tokens_seen"],
                        "tokens_per_s": tokens_per_s,
                        "elapsed_s": run.state["elapsed_s"],
                        "time": time.time(),  # wall clock (speedruns measure from process start)
                        **run.router.record(),  # mixture of experts: load balance since the last log
                    }
                    if not math.isfinite(loss_value):
                        raise GptlabError(
                            f"the loss became {loss_value} at step {step}: lower optim.lr or enable optim.grad_clip"
                        )
                    run.log(record)
                    if bar is not None:
                        bar.set_postfix(
                            loss=f"{loss_value:.4f}", lr=f"{record['lr']:.2e}", tok_s=f"{tokens_per_s:,.0f}"
                        )
                    if on_step is not None:
                        on_step(step, record)
                    window_start, window_steps = now, 0
            if bar is not None:
                bar.update(1)
            over_budget = t.max_minutes > 0 and run.state["elapsed_s"] >= 60 * t.max_minutes
            if t.max_minutes > 0 and dist.enabled:  # clocks differ: all ranks must stop at the same step
                over_budget = dist.max_int(int(over_budget)) > 0
            if step % t.eval_every == 0 or step == t.max_steps or over_budget:
                last_eval = _evaluate_and_save(run, step)
                window_start, window_steps = time.perf_counter(), 0  # tokens/s: training only
                if t.early_stop_patience and run.state["evals_since_best"] >= t.early_stop_patience:
                    stop_reason = "early stop"
                    break
                if t.stop_val_loss > 0 and last_eval.get("val_loss", math.inf) <= t.stop_val_loss:
                    stop_reason = "target val loss"
                    break
            if over_budget:
                stop_reason = "time budget"
                break
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (signals.Terminated)
        stop_reason = "terminated" if isinstance(e, signals.Terminated) else "interrupted"
        step = run.state["step"]
        if run.strategy == "fsdp":  # gathering the shards needs every rank in step, not mid-collective
            if dist.is_main:
                print(
                    f"\n{stop_reason} at step {step}: continue from the last evaluation's checkpoint with --resume",
                    file=sys.stderr,
                )
        else:
            run.checkpoint()
            if dist.is_main:
                print(
                    f"\n{stop_reason}: checkpoint of step {step} saved in {run.run_dir}; continue with --resume",
                    file=sys.stderr,
                )
    finally:
        if bar is not None:
            bar.close()

    history = read_metrics(run.run_dir) if dist.is_main else []
    train_records = [r for r in history if r["kind"] == "train"]
    speeds = [r["tokens_per_s"] for r in train_records[1:]] or [r["tokens_per_s"] for r in train_records]
    result = TrainResult(
        run_dir=run.run_dir,
        step=step,
        stop_reason=stop_reason,
        final_val_loss=last_eval.get("val_loss"),
        best_val_loss=run.state["best_val_loss"],
        unigram_val_loss=run.unigram,
        tokens_per_s=float(np.median(speeds)) if speeds else 0.0,
        elapsed_s=run.state["elapsed_s"],
        n_params=run.raw_model.num_params(),
        history=history,
        privacy=run.dp[0].report(step) if run.dp is not None else None,
    )
    if dist.is_main and result.privacy is not None:
        atomic_write_json(run.run_dir / PRIVACY_FILE, result.privacy)
    if dist.is_main and stop_reason not in ("interrupted", "terminated"):
        from gptlab.report import write_run_report

        write_run_report(run.run_dir, config, result)
    dist.barrier()  # no rank returns before rank 0 has written the run directory
    return result


def _evaluate_and_save(run: _Run, step: int) -> dict[str, float]:
    t = run.config.train
    losses = run.evaluate()
    record = {"kind": "eval", "step": step, **losses, "time": time.time()}
    if run.dp is not None:
        record["dp_epsilon"] = run.dp[0].epsilon(step)
    val = losses.get("val_loss")
    if val is not None:
        record["val_ppl"] = math.exp(min(val, 50.0))
        best = run.state["best_val_loss"]
        if best is None or val < best:
            # the recorded best and best/ change together: a stop signal waits for both
            with signals.deferred():
                run.state["best_val_loss"] = val
                run.state["evals_since_best"] = 0
                model = run.raw_model
                if run.strategy == "fsdp":  # gather the full weights (all ranks), rank 0 saves them
                    weights = distributed.full_model_state(model)
                    model = model_from_state_dict(model.config, weights) if run.dist.is_main else None
                if run.dist.is_main:
                    save_model(
                        run.run_dir / BEST_DIR, model, run.tokenizer, extra={"step": step, "val_loss": val}
                    )
        else:
            run.state["evals_since_best"] += 1
    # under FSDP every rank generates (each forward gathers the weights), only rank 0 writes
    can_sample = t.sample_tokens and t.objective == "lm"  # an encoder does not generate
    sample = run.sample() if can_sample and (run.dist.is_main or run.strategy == "fsdp") else None
    if sample is not None and run.dist.is_main:
        record["sample"] = sample
        with open(run.run_dir / SAMPLES_FILE, "a", encoding="utf-8") as f:
            f.write(f"--- step {step} ---\n{t.sample_prompt}{record['sample']}\n\n")
    run.log(record)
    run.checkpoint()
    if run.dist.is_main and t.progress:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
        _write_progress(f"step {step}: {shown}")
    return losses


def _progress(t, step: int, dist):
    if not (t.progress and dist.is_main):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=t.max_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)


def _write_progress(message: str) -> None:
    import sys

    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)  # stdout is for results (`--json` prints only JSON there)
