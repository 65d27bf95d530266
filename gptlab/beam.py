"""Beam search over the KV-cache engine (gptlab.generate): the K most likely continuations of
each prompt are kept at every step, and the best finished one is returned.

The algorithm is Hugging Face's (``generate(num_beams=K)``), batched over prompts and beams:

- Each prompt has K beams, all in one batch of B * K rows that share the KV cache layout of
  `gptlab.generate` (left-padded prompts; the cache rows are reordered after each step so every
  surviving beam continues from the cache of the beam it extends). A beam's score is the sum of
  its tokens' log-probabilities. At the first step only one beam per prompt is live (the others
  start at -inf), so the K beams are K different tokens rather than K copies of the best one.
- Each step ranks the K * V extensions of a prompt's beams and walks the best 2K of them: an
  extension that ends the text (``eos_id``) becomes a finished hypothesis if it ranks among the
  top K (HF's rule: with K = 1 the search is then greedy decoding), the others become the next
  beams until there are K.
- Length penalty (HF's convention): a finished hypothesis is ranked by
  ``sum of log-probs / length ** length_penalty``; 1.0 (the default) is the mean log-probability
  per token, 0 ranks by total log-probability (which favours short outputs), values above 1
  favour longer outputs still. Here ``length`` counts the generated tokens including the end
  token, so ending at once has length 1 (HF counts the tokens before it). Only the K best
  finished hypotheses of a prompt are kept.
- A prompt is done when it holds K finished hypotheses and, with ``early_stopping``, at once
  (HF's ``early_stopping=True``); without it (the default), once no live beam can still score
  above the worst of them: the bound uses the beam's log-probability so far (which can only
  drop) at the most favourable length, so the search stops only when more steps cannot change
  its answer. At ``max_new_tokens`` the live beams count as finished (without an end token).
- Context limit: as in `gptlab.generate`, once prompt + generated tokens fill the context the
  next token is predicted from the last ``block_size`` tokens (the cache is re-filled).

Tested against an exhaustive search over every sequence of a tiny vocabulary (a beam as wide as
all sequences finds the highest-scoring one) and against greedy decoding (one beam).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gptlab.errors import GptlabError
from gptlab.generate import prefill
from gptlab.model.gpt import GPT
from gptlab.model.modes import eval_mode, model_device


@dataclass(frozen=True)
class Hypothesis:
    """A finished continuation: its tokens (ending with the end token when it ended), the sum of
    their log-probabilities, and the length-penalised score beams are ranked by."""

    tokens: list[int]
    logprob: float
    score: float


def hypothesis_score(logprob: float, length: int, length_penalty: float) -> float:
    """HF's ranking of a finished hypothesis: log-probability / length ** length_penalty."""
    return logprob / (length**length_penalty)


class _Finished:
    """The best ``k`` finished hypotheses of one prompt, and whether its search is over."""

    def __init__(self, k: int, length_penalty: float, early_stopping: bool, max_new_tokens: int) -> None:
        self.k = k
        self.length_penalty = length_penalty
        self.early_stopping = early_stopping
        self.max_new_tokens = max_new_tokens
        self.hypotheses: list[Hypothesis] = []
        self.done = False

    def add(self, tokens: list[int], logprob: float) -> None:
        score = hypothesis_score(logprob, len(tokens), self.length_penalty)
        if len(self.hypotheses) < self.k or score > self.hypotheses[-1].score:
            self.hypotheses.append(Hypothesis(tokens, logprob, score))
            self.hypotheses.sort(key=lambda h: -h.score)
            del self.hypotheses[self.k :]

    def update_done(self, best_live_logprob: float, length: int) -> None:
        """After a step that left beams of ``length`` tokens, the best with ``best_live_logprob``."""
        if len(self.hypotheses) < self.k:
            return
        if self.early_stopping or best_live_logprob == -math.inf:
            self.done = True
            return
        # the best score any live beam can still reach: its log-prob only drops, so the bound is
        # the current one at the length that divides it most favourably
        lp = self.length_penalty
        best_length = self.max_new_tokens if lp > 0 else min(length + 1, self.max_new_tokens)
        self.done = hypothesis_score(best_live_logprob, best_length, lp) <= self.hypotheses[-1].score

    def best(self) -> Hypothesis:
        """The highest-scoring hypothesis; an empty one when every extension was impossible."""
        return self.hypotheses[0] if self.hypotheses else Hypothesis([], -math.inf, -math.inf)


def _check(
    num_beams: int, max_new_tokens: int, length_penalty: float, prompts: Sequence[Sequence[int]]
) -> None:
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
        raise GptlabError(f"num_beams must be a positive integer, got {num_beams!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise GptlabError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not math.isfinite(length_penalty):
        raise GptlabError(f"length_penalty must be a finite number, got {length_penalty!r}")
    if not prompts:
        raise GptlabError("no prompts to generate from")
    if any(len(p) == 0 for p in prompts):
        raise GptlabError("cannot generate from an empty prompt: give at least one token")


@torch.no_grad()
def beam_search(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    num_beams: int = 4,
    eos_id: int | None = None,
    length_penalty: float = 1.0,
    early_stopping: bool = False,
) -> list[Hypothesis]:
    """The best continuation of each prompt by beam search (see the module docstring); one
    `Hypothesis` per prompt, its tokens without the prompt."""
    _check(num_beams, max_new_tokens, length_penalty, prompts)
    B, K = len(prompts), num_beams
    prompts = [list(p) for p in prompts]
    finished = [_Finished(K, length_penalty, early_stopping, max_new_tokens) for _ in prompts]
    if max_new_tokens == 0:
        return [Hypothesis([], 0.0, 0.0) for _ in prompts]
    device = model_device(model)
    scores = torch.full((B, K), -math.inf, device=device)  # (B, K) log-prob of each beam
    scores[:, 0] = 0.0  # one live beam per prompt to start from
    generated = torch.empty(B * K, 0, dtype=torch.long, device=device)  # (B*K, t)
    with eval_mode(model):
        logits, cache = prefill(model, [p for p in prompts for _ in range(K)])  # (B*K, V)
        for step in range(max_new_tokens):
            logprobs = torch.log_softmax(logits.float(), dim=-1)  # (B*K, V)
            V = logprobs.size(-1)
            candidates = (scores.view(-1, 1) + logprobs).view(B, K * V)
            top, where = candidates.topk(min(2 * K, K * V), dim=1)  # (B, 2K)
            new_scores = torch.full((B, K), -math.inf)
            sources = torch.arange(B * K).view(B, K)  # the row each next beam extends
            tokens = torch.zeros(B, K, dtype=torch.long)
            rows = generated.tolist()
            for b, (row_scores, row_where) in enumerate(zip(top.tolist(), where.tolist())):
                if finished[b].done:
                    continue
                filled = 0
                for rank, (score, flat) in enumerate(zip(row_scores, row_where)):
                    if score == -math.inf:
                        break
                    beam, token = divmod(flat, V)
                    if token == eos_id:
                        if rank < K:
                            finished[b].add(rows[b * K + beam] + [token], score)
                        continue
                    new_scores[b, filled] = score
                    sources[b, filled] = b * K + beam
                    tokens[b, filled] = token
                    filled += 1
                    if filled == K:
                        break
                finished[b].update_done(float(new_scores[b, 0]), step + 1)
            if all(f.done for f in finished):
                break
            sources, tokens = sources.view(-1).to(device), tokens.view(-1, 1).to(device)
            generated = torch.cat((generated.index_select(0, sources), tokens), dim=1)
            scores = new_scores.to(device)
            if step == max_new_tokens - 1:
                break
            if cache.pos == cache.max_len:  # context full: slide it, as gptlab.generate does
                rows = generated.tolist()
                logits, cache = prefill(model, [prompts[i // K] + rows[i] for i in range(B * K)])
            else:
                cache.select(sources)
                logits, _ = model(tokens, kv_cache=cache, last_only=True)
                logits = logits[:, -1, :]
    rows = generated.tolist()
    for b, done in enumerate(finished):
        if not done.done:  # out of steps: the live beams end here
            for k in range(K):
                if scores[b, k] > -math.inf:
                    done.add(rows[b * K + k], float(scores[b, k]))
    return [f.best() for f in finished]
