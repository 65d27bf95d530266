"""Training checkpoints, written so that a kill at any instant leaves one complete checkpoint.

A checkpoint is one folder per saved step, and one pointer file naming the newest complete one:

    RUN/checkpoints/step-00000800/   model.json, model.safetensors, tokenizer.json (gptlab.rundir),
                                     optimizer.pt (AdamW moments, read with weights_only=True),
                                     trainer_state.json (step, tokens seen, sampler position, RNG ...)
    RUN/checkpoints/latest.json      {"format": "gptlab-checkpoint-pointer", "step": 800,
                                      "dir": "step-00000800"}
    RUN/model.*, RUN/tokenizer.json  hard links to (or copies of) the pointer's model files, for
                                     every verb that reads a run (generate, export, load_model)

Every file records its step (safetensors metadata "step", model.json ``extra.step``, optimizer.pt
``{"step"}``, trainer_state.json ``step``). Saving writes each file under a temporary name in a
new folder, fsyncs it and renames it into place, then switches the pointer with one atomic
rename: that rename is the commit. Only then are the run's top-level model files replaced
(weights first, model.json last) and the previous folder removed. A kill before the pointer
switch leaves the previous checkpoint named by the pointer and whole; a kill after it leaves the
new one. ``load_checkpoint`` reads the pointer's folder and refuses files whose steps disagree;
if that folder is damaged it falls back to an older complete folder when one is left, else says
what is wrong. Runs written by earlier gptlab (trainer_state.json etc. at the top of RUN) still
resume; their first new checkpoint moves them to this layout.

``GPTLAB_CHECKPOINT_FAULT=<point>[@<step>]`` makes the process kill itself (``os._exit(137)``,
no cleanup, as SIGKILL would) at ``point`` of saving (the checkpoint of ``step`` only, if given):
``after:<file>`` once that file is renamed into the step folder, ``after:pointer``,
``after:publish:<file>`` once that top-level file is replaced, ``after:cleanup``. The crash tests
(tests/train/test_checkpoint_crash.py) kill a training at each of them and resume.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gptlab.errors import GptlabError
from gptlab.io import atomic_write_json, read_json, torch_load_safe
from gptlab.rundir import (
    CHECKPOINT_POINTER,
    CHECKPOINTS_DIR,
    MODEL_FORMAT,
    MODEL_JSON,
    MODEL_VERSION,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    model_state_dict,
    read_checkpoint_pointer,
)

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FORMAT = "gptlab-trainer-state"
STATE_VERSION = 1
POINTER_FORMAT = "gptlab-checkpoint-pointer"
POINTER_VERSION = 1
FAULT_ENV = "GPTLAB_CHECKPOINT_FAULT"
# written in this order, trainer_state.json last; published (the top-level copies) in PUBLISHED order
CHECKPOINT_FILES = (WEIGHTS_FILE, OPTIMIZER_FILE, TOKENIZER_FILE, MODEL_JSON, STATE_FILE)
PUBLISHED = (WEIGHTS_FILE, TOKENIZER_FILE, MODEL_JSON)  # model.json last: it is what marks a run
# where GPTLAB_CHECKPOINT_FAULT can kill a save, in the order a save passes them
FAULT_POINTS = (
    *(f"after:{name}" for name in CHECKPOINT_FILES),
    "after:pointer",
    *(f"after:publish:{name}" for name in PUBLISHED),
    "after:cleanup",
)
STATE_FIELDS = ("step", "tokens_seen", "best_val_loss", "evals_since_best", "elapsed_s", "sampler", "rng")
LEGACY_FILES = (STATE_FILE, OPTIMIZER_FILE)  # top-level checkpoint files of earlier gptlab
STEP_DIR = re.compile(r"step-(\d{8,})")
TEMP_SUFFIXES = (".staged", ".publish", ".tmp")  # .tmp: gptlab.io.atomic_write's, e.g. of the pointer


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def rng_state() -> dict[str, Any]:
    """torch's RNG states (CPU, and every CUDA device) as base64 strings, for JSON."""
    state = {"cpu": _b64(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    try:
        torch.set_rng_state(_unb64(state["cpu"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise GptlabError(f"{STATE_FILE}: field 'rng' is not a saved RNG state ({e})") from None


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


# ---------------------------------------------------------------------------------------------
# saving


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    tokenizer,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    weights: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict | None = None,
) -> Path:
    """Write the checkpoint of ``state["step"]`` (module doc); returns its folder.

    ``weights`` and ``optimizer_state``, when given, replace ``model.state_dict()`` and
    ``optimizer.state_dict()``: under FSDP those hold only this rank's shards, so the trainer
    gathers the full ones first (gptlab.train.distributed) and the files stay the same."""
    from safetensors.torch import save_file

    from gptlab.rundir import unwrap

    step = state["step"]
    checkpoints = run_dir / CHECKPOINTS_DIR
    folder = checkpoints / step_dir_name(step)
    pointer = _pointer_or_none(run_dir)
    if pointer is not None and pointer["dir"] == folder.name:
        # this step is saved and committed already (Ctrl-C right after an evaluation's checkpoint,
        # or during its publishing): rewriting the committed folder in place would break the
        # one-rename commit; finishing its publishing is all that can be left to do
        publish_model_files(run_dir, folder)
        remove_stale(run_dir, keep=folder)
        return folder
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
    writers: dict[str, Callable[[Path], Any]] = {
        WEIGHTS_FILE: lambda p: save_file(weights, str(p), metadata={"format": "pt", "step": str(step)}),
        OPTIMIZER_FILE: lambda p: torch.save({"step": step, "optimizer": optimizer_state}, p),
        TOKENIZER_FILE: lambda p: tokenizer.save(p),
        MODEL_JSON: lambda p: atomic_write_json(p, model_meta),
        STATE_FILE: lambda p: atomic_write_json(
            p, {"format": STATE_FORMAT, "version": STATE_VERSION, **state}
        ),
    }

    if folder.exists():  # a save of this step that never committed (killed, or a failed disk write)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in CHECKPOINT_FILES:
        os.replace(_stage(folder, name, writers[name]), folder / name)
        _fault(f"after:{name}", step)
    _fsync_dir(folder)
    _fsync_dir(checkpoints)

    atomic_write_json(
        checkpoints / CHECKPOINT_POINTER,
        {"format": POINTER_FORMAT, "version": POINTER_VERSION, "step": step, "dir": folder.name},
    )
    _fsync_dir(checkpoints)
    _fault("after:pointer", step)

    publish_model_files(run_dir, folder, step)
    remove_stale(run_dir, keep=folder)
    _fault("after:cleanup", step)
    return folder


def publish_model_files(run_dir: Path, folder: Path, step: int | None = None) -> None:
    """Make RUN/model.safetensors, tokenizer.json and model.json the files of checkpoint ``folder``:
    each hard-linked (a copy where links are not supported) to a temporary name, then renamed over
    the old one; model.json last, so a run whose model.json is new has all three new."""
    for name in PUBLISHED:
        source, target = folder / name, run_dir / name
        if target.exists() and os.path.samefile(source, target):
            continue  # already published (a resumed run re-publishing its checkpoint)
        tmp = run_dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.publish"
        try:
            try:
                os.link(source, tmp)
            except (OSError, AttributeError):  # no hard links here (some network and FAT file systems)
                shutil.copyfile(source, tmp)
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        if step is not None:
            _fault(f"after:publish:{name}", step)
    _fsync_dir(run_dir)


def remove_stale(run_dir: Path, keep: Path | None) -> None:
    """Remove what no committed checkpoint needs: step folders other than ``keep`` (older ones, and
    newer ones that never committed), temporary files of interrupted saves, and the top-level
    optimizer.pt / trainer_state.json of the earlier layout once a folder checkpoint exists."""
    checkpoints = run_dir / CHECKPOINTS_DIR
    for folder in (run_dir, checkpoints, keep):
        if folder is None or not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith(".") and path.name.endswith(TEMP_SUFFIXES) and path.is_file():
                path.unlink(missing_ok=True)
    if checkpoints.is_dir():
        for path in checkpoints.iterdir():
            if STEP_DIR.fullmatch(path.name) and path.is_dir() and (keep is None or path.name != keep.name):
                shutil.rmtree(path, ignore_errors=True)
    if keep is not None and keep != run_dir:
        for name in LEGACY_FILES:
            (run_dir / name).unlink(missing_ok=True)


def _stage(folder: Path, name: str, write: Callable[[Path], Any]) -> Path:
    """``write`` the file to a temporary name in ``folder``, fsynced; returns that name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".staged", dir=folder)
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


def _fsync_dir(folder: Path) -> None:
    """Make the renames in ``folder`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fault(point: str, step: int) -> None:
    """The crash tests' hook (module doc): off unless GPTLAB_CHECKPOINT_FAULT names this point."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, at_step = wanted.partition("@")
    if name == point and (not at_step or int(at_step) == step):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(137)  # what SIGKILL leaves: no finally blocks, no cleanup


# ---------------------------------------------------------------------------------------------
# finding and loading


# what a training run's folder holds (gptlab.train, gptlab.report): anything else is a user's file
RUN_ENTRIES = frozenset(
    {
        "config.toml", "data", CHECKPOINTS_DIR, "best", "metrics.jsonl", "loss.png", "samples.txt",
        "report.html", "privacy.json", "canaries.json", "distill.json", "teacher_topk", MODEL_JSON, WEIGHTS_FILE, TOKENIZER_FILE,
        *LEGACY_FILES,
    }
)  # fmt: skip


def foreign_entries(run_dir: Path) -> list[str]:
    """The names in ``run_dir`` that a training run does not write (hidden temp files aside): a
    folder holding any is not a run, so training must not start in it nor --fresh delete it."""
    if not run_dir.is_dir():
        return []
    return sorted(
        p.name for p in run_dir.iterdir() if p.name not in RUN_ENTRIES and not p.name.startswith(".")
    )


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a committed checkpoint (a pointer, or the earlier top-level layout)."""
    return (run_dir / CHECKPOINTS_DIR / CHECKPOINT_POINTER).is_file() or (run_dir / STATE_FILE).is_file()


def _pointer_or_none(run_dir: Path) -> dict | None:
    try:
        return read_checkpoint_pointer(run_dir)
    except GptlabError:
        return None


def find_checkpoint(run_dir: Path) -> Path:
    """The folder to resume from: the pointer's, checked file by file; if it is damaged, the newest
    older complete one (with a warning on stderr); ``run_dir`` itself for the earlier layout."""
    run_dir = Path(run_dir)
    pointer_path = run_dir / CHECKPOINTS_DIR / CHECKPOINT_POINTER
    if not pointer_path.is_file():
        if (run_dir / STATE_FILE).is_file():
            return run_dir  # written by an earlier gptlab
        raise GptlabError(
            f"cannot resume: {run_dir} holds no training checkpoint (no {CHECKPOINTS_DIR}/{CHECKPOINT_POINTER})"
        )
    pointer = read_checkpoint_pointer(run_dir)  # a GptlabError naming the file if it is damaged
    folder = run_dir / CHECKPOINTS_DIR / pointer["dir"]
    try:
        _read_checkpoint(folder, load_optimizer=False, expected_step=pointer["step"], mmap=True)
        return folder
    except GptlabError as e:
        problem = str(e)
    for older in _step_folders(run_dir, below=pointer["step"]):
        try:
            _read_checkpoint(older, load_optimizer=False, mmap=True)
        except GptlabError:
            continue
        print(
            f"warning: the latest checkpoint is damaged ({problem}); resuming from the previous "
            f"complete one, {older}",
            file=sys.stderr,
        )
        return older
    raise GptlabError(
        f"cannot resume: the latest checkpoint is damaged ({problem}) and {run_dir} holds no earlier "
        "complete checkpoint to fall back to; the run's top-level model files still load for generation"
    )


def _step_folders(run_dir: Path, below: int) -> list[Path]:
    """Step folders of ``run_dir`` with a step below ``below``, newest first."""
    checkpoints = run_dir / CHECKPOINTS_DIR
    found = []
    for path in checkpoints.iterdir() if checkpoints.is_dir() else ():
        match = STEP_DIR.fullmatch(path.name)
        if match and path.is_dir() and int(match.group(1)) < below:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found, reverse=True)]


def load_checkpoint(
    run_dir: Path,
    optimizer: torch.optim.Optimizer | None = None,
    load_optimizer: Callable[[dict], None] | None = None,
    source: Path | None = None,
) -> tuple[dict, dict]:
    """``(trainer_state, weights)`` of the run's checkpoint (``source``: a folder from
    `find_checkpoint`, found if not given); loads ``optimizer`` in place (with
    ``load_optimizer(saved_state_dict)`` instead of ``optimizer.load_state_dict`` when given: FSDP
    shards it). Every file must belong to the same step."""
    source = find_checkpoint(Path(run_dir)) if source is None else Path(source)
    state, weights, saved = _read_checkpoint(source, load_optimizer=optimizer is not None)
    if optimizer is not None:
        try:
            (load_optimizer or optimizer.load_state_dict)(saved["optimizer"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise GptlabError(f"{source / OPTIMIZER_FILE} does not fit this model's optimizer: {e}") from None
    return state, weights


def _read_checkpoint(
    folder: Path, load_optimizer: bool, expected_step: int | None = None, mmap: bool = False
) -> tuple[dict, dict, dict | None]:
    """Read and check one checkpoint: ``(state, weights, saved optimizer or None)``. A missing file,
    a missing trainer-state field, or files of different steps is a GptlabError naming them.
    ``mmap``: only check (the optimizer file is mapped, not read)."""
    from safetensors import SafetensorError, safe_open

    from gptlab.io import load_safetensors
    from gptlab.rundir import read_model_json

    missing = [name for name in CHECKPOINT_FILES if not (folder / name).is_file()]
    if missing:
        raise GptlabError(f"{folder} is incomplete: {', '.join(missing)} missing")
    state = read_trainer_state(folder / STATE_FILE)
    _, model_meta = read_model_json(folder)
    extra = model_meta.get("extra")
    steps = {STATE_FILE: state["step"], MODEL_JSON: extra.get("step") if isinstance(extra, dict) else None}
    weights_path = folder / WEIGHTS_FILE
    try:
        with safe_open(str(weights_path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise GptlabError(f"cannot read weights file {weights_path}: {e} (truncated?)") from None
    steps[WEIGHTS_FILE] = int(meta["step"]) if str(meta.get("step", "")).isdigit() else meta.get("step")
    saved = None
    if load_optimizer or mmap:
        path = folder / OPTIMIZER_FILE
        saved = _load_optimizer_file(path, mmap)
        steps[OPTIMIZER_FILE] = saved.get("step")
    if expected_step is not None:
        steps[CHECKPOINT_POINTER] = expected_step
    if len(set(steps.values())) != 1:
        raise GptlabError(
            f"the files of checkpoint {folder} are from different steps {steps}: refusing to resume from a mix"
        )
    weights = {} if mmap else load_safetensors(weights_path)
    return state, weights, None if mmap else saved


def _load_optimizer_file(path: Path, mmap: bool) -> dict:
    if mmap:  # tensors are mapped, not read: a check of a big checkpoint costs little
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # any unreadable file is damaged, to the caller
            raise GptlabError(f"cannot load {path} safely (weights_only=True): {e}") from None
    else:
        saved = torch_load_safe(path)
    if not isinstance(saved, dict) or "optimizer" not in saved:
        raise GptlabError(f"{path}: not a gptlab optimizer checkpoint")
    return saved


def read_trainer_state(path: Path) -> dict:
    """trainer_state.json, checked: its format, version and every field a resume needs."""
    state = read_json(path, "trainer state")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise GptlabError(f"{path}: not a gptlab trainer state (field 'format')")
    if state.get("version") != STATE_VERSION:
        raise GptlabError(f"{path}: unsupported version {state.get('version')!r}")
    missing = [name for name in STATE_FIELDS if name not in state]
    if missing:
        raise GptlabError(
            f"{path}: field {missing[0]!r} missing (fields needed to resume: {', '.join(STATE_FIELDS)}); "
            "the file is damaged or was not written by gptlab"
        )
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise GptlabError(f"{path}: field 'step' must be a non-negative integer, got {step!r}")
    if not isinstance(state["sampler"], dict) or not isinstance(state["rng"], dict):
        raise GptlabError(f"{path}: fields 'sampler' and 'rng' must be objects")
    return state


def recover_checkpoints(run_dir: Path, source: Path) -> None:
    """After resuming from ``source`` (rank 0 only, once every rank has read it): point the pointer
    at it if it was a fallback, republish its model files (a kill may have stopped between the
    pointer switch and the top-level files) and remove stale folders and temporary files."""
    run_dir, source = Path(run_dir), Path(source)
    if source == run_dir:  # the earlier layout: its files stay until the first new checkpoint
        remove_stale(run_dir, keep=None)
        return
    pointer = _pointer_or_none(run_dir)
    if pointer is None or pointer["dir"] != source.name:
        state = read_trainer_state(source / STATE_FILE)
        atomic_write_json(
            run_dir / CHECKPOINTS_DIR / CHECKPOINT_POINTER,
            {"format": POINTER_FORMAT, "version": POINTER_VERSION, "step": state["step"], "dir": source.name},
        )
        _fsync_dir(run_dir / CHECKPOINTS_DIR)
    publish_model_files(run_dir, source)
    remove_stale(run_dir, keep=source)
