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
