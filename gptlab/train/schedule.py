"""Learning-rate schedules: a linear warmup, then cosine (default), linear, constant or step decay.

``lr_at(step)`` is a pure function of the step (0-based index of the optimizer step about to be
taken), so a resumed run gets exactly the learning rates of an uninterrupted one without any
scheduler state to save.

- warmup: lr rises linearly from lr/warmup to lr over the first ``warmup`` steps (a large step
  size on random weights and untuned Adam moments destabilises training);
- cosine: from lr down to ``min_lr`` along half a cosine, reached at ``decay_steps`` and held after;
- linear: the same, in a straight line;
- constant: lr after warmup;
- step: lr multiplied by ``gamma`` every ``step_every`` steps after warmup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gptlab.errors import GptlabError

SCHEDULES = ("cosine", "linear", "constant", "step")


@dataclass(frozen=True)
class LRSchedule:
    lr: float
    min_lr: float = 0.0
    warmup: int = 0
    decay_steps: int = 1
    kind: str = "cosine"
    step_every: int = 1000
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise GptlabError(f"optim.schedule must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")
        if not self.lr > 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise GptlabError(
                f"need 0 <= optim.min_lr <= optim.lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}"
            )
        if self.warmup < 0 or self.decay_steps < 1:
            raise GptlabError(
                f"optim.warmup_steps must be >= 0 and the decay length >= 1, got {self.warmup}, {self.decay_steps}"
            )
        if self.kind == "step" and (self.step_every < 1 or not 0 < self.gamma <= 1):
            raise GptlabError(
                f"step schedule: need optim.step_every >= 1 and 0 < optim.step_gamma <= 1, "
                f"got {self.step_every}, {self.gamma}"
            )

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.kind == "constant":
            return self.lr
        if self.kind == "step":
            return self.lr * self.gamma ** ((step - self.warmup) // self.step_every)
        span = max(1, self.decay_steps - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)  # 0 -> 1 over the decay, then held
        if self.kind == "linear":
            return self.lr - (self.lr - self.min_lr) * progress
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))
