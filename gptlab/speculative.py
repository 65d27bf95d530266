"""Speculative decoding: a small draft model proposes k tokens, the target checks them in one forward.

Leviathan et al. 2023 / Chen et al. 2023. Each round the draft samples d_1..d_k from its own
distributions q_1..q_k (with its own KV cache); the target runs once over the last accepted token
and d_1..d_k, which gives its distributions p_1..p_{k+1} at every one of those positions. Then,
in order, d_i is accepted with probability min(1, p_i(d_i) / q_i(d_i)); the first rejected one is
replaced by a draw from normalize(max(0, p_i - q_i)) and the round ends; if all k are accepted a
bonus token is drawn from p_{k+1}. Every round therefore emits 1..k+1 tokens for one target
forward, and each emitted token is distributed exactly as a draw from the target alone would be
(the draft changes the speed, never the distribution). Greedy decoding is the special case of
one-hot p and q: a draft token is kept iff it is the target's argmax, so the output is the
target's own greedy output.

Both p and q are the `Sampler`'s distributions (temperature, top-k, top-p applied to each model's
logits alike); a repetition penalty would make p depend on the draft's guesses and is refused.
Rejected guesses are rolled back by moving each cache's write position back (`KVCache.rollback`),
which a sliding-window (local attention) cache or a recurrent state cannot do: those are refused.

One prompt at a time (batch 1). Context limit: a round proposes no more tokens than either model
has room for; once the text outgrows the target's context, decoding continues without the draft,
sliding the target's context like `gptlab.generate` does (the same tokens at the same cost).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from gptlab.errors import GptlabError
from gptlab.generate import Sampler
from gptlab.model.gpt import GPT
from gptlab.model.kv_cache import KVCache
from gptlab.model.modes import eval_mode, model_device

DEFAULT_DRAFT_K = 4
DEFAULT_SAMPLER = Sampler()  # temperature 1, no filtering: plain sampling


@dataclass
class SpeculativeStats:
    """What a speculative decoding did: filled in as it runs."""

    proposed: int = 0  # draft tokens offered to the target
    accepted: int = 0  # of those, kept
    target_forwards: int = 0  # target forward passes after the prompt's prefill
    emitted: int = 0  # tokens produced (accepted guesses, corrections and bonus tokens)

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.proposed if self.proposed else None

    @property
    def tokens_per_target_forward(self) -> float | None:
        """Tokens per target forward: 1 without a draft, up to k + 1 (the speed-up if drafting were free)."""
        return self.emitted / self.target_forwards if self.target_forwards else None

    def to_dict(self) -> dict:
        return {
            "proposed": self.proposed,
            "accepted": self.accepted,
            "acceptance_rate": self.acceptance_rate,
            "target_forwards": self.target_forwards,
            "tokens_per_target_forward": self.tokens_per_target_forward,
        }


def check_draft(target: GPT, draft: GPT, target_tokenizer=None, draft_tokenizer=None) -> None:
    """GptlabError unless ``draft`` can propose tokens for ``target``: the same tokenizer, and
    caches that can be rolled back (full attention, not recurrent)."""
    if (
        target_tokenizer is not None
        and draft_tokenizer is not None
        and target_tokenizer.to_dict() != draft_tokenizer.to_dict()
    ):
        raise GptlabError(
            "the draft model's tokenizer is not the target's: speculative decoding needs the same "
            "tokenizer (the draft's token ids must mean the target's tokens)"
        )
    for role, model in (("target", target), ("draft", draft)):
        cfg = model.config
        if cfg.arch != "gpt" or cfg.attention == "local":
            kind = cfg.arch if cfg.arch != "gpt" else "local-attention"
            raise GptlabError(
                f"the {role} model is a {kind} model: speculative decoding rolls its cache back after a "
                "rejected guess, which only a full-attention GPT's KV cache can do"
            )


class _Cached:
    """A model, its KV cache and how many of the text's tokens the cache holds."""

    def __init__(self, model: GPT) -> None:
        self.model = model
        self.cache = KVCache.for_model(model, 1)
        self.block_size = model.config.block_size
        self.device = model_device(model)

    def room(self) -> int:
        return self.block_size - self.cache.pos

    def logits(self, ids: Sequence[int], last_only: bool) -> torch.Tensor:
        """Feed ids (appended to the cache) -> logits (T, V), or (V,) with ``last_only``."""
        idx = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        out, _ = self.model(idx, kv_cache=self.cache, last_only=last_only)
        return out[0, -1] if last_only else out[0]


def _pad_to(probs: torch.Tensor, vocab: int) -> torch.Tensor:
    """Widen (…, V) probabilities to ``vocab`` with zeros (ids a model does not have get no mass)."""
    extra = vocab - probs.size(-1)
    return torch.nn.functional.pad(probs, (0, extra)) if extra > 0 else probs


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    if generator is not None:
        probs = probs.to(generator.device)
    return int(torch.multinomial(probs, 1, generator=generator))


def _pick(probs: torch.Tensor, sampler: Sampler, generator: torch.Generator | None) -> int:
    """The next token from a (V,) distribution: its argmax when greedy (no random draw), else a draw."""
    return int(probs.argmax()) if sampler.greedy else _draw(probs, generator)


def _uniform(generator: torch.Generator | None) -> float:
    device = generator.device if generator is not None else "cpu"
    return float(torch.rand((), generator=generator, device=device))


def accept_or_correct(
    p: torch.Tensor, q: torch.Tensor, guesses: Sequence[int], generator: torch.Generator | None
) -> list[int]:
    """The acceptance rule: p (k+1, V) target and q (k, V) draft distributions, the draft's k
    guesses -> the tokens to emit: the accepted prefix, then a correction from
    normalize(max(0, p_i - q_i)) at the first rejection, or a bonus draw from p_{k+1}."""
    out: list[int] = []
    for i, x in enumerate(guesses):
        px, qx = float(p[i, x]), float(q[i, x])
        if px >= qx or _uniform(generator) < px / qx:  # qx > 0: x was drawn from q_i
            out.append(x)
            continue
        residual = (p[i] - q[i]).clamp(min=0)
        # p_i < q_i at x, so p_i > q_i somewhere and the residual has mass; rounding could still
        # leave none, and then p_i itself is the best stand-in
        out.append(_draw(residual if float(residual.sum()) > 0 else p[i], generator))
        return out
    out.append(_draw(p[len(guesses)], generator))
    return out


@torch.no_grad()
def speculative_tokens(
    target: GPT,
    draft: GPT,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    sampler: Sampler = DEFAULT_SAMPLER,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    k: int = DEFAULT_DRAFT_K,
    stats: SpeculativeStats | None = None,
) -> Iterator[int]:
    """Yield the new token ids of one prompt (the eos token itself is not yielded), drafting ``k``
    tokens a round; the same distribution as `gptlab.generate.stream_tokens` on ``target`` alone
    (for greedy decoding the same tokens). ``stats`` (optional) is filled in as it goes."""
    if k < 1:
        raise GptlabError(f"the draft must propose k >= 1 tokens a round, got {k}")
    if not prompt_ids:
        raise GptlabError("cannot generate from an empty prompt: give at least one token")
    if sampler.repetition_penalty != 1.0:
        raise GptlabError("speculative decoding does not support a repetition penalty")
    check_draft(target, draft)
    stats = stats if stats is not None else SpeculativeStats()
    vocab = max(target.config.vocab_size, draft.config.vocab_size)
    ids = list(prompt_ids)
    emitted = 0
    with eval_mode(target), eval_mode(draft):
        big, small = _Cached(target), _Cached(draft)
        # both caches hold every token but the last; the last is fed with the next round's guesses
        if 1 < len(ids) <= big.block_size:
            big.logits(ids[:-1], last_only=True)
        if 1 < len(ids) <= small.block_size:
            small.logits(ids[:-1], last_only=True)
        while emitted < max_new_tokens:
            remaining = max_new_tokens - emitted
            if len(ids) > big.block_size:  # past the target's context: slide it, no draft
                out, _ = target(torch.tensor([ids[-big.block_size :]], device=big.device), last_only=True)
                new = [_pick(sampler.probs(out[:, -1])[0], sampler, generator)]
                stats.target_forwards += 1
            else:
                # the target gets the last token and the guesses (positions len-1 .. len-1+n); the
                # draft first catches up on the tokens its cache lacks (1, or 2 after a round whose
                # guesses were all accepted), then feeds its own guesses but the last
                catch_up = ids[small.cache.pos :]
                n = min(k, remaining - 1, big.room() - 1, small.room() - len(catch_up) + 1)
                n = max(n, 0)
                guesses, q = _propose(small, catch_up, n, sampler, generator)
                p_logits = big.logits([ids[-1], *guesses], last_only=False)  # (n + 1, V)
                stats.target_forwards += 1
                p = _pad_to(sampler.probs(p_logits), vocab)
                new = accept_or_correct(p, _pad_to(q, vocab), guesses, generator)
                stats.proposed += n
                stats.accepted += len(new) - 1
                # keep the keys and values of the tokens that stay in the text (all but the newest)
                kept = len(ids) + len(new) - 1
                big.cache.rollback(kept)
                small.cache.rollback(min(small.cache.pos, kept))
            for token in new:
                ids.append(token)
                emitted += 1
                stats.emitted += 1
                if token == eos_id:
                    return
                yield token
                if emitted == max_new_tokens:
                    return


def _propose(
    small: _Cached, catch_up: list[int], n: int, sampler: Sampler, generator: torch.Generator | None
) -> tuple[list[int], torch.Tensor]:
    """The draft's n guesses after feeding ``catch_up``, and the distributions (n, V) they were drawn from."""
    guesses: list[int] = []
    dists: list[torch.Tensor] = []
    feed = catch_up
    for _ in range(n):
        q = sampler.probs(small.logits(feed, last_only=True)[None])[0]  # (V,)
        guesses.append(_pick(q, sampler, generator))
        dists.append(q)
        feed = guesses[-1:]
    if not dists:
        return guesses, torch.empty(0, small.model.config.vocab_size, device=small.device)
    return guesses, torch.stack(dists)
