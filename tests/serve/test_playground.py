"""The playground page (gptlab/serve/static/index.html) in a real browser, and bench/serve.py.

The page is driven in Debian's headless Chromium (through playwright) against the real server
(``gptlab.serve.app.create_app`` run by uvicorn in a thread on 127.0.0.1 and a free port) on a tiny
random model: no console errors; a prompt is typed and generated; the streamed tokens appear as
spans coloured by their probability, with the top alternatives on hover; the streamed text and
probabilities equal a non-streaming request with the same seed; the API key goes out as a bearer
token; a server error shows as a readable message; and "Attention view" opens the attention page.
Screenshots go into $GPTLAB_SCREENSHOTS if set, else the test's tmp folder.

The bench smoke test runs bench/serve.py in-process for two seconds with two clients."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from gptlab.model import GPT, GPTConfig
from gptlab.rundir import save_model
from gptlab.tokenizers import CharTokenizer
from gptlab.tokenizers.base import EOT

REPO = Path(__file__).resolve().parents[2]
PROMPT = "the cat sat"
MAX_TOKENS = 20
SEED = 7


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tok = CharTokenizer.train(
        ["the cat sat on the mat. abcdefghijklmnopqrstuvwxyz<>&\"'"], special_tokens=[EOT]
    )
    torch.manual_seed(0)
    cfg = GPTConfig.preset("tiny", vocab_size=tok.vocab_size, n_layer=2, n_embd=32, n_head=4, block_size=64)
    model = GPT(cfg).eval()
    with torch.no_grad():
        # a fresh model is almost uniform over the vocabulary; larger (tied) embeddings give peaked,
        # position-dependent distributions, so the colours and alternatives differ from token to token
        model.transformer.wte.weight.mul_(6)
    path = tmp_path_factory.mktemp("playground") / "tiny-run"
    save_model(path, model, tok)
    return path


def _serve(app):
    """Start ``app`` with uvicorn in a daemon thread on 127.0.0.1 (socket bound here, port 0)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    return server, thread, sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def server_url(run_dir):
    from gptlab.serve.app import create_app

    server, thread, sock, url = _serve(create_app(run_dir))
    yield url
    server.should_exit = True
    thread.join(15)
    sock.close()


def _watch(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


@pytest.mark.slow  # a few seconds of real sockets, browser or property examples; the full suite runs it
@pytest.mark.browser
def test_playground_streams_coloured_tokens_in_a_real_browser(browser, server_url, run_dir, tmp_path):
    import httpx

    shots = Path(os.environ.get("GPTLAB_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    errors = _watch(page)
    requests: list = []
    page.on("request", lambda r: requests.append(r) if r.url.endswith("/v1/completions") else None)
    page.goto(server_url + "/")
    page.wait_for_function(
        "document.getElementById('model-name').textContent === " + json.dumps(run_dir.name)
    )

    # every state #status passes through (old values, so none is lost when several changes are
    # reported together) and the number of token spans seen at each report
    page.evaluate(
        """() => { window.__states = []; window.__counts = [];
        new MutationObserver((records) => {
          for (const r of records) if (r.attributeName === 'data-state') window.__states.push(r.oldValue);
          window.__counts.push(document.querySelectorAll('#output .tok').length);
        }).observe(document.body, {subtree: true, childList: true, attributes: true, attributeOldValue: true});
        }"""
    )
    page.fill("#prompt", PROMPT)
    page.fill("#max-tokens", str(MAX_TOKENS))
    page.fill("#seed", str(SEED))
    page.fill("#temperature", "1")
    page.fill("#top-k", "0")
    page.fill("#top-p", "1")
    page.fill("#api-key", "sk-playground-test")
    page.dispatch_event("#api-key", "change")
    page.click("#generate")
    page.wait_for_function(
        "['done', 'error'].includes(document.getElementById('status').dataset.state)", timeout=30_000
    )
    assert page.get_attribute("#status", "data-state") == "done", page.text_content("#error")
    assert f"usage {len(PROMPT)} + " in page.text_content("#status")  # the include_usage event was read
    states = page.evaluate("window.__states")
    assert states[:2] == ["idle", "waiting"] and "streaming" in states  # read as an SSE stream
    assert page.is_enabled("#generate") and not page.is_enabled("#stop")

    # what went out: a streaming request with logprobs, the settings typed, the key as a bearer token
    assert len(requests) == 1
    sent = json.loads(requests[0].post_data)
    assert sent["stream"] is True and sent["logprobs"] == 5 and sent["prompt"] == PROMPT
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == MAX_TOKENS and sent["seed"] == SEED and sent["temperature"] == 1
    assert "top_k" not in sent  # 0 = off
    assert requests[0].headers["authorization"] == "Bearer sk-playground-test"
    assert page.evaluate("sessionStorage.getItem('gptlab-api-key')") == "sk-playground-test"

    # the same request without streaming gives the same text and the same probabilities
    body = {k: v for k, v in sent.items() if k not in ("stream", "stream_options")}
    reference = httpx.post(server_url + "/v1/completions", json=body, timeout=30).json()
    choice = reference["choices"][0]
    expected_probs = [math.exp(lp) for lp in choice["logprobs"]["token_logprobs"]]

    assert page.text_content("#output .prompt") == PROMPT  # shown first, not as tokens
    spans = page.locator("#output .tok")
    n = spans.count()
    probs = [float(p) for p in spans.evaluate_all("els => els.map(e => e.dataset.prob)")]
    streamed = page.evaluate(
        "[...document.querySelectorAll('#output > :not(.prompt)')].map(e => e.textContent).join('')"
    )
    assert streamed == choice["text"]
    assert n == reference["usage"]["completion_tokens"] == len(expected_probs)
    assert n == MAX_TOKENS or choice["finish_reason"] == "stop"
    assert all(0 < p <= 1 for p in probs)
    assert probs == pytest.approx(expected_probs, rel=1e-5, abs=1e-7)
    assert len(set(round(p, 3) for p in probs)) > 1  # a real spread, so colours differ
    backgrounds = spans.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
    lo, hi = probs.index(min(probs)), probs.index(max(probs))
    assert backgrounds[lo] != backgrounds[hi]
    assert max(page.evaluate("window.__counts")) == n

    # hovering a token shows its top alternatives, the chosen one marked when it is among them
    assert not page.is_visible("#tooltip")
    page.hover("#output .tok >> nth=0")
    assert page.is_visible("#tooltip")
    rows = page.locator("#tooltip tr")
    assert rows.count() == len(choice["logprobs"]["top_logprobs"][0]) == 5
    alt_probs = [float(t.rstrip("%")) / 100 for t in page.locator("#tooltip td.p").all_text_contents()]
    assert alt_probs == sorted(alt_probs, reverse=True)
    top = sorted(math.exp(v) for v in choice["logprobs"]["top_logprobs"][0].values())[::-1]
    assert alt_probs == pytest.approx(top, abs=6e-5)  # shown to 2 decimals of a percent
    if probs[0] >= min(top) - 1e-9:
        assert page.locator("#tooltip tr.chosen").count() == 1
    page.screenshot(path=str(shots / "playground.png"), full_page=True)
    assert errors == []

    # "Attention view" opens the attention page of prompt + output in a new window
    with context.expect_page(timeout=30_000) as new_page:
        page.click("#attention")
    view = new_page.value
    view_errors = _watch(view)
    view.wait_for_selector("#head-svg", timeout=30_000)
    queries = view.locator("#head-svg text[data-side='query']")
    assert queries.count() == len(PROMPT) + len(choice["text"])  # one character per token
    assert int(view.get_attribute("#head-svg", "data-lines")) > 0
    view.screenshot(path=str(shots / "playground-attention.png"), full_page=True)
    assert view_errors == [] and errors == []
    assert page.text_content("#error") == ""

    # a request the server refuses: its OpenAI-style message is shown, the page stays usable
    page.fill("#max-tokens", "100000000")
    page.click("#generate")
    page.wait_for_function("document.getElementById('status').dataset.state === 'error'", timeout=30_000)
    message = page.text_content("#error")
    assert message.startswith("Error 4") and "invalid_request_error" in message
    assert page.is_visible("#error") and page.is_enabled("#generate")
    # Chromium logs the refused request itself; nothing else may go wrong
    assert all("status of 4" in e for e in errors), errors
    page.screenshot(path=str(shots / "playground-error.png"), full_page=True)
    assert (shots / "playground.png").stat().st_size > 10_000
    context.close()


@pytest.mark.slow  # a few seconds of real sockets, browser or property examples; the full suite runs it
@pytest.mark.browser
def test_stop_aborts_the_stream(browser, server_url, tmp_path):
    context = browser.new_context()
    page = context.new_page()
    errors = _watch(page)
    page.goto(server_url + "/")
    # the network slowed to ~2 kB/s (a few events a second), so Stop surely comes mid-stream
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    conditions = {"offline": False, "latency": 0, "downloadThroughput": 2000, "uploadThroughput": -1}
    cdp.send("Network.emulateNetworkConditions", conditions)
    page.fill("#prompt", PROMPT)
    page.fill("#max-tokens", "500")
    page.fill("#seed", str(SEED))  # the main test's seed: no end token among the first tokens
    page.click("#generate")
    page.wait_for_function("document.querySelectorAll('#output .tok').length >= 3", timeout=30_000)
    assert page.get_attribute("#status", "data-state") == "streaming" and page.is_enabled("#stop")
    page.click("#stop")
    page.wait_for_function("document.getElementById('status').dataset.state === 'stopped'", timeout=10_000)
    stopped_at = page.locator("#output .tok").count()
    assert 3 <= stopped_at < 500
    page.wait_for_timeout(500)
    assert page.locator("#output .tok").count() == stopped_at  # nothing arrives after Stop
    assert page.is_enabled("#generate") and not page.is_enabled("#stop")
    assert page.text_content("#error") == "" and errors == []
    context.close()


@pytest.mark.slow  # a few seconds of real sockets, browser or property examples; the full suite runs it
@pytest.mark.browser
def test_api_key_from_the_page(browser, run_dir, tmp_path):
    from gptlab.serve.app import create_app

    server, thread, sock, url = _serve(create_app(run_dir, api_key="sk-right"))
    try:
        context = browser.new_context()
        page = context.new_page()
        errors = _watch(page)
        page.goto(url + "/")  # the page and /healthz need no key; /v1 does
        page.wait_for_function(
            "document.getElementById('model-name').textContent === " + json.dumps(run_dir.name)
        )
        page.fill("#prompt", PROMPT)
        page.fill("#max-tokens", "4")
        page.fill("#seed", str(SEED))  # 4 tokens, no end token (the main test's first 4)
        for key, state in (("", "error"), ("sk-wrong", "error"), ("sk-right", "done")):
            page.fill("#api-key", key)
            page.dispatch_event("#api-key", "change")
            page.click("#generate")
            page.wait_for_function(
                f"document.getElementById('status').dataset.state === '{state}'", timeout=30_000
            )
            if state == "error":
                message = page.text_content("#error")
                assert message.startswith("Error 401 authentication_error") and "API key" in message
        assert page.locator("#output .tok").count() == 4 and page.text_content("#error") == ""
        assert all("status of 401" in e for e in errors) and len(errors) == 2, errors
        context.close()
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def test_playground_page_is_self_contained_and_uses_text_content():
    page = (REPO / "gptlab" / "serve" / "static" / "index.html").read_text(encoding="utf-8")
    for marker in ("http://", "https://", "//cdn", "@import", "url("):
        assert marker not in page.replace("http://127.0.0.1", ""), marker
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page and "document.write" not in page
    for element_id in (
        "prompt", "temperature", "top-k", "top-p", "max-tokens", "seed", "generate", "stop",
        "output", "status", "model-name", "attention",
    ):  # fmt: skip
        assert f'id="{element_id}"' in page, element_id


# ------------------------------------------------------------------------------------- bench smoke


@pytest.mark.slow  # a few seconds of real sockets, browser or property examples; the full suite runs it
def test_serve_bench_smoke(capsys):
    spec = importlib.util.spec_from_file_location("bench_serve", REPO / "bench" / "serve.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = ["--clients", "2", "--seconds", "2", "--max-tokens", "8", "--reference-seconds", "10", "--json"]
    assert bench.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("requests_per_s", "tokens_per_s", "p50_latency_ms", "p99_latency_ms", "errors", "machine"):
        assert key in report, key
    served, direct = report["served"], report["direct"]
    assert report["errors"] == 0 and served["requests"] > 0 and served["tokens"] > 0
    assert served["tokens"] <= 8 * served["requests"]  # max_tokens respected
    assert 0 < report["p50_latency_ms"] <= report["p99_latency_ms"]
    assert direct["requests"] == served["requests"] or direct["cut_by_reference_seconds"]
    assert report["ratios"]["served_vs_direct_tokens_per_s"] > 0
    assert report["config"]["clients"] == 2


@pytest.mark.slow
def test_serve_bench_sweep_smoke(capsys):
    spec = importlib.util.spec_from_file_location("bench_serve_sweep", REPO / "bench" / "serve.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--sweep", "1,2", "--seconds", "1", "--max-tokens", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == 0 and report["config"]["clients"] == [1, 2]
    for key in ("tokens_per_s_by_clients", "ttft_p99_ms_by_clients", "inter_token_p50_ms_by_clients"):
        assert set(report[key]) == {"1", "2"} and set(report["interleaved"][key]) == {"1", "2"}
    assert all(v > 0 for v in report["tokens_per_s_by_clients"].values())
    ttft = report["batched"]["phases"]["2"]["ttft"]
    assert 0 < ttft["p50_ms"] <= ttft["p99_ms"]
    assert report["ratios"]["tokens_per_s_over_1_client"]["1"] == 1.0
    assert set(report["ratios"]["batched_over_interleaved_tokens_per_s"]) == {"1", "2"}
