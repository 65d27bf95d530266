"""Teacher-forced scoring: the log-probabilities a language model gives continuations of contexts.

Every score of given text goes through `continuation_logprobs`: perplexity's strided windows, the
few-shot prompting baselines, and the audits (canary exposure, membership losses, bias probes, the
language model under typos). A pair ``(context, continuation)`` of token ids is scored in one
forward pass over ``context + continuation[:-1]``; the logits at the last ``len(continuation)``
positions give each continuation token's log-probability, so a continuation token is conditioned
on the context and on the continuation tokens before it.

- Windowing (`fit_to_context`): a pair longer than the model's context (``block_size + 1``
  tokens, since the last token is only predicted) keeps the whole continuation and as much of the
  context's end as fits. A continuation longer than ``block_size`` cannot be scored in one window
  and is an error.
- Batching: rows of a batch are right-padded; attention is causal, so padding after a row's tokens
  cannot change its scores, and any batch size or order gives the same numbers (to float
  rounding). Rows are batched longest first.
- Memory: a forward returns (B, T, V) logits and their float32 log-softmax needs as much again;
  the batch size is chosen so that B * T * V float32 logits stay under ``max_logits_bytes``
  (one row always runs, however long).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from gptlab.errors import GptlabError
from gptlab.model.gpt import GPT
from gptlab.model.kv_cache import KVCache
from gptlab.model.modes import eval_mode, model_device
from gptlab.tokenizers.base import Tokenizer

# choice positions per forward in score_choices, the choices sorted by length: less padding than
# one forward padded to the longest choice, yet matmuls large enough to keep every thread busy
CHOICE_TOKENS = 2048
DEFAULT_MAX_LOGITS_BYTES = 1 << 27  # 128 MiB of float32 logits per forward pass
LOGIT_BYTES = 4  # the log-softmax is taken in float32, whatever dtype the model computes in


def fit_to_context(
    context: Sequence[int], continuation: Sequence[int], block_size: int | None
) -> tuple[list[int], list[int]]:
    """``(context, continuation)`` cut to one window of the model: at most ``block_size + 1``
    tokens in all, the context losing its first tokens (the continuation and the context nearest
    to it are kept). ``block_size=None``: no cut (a model without a context limit)."""
    context, continuation = _token_ids(context), _token_ids(continuation)
    if not continuation:
        raise GptlabError("the continuation has no tokens: there is nothing to score")
    if block_size is not None:
        room = block_size + 1 - len(continuation)  # tokens of context the window leaves
        if room < 1:
            raise GptlabError(
                f"a continuation of {len(continuation)} tokens does not fit the model's context "
                f"({block_size} tokens) after at least one token of context"
            )
        context = context[-room:]
    if not context:
        raise GptlabError("the context has no tokens: the first continuation token needs one to follow")
    return context, continuation


def text_window(
    tokenizer: Tokenizer, text: str, block_size: int | None = None
) -> tuple[list[int], list[int]]:
    """A whole text as a ``(context, continuation)`` pair: scored after ``<|endoftext|>`` when the
    tokenizer has one (every token counts, as in training), else from its second token (the first
    is only context). With ``block_size``, only the text's first window (``block_size + 1`` tokens
    with the context) is kept: `gptlab.eval.perplexity` scores a longer text whole."""
    ids = tokenizer.encode(text, allowed_special=set())
    if tokenizer.eot_id is not None:
        ids = [tokenizer.eot_id, *ids]
    if block_size is not None:
        ids = ids[: block_size + 1]
    if len(ids) < 2:
        raise GptlabError(
            f"the text {text[:40]!r} is too short to score: it encodes to {len(ids)} token(s), need at least 2"
        )
    return ids[:1], ids[1:]


class PairScore(NamedTuple):
    """One scored pair: ``logprobs`` (the continuation tokens' log-probabilities, a 1-D float32 CPU
    tensor) and ``is_greedy`` (every continuation token is the argmax of the logits before it)."""

    logprobs: torch.Tensor
    is_greedy: bool


def continuation_logprobs(
    model: torch.nn.Module,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    *,
    max_batch_size: int | None = None,
    max_logits_bytes: int = DEFAULT_MAX_LOGITS_BYTES,
) -> list[torch.Tensor]:
    """``log p(continuation[j] | context, continuation[:j])`` for every pair: one 1-D float32 CPU
    tensor of ``len(continuation)`` log-probabilities (nats) per pair, in the order given.

    ``model(idx)`` must return ``(logits, ...)`` with logits (B, T, V); its ``config.block_size``
    (when it has one) windows each pair (`fit_to_context`). It runs in eval mode (its mode is
    restored after) on its own device. ``max_batch_size`` caps the rows per forward pass; the
    logits budget ``max_logits_bytes`` may make batches smaller.
    """
    scores = score_pairs(
        model, contexts, continuations, max_batch_size=max_batch_size, max_logits_bytes=max_logits_bytes
    )
    return [score.logprobs for score in scores]


@torch.no_grad()
def score_pairs(
    model: torch.nn.Module,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    *,
    max_batch_size: int | None = None,
    max_logits_bytes: int = DEFAULT_MAX_LOGITS_BYTES,
) -> list[PairScore]:
    """`continuation_logprobs` with each pair's ``is_greedy`` (what lm-evaluation-harness reports
    with every log-likelihood): one `PairScore` per pair, in the order given."""
    if len(contexts) != len(continuations):
        raise GptlabError(f"got {len(contexts)} contexts but {len(continuations)} continuations")
    if max_batch_size is not None and max_batch_size < 1:
        raise GptlabError(f"max_batch_size must be at least 1, got {max_batch_size}")
    if max_logits_bytes < 1:
        raise GptlabError(f"max_logits_bytes must be positive, got {max_logits_bytes}")
    config = getattr(model, "config", None)
    block_size = getattr(config, "block_size", None)
    vocab = getattr(config, "vocab_size", None)  # unknown: learnt from the first forward's logits
    rows: list[list[int]] = []  # context + continuation, each within one window
    lengths: list[int] = []  # continuation tokens of each row
    for i, (context, continuation) in enumerate(zip(contexts, continuations)):
        try:
            context, continuation = fit_to_context(context, continuation, block_size)
        except GptlabError as e:
            raise GptlabError(f"pair {i}: {e}") from None
        rows.append(context + continuation)
        lengths.append(len(continuation))
    _check_token_ids(rows, vocab)

    out: list[PairScore] = [PairScore(torch.empty(0), False)] * len(rows)
    order = sorted(range(len(rows)), key=lambda k: -len(rows[k]))  # longest first: its T bounds the batch
    device = model_device(model)
    with eval_mode(model):
        i = 0
        while i < len(order):
            T = len(rows[order[i]]) - 1  # inputs: every token but the last
            fits = max(1, max_logits_bytes // (T * vocab * LOGIT_BYTES)) if vocab else 1
            chunk = order[i : i + min(fits, max_batch_size or fits)]
            idx = torch.zeros(len(chunk), T, dtype=torch.long)  # (B, T), right-padded with 0
            batch_rows, positions, targets = [], [], []  # one entry per scored token
            for b, k in enumerate(chunk):
                row, n = rows[k], lengths[k]
                idx[b, : len(row) - 1] = torch.tensor(row[:-1])
                # the last n inputs predict the n continuation tokens
                batch_rows += [b] * n
                positions += range(len(row) - 1 - n, len(row) - 1)
                targets += row[-n:]
            logits = model(idx.to(device))[0]  # (B, T, V)
            vocab = vocab or logits.shape[-1]
            at = {"dtype": torch.long, "device": logits.device}
            picked = logits[torch.tensor(batch_rows, **at), torch.tensor(positions, **at)]  # (N, V)
            scores = _pick(picked, torch.tensor(targets, **at), [lengths[k] for k in chunk])
            for k, score in zip(chunk, scores):
                out[k] = score
            i += len(chunk)
    return out


def _pick(logits: torch.Tensor, targets: torch.Tensor, lengths: list[int]) -> list[PairScore]:
    """logits (N, V) of the N scored positions, their targets (N,), split into pairs of ``lengths``
    tokens: each pair's log-probabilities (float32 log-softmax) and whether each target was the argmax."""
    logp = logits.float().log_softmax(-1).gather(-1, targets[:, None])[:, 0]  # (N,)
    hits = logits.argmax(-1) == targets  # (N,)
    logps, greedy = logp.cpu().split(lengths), hits.cpu().split(lengths)
    return [PairScore(lp, bool(g.all())) for lp, g in zip(logps, greedy)]


@torch.no_grad()
def score_choices(
    model: torch.nn.Module,
    groups: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]],
    *,
    max_batch_size: int | None = None,
    max_logits_bytes: int = DEFAULT_MAX_LOGITS_BYTES,
) -> list[list[PairScore]]:
    """Several continuations of one context each (the choices of a multiple-choice item), as
    ``[(context, [choice, ...]), ...]``: the `score_pairs` of every (context, choice) pair, grouped
    as given, computed with the context run once per group.

    A GPT runs the contexts of a batch of groups once (left-padded into a KV cache), copies each
    group's cached keys/values to a row per choice, and runs the choices, sorted by length, in
    forwards of about ``CHOICE_TOKENS`` positions (none when every choice is one token: the context's last
    logits score them all). A group whose
    choices do not all fit the model's context beside the whole context (they would be cut
    differently) and any other model go pair by pair through `score_pairs`. Even one continuation
    is faster this way: the language-model head, the largest matrix, runs on the continuation's
    positions only, not on every position of the context. ``max_batch_size``
    caps the choice rows per forward (a group is never split); ``max_logits_bytes`` as there."""
    groups = [(_token_ids(ctx), [_token_ids(c) for c in conts]) for ctx, conts in groups]
    config = getattr(model, "config", None)
    block_size = getattr(config, "block_size", None)
    out: list[list[PairScore]] = [[] for _ in groups]
    shared, alone = [], []
    for g, (ctx, conts) in enumerate(groups):
        if not conts:
            raise GptlabError(f"group {g} has no continuations to score")
        fits = block_size is not None and all(c and len(ctx) + len(c) <= block_size + 1 for c in conts)
        (shared if isinstance(model, GPT) and ctx and fits else alone).append(g)
    pairs = [(g, c) for g in alone for c in groups[g][1]]
    scores = score_pairs(
        model, [groups[g][0] for g, _ in pairs], [c for _, c in pairs],
        max_batch_size=max_batch_size, max_logits_bytes=max_logits_bytes,
    )  # fmt: skip
    for (g, _), score in zip(pairs, scores):
        out[g].append(score)
    _check_token_ids(
        [ctx + c for g in shared for ctx, conts in [groups[g]] for c in conts],
        config.vocab_size if shared else None,
    )
    order = sorted(shared, key=lambda g: -len(groups[g][0]))  # longest contexts first: less padding
    with eval_mode(model):
        i = 0
        while i < len(order):
            chunk, rows, width = [], 0, 1
            while i < len(order):
                ctx, conts = groups[order[i]]
                n, w = rows + len(conts), max(width, max(len(c) for c in conts))
                too_big = n * w * config.vocab_size * LOGIT_BYTES > max_logits_bytes
                # every row is right-padded to the chunk's longest choice: the padding of the longest
                # context (the chunk's first) must still have a position inside the model's context
                too_long = len(groups[chunk[0]][0] if chunk else ctx) + w - 1 > block_size
                if chunk and (too_big or too_long or (max_batch_size is not None and n > max_batch_size)):
                    break
                chunk.append(order[i])
                rows, width, i = n, w, i + 1
            for g, scored in zip(chunk, _score_shared(model, [groups[g] for g in chunk])):
                out[g] = scored
    return out


def _score_shared(model: GPT, groups: list[tuple[list[int], list[list[int]]]]) -> list[list[PairScore]]:
    """One batch of `score_choices`: the contexts through a KV cache, then every choice after its
    context's cached keys/values (see there)."""
    device = model_device(model)
    contexts = [ctx for ctx, _ in groups]
    choices = [c for _, conts in groups for c in conts]
    L = max(len(ctx) for ctx in contexts)
    # one choice per context goes on in the context's own cache: room for its tokens too
    Tc = max(len(c) for c in choices) - 1 if len(choices) == len(groups) else 0
    pad = torch.tensor([L - len(ctx) for ctx in contexts], dtype=torch.long)
    idx = torch.tensor([[0] * (L - len(ctx)) + ctx for ctx in contexts], dtype=torch.long, device=device)
    cache = KVCache.for_model(model, len(groups), pad.to(device), max_len=L + Tc)
    last = model(idx, kv_cache=cache, last_only=True)[0][:, -1]  # (B, V): predicts each first choice token
    owner = torch.repeat_interleave(torch.arange(len(groups)), torch.tensor([len(cs) for _, cs in groups]))
    at = {"dtype": torch.long, "device": last.device}
    starts = [0]  # where each choice's tokens begin in the flat (N,) layout, choice by choice
    for c in choices[:-1]:
        starts.append(starts[-1] + len(c))
    logp = torch.empty(starts[-1] + len(choices[-1]), device=last.device)  # (N,) per choice token
    hits = torch.empty(len(logp), dtype=torch.bool, device=last.device)
    # first tokens: the context's last logits, normalised once per context, not once per choice
    firsts = torch.tensor([c[0] for c in choices], **at)
    at_first, of = torch.tensor(starts, **at), owner.to(last.device)
    logp[at_first] = last.float().log_softmax(-1)[of, firsts]
    hits[at_first] = last.argmax(-1)[of] == firsts
    # the other tokens: the LM head (the largest matmul at GPT-2's vocabulary) runs on the choices'
    # real positions only, and only (tokens, V) logits of one batch exist at a time
    for rows_in, rows in _choice_batches(cache, choices, owner, pad, L):
        t = max(len(choices[r]) for r in rows_in) - 1  # inputs: every token of a choice but its last
        cidx = torch.zeros(len(rows_in), t, dtype=torch.long)  # right-padded: causal, so harmless
        b_of, t_of, dest, targets = [], [], [], []
        for b, r in enumerate(rows_in):
            c = choices[r]
            cidx[b, : len(c) - 1] = torch.tensor(c[:-1])
            b_of += [b] * (len(c) - 1)
            t_of += range(len(c) - 1)
            dest += range(starts[r] + 1, starts[r] + len(c))
            targets += c[1:]
        x = model.hidden_states(cidx.to(device), kv_cache=rows)[-1]  # (rows, t, C)
        logits = model.unembed(x[torch.tensor(b_of, **at), torch.tensor(t_of, **at)])  # (n, V)
        target = torch.tensor(targets, **at)
        logp[torch.tensor(dest, **at)] = logits.float().log_softmax(-1).gather(-1, target[:, None])[:, 0]
        hits[torch.tensor(dest, **at)] = logits.argmax(-1) == target
    lengths = [len(c) for c in choices]
    scores = [
        PairScore(lp, bool(g.all())) for lp, g in zip(logp.cpu().split(lengths), hits.cpu().split(lengths))
    ]
    out, k = [], 0
    for _, conts in groups:
        out.append(scores[k : k + len(conts)])
        k += len(conts)
    return out


def _choice_batches(cache: KVCache, choices: list[list[int]], owner: torch.Tensor, pad: torch.Tensor, L: int):
    """The choices of more than one token in forward batches, each ``(rows, kv cache)``: the rows
    sorted longest first, about ``CHOICE_TOKENS`` input positions at a time, each batch's cache holding its rows'
    context keys/values: padding every choice to the longest of all would waste most of that
    forward (choices differ 2-3x in length). One choice per context runs in one batch in the
    context's cache as it is (no copy)."""
    longer = sorted((r for r, c in enumerate(choices) if len(c) > 1), key=lambda r: -len(choices[r]))
    if not longer:
        return
    if len(choices) == cache.k.shape[1]:  # row r of the cache is choice r's context
        yield list(range(len(choices))), cache
        return
    n_layer, _, n_head, _, head_size = cache.k.shape
    i = 0
    while i < len(longer):
        rows_in = longer[i : i + max(1, CHOICE_TOKENS // (len(choices[longer[i]]) - 1))]
        i += len(rows_in)
        sel = owner[rows_in]
        rows = KVCache(
            n_layer, len(rows_in), n_head, head_size, L + len(choices[rows_in[0]]) - 1,
            pad[sel], cache.k.device, cache.k.dtype, cache.window,
        )  # fmt: skip
        kept = cache.filled  # L, or a local model's window
        rows.k[:, :, :, :kept] = cache.k[:, sel.to(cache.k.device), :, :kept]
        rows.v[:, :, :, :kept] = cache.v[:, sel.to(cache.k.device), :, :kept]
        rows.pos = L
        yield rows_in, rows


def continuation_scores(
    model: torch.nn.Module,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    *,
    normalize: bool = False,
    max_batch_size: int | None = None,
    max_logits_bytes: int = DEFAULT_MAX_LOGITS_BYTES,
) -> np.ndarray:
    """``log p(continuation | context)`` per pair (N,) in nats: the sum of `continuation_logprobs`
    (their mean with ``normalize``, so that a continuation of more tokens is not penalised)."""
    logprobs = continuation_logprobs(
        model, contexts, continuations, max_batch_size=max_batch_size, max_logits_bytes=max_logits_bytes
    )
    reduce = torch.mean if normalize else torch.sum
    return np.array([float(reduce(lp)) for lp in logprobs], dtype=np.float64)


def _token_ids(ids: Sequence[int]) -> list[int]:
    """A list of Python ints; a float or other non-integer id is an error, not silently cut."""
    try:
        return [operator.index(t) for t in ids]
    except TypeError:
        raise GptlabError(f"token ids must be a sequence of integers, got {str(ids)[:60]}") from None


def _check_token_ids(rows: Sequence[Sequence[int]], vocab: int | None) -> None:
    """Ids outside [0, vocab) would index past the embedding (an IndexError on CPU, a device-side
    assert on CUDA): refuse them with a message instead."""
    ids = [t for row in rows for t in row]
    if ids and min(ids) < 0:
        raise GptlabError(f"token id {min(ids)} is negative")
    if ids and vocab is not None and max(ids) >= vocab:
        raise GptlabError(f"token id {max(ids)} is outside the model's vocabulary of {vocab} tokens")
