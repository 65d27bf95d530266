"""The small text fixtures in tests/data (what each is and where it comes from: tests/data/README.md).

Tests that only need some text read these; tests about the real datasets take them through the
``dataset`` fixture instead (marker ``data``)."""

from __future__ import annotations

import json
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "data"
SHAKESPEARE = (
    SAMPLES / "shakespeare-excerpt.txt"
)  # 48 KB of tinyshakespeare: its first 1,809 lines and 6 later ones, all 65 of its characters
UNICODE = SAMPLES / "unicode-mixed.txt"  # one line per script (30 scripts), symbols, emoji
INSTRUCTIONS = SAMPLES / "instructions.json"  # 70 Alpaca-format records (36 without input)
SMS = SAMPLES / "sms.tsv"  # 40 'label<TAB>text' rows (29 ham, 11 spam), no header
TRANSLATIONS = SAMPLES / "translations.jsonl"  # 12 {"en", "de"} caption-like pairs


def char_run(
    folder: Path, alphabet: str, block_size: int = 32, n_layer: int = 2, n_embd: int = 48, extra=None
) -> Path:
    """A seeded random tiny GPT over a char tokenizer of ``alphabet`` (+ <|endoftext|>), saved as a
    run in ``folder``: the base model fine-tuning and generation tests start from."""
    import torch

    from gptlab.model import GPT, GPTConfig
    from gptlab.rundir import save_model
    from gptlab.tokenizers.base import EOT
    from gptlab.tokenizers.char import CharTokenizer

    tok = CharTokenizer.train(alphabet, special_tokens=[EOT])
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=tok.vocab_size,
        block_size=block_size,
        n_layer=n_layer,
        n_head=2,
        n_embd=n_embd,
        dropout=0.0,
    )
    return save_model(folder, GPT(config), tok, extra=extra)


# the overrides of a training run that takes about a second: char tokens of the Shakespeare excerpt,
# a one-block GPT 16 wide, batches of 2, one eval batch, no samples, no progress bar
TINY_TRAINING = [
    f"data.input={json.dumps(str(SHAKESPEARE))}",
    "data.tokenizer=char",
    "model.block_size=16",
    "model.n_layer=1",
    "model.n_head=2",
    "model.n_embd=16",
    "train.batch_size=2",
    "train.eval_batches=1",
    "train.log_every=1",
    "train.sample_tokens=0",
    "train.progress=false",
    "train.dtype=float32",
]
