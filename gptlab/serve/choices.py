"""A generation's output side: sampled tokens -> text, logprob entries and the events the client gets.

Both ways the engine runs generations (one batched forward for every active request, or the old
interleaving of one request's step at a time) end each step with a (n,) tensor of next tokens and
the (n, V) logits they were drawn from; `Choices.advance` turns that into the ``delta`` and
``done`` events, so streaming, stop strings and logprobs are the same code on both paths.

Text: tokens become text through `gptlab.generate.TextStream`, as in `stream_text` (a character
split across tokens waits for its last byte; text that could be the start of a stop string is
held back until it is known not to be; the completion ends before a stop string). Logprobs are the
model's own distribution at each step (temperature 1, no top-k/top-p), which is what the
probability of a token means to a reader; a token's entry is released with the text it starts in,
so streamed and non-streamed answers carry the same entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from gptlab.generate import TextStream


class ChoiceText:
    """One choice's tokens -> its text (a `gptlab.generate.TextStream`), with the logprob entry of
    each token and the choice's finish reason; `take` hands out what is new since the last call."""

    def __init__(self, tokenizer, stops: Sequence[str]) -> None:
        self.stream = TextStream(tokenizer, stops)
        self.unsent = ""  # text released by the stream, not handed out yet
        self.entries: list[dict] = []  # per token: {"id", "offset", ...logprob fields}
        self.entries_released = 0
        self.n_tokens = 0
        self.finish_reason: str | None = None
        self.reported = False  # the chunk with finish_reason went out

    def push(self, token: int, entry: dict) -> None:
        """Add a sampled token (not the end-of-text token)."""
        self.n_tokens += 1
        self.entries.append({**entry, "offset": len(self.stream.text)})
        self.unsent += self.stream.push(token)
        if self.stream.stopped:
            self.finish_reason = "stop"

    def finish(self, reason: str) -> None:
        """End of text or max_tokens: flush what was held back (see TextStream.finish)."""
        self.unsent += self.stream.finish()
        self.finish_reason = "stop" if self.stream.stopped else reason

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def take(self) -> tuple[str, list[dict]]:
        """Text and logprob entries not handed out yet. An entry goes out with the text it starts
        in; once the choice has ended, the remaining entries go out too (tokens whose text is
        empty), except those past a stop string (their text was cut)."""
        text, self.unsent = self.unsent, ""
        end = self.entries_released
        if self.done and not self.stream.stopped:
            end = len(self.entries)
        else:
            while end < len(self.entries) and self.entries[end]["offset"] < self.stream.released:
                end += 1
        entries = self.entries[self.entries_released : end]
        self.entries_released = end
        return text, entries


class Choices:
    """The ``n`` choices of one request: `advance` takes a step's tokens and logits, sends the new
    text to ``emit`` and says whether any choice is still going."""

    def __init__(
        self,
        tokenizer,
        n: int,
        stops: Sequence[str],
        max_tokens: int,
        top_logprobs: int | None,
        emit: Callable[[dict], None],
    ) -> None:
        self.tokenizer, self.max_tokens, self.top_logprobs, self.emit = (
            tokenizer,
            max_tokens,
            top_logprobs,
            emit,
        )
        self.eos_id = tokenizer.eot_id
        self.rows = [ChoiceText(tokenizer, stops) for _ in range(n)]

    def _token_text(self, token: int) -> str:
        if token >= self.tokenizer.vocab_size:
            return f"<{token}>"
        return self.tokenizer.decode([token])

    def _entries(self, next_ids: torch.Tensor, logits: torch.Tensor) -> list[dict]:
        """Per row: the sampled token's id, text, logprob and its top alternatives (if asked)."""
        ids = next_ids.tolist()
        k = self.top_logprobs
        if k is None:
            return [{"id": i} for i in ids]
        logprobs = logits.float().log_softmax(-1)  # (n, V): the model's distribution
        chosen = logprobs.gather(-1, next_ids[:, None]).squeeze(-1).tolist()
        if k > 0:
            top_lp, top_ids = logprobs.topk(min(k, logprobs.size(-1)), dim=-1)
            top = [list(zip(r_ids, r_lp)) for r_ids, r_lp in zip(top_ids.tolist(), top_lp.tolist())]
        else:
            top = [[] for _ in ids]
        return [
            {
                "id": i,
                "token": self._token_text(i),
                "logprob": lp,
                "top": [(self._token_text(t), t_lp) for t, t_lp in alts],
            }
            for i, lp, alts in zip(ids, chosen, top)
        ]

    def advance(self, next_ids: torch.Tensor, logits: torch.Tensor) -> bool:
        """One step for every choice; emit what became text. False once every choice is done."""
        for row, entry, token in zip(self.rows, self._entries(next_ids, logits), next_ids.tolist()):
            if row.done:
                continue
            if token == self.eos_id:
                row.finish("stop")
                continue
            row.push(token, entry)
            if not row.done and row.n_tokens >= self.max_tokens:
                row.finish("length")
        choices = []
        for index, row in enumerate(self.rows):
            if row.reported:
                continue
            text, entries = row.take()
            row.reported = row.done
            if text or entries or row.done:
                choices.append(
                    {"index": index, "text": text, "entries": entries, "finish_reason": row.finish_reason}
                )
        if choices:
            self.emit({"type": "delta", "choices": choices})
        if all(row.done for row in self.rows):
            self.emit({"type": "done", "completion_tokens": sum(r.n_tokens for r in self.rows)})
            return False
        return True
