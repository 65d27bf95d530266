"""POST /v1/rag on `gptlab serve --rag-index`: the answer with its cited chunks and scores."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from gptlab.errors import GptlabError  # noqa: E402
from gptlab.serve.app import create_app  # noqa: E402

DATA = Path(__file__).parents[1] / "data" / "rag"


@pytest.fixture(scope="module")
def rag_index(rag_run, tmp_path_factory) -> Path:
    from gptlab.cli import main

    out = tmp_path_factory.mktemp("rag-index") / "idx"
    argv = ["rag", "index", "--docs", str(DATA / "docs.jsonl"), "--out", str(out), "--embedder", str(rag_run)]
    assert main([*argv, "--chunk-tokens", "16", "--overlap", "4"]) == 0
    return out


def test_rag_route_returns_the_answer_and_its_sources(rag_run, rag_index):
    app = create_app(rag_run, rag_index=rag_index, allowed_hosts=["testserver"])
    with TestClient(app) as client:
        reply = client.post("/v1/rag", json={"question": "Sawynmir's occupation?", "k": 3, "max_tokens": 3})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["object"] == "rag.answer" and len(body["chunks"]) == 3
        assert body["chunks"][0]["doc"] == "Sawynmir" and body["chunks"][0]["source"] == 1
        assert isinstance(body["answer"], str) and body["prompt"].endswith("Q: Sawynmir's occupation? A:")
        assert client.post("/v1/rag", json={"question": "x", "k": 0}).status_code == 400
        assert client.post("/v1/rag", json={"question": "x", "extra": 1}).status_code == 400


def test_without_an_index_there_is_no_route(rag_run):
    with TestClient(create_app(rag_run, allowed_hosts=["testserver"])) as client:
        assert client.post("/v1/rag", json={"question": "x"}).status_code == 404


def test_an_index_of_another_run_is_refused_at_start(rag_run, rag_index, tmp_path):
    import json
    import shutil

    other = tmp_path / "other"
    shutil.copytree(rag_index, other)
    meta = json.loads((other / "index.json").read_text())
    (other / "index.json").write_text(json.dumps(meta | {"embedder": "run:another:0123456789abcdef"}))
    with pytest.raises(GptlabError, match="built with the embedder run:another"):
        create_app(rag_run, rag_index=other, allowed_hosts=["testserver"])
