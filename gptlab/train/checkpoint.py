"""Training checkpoints in the run directory, written so that a crash never loses the last good one.

A checkpoint is the run directory's model files (model.json, model.safetensors, tokenizer.json, see
gptlab.rundir) plus ``optimizer.pt`` (AdamW moments, read back with ``weights_only=True``) and
``trainer_state.json`` (step, tokens seen, batch-sampler position, RNG states, best val loss ...).

Saving stages every file under a temporary name first (fully written and fsynced), then renames
them into place, ``trainer_state.json`` last. A crash while staging (the slow part) leaves the
previous checkpoint untouched; the renames take microseconds. Each file records the step it
belongs to, and ``load_checkpoint`` refuses a set of files from different steps rather than
resume from a mix.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gptlab.errors import GptlabError
from gptlab.io import read_json, torch_load_safe
from gptlab.rundir import (
    MODEL_FORMAT,
    MODEL_JSON,
    MODEL_VERSION,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    model_state_dict,
)

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FORMAT = "gptlab-trainer-state"
STATE_VERSION = 1


def rng_state() -> dict[str, Any]:
    """torch's RNG states (CPU, and every CUDA device) as base64 strings, for JSON."""
    state = {"cpu": _b64(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(_unb64(state["cpu"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    tokenizer,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    weights: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict | None = None,
) -> None:
    """Write the model files, optimizer.pt and trainer_state.json for ``state["step"]``.

    ``weights`` and ``optimizer_state``, when given, replace ``model.state_dict()`` and
    ``optimizer.state_dict()``: under FSDP those hold only this rank's shards, so the trainer
    gathers the full ones first (gptlab.train.distributed) and the files stay the same."""
    from safetensors.torch import save_file

    from gptlab.io import atomic_write_json
    from gptlab.rundir import unwrap

    run_dir.mkdir(parents=True, exist_ok=True)
    step = state["step"]
    raw = unwrap(model)
    if weights is None:
        weights = model_state_dict(raw)
    elif raw.config.tie_weights:
        weights = {k: v for k, v in weights.items() if k != "lm_head.weight"}
    weights = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    if optimizer_state is None:
        optimizer_state = optimizer.state_dict()
    model_meta = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "config": raw.config.to_dict(),
        "n_params": raw.num_params(),
        "extra": {"step": step},
    }
    staged: list[tuple[Path, Path]] = []
    try:
        for name, write in (
            (
                WEIGHTS_FILE,
                lambda p: save_file(weights, str(p), metadata={"format": "pt", "step": str(step)}),
            ),
            (OPTIMIZER_FILE, lambda p: torch.save({"step": step, "optimizer": optimizer_state}, p)),
            (MODEL_JSON, lambda p: atomic_write_json(p, model_meta)),
            (TOKENIZER_FILE, lambda p: tokenizer.save(p)),
            (
                STATE_FILE,
                lambda p: atomic_write_json(p, {"format": STATE_FORMAT, "version": STATE_VERSION, **state}),
            ),
        ):
            staged.append((_stage(run_dir, name, write), run_dir / name))
        for tmp, final in staged:  # trainer_state.json is last: it marks the checkpoint complete
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def _stage(run_dir: Path, name: str, write) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".staged", dir=run_dir)
    os.close(fd)
    path = Path(tmp)
    try:
        write(path)
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / STATE_FILE).is_file()


def load_checkpoint(
    run_dir: Path,
    optimizer: torch.optim.Optimizer | None = None,
    load_optimizer: Callable[[dict], None] | None = None,
) -> tuple[dict, dict]:
    """``(trainer_state, weights)`` of the checkpoint in ``run_dir``; loads ``optimizer`` in place
    (with ``load_optimizer(saved_state_dict)`` instead of ``optimizer.load_state_dict`` when
    given: FSDP shards it). Every file must belong to the same step."""
    from gptlab.io import load_safetensors
    from gptlab.rundir import read_model_json

    state_path = run_dir / STATE_FILE
    if not state_path.is_file():
        raise GptlabError(f"cannot resume: {state_path} not found ({run_dir} holds no training checkpoint)")
    state = read_json(state_path, "trainer state")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise GptlabError(f"{state_path}: not a gptlab trainer state (field 'format')")
    if state.get("version") != STATE_VERSION:
        raise GptlabError(f"{state_path}: unsupported version {state.get('version')!r}")
    step = state.get("step")
    _, model_meta = read_model_json(run_dir)
    weights = load_safetensors(run_dir / WEIGHTS_FILE)
    steps = {STATE_FILE: step, MODEL_JSON: model_meta.get("extra", {}).get("step")}
    if optimizer is not None:
        saved = torch_load_safe(run_dir / OPTIMIZER_FILE)
        if not isinstance(saved, dict) or "optimizer" not in saved:
            raise GptlabError(f"{run_dir / OPTIMIZER_FILE}: not a gptlab optimizer checkpoint")
        steps[OPTIMIZER_FILE] = saved.get("step")
        try:
            (load_optimizer or optimizer.load_state_dict)(saved["optimizer"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise GptlabError(
                f"{run_dir / OPTIMIZER_FILE} does not fit this model's optimizer: {e}"
            ) from None
    if len(set(steps.values())) != 1:
        raise GptlabError(
            f"cannot resume from {run_dir}: its checkpoint files are from different steps {steps} "
            "(the run was killed while saving?); the model files alone still load for generation"
        )
    return state, weights
