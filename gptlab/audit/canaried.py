"""A pretraining run with canaries in its corpus: the model the memorisation audit's exposure is
measured on (``gptlab audit memorization --insert``, the study's vulnerabilities stage).

`train_with_canaries` makes ``per_repeat`` canaries for each repetition count (0 = controls, never
inserted), inserts the copies into the corpus text well before its tail (the tail of a single-file
corpus becomes the val split), writes ``corpus.txt`` and ``canaries.json`` into a folder the caller
has claimed, trains ``run/`` on the canaried corpus with the given training config, and saves the
canaries into the run too, so that ``audit memorization``/``audit all`` find them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gptlab.audit.memorization import (
    CANARIES_FILE,
    DEFAULT_FORMAT,
    DIGITS,
    insert_canaries,
    make_canaries,
    write_canaries,
)

CORPUS_FILE = "corpus.txt"
RUN_DIR = "run"


def train_with_canaries(
    config,
    text: str,
    out: str | Path,
    repeats: Sequence[int] = (0, 1, 4, 16),
    per_repeat: int = 2,
    fmt: str = DEFAULT_FORMAT,
    seed: int = 0,
    placeholder: str = "N",
    alphabet: str = DIGITS,
) -> tuple[Path, Path]:
    """Train ``config`` (a gptlab.config.Config; its data.input and train.out_dir are replaced) on
    ``text`` with canaries inserted, into the empty folder ``out``; returns (run dir, canaries file)."""
    from gptlab.config import set_value
    from gptlab.io import atomic_write_text
    from gptlab.train import train

    out = Path(out)
    counts = [r for r in repeats for _ in range(per_repeat)]
    canaries = make_canaries(len(counts), fmt, seed, placeholder, alphabet)
    span = max(0.05, 1.0 - 2 * config.data.val_fraction)
    canaried, records = insert_canaries(text, canaries, counts, seed=seed, span=span)
    corpus = out / CORPUS_FILE
    atomic_write_text(corpus, canaried)
    if config.data.tokenizer == "char":
        # the trainer would build the vocabulary from the corpus alone, which lacks the secrets'
        # characters that no inserted canary uses: candidates (and controls) need all of them
        from gptlab.tokenizers.base import EOT
        from gptlab.tokenizers.char import CharTokenizer

        tok = CharTokenizer.train([canaried, alphabet, fmt, "\n"], special_tokens=[EOT])
        tok.save(out / "tokenizer.json")
        set_value(config, "data.tokenizer", str(out / "tokenizer.json"))
    canaries_file = write_canaries(out / CANARIES_FILE, records)
    set_value(config, "data.input", [str(corpus)])
    set_value(config, "train.out_dir", str(out / RUN_DIR))
    result = train(config)
    if result.stop_reason in ("interrupted", "terminated"):
        raise KeyboardInterrupt  # a half-trained run is no model to audit
    write_canaries(result.run_dir / CANARIES_FILE, records)  # the run finds its own canaries
    return Path(result.run_dir), canaries_file
