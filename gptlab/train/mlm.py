"""Masked-language-model pretraining of an encoder (``train.objective = "mlm"``, ``model.arch =
encoder``): BERT's recipe (Devlin et al., 2019) on the trainer's windows.

Each token of a window is chosen with probability ``MASK_RATE`` (15%); a chosen token becomes
[MASK] 80% of the time, a random token 10%, and stays itself 10% (so the model cannot learn that
only [MASK] positions matter); the loss is the cross-entropy at the chosen positions only. The
[MASK] token is a reserved id after the tokenizer's (``mask_id`` = the tokenizer's vocab_size,
model vocab_size = that + 1: `mlm_model_config`), so no tokenizer changes; random replacements
are drawn from the tokenizer's ids only.

Training draws masks from torch's global RNG, which the trainer checkpoints: a resumed run masks
as one that never stopped. Evaluation masks each fixed window with a generator seeded by the
window's content, so every evaluation scores the same masked positions and the losses compare.
"""

from __future__ import annotations

import torch

from gptlab.errors import GptlabError
from gptlab.model.config import GPTConfig
from gptlab.model.gpt import IGNORE_INDEX

MASK_RATE = 0.15
REPLACE_MASK, REPLACE_RANDOM = 0.8, 0.1  # of the chosen tokens; the remaining 10% stay unchanged


def mlm_model_config(config: GPTConfig, tokenizer_vocab: int) -> GPTConfig:
    """``config`` with the [MASK] id reserved after the tokenizer's vocabulary."""
    if config.arch != "encoder":
        raise GptlabError(
            f"train.objective=mlm trains an encoder: set model.arch=encoder (got {config.arch!r})"
        )
    return GPTConfig.from_dict(
        {**config.to_dict(), "vocab_size": tokenizer_vocab + 1, "mask_id": tokenizer_vocab}
    )


def mask_tokens(
    idx: torch.Tensor, mask_id: int, vocab: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10 masking of idx (B, T) -> (inputs, labels): labels hold the original token at
    the chosen positions and -100 elsewhere. Every row gets at least one chosen position."""
    u = torch.rand(idx.shape, generator=generator, device="cpu").to(idx.device)
    chosen = u < MASK_RATE
    chosen[torch.arange(idx.shape[0]), u.argmin(dim=1)] = True  # no row without a loss term
    how = torch.rand(idx.shape, generator=generator, device="cpu").to(idx.device)
    random_ids = torch.randint(0, vocab, idx.shape, generator=generator, device="cpu").to(idx.device)
    inputs = torch.where(chosen & (how < REPLACE_MASK), torch.full_like(idx, mask_id), idx)
    swap = chosen & (how >= REPLACE_MASK) & (how < REPLACE_MASK + REPLACE_RANDOM)
    inputs = torch.where(swap, random_ids, inputs)
    return inputs, torch.where(chosen, idx, torch.full_like(idx, IGNORE_INDEX))


class MLMObjective:
    """The trainer's loss for ``train.objective = mlm`` (gptlab.train.trainer ``objective``)."""

    def __init__(self) -> None:
        self.mask_id = self.vocab = 0
        self.label_smoothing = 0.0

    def setup(self, run) -> None:
        cfg = run.raw_model.config
        if run.dp is not None:
            raise GptlabError("MLM pretraining does not run under DP-SGD: set dp.epsilon to 0")
        self.mask_id, self.vocab = cfg.mask_id, run.train_data.vocab_size
        self.label_smoothing = run.config.optim.label_smoothing

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor, starts) -> torch.Tensor:
        inputs, labels = mask_tokens(x, self.mask_id, self.vocab)
        return model(inputs, labels, label_smoothing=self.label_smoothing, mlm=True)[1]

    def eval_loss(self, model, x: torch.Tensor) -> torch.Tensor:
        """The loss of a fixed window under masks fixed by its content (module docstring)."""
        seed = int(x[0].sum()) * 1_000_003 + int(x[:, 0].sum())
        inputs, labels = mask_tokens(x, self.mask_id, self.vocab, torch.Generator().manual_seed(seed))
        return model(inputs, labels, mlm=True)[1]
