"""The ``gptlab`` command: one verb per task, each a thin wrapper over the Python API.

Each verb lives in ``gptlab/commands/<verb>.py`` and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` (called with the parsed args, returns an exit code or None). Verbs are
imported lazily only for the one being run, so ``gptlab --help`` stays fast and a verb with an
optional dependency does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gptlab.commands import finite_float
from gptlab.errors import GptlabError

# verb -> (module under gptlab.commands, one-line help). Order is the order shown in --help.
VERBS: dict[str, tuple[str, str]] = {
    "quickstart": ("quickstart", "train a tokenizer and a tiny GPT on the built-in corpus, then sample"),
    "tokenizer": ("tokenizer", "train, use, inspect and compare tokenizers"),
    "data": ("data", "download named datasets and prepare token shards"),
    "train": ("train", "pretrain a GPT from a TOML config and key=value overrides"),
    "distill": (
        "distill",
        "knowledge distillation: train a student GPT on a teacher run's softened distribution",
    ),
    "schedule": ("schedule", "plot a config's learning-rate schedule (warmup, cosine, wsd, ...)"),
    "sweep": ("sweep", "train a grid of configs x seeds: train/val loss and gap per point, table and plots"),
    "generate": ("generate", "sample text from a trained or converted model"),
    "chat": ("chat", "chat with a model: messages on stdin, replies streamed"),
    "finetune": ("finetune", "fine-tune a pretrained model: classification or instruction following"),
    "classify": ("classify", "label texts with a fine-tuned classifier"),
    "eval": ("eval", "evaluate a model or its outputs: perplexity, BLEU, ROUGE, judge, classify"),
    "convert": ("convert", "import Hugging Face GPT-2 weights into a gptlab run directory"),
    "export": ("export", "export a gptlab run to Hugging Face GPT-2 format"),
    "quantize": ("quantize", "weight-only int8 / int4 quantisation of a run (smaller, faster decoding)"),
    "analyze": (
        "analyze",
        "interpretability: attention, logit lens, attributions, embeddings, sampling; HTML views",
    ),
    "audit": (
        "audit",
        "security and robustness audits: memorisation, membership, injection, attacks, bias, poisoning",
    ),
    "study": (
        "study",
        "the whole study in resumable stages: pretrain, architecture, benchmarks, audits, report",
    ),
    "serve": ("serve", "serve a model over an OpenAI-compatible HTTP API, with a web playground at /"),
    "bench": (
        "bench",
        "run a benchmark from bench/ (train, speedrun, decode, tokenizer, finetune-lora, optimizers)",
    ),
}


class UsageError(GptlabError):
    """A command line argparse could not accept; ``main`` prints it like any other error."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with usage errors in gptlab's one-line form: ``error: ...`` on stderr, exit 2.
    (Sub-parsers inherit the class, so every verb's flags get the same treatment.)"""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # every `type=float` flag refuses nan and inf: no verb has a use for them, and a NaN
        # learning rate or threshold would otherwise pass every `<`/`>` check silently
        self.register("type", float, finite_float)

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="gptlab",
        description="Build, train, evaluate and study GPT-style language models from scratch.",
    )
    parser.add_argument("--version", action="version", version=f"gptlab {_version()}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (module, help_text) in VERBS.items():
        if name == verb:
            mod = importlib.import_module(f"gptlab.commands.{module}")
            mod.register(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _version() -> str:
    from gptlab import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(verb if verb in VERBS else None)
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.verb is None:
        parser.print_help()
        return 0
    try:
        code = args.func(args)
    except GptlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
