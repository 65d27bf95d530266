"""The cited prompt fits the context; `rag ask` and `eval rag` from Python and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptlab.errors import GptlabError
from gptlab.rag.chunking import Chunk
from gptlab.rag.evaluate import QARow, first_relevant, read_qa
from gptlab.rag.index import Hit
from gptlab.rag.prompt import fit_prompt, format_prompt

DATA = Path(__file__).parents[1] / "data" / "rag"


def words(text: str) -> int:
    return len(text.split())


def test_prompt_numbers_sources_and_ends_with_the_question():
    assert format_prompt("Who?", ["a b", "c"]) == "Sources:\n[1] a b\n[2] c\n\nQ: Who? A:"
    assert format_prompt("Who?", []) == "Q: Who? A:"


def test_fit_drops_low_ranked_sources_then_cuts_the_last():
    sources = ["one two three four", "five six seven", "eight nine"]
    full = format_prompt("Who?", sources)
    assert fit_prompt("Who?", sources, words, 100) == (full, 3)
    # "Sources:" + "[1] one two three four" + "[2] five six" + "Q: Who? A:" = 1 + 5 + 3 + 3 = 12 words
    prompt, used = fit_prompt("Who?", sources, words, 12)
    assert used == 2 and prompt == format_prompt("Who?", ["one two three four", "five six"])
    assert fit_prompt("Who?", sources, words, 4) == ("Q: Who? A:", 0)
    with pytest.raises(GptlabError, match="question alone"):
        fit_prompt("Who is it?", sources, words, 3)


def test_relevance_is_the_gold_doc_or_an_answer_in_the_chunk():
    hits = [Hit(Chunk("x", 0, "nothing here"), 0, 1, 0, 0), Hit(Chunk("y", 0, "a Farmer lived"), 1, 1, 0, 0)]
    assert first_relevant(QARow("q", ["farmer"], "y", "f:1"), hits) == 2
    assert first_relevant(QARow("q", ["farmer"], None, "f:1"), hits) == 2  # capitalised, as PopQA matches
    assert first_relevant(QARow("q", ["sailor"], None, "f:1"), hits) is None


def test_bad_qa_rows_name_file_and_line(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(
        json.dumps({"question": "q", "answers": ["a"]}) + "\n" + json.dumps({"question": "q"}) + "\n"
    )
    with pytest.raises(GptlabError, match=r"qa.jsonl:2: 'answers' must be"):
        read_qa(path)
    for row, message in (("{oops", "is not valid JSON"), ("[" * 100_000, "is nested too deeply")):
        path.write_text(json.dumps({"question": "q", "answers": ["a"]}) + "\n" + row + "\n")
        with pytest.raises(GptlabError, match=rf"qa.jsonl:2 {message}"):
            read_qa(path)
    assert len(read_qa(DATA / "qa.jsonl")) == 12


def test_cli_index_ask_and_eval_with_the_run_as_embedder(rag_run, tmp_path, capsys):
    from gptlab.cli import main

    tiny_run = rag_run
    capsys.readouterr()

    out = tmp_path / "idx"
    docs = str(DATA / "docs.jsonl")
    argv = [
        "rag",
        "index",
        "--docs",
        docs,
        "--out",
        str(out),
        "--embedder",
        str(tiny_run),
        "--chunk-tokens",
        "16",
    ]
    assert main([*argv, "--overlap", "4", "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["documents"] == 6 and built["embedder"].startswith("run:") and built["dim"] == 32
    assert main([*argv, "--overlap", "4"]) == 2  # refuses to replace the index without --overwrite
    assert "--overwrite" in capsys.readouterr().err

    question = "Sawynmir's occupation?"
    ask = [
        "rag",
        "ask",
        "--index",
        str(out),
        "--model",
        str(tiny_run),
        question,
        "--k",
        "2",
        "--max-new-tokens",
        "3",
    ]
    assert main([*ask, "--json"]) == 0
    asked = json.loads(capsys.readouterr().out)
    assert len(asked["chunks"]) == 2 and asked["prompt"].endswith(f"Q: {question} A:")
    assert set(asked["chunks"][0]) >= {"doc", "text", "score", "bm25", "cosine"}

    qa = ["--data", str(DATA / "qa.jsonl"), "--k", "2", "--max-new-tokens", "3", "--json"]
    assert main(["eval", "rag", "--index", str(out), "--model", str(tiny_run), "--mode", "bm25", *qa]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["questions"] == 12 and scored["relevance"] == "gold doc"
    # every question names its entity, which only its own document holds: BM25 finds it first
    assert scored["recall_at_k"]["value"] == 1.0 and scored["mrr"] == 1.0


def test_an_index_from_another_embedder_is_refused_at_query_time(tiny_run, capsys):
    from gptlab.cli import main

    # the fixture index was built with MiniLM; the run is not that embedder
    argv = [
        "rag",
        "ask",
        "--index",
        str(DATA / "index"),
        "--model",
        str(tiny_run),
        "q",
        "--embedder",
        str(tiny_run),
    ]
    assert main(argv) == 2
    assert "built with the embedder minilm" in capsys.readouterr().err
