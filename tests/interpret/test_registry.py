"""The analyses registry (gptlab.interpret.ANALYSES): each entry's options dataclass is the one
source of its CLI defaults, and an analysis added to the registry is a `gptlab analyze` subcommand
and a page of `analyze all` with no other change."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from gptlab.cli import build_parser, main
from gptlab.commands.options import dataclass_from_args
from gptlab.interpret import ANALYSES, AllOptions, Analysis, AnalysisResult, all_files
from gptlab.options import option, positive_int, required

TEXT = "the cat sat"


def _required_values(cls) -> dict[str, str]:
    return {f.name: "the" for f in dataclasses.fields(cls) if f.metadata.get("required")}


def _flags(values: dict[str, str]) -> list[str]:
    return [arg for name, value in values.items() for arg in ("--" + name.replace("_", "-"), value)]


@pytest.mark.parametrize("name", [*ANALYSES, "all"])
def test_cli_defaults_are_the_dataclass_defaults(name):
    cls = AllOptions if name == "all" else ANALYSES[name].options
    values = _required_values(cls)
    argv = ["analyze", name, "--model", "RUN", *_flags(values)] + (["--out", "DIR"] if name == "all" else [])
    args = build_parser("analyze").parse_args(argv)
    assert dataclass_from_args(cls, args) == cls(**values)


def test_every_option_has_help_and_required_fields_come_first():
    for cls in [AllOptions, *(a.options for a in ANALYSES.values())]:
        fields = dataclasses.fields(cls)
        assert all(f.metadata.get("help") for f in fields), cls
        kinds = [bool(f.metadata.get("required")) for f in fields]
        assert kinds == sorted(kinds, reverse=True), cls


# ------------------------------------------------------------------------------ a new analysis


@dataclass
class CountOptions:
    text: str = required("the text to count")
    repeat: int = option(2, "copies of the text", type=positive_int)


def count_tokens(run, options: CountOptions) -> AnalysisResult:
    n = len(run.tokenizer.encode(options.text * options.repeat))
    return AnalysisResult(
        {"tokens": n},
        table=lambda: f"{n} tokens",
        views=lambda: {"count.html": f"<!doctype html><p>{n} tokens</p>"},
        summary="how many tokens",
    )


COUNT = Analysis(
    CountOptions,
    count_tokens,
    "count tokens",
    ("count.html",),
    "Token count",
    in_all=lambda run, o: CountOptions(text=o.text, repeat=3),
)


@pytest.fixture
def run_dir(tmp_path) -> Path:
    from gptlab.model import GPT, GPTConfig
    from gptlab.rundir import save_model
    from gptlab.tokenizers import CharTokenizer

    torch.manual_seed(0)
    tokenizer = CharTokenizer.train(["the cat sat on the mat"])
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    save_model(tmp_path / "run", model.eval(), tokenizer)
    return tmp_path / "run"


@pytest.fixture
def only_count_and_lens(monkeypatch):
    """The registry with the fake analysis, and only the lens beside it (the others are slower)."""
    for name in [n for n in ANALYSES if n != "lens"]:
        monkeypatch.delitem(ANALYSES, name)
    monkeypatch.setitem(ANALYSES, "count", COUNT)


def test_a_registered_analysis_is_a_subcommand(only_count_and_lens, run_dir, tmp_path, capsys):
    assert main(["analyze", "count", "--model", str(run_dir), "--text", "at", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"tokens": 4}
    assert main(["analyze", "count", "--model", str(run_dir), "--text", "at", "--repeat", "1"]) == 0
    assert capsys.readouterr().out == "2 tokens\n"
    assert main(["analyze", "count", "--model", str(run_dir), "--text", "at", "--repeat", "0"]) == 2
    assert "--repeat" in capsys.readouterr().err

    out = tmp_path / "views"
    assert main(["analyze", "count", "--model", str(run_dir), "--text", "at", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"4 tokens\nwrote {out / 'count.html'}\n"
    assert main(["analyze", "count", "--model", str(run_dir), "--text", "at", "--out", str(out)]) == 2
    assert "count.html" in capsys.readouterr().err  # the view exists: refused without --overwrite


def test_analyze_all_iterates_the_registry(only_count_and_lens, run_dir, tmp_path, capsys):
    assert all_files() == ["lens.html", "count.html", "index.html"]
    out = tmp_path / "all"
    assert main(["analyze", "all", "--model", str(run_dir), "--text", TEXT, "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out / 'index.html'} and 2 views\n"
    assert (out / "count.html").read_text() == f"<!doctype html><p>{3 * len(TEXT)} tokens</p>"
    index = (out / "index.html").read_text()
    assert 'href="count.html"' in index and "Token count" in index and "how many tokens" in index
    assert 'href="lens.html"' in index

    ANALYSES["count"] = dataclasses.replace(COUNT, in_all=None)  # not part of `all`: left out
    assert all_files() == ["lens.html", "index.html"]


def test_analyze_all_of_a_recurrent_model_leaves_out_what_needs_attention(
    only_count_and_lens, tmp_path, capsys
):
    from gptlab.model import GPTConfig, build_model
    from gptlab.rundir import save_model
    from gptlab.tokenizers import CharTokenizer

    tokenizer = CharTokenizer.train(["the cat sat on the mat"])
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16, arch="gru"
    )
    run = save_model(tmp_path / "run", build_model(config).eval(), tokenizer)
    out = tmp_path / "all"
    assert main(["analyze", "all", "--model", str(run), "--text", TEXT, "--out", str(out)]) == 0
    assert (
        capsys.readouterr().out
        == f"wrote {out / 'index.html'} and 1 views (left out, needing attention: lens)\n"
    )
    assert (out / "count.html").is_file() and not (out / "lens.html").exists()
    assert 'href="lens.html"' not in (out / "index.html").read_text()
