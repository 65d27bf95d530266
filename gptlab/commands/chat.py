"""``gptlab chat``: talk to a model in the terminal, or answer messages piped in (thin wrapper over
gptlab.chat.ChatSession)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import TextIO

from gptlab.chat import CHAT_TEMPLATES, DEFAULT_SAMPLER, ChatSession
from gptlab.commands import positive_int, seed_type
from gptlab.commands.sampling import add_sampling_arguments, sampler_from_args
from gptlab.generate import DEFAULT_MAX_NEW_TOKENS
from gptlab.run import Run
from gptlab.rundir import load_model

RESET, QUIT = "/reset", ("/quit", "/exit")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "chat",
        help="chat with a model: one message a line on stdin, replies streamed to stdout",
        description=(
            "Read messages from stdin, one a line (empty lines are skipped), and stream each reply. "
            "The prompt is built with the run's instruction template (model.json extra.template; alpaca "
            "for a model that has none) from the conversation so far: the oldest turns are dropped, and "
            "if needed the latest one cut from the left, to leave room for the reply in the context. "
            "A reply ends at <|endoftext|>, at the start of a new turn, or after --max-new-tokens. "
            f"Commands: {RESET} forgets the conversation; {' or '.join(QUIT)} (or end of input) quits. "
            "Piped input works: no prompt is shown unless stdin is a terminal."
        ),
    )
    p.add_argument(
        "--model", required=True, metavar="RUN", help="run directory or Hugging Face GPT-2 directory"
    )
    p.add_argument(
        "--template",
        choices=CHAT_TEMPLATES,
        help="prompt template (default: the run's own, else alpaca); none: raw continuation of the text",
    )
    p.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help="longest reply (default: %(default)s)",
    )
    add_sampling_arguments(p, DEFAULT_SAMPLER)
    p.add_argument("--seed", type=seed_type, help="random seed; reply i of a conversation uses seed + i")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--dtype", help="float32, bfloat16 or float16 (default: as stored)")
    p.set_defaults(func=run)


def _messages(stdin: TextIO, interactive: bool) -> Iterator[str]:
    """Lines of input without their newline, until end of input."""
    while True:
        if interactive:
            try:
                line = input("> ")  # input() gives line editing when the readline module is loaded
            except EOFError:
                print()
                return
        else:
            line = stdin.readline()
            if not line:
                return
        yield line.rstrip("\r\n")


def run(args: argparse.Namespace) -> int:
    model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    template = args.template or Run.open(args.model).template
    session = ChatSession(
        model,
        tokenizer,
        template,
        max_new_tokens=args.max_new_tokens,
        sampler=sampler_from_args(args),
        seed=args.seed,
    )
    interactive = sys.stdin.isatty()
    if interactive:  # piped runs print replies only
        print(
            f"chatting with {args.model} (template {template}); {RESET} forgets, {QUIT[0]} or Ctrl-D quits",
            file=sys.stderr,
        )
    for message in _messages(sys.stdin, interactive):
        command = message.strip()
        if not command:
            continue
        if command in QUIT:
            break
        if command == RESET:
            session.reset()
            if interactive:
                print("(conversation cleared)", file=sys.stderr)
            continue
        stream = session.reply_stream(message)
        try:
            for piece in stream:
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            if not interactive:
                raise
            stream.close()  # Ctrl-C cuts this reply short (it stays in the history) but not the chat
        sys.stdout.write("\n")
        sys.stdout.flush()
    return 0
