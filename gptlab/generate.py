"""Text generation: samplers, the naive reference decoder, the KV-cache engine and streaming.

The engine is separate from the model: the model maps tokens to logits; this module decides
which token comes next and feeds it back.

- Samplers (`Sampler`), applied in this order to the last position's logits: repetition penalty
  (CTRL: a seen token's logit is divided by the penalty if positive, multiplied if negative), then
  greedy argmax if temperature < 1e-5 (0: greedy), else temperature, top-k, top-p (nucleus: the
  smallest set of most likely tokens whose mass reaches p, at least one token), and a draw from an
  explicit `torch.Generator`. NaN logits are a GptlabError; any other logits, inf included, and any
  valid setting give a finite distribution that sums to 1.
- `generate_naive` re-runs the model on the whole context for every token: slow, obviously right,
  the reference `generate` is tested against. `generate` prefills a KV cache with the prompts and
  then runs the model on one new token per step.
- Context limit: a prompt longer than ``block_size`` is cropped to its last ``block_size`` tokens,
  and once prompt + generated tokens fill the context, the context slides: the next token is
  predicted from the last ``block_size`` tokens (the engine re-fills its cache from them, so it
  gives the same tokens as the naive reference, at the naive cost from then on).
- Batches: `generate` accepts prompts of different lengths (left-padded, masked, each row at its
  own positions), so greedy decoding gives every row what it would get alone. With sampling, all
  rows draw from one generator, so a row's samples depend on the batch it is in.
- Settings: every entry point takes one `Sampler` (default: temperature 1, no filtering;
  `GREEDY` for argmax decoding), the single place sampling settings are validated.
- Public engine: `decode_steps` is the KV-cache loop itself, one (B,) tensor of next tokens per
  step, for callers that drive it step by step (the server, the sampling study); `encode_prompt`
  turns prompt text into the ids every text entry point starts from.
- Text: `TextStream` turns tokens into text: a piece is released as soon as it is complete UTF-8
  (a character split across tokens is held back until its last byte arrives) and cannot be the
  start of a stop string. `stream_text` yields its pieces, `generate_text` joins them, chat and
  the server use it directly. Generation stops at ``max_new_tokens``, at the tokenizer's
  ``<|endoftext|>`` or at a stop string (the returned text ends before it). An empty prompt starts
  from ``<|endoftext|>`` (how GPT-2 samples unconditionally); a tokenizer without one cannot start
  from nothing and raises GptlabError.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from gptlab.errors import GptlabError
from gptlab.model.gpt import GPT
from gptlab.model.kv_cache import KVCache
from gptlab.model.modes import eval_mode, model_device

DEFAULT_MAX_NEW_TOKENS = 200
REPLACEMENT_CHAR = "\ufffd"  # what decoding an incomplete UTF-8 sequence produces
PAD_ID = 0  # fills left padding; padded slots are masked out, so any valid id works
GREEDY_BELOW = 1e-5  # temperatures below this are greedy: logits / 1e-320 would overflow to inf


@dataclass(frozen=True)
class Sampler:
    """Picks the next token from logits; validates its settings on construction.

    Numerically safe for any valid setting and any logits: the draw is from a finite vector that
    sums to 1 (`probs`), top-p keeps at least the most likely token, +inf logits share the mass
    (-inf ones get none), and NaN logits are a GptlabError rather than an error inside torch."""

    temperature: float = 1.0
    top_k: int | None = None  # None or 0: no limit
    top_p: float | None = None  # None or 1: no limit
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        t = self.temperature
        if not _is_number(t) or not math.isfinite(t) or t < 0:
            raise GptlabError(f"temperature must be a finite number >= 0 (0: greedy), got {t!r}")
        k = self.top_k
        if k is not None and not (_is_number(k) and math.isfinite(k) and int(k) == k and k >= 0):
            raise GptlabError(f"top_k must be an integer >= 0 (0 or None: no limit), got {k!r}")
        p = self.top_p
        if p is not None and not (_is_number(p) and 0.0 < p <= 1.0):
            raise GptlabError(f"top_p must be in (0, 1] (1 or None: no limit), got {p!r}")
        r = self.repetition_penalty
        if not (_is_number(r) and 0 < r < math.inf):
            raise GptlabError(f"repetition_penalty must be a number > 0 (1.0 = none), got {r!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    def __call__(
        self, logits: torch.Tensor, seen: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """logits (B, V), seen (B, V) bool (tokens already in each row) -> next token ids (B,)."""
        logits = self._penalized(logits, seen)
        if self.greedy:
            return logits.argmax(dim=-1)
        probs = self._filtered_probs(logits)
        if generator is not None and generator.device != probs.device:
            return (
                torch.multinomial(probs.to(generator.device), 1, generator=generator)
                .squeeze(-1)
                .to(probs.device)
            )
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    def probs(self, logits: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
        """The distribution (B, V) the next token is drawn from: finite, each row sums to 1, zero
        outside the kept tokens; greedy: one-hot at the argmax."""
        logits = self._penalized(logits, seen)
        if self.greedy:
            return torch.zeros_like(logits).scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
        return self._filtered_probs(logits)

    def _penalized(self, logits: torch.Tensor, seen: torch.Tensor | None) -> torch.Tensor:
        logits = logits.float()
        # one check per step (a sync on GPU): NaN would otherwise make argmax pick a NaN slot, or
        # multinomial fail in torch (on CUDA, with a device-side assert that ruins the process)
        if bool(torch.isnan(logits).any()):
            raise GptlabError(
                "the model produced NaN logits: its weights contain NaN/inf, or its activations "
                "overflowed in this dtype (try --dtype float32, or an earlier checkpoint)"
            )
        if seen is not None and self.repetition_penalty != 1.0:
            logits = apply_repetition_penalty(logits, seen, self.repetition_penalty)
        return logits

    def _filtered_probs(self, logits: torch.Tensor) -> torch.Tensor:
        # Shift each row so that its largest logit is 0 before dividing by the temperature: then
        # no division overflows to +inf (softmax of inf is NaN). A +inf logit becomes 0 like the
        # max (the +inf tokens share the mass, the limit of huge logits); -inf stays -inf, and a
        # row of -inf only becomes uniform (nothing to prefer) rather than NaN.
        top = logits.amax(dim=-1, keepdim=True)
        logits = torch.where(logits == top, 0.0, logits - top) / self.temperature
        if self.top_k:
            logits = top_k_filter(logits, int(self.top_k))
        if self.top_p is not None:
            logits = top_p_filter(logits, self.top_p)
        return logits.softmax(dim=-1)  # at least one 0 logit (exp = 1) is kept: the sum is >= 1


def _is_number(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)  # numpy scalars too


GREEDY = Sampler(temperature=0.0)  # argmax decoding: what tests, audits and benchmarks compare


class RecordingSampler:
    """A Sampler that keeps the logits (B, V) of the step it was last called on: the model's own
    distribution at that step, for callers that report log-probabilities or entropies while
    `decode_steps` drives the decoding (the server's logprobs, the sampling study). The loop only
    needs ``__call__`` and ``repetition_penalty``."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.repetition_penalty = sampler.repetition_penalty
        self.logits: torch.Tensor | None = None

    def __call__(self, logits, seen=None, generator=None):
        self.logits = logits
        return self.sampler(logits, seen, generator)


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make tokens already seen less likely (penalty > 1): positive logits / penalty, negative * penalty."""
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (B, V); the others become -inf. k >= V: all kept."""
    if k >= logits.size(-1):
        return logits
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.topk(k, dim=-1).indices, True)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability mass reaches p; others -inf."""
    if p >= 1.0:
        return logits
    # stable: among equal logits the lowest id comes first, so greedy's argmax is always kept and
    # ties are cut the same way on every device
    sorted_logits, order = logits.sort(dim=-1, descending=True, stable=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely tokens
    drop_sorted = mass_before >= p  # the set already reached p without this token
    # always keep the most likely token: a p below float32's smallest value (1e-300) rounds to 0,
    # and 0 >= 0 would drop every token
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def _seen_mask(rows: Sequence[Sequence[int]], vocab_size: int, device: torch.device) -> torch.Tensor:
    seen = torch.zeros(len(rows), vocab_size, dtype=torch.bool, device=device)
    for b, row in enumerate(rows):
        seen[b, torch.as_tensor(list(row), dtype=torch.long, device=device)] = True
    return seen


class _Finisher:
    """Tracks which rows have emitted eos_id; finished rows keep emitting eos_id (their padding)."""

    def __init__(self, batch_size: int, eos_id: int | None, device: torch.device) -> None:
        self.eos_id = eos_id
        self.done = torch.zeros(batch_size, dtype=torch.bool, device=device)

    def __call__(self, next_ids: torch.Tensor) -> torch.Tensor:
        if self.eos_id is None:
            return next_ids
        next_ids = next_ids.masked_fill(self.done, self.eos_id)
        self.done |= next_ids == self.eos_id
        return next_ids

    @property
    def all_done(self) -> bool:
        return self.eos_id is not None and bool(self.done.all())


@torch.no_grad()
def generate_naive(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    sampler: Sampler = Sampler(),
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The reference decoder: idx (B, T) -> (B, T + n), re-running the model on the (cropped)
    context for every new token. Stops early once every row has emitted ``eos_id``; rows that
    finished earlier are padded with ``eos_id``."""
    _check_lengths(idx.size(1), max_new_tokens)
    block_size = model.config.block_size
    idx = idx.to(model_device(model))
    seen = _seen_mask(idx.tolist(), model.config.vocab_size, idx.device)
    finisher = _Finisher(idx.size(0), eos_id, idx.device)
    with eval_mode(model):
        for _ in range(max_new_tokens):
            logits, _ = model(idx[:, -block_size:])  # (B, T, V)
            next_ids = finisher(sampler(logits[:, -1, :], seen, generator))  # (B,)
            seen[torch.arange(idx.size(0)), next_ids] = True
            idx = torch.cat((idx, next_ids[:, None]), dim=1)
            if finisher.all_done:
                break
    return idx


def _check_lengths(prompt_len: int, max_new_tokens: int) -> None:
    if prompt_len == 0:
        raise GptlabError("cannot generate from an empty prompt: give at least one token")
    if max_new_tokens < 0:
        raise GptlabError(f"max_new_tokens must be >= 0, got {max_new_tokens}")


def prefill(model: GPT, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, KVCache]:
    """Run the model on left-padded contexts (the last block_size tokens of each row); return the
    logits of each row's last token (B, V) and the filled cache (beam search starts here too)."""
    contexts = [list(row[-model.config.block_size :]) for row in rows]
    longest = max(len(c) for c in contexts)
    device = model_device(model)
    pad = torch.tensor([longest - len(c) for c in contexts], dtype=torch.long, device=device)
    idx = torch.tensor([[PAD_ID] * (longest - len(c)) + c for c in contexts], dtype=torch.long, device=device)
    cache = KVCache.for_model(model, len(rows), pad)
    return _last_logits(model, idx, cache), cache


def _last_logits(model: GPT, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Run idx (B, T) through the model with the cache; logits of the last position only (B, V).

    Sampling needs only the last position, and the LM head is the largest matrix: on a 512-token
    prompt of GPT-2 small, logits for every position would cost 512 x 50257 x 768 multiply-adds
    (as much as the rest of the model) and a 100 MB tensor. It goes through ``forward`` (not
    the model's internals), so wrappers that hook it (FSDP gathering its shards) still work."""
    logits, _ = model(idx, kv_cache=cache, last_only=True)  # (B, 1, V)
    return logits[:, -1, :]


@torch.no_grad()
def decode_steps(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    sampler: Sampler | RecordingSampler = Sampler(),
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """The KV-cache engine: yields the next token of every row (B,) once per step.

    Prompts may differ in length (left-padded, masked); a row that emitted ``eos_id`` keeps
    yielding ``eos_id`` until every row has, and then the iterator ends. Pulling steps one at a
    time is how a caller interleaves its own checks between them (cancellation, deadlines);
    closing the iterator early frees the cache. A `RecordingSampler` exposes each step's logits."""
    if not prompts:
        raise GptlabError("no prompts to generate from")
    for p in prompts:
        _check_lengths(len(p), max_new_tokens)
    if max_new_tokens == 0:
        return
    rows = [list(p) for p in prompts]
    device = model_device(model)
    # the (B, V) mask of tokens seen so far, kept only when the repetition penalty needs it
    seen = _seen_mask(rows, model.config.vocab_size, device) if sampler.repetition_penalty != 1.0 else None
    batch_index = torch.arange(len(rows), device=device)
    finisher = _Finisher(len(rows), eos_id, device)
    pending: list[torch.Tensor] = []  # tokens generated since the rows were last extended
    with eval_mode(model):
        logits, cache = prefill(model, rows)
        for step in range(max_new_tokens):
            next_ids = finisher(sampler(logits, seen, generator))  # (B,)
            if seen is not None:
                seen[batch_index, next_ids] = True
            yield next_ids
            if finisher.all_done or step == max_new_tokens - 1:
                return
            pending.append(next_ids)
            if cache.pos == cache.max_len:  # context full: slide it (see the module docstring)
                for row, new in zip(rows, torch.stack(pending, dim=1).tolist()):
                    row.extend(new)  # the rows as python lists only when they are needed
                pending = []
                logits, cache = prefill(model, rows)
            else:
                logits = _last_logits(model, next_ids[:, None], cache)  # (B, V)


def generate(
    model: GPT,
    idx: torch.Tensor | Sequence[Sequence[int]],
    max_new_tokens: int,
    sampler: Sampler = Sampler(),
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor | list[list[int]]:
    """Generate with the KV cache. idx (B, T) tensor -> (B, T + n) tensor, the same tokens as
    `generate_naive` (rows finished early are padded with ``eos_id``); or a list of token
    lists of any lengths -> a list of prompt + completion lists, each cut after its ``eos_id``."""
    prompts = idx.tolist() if isinstance(idx, torch.Tensor) else [list(p) for p in idx]
    steps = list(decode_steps(model, prompts, max_new_tokens, sampler, eos_id, generator))
    if steps:
        new = torch.stack(steps, dim=1)  # (B, n)
    else:
        new = torch.empty(len(prompts), 0, dtype=torch.long, device=model_device(model))
    if isinstance(idx, torch.Tensor):
        return torch.cat((idx.to(new.device), new), dim=1)
    out = []
    for prompt, completion in zip(prompts, new.tolist()):
        if eos_id is not None and eos_id in completion:
            completion = completion[: completion.index(eos_id) + 1]
        out.append(prompt + completion)
    return out


def stream_tokens(
    model: GPT,
    prompt_ids: Sequence[int],
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    sampler: Sampler = Sampler(),
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Yield new token ids of one prompt as they are sampled (the eos token itself is not yielded)."""
    for next_ids in decode_steps(model, [list(prompt_ids)], max_new_tokens, sampler, eos_id, generator):
        token = int(next_ids[0])
        if token == eos_id:
            return
        yield token


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of text that could be the start of a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


class TextStream:
    """One completion's tokens -> its text, released in pieces that are safe to show.

    `push` a token, get back the text it released; `finish` at the end (end of text, token limit)
    releases the rest. Released text is always complete UTF-8 (a character split across tokens
    waits for its last byte), never part of a stop string (text that could be the start of one is
    held back until it is known not to be), and the text ends before the first stop string:
    `stopped` says the completion hit one, after which nothing more is released. At `finish`, an
    unfinished character comes out as replacement characters. Token ids past the tokenizer's
    vocabulary (a model padded wider than its tokenizer) have no text."""

    def __init__(self, tokenizer, stops: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.text = ""  # the completion so far, cut before a stop string once one appears
        self.released = 0  # characters of text handed out
        self.stopped = False
        self._pending: list[int] = []  # tokens since the last clean UTF-8 boundary
        self._pending_out = 0  # characters of decode(pending) already in text

    def _decode(self, ids: list[int]) -> str:
        vocab = self.tokenizer.vocab_size
        return self.tokenizer.decode([i for i in ids if i < vocab])

    def _cut_at_stop(self) -> bool:
        starts = (self.text.find(s, max(0, self.released - len(s))) for s in self.stops)
        hits = [i for i in starts if i >= 0]
        if hits:
            self.text, self.stopped = self.text[: min(hits)], True
        return self.stopped

    def _release(self, end: int) -> str:
        piece = self.text[self.released : end]
        self.released = max(self.released, end)
        return piece

    def push(self, token: int) -> str:
        """Add a sampled token (not the end-of-text token); the text that became safe to show."""
        if self.stopped:
            return ""
        self._pending.append(token)
        piece = self._decode(self._pending)
        complete = piece.rstrip(REPLACEMENT_CHAR)  # a trailing partial character waits for its bytes
        self.text += complete[self._pending_out :]
        self._pending_out = len(complete)
        if complete == piece:
            self._pending, self._pending_out = [], 0
        if self._cut_at_stop():
            return self._release(len(self.text))
        return self._release(len(self.text) - _held_back(self.text, self.stops))

    def finish(self) -> str:
        """The completion ended: the text still held back (still cut before a stop string)."""
        if self.stopped:
            return ""
        self.text += self._decode(self._pending)[self._pending_out :]
        self._pending, self._pending_out = [], 0
        self._cut_at_stop()
        return self._release(len(self.text))


def stream_text(
    model: GPT,
    tokenizer,
    prompt: str | Sequence[int],
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    sampler: Sampler = Sampler(),
    stop: Sequence[str] = (),
    seed: int | None = None,
) -> Iterator[str]:
    """Yield the completion of ``prompt`` as text pieces, each complete UTF-8 (see module
    docstring). ``prompt``: text (encoded by `encode_prompt`), or token ids used as given."""
    prompt_ids = encode_prompt(tokenizer, prompt) if isinstance(prompt, str) else list(prompt)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=model_device(model)).manual_seed(seed)
    yield from text_pieces(
        stream_tokens(model, prompt_ids, max_new_tokens, sampler, tokenizer.eot_id, generator),
        tokenizer,
        stop,
    )


def text_pieces(tokens: Iterator[int], tokenizer, stop: Sequence[str] = ()) -> Iterator[str]:
    """A completion's token ids (without the end token) -> its text pieces (`TextStream`); stops
    pulling tokens at the first stop string. For any token source (speculative decoding too)."""
    assembler = TextStream(tokenizer, stop)
    for token in tokens:
        piece = assembler.push(token)
        if piece:
            yield piece
        if assembler.stopped:
            return
    piece = assembler.finish()
    if piece:
        yield piece


def generate_text(
    model: GPT,
    tokenizer,
    prompt: str | Sequence[int],
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    sampler: Sampler = Sampler(),
    stop: Sequence[str] = (),
    seed: int | None = None,
) -> str:
    """The completion of ``prompt`` (without the prompt, without the stop string or end token)."""
    return "".join(stream_text(model, tokenizer, prompt, max_new_tokens, sampler, stop, seed))


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Prompt text -> the ids generation starts from: special tokens written in the text count as
    such, and an empty prompt starts from ``<|endoftext|>`` (GptlabError if there is none)."""
    ids = tokenizer.encode(prompt, allowed_special="all") if prompt else []
    if ids:
        return ids
    if tokenizer.eot_id is None:
        raise GptlabError("empty prompt, and the tokenizer has no <|endoftext|> token to start from")
    return [tokenizer.eot_id]
