"""Import/export: tiktoken (Encoding and .tiktoken files), Hugging Face tokenizer.json (both ways,
checked against the `tokenizers` library), GPT-2's encoder.json + vocab.bpe (checked against
tiktoken's own loader and transformers' GPT2Tokenizer, which runs GPT-2's original algorithm)."""

from __future__ import annotations

import json

import pytest
import tiktoken
import tiktoken.load
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import SHAKESPEARE, SMS, UNICODE
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from gptlab.errors import GptlabError
from gptlab.tokenizers import BPETokenizer, CharTokenizer
from gptlab.tokenizers.interop import (
    from_tiktoken,
    hf_tokenizer_dict,
    load_gpt2_files,
    load_hf_gpt2_tokenizer,
    load_hf_tokenizer_json,
    load_tiktoken_file,
    save_gpt2_files,
    save_hf_gpt2_tokenizer,
    save_hf_tokenizer_json,
    save_tiktoken_file,
)
from gptlab.tokenizers.pretokenize import (
    GPT2_PATTERN,
    GPT4_PATTERN,
    TIKTOKEN_GPT2_PATTERN,
    bytes_to_token_str,
)

EOT = "<|endoftext|>"
SLICE = 120_000
TEXT_FILES = [SHAKESPEARE, UNICODE, SMS]
HYPOTHESIS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
tricky_text = st.lists(
    st.sampled_from(
        [" ", "   ", "\n\n", "\r\n", "123456", "'s", "'LL", "🙂", "👨‍👩‍👧", "中文", "русский", "é", EOT, "<|"]
    )
    | st.text(max_size=15),
    max_size=25,
).map("".join)


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in TEXT_FILES}


@pytest.fixture(scope="module", params=["gpt2", "gpt4"])
def tok(request, texts) -> BPETokenizer:
    corpus = [texts[SHAKESPEARE.name][:SLICE], texts[UNICODE.name]]
    return BPETokenizer.train(corpus, vocab_size=1000, special_tokens=[EOT, "<|pad|>"], pattern=request.param)


@pytest.fixture(scope="module")
def gpt2_tok(texts) -> BPETokenizer:
    corpus = [texts[SHAKESPEARE.name][:SLICE], texts[UNICODE.name]]
    return BPETokenizer.train(corpus, vocab_size=1000, special_tokens=[EOT])


# --- tiktoken -------------------------------------------------------------------------------------


def test_tiktoken_encoding_round_trip(tok, texts):
    encoding = tok.to_tiktoken()
    back = from_tiktoken(encoding)
    assert back.to_dict() == tok.to_dict()  # merges re-derived from ranks equal the trained ones
    for text in texts.values():
        assert back.encode(text, backend="python") == encoding.encode_ordinary(text)


def test_from_tiktoken_of_a_directly_built_encoding(gpt2_tok, texts):
    encoding = tiktoken.Encoding(
        name="direct",
        pat_str=TIKTOKEN_GPT2_PATTERN,
        mergeable_ranks=gpt2_tok.mergeable_ranks,
        special_tokens={EOT: 5000},
    )
    ours = from_tiktoken(encoding)
    assert ours.pattern == gpt2_tok.pattern and ours.special_tokens == {EOT: 5000} and ours.vocab_size == 5001
    text = texts[SHAKESPEARE.name] + EOT + texts[UNICODE.name]
    assert ours.encode(text, allowed_special="all", backend="python") == encoding.encode(
        text, allowed_special="all"
    )


def test_tiktoken_rank_file_round_trip(tok, tmp_path):
    path = tmp_path / "ranks.tiktoken"
    save_tiktoken_file(tok, path)
    assert tiktoken.load.load_tiktoken_bpe(str(path)) == tok.mergeable_ranks
    loaded = load_tiktoken_file(path, pattern=tok.pattern, special_tokens=tok.special_tokens)
    assert loaded.to_dict() == tok.to_dict()


@pytest.mark.parametrize(
    "content, match", [("QQ== 0\nnot-base64! 1\n", "line 2"), ("QQ==\n", "line 1"), ("QQ== x\n", "line 1")]
)
def test_bad_tiktoken_file_names_file_and_line(tmp_path, content, match):
    path = tmp_path / "bad.tiktoken"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(GptlabError, match=match) as info:
        load_tiktoken_file(path)
    assert str(path) in str(info.value)


def test_tiktoken_vocabulary_missing_bytes_is_refused(tmp_path):
    path = tmp_path / "few.tiktoken"
    path.write_text("QQ== 0\nQg== 1\n", encoding="utf-8")
    with pytest.raises(GptlabError, match="256 bytes"):
        load_tiktoken_file(path)


# --- Hugging Face tokenizer.json ------------------------------------------------------------------


def test_exported_tokenizer_json_encodes_like_hf_tokenizers(tok, texts, tmp_path):
    path = save_hf_tokenizer_json(tok, tmp_path / "tokenizer.json")
    hf = HFTokenizer.from_file(str(path))
    assert hf.get_vocab_size() == tok.vocab_size
    for name, text in texts.items():
        text = text + EOT + text[:100]
        ids = tok.encode(text, allowed_special="all")
        assert hf.encode(text).ids == ids, name
        assert hf.decode(ids, skip_special_tokens=False) == text
    assert load_hf_tokenizer_json(path).to_dict() == tok.to_dict()


@HYPOTHESIS
@given(text=tricky_text)
def test_exported_tokenizer_json_matches_hf_on_adversarial_text(gpt2_tok, text):
    hf = _hf_from_dict(gpt2_tok)
    assert hf.encode(text).ids == gpt2_tok.encode(text, allowed_special="all")


_HF_CACHE: dict[int, HFTokenizer] = {}


def _hf_from_dict(tok: BPETokenizer) -> HFTokenizer:
    if id(tok) not in _HF_CACHE:
        _HF_CACHE[id(tok)] = HFTokenizer.from_str(json.dumps(hf_tokenizer_dict(tok)))
    return _HF_CACHE[id(tok)]


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_import_tokenizer_trained_by_hf_bpe_trainer(texts, tmp_path, pattern):
    hf = HFTokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pattern == "gpt2")
    if pattern == "gpt2":
        hf.pre_tokenizer = byte_level
    else:
        split = pre_tokenizers.Split(Regex(GPT4_PATTERN), behavior="isolated")
        hf.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator([texts[SHAKESPEARE.name][:SLICE], texts[UNICODE.name]], trainer)
    path = tmp_path / "tokenizer.json"
    hf.save(str(path))
    ours = load_hf_tokenizer_json(path)
    assert ours.vocab_size == hf.get_vocab_size() and ours.special_tokens == {EOT: 0}
    for name, text in texts.items():
        text = EOT + text
        assert ours.encode(text, allowed_special="all") == hf.encode(text).ids, name
    # and back: our export of the imported tokenizer encodes the same in HF
    again = HFTokenizer.from_str(json.dumps(hf_tokenizer_dict(ours)))
    sample = texts[UNICODE.name]
    assert again.encode(sample).ids == hf.encode(sample).ids


def _hf_file(tmp_path, data):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def test_unsupported_hf_tokenizers_are_clear_errors(gpt2_tok, tmp_path):
    good = hf_tokenizer_dict(gpt2_tok)
    wordpiece = HFTokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    cases = [
        (json.loads(wordpiece.to_str()), "model type 'WordPiece' is not supported"),
        ({**good, "normalizer": {"type": "NFC"}}, "normalizer"),
        ({**good, "pre_tokenizer": {"type": "Whitespace"}}, "pre_tokenizer"),
        ({**good, "pre_tokenizer": {**good["pre_tokenizer"], "add_prefix_space": True}}, "pre_tokenizer"),
        (
            {**good, "model": {**good["model"], "continuing_subword_prefix": "##"}},
            "continuing_subword_prefix",
        ),
        ({**good, "model": {**good["model"], "dropout": 0.1}}, "dropout"),
        ({k: v for k, v in good.items() if k != "model"}, "missing field 'model'"),
        ({**good, "model": {**good["model"], "merges": [["Ġt", "zzz"]]}}, "not in the vocabulary"),
        (
            {**good, "model": {**good["model"], "merges": list(reversed(good["model"]["merges"]))}},
            "merge order",
        ),
        (
            {**good, "model": {**good["model"], "vocab": {**good["model"]["vocab"], "a b": 5000}}},
            "byte-to-unicode",
        ),
        ({**good, "added_tokens": [{"content": 3}]}, "added_tokens entry 0"),
        ('{"model": {"type": "BPE", ', "not valid JSON"),
    ]
    for data, match in cases:
        path = _hf_file(tmp_path, data)
        with pytest.raises(GptlabError, match=match) as info:
            load_hf_tokenizer_json(path)
        assert str(path) in str(info.value)


# --- GPT-2's encoder.json + vocab.bpe ------------------------------------------------------------


def test_gpt2_files_round_trip_and_match_tiktoken_loader(gpt2_tok, tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # read the files, never a cached copy
    encoder, vocab_bpe = save_gpt2_files(gpt2_tok, tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    assert load_gpt2_files(encoder, vocab_bpe).to_dict() == gpt2_tok.to_dict()
    # our byte tokens have ids 0..255 in byte order, so tiktoken must take them from encoder.json
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        str(vocab_bpe), str(encoder), clobber_one_byte_tokens=True
    )
    assert ranks == gpt2_tok.mergeable_ranks


def _write_gpt2_layout_files(tok: BPETokenizer, folder) -> tuple:
    """Files laid out exactly like OpenAI's GPT-2 release: byte tokens in bytes_to_unicode order
    (printable bytes first), then one id per merge, then <|endoftext|>."""
    byte_order = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    byte_order += [b for b in range(256) if b not in byte_order]
    encoder = {bytes_to_token_str(bytes([b])): i for i, b in enumerate(byte_order)}
    for left, right in tok.merges:
        encoder[bytes_to_token_str(left + right)] = len(encoder)
    encoder[EOT] = len(encoder)
    merges = "".join(f"{bytes_to_token_str(a)} {bytes_to_token_str(b)}\n" for a, b in tok.merges)
    (folder / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    (folder / "vocab.bpe").write_text("#version: 0.2\n" + merges, encoding="utf-8")
    return folder / "encoder.json", folder / "vocab.bpe"


def test_gpt2_layout_files_import_like_tiktoken_and_gpt2(gpt2_tok, texts, tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    encoder, vocab_bpe = _write_gpt2_layout_files(gpt2_tok, tmp_path)
    ours = load_gpt2_files(encoder, vocab_bpe)
    reference = tiktoken.load.data_gym_to_mergeable_bpe_ranks(str(vocab_bpe), str(encoder))
    assert ours.mergeable_ranks == reference
    assert ours.mergeable_ranks[b"!"] == 0 and ours.mergeable_ranks[b"\x00"] == 188  # GPT-2's byte ids
    assert ours.special_tokens == {EOT: 999} == gpt2_tok.special_tokens
    encoding = tiktoken.Encoding(
        "gpt2-like", pat_str=TIKTOKEN_GPT2_PATTERN, mergeable_ranks=reference, special_tokens={EOT: 999}
    )
    for text in texts.values():
        assert ours.encode(text, backend="python") == encoding.encode_ordinary(text)
    # exporting again reproduces the files
    out_encoder, out_bpe = save_gpt2_files(ours, tmp_path / "out.json", tmp_path / "out.bpe")
    assert json.loads(out_encoder.read_text(encoding="utf-8")) == json.loads(
        encoder.read_text(encoding="utf-8")
    )
    assert out_bpe.read_text(encoding="utf-8") == vocab_bpe.read_text(encoding="utf-8")


def test_gpt2_layout_files_encode_like_transformers_gpt2_tokenizer(gpt2_tok, texts, tmp_path):
    transformers = pytest.importorskip("transformers")
    encoder, vocab_bpe = _write_gpt2_layout_files(gpt2_tok, tmp_path)
    encoder.rename(tmp_path / "vocab.json")
    vocab_bpe.rename(tmp_path / "merges.txt")
    ours = load_hf_gpt2_tokenizer(tmp_path)
    slow = transformers.GPT2Tokenizer(
        str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt")
    )  # GPT-2's algorithm
    for name, text in texts.items():
        text = text[:20_000]
        assert slow.encode(text) == ours.encode(text, allowed_special="all"), name


def test_save_hf_gpt2_folder_loads_in_transformers(tok, texts, tmp_path):
    transformers = pytest.importorskip("transformers")
    save_hf_gpt2_tokenizer(tok, tmp_path)
    fast = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    text = texts[UNICODE.name] + EOT + texts[SHAKESPEARE.name][:5000]
    ids = tok.encode(text, allowed_special="all")
    assert fast.encode(text) == ids
    assert fast.decode(ids) == text
    assert fast.eos_token == EOT
    assert load_hf_gpt2_tokenizer(tmp_path).to_dict() == tok.to_dict()
    assert (tmp_path / "vocab.json").exists() == (tok.pattern == GPT2_PATTERN)


@pytest.mark.parametrize(
    "merges, match",
    [("#version: 0.2\nĠ t\nnot-a-pair-line\n", "line 3"), ("#version: 0.2\nĠ t x\n", "line 2")],
)
def test_bad_gpt2_merges_file_names_file_and_line(gpt2_tok, tmp_path, merges, match):
    save_gpt2_files(gpt2_tok, tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    (tmp_path / "vocab.bpe").write_text(merges, encoding="utf-8")
    with pytest.raises(GptlabError, match=match) as info:
        load_gpt2_files(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    assert "vocab.bpe" in str(info.value)


def test_gpt2_files_errors(gpt2_tok, tmp_path):
    with pytest.raises(GptlabError, match="not found"):
        load_gpt2_files(tmp_path / "nope.json", tmp_path / "nope.bpe")
    (tmp_path / "encoder.json").write_text("[]", encoding="utf-8")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\n", encoding="utf-8")
    with pytest.raises(GptlabError, match="encoder.json: expected a JSON object"):
        load_gpt2_files(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    with pytest.raises(GptlabError, match="no tokenizer in"):
        load_hf_gpt2_tokenizer(tmp_path / "empty")
    encoder, vocab_bpe = save_gpt2_files(gpt2_tok, tmp_path / "good.json", tmp_path / "good.bpe")
    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(encoder.read_bytes()[:1000])
    binary = tmp_path / "binary.bpe"
    binary.write_bytes(b"#version: 0.2\n\xff\xfe\x00binary")
    for args, bad, match in [
        ((truncated, vocab_bpe), truncated, "not valid JSON"),
        ((encoder, binary), binary, "not UTF-8"),
    ]:
        with pytest.raises(GptlabError, match=match) as info:
            load_gpt2_files(*args)
        assert str(bad) in str(info.value)


def test_exports_refuse_what_the_format_cannot_hold(texts, tmp_path):
    gpt4 = BPETokenizer.train(texts[SHAKESPEARE.name], vocab_size=300, special_tokens=[], pattern="gpt4")
    with pytest.raises(GptlabError, match="pre-tokenization pattern"):
        save_gpt2_files(gpt4, tmp_path / "e.json", tmp_path / "v.bpe")
    char = CharTokenizer.train("hello")
    for export in (save_hf_gpt2_tokenizer, save_hf_tokenizer_json, save_tiktoken_file):
        with pytest.raises(GptlabError, match="only byte-level BPE"):
            export(char, tmp_path / "x")
    assert not list(tmp_path.iterdir())
