"""HTML views (attention head/model view, coloured attributions, lens heat map), the classifier
target for attributions, and ``gptlab analyze ... --out`` / ``analyze all``.

The browser test opens the pages in a real headless Chromium (Debian's, driven by playwright; the
test set-up installs both): no console errors, a click on a head selector changes the view, and a
screenshot is written (into $GPTLAB_SCREENSHOTS if set, else the test's tmp folder)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from captum.attr import IntegratedGradients

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.interpret.attention import attention_rollout, attention_weights, head_statistics
from gptlab.interpret.lens import logit_lens
from gptlab.interpret.saliency import class_target, integrated_gradients, occlusion
from gptlab.interpret.views import attention_page, lens_page, saliency_page
from gptlab.model import GPT, GPTConfig
from gptlab.model.heads import GPTClassifier

TEXT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("tiny", vocab_size=40, n_layer=2, n_embd=32, n_head=4, block_size=32)).eval()


@pytest.fixture(scope="module")
def tokenizer():
    from gptlab.tokenizers import CharTokenizer

    return CharTokenizer.train(["the cat sat on the mat, <script>abcdefghijklmnopqrstuvwxyz"])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, model, tokenizer) -> Path:
    from gptlab.rundir import save_model

    path = tmp_path_factory.mktemp("views") / "run"
    save_model(path, model, tokenizer)
    return path


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory, model, tokenizer) -> Path:
    """A classifier run as `gptlab finetune classify` writes it (full model + head + classifier.json)."""
    from gptlab.finetune.classifier_run import (
        CLASSIFIER_FORMAT,
        CLASSIFIER_JSON,
        CLASSIFIER_VERSION,
        HEAD_FILE,
    )
    from gptlab.io import atomic_write_json, save_safetensors
    from gptlab.rundir import save_model

    torch.manual_seed(1)
    clf = GPTClassifier(model, 2)
    path = tmp_path_factory.mktemp("views") / "clf"
    save_model(path, model, tokenizer)
    save_safetensors({k: v.detach() for k, v in clf.head.state_dict().items()}, path / HEAD_FILE)
    meta = {
        "format": CLASSIFIER_FORMAT,
        "version": CLASSIFIER_VERSION,
        "label_names": ["ham", "spam"],
        "pooling": "last",
        "max_length": 32,
    }
    atomic_write_json(path / CLASSIFIER_JSON, meta)
    return path


def _no_network(page: str) -> None:
    """Self-contained: nothing is fetched (src/href only data: URIs or relative files)."""
    for url in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert not url.startswith(("http:", "https:", "//")), url


# ------------------------------------------------------------------------------- pages, no browser


def test_attention_page_inlines_the_weights_and_escapes_tokens(model):
    ids = [3, 7, 1, 9, 3]
    attns = attention_weights(model, ids)
    tokens = ["</script><script>alert(1)</script>", "a", "b", "c", "d"]
    page = attention_page(tokens, attns, head_statistics(attns, ids), attention_rollout(attns), [])
    _no_network(page)
    assert "<script>alert(1)" not in page  # the token can't close the data block or run
    blob = re.search(r'<script type="application/json" id="attention-data">(.*?)</script>', page, re.S)
    data = json.loads(blob.group(1))
    assert data["tokens"][0] == tokens[0]  # JSON decoding restores it exactly
    assert len(data["attn"]) == 2 and len(data["attn"][0]) == 4
    torch.testing.assert_close(torch.tensor(data["attn"][1][2]), attns[1][2], atol=6e-5, rtol=0)


def test_saliency_page_colours_by_sign_and_scale():
    page = saliency_page(["a", "<b>", "c"], {"occlusion": [1.0, -0.5, 0.0]}, "x", 0.0)
    _no_network(page)
    spans = re.findall(r'<span class="tok" style="background:rgba\((\d+),(\d+),(\d+),([\d.]+)\)"', page)
    assert [s[3] for s in spans] == ["1.000", "0.500", "0.000"]  # |value| / max |value|
    assert spans[0][:3] == ("220", "40", "40") and spans[1][:3] == ("40", "90", "220")  # red +, blue -
    assert "&lt;b&gt;" in page and "<b>\u003c" not in page


def test_lens_page_names_each_layers_top_prediction(model):
    ids = [3, 7, 1, 9]
    lens = logit_lens(model, ids, top_k=3)
    page = lens_page(["a", "b", "c", "d"], lens, lambda i: f"tok{i}")
    rows = re.findall(r"<tr><th>(\d+) \(.*?\)</th>(.*?)</tr>", page, re.S)
    assert [int(r[0]) for r in rows] == [2, 1, 0]  # the output layer on top
    for layer, cells in rows:
        shown = re.findall(r">(tok\d+)</td>", cells)
        assert shown == [f"tok{pos[0]['id']}" for pos in lens[int(layer)]]


# --------------------------------------------------------------------------------- classifier target


def test_class_target_is_the_classifiers_log_probability_and_matches_captum(model):
    torch.manual_seed(2)
    clf = GPTClassifier(model, 3).eval()
    ids = [3, 7, 1, 9, 3, 7]
    f, emb = class_target(clf, ids, class_index=2)
    with torch.no_grad():
        expected = clf(torch.tensor([ids]), torch.tensor([len(ids)]))[0].log_softmax(-1)[0, 2]
    torch.testing.assert_close(f(emb)[0], expected)
    ours, gap = integrated_gradients(f, emb, steps=32)
    theirs = IntegratedGradients(f).attribute(emb, baselines=torch.zeros_like(emb), n_steps=32)
    torch.testing.assert_close(ours, theirs[0].sum(-1).float(), rtol=0, atol=1e-4)
    assert gap < 1e-3
    # occlusion of token t = score drop when its embedding is zeroed, recomputed by hand for t = 0
    zeroed = emb.clone()
    zeroed[0, 0] = 0
    torch.testing.assert_close(occlusion(f, emb)[0], (f(emb) - f(zeroed))[0])
    with pytest.raises(GptlabError, match="outside the classifier's classes"):
        class_target(clf, ids, class_index=3)


def test_cli_saliency_on_a_classifier_run(classifier_dir, capsys):
    assert main(["analyze", "saliency", "--model", str(classifier_dir), "--text", TEXT, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "class" and out["target"] in ("ham", "spam")
    assert len(out["attributions"]["integrated_gradients"]) == len(TEXT)
    assert out["completeness_gap"] < 1e-3
    args = [
        "analyze",
        "saliency",
        "--model",
        str(classifier_dir),
        "--text",
        TEXT,
        "--target",
        "spam",
        "--json",
    ]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["target"] == "spam"
    assert main(args[:-3] + ["--target", "eggs"]) == 2
    assert "not one of the classifier's labels: ham, spam" in capsys.readouterr().err


def test_cli_views_write_html(run_dir, tmp_path, capsys):
    for view in ("attention", "lens", "saliency"):
        args = ["analyze", view, "--model", str(run_dir), "--text", TEXT, "--out", str(tmp_path), "--json"]
        assert main(args) == 0
        out = json.loads(capsys.readouterr().out)
        page = Path(out["html"]).read_text()
        assert Path(out["html"]) == tmp_path / f"{view}.html"
        _no_network(page)
    assert 'id="head-svg"' in (tmp_path / "attention.html").read_text()


# ------------------------------------------------------------------------------------------ browser


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, errors


@pytest.mark.slow
@pytest.mark.browser
def test_report_works_in_a_real_browser(browser, run_dir, tmp_path):
    out = tmp_path / "report"
    args = ["analyze", "all", "--model", str(run_dir), "--text", TEXT, "--out", str(out)]
    assert main(args + ["--samples", "2", "--max-new-tokens", "8"]) == 0
    shots = Path(os.environ.get("GPTLAB_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)

    page, errors = _open(browser, out / "index.html")
    links = page.eval_on_selector_all("#views a", "els => els.map(e => e.getAttribute('href'))")
    assert sorted(links) == sorted(
        ["attention.html", "lens.html", "saliency.html", "embeddings.html", "sampling.html"]
    )
    for href in links:
        view, view_errors = _open(browser, out / href)
        view.screenshot(path=str(shots / href.replace(".html", ".png")), full_page=True)
        assert view_errors == [], (href, view_errors)
        view.close()
    assert errors == []

    page, errors = _open(browser, out / "attention.html")
    svg = page.locator("#head-svg")
    lines_all = int(svg.get_attribute("data-lines"))
    assert svg.get_attribute("data-heads") == "0,1,2,3" and lines_all > 0
    assert page.locator("#head-svg line").count() == lines_all
    page.click(".head-btn[data-head='1']")  # hide head 1
    assert svg.get_attribute("data-heads") == "0,2,3"
    assert 0 < int(svg.get_attribute("data-lines")) < lines_all
    page.select_option("#layer-select", "1")
    assert svg.get_attribute("data-layer") == "1"
    page.click("#model-view .thumb[data-layer='0'][data-head='2']")  # model view -> head view
    assert svg.get_attribute("data-layer") == "0" and svg.get_attribute("data-heads") == "2"
    assert page.locator("#model-view .thumb.selected").count() == 1
    assert page.locator("#model-view .thumb").count() == 2 * 4
    page.hover("#head-svg text[data-side='query'][data-index='3']")  # isolate one query token
    assert int(svg.get_attribute("data-lines")) <= 4  # query 3 sees keys 0..3 only
    page.screenshot(path=str(shots / "attention-head-2.png"), full_page=True)
    assert errors == []
    assert (shots / "attention-head-2.png").stat().st_size > 10_000
