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

from gptlab.errors import GptlabError
from gptlab.eval.scoring import continuation_logprobs, text_window


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


def perplexity(
    model: torch.nn.Module,
    token_ids,
    block_size: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    num_bytes: int | None = None,
) -> PerplexityResult:
    """Score ``token_ids`` (a 1-D tensor or list) with ``model``: ``logits, _ = model(idx)``, on
    the model's device.

    ``block_size``: the window (default: the model's ``config.block_size``). ``stride``: how far
    windows move (default: half the window, so every token sees at least half a window of context).
    ``batch_size``: windows per forward pass at most (the logits budget of
    `gptlab.eval.scoring` may make it fewer). ``num_bytes``: UTF-8 bytes of the text the scored
    tokens spell, for ``bits_per_byte``.
    """
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten().tolist()
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

    # each window: its inputs before first_scored are context, the targets after them are scored
    contexts, scored = [], []
    for begin, end, first_scored in strided_windows(len(ids), block_size, stride):
        keep = max(first_scored, begin)
        contexts.append(ids[begin : keep + 1])
        scored.append(ids[keep + 1 : end + 1])
    logprobs = continuation_logprobs(model, contexts, scored, max_batch_size=batch_size)
    total_nll = -float(torch.cat(logprobs).double().sum())
    tokens = sum(len(s) for s in scored)
    mean_nll = total_nll / tokens
    bits_per_byte = total_nll / math.log(2) / num_bytes if num_bytes else None
    return PerplexityResult(tokens, mean_nll, math.exp(mean_nll), bits_per_byte, block_size, stride)


def evaluate_text(
    model: torch.nn.Module,
    tokenizer,
    text: str,
    block_size: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
) -> PerplexityResult:
    """Perplexity and bits per byte of ``model`` on ``text``.

    With an ``<|endoftext|>`` token the text is scored after it (as lm-evaluation-harness does), so
    every token and every byte of the text counts. Without one the first token only serves as
    context, and its bytes are left out of the byte count (`gptlab.eval.scoring.text_window`).
    """
    context, scored = text_window(tokenizer, text)
    num_bytes = len(text.encode("utf-8"))
    if tokenizer.eot_id is None:
        num_bytes -= len(tokenizer.token_bytes(context[0]))
    return perplexity(model, context + scored, block_size, stride, batch_size, num_bytes=num_bytes)
