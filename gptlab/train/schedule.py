"""Learning-rate schedules: a warmup, then one of seven decays.

``lr_at(step)`` is a pure function of the step (0-based index of the optimizer step about to be
taken), so a resumed run gets exactly the learning rates of an uninterrupted one without any
scheduler state to save.

- warmup (``warmup`` steps; a large step on random weights and unsettled Adam moments
  destabilises training): ``linear``, lr * (step + 1) / warmup, or ``cosine``, the same rise
  along half a cosine (slower at the start, gentler into the peak);
- cosine: from lr down to ``min_lr`` along half a cosine, reached at ``decay_steps`` and held after;
- linear: the same, in a straight line;
- constant: lr after warmup;
- step: lr multiplied by ``gamma`` every ``step_every`` steps after warmup;
- exponential: the smooth version of step, lr * gamma ** ((step - warmup) / step_every);
- inverse-sqrt (the original transformer's): lr * sqrt(warmup / (step + 1)), so continuous at the
  end of the warmup (a warmup of 0 decays from step 0 as 1 / sqrt(step + 1));
- wsd (warmup-stable-decay, MiniCPM / Hägele et al. 2024): lr held until the last
  ``wsd_fraction`` of ``decay_steps``, then down to ``min_lr`` (``linear``, ``cosine`` or
  ``sqrt``: 1 - sqrt(progress)). The stable phase can be continued from any checkpoint and
  decayed later, which is why it suits runs whose length is not known in advance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gptlab.errors import GptlabError
from gptlab.report import figure_png

SCHEDULES = ("cosine", "linear", "constant", "step", "exponential", "inverse-sqrt", "wsd")
WARMUP_SHAPES = ("linear", "cosine")
WSD_DECAYS = ("linear", "cosine", "sqrt")


@dataclass(frozen=True)
class LRSchedule:
    lr: float
    min_lr: float = 0.0
    warmup: int = 0
    decay_steps: int = 1
    kind: str = "cosine"
    step_every: int = 1000
    gamma: float = 0.1
    warmup_shape: str = "linear"
    wsd_fraction: float = 0.2
    wsd_decay: str = "linear"

    def __post_init__(self) -> None:
        for value, known, key in (
            (self.kind, SCHEDULES, "schedule"),
            (self.warmup_shape, WARMUP_SHAPES, "warmup_shape"),
            (self.wsd_decay, WSD_DECAYS, "wsd_decay"),
        ):
            if value not in known:
                raise GptlabError(f"optim.{key} must be one of {', '.join(known)}, got {value!r}")
        if not self.lr > 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise GptlabError(
                f"need 0 <= optim.min_lr <= optim.lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}"
            )
        if self.warmup < 0 or self.decay_steps < 1:
            raise GptlabError(
                f"optim.warmup_steps must be >= 0 and the decay length >= 1, got {self.warmup}, {self.decay_steps}"
            )
        if self.kind in ("step", "exponential") and (self.step_every < 1 or not 0 < self.gamma <= 1):
            raise GptlabError(
                f"{self.kind} schedule: need optim.step_every >= 1 and 0 < optim.step_gamma <= 1, "
                f"got {self.step_every}, {self.gamma}"
            )
        if self.kind == "wsd" and not 0 < self.wsd_fraction <= 1:
            raise GptlabError(f"optim.wsd_decay_fraction must be in (0, 1], got {self.wsd_fraction}")

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            rise = (step + 1) / self.warmup
            if self.warmup_shape == "cosine":
                rise = 0.5 * (1.0 - math.cos(math.pi * rise))
            return self.lr * rise
        after = step - self.warmup  # steps since the warmup ended
        if self.kind == "constant":
            return self.lr
        if self.kind == "step":
            return self.lr * self.gamma ** (after // self.step_every)
        if self.kind == "exponential":
            return self.lr * self.gamma ** (after / self.step_every)
        if self.kind == "inverse-sqrt":
            return self.lr * math.sqrt(max(1, self.warmup) / (step + 1))
        if self.kind == "wsd":
            decay_start = max(self.warmup, self.decay_steps - round(self.wsd_fraction * self.decay_steps))
            if step < decay_start:
                return self.lr
            progress = min(1.0, (step - decay_start) / max(1, self.decay_steps - decay_start))
            return self._decayed(progress, self.wsd_decay)
        progress = min(1.0, after / max(1, self.decay_steps - self.warmup))  # 0 -> 1, then held
        return self._decayed(progress, self.kind)

    def _decayed(self, progress: float, shape: str) -> float:
        """lr -> min_lr as ``progress`` goes 0 -> 1, along ``shape``."""
        if shape == "linear":
            fraction_left = 1.0 - progress
        elif shape == "sqrt":
            fraction_left = 1.0 - math.sqrt(progress)
        else:
            fraction_left = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr + (self.lr - self.min_lr) * fraction_left

    def curve(self, steps: int) -> list[float]:
        """The learning rate of steps 0 .. steps - 1."""
        return [self.lr_at(step) for step in range(steps)]


def schedule_from_config(config) -> LRSchedule:
    """The schedule of a RunConfig's ``[optim]`` (decay over ``train.max_steps`` unless
    ``optim.decay_steps`` says otherwise)."""
    o = config.optim
    return LRSchedule(
        lr=o.lr,
        min_lr=o.min_lr,
        warmup=o.warmup_steps,
        decay_steps=o.decay_steps or config.train.max_steps,
        kind=o.schedule,
        step_every=o.step_every,
        gamma=o.step_gamma,
        warmup_shape=o.warmup_shape,
        wsd_fraction=o.wsd_decay_fraction,
        wsd_decay=o.wsd_decay,
    )


def plot_schedule(schedule: LRSchedule, steps: int, title: str = "") -> bytes:
    """PNG bytes of the learning rate against the step, steps 0 .. steps - 1."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    ax.plot(range(steps), schedule.curve(steps), linewidth=1.5)
    if schedule.warmup:
        ax.axvline(schedule.warmup, color="grey", linestyle=":", linewidth=1, label="end of warmup")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(title or f"{schedule.kind} schedule, {schedule.warmup_shape} warmup")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)
