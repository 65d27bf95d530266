"""`gptlab tokenizer train|encode|decode` through gptlab.cli.main."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from samples import SHAKESPEARE, UNICODE

from gptlab.cli import main
from gptlab.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer

REPO = Path(__file__).resolve().parents[2]

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "shakespeare-slice.txt"
    text = SHAKESPEARE.read_text(encoding="utf-8")[:100_000]
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tok_path(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tok.json"
    assert main(["tokenizer", "train", "--input", str(corpus), str(UNICODE),
                 "--vocab-size", "600", "--out", str(out), "--json"]) == 0  # fmt: skip
    return out


def test_train_writes_a_loadable_tokenizer_and_json_summary(corpus, tmp_path, capsys):
    out = tmp_path / "tok.json"
    code = main(
        ["tokenizer", "train", "--input", str(corpus), "--vocab-size", "400", "--out", str(out), "--json"]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    tok = load_tokenizer(out)
    assert summary["vocab_size"] == tok.vocab_size == 400 and summary["merges"] == 400 - 256 - 1
    assert summary["special_tokens"] == {EOT: 399} == tok.special_tokens
    expected = BPETokenizer.train(corpus.read_text(encoding="utf-8"), vocab_size=400)
    assert tok.to_dict() == expected.to_dict()


def test_train_options_special_and_pattern(corpus, tmp_path, capsys):
    out = tmp_path / "tok.json"
    args = ["tokenizer", "train", "--input", str(corpus), "--vocab-size", "300", "--out", str(out)]
    assert main([*args, "--special", "<|a|>", "<|b|>", "--pattern", "gpt4"]) == 0
    assert "wrote" in capsys.readouterr().out
    tok = load_tokenizer(out)
    assert tok.special_tokens == {"<|a|>": 298, "<|b|>": 299} and tok.eot_id is None
    assert tok.pattern == BPETokenizer.train("x", vocab_size=256, special_tokens=[], pattern="gpt4").pattern
    before = out.read_bytes()
    assert main([*args, "--special"]) == 2  # an existing tokenizer is never replaced silently
    assert "already exists: pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main([*args, "--special", "--overwrite"]) == 0
    assert load_tokenizer(out).special_tokens == {}


def test_encode_decode_round_trip(tok_path, capsys):
    text = "Hello, wörld! 你好 🙂"
    assert main(["tokenizer", "encode", "--tokenizer", str(tok_path), "--text", text]) == 0
    ids = capsys.readouterr().out.strip()
    assert [int(i) for i in ids.split(",")] == load_tokenizer(tok_path).encode(text)
    assert main(["tokenizer", "decode", "--tokenizer", str(tok_path), "--ids", ids]) == 0
    assert capsys.readouterr().out == text + "\n"


def test_encode_json_and_allow_special(tok_path, capsys):
    tok = load_tokenizer(tok_path)
    text = f"The end.{EOT}"
    assert main(["tokenizer", "encode", "--tokenizer", str(tok_path), "--text", text, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert tok.eot_id not in plain["ids"] and "".join(plain["tokens"]) == text
    args = ["tokenizer", "encode", "--tokenizer", str(tok_path), "--text", text, "--json", "--allow-special"]
    assert main(args) == 0
    special = json.loads(capsys.readouterr().out)
    assert special["ids"][-1] == tok.eot_id and special["count"] == len(special["ids"]) < plain["count"]


def test_encode_input_file(tok_path, corpus, capsys):
    assert main(["tokenizer", "encode", "--tokenizer", str(tok_path), "--input", str(corpus)]) == 0
    ids = [int(i) for i in capsys.readouterr().out.strip().split(",")]
    assert ids == load_tokenizer(tok_path).encode(corpus.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "empty \\(0 bytes\\)"),
        (b"text\x00\x01binary", "NUL byte"),
        (b"caf\xe9 latin-1", "not UTF-8"),
    ],
)
def test_train_refuses_empty_and_binary_files(tmp_path, capsys, content, match):
    bad = tmp_path / "input.bin"
    bad.write_bytes(content)
    code = main(
        ["tokenizer", "train", "--input", str(bad), "--vocab-size", "300", "--out", str(tmp_path / "t.json")]
    )
    err = capsys.readouterr().err
    assert code == 2 and str(bad) in err and err.startswith("error: ")
    assert re.search(match, err)
    assert not (tmp_path / "t.json").exists()


def test_console_command_refuses_empty_and_binary_files_without_traceback(tmp_path):
    """The real process: exit status 2 and one error line naming the file, no Python traceback."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for name, content in [("empty.txt", b""), ("binary.bin", bytes(range(256)) * 4)]:
        bad = tmp_path / name
        bad.write_bytes(content)
        out = tmp_path / "t.json"
        args = ["tokenizer", "train", "--input", str(bad), "--vocab-size", "300", "--out", str(out)]
        done = subprocess.run(
            [sys.executable, "-m", "gptlab", *args], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0]
        assert not out.exists()


def test_train_shows_a_progress_bar_unless_json(corpus, tmp_path, capsys):
    args = [
        "tokenizer",
        "train",
        "--input",
        str(corpus),
        "--vocab-size",
        "300",
        "--out",
        str(tmp_path / "t.json"),
    ]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "BPE merges" in err and "43/43" in err  # 300 - 256 - 1 merges
    assert main([*args, "--json", "--overwrite"]) == 0
    assert capsys.readouterr().err == ""


def test_encode_decode_and_stats_with_a_char_tokenizer(corpus, tmp_path, capsys):
    text = corpus.read_text(encoding="utf-8")
    char = CharTokenizer.train(text)
    path = tmp_path / "char.json"
    char.save(path)
    sample = "First Citizen:\nBefore we proceed"
    assert main(["tokenizer", "encode", "--tokenizer", str(path), "--text", sample]) == 0
    ids = capsys.readouterr().out.strip()
    assert [int(i) for i in ids.split(",")] == char.encode(sample)
    assert main(["tokenizer", "decode", "--tokenizer", str(path), "--ids", ids]) == 0
    assert capsys.readouterr().out == sample + "\n"
    assert main(["tokenizer", "stats", "--tokenizer", str(path), "--text", sample, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == len(sample)
    assert main(["tokenizer", "encode", "--tokenizer", str(path), "--text", "abc €"]) == 2
    assert "'€' (U+20AC) at position 4" in capsys.readouterr().err


def test_cli_errors_are_clear(tok_path, corpus, tmp_path, capsys):
    cases = [
        (
            ["train", "--input", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "t.json")],
            "missing.txt",
        ),
        (
            ["train", "--input", str(corpus), "--vocab-size", "100", "--out", str(tmp_path / "t.json")],
            "at least 257",
        ),
        (["decode", "--tokenizer", str(tok_path), "--ids", "1,two,3"], "'two' is not an integer"),
        (["decode", "--tokenizer", str(tok_path), "--ids", "1,99999"], "unknown token id 99999"),
        (["encode", "--tokenizer", str(tmp_path / "nope.json"), "--text", "x"], "nope.json"),
    ]
    for args, match in cases:
        assert main(["tokenizer", *args]) == 2
        assert match in capsys.readouterr().err


def test_help_lists_sub_verbs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tokenizer", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(verb in out for verb in ("train", "encode", "decode"))
    for verb in ("train", "encode", "decode"):
        with pytest.raises(SystemExit):
            main(["tokenizer", verb, "--help"])
        assert "usage: gptlab tokenizer" in capsys.readouterr().out
