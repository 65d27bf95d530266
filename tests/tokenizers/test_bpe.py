"""Byte-level BPE: training (against a naive reference), encoding (python == tiktoken, round trips),
special tokens, errors, save/load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from collections import Counter

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import INSTRUCTIONS, SHAKESPEARE, SMS, UNICODE

from gptlab.errors import GptlabError
from gptlab.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer
from gptlab.tokenizers import bpe as bpe_module
from gptlab.tokenizers.bpe import bpe_merge
from gptlab.tokenizers.pretokenize import (
    GPT2_PATTERN,
    GPT4_PATTERN,
    TIKTOKEN_GPT2_PATTERN,
    ChunkSplitter,
    bytes_to_token_str,
)

EOT = "<|endoftext|>"
USER = "<|user|>"
SLICE = 150_000  # characters of tinyshakespeare for the shared test tokenizers
HYPOTHESIS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that stress pre-tokenization and merging: whitespace runs, digits, contractions, emoji
# (with ZWJ and skin tones), mixed scripts, combining marks and special-token look-alikes.
TRICKY_PIECES = [
    " ",
    "  ",
    " " * 70,
    "\n",
    "\n\n",
    "\r\n",
    "\t",
    "\u00a0",
    "\u200b",
    "\u3000",
    "0",
    "123456789",
    "3.14",
    "'s",
    "'LL",
    "'ve",
    "don't",
    "a" * 100,
    "é",
    "e\u0301",
    "Straße",
    "中文字符",
    "日本語のテキスト",
    "한국어",
    "русский",
    "العربية",
    "हिन्दी",
    "🙂",
    "👨‍👩‍👧",
    "👍🏽",
    "🇫🇷",
    EOT,
    "<|endoftext",
    "<|endoftext|",
    "|>",
    USER,
    "<|",
    "ROMEO:",
    "!!!",
    "...",
    "\x00",
    "\x7f",
    "\U0010ffff",
]
tricky_text = st.lists(st.sampled_from(TRICKY_PIECES) | st.text(max_size=20), max_size=30).map("".join)


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return SHAKESPEARE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def unicode_text() -> str:
    return UNICODE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tok(shakespeare, unicode_text) -> BPETokenizer:
    """GPT-2 pattern, trained on English plus many scripts so multi-byte merges exist."""
    return BPETokenizer.train(
        [shakespeare[:SLICE], unicode_text], vocab_size=1024, special_tokens=[EOT, USER]
    )


@pytest.fixture(scope="module")
def tok4(shakespeare, unicode_text) -> BPETokenizer:
    return BPETokenizer.train(
        [shakespeare[:SLICE], unicode_text], vocab_size=1024, special_tokens=[EOT], pattern="gpt4"
    )


# --- training ------------------------------------------------------------------------------------


def test_gpt4_and_tiktoken_gpt2_patterns_are_tiktokens_own(monkeypatch):
    """The patterns as tiktoken's openai_public defines r50k_base / cl100k_base (no download:
    the rank loader is stubbed, only the pattern strings are read)."""
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    assert openai_public.r50k_pat_str == TIKTOKEN_GPT2_PATTERN
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *args, **kwargs: {})
    assert openai_public.cl100k_base()["pat_str"] == GPT4_PATTERN


@HYPOTHESIS
@given(text=tricky_text)
def test_gpt2_pattern_splits_like_hf_byte_level_pre_tokenizer(text):
    """GPT-2's split regex, as Hugging Face's ByteLevel pre-tokenizer implements it."""
    pre_tokenizers = pytest.importorskip("tokenizers.pre_tokenizers")
    hf = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    ours = [bytes_to_token_str(chunk.encode("utf-8")) for chunk in ChunkSplitter(GPT2_PATTERN)(text)]
    assert ours == [piece for piece, _ in hf.pre_tokenize_str(text)]


@pytest.mark.parametrize("path", [SHAKESPEARE, UNICODE], ids=lambda path: path.name)
def test_gpt2_pattern_splits_sample_files_like_hf(path):
    pre_tokenizers = pytest.importorskip("tokenizers.pre_tokenizers")
    text = path.read_text(encoding="utf-8")
    hf = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    ours = [bytes_to_token_str(chunk.encode("utf-8")) for chunk in ChunkSplitter(GPT2_PATTERN)(text)]
    assert ours == [piece for piece, _ in hf.pre_tokenize_str(text)]


def naive_train(
    texts: list[str], pattern: str, num_merges: int, min_frequency: int
) -> list[tuple[bytes, bytes]]:
    """The textbook algorithm: recount every pair before each merge (slow, obviously correct), with
    the documented rules: highest count, then smallest (left bytes, right bytes); skip pairs whose
    concatenation is already a token."""
    words = Counter()
    for text in texts:
        words.update(regex.findall(pattern, text))
    pieces = {tuple(bytes([b]) for b in w.encode("utf-8")): n for w, n in words.items()}
    vocab = {bytes([b]) for b in range(256)}
    merges = []
    while len(merges) < num_merges:
        stats: Counter = Counter()
        for piece, n in pieces.items():
            for pair in zip(piece, piece[1:]):
                stats[pair] += n
        candidates = [(n, p) for p, n in stats.items() if n >= min_frequency and p[0] + p[1] not in vocab]
        if not candidates:
            break
        _, (left, right) = min(candidates, key=lambda c: (-c[0], c[1]))
        merges.append((left, right))
        vocab.add(left + right)
        new_pieces: Counter = Counter()
        for piece, n in pieces.items():
            out, i = [], 0
            while i < len(piece):
                if i + 1 < len(piece) and piece[i] == left and piece[i + 1] == right:
                    out.append(left + right)
                    i += 2
                else:
                    out.append(piece[i])
                    i += 1
            new_pieces[tuple(out)] += n
        pieces = new_pieces
    return merges


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_incremental_training_matches_naive_reference(shakespeare, unicode_text, pattern):
    texts = [shakespeare[:6000], unicode_text[:3000], "aaaaaaa bbbb aaaa " * 20]
    ours = BPETokenizer.train(texts, vocab_size=256 + 150, special_tokens=[], pattern=pattern)
    expected = naive_train(texts, GPT2_PATTERN if pattern == "gpt2" else GPT4_PATTERN, 150, 2)
    assert ours.merges == expected


def test_training_is_deterministic_and_counts_vocab(shakespeare):
    a = BPETokenizer.train(shakespeare[:50_000], vocab_size=600, special_tokens=[EOT, USER])
    b = BPETokenizer.train(shakespeare[:50_000], vocab_size=600, special_tokens=[EOT, USER])
    assert a.to_dict() == b.to_dict()
    assert a.vocab_size == 600 and len(a.merges) == 600 - 256 - 2
    assert a.special_tokens == {EOT: 598, USER: 599} and a.eot_id == 598
    for i, (left, right) in enumerate(a.merges):  # merge i is id 256 + i
        assert a.token_bytes(256 + i) == left + right


_TRAIN_IN_SUBPROCESS = """
import hashlib, sys
from gptlab.tokenizers import BPETokenizer
text = open(sys.argv[1], encoding="utf-8").read()[:60_000]
tok = BPETokenizer.train(text, vocab_size=500)
print(hashlib.sha256(repr(tok.to_dict()).encode()).hexdigest())
"""


def test_training_is_deterministic_across_processes_and_hash_seeds(shakespeare):
    """Same merges whatever the hash seed (set and dict iteration order must not leak in)."""
    digests = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _TRAIN_IN_SUBPROCESS, str(SHAKESPEARE)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(out.stdout.strip())
    import hashlib

    here = BPETokenizer.train(shakespeare[:60_000], vocab_size=500)
    assert digests == {hashlib.sha256(repr(here.to_dict()).encode()).hexdigest()}


def test_train_defaults_and_iterable_input(shakespeare):
    docs = [shakespeare[i : i + 5000] for i in range(0, 30_000, 5000)]
    tok = BPETokenizer.train(docs, vocab_size=300)  # default special tokens: just <|endoftext|>
    assert tok.special_tokens == {EOT: 299} and tok.eot_id == 299 and tok.vocab_size == 300
    assert BPETokenizer.train(iter(docs), vocab_size=300).to_dict() == tok.to_dict()
    assert BPETokenizer.train((d for d in docs), vocab_size=300).to_dict() == tok.to_dict()


def test_progress_bar_only_when_verbose(shakespeare, capsys):
    BPETokenizer.train(shakespeare[:20_000], vocab_size=300, verbose=True)
    err = capsys.readouterr().err
    assert "BPE merges" in err and "43/43" in err  # 300 - 256 - 1 merges, shown on stderr
    BPETokenizer.train(shakespeare[:20_000], vocab_size=300)
    assert capsys.readouterr().err == ""


def test_training_compresses_and_learns_frequent_words(shakespeare):
    text = shakespeare[:100_000]
    tok = BPETokenizer.train(text, vocab_size=1000)
    ids = tok.encode(text)
    assert len(ids) < len(text.encode("utf-8")) / 2.5
    assert [tok.decode([i]) for i in tok.encode(" the")] == [" the"]


def test_training_cuts_out_special_tokens():
    text = f"hello{EOT}world{EOT}" * 50
    with pytest.warns(UserWarning, match="stopped after"):  # 8 merges build hello and world
        tok = BPETokenizer.train(text, vocab_size=300, special_tokens=[EOT])
    assert all(b"<|" not in token and b"|>" not in token for token in tok.mergeable_ranks)
    assert tok.encode(text, allowed_special="all").count(tok.eot_id) == 100


def test_training_stops_early_with_warning_and_is_still_valid():
    with pytest.warns(UserWarning, match="stopped after"):
        tok = BPETokenizer.train("abab cdcd", vocab_size=1000, special_tokens=[EOT])
    assert tok.vocab_size < 1000 and tok.eot_id == tok.vocab_size - 1
    assert tok.decode(tok.encode("abab cdcd zz")) == "abab cdcd zz"


def test_training_on_empty_text_gives_a_byte_tokenizer():
    with pytest.warns(UserWarning):
        tok = BPETokenizer.train("", vocab_size=300, special_tokens=[])
    assert tok.vocab_size == 256 and tok.encode("hi") == [ord("h"), ord("i")]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(vocab_size=256), "at least 257"),
        (dict(vocab_size=300, special_tokens=[EOT, EOT]), "distinct"),
        (dict(vocab_size=300, special_tokens=[""]), "distinct non-empty"),
        (dict(vocab_size=300, min_frequency=0), "min_frequency"),
        (dict(vocab_size=300, pattern="(unclosed"), "invalid pre-tokenization regex"),
    ],
)
def test_bad_training_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(GptlabError, match=match):
        BPETokenizer.train("some text", **kwargs)


def test_training_refuses_lone_surrogates():
    with pytest.raises(GptlabError, match="surrogate"):
        BPETokenizer.train("abc \ud800 def", vocab_size=300)


@pytest.mark.slow  # over a second (many examples or a real corpus); the full suite runs it
def test_full_tinyshakespeare_4096_trains_in_seconds(dataset):
    shakespeare = dataset("tinyshakespeare").read_text(encoding="utf-8")
    start = time.perf_counter()
    tok = BPETokenizer.train(shakespeare, vocab_size=4096)
    seconds = time.perf_counter() - start
    assert tok.vocab_size == 4096
    assert seconds < 15, f"training took {seconds:.1f} s; expected a few seconds"
    ids = tok.encode(shakespeare, backend="python")
    assert ids == tok.encode(shakespeare, backend="tiktoken")
    assert tok.decode(ids) == shakespeare


# --- the merge algorithm --------------------------------------------------------------------------


def naive_bpe(data: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    parts = [bytes([b]) for b in data]
    while True:
        found = [
            (ranks[parts[i] + parts[i + 1]], i)
            for i in range(len(parts) - 1)
            if parts[i] + parts[i + 1] in ranks
        ]
        if not found:
            return parts
        _, i = min(found)
        parts[i : i + 2] = [parts[i] + parts[i + 1]]


@HYPOTHESIS
@given(data=st.binary(max_size=300) | st.sampled_from(["a" * 200, " " * 150, "ab" * 90]).map(str.encode))
def test_bpe_merge_matches_naive_for_short_and_long_chunks(tok, data):
    assert bpe_merge(data, tok.mergeable_ranks) == naive_bpe(data, tok.mergeable_ranks)


# --- encoding -------------------------------------------------------------------------------------


@HYPOTHESIS
@given(text=st.text())
@pytest.mark.parametrize("backend", ["python", "tiktoken"])
def test_round_trip_any_unicode(tok, text, backend):
    assert tok.decode(tok.encode(text, backend=backend)) == text
    assert tok.decode(tok.encode(text, allowed_special="all", backend=backend)) == text


@HYPOTHESIS
@given(text=tricky_text)
def test_python_and_tiktoken_give_identical_ids_on_adversarial_text(tok, tok4, text):
    for t in (tok, tok4):
        for allowed in (set(), "all", {EOT}):
            python = t.encode(text, allowed_special=allowed, backend="python")
            assert python == t.encode(text, allowed_special=allowed, backend="tiktoken")
            assert t.decode(python) == text


@pytest.mark.parametrize("path", [SHAKESPEARE, UNICODE, SMS, INSTRUCTIONS], ids=lambda path: path.name)
def test_python_and_tiktoken_identical_on_sample_files(tok, tok4, path):
    text = path.read_text(encoding="utf-8")
    for t in (tok, tok4):
        ids = t.encode(text, backend="python")
        assert ids == t.encode(text, backend="tiktoken") == t.to_tiktoken().encode_ordinary(text)
        assert t.decode(ids) == text


def test_tiktoken_gets_the_faster_equivalent_gpt2_pattern(tok):
    assert tok.pattern == GPT2_PATTERN and tok.to_tiktoken()._pat_str == TIKTOKEN_GPT2_PATTERN


def test_empty_input(tok):
    assert tok.encode("") == [] == tok.encode("", backend="python")
    assert tok.decode([]) == "" and tok.decode_bytes([]) == b""
    assert tok.encode_batch([]) == []


@pytest.mark.parametrize("backend", ["python", "tiktoken"])
def test_lone_surrogate_is_a_clear_error(tok, backend):
    with pytest.raises(GptlabError, match="surrogate.*character 3"):
        tok.encode("abc\udc80def", backend=backend)


def test_unknown_backend_and_non_str_input(tok):
    with pytest.raises(GptlabError, match="backend"):
        tok.encode("x", backend="rust")
    with pytest.raises(GptlabError, match="str"):
        tok.encode(b"bytes")


def test_cache_is_bounded(tok, monkeypatch):
    monkeypatch.setattr(bpe_module, "ENCODE_CACHE_SIZE", 10)
    fresh = BPETokenizer.from_dict(tok.to_dict())
    text = " ".join(f"w{i}x" for i in range(100))
    assert fresh.encode(text, backend="python") == tok.encode(text, backend="tiktoken")
    assert 0 < len(fresh._cache) <= 10


def test_encode_batch_in_processes_and_threads(tok, shakespeare):
    texts = [shakespeare[i : i + 5000] for i in range(0, 40_000, 5000)] + ["", f"a{EOT}b"]
    expected = [tok.encode(t, allowed_special="all") for t in texts]
    assert tok.encode_batch(texts, allowed_special="all", num_workers=2, backend="python") == expected
    assert tok.encode_batch(texts, allowed_special="all", num_workers=2, backend="tiktoken") == expected
    with pytest.raises(GptlabError, match="num_workers"):
        tok.encode_batch(texts, num_workers=0)


def test_encode_file_in_parallel_pieces_equals_encode(tok, tok4):
    path = SHAKESPEARE
    text = path.read_text(encoding="utf-8")
    for t in (tok, tok4):
        assert t._split_for_workers(text, 2, set()) != [text]  # really cut into pieces
        assert t.encode_file(path, num_workers=2, backend="python") == t.encode(text)


# --- special tokens -------------------------------------------------------------------------------


def test_special_tokens_are_text_by_default(tok):
    text = f"Hello{EOT} world{USER}"
    ids = tok.encode(text)
    assert tok.eot_id not in ids and tok.special_tokens[USER] not in ids
    assert tok.decode(ids) == text
    assert ids == tok.encode(text, allowed_special=set())


def test_allowed_special_turns_text_into_special_ids(tok):
    text = f"Hello{EOT} world{USER}"
    plain = tok.encode("Hello") + [tok.eot_id] + tok.encode(" world") + [tok.special_tokens[USER]]
    assert tok.encode(text, allowed_special="all") == plain
    only_eot = tok.encode(text, allowed_special={EOT})
    assert only_eot[: len(tok.encode("Hello")) + 1] == tok.encode("Hello") + [tok.eot_id]
    assert tok.special_tokens[USER] not in only_eot
    assert tok.decode(plain) == text


def test_disallowed_special_raises_like_tiktoken(tok):
    with pytest.raises(GptlabError, match="special token '<\\|endoftext\\|>' at character 5"):
        tok.encode(f"Hello{EOT}", disallowed_special="all")
    with pytest.raises(GptlabError, match="user"):
        tok.encode(f"a{USER}", allowed_special={EOT}, disallowed_special="all")
    assert tok.encode(f"a{EOT}", allowed_special={EOT}, disallowed_special="all")[-1] == tok.eot_id
    assert tok.encode("no specials here", disallowed_special="all") == tok.encode("no specials here")


@pytest.mark.parametrize("allowed", [{"<|nope|>"}, "<|endoftext|>"])
def test_bad_allowed_special_is_a_clear_error(tok, allowed):
    with pytest.raises(GptlabError, match="allowed_special"):
        tok.encode("x", allowed_special=allowed)


def test_eot_id_is_none_without_endoftext(shakespeare):
    tok = BPETokenizer.train(shakespeare[:20_000], vocab_size=300, special_tokens=[USER])
    assert tok.eot_id is None and tok.special_tokens == {USER: 299}


# --- decoding -------------------------------------------------------------------------------------


def test_decode_partial_utf8_uses_replacement_and_decode_bytes_is_exact(tok):
    ids = tok.encode("🙂", backend="python")
    raw = b"".join(tok.token_bytes(i) for i in ids)
    assert raw == "🙂".encode()
    assert tok.decode_bytes(ids) == raw
    assert tok.decode(list(tok.encode("a")) + [0xF0]) == "a\ufffd"  # byte 0xF0 alone


@pytest.mark.parametrize("bad", [10**6, -1, 1024])
def test_decode_unknown_id_is_a_clear_error(tok, bad):
    with pytest.raises(GptlabError, match="unknown token id"):
        tok.decode([1, 2, bad])


def test_decode_accepts_numpy_and_torch_integers(tok):
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    ids = tok.encode("Hello there")
    assert tok.decode(np.array(ids)) == "Hello there"
    assert tok.decode(torch.tensor(ids)) == "Hello there"
    with pytest.raises(GptlabError):
        tok.decode([1.5])


# --- save / load ----------------------------------------------------------------------------------


def test_save_load_round_trip(tok, tok4, tmp_path, unicode_text):
    for t in (tok, tok4):
        t.save(tmp_path / "tok.json")
        loaded = BPETokenizer.load(tmp_path / "tok.json")
        via_any = load_tokenizer(tmp_path / "tok.json")
        assert isinstance(via_any, BPETokenizer) and isinstance(via_any, Tokenizer)
        assert loaded.to_dict() == t.to_dict() == via_any.to_dict()
        assert loaded.encode(unicode_text, allowed_special="all") == t.encode(
            unicode_text, allowed_special="all"
        )
        data = json.loads((tmp_path / "tok.json").read_text(encoding="utf-8"))
        assert data["format"] == "gptlab-tokenizer" and data["version"] == 1 and data["type"] == "bpe"


def test_load_tokenizer_dispatches_on_type(tmp_path):
    char = CharTokenizer.train("hello world")
    char.save(tmp_path / "char.json")
    assert isinstance(load_tokenizer(tmp_path / "char.json"), CharTokenizer)
    with pytest.raises(GptlabError, match="'type' is 'char', expected 'bpe'"):
        BPETokenizer.load(tmp_path / "char.json")


def _corrupt(data: dict, **changes) -> dict:
    data = json.loads(json.dumps(data))
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(format="something-else"), "'format'"),
        (dict(version=2), "'version' is 2"),
        (dict(type="wordpiece"), "'type' is 'wordpiece'"),
        (dict(vocab=None), "'vocab'"),
        (dict(merges=None), "'merges'"),
        (dict(special_tokens=[1, 2]), "'special_tokens'"),
        (dict(pattern="(["), "invalid pre-tokenization regex"),
        (dict(special_tokens={EOT: 5}), "already ids of ordinary tokens"),
        (dict(special_tokens={EOT: "x"}), "non-negative integer id"),
    ],
)
def test_corrupt_tokenizer_file_errors_name_file_and_field(tok, tmp_path, change, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_corrupt(tok.to_dict(), **change)), encoding="utf-8")
    for loader in (BPETokenizer.load, load_tokenizer):
        with pytest.raises(GptlabError, match=match) as info:
            loader(path)
        assert str(path) in str(info.value)


def test_corrupt_vocab_and_merges_are_caught(tok, tmp_path):
    path = tmp_path / "bad.json"
    cases = []
    data = tok.to_dict()
    cases.append((_corrupt(data, vocab=data["vocab"][:100]), "256 bytes"))
    cases.append((_corrupt(data, vocab=[*data["vocab"], "a b"]), "byte-to-unicode"))
    cases.append((_corrupt(data, vocab=[*data["vocab"], data["vocab"][300]]), "same token twice"))
    cases.append((_corrupt(data, merges=[*data["merges"], "onlyone"]), "'merges' entry"))
    cases.append((_corrupt(data, merges=[*data["merges"], "zzzq zzzq"]), "not in the vocabulary"))
    for bad, match in cases:
        path.write_text(json.dumps(bad), encoding="utf-8")
        with pytest.raises(GptlabError, match=match):
            load_tokenizer(path)


def test_unreadable_files_are_clear_errors(tok, tmp_path):
    good = tmp_path / "tok.json"
    tok.save(good)
    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    for path, match in [
        (truncated, "not valid JSON"),
        (binary, "not UTF-8"),
        (tmp_path / "missing.json", "not found"),
        (tmp_path, "directory"),
    ]:
        with pytest.raises(GptlabError, match=match) as info:
            load_tokenizer(path)
        assert str(path) in str(info.value)
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(GptlabError, match="expected a JSON object"):
        load_tokenizer(tmp_path / "list.json")


def test_custom_pattern_works_and_must_cover_the_text(tmp_path):
    words = BPETokenizer.train(
        "hello world, hi there " * 30, vocab_size=266, special_tokens=[], pattern=r"\S+|\s+"
    )
    assert words.decode(words.encode("hello  world\n", backend="python")) == "hello  world\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lossy = BPETokenizer.train("abc abc", vocab_size=260, special_tokens=[], pattern=r"[a-z]+")
    for backend in ("python", "tiktoken"):
        with pytest.raises(GptlabError, match="skips characters"):
            lossy.encode("abc abc", backend=backend)
