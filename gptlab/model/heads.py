"""A classification model on top of a GPT: the GPT reads the text, a small head names the class.

The GPT's language-model head is not used; a new Linear layer maps one vector per text to one
score per class. Which vector:

- ``pooling="last"`` (the default, as in Radford et al. 2018 and GPT2ForSequenceClassification):
  the final-normed hidden state of the *last real token*. Attention is causal, so that is the only
  position that has seen the whole text.
- ``pooling="mean"``: the mean of the final-normed hidden states of all real tokens.

Batches are padded on the right and come with ``lengths`` (B,), the number of real tokens per
row. With causal attention a real token only attends to earlier positions, which are all real
when the padding is on the right: padding cannot change any real token's hidden state, so no
attention mask is needed; pooling just has to skip the padded positions. A recurrent model
(``model.arch`` lstm / gru) reads left to right as well, so the same holds for it; its features
are the last cell's outputs, and ``last:N`` below means its last N cells.

Which parameters train (`set_trainable`): ``"head"`` (a linear probe on frozen features),
``"last:N"`` (the last N blocks, the final norm and the head) or ``"all"``. Fewer trainable
parameters train faster and forget less of the pretraining; more adapt better. LoRA parameters
(gptlab.model.lora) stay trainable whatever the choice.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.errors import GptlabError
from gptlab.model.gpt import GPT, INIT_STD
from gptlab.model.rnn import RecurrentLM

POOLINGS = ("last", "mean")


class GPTClassifier(nn.Module):
    """``gpt`` (a GPT, usually pretrained, or a recurrent `RecurrentLM`) + ``head`` (Linear
    n_embd -> num_classes)."""

    def __init__(
        self,
        gpt: GPT | RecurrentLM,
        num_classes: int,
        pooling: str = "last",
        class_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise GptlabError(f"a classifier needs num_classes >= 2, got {num_classes!r}")
        if pooling not in POOLINGS:
            raise GptlabError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.gpt = gpt
        self.num_classes = num_classes
        self.pooling = pooling
        weight = gpt.transformer.wte.weight
        self.head = nn.Linear(gpt.config.n_embd, num_classes, device=weight.device, dtype=weight.dtype)
        nn.init.normal_(self.head.weight, mean=0.0, std=INIT_STD)
        nn.init.zeros_(self.head.bias)
        if class_weights is not None:
            class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
            if class_weights.shape != (num_classes,):
                raise GptlabError(
                    f"class_weights must have one weight per class ({num_classes}), got shape "
                    f"{tuple(class_weights.shape)}"
                )
        # a buffer so it follows .to(device), but not saved: it is training data, not a weight
        self.register_buffer("class_weights", class_weights, persistent=False)

    @property
    def config(self):
        return self.gpt.config

    def features(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One vector per text: idx (B, T) right-padded, lengths (B,) -> pooled features (B, C)."""
        B, T = idx.shape
        lengths = torch.as_tensor(lengths, device=idx.device)
        if lengths.shape != (B,):
            raise GptlabError(
                f"lengths must have shape ({B},) for a batch of {B} rows, got {tuple(lengths.shape)}"
            )
        if bool((lengths < 1).any()) or bool((lengths > T).any()):
            raise GptlabError(f"lengths must be in 1..{T} (the padded length), got {lengths.tolist()}")
        x = self.gpt.head_input(idx)  # (B, T, C): after the final norm (a GPT) or the last cell (an RNN)
        if self.pooling == "last":
            rows = torch.arange(B, device=idx.device)
            return x[rows, lengths - 1]  # (B, C)
        real = torch.arange(T, device=idx.device)[None, :] < lengths[:, None]  # (B, T)
        real = real.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
        return (x * real).sum(dim=1) / lengths[:, None].to(x.dtype)  # (B, C)

    def forward(
        self,
        idx: torch.Tensor,
        lengths: torch.Tensor,
        labels: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T), lengths (B,) -> class logits (B, K) and, given labels (B,), the
        cross-entropy (weighted by ``class_weights`` if set; targets smoothed by
        ``label_smoothing`` eps over the K classes, F.cross_entropy's definition), else None."""
        logits = self.head(self.features(idx, lengths))  # (B, K)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits, labels, weight=self.class_weights, label_smoothing=label_smoothing)
        return logits, loss

    @torch.no_grad()
    def predict_proba(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, K), in eval mode's numerics (call ``.eval()`` first for dropout)."""
        return self.forward(idx, lengths)[0].softmax(dim=-1)

    def set_trainable(self, spec: str) -> None:
        """Choose what trains: ``"head"``, ``"last:N"`` (last N blocks + final norm + head) or
        ``"all"``. Everything else is frozen; LoRA parameters stay trainable."""
        n_layer = self.gpt.config.n_layer
        for p in self.parameters():
            p.requires_grad_(False)
        if spec == "all":
            for p in self.parameters():
                p.requires_grad_(True)
            if not self.gpt.config.tie_weights:  # the LM head is unused by a classifier
                self.gpt.lm_head.weight.requires_grad_(False)
        elif spec == "head":
            self.head.requires_grad_(True)
        elif spec.startswith("last:"):
            try:
                n = int(spec.removeprefix("last:"))
            except ValueError:
                n = -1
            if not 0 <= n <= n_layer:
                raise GptlabError(
                    f"trainable {spec!r}: N in 'last:N' must be an integer from 0 to n_layer ({n_layer})"
                )
            for p in _last_layers(self.gpt, n):
                p.requires_grad_(True)
            self.head.requires_grad_(True)
        else:
            raise GptlabError(f"trainable must be 'head', 'last:N' or 'all', got {spec!r}")
        for name, p in self.named_parameters():
            if name.endswith((".lora_A", ".lora_B")):
                p.requires_grad_(True)


def _last_layers(model: GPT | RecurrentLM, n: int) -> list[nn.Parameter]:
    """The parameters of the last ``n`` layers: a GPT's last n blocks and its final norm; a
    recurrent model's last n cells (one nn.LSTM / nn.GRU names layer i's tensors ``*_l{i}``)."""
    n_layer = model.config.n_layer
    if isinstance(model, RecurrentLM):
        return [p for name, p in model.rnn.named_parameters() if int(name.rsplit("_l", 1)[1]) >= n_layer - n]
    blocks = model.transformer.h[n_layer - n :]
    return [*blocks.parameters(), *model.transformer.ln_f.parameters()]
