"""Run configs: typed dataclasses, TOML files, and ``section.key=value`` overrides.

A training run is described by one `RunConfig` with five sections, each a dataclass whose field
defaults are the single source of defaults (the CLI never repeats them):

    [model]  the architecture: a preset name plus any GPTConfig field (n_layer, dropout, ...)
    [data]   where the tokens come from: a prepared data folder, or raw text + a tokenizer recipe
    [optim]  the optimiser and the learning-rate schedule
    [train]  steps, batch, evaluation, checkpoints, device, precision, budget
    [dp]     differentially private training (DP-SGD), off unless dp.epsilon > 0

Sources are applied in order: defaults, then a TOML file (``--config``: a path or the name of a
preset shipped in ``gptlab/configs/``), then ``key=value`` overrides from the command line. Values
in overrides are parsed as TOML values (``train.max_steps=500``, ``train.device="cpu"`` or
``train.device=cpu``: a bare word that is not a TOML value is taken as a string). An unknown
section or key is an error naming it and listing the known ones, so a typo never silently
does nothing. ``save_toml`` writes the resolved config (every field) into the run directory.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from gptlab.errors import GptlabError
from gptlab.io import atomic_write_text
from gptlab.model.config import DROPOUT_SITES, GPTConfig

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIGS_DIR = Path(__file__).parent / "configs"


@dataclass
class ModelSection:
    """``preset`` names a shape (gptlab.model.PRESETS); ``overrides`` are GPTConfig fields on top of
    it. ``vocab_size`` is taken from the tokenizer unless given."""

    preset: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)

    def build(self, vocab_size: int) -> GPTConfig:
        return GPTConfig.preset(self.preset, **{"vocab_size": vocab_size, **self.overrides})


@dataclass
class DataSection:
    """Either ``dir``: a folder written by ``gptlab data prepare``; or ``input``: text files/folders
    (``["builtin"]`` for the embedded default corpus), tokenized into RUN/data at the start with
    ``tokenizer`` = "bpe" (trained with ``vocab_size``), "char", or a tokenizer JSON file."""

    dir: str = ""
    input: list[str] = field(default_factory=list)
    tokenizer: str = "bpe"
    vocab_size: int = 4096
    val_fraction: float = 0.1
    sampler: str = "random"  # "random" windows (with replacement) or "epoch" (without replacement)


@dataclass
class OptimSection:
    """The optimiser (gptlab.train.optimizers) and the learning-rate schedule (gptlab.train.schedule)."""

    # adamw (torch, fused: the default) | adamw-scratch (the same, written out) | adam | sgd
    # | adafactor | lion | muon (Muon on hidden matrices + AdamW on the rest: gptlab.train.muon)
    name: str = "adamw"
    lr: float = 6e-4  # peak learning rate
    min_lr: float = 6e-5  # floor of the cosine/linear/wsd decay
    weight_decay: float = 0.1  # on matrices only (not biases, norms): see gptlab.train.optim
    beta1: float = 0.9  # adam*, lion; adafactor: 0 = no first moment
    beta2: float = 0.95  # adam*, lion
    eps: float = 1e-8  # adam*
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    adafactor_relative_step: bool = False  # step size min(1e-2, 1/sqrt(t)): ignores lr and the schedule
    adafactor_scale_parameter: bool = True  # step size times the parameter's RMS
    adafactor_warmup_init: bool = False  # relative step 1e-6 * t early on (needs relative_step)
    adafactor_clip_threshold: float = 1.0  # update RMS clipped to this
    adafactor_decay_rate: float = -0.8  # beta2 at step t: 1 - t^decay_rate
    muon_lr: float = 0.02  # muon: peak lr of the hidden matrices (lr: AdamW's, for the rest)
    muon_momentum: float = 0.95  # muon
    muon_nesterov: bool = True  # muon
    muon_weight_decay: float = 0.0  # muon: decoupled decay of the hidden matrices
    muon_ns_steps: int = 5  # muon: Newton-Schulz iterations
    muon_adjust_lr: str = "original"  # muon: sqrt(max(1, rows/cols)) | match_rms_adamw: 0.2 sqrt(max)
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    # cosine | linear | constant | step | exponential | inverse-sqrt | wsd, after the warmup
    schedule: str = "cosine"
    warmup_steps: int = 100
    warmup_shape: str = "linear"  # linear | cosine rise over warmup_steps
    decay_steps: int = 0  # steps over which lr decays to min_lr; 0 = train.max_steps
    step_every: int = 1000  # step/exponential: lr times step_gamma every this many steps
    step_gamma: float = 0.1
    wsd_decay_fraction: float = 0.2  # wsd: the last fraction of decay_steps decays to min_lr
    wsd_decay: str = "linear"  # wsd: linear | cosine | sqrt (1 - sqrt) shape of that decay
    # eps: the training loss's targets are (1 - eps) one-hot + eps uniform over the vocabulary
    # (F.cross_entropy's label_smoothing); evaluations report the plain cross-entropy
    label_smoothing: float = 0.0


@dataclass
class TrainSection:
    out_dir: str = "runs/run"
    max_steps: int = 2000
    batch_size: int = 12  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per step (global batch = batch_size * grad_accum * ranks)
    eval_every: int = 250  # steps between evaluations (and checkpoints); the last step is evaluated too
    eval_batches: int = 20  # fixed val (and train) windows batches per evaluation
    log_every: int = 10
    seed: int = 1337
    device: str = "auto"  # auto (cuda if available), cpu, cuda, cuda:1, mps
    dtype: str = "auto"  # float32 | bfloat16 (autocast) | auto: bfloat16 only with native hardware bf16
    compile: bool = False  # torch.compile the model (measure: it pays on GPUs, rarely on small CPU runs)
    strategy: str = "auto"  # torchrun: auto (= ddp) | ddp | fsdp; docs/scaling.md
    activation_checkpointing: bool = False  # recompute blocks in backward: less memory, more compute
    max_minutes: float = 0.0  # stop (and checkpoint) after this much wall time; 0 = no budget
    early_stop_patience: int = 0  # stop after this many evals without a new best val loss; 0 = off
    stop_val_loss: float = (
        0.0  # stop at the first evaluation with val loss <= this (a speedrun target); 0 = off
    )
    sample_prompt: str = ""  # "" starts samples from <|endoftext|>
    sample_tokens: int = 200  # tokens generated at each evaluation (0 = none)
    sample_temperature: float = 0.8
    sample_top_k: int = 40
    progress: bool = True  # tqdm progress bar
    data_fraction: float = 1.0  # train on the first this fraction of the train split's tokens (0 < f <= 1)


@dataclass
class DPSection:
    """DP-SGD (gptlab.train.dp): per-window gradient clipping and Gaussian noise calibrated so the
    run's train.max_steps spend ``epsilon`` at ``delta``; the protected unit is one window."""

    epsilon: float = 0.0  # target epsilon over the run; 0 = off (ordinary training)
    delta: float = 0.0  # 0 = the largest power of ten below 1/N (at most 1e-5), N = train windows
    max_grad_norm: float = 1.0  # C: each window's gradient is clipped to this L2 norm


@dataclass
class RunConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    dp: DPSection = field(default_factory=DPSection)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = {"preset": self.model.preset, **self.model.overrides}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> RunConfig:
        config = cls()
        apply_dict(config, d, source)
        return config


SECTIONS = {f.name: f for f in fields(RunConfig)}
MODEL_FIELDS = {f.name for f in fields(GPTConfig)}
MAX_SEED = 2**63 - 1  # torch.manual_seed takes at most a uint64, and TOML integers are int64


def check_values(config: RunConfig) -> None:
    """Refuse values that make no sense before any work is done: a GptlabError naming the key.

    TOML (and so every override) accepts ``nan`` and ``inf``; no float setting has a use for them,
    and a NaN passes every ``<``/``>`` check silently, so they are refused first."""
    for section in SECTIONS:
        for key, value in _float_values(getattr(config, section), section):
            if not math.isfinite(value):
                raise GptlabError(f"{section}.{key} must be a finite number, got {value}")
    o, t, d, dp = config.optim, config.train, config.data, config.dp
    checks = [
        (o.lr > 0, "optim.lr must be > 0", o.lr),
        (o.min_lr >= 0, "optim.min_lr must be >= 0", o.min_lr),
        (o.weight_decay >= 0, "optim.weight_decay must be >= 0", o.weight_decay),
        (0 <= o.beta1 < 1, "optim.beta1 must be in [0, 1)", o.beta1),
        (0 <= o.beta2 < 1, "optim.beta2 must be in [0, 1)", o.beta2),
        (o.eps > 0, "optim.eps must be > 0", o.eps),
        (o.grad_clip >= 0, "optim.grad_clip must be >= 0 (0 disables clipping)", o.grad_clip),
        (o.warmup_steps >= 0, "optim.warmup_steps must be >= 0", o.warmup_steps),
        (o.decay_steps >= 0, "optim.decay_steps must be >= 0 (0: train.max_steps)", o.decay_steps),
        (0 <= o.label_smoothing < 1, "optim.label_smoothing must be in [0, 1)", o.label_smoothing),
        (0 < t.data_fraction <= 1, "train.data_fraction must be in (0, 1]", t.data_fraction),
        (0 <= t.seed <= MAX_SEED, "train.seed must be an integer in [0, 2**63 - 1]", t.seed),
        (0 <= d.val_fraction < 1, "data.val_fraction must be in [0, 1)", d.val_fraction),
        (dp.epsilon >= 0, "dp.epsilon must be >= 0 (0: off)", dp.epsilon),
        (0 <= dp.delta < 1, "dp.delta must be in [0, 1) (0: the default)", dp.delta),
        (dp.max_grad_norm > 0, "dp.max_grad_norm must be > 0", dp.max_grad_norm),
    ]
    for name in ("max_steps", "batch_size", "grad_accum", "eval_every", "eval_batches", "log_every"):
        checks.append((getattr(t, name) >= 1, f"train.{name} must be at least 1", getattr(t, name)))
    for name in ("max_minutes", "stop_val_loss", "early_stop_patience", "sample_tokens", "sample_top_k"):
        checks.append((getattr(t, name) >= 0, f"train.{name} must be >= 0", getattr(t, name)))
    checks.append((t.sample_temperature >= 0, "train.sample_temperature must be >= 0", t.sample_temperature))
    for ok, message, value in checks:
        if not ok:
            raise GptlabError(f"{message}, got {value!r}")
    config.model.build(vocab_size=256)  # the architecture's own checks (dropout, heads, ...), now


def _float_values(section: Any, name: str) -> list[tuple[str, float]]:
    values = (
        section.overrides if name == "model" else {f.name: getattr(section, f.name) for f in fields(section)}
    )
    return [(k, v) for k, v in values.items() if isinstance(v, float)]


def apply_dict(config: RunConfig, d: dict[str, Any], source: str) -> None:
    """Set every ``{section: {key: value}}`` of ``d`` on ``config``, checking names and types."""
    if not isinstance(d, dict):
        raise GptlabError(f"{source}: expected a table of sections")
    for section, values in d.items():
        if section not in SECTIONS:
            raise GptlabError(f"{source}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        if not isinstance(values, dict):
            raise GptlabError(f"{source}: [{section}] must be a table of key = value")
        for key, value in values.items():
            set_value(config, f"{section}.{key}", value, source)


def set_value(config: RunConfig, dotted: str, value: Any, source: str = "override") -> None:
    """Set ``section.key`` to ``value`` (type-checked against the field's default)."""
    section, _, key = dotted.partition(".")
    if section not in SECTIONS or not key:
        raise GptlabError(
            f"{source}: {dotted!r} is not a config key: expected section.key with a section among "
            f"{', '.join(SECTIONS)} (e.g. train.max_steps=500)"
        )
    if section == "model":
        if key == "preset":
            config.model.preset = _check_type(str, value, dotted, source)
            return
        if key not in MODEL_FIELDS:
            raise GptlabError(
                f"{source}: unknown key {dotted!r} (model keys: preset, {', '.join(sorted(MODEL_FIELDS))})"
            )
        default = getattr(GPTConfig(), key)
        # fields whose default is None: per-site dropout (None means "dropout"), the local window
        kind = float if key in DROPOUT_SITES else int if key == "window" else type(default)
        config.model.overrides[key] = _check_type(kind, value, dotted, source)
        return
    target = getattr(config, section)
    known = {f.name: f for f in fields(target)}
    if key not in known:
        raise GptlabError(f"{source}: unknown key {dotted!r} (known in [{section}]: {', '.join(known)})")
    setattr(target, key, _check_type(type(getattr(target, key)), value, dotted, source))


def _check_type(kind: type, value: Any, dotted: str, source: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is list and isinstance(value, str):  # data.input=file.txt: one path
        return [value]
    if kind is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if kind is not list and isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise GptlabError(f"{source}: {dotted} must be a {kind.__name__}, got {value!r}")


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.max_steps=500"`` -> ``("train.max_steps", 500)``; the value is read as TOML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise GptlabError(f"override {text!r} must look like section.key=value (e.g. train.max_steps=500)")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: cpu, cosine, runs/x
    except RecursionError:  # [[[[...: no setting is nested that deep
        raise GptlabError(f"override {key.strip()!r}: the value is nested too deeply") from None
    return key.strip(), value


def resolve_config_path(name_or_path: str, presets: Path = CONFIGS_DIR, what: str = "config") -> Path:
    """A TOML path, or a preset's name in ``presets`` (``tiny-cpu`` -> gptlab/configs/tiny-cpu.toml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = presets / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    raise GptlabError(
        f"{what} {str(name_or_path)!r} not found: not a file, nor a shipped preset "
        f"(presets: {', '.join(list_presets(presets))})"
    )


def list_presets(presets: Path = CONFIGS_DIR) -> list[str]:
    return sorted(p.stem for p in presets.glob("*.toml"))


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GptlabError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise GptlabError(f"config file {path} is not valid TOML: {e}") from None
    except RecursionError:  # tomllib recurses per level of [[[ ... ]]] or {a={b={...}}}
        raise GptlabError(f"config file {path} is nested too deeply to be a gptlab config") from None
    except OSError as e:  # permission denied, a folder, ...
        raise GptlabError(f"cannot read config file {path}: {e.strerror or e}") from None


def load_config(config: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Defaults, then the TOML file or preset ``config``, then ``key=value`` overrides."""
    run_config = RunConfig()
    if config:
        path = resolve_config_path(config)
        apply_dict(run_config, load_toml(path), f"config file {path}")
    for text in overrides:
        key, value = parse_override(text)
        set_value(run_config, key, value, f"override {text!r}")
    return run_config


def to_toml(d: dict[str, Any]) -> str:
    """A ``{section: {key: value}}`` dict as TOML (values: str, int, float, bool, list of str)."""
    lines = []
    for section, values in d.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise GptlabError(f"cannot write {value!r} to TOML")


def save_toml(config: RunConfig, path: str | os.PathLike) -> None:
    atomic_write_text(path, to_toml(config.to_dict()))
