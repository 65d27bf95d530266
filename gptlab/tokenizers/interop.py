"""Import and export byte-level BPE tokenizers in other libraries' formats.

- tiktoken: ``from_tiktoken(encoding)`` / ``BPETokenizer.to_tiktoken()``, and the ``.tiktoken``
  rank file (one ``base64(token bytes) rank`` line per token; it holds neither the pattern nor the
  special tokens, so those are arguments) with ``load_tiktoken_file`` / ``save_tiktoken_file``.
- Hugging Face ``tokenizer.json`` (a BPE model with a ByteLevel pre-tokenizer, optionally after a
  Split regex, and ``added_tokens`` as special tokens): ``load_hf_tokenizer_json`` /
  ``save_hf_tokenizer_json``; a whole HF GPT-2 tokenizer folder with ``load_hf_gpt2_tokenizer`` /
  ``save_hf_gpt2_tokenizer``.
- GPT-2's original ``encoder.json`` + ``vocab.bpe`` (HF calls them vocab.json + merges.txt):
  ``load_gpt2_files`` / ``save_gpt2_files``.

gptlab encodes like tiktoken: the rank of a pair's concatenation decides which pair merges first,
and the rank is the id. Files whose ids are in merge order (GPT-2's, and every HF BpeTrainer
output) mean the same thing under that rule; a file whose ids are not in merge order is refused
rather than silently encoded differently.

Unicode versions: pre-tokenization asks the regex engine which characters are letters and digits.
gptlab splits like tiktoken (see ``pretokenize``), and Hugging Face ``tokenizers`` (Oniguruma) uses
the same Unicode tables as tiktoken in the versions gptlab is tested with; if a future release of
one of them moves to a newer Unicode version, text with newly assigned characters may be encoded
differently by an exported ``tokenizer.json`` (the parity tests would then say so).

Threat model: every file here may come from anyone. They are parsed as JSON or text only, each
field is checked, and a malformed file gives a GptlabError naming the file and the problem.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gptlab.errors import GptlabError
from gptlab.io import atomic_write_json, atomic_write_text, read_json, read_text
from gptlab.tokenizers.base import EOT, Tokenizer
from gptlab.tokenizers.bpe import NUM_BYTES, BPETokenizer
from gptlab.tokenizers.pretokenize import (
    GPT2_PATTERN,
    TIKTOKEN_GPT2_PATTERN,
    bytes_to_token_str,
    token_str_to_bytes,
)

if TYPE_CHECKING:
    import tiktoken

GPT2_MERGES_HEADER = "#version: 0.2"
HF_VOCAB_FILE = "vocab.json"
HF_MERGES_FILE = "merges.txt"
HF_TOKENIZER_FILE = "tokenizer.json"
HF_TOKENIZER_CONFIG_FILE = "tokenizer_config.json"

# --- tiktoken -------------------------------------------------------------------------------------


def from_tiktoken(encoding: tiktoken.Encoding) -> BPETokenizer:
    """A BPETokenizer with the ranks, pattern and special tokens of a ``tiktoken.Encoding``."""
    pattern = encoding._pat_str
    return BPETokenizer(
        dict(encoding._mergeable_ranks),
        dict(encoding._special_tokens),
        GPT2_PATTERN if pattern == TIKTOKEN_GPT2_PATTERN else pattern,
        source=f"tiktoken encoding {encoding.name!r}",
    )


def to_tiktoken(tokenizer: BPETokenizer) -> tiktoken.Encoding:
    """``tokenizer.to_tiktoken()``: a tiktoken Encoding giving the same ids."""
    return tokenizer.to_tiktoken()


def load_tiktoken_file(
    path: str | os.PathLike, pattern: str = "gpt2", special_tokens: dict[str, int] | None = None
) -> BPETokenizer:
    """Read a ``.tiktoken`` rank file (tiktoken's ``load_tiktoken_bpe`` format)."""
    path = Path(path)
    text = read_text(path, "tiktoken rank file")
    ranks: dict[bytes, int] = {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line:
            continue
        fields = line.split()
        try:
            token, rank = base64.b64decode(fields[0], validate=True), int(fields[1])
            if len(fields) != 2:
                raise ValueError
        except (IndexError, ValueError, binascii.Error):
            raise GptlabError(
                f"tiktoken rank file {path}, line {line_number}: "
                f"expected 'BASE64TOKEN RANK', got {line[:80]!r}"
            ) from None
        ranks[token] = rank
    return BPETokenizer(ranks, special_tokens, pattern, source=f"tiktoken rank file {path}")


def save_tiktoken_file(tokenizer: BPETokenizer, path: str | os.PathLike) -> Path:
    """Write the ranks as a ``.tiktoken`` file (pattern and special tokens are not part of it)."""
    tokenizer = require_bpe(tokenizer, "a .tiktoken file")
    lines = (
        f"{base64.b64encode(token).decode('ascii')} {rank}\n"
        for token, rank in sorted(tokenizer.mergeable_ranks.items(), key=lambda kv: kv[1])
    )
    return atomic_write_text(path, "".join(lines))


# --- GPT-2's encoder.json + vocab.bpe ---------------------------------------------------------------


def load_gpt2_files(encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike) -> BPETokenizer:
    """GPT-2's original tokenizer files (or HF's vocab.json + merges.txt). Entries of
    encoder.json that are neither a byte nor built by a merge (``<|endoftext|>``) become special tokens."""
    encoder_json, vocab_bpe = Path(encoder_json), Path(vocab_bpe)
    encoder = read_json(encoder_json, "GPT-2 encoder file")
    source = f"GPT-2 encoder file {encoder_json}"
    if not isinstance(encoder, dict) or not encoder:
        raise GptlabError(f"{source}: expected a JSON object {{token: id}}")
    merges = _read_merges_file(vocab_bpe)
    merged = {a + b for a, b in merges}
    ranks: dict[bytes, int] = {}
    specials: dict[str, int] = {}
    for token, token_id in encoder.items():
        if not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
            raise GptlabError(f"{source}: token {token!r} has invalid id {token_id!r}")
        data = _try_token_bytes(token)
        if data is not None and (len(data) == 1 or data in merged):
            ranks[data] = token_id
        else:
            specials[token] = token_id
    _check_merge_order(ranks, merges, f"GPT-2 files {encoder_json} + {vocab_bpe}")
    return BPETokenizer(
        ranks, specials, GPT2_PATTERN, merges, source=f"GPT-2 files {encoder_json} + {vocab_bpe}"
    )


def save_gpt2_files(
    tokenizer: BPETokenizer, encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike
) -> tuple[Path, Path]:
    """Write encoder.json + vocab.bpe as GPT-2 / HF's GPT2Tokenizer read them. Only for the GPT-2
    pre-tokenization pattern, since these files cannot say which pattern to use."""
    tokenizer = require_bpe(tokenizer, "GPT-2 encoder.json + vocab.bpe files")
    if tokenizer.pattern != GPT2_PATTERN:
        raise GptlabError(
            "GPT-2 encoder.json + vocab.bpe files always mean GPT-2's pre-tokenization pattern, but this "
            "tokenizer uses another one; export a Hugging Face tokenizer.json instead"
        )
    encoder = _hf_vocab(tokenizer)
    merges = "".join(f"{bytes_to_token_str(a)} {bytes_to_token_str(b)}\n" for a, b in tokenizer.merges)
    atomic_write_json(encoder_json, encoder, indent=None)
    atomic_write_text(vocab_bpe, f"{GPT2_MERGES_HEADER}\n{merges}")
    return Path(encoder_json), Path(vocab_bpe)


def _read_merges_file(path: Path) -> list[tuple[bytes, bytes]]:
    text = read_text(path, "GPT-2 merges file")
    merges = []
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line or (line_number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise GptlabError(
                f"GPT-2 merges file {path}, line {line_number}: expected 'LEFT RIGHT', got {line[:80]!r}"
            )
        where = f"GPT-2 merges file {path}, line {line_number}"
        merges.append((token_str_to_bytes(parts[0], where), token_str_to_bytes(parts[1], where)))
    return merges


# --- Hugging Face tokenizer.json --------------------------------------------------------------------


def load_hf_tokenizer_json(path: str | os.PathLike) -> BPETokenizer:
    """A Hugging Face ``tokenizer.json`` of a byte-level BPE model (GPT-2, or HF's BpeTrainer with a
    ByteLevel pre-tokenizer); other model types and normalizers are refused with a GptlabError."""
    path = Path(path)
    data = read_json(path, "Hugging Face tokenizer file")
    source = f"Hugging Face tokenizer file {path}"
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise GptlabError(f"{source}: missing field 'model' (is this a Hugging Face tokenizer.json?)")
    model = data["model"]
    if model.get("type") != "BPE":
        raise GptlabError(
            f"{source}: model type {model.get('type')!r} is not supported, only byte-level 'BPE'"
        )
    for field in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(field):
            raise GptlabError(
                f"{source}: model.{field} {model[field]!r} is not supported (byte-level BPE has none)"
            )
    if model.get("dropout"):
        raise GptlabError(f"{source}: model.dropout is not supported (gptlab encodes deterministically)")
    if data.get("normalizer") is not None:
        raise GptlabError(f"{source}: a normalizer is not supported (byte-level BPE keeps text as is)")
    pattern = _hf_pattern(data.get("pre_tokenizer"), source)
    vocab, raw_merges = model.get("vocab"), model.get("merges")
    if not isinstance(vocab, dict) or not isinstance(raw_merges, list):
        raise GptlabError(f"{source}: model.vocab must be an object and model.merges a list")
    specials = _hf_added_tokens(data.get("added_tokens", []), source)
    ranks: dict[bytes, int] = {}
    for token, token_id in vocab.items():
        if token in specials:
            continue
        if not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
            raise GptlabError(f"{source}: model.vocab: token {token!r} has invalid id {token_id!r}")
        ranks[token_str_to_bytes(token, f"{source}, model.vocab")] = token_id
    merges = []
    for i, merge in enumerate(raw_merges):
        parts = merge.split(" ") if isinstance(merge, str) else merge
        if not isinstance(parts, list) or len(parts) != 2 or not all(isinstance(p, str) and p for p in parts):
            raise GptlabError(
                f"{source}: model.merges entry {i} must be 'LEFT RIGHT' or [LEFT, RIGHT], got {merge!r}"
            )
        where = f"{source}, model.merges entry {i}"
        merges.append((token_str_to_bytes(parts[0], where), token_str_to_bytes(parts[1], where)))
    _check_merge_order(ranks, merges, source)
    return BPETokenizer(ranks, specials, pattern, merges, source=source)


def save_hf_tokenizer_json(tokenizer: BPETokenizer, path: str | os.PathLike) -> Path:
    """Write a ``tokenizer.json`` that ``tokenizers.Tokenizer.from_file`` and transformers'
    ``PreTrainedTokenizerFast`` load, encoding like gptlab (special tokens always recognized, as
    HF does with added tokens: compare with ``encode(text, allowed_special="all")``)."""
    return atomic_write_json(path, hf_tokenizer_dict(tokenizer), indent=None)


def hf_tokenizer_dict(tokenizer: BPETokenizer) -> dict[str, Any]:
    """The ``tokenizer.json`` content as a dict (see ``save_hf_tokenizer_json``)."""
    tokenizer = require_bpe(tokenizer, "a Hugging Face tokenizer.json")
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    if tokenizer.pattern == GPT2_PATTERN:  # HF's ByteLevel regex is GPT-2's
        pre_tokenizer = byte_level
    else:
        pre_tokenizer = {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": tokenizer.pattern},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {**byte_level, "use_regex": False},
            ],
        }
    added = [
        {
            "id": token_id,
            "content": token,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for token, token_id in sorted(tokenizer.special_tokens.items(), key=lambda kv: kv[1])
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {**byte_level, "trim_offsets": False},
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            # tiktoken's rule, which gptlab follows: a chunk that is a token is that token
            "ignore_merges": True,
            "vocab": {
                bytes_to_token_str(t): i
                for t, i in sorted(tokenizer.mergeable_ranks.items(), key=lambda kv: kv[1])
            },
            "merges": [[bytes_to_token_str(a), bytes_to_token_str(b)] for a, b in tokenizer.merges],
        },
    }


def load_hf_gpt2_tokenizer(hf_dir: str | os.PathLike) -> BPETokenizer:
    """The tokenizer of a Hugging Face GPT-2 folder: tokenizer.json, else vocab.json + merges.txt."""
    hf_dir = Path(hf_dir)
    if (hf_dir / HF_TOKENIZER_FILE).is_file():
        return load_hf_tokenizer_json(hf_dir / HF_TOKENIZER_FILE)
    if (hf_dir / HF_VOCAB_FILE).is_file() and (hf_dir / HF_MERGES_FILE).is_file():
        return load_gpt2_files(hf_dir / HF_VOCAB_FILE, hf_dir / HF_MERGES_FILE)
    raise GptlabError(
        f"no tokenizer in {hf_dir}: expected {HF_TOKENIZER_FILE}, or {HF_VOCAB_FILE} + {HF_MERGES_FILE}"
    )


def save_hf_gpt2_tokenizer(tokenizer: Tokenizer, out_dir: str | os.PathLike) -> Path:
    """Write tokenizer.json and tokenizer_config.json (plus vocab.json + merges.txt when the pattern
    is GPT-2's) so that ``transformers.AutoTokenizer.from_pretrained(out_dir)`` loads the tokenizer."""
    tokenizer = require_bpe(tokenizer, "a Hugging Face tokenizer folder")
    out_dir = Path(out_dir)
    gpt2_pattern = tokenizer.pattern == GPT2_PATTERN
    if gpt2_pattern:
        save_gpt2_files(tokenizer, out_dir / HF_VOCAB_FILE, out_dir / HF_MERGES_FILE)
    save_hf_tokenizer_json(tokenizer, out_dir / HF_TOKENIZER_FILE)
    config: dict[str, Any] = {
        "tokenizer_class": "GPT2Tokenizer" if gpt2_pattern else "PreTrainedTokenizerFast",
        "add_prefix_space": False,
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
    }
    if tokenizer.eot_id is not None:
        config.update(bos_token=EOT, eos_token=EOT, unk_token=EOT)
    atomic_write_json(out_dir / HF_TOKENIZER_CONFIG_FILE, config)
    return out_dir


def _hf_pattern(pre_tokenizer: Any, source: str) -> str:
    """The split regex of a ByteLevel pre-tokenizer, alone or after one Split(Regex)."""

    def unsupported() -> GptlabError:
        return GptlabError(
            f"{source}: pre_tokenizer {json.dumps(pre_tokenizer)[:200]} is not supported; "
            "expected ByteLevel, "
            "or a Sequence of Split(Regex) and ByteLevel(use_regex=false)"
        )

    if not isinstance(pre_tokenizer, dict):
        raise unsupported()
    steps = pre_tokenizer.get("pretokenizers") if pre_tokenizer.get("type") == "Sequence" else [pre_tokenizer]
    if not isinstance(steps, list) or not steps or not all(isinstance(s, dict) for s in steps):
        raise unsupported()
    *splits, byte_level = steps
    if byte_level.get("type") != "ByteLevel" or byte_level.get("add_prefix_space"):
        raise unsupported()
    if not splits and byte_level.get("use_regex", True):
        return GPT2_PATTERN
    if len(splits) == 1 and not byte_level.get("use_regex", True):
        split = splits[0]
        regex = split.get("pattern", {}).get("Regex") if isinstance(split.get("pattern"), dict) else None
        if (
            split.get("type") == "Split"
            and isinstance(regex, str)
            and split.get("behavior") == "Isolated"
            and not split.get("invert")
        ):
            return regex
    raise unsupported()


def _hf_added_tokens(added: Any, source: str) -> dict[str, int]:
    if not isinstance(added, list):
        raise GptlabError(f"{source}: field 'added_tokens' must be a list")
    specials = {}
    for i, entry in enumerate(added):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("content"), str)
            or not isinstance(entry.get("id"), int)
        ):
            raise GptlabError(
                f"{source}: added_tokens entry {i} needs a string 'content' and an integer 'id'"
            )
        specials[entry["content"]] = entry["id"]
    return specials


# --- shared helpers ---------------------------------------------------------------------------------


def _hf_vocab(tokenizer: BPETokenizer) -> dict[str, int]:
    """{printable token: id} with the special tokens as written, as in GPT-2's encoder.json."""
    vocab = {
        bytes_to_token_str(t): i for t, i in sorted(tokenizer.mergeable_ranks.items(), key=lambda kv: kv[1])
    }
    for token, token_id in sorted(tokenizer.special_tokens.items(), key=lambda kv: kv[1]):
        if token in vocab:
            raise GptlabError(
                f"special token {token!r} reads like the ordinary token {vocab[token]} "
                "in GPT-2's file format, "
                "so encoder.json cannot hold both"
            )
        vocab[token] = token_id
    return vocab


def _check_merge_order(ranks: dict[bytes, int], merges: list[tuple[bytes, bytes]], source: str) -> None:
    """Each token built by a merge must get a higher id than the tokens built before it (see the
    module docstring). A merge may rebuild an existing token (HF's trainer writes such duplicates)."""
    if len(ranks) < NUM_BYTES:
        raise GptlabError(f"{source}: only {len(ranks)} ordinary tokens; byte-level BPE needs all 256 bytes")
    last = -1
    built: set[bytes] = set()
    for i, (left, right) in enumerate(merges):
        for part in (left, right, left + right):
            if part not in ranks:
                raise GptlabError(
                    f"{source}: merge {i} ({bytes_to_token_str(left)} {bytes_to_token_str(right)}) uses "
                    f"{bytes_to_token_str(part)!r}, which is not in the vocabulary"
                )
        token = left + right
        if token in built:
            continue
        if ranks[token] <= last:
            raise GptlabError(
                f"{source}: merge {i} builds id {ranks[token]} after a merge built id {last}; gptlab needs "
                "token ids in merge order (as GPT-2 and Hugging Face's BpeTrainer write them)"
            )
        built.add(token)
        last = ranks[token]


def _try_token_bytes(token: str) -> bytes | None:
    try:
        return token_str_to_bytes(token, "")
    except GptlabError:
        return None


def require_bpe(tokenizer: Any, target: str) -> BPETokenizer:
    if not isinstance(tokenizer, BPETokenizer):
        raise GptlabError(
            f"only byte-level BPE tokenizers can be written as {target}, got {type(tokenizer).__name__}"
        )
    return tokenizer
