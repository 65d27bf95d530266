"""Character-level tokenizer: vocabulary, round trips, unseen characters, special tokens, save/load."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import SHAKESPEARE

from gptlab.errors import GptlabError
from gptlab.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer

EOT = "<|endoftext|>"
USER = "<|user|>"
UNK = "<unk>"
HYPOTHESIS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A small corpus whose alphabet includes the characters of the special tokens, combining marks,
# astral characters and whitespace, so special-token text can also be spelled with ordinary chars.
MIXED = f"Hi! Hello, wörld!\n\te\u0301 🙂 中文 {EOT} {USER} <unk> naïve\r\n"


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return SHAKESPEARE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def shakespeare_tok(shakespeare) -> CharTokenizer:
    return CharTokenizer.train(shakespeare)


@pytest.fixture(scope="module")
def mixed_tok() -> CharTokenizer:
    return CharTokenizer.train(MIXED, special_tokens=[EOT, USER])


# --- vocabulary -----------------------------------------------------------------------------------


def test_shakespeare_char_vocabulary_is_the_sorted_character_set(dataset):
    shakespeare = dataset("tinyshakespeare").read_text(encoding="utf-8")
    tok = CharTokenizer.train(shakespeare)
    # nanoGPT's data/shakespeare_char: chars = sorted(set(text)), 65 of them, stoi = position
    assert tok.chars == sorted(set(shakespeare))
    assert tok.vocab_size == len(tok.chars) == 65
    assert tok.special_tokens == {} and tok.eot_id is None
    stoi = {ch: i for i, ch in enumerate(sorted(set(shakespeare)))}
    ids = tok.encode(shakespeare)
    assert ids == [stoi[ch] for ch in shakespeare]
    assert tok.decode(ids) == shakespeare


def test_ids_follow_code_point_order_and_specials_come_after():
    tok = CharTokenizer.train(["cab", "ba"], special_tokens=[EOT, USER])
    assert tok.chars == ["a", "b", "c"]
    assert tok.encode("abc") == [0, 1, 2]
    assert tok.special_tokens == {EOT: 3, USER: 4} and tok.eot_id == 3 and tok.vocab_size == 5
    tok.special_tokens[EOT] = 99  # a copy: the tokenizer is not changed
    assert tok.special_tokens[EOT] == 3


def test_training_is_deterministic_and_accepts_iterables(shakespeare):
    pieces = [shakespeare[i : i + 10_000] for i in range(0, 100_000, 10_000)]
    from_list = CharTokenizer.train(pieces)
    from_generator = CharTokenizer.train(p for p in pieces)
    from_string = CharTokenizer.train("".join(pieces))
    assert from_list.to_dict() == from_generator.to_dict() == from_string.to_dict()


def test_token_bytes_and_decode_bytes(mixed_tok):
    tok = mixed_tok
    assert tok.token_bytes(tok.stoi["🙂"]) == "🙂".encode()
    assert tok.token_bytes(tok.special_tokens[EOT]) == EOT.encode()
    text = f"wörld {EOT}🙂"
    ids = tok.encode(text, allowed_special="all")
    assert tok.decode_bytes(ids) == text.encode("utf-8")
    with pytest.raises(GptlabError, match="unknown token id"):
        tok.token_bytes(tok.vocab_size)


# --- round trips ----------------------------------------------------------------------------------


@HYPOTHESIS
@given(data=st.data())
def test_round_trip_over_the_alphabet(mixed_tok, data):
    text = data.draw(st.text(alphabet=st.sampled_from(mixed_tok.chars)))
    ids = mixed_tok.encode(text)
    assert len(ids) == len(text) and all(0 <= i < len(mixed_tok.chars) for i in ids)
    assert mixed_tok.decode(ids) == text


@HYPOTHESIS
@given(data=st.data())
def test_round_trip_with_special_tokens_allowed_or_not(mixed_tok, data):
    pieces = st.sampled_from(mixed_tok.chars) | st.sampled_from([EOT, USER])
    text = "".join(data.draw(st.lists(pieces, max_size=40)))
    plain = mixed_tok.encode(text)
    special = mixed_tok.encode(text, allowed_special="all")
    assert mixed_tok.decode(plain) == mixed_tok.decode(special) == text
    assert len(plain) == len(text)  # not allowed: every character is its own id
    assert special.count(mixed_tok.eot_id) == text.count(EOT)
    assert special.count(mixed_tok.special_tokens[USER]) == text.count(USER)


def test_code_points_not_graphemes(mixed_tok):
    # "e" + combining acute is two code points, hence two ids, and comes back unchanged
    assert len(mixed_tok.encode("e\u0301")) == 2
    assert mixed_tok.decode(mixed_tok.encode("e\u0301")) == "e\u0301"


# --- unseen characters ----------------------------------------------------------------------------


def test_unseen_character_is_an_error_with_its_position(shakespeare_tok):
    with pytest.raises(GptlabError, match=r"'Ω' \(U\+03A9\) at position 6 .*unk=") as info:
        shakespeare_tok.encode("hello Ωmega")
    assert "65 characters" in str(info.value)


def test_unseen_character_position_counts_from_the_start_of_the_text(mixed_tok):
    text = f"He{EOT}l{USER}oZ"  # "Z" is not in MIXED, the rest is
    with pytest.raises(GptlabError, match=f"'Z' .* at position {text.index('Z')} "):
        mixed_tok.encode(text, allowed_special="all")
    with pytest.raises(GptlabError, match=f"'Z' .* at position {text.index('Z')} "):
        mixed_tok.encode(text)


def test_unk_mode_maps_unseen_characters_to_unk(shakespeare):
    tok = CharTokenizer.train(shakespeare, special_tokens=[EOT], unk=UNK)
    assert tok.unk == UNK and tok.special_tokens == {EOT: 65, UNK: 66} and tok.vocab_size == 67
    unk_id = tok.special_tokens[UNK]
    ids = tok.encode("héllo 🙂!")
    assert ids == [tok.stoi["h"], unk_id, tok.stoi["l"], tok.stoi["l"], tok.stoi["o"]] + [
        tok.stoi[" "],
        unk_id,
        tok.stoi["!"],
    ]
    assert tok.decode(ids) == f"h{UNK}llo {UNK}!"  # lossy, as documented
    assert tok.encode("hello") == [tok.stoi[ch] for ch in "hello"]  # seen text is unaffected


def test_unk_listed_among_special_tokens_is_not_duplicated():
    tok = CharTokenizer.train("abc", special_tokens=[UNK, EOT], unk=UNK)
    assert tok.special_tokens == {UNK: 3, EOT: 4}
    assert tok.encode("abz") == [0, 1, 3]


# --- special tokens -------------------------------------------------------------------------------


def test_special_token_text_is_ordinary_text_by_default(mixed_tok):
    text = f"Hi{EOT}"
    ids = mixed_tok.encode(text)
    assert mixed_tok.eot_id not in ids
    assert ids == [mixed_tok.stoi[ch] for ch in text] == mixed_tok.encode(text, allowed_special=set())


def test_allowed_special_gives_special_ids(mixed_tok):
    eot, user = mixed_tok.eot_id, mixed_tok.special_tokens[USER]
    text = f"Hi{EOT}{USER}!"
    hi, bang = [mixed_tok.stoi[ch] for ch in "Hi"], [mixed_tok.stoi["!"]]
    assert mixed_tok.encode(text, allowed_special="all") == hi + [eot, user] + bang
    only_eot = mixed_tok.encode(text, allowed_special={EOT})
    assert only_eot == hi + [eot] + [mixed_tok.stoi[ch] for ch in USER] + bang


def test_disallowed_special_raises(mixed_tok):
    with pytest.raises(GptlabError, match=r"special token '<\|user\|>' at character 2"):
        mixed_tok.encode(f"Hi{USER}", disallowed_special="all")
    assert mixed_tok.encode(EOT, allowed_special={EOT}, disallowed_special="all") == [mixed_tok.eot_id]
    with pytest.raises(GptlabError, match="allowed_special"):
        mixed_tok.encode("Hi", allowed_special={"<|nope|>"})
    with pytest.raises(GptlabError, match="allowed_special"):
        mixed_tok.encode("Hi", allowed_special=EOT)  # a bare string, not a set


def test_special_tokens_without_their_characters_in_the_alphabet(shakespeare):
    tok = CharTokenizer.train(shakespeare, special_tokens=[EOT])
    text = f"First Citizen:{EOT}Before"
    ids = tok.encode(text, allowed_special="all")
    assert ids.count(tok.eot_id) == 1 and tok.decode(ids) == text
    with pytest.raises(GptlabError, match="'<' .* at position 14"):  # not allowed: '<' is unseen
        tok.encode(text)


# --- empty input, bad arguments -------------------------------------------------------------------


def test_empty_input(mixed_tok):
    assert mixed_tok.encode("") == [] == mixed_tok.encode("", allowed_special="all")
    assert mixed_tok.decode([]) == "" and mixed_tok.decode_bytes([]) == b""
    assert mixed_tok.encode_batch([]) == []
    for empty in ("", [], ["", ""]):
        with pytest.raises(GptlabError, match="empty text"):
            CharTokenizer.train(empty)


def test_decode_errors_and_integer_types(mixed_tok):
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    ids = mixed_tok.encode("Hello")
    assert mixed_tok.decode(np.array(ids)) == mixed_tok.decode(torch.tensor(ids)) == "Hello"
    for bad in ([0, mixed_tok.vocab_size], [-1]):
        with pytest.raises(GptlabError, match="unknown token id"):
            mixed_tok.decode(bad)
    for bad in ([1.5], ["3"], [True]):
        with pytest.raises(GptlabError, match="must be integers"):
            mixed_tok.decode(bad)
    with pytest.raises(GptlabError, match="expects a str"):
        mixed_tok.encode(b"bytes")


@pytest.mark.parametrize(
    "args, match",
    [
        (dict(chars=["b", "a"]), "sorted"),
        (dict(chars=["a", "a"]), "sorted"),
        (dict(chars=["ab"]), "single characters"),
        (dict(chars=[1]), "single characters"),
        (dict(chars=["a"], special_tokens=[""]), "non-empty"),
    ],
)
def test_constructor_validates(args, match):
    with pytest.raises(GptlabError, match=match):
        CharTokenizer(**args)


def test_encode_batch_in_processes_equals_encode(shakespeare, shakespeare_tok):
    texts = [shakespeare[i : i + 3000] for i in range(0, 30_000, 3000)] + [""]
    expected = [shakespeare_tok.encode(t) for t in texts]
    assert shakespeare_tok.encode_batch(texts, num_workers=2) == expected


# --- save / load ----------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    tok = CharTokenizer.train(MIXED, special_tokens=[EOT, USER], unk=UNK)
    path = tmp_path / "char.json"
    tok.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert (data["format"], data["version"], data["type"]) == ("gptlab-tokenizer", 1, "char")
    assert data["chars"] == tok.chars and data["unk"] == UNK
    for loaded in (CharTokenizer.load(path), load_tokenizer(path)):
        assert isinstance(loaded, CharTokenizer) and isinstance(loaded, Tokenizer)
        assert loaded.to_dict() == tok.to_dict()
        text = f"{MIXED}{EOT}unseen: Ж"
        assert loaded.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
        assert loaded.unk == UNK and loaded.special_tokens == tok.special_tokens


def _write_corrupt(tmp_path, **changes):
    data = CharTokenizer.train("abc", special_tokens=[EOT], unk=UNK).to_dict()
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(format="other"), "'format'"),
        (dict(version=2), "'version' is 2"),
        (dict(chars=None), "'chars'"),
        (dict(chars="abc"), "'chars'"),
        (dict(chars=["c", "b", "a"]), "sorted"),
        (dict(chars=["a", "a", "b"]), "sorted"),
        (dict(chars=["a", "bc", "d"]), "single characters"),
        (dict(chars=["a", None, "c"]), "single characters"),
        (dict(special_tokens=[EOT]), "'special_tokens'"),
        (dict(special_tokens={EOT: 1, UNK: 4}), "must use ids \\[3, 4\\]"),
        (dict(special_tokens={EOT: 3, UNK: -4}), "non-negative integer id"),
        (dict(special_tokens={EOT: 3, UNK: 3}), "same id"),
        (dict(unk="<missing>"), "'unk'"),
        (dict(unk=5), "'unk'"),
    ],
)
def test_corrupt_file_errors_name_the_file_and_field(tmp_path, change, match):
    path = _write_corrupt(tmp_path, **change)
    for loader in (CharTokenizer.load, load_tokenizer):
        with pytest.raises(GptlabError, match=match) as info:
            loader(path)
        assert str(path) in str(info.value)


def test_unreadable_files_are_clear_errors(tmp_path):
    good = tmp_path / "char.json"
    CharTokenizer.train(MIXED).save(good)
    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    for path, match in [
        (truncated, "not valid JSON"),
        (binary, "not UTF-8"),
        (empty, "not valid JSON"),
        (tmp_path / "missing.json", "not found"),
    ]:
        for loader in (CharTokenizer.load, load_tokenizer):
            with pytest.raises(GptlabError, match=match) as info:
                loader(path)
            assert str(path) in str(info.value)


def test_a_bpe_file_is_not_a_char_file(tmp_path):
    path = tmp_path / "bpe.json"
    BPETokenizer.train("hello world " * 5, vocab_size=260, special_tokens=[]).save(path)
    with pytest.raises(GptlabError, match="'type' is 'bpe', expected 'char'") as info:
        CharTokenizer.load(path)
    assert str(path) in str(info.value)
