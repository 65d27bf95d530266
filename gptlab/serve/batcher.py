"""Continuous batching: every active generation advances in one batched forward per step.

The engine's worker thread owns a `Batcher` and calls `step` in a loop. A request goes through:

1. prefill: its prompt (the last ``block_size`` tokens, n copies for n choices) runs through the
   model in chunks of at most ``prefill_chunk`` positions, one chunk per step, into its own
   `KVCache` sized to the prompt; a long prompt thus costs the others a chunk's delay per step
   instead of stalling them for the whole prompt. The last chunk's logits give the first token.
2. decode: its keys and values are copied into the shared `SlotCache` and it joins the batch; each
   step is one forward of every decoding row (one new token each, at each row's own position, a
   per-row mask hiding the other rows' padding), and the logits are split back per request.
3. leave: when its choices are done, or it is cancelled or past its deadline (the engine checks
   between steps), its rows are freed and the next queued request can take them. A request
   whose context fills up (prompt + generated = block_size) leaves the batch and is prefilled
   again from its last block_size tokens, as `gptlab.generate.decode_steps` slides its context.

What a request generates does not depend on what else runs: each request samples its own (n, V)
logits with its own `Sampler` (temperature, top-k, top-p, repetition penalty) and its own
``torch.Generator`` seeded from the request, drawing in the same order as `decode_steps` does
(n > 1: one draw for the n rows together), with the same end-of-text handling (a finished row keeps
emitting ``<|endoftext|>`` until all rows are). The logits themselves come from a batch of another
shape than a lone request's, so they may differ in the last bits (matrix kernels sum in a
shape-dependent order): tests bound that at 1e-5 in float32, far below what changes a greedy pick
or a draw except on an exact tie. The chunking depends only on the request, so a prompt longer
than a chunk is split the same way alone or under load.

Recurrent models (``arch`` lstm/gru) have no per-row KV cache to share, and prefix/prompt-tuned
models put their virtual tokens into a `KVCache` of their own: the engine runs both with the older
one-request-per-step interleaving (see `can_batch`).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator

import torch

from gptlab.errors import GptlabError
from gptlab.model.kv_cache import KVCache
from gptlab.model.modes import eval_mode, model_device
from gptlab.serve.choices import Choices
from gptlab.serve.slot_cache import SlotCache

DEFAULT_PREFILL_CHUNK = 256  # prompt positions prefilled per step, between two decode steps


def can_batch(model: torch.nn.Module) -> bool:
    """Whether the model's forward takes a per-row KV cache: a decoder-only transformer, and not
    one with prefix/prompt-tuning virtual tokens (gptlab.finetune.peft_virtual), which replaces
    the forward with one that writes its tokens at the start of a `KVCache`."""
    if getattr(getattr(model, "config", None), "arch", None) != "gpt":
        return False
    return getattr(model, "virtual_tokens", None) is None


class Sequence:
    """One request in the batcher: its tokens so far, its sampling state and its place (prefilling
    with its own cache, or ``rows`` of the shared cache)."""

    def __init__(self, handle, model: torch.nn.Module, tokenizer) -> None:
        job = handle.job
        if not job.prompt_ids:
            raise GptlabError("cannot generate from an empty prompt: give at least one token")
        if job.max_tokens < 1:
            raise GptlabError(f"max_tokens must be >= 1, got {job.max_tokens}")
        self.handle, self.job, self.model = handle, job, model
        device = model_device(model)
        self.generator = torch.Generator(device=device).manual_seed(job.seed)
        self.eos_id = tokenizer.eot_id
        self.tokens = [list(job.prompt_ids) for _ in range(job.n)]  # each row's prompt + generated
        self.seen = None  # the (n, V) tokens seen so far, only for a repetition penalty
        if job.sampler.repetition_penalty != 1.0:
            self.seen = torch.zeros(job.n, model.config.vocab_size, dtype=torch.bool, device=device)
            self.seen[:, torch.as_tensor(job.prompt_ids, device=device)] = True
        self.ended = torch.zeros(job.n, dtype=torch.bool, device=device)  # emitted end of text
        self.choices = Choices(tokenizer, job.n, job.stops, job.max_tokens, job.top_logprobs, handle.emit)
        self.rows: range | None = None  # its rows in the SlotCache while decoding
        self.next_ids: torch.Tensor | None = None  # (n,) the sampled tokens not in a cache yet
        self.cached = 0  # tokens in its cache (the position of the next one)
        self.sliding = False  # prefilling again because its context is full
        self.start_prefill()

    def start_prefill(self) -> None:
        """Prefill from the last block_size tokens of each row (all rows are equally long)."""
        self.sliding = self.next_ids is not None
        block = self.model.config.block_size
        device = model_device(self.model)
        self.context = torch.tensor([row[-block:] for row in self.tokens], dtype=torch.long, device=device)
        self.prefill_cache = KVCache.for_model(self.model, self.job.n, max_len=self.context.size(1))
        self.cached = 0

    @property
    def prompt_left(self) -> int:
        return self.context.size(1) - self.cached

    def prefill_chunk(self, size: int) -> torch.Tensor | None:
        """Run the next ``size`` prompt positions; the last position's logits (n, V) once the
        whole prompt is in, else None."""
        chunk = self.context[:, self.cached : self.cached + size]
        logits, _ = self.model(chunk, kv_cache=self.prefill_cache, last_only=True)
        self.cached += chunk.size(1)
        return logits[:, -1, :] if self.prompt_left == 0 else None

    def sample(self, logits: torch.Tensor) -> bool:
        """Draw the next token of every row from its logits (n, V), as `decode_steps` does, and
        hand the text to the client. False once every choice is done."""
        next_ids = self.job.sampler(logits, self.seen, self.generator)
        if self.eos_id is not None:
            next_ids = next_ids.masked_fill(self.ended, self.eos_id)
            self.ended |= next_ids == self.eos_id
        if self.seen is not None:
            self.seen[torch.arange(self.job.n, device=next_ids.device), next_ids] = True
        self.next_ids = next_ids
        for row, token in zip(self.tokens, next_ids.tolist()):
            row.append(token)
        return self.choices.advance(next_ids, logits)

    @property
    def context_full(self) -> bool:
        return self.cached == self.model.config.block_size


class Batcher:
    """The sequences in flight and the shared cache; `step` advances all of them once."""

    def __init__(self, model: torch.nn.Module, tokenizer, prefill_chunk: int = DEFAULT_PREFILL_CHUNK) -> None:
        if prefill_chunk < 1:
            raise GptlabError(f"the prefill chunk must be >= 1 token, got {prefill_chunk}")
        self.model, self.tokenizer, self.prefill_chunk = model, tokenizer, prefill_chunk
        self.cache = SlotCache(model)
        self.prefilling: deque[Sequence] = deque()
        self.decoding: list[Sequence] = []  # in row order

    def __len__(self) -> int:
        return len(self.prefilling) + len(self.decoding)

    def __iter__(self) -> Iterator[Sequence]:
        return iter([*self.prefilling, *self.decoding])

    def admit(self, handle) -> Sequence:
        """Queue a request for prefill (GptlabError for a request that cannot be generated)."""
        seq = Sequence(handle, self.model, self.tokenizer)
        self.prefilling.append(seq)
        return seq

    def remove(self, seq: Sequence) -> None:
        """Take a sequence out (finished, cancelled, failed) and free its rows."""
        if seq.rows is None:
            if seq in self.prefilling:  # (one that just finished its prefill has left the queue)
                self.prefilling.remove(seq)
            return
        gone = seq.rows
        self.cache.remove(gone)
        self.decoding.remove(seq)
        seq.rows = None
        for other in self.decoding:  # the rows after it moved up
            if other.rows.start >= gone.stop:
                other.rows = range(other.rows.start - len(gone), other.rows.stop - len(gone))

    def _join(self, seq: Sequence) -> None:
        cache = seq.prefill_cache
        filled = cache.filled
        seq.rows = self.cache.append(cache.k[:, :, :, :filled], cache.v[:, :, :, :filled], seq.cached)
        seq.prefill_cache = None
        self.decoding.append(seq)

    def _after_sample(self, seq: Sequence, going: bool, finished: list[Sequence]) -> None:
        """Where a sequence goes after a token: out (done), back to prefill (context full), or on."""
        if not going:
            self.remove(seq)
            finished.append(seq)
        elif seq.context_full:  # slide the context: prefill again from the last block_size tokens
            if seq.rows is not None:
                self.remove(seq)
            seq.start_prefill()
            self.prefilling.append(seq)
        elif seq.rows is None:
            self._join(seq)

    @torch.no_grad()
    def step(self) -> tuple[list[Sequence], list[Sequence], list[tuple[Sequence, Exception]]]:
        """One prefill chunk budget, then one decode step for every decoding row. Returns the
        sequences sampled this step, those that finished and those that failed (all three
        already removed, except the sampled ones that go on)."""
        sampled: list[Sequence] = []
        finished: list[Sequence] = []
        failed: list[tuple[Sequence, Exception]] = []
        # switching modes walks every module: not once per step for a served model, already in eval
        with eval_mode(self.model) if self.model.training else contextlib.nullcontext():
            self._prefill(sampled, finished, failed)
            self._decode(sampled, finished, failed)
        return sampled, finished, failed

    def _prefill(self, sampled, finished, failed) -> None:
        # a sliding context is re-filled whole and outside the budget: it is that request's own
        # next token (at the naive decoder's cost, as in decode_steps), not a newcomer's prompt
        for seq in [seq for seq in self.prefilling if seq.sliding]:
            self._prefill_one(seq, seq.prompt_left, sampled, finished, failed)
        budget = self.prefill_chunk
        while budget > 0 and self.prefilling:
            seq = self.prefilling[0]
            size = min(budget, seq.prompt_left)
            budget -= size
            self._prefill_one(seq, size, sampled, finished, failed)

    def _prefill_one(self, seq: Sequence, size: int, sampled, finished, failed) -> None:
        try:
            logits = seq.prefill_chunk(size)
            if logits is None:
                return
            self.prefilling.remove(seq)
            going = seq.sample(logits)
        except Exception as e:  # noqa: BLE001 - this request fails, the others go on
            self.remove(seq)
            failed.append((seq, e))
            return
        sampled.append(seq)
        self._after_sample(seq, going, finished)

    def _decode(self, sampled, finished, failed) -> None:
        """One forward for every decoding row (those that joined in this step's prefill too: their
        first token is drawn, the second comes from this forward)."""
        batch = list(self.decoding)
        if not batch:
            return
        try:
            idx = torch.cat([seq.next_ids for seq in batch])[:, None]  # (rows, 1), in row order
            logits, _ = self.model(idx, kv_cache=self.cache, last_only=True)
        except Exception as e:  # noqa: BLE001 - the batched forward failed: every row fails
            for seq in batch:
                self.remove(seq)
                failed.append((seq, e))
            return
        logits = logits[:, -1, :]  # (rows, V)
        spans = [seq.rows for seq in batch]  # before anyone leaves and the rows after it move up
        for seq, rows in zip(batch, spans):
            seq.cached += 1
            try:
                going = seq.sample(logits[rows.start : rows.stop])
            except Exception as e:  # noqa: BLE001 - e.g. NaN logits: this request fails
                self.remove(seq)
                failed.append((seq, e))
                continue
            sampled.append(seq)
            self._after_sample(seq, going, finished)

    def reset(self) -> None:
        """Forget every sequence and the shared cache (after an unexpected error)."""
        self.prefilling.clear()
        self.decoding.clear()
        self.cache = SlotCache(self.model)
