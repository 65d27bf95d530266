"""Dense top-k against a brute-force cosine (and faiss where installed), reciprocal rank fusion by
hand, and the index: build, save/load (safetensors + JSON), search modes, refusals."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from gptlab.errors import GptlabError
from gptlab.rag.dense import Embedder, cosine_top_k, mean_pooled, run_embedder
from gptlab.rag.fusion import reciprocal_rank_fusion
from gptlab.rag.index import build_index, load_index

DATA = Path(__file__).parents[1] / "data" / "rag"


def hashed_words(texts):
    """A deterministic stand-in embedder: each word adds a fixed random vector (seeded by its hash)."""
    out = torch.zeros(len(texts), 16)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            seed = int(hashlib.sha256(word.encode()).hexdigest()[:8], 16)
            out[i] += torch.randn(16, generator=torch.Generator().manual_seed(seed))
    return out


FAKE = Embedder("test:hashed-words", 16, hashed_words)


def brute_force(query, rows, k):
    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    sims = [(cos(query.tolist(), r.tolist()), i) for i, r in enumerate(rows)]
    return sorted(sims, key=lambda p: -p[0])[:k]


@pytest.mark.parametrize("seed", range(3))
def test_dense_top_k_equals_brute_force_cosine(seed):
    g = torch.Generator().manual_seed(seed)
    rows, query = torch.randn(200, 24, generator=g), torch.randn(24, generator=g)
    values, indices = cosine_top_k(query, rows, 7)
    expected = brute_force(query, rows, 7)
    assert indices.tolist() == [i for _, i in expected]
    assert values.tolist() == pytest.approx([s for s, _ in expected], abs=1e-5)


def test_dense_top_k_equals_faiss():
    faiss = pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(0)
    rows = torch.nn.functional.normalize(torch.randn(300, 32, generator=g), dim=-1)
    query = torch.nn.functional.normalize(torch.randn(32, generator=g), dim=-1)
    flat = faiss.IndexFlatIP(32)
    flat.add(rows.numpy())
    scores, ids = flat.search(query[None].numpy(), 10)
    values, indices = cosine_top_k(query, rows, 10)
    assert indices.tolist() == ids[0].tolist()
    assert values.tolist() == pytest.approx(scores[0].tolist(), abs=1e-5)


def test_reciprocal_rank_fusion_by_hand():
    fused = reciprocal_rank_fusion([[3, 1, 2], [1, 4]], k=60)
    expected = {1: 1 / 62 + 1 / 61, 3: 1 / 61, 4: 1 / 62, 2: 1 / 63}
    assert [i for i, _ in fused] == [1, 3, 4, 2]
    assert dict(fused) == pytest.approx(expected)


def test_index_round_trip_and_search_modes(tmp_path):
    index = build_index(DATA / "docs.jsonl", FAKE, chunk_tokens=12, overlap=3)
    index.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        "chunks.jsonl",
        "index.json",
        "index.safetensors",
    ]
    loaded = load_index(tmp_path / "idx")
    assert loaded.chunks == index.chunks and torch.equal(loaded.embeddings, index.embeddings)
    question = "What is Sawynmir's occupation?"
    bm25 = loaded.search(question, None, k=3, mode="bm25")
    assert bm25[0].chunk.doc == "Sawynmir"  # the only chunks with the rare name
    dense = loaded.search(question, FAKE, k=5, mode="dense")
    expected = brute_force(FAKE([question])[0], loaded.embeddings, 5)
    assert [h.id for h in dense] == [i for _, i in expected]
    hybrid = loaded.search(question, FAKE, k=4, mode="hybrid")
    by_bm25 = [h.id for h in loaded.search(question, None, k=len(loaded.chunks), mode="bm25") if h.bm25 > 0]
    by_cos = [h.id for h in loaded.search(question, FAKE, k=len(loaded.chunks), mode="dense")]
    assert [h.id for h in hybrid] == [i for i, _ in reciprocal_rank_fusion([by_bm25, by_cos])][:4]


def test_an_index_refuses_another_embedder(tmp_path):
    index = build_index(DATA / "docs.jsonl", FAKE, chunk_tokens=12, overlap=3)
    other = Embedder("test:other", 16, hashed_words)  # same width, different model: still refused
    with pytest.raises(GptlabError, match="built with the embedder test:hashed-words"):
        index.search("farmer", other, mode="hybrid")


def test_an_empty_corpus_is_an_error(tmp_path):
    (tmp_path / "blank.txt").write_text("  \n\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(GptlabError, match="no text to index"):
        build_index(tmp_path, FAKE)


def test_a_damaged_index_is_refused(tmp_path):
    index = build_index(DATA / "docs.jsonl", FAKE, chunk_tokens=12, overlap=3)
    index.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    (tmp_path / "idx" / "index.json").write_text(json.dumps(meta | {"chunks": 999}))
    with pytest.raises(GptlabError, match="inconsistent"):
        load_index(tmp_path / "idx")
    with pytest.raises(GptlabError, match="not a retrieval index"):
        load_index(tmp_path)


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("chunks.jsonl", "{oops\n", r"chunks.jsonl:1 is not valid JSON"),
        ("chunks.jsonl", '{"doc": "x"}\n', r"chunks.jsonl:1: not a chunk row"),
        ("index.json", "[" * 100_000, "index.json is nested too deeply"),  # parse_json's guard
    ],
)
def test_a_corrupt_index_file_names_itself(tmp_path, name, text, message):
    build_index(DATA / "docs.jsonl", FAKE, chunk_tokens=12, overlap=3).save(tmp_path / "idx")
    (tmp_path / "idx" / name).write_text(text)
    with pytest.raises(GptlabError, match=message):
        load_index(tmp_path / "idx")


def test_run_embedder_mean_pools_and_ignores_padding(tiny_run):
    from gptlab.rundir import load_model

    model, tokenizer = load_model(tiny_run)
    texts = ["to be", "or not to be, that is the question"]
    batched = mean_pooled(model, tokenizer, texts)
    one_by_one = torch.cat([mean_pooled(model, tokenizer, [t]) for t in texts])
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=1e-5)
    ids = torch.tensor([tokenizer.encode(texts[0])])
    with torch.no_grad():
        expected = model.head_input(ids)[0].mean(0)
    torch.testing.assert_close(batched[0], expected, atol=1e-5, rtol=1e-5)
    embedder = run_embedder(str(tiny_run), model=model, tokenizer=tokenizer)
    assert embedder.id.startswith("run:") and embedder.dim == model.config.n_embd
