"""Unicode tables: the pure-Python path splits text exactly like tiktoken (and Hugging Face), even
where the `regex` package knows a newer Unicode version than their engines (newly assigned letters
and digits), so both paths give the same ids on every code point."""

from __future__ import annotations

import json
import warnings

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import UNICODE

from gptlab.tokenizers import BPETokenizer
from gptlab.tokenizers import pretokenize as pt
from gptlab.tokenizers.pretokenize import GPT2_PATTERN, GPT4_PATTERN, ChunkSplitter

EVERYTHING = pt._all_chars()
# every character class and case-insensitive group the built-in patterns use
EXPRESSIONS = [
    r"\p{L}",
    r"\p{N}",
    r"\s",
    r"[^\s\p{L}\p{N}]",
    r"[^\r\n\p{L}\p{N}]",
    r"'(?i:[sdmt]|ll|ve|re)",
]


def gap_sample(limit: int = 1500) -> list[str]:
    """Characters whose class the `regex` package and tiktoken disagree on (evenly sampled); where
    they agree (other library versions), every 97th code point, so the tests still check parity."""
    chars = sorted(pt.unicode_gap_chars()) or list(EVERYTHING[::97])
    step = max(1, len(chars) // limit)
    return chars[::step]


def test_every_code_point_is_code_point_order():
    assert len(EVERYTHING) == 0x110000 - 0x800
    assert [ord(c) for c in EVERYTHING[0xD7FE:0xD802]] == [0xD7FE, 0xD7FF, 0xE000, 0xE001]
    assert EVERYTHING[-1] == "\U0010ffff"


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_aligned_classes_match_tiktoken_on_every_code_point(expression):
    aligned = regex.compile(pt.align_classes(expression, pt.unicode_gaps()), flags=regex.V1)
    text = EVERYTHING if expression[0] != "'" else "".join("'" + c + c for c in EVERYTHING)
    ours = "".join(aligned.findall(text))
    theirs = pt.tiktoken_class_chars(expression, text)
    assert ours == theirs


@pytest.mark.slow  # over 0.4 s: keeps `-m "not slow"` under a minute
@pytest.mark.parametrize("expression", [r"\p{L}", r"\p{N}", r"\s"])
def test_hf_tokenizers_uses_the_same_tables(expression):
    tokenizers = pytest.importorskip("tokenizers")
    keep = tokenizers.pre_tokenizers.Split(tokenizers.Regex(expression), behavior="removed", invert=True)
    hf = "".join(piece for piece, _ in keep.pre_tokenize_str(EVERYTHING))
    assert hf == pt.tiktoken_class_chars(expression, EVERYTHING)


def test_align_classes_rewrites_only_class_references():
    gaps = {"L": ("\u0558\u058b\u058c", ""), "N": ("", "\u0660")}
    out = pt.align_classes(r"a\p{L}+[^\s\p{L}\p{N}]\\p{L}\p{Lu}", gaps)
    assert out == (
        r"a[\p{L}--[\U00000558\U0000058b-\U0000058c]]+"
        r"[^\s[\p{L}--[\U00000558\U0000058b-\U0000058c]][\p{N}||[\U00000660]]]\\p{L}\p{Lu}"
    )
    assert pt.align_classes(GPT2_PATTERN, {}) == GPT2_PATTERN


def test_splitter_uses_plain_regex_for_ordinary_text():
    text = UNICODE.read_text(encoding="utf-8")
    for pattern in (GPT2_PATTERN, GPT4_PATTERN):
        assert ChunkSplitter(pattern)(text) == regex.findall(pattern, text)
    custom = ChunkSplitter(r"\p{L}+|\P{L}")  # custom patterns are used as written
    gap_text = "".join(gap_sample(50))
    assert custom(gap_text) == regex.findall(r"\p{L}+|\P{L}", gap_text)


@pytest.fixture(scope="module")
def gap_text() -> str:
    """The sampled characters in contexts where a class change moves chunk boundaries."""
    return "".join(f"a{c}b {c}{c} :{c}: 1{c}2 '{c}x\n" for c in gap_sample())


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_python_tiktoken_and_hf_agree_on_newly_assigned_characters(gap_text, pattern):
    """Trained on the text itself, so merges run across every chunk boundary in question."""
    tokenizers = pytest.importorskip("tokenizers")
    from gptlab.tokenizers.interop import hf_tokenizer_dict

    tok = BPETokenizer.train([gap_text, gap_text], vocab_size=1200, special_tokens=[], pattern=pattern)
    ids = tok.encode(gap_text, backend="python")
    assert ids == tok.encode(gap_text, backend="tiktoken")
    assert tok.decode(ids) == gap_text
    hf = tokenizers.Tokenizer.from_str(json.dumps(hf_tokenizer_dict(tok)))
    assert hf.encode(gap_text).ids == ids


pieces = st.sampled_from(gap_sample(300)) | st.sampled_from([" ", ":", "a", "1", "'", "\n", "  "])
text_with_gaps = st.lists(pieces | st.text(max_size=8), min_size=1, max_size=30).map("".join)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=text_with_gaps)
def test_python_and_tiktoken_agree_on_a_tokenizer_trained_on_the_text(text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny corpora stop merging early
        for pattern in ("gpt2", "gpt4"):
            tok = BPETokenizer.train(
                [text, text], vocab_size=400, special_tokens=[], pattern=pattern, min_frequency=1
            )
            ids = tok.encode(text, backend="python")
            assert ids == tok.encode(text, backend="tiktoken")
            assert tok.decode(ids) == text
