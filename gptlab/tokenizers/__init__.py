"""Tokenizers: byte-level BPE (GPT-2 style), character-level, and import/export of other formats.

``load_tokenizer(path)`` reads any gptlab tokenizer file and returns the right class.
"""

from __future__ import annotations

import os

from gptlab.errors import GptlabError
from gptlab.io import read_json
from gptlab.tokenizers.base import EOT, Tokenizer, check_header
from gptlab.tokenizers.bpe import BPETokenizer
from gptlab.tokenizers.char import CharTokenizer

TOKENIZER_TYPES: dict[str, type[Tokenizer]] = {"bpe": BPETokenizer, "char": CharTokenizer}


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a gptlab tokenizer JSON file, whatever its type ("bpe" or "char")."""
    data = read_json(path, "tokenizer file")
    source = f"tokenizer file {os.fspath(path)}"
    kind = check_header(data, source)
    if kind not in TOKENIZER_TYPES:
        raise GptlabError(f"{source}: field 'type' is {kind!r}, expected one of {sorted(TOKENIZER_TYPES)}")
    return TOKENIZER_TYPES[kind].from_dict(data, source=source)


__all__ = ["EOT", "BPETokenizer", "CharTokenizer", "Tokenizer", "load_tokenizer", "TOKENIZER_TYPES"]
