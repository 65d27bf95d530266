"""Perplexity and bits per byte of a model on a text longer than its context.

The strided sliding window of Hugging Face's "Perplexity of fixed-length models": windows of
``block_size`` tokens start every ``stride`` tokens; each window scores only the tokens no earlier
window scored (the others' targets are set to -100), so every token is scored exactly once, with
at least ``block_size - stride`` tokens of context once past the first window. ``stride ==
block_size`` cuts the text into independent chunks (fast, less context on average); ``stride == 1``
gives every token the full context (slowest, the best estimate).

Bits per byte = total NLL in nats / ln 2 / UTF-8 bytes of the scored text. Unlike perplexity it
does not depend on how the tokenizer cuts the text, so models with different tokenizers (char vs
BPE, different vocab sizes) compare fairly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from gptlab.errors import GptlabError
from gptlab.model.modes import eval_mode

IGNORE_INDEX = -100  # targets with this value are not scored (the model contract's ignore index)
PAD_ID = 0  # input padding of a short last window: causal attention never lets it reach real tokens


@dataclass
class PerplexityResult:
    tokens: int  # tokens scored (every token after the first; all of them with a leading <|endoftext|>)
    mean_nll: float  # nats per scored token
    perplexity: float  # exp(mean_nll)
    bits_per_byte: float | None  # None when the byte count is unknown
    block_size: int  # the window length used
    stride: int  # the distance between window starts used

    def to_dict(self) -> dict:
        return asdict(self)


def strided_windows(n_tokens: int, block_size: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first_scored) per window: inputs are positions [begin, end), predicting the
    tokens at begin+1 .. end; only inputs at positions >= first_scored are scored."""
    windows, scored_until = [], 0  # inputs before scored_until already had their target scored
    last = n_tokens - 1  # the last token is only ever a target
    for begin in range(0, last, stride):
        end = min(begin + block_size, last)
        windows.append((begin, end, scored_until))
        scored_until = end
        if end == last:
            break
    return windows


@torch.no_grad()
def perplexity(
    model: torch.nn.Module,
    token_ids,
    block_size: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    num_bytes: int | None = None,
) -> PerplexityResult:
    """Score ``token_ids`` (a 1-D tensor or list) with ``model``: ``logits, _ = model(idx)``.

    ``block_size``: the window (default: the model's ``config.block_size``). ``stride``: how far
    windows move (default: half the window, so every token sees at least half a window of context).
    ``device``: where the inputs go (default: the model's device). ``num_bytes``: UTF-8 bytes of
    the text the scored tokens spell, for ``bits_per_byte``.
    """
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    if len(ids) < 2:
        raise GptlabError(
            f"perplexity needs at least 2 tokens (one to predict from, one to score), got {len(ids)}"
        )
    context = getattr(getattr(model, "config", None), "block_size", None)
    if block_size is None:
        block_size = context
    if block_size < 1:
        raise GptlabError(f"block_size must be at least 1, got {block_size}")
    if context is not None and block_size > context:
        raise GptlabError(
            f"block_size {block_size} is longer than the context of the model ({context} tokens)"
        )
    if stride is None:
        stride = max(1, block_size // 2)
    if not 1 <= stride <= block_size:
        raise GptlabError(f"stride must be in [1, block_size={block_size}], got {stride}")
    if batch_size < 1:
        raise GptlabError(f"batch_size must be at least 1, got {batch_size}")
    if num_bytes is not None and num_bytes < 1:
        raise GptlabError(f"num_bytes must be positive, got {num_bytes}")
    if device is None:
        device = next(model.parameters()).device

    windows = strided_windows(len(ids), block_size, stride)
    total_nll, scored = 0.0, 0
    with eval_mode(model):
        for i in range(0, len(windows), batch_size):
            batch = windows[i : i + batch_size]
            width = max(end - begin for begin, end, _ in batch)
            x = torch.full((len(batch), width), PAD_ID, dtype=torch.long)  # (B, T)
            y = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
            for row, (begin, end, first_scored) in enumerate(batch):
                x[row, : end - begin] = ids[begin:end]
                keep = max(first_scored, begin)
                y[row, keep - begin : end - begin] = ids[keep + 1 : end + 1]
            logits, _ = model(x.to(device))  # (B, T, V)
            y = y.to(device)
            nll = F.cross_entropy(
                logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
            )
            total_nll += nll.item()
            scored += int((y != IGNORE_INDEX).sum())
    mean_nll = total_nll / scored
    bits_per_byte = total_nll / math.log(2) / num_bytes if num_bytes else None
    return PerplexityResult(scored, mean_nll, math.exp(mean_nll), bits_per_byte, block_size, stride)


def evaluate_text(
    model: torch.nn.Module,
    tokenizer,
    text: str,
    block_size: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
) -> PerplexityResult:
    """Perplexity and bits per byte of ``model`` on ``text``.

    With an ``<|endoftext|>`` token the text is scored after it (as lm-evaluation-harness does), so
    every token and every byte of the text counts. Without one the first token only serves as
    context, and its bytes are left out of the byte count.
    """
    ids = tokenizer.encode(text, allowed_special=set())
    if tokenizer.eot_id is not None:
        ids = [tokenizer.eot_id, *ids]
        num_bytes = len(text.encode("utf-8"))
    else:
        num_bytes = len(text.encode("utf-8")) - (len(tokenizer.token_bytes(ids[0])) if ids else 0)
    if len(ids) < 2:
        raise GptlabError(
            f"the text is too short to score: it encodes to {len(ids)} token(s), need at least 2"
        )
    return perplexity(model, ids, block_size, stride, batch_size, device, num_bytes=num_bytes)
