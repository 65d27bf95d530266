"""Chat with a model: a conversation turned into prompts, replies streamed token by token.

Templates (gptlab.data.tasks): an instruction-tuned run's model.json says which one it was
trained with (``"extra": {"finetune": "instruct", "template": ...}``, read by gptlab.run.Run.template);
any other model (a pretrained base model, a Hugging Face GPT-2) gets ``"alpaca"`` unless told.

- ``"alpaca"`` and ``"chat"``: each turn is rendered exactly as in fine-tuning (`encode_prompt`:
  the Alpaca block with its intro, or ``<|user|> ... <|assistant|>``), and a past turn is followed
  by its reply and ``<|endoftext|>``, just as the training examples ended. Alpaca is a single-turn
  format, so earlier turns are simply earlier examples in the context: the model can look back at
  them, but the latest message is the instruction it answers.
- a prompt string with ``{input}`` (an input -> output fine-tune, gptlab.data.pairs): each
  message fills the template, as one input did in training.
- ``"none"``: no template; the conversation is the raw text, each user message followed by the
  model's continuation, turns separated by a newline.

Context: the prompt gets at most ``block_size - max_new_tokens`` tokens (when ``max_new_tokens``
is more than half the context, half the context is kept for the prompt instead, and a long reply
slides the context as in gptlab.generate). Whole turns are dropped from the oldest while the
prompt is too long; if the latest turn alone is still too long, its first tokens are cut, so the
response marker at its end always stays. A conversation of any length therefore never fails.

A reply stops at ``<|endoftext|>`` or where the model starts the next turn itself (the
``### Instruction`` / ``<|user|>`` markers), and is stored in the history without the
whitespace around it (how responses appear in the training data).

User text is encoded with no special tokens allowed (as in fine-tuning): typing
``<|endoftext|>`` or ``<|assistant|>`` cannot forge a control token.
"""

from __future__ import annotations

from collections.abc import Iterator

from gptlab.data.tasks import (
    CHAT_SPECIAL_TOKENS,
    TEMPLATES,
    USER_TOKEN,
    InstructionExample,
    encode_prompt,
    is_prompt_template,
)
from gptlab.errors import GptlabError
from gptlab.generate import DEFAULT_MAX_NEW_TOKENS, Sampler, stream_text
from gptlab.run import DEFAULT_TEMPLATE

CHAT_TEMPLATES = (*TEMPLATES, "none")
DEFAULT_SAMPLER = Sampler(temperature=0.7)  # a little cooler than plain sampling: replies stay on topic
# where a model that goes on past its reply would start a new turn
STOP_MARKERS = {
    "alpaca": ("### Instruction", USER_TOKEN),
    "chat": (USER_TOKEN, "### Instruction"),
    "none": (),
}


def stop_markers(template: str) -> tuple[str, ...]:
    """Where a reply in ``template`` ends early; none for a prompt string with ``{input}`` (an
    input -> output run: each message is one input, its reply ends at <|endoftext|>)."""
    return STOP_MARKERS.get(template, ())


class ChatSession:
    """A conversation with a model: `reply` / `reply_stream` answer a message and remember the turn;
    `reset` forgets them. ``sampler`` is `gptlab.generate.stream_text`'s; with a
    ``seed``, turn i (counted from the last reset) samples with ``seed + i``, so a conversation
    replays identically."""

    def __init__(
        self,
        model,
        tokenizer,
        template: str = DEFAULT_TEMPLATE,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        sampler: Sampler = DEFAULT_SAMPLER,
        seed: int | None = None,
    ) -> None:
        if template not in CHAT_TEMPLATES and not is_prompt_template(template):
            raise GptlabError(
                f"template must be one of {', '.join(CHAT_TEMPLATES)} or a prompt string with {{input}}, "
                f"got {template!r}"
            )
        missing = [t for t in CHAT_SPECIAL_TOKENS if t not in tokenizer.special_tokens]
        if template == "chat" and missing:  # fail now, not at the first message
            raise GptlabError(
                f"the 'chat' template needs the special tokens {', '.join(CHAT_SPECIAL_TOKENS)}, but this "
                "tokenizer lacks " + ", ".join(missing) + " (use --template alpaca or none)"
            )
        if max_new_tokens < 1:
            raise GptlabError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.max_new_tokens = max_new_tokens
        self.sampler = sampler
        self.seed = seed
        self.history: list[tuple[str, str]] = []  # (user message, reply) of the turns so far

    @property
    def prompt_budget(self) -> int:
        """How many tokens the prompt may use (see the module docstring)."""
        block_size = self.model.config.block_size
        return block_size - min(self.max_new_tokens, block_size // 2)

    def reset(self) -> None:
        self.history.clear()

    def _turn_ids(self, message: str) -> list[int]:
        """One user turn, ending where the reply begins."""
        if self.template == "none":
            return self.tokenizer.encode(message)
        return encode_prompt(InstructionExample(message), self.tokenizer, self.template)

    def _past_turn_ids(self, message: str, reply: str) -> list[int]:
        ids = self._turn_ids(message) + self.tokenizer.encode(reply)
        eot = self.tokenizer.eot_id
        if self.template == "none" or eot is None:
            return ids + self.tokenizer.encode("\n" if self.template == "none" else "\n\n")
        return ids + [eot]

    def prompt_ids(self, message: str) -> list[int]:
        """Token ids the model reads before replying to ``message``: the latest turns that fit."""
        if not message.strip():
            raise GptlabError("empty message")
        budget = self.prompt_budget
        ids = self._turn_ids(message)[-budget:]  # cut from the left: keep the response marker
        for user, reply in reversed(self.history):
            turn = self._past_turn_ids(user, reply)
            if len(turn) + len(ids) > budget:
                break  # drop this turn and every older one, so the context stays contiguous
            ids = turn + ids
        return ids

    def prompt_for(self, message: str) -> str:
        """The prompt as text (special tokens written out), for display and debugging."""
        return self.tokenizer.decode(self.prompt_ids(message))

    def reply_stream(self, message: str) -> Iterator[str]:
        """Yield the reply to ``message`` in pieces as they are generated; the turn joins the
        history when the stream ends (also when the caller stops early: the partial reply)."""
        ids = self.prompt_ids(message)
        seed = None if self.seed is None else self.seed + len(self.history)
        pieces: list[str] = []
        try:
            # the ids as assembled (user text without special tokens, cut to the context), not
            # re-encoded from text
            for piece in stream_text(
                self.model,
                self.tokenizer,
                ids,
                self.max_new_tokens,
                self.sampler,
                stop=stop_markers(self.template),
                seed=seed,
            ):
                pieces.append(piece)
                yield piece
        finally:
            reply = "".join(pieces)
            self.history.append((message, reply if self.template == "none" else reply.strip()))

    def reply(self, message: str) -> str:
        """The whole reply to ``message`` (the same text `reply_stream` yields, joined)."""
        return "".join(self.reply_stream(message))
