"""The small text fixtures in tests/data (what each is and where it comes from: tests/data/README.md).

Tests that only need some text read these; tests about the real datasets take them through the
``dataset`` fixture instead (marker ``data``)."""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "data"
SHAKESPEARE = (
    SAMPLES / "shakespeare-excerpt.txt"
)  # 48 KB of tinyshakespeare: its first 1,809 lines and 6 later ones, all 65 of its characters
UNICODE = SAMPLES / "unicode-mixed.txt"  # one line per script (30 scripts), symbols, emoji
INSTRUCTIONS = SAMPLES / "instructions.json"  # 70 Alpaca-format records (36 without input)
SMS = SAMPLES / "sms.tsv"  # 40 'label<TAB>text' rows (29 ham, 11 spam), no header
