"""Tokenizer comparison: script detection, WordPiece parity, the classic cost experiments, CLI."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from samples import SHAKESPEARE, UNICODE

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.tokenizers import compare
from gptlab.tokenizers.bpe import BPETokenizer
from gptlab.tokenizers.compare import (
    BUILTIN_EXAMPLES,
    SCRIPT_COMMON,
    builtin_tokenizers,
    compare_tokenizers,
    detect_script,
    split_by_script,
)

TRAIN_BYTES = 150_000  # enough English for a 512-token BPE, small enough to train in seconds
TEST_VOCAB = 512


@pytest.fixture(scope="module")
def english() -> str:
    return SHAKESPEARE.read_text(encoding="utf-8")[:TRAIN_BYTES]


@pytest.fixture(scope="module")
def lineup(english):
    """Every built-in tokenizer family, trained once for the module."""
    return builtin_tokenizers(english, vocab_sizes=(TEST_VOCAB,))


@pytest.mark.parametrize(
    "text, script",
    [
        ("Hello, world", "Latin"),
        ("Dobrý deň, Grüß Gott", "Latin"),
        ("Здравствуйте!", "Cyrillic"),
        ("Γειά σας", "Greek"),
        ("नमस्ते, नमस्कार।", "Devanagari"),
        ("السَّلام عليكُم", "Arabic"),
        ("שלום", "Hebrew"),
        ("你好, 早晨", "CJK"),
        ("안녕하세요", "Hangul"),
        ("こんにちは", "Kana"),
        ("ｺﾝﾆﾁﾊ", "Kana"),
        ("สวัสดีครับ", "Thai"),
        ("🤖🎉 👍🏽", "Emoji"),
        ("3.14 + 2 = 5.14 !!", SCRIPT_COMMON),
        ("Russian (Русский)\tЗдравствуйте!", "Cyrillic"),  # most letters win
    ],
)
def test_detect_script(text, script):
    assert detect_script(text) == script


def test_split_by_script_keeps_each_run_in_one_script():
    segments = split_by_script("Hebrew\tשלום\nJapanese (日本語)\tこんにちは\n\n12345")
    assert [(s.script, s.text) for s in segments] == [
        ("Latin", "Hebrew"),
        ("Hebrew", "\tשלום"),
        ("Latin", "Japanese"),
        ("CJK", " (日本語)"),
        ("Kana", "\tこんにちは"),
        (SCRIPT_COMMON, "12345"),
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet=st.characters(
            blacklist_categories=("Cs",), blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
        )
    )
)
def test_split_by_script_loses_no_character(line):
    segments = split_by_script(line)
    if not line.strip():
        assert segments == []
        return
    assert "".join(s.text for s in segments) == line
    for s in segments:
        assert s.script == detect_script(s.text)


def test_wordpiece_from_minilm_package_matches_reference_bert_tokenizer():
    """Our offline loader (tokenizer.json) vs transformers' pure-Python BertTokenizer on vocab.txt."""
    transformers = pytest.importorskip("transformers")
    files = compare.bert_wordpiece_files()
    reference = transformers.BertTokenizer(files["vocab.txt"], do_lower_case=True)
    encode = compare.load_bert_wordpiece()
    texts = list(BUILTIN_EXAMPLES.values())
    texts += UNICODE.read_text(encoding="utf-8").splitlines()
    long_text = SHAKESPEARE.read_text(encoding="utf-8")[:5000]  # > 128 tokens
    for text in [*texts, long_text]:
        assert encode(text) == reference.encode(text, add_special_tokens=False), text
    assert len(encode(long_text)) > 128  # no truncation, no padding


def test_non_latin_scripts_cost_more_with_english_bpe(english):
    bpe = BPETokenizer.train(english, vocab_size=TEST_VOCAB)
    hello = UNICODE.read_text(encoding="utf-8")
    result = compare_tokenizers({"hello": hello}, {"bpe": bpe.encode})
    latin = result.script("Latin")
    others = [r for r in result.scripts if r.name not in ("Latin", SCRIPT_COMMON)]
    assert {"Cyrillic", "Greek", "Devanagari", "Arabic", "Hebrew", "CJK", "Hangul", "Kana", "Thai"} <= {
        r.name for r in others
    }
    for row in others:
        assert row.bytes_per_token("bpe") < latin.bytes_per_token("bpe"), row.name
        assert row.tokens_per_char("bpe") > latin.tokens_per_char("bpe"), row.name
    # the script rows split the same text: their sizes add up to the text without line breaks
    whole = result.row("hello")
    assert sum(r.chars for r in result.scripts) == whole.chars - sum(1 for _ in hello.splitlines(True))


def test_emphasis_costs_more_for_every_tokenizer(lineup):
    encoders, notes = lineup
    assert {f"bpe-{TEST_VOCAB}", "char", f"sp-unigram-{TEST_VOCAB}", "bert-wordpiece"} <= set(encoders)
    result = compare_tokenizers(BUILTIN_EXAMPLES, encoders, reference="english", notes=notes)
    plain, emphatic = result.row("english"), result.row("emphasis")
    for name in encoders:
        assert emphatic.tokens[name] > plain.tokens[name], name
        assert result.ratio_vs_reference(emphatic, name) > 1
        assert result.ratio_vs_reference(plain, name) == 1


def test_compare_counts_match_the_tokenizers(lineup):
    encoders, _ = lineup
    texts = {"a": "Hello there, Здравствуйте 你好 🤖", "b": "x = [i ** 2 for i in range(10)]"}
    result = compare_tokenizers(texts, encoders)
    for name, encode in encoders.items():
        for row in result.texts:
            assert row.tokens[name] == len(encode(texts[row.name]))
        segments = [s.text for t in texts.values() for s in split_by_script(t)]
        assert sum(r.tokens[name] for r in result.scripts) == sum(len(encode(s)) for s in segments)


def test_tiktoken_is_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache
    for name in compare.TIKTOKEN_ENCODINGS:
        assert compare.load_tiktoken_offline(name) is None
    assert list(tmp_path.iterdir()) == []
    _, notes = builtin_tokenizers("", kinds=["tiktoken"])
    assert any("tiktoken" in n and "skipped" in n for n in notes)


def test_missing_optional_package_names_the_extra(monkeypatch, english):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # import now raises ImportError
    with pytest.raises(GptlabError, match=r"gptlab\[compare\]"):
        builtin_tokenizers(english[:2000], vocab_sizes=(300,), kinds=["sentencepiece"])


def test_bad_inputs_give_clear_errors():
    with pytest.raises(GptlabError, match="empty"):
        compare_tokenizers({"blank": "  \n"}, {"len": list})
    with pytest.raises(GptlabError, match="no text"):
        compare_tokenizers({}, {"len": list})
    with pytest.raises(GptlabError, match="reference"):
        compare_tokenizers({"a": "x"}, {"len": list}, reference="english")
    with pytest.raises(GptlabError, match="unknown tokenizer kind"):
        builtin_tokenizers("text", kinds=["bogus"])


def test_cli_compare_json_has_documented_keys(capsys):
    train = SHAKESPEARE
    hello = UNICODE
    code = main(
        ["tokenizer", "compare", "--input", str(hello), "--examples", "--train-input", str(train)]
        + ["--vocab-sizes", "300", "--kinds", "bpe", "char", "wordpiece", "--json"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"tokenizers", "notes", "reference", "texts", "scripts"}
    assert out["tokenizers"] == ["bpe-300", "char", "bert-wordpiece"]
    assert out["reference"] == "english"
    assert [t["name"] for t in out["texts"]] == [*BUILTIN_EXAMPLES, UNICODE.name]
    row_keys = {"name", "script", "chars", "bytes", "words", "segments", "tokens"}
    row_keys |= {"bytes_per_token", "tokens_per_char", "tokens_per_word"}
    for row in out["texts"]:
        assert set(row) == row_keys | {"ratio_vs_reference"}
        assert set(row["tokens"]) == set(out["tokenizers"])
    assert {"Latin", "Cyrillic", "CJK"} <= {r["name"] for r in out["scripts"]}
    for row in out["scripts"]:
        assert set(row) == row_keys


def test_cli_compare_table_is_aligned(capsys):
    train = SHAKESPEARE
    code = main(
        ["tokenizer", "compare", "--text", "I love AI!", "--train-input", str(train)]
        + ["--vocab-sizes", "300", "--kinds", "bpe", "char"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "bpe-300" in out and "bytes per token" in out
    table = out.split("\n\n")[1].splitlines()[1:]  # the "tokens per text" table, header first
    assert len({len(line) for line in table}) == 1


def test_cli_stats_on_a_file(english, tmp_path, capsys):
    tok = BPETokenizer.train(english, vocab_size=300)
    tok.save(tmp_path / "tok.json")
    verdict = SHAKESPEARE
    assert (
        main(
            [
                "tokenizer",
                "stats",
                "--tokenizer",
                str(tmp_path / "tok.json"),
                "--input",
                str(verdict),
                "--json",
            ]
        )
        == 0
    )
    stats = json.loads(capsys.readouterr().out)
    ids = tok.encode(verdict.read_text(encoding="utf-8"))
    assert stats["tokens"] == len(ids)
    assert stats["vocab_used"] == len(set(ids)) <= stats["vocab_size"] == tok.vocab_size
    assert stats["top_tokens"][0]["count"] == max(ids.count(i) for i in set(ids))
    lengths = [t["nbytes"] for t in stats["longest_tokens"]]
    assert lengths == sorted(lengths, reverse=True)
    assert lengths[0] == max(len(tok.token_bytes(i)) for i in set(ids))
    assert (
        main(["tokenizer", "stats", "--tokenizer", str(tmp_path / "tok.json"), "--input", str(verdict)]) == 0
    )
    assert "vocab usage" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tokenizer", "compare", "--input", "/nonexistent/file.txt", "--kinds", "wordpiece"], "not found"),
        (["tokenizer", "compare", "--text", "   ", "--kinds", "wordpiece"], "empty"),
        (["tokenizer", "stats", "--tokenizer", "/nonexistent/tok.json", "--text", "hi"], "not found"),
    ],
)
def test_cli_bad_inputs(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err


def test_two_texts_in_one_script_get_their_own_cost_rows():
    """English and German are both Latin script: the per-script rows merge them, so the table
    shows tokens per character and per word for each text (the cost per language of a translation
    corpus, one file a language). A tokenizer counting one token per character: 1.00 per char and
    the mean word length (spaces included) per word, computed by hand here."""
    texts = {"en.txt": "the cat sat", "de.txt": "die Katze sass"}
    table = compare_tokenizers(texts, {"chars": list}).format_table()
    per_char = table.split("tokens per character, per text")[1].split("\n\n")[0]
    per_word = table.split("tokens per word, per text")[1].split("\n\n")[0]
    assert [line.split() for line in per_char.splitlines()[2:]] == [
        ["en.txt", "3", "1.00"],
        ["de.txt", "3", "1.00"],
    ]
    # 11 characters / 3 words = 3.67, 14 / 3 = 4.67
    assert [line.split() for line in per_word.splitlines()[2:]] == [
        ["en.txt", "3", "3.67"],
        ["de.txt", "3", "4.67"],
    ]
    single = compare_tokenizers({"en.txt": "the cat sat"}, {"chars": list}).format_table()
    assert "per text (lower" not in single  # one text: its script rows already say it
