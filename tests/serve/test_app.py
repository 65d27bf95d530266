"""gptlab serve: the official openai client against real servers on loopback, validation, limits,
concurrency, disconnects, API key, CORS, classification, the attention page and time-outs.

Every server is uvicorn in a background thread bound to 127.0.0.1 on a port the OS picks; every
request has a timeout and every loop a bound, so nothing can hang the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import string
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import torch

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from live_server import serving  # noqa: E402

import gptlab.serve.app as serve_app  # noqa: E402
import gptlab.serve.routes as serve_routes  # noqa: E402
from gptlab.chat import ChatSession  # noqa: E402
from gptlab.finetune.classifier_run import CLASSIFIER_JSON, HEAD_FILE, load_classifier  # noqa: E402
from gptlab.generate import Sampler, generate_text  # noqa: E402
from gptlab.io import atomic_write_json, save_safetensors  # noqa: E402
from gptlab.model import GPT, GPTConfig  # noqa: E402
from gptlab.model.heads import GPTClassifier  # noqa: E402
from gptlab.rundir import load_model, save_model  # noqa: E402
from gptlab.serve.app import create_app  # noqa: E402
from gptlab.serve.engine import ChoiceText, Engine, EngineError, GenerationJob  # noqa: E402
from gptlab.serve.guards import HeaderDeadlineProtocol, TrustedHosts  # noqa: E402
from gptlab.serve.limits import ServeLimits  # noqa: E402
from gptlab.tokenizers import CharTokenizer  # noqa: E402
from gptlab.tokenizers.base import EOT  # noqa: E402

BLOCK_SIZE = 64
KEY = "test-key-123"
ALLOWED_ORIGIN = "http://allowed.test"
HTTP_TIMEOUT = 30.0


def _gpt(vocab_size: int, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig.preset(
        "tiny", vocab_size=vocab_size, n_layer=2, n_embd=32, n_head=4, block_size=BLOCK_SIZE
    )
    return GPT(config)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    tok = CharTokenizer.train(string.printable, special_tokens=[EOT])
    save_model(root / "lm", _gpt(tok.vocab_size), tok)
    # no <|endoftext|>: a generation can only end at max_tokens (disconnect and time-out tests)
    plain = CharTokenizer.train(string.printable)
    save_model(root / "endless", _gpt(plain.vocab_size, seed=1), plain)
    clf = GPTClassifier(_gpt(tok.vocab_size, seed=2), 2)
    torch.nn.init.normal_(clf.head.weight, std=1.0)  # a random head with clearly unequal classes
    save_model(root / "clf", clf.gpt, tok, extra={"finetune": "classify"})
    save_safetensors({k: v.detach() for k, v in clf.head.state_dict().items()}, root / "clf" / HEAD_FILE)
    meta = {"format": "gptlab-classifier", "version": 1, "label_names": ["ham", "spam"], "pooling": "last"}
    atomic_write_json(root / "clf" / CLASSIFIER_JSON, {**meta, "max_length": BLOCK_SIZE, "lora": False})
    return {name: str(root / name) for name in ("lm", "endless", "clf")}


@pytest.fixture(scope="module")
def lm(runs):
    limits = ServeLimits(max_tokens_cap=64, max_n=4, max_body_bytes=20_000)
    app = create_app(runs["lm"], limits=limits, cors_origins=(ALLOWED_ORIGIN,))
    with serving(app) as (url, _):
        yield url, app


@pytest.fixture(scope="module")
def endless(runs):
    app = create_app(runs["endless"], api_key=KEY, limits=ServeLimits(max_tokens_cap=100_000))
    with serving(app) as (url, _):
        yield url, app


@pytest.fixture(scope="module")
def clf(runs):
    with serving(create_app(runs["clf"])) as (url, _):
        yield url


@pytest.fixture(scope="module")
def loaded(runs):
    return load_model(runs["lm"])


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=HTTP_TIMEOUT)


def post(url: str, path: str, **kwargs) -> httpx.Response:
    return httpx.post(url + path, timeout=HTTP_TIMEOUT, **kwargs)


def assert_openai_error(r: httpx.Response, status: int, param: str | None = "any") -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    if param != "any":
        assert error["param"] == param
    return error


# ------------------------------------------------------------------------- openai client: basics


def test_models_and_health(lm):
    url, _ = lm
    assert [m.id for m in client(url).models.list().data] == ["lm"]
    r = httpx.get(url + "/healthz", timeout=HTTP_TIMEOUT)
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["model"] == "lm"


def test_completion_equals_generate_text_for_the_seed(lm, loaded):
    url, _ = lm
    model, tok = loaded
    c = client(url)
    for seed, extra in ((3, {}), (11, {"top_p": 0.9, "extra_body": {"top_k": 20}})):
        r = c.completions.create(model="lm", prompt="Hello", max_tokens=20, seed=seed, **extra)
        again = c.completions.create(model="lm", prompt="Hello", max_tokens=20, seed=seed, **extra)
        text = r.choices[0].text
        assert again.choices[0].text == text
        expected = generate_text(
            model,
            tok,
            "Hello",
            20,
            Sampler(top_p=extra.get("top_p"), top_k=extra.get("extra_body", {}).get("top_k")),
            seed=seed,
        )
        assert text == expected
        # usage: the tokenizer's counts (the end-of-text token is not part of the completion)
        assert r.usage.prompt_tokens == len(tok.encode("Hello"))
        assert r.usage.completion_tokens == len(tok.encode(text))
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
        assert r.choices[0].finish_reason == ("length" if len(text) == 20 else "stop")
    other = c.completions.create(model="lm", prompt="Hello", max_tokens=20, seed=4).choices[0].text
    assert other != c.completions.create(model="lm", prompt="Hello", max_tokens=20, seed=3).choices[0].text


def test_n_logprobs_are_the_models_distribution(lm, loaded):
    url, _ = lm
    model, tok = loaded
    prompt = "The cat"
    r = client(url).completions.create(model="lm", prompt=prompt, max_tokens=12, n=2, logprobs=3, seed=5)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].text != r.choices[1].text
    assert r.usage.completion_tokens == sum(len(tok.encode(c.text)) for c in r.choices)
    for choice in r.choices:
        lp = choice.logprobs
        assert "".join(lp.tokens) == choice.text
        assert lp.text_offset == [len(prompt) + i for i in range(len(choice.text))]
        ids = tok.encode(prompt + choice.text)
        with torch.no_grad():
            logits, _ = model(torch.tensor([ids]))
        ref = logits[0].float().log_softmax(-1)
        for i, (token, token_lp, top) in enumerate(zip(lp.tokens, lp.token_logprobs, lp.top_logprobs)):
            row = ref[len(tok.encode(prompt)) - 1 + i]
            assert token_lp == pytest.approx(float(row[tok.encode(token)[0]]), abs=1e-4)
            best = row.topk(3)
            assert len(top) == 3
            assert sorted(top.values(), reverse=True) == pytest.approx(best.values.tolist(), abs=1e-4)
            assert set(top) == {tok.decode([int(j)]) for j in best.indices}


def test_stop_strings_cut_the_text(lm):
    url, _ = lm
    c = client(url)
    full = (
        c.completions.create(model="lm", prompt="abc", max_tokens=30, seed=2, temperature=0.8).choices[0].text
    )
    assert len(full) >= 10, "pick a seed whose completion is long enough"
    stop = full[6:8]
    cut = c.completions.create(
        model="lm", prompt="abc", max_tokens=30, seed=2, temperature=0.8, stop=[stop, "\x00"]
    )
    assert cut.choices[0].text == full[: full.find(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = c.completions.create(
        model="lm", prompt="abc", max_tokens=30, seed=2, temperature=0.8, stop=stop, stream=True
    )
    assert "".join(ch.choices[0].text for ch in streamed) == full[: full.find(stop)]


def test_streams_equal_the_whole_answers(lm):
    url, _ = lm
    c = client(url)
    args = dict(model="lm", prompt="Once", max_tokens=24, n=2, logprobs=2, seed=9)
    whole = c.completions.create(**args)
    texts, tokens, finish, chunks = ["", ""], [[], []], [None, None], 0
    for ch in c.completions.create(**args, stream=True):
        chunks += 1
        for choice in ch.choices:
            texts[choice.index] += choice.text
            tokens[choice.index] += choice.logprobs.tokens if choice.logprobs else []
            finish[choice.index] = choice.finish_reason or finish[choice.index]
    assert chunks > 4
    assert texts == [ch.text for ch in whole.choices]
    assert tokens == [ch.logprobs.tokens for ch in whole.choices]
    assert finish == [ch.finish_reason for ch in whole.choices]

    messages = [{"role": "user", "content": "Tell me a story"}]
    chat_args = dict(model="lm", messages=messages, max_tokens=16, seed=4, logprobs=True, top_logprobs=2)
    reply = c.chat.completions.create(**chat_args)
    content, logprob_tokens, roles, last = "", [], [], None
    stream = c.chat.completions.create(**chat_args, stream=True, stream_options={"include_usage": True})
    for ch in stream:
        if ch.usage is not None:
            assert ch.usage.completion_tokens == reply.usage.completion_tokens
            continue
        delta = ch.choices[0].delta
        roles += [delta.role] if delta.role else []
        content += delta.content or ""
        if ch.choices[0].logprobs:
            logprob_tokens += [t.token for t in ch.choices[0].logprobs.content]
        last = ch.choices[0].finish_reason or last
    assert roles == ["assistant"]
    assert content == reply.choices[0].message.content
    assert logprob_tokens == [t.token for t in reply.choices[0].logprobs.content]
    assert all(len(t.top_logprobs) == 2 for t in reply.choices[0].logprobs.content)
    assert last == reply.choices[0].finish_reason

    # the raw event stream ends with [DONE]
    with httpx.stream(
        "POST",
        url + "/v1/completions",
        json={"prompt": "x", "max_tokens": 5, "stream": True},
        timeout=HTTP_TIMEOUT,
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_chat_uses_the_runs_template(lm, loaded):
    url, _ = lm
    model, tok = loaded
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Who are you?"},
    ]
    r = client(url).chat.completions.create(
        model="lm", messages=messages, max_tokens=10, seed=1, temperature=0.9
    )
    # a session samples turn i with seed + i; the API uses the request's seed as is
    session = ChatSession(model, tok, "alpaca", max_new_tokens=10, sampler=Sampler(temperature=0.9), seed=0)
    session.history = [("Be brief.\n\nHi", "Hello!")]
    assert r.choices[0].message.content == session.reply("Who are you?")
    assert r.choices[0].message.role == "assistant"
    session.history = [("Be brief.\n\nHi", "Hello!")]
    assert r.usage.prompt_tokens == len(session.prompt_ids("Who are you?"))


# ------------------------------------------------------------------------------------ validation


def test_invalid_requests_get_openai_errors(lm):
    url, _ = lm
    headers = {"Content-Type": "application/json"}
    assert_openai_error(post(url, "/v1/completions", content=b'{"prompt": "a",', headers=headers), 400)
    assert_openai_error(post(url, "/v1/completions", content=b"[1, 2]", headers=headers), 400)
    e = assert_openai_error(
        post(url, "/v1/completions", json={"prompt": "a", "temprature": 1}), 400, "temprature"
    )
    assert "unknown field" in e["message"]
    assert_openai_error(
        post(url, "/v1/completions", json={"prompt": "a", "temperature": -0.5}), 400, "temperature"
    )
    assert_openai_error(post(url, "/v1/completions", json={"prompt": "a", "top_p": 1.5}), 400, "top_p")
    nan = b'{"prompt": "a", "temperature": NaN}'
    assert_openai_error(post(url, "/v1/completions", content=nan, headers=headers), 400, "temperature")
    assert_openai_error(
        post(url, "/v1/completions", json={"prompt": "a", "max_tokens": 65}), 400, "max_tokens"
    )
    assert_openai_error(post(url, "/v1/completions", json={"prompt": "a", "n": 5}), 400, "n")
    assert_openai_error(post(url, "/v1/completions", json={"prompt": "a", "logprobs": 6}), 400, "logprobs")
    assert_openai_error(
        post(url, "/v1/completions", json={"prompt": "a", "stop": list("abcde")}), 400, "stop"
    )
    assert_openai_error(post(url, "/v1/completions", json={"max_tokens": 3}), 400, "prompt")
    # unimplemented options: refused, except the penalties at their no-op value 0 (clients send it)
    assert_openai_error(post(url, "/v1/completions", json={"prompt": "a", "echo": True}), 400, "echo")
    penalty = {"prompt": "a", "max_tokens": 2, "presence_penalty": 0, "frequency_penalty": 0.0}
    assert post(url, "/v1/completions", json=penalty).status_code == 200
    assert_openai_error(
        post(url, "/v1/completions", json=penalty | {"presence_penalty": 0.5}), 400, "presence_penalty"
    )
    # a character outside a char tokenizer's vocabulary: the tokenizer's error, as a 400
    assert_openai_error(post(url, "/v1/completions", json={"prompt": "caf\u00e9"}), 400)
    e = assert_openai_error(
        post(url, "/v1/completions", json={"prompt": "x" * (BLOCK_SIZE + 1)}), 400, "prompt"
    )
    assert e["code"] == "context_length_exceeded"
    long_chat = {"messages": [{"role": "user", "content": "y" * (BLOCK_SIZE + 1)}]}
    assert_openai_error(post(url, "/v1/chat/completions", json=long_chat), 400, "messages")
    last_assistant = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    assert_openai_error(post(url, "/v1/chat/completions", json=last_assistant), 400, "messages")
    assert_openai_error(
        post(url, "/v1/chat/completions", json={"messages": [{"role": "bot", "content": "a"}]}), 400
    )
    # body over max_body_bytes, declared (Content-Length) or not (chunked)
    big = json.dumps({"prompt": "z" * 30_000}).encode()
    assert_openai_error(post(url, "/v1/completions", content=big, headers=headers), 413)
    chunked = post(url, "/v1/completions", content=iter([big[:15_000], big[15_000:]]), headers=headers)
    assert "content-length" not in chunked.request.headers
    assert_openai_error(chunked, 413)
    assert_openai_error(httpx.get(url + "/v1/nothing", timeout=HTTP_TIMEOUT), 404)
    # the openai client sees them as exceptions of the right class
    with pytest.raises(openai.BadRequestError):
        client(url).completions.create(model="lm", prompt="a", temperature=3)


# --------------------------------------------------------------------------------- concurrency


def test_eight_concurrent_requests_each_get_their_own_answer(lm):
    url, app = lm
    c = client(url)

    def ask(seed: int) -> str:
        if seed % 2:  # half of them streamed, so steps of different requests interleave
            stream = c.completions.create(model="lm", prompt="Go", max_tokens=30, seed=seed, stream=True)
            return "".join(ch.choices[0].text for ch in stream)
        return c.completions.create(model="lm", prompt="Go", max_tokens=30, seed=seed).choices[0].text

    alone = [ask(seed) for seed in range(8)]
    assert len(set(alone)) == 8
    barrier = threading.Barrier(8, timeout=30)

    def together(seed: int) -> str:
        barrier.wait()
        return ask(seed)

    with ThreadPoolExecutor(8) as pool:
        at_once = list(pool.map(together, range(8)))
    assert at_once == alone


def test_disconnect_stops_the_generation(endless):
    url, app = endless
    engine = app.state.engine
    before = engine.stats
    body = {"prompt": "stream me", "max_tokens": 100_000, "stream": True, "temperature": 1.0}
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", url + "/v1/completions", json=body, headers=headers, timeout=HTTP_TIMEOUT) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]  # a few chunks (and the blank lines between them)
    assert sum(line.startswith("data: {") for line in got) >= 2
    deadline = time.monotonic() + 20
    while engine.stats["cancelled"] == before["cancelled"]:
        assert time.monotonic() < deadline, "the generation was not cancelled"
        time.sleep(0.02)
    steps = engine.stats["steps"] - before["steps"]
    assert 2 <= steps < 5_000  # stopped early: far from max_tokens
    time.sleep(0.2)
    assert engine.stats["steps"] - before["steps"] == steps  # and nothing runs any more


# ------------------------------------------------------------------------- API key, health, CORS


def test_api_key_is_required_when_set(endless):
    url, _ = endless
    r = httpx.get(url + "/v1/models", timeout=HTTP_TIMEOUT)
    assert assert_openai_error(r, 401)["type"] == "authentication_error"
    r = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer wrong"}, timeout=HTTP_TIMEOUT)
    assert_openai_error(r, 401)
    assert_openai_error(post(url, "/v1/completions", json={"prompt": "a"}), 401)
    with pytest.raises(openai.AuthenticationError):
        client(url, "wrong").models.list()
    assert [m.id for m in client(url, KEY).models.list().data] == ["endless"]
    r = client(url, KEY).completions.create(model="endless", prompt="a", max_tokens=3, seed=0)
    assert len(r.choices[0].text) == 3
    assert httpx.get(url + "/healthz", timeout=HTTP_TIMEOUT).status_code == 200  # health needs no key


def test_cors_closed_by_default_open_for_configured_origins(lm, clf):
    url, _ = lm

    def origin_header(base: str, origin: str) -> str | None:
        r = httpx.get(base + "/v1/models", headers={"Origin": origin}, timeout=HTTP_TIMEOUT)
        assert r.status_code == 200
        return r.headers.get("access-control-allow-origin")

    assert origin_header(clf, ALLOWED_ORIGIN) is None  # no --cors-origin: no CORS header for anyone
    assert origin_header(url, ALLOWED_ORIGIN) == ALLOWED_ORIGIN
    assert origin_header(url, "http://evil.test") is None
    preflight = httpx.options(
        url + "/v1/completions",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=HTTP_TIMEOUT,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


# --------------------------------------------------------------------- classify, attention, page


def test_classify_on_a_classifier_run_only(clf, lm, runs):
    texts = ["hello there", "WIN A PRIZE NOW"]
    r = post(clf, "/v1/classify", json={"input": texts})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    own = load_classifier(runs["clf"]).classify(texts)
    assert [d["label"] for d in data] == [o["label"] for o in own]
    for d, o in zip(data, own):
        assert sum(d["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert d["probabilities"] == pytest.approx(o["probabilities"], abs=1e-5)
    assert post(clf, "/v1/classify", json={"input": "one text"}).json()["data"][0]["label"] in ("ham", "spam")
    assert_openai_error(post(clf, "/v1/classify", json={"input": []}), 400)
    assert_openai_error(post(clf, "/v1/completions", json={"prompt": "a"}), 400)
    assert_openai_error(post(lm[0], "/v1/classify", json={"input": "a"}), 400)


def test_attention_page(lm):
    url, _ = lm
    r = post(url, "/v1/analyze/attention", json={"text": "the cat sat"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert 'id="head-view"' in r.text
    assert_openai_error(
        post(url, "/v1/analyze/attention", json={"text": "q" * (BLOCK_SIZE + 1)}), 400, "text"
    )
    assert_openai_error(post(url, "/v1/analyze/attention", json={}), 400, "text")


def test_playground_page_or_404(lm, monkeypatch):
    url, _ = lm
    shipped = Path(serve_app.__file__).parent / "static" / "index.html"
    r = httpx.get(url + "/", timeout=HTTP_TIMEOUT)
    if shipped.is_file():  # the page installed with the package is what / serves
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert r.text == shipped.read_text(encoding="utf-8")
    else:
        assert_openai_error(r, 404)
    monkeypatch.setattr(serve_routes, "playground_page", lambda: None)
    assert_openai_error(httpx.get(url + "/", timeout=HTTP_TIMEOUT), 404)
    monkeypatch.setattr(serve_routes, "playground_page", lambda: "<!doctype html><title>play</title>")
    r = httpx.get(url + "/", timeout=HTTP_TIMEOUT)
    assert r.status_code == 200 and "<title>play</title>" in r.text


# --------------------------------------------------------------------------------------- time-out


@pytest.mark.slow  # over 0.4 s: keeps `-m "not slow"` under a minute
def test_generation_timeout_is_an_error_not_a_hang(runs):
    limits = ServeLimits(timeout_s=0.3, max_tokens_cap=1_000_000)
    with serving(create_app(runs["endless"], limits=limits)) as (url, _):
        start = time.monotonic()
        r = post(url, "/v1/completions", json={"prompt": "a", "max_tokens": 1_000_000})
        assert assert_openai_error(r, 504)["code"] == "timeout"
        assert time.monotonic() - start < 10
        body = {"prompt": "a", "max_tokens": 1_000_000, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=HTTP_TIMEOUT) as s:
            lines = [line for line in s.iter_lines() if line]
        assert lines[-1] != "data: [DONE]"
        assert json.loads(lines[-1][len("data: ") :])["error"]["code"] == "timeout"


# ------------------------------------------------------------------------------- parts and the CLI


def test_engine_queue_is_bounded_and_waiting_jobs_time_out(runs):
    model, tok = load_model(runs["endless"])
    engine = Engine(model, tok, max_concurrent=1, max_queue=1)
    ids = tok.encode("hi")

    async def scenario():
        running = engine.submit(GenerationJob(ids, 100_000, Sampler(), timeout_s=30))
        assert (await running.next_event(10))["type"] == "delta"  # it holds the only slot
        waiting = engine.submit(GenerationJob(ids, 5, Sampler(), timeout_s=0.2))
        with pytest.raises(EngineError) as full:
            engine.submit(GenerationJob(ids, 5, Sampler()))
        assert full.value.status == 503
        event = await waiting.next_event(10)  # never started: expired in the queue
        assert event["type"] == "error" and event["error"].status == 504
        running.cancel()

    try:
        asyncio.run(scenario())
        assert engine.stats["timed_out"] == 1 and engine.stats["requests"] == 2
    finally:
        engine.close()


class _Bytes:
    """One token per UTF-8 byte: a non-ASCII character spans several tokens."""

    vocab_size = 256
    eot_id = None

    def decode(self, ids) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def test_choice_text_holds_back_partial_characters_and_stop_prefixes():
    row = ChoiceText(_Bytes(), stops=["|x"])
    released = []
    for b in "aé|b|x!".encode():
        row.push(b, {"id": b})
        text, entries = row.take()
        released.append(text)
        if row.done:
            break
    # "é" is two bytes: nothing comes out after the first; "|" waits until "b" shows it is not "|x"
    assert released == ["a", "", "é", "", "|b", "", ""]
    assert row.stream.text == "aé|b" and row.finish_reason == "stop"
    assert [e["offset"] for e in row.entries] == [0, 1, 1, 2, 3, 4, 5]


def test_serve_command_binds_loopback_and_reads_the_key_from_the_env(runs, monkeypatch):
    from gptlab.commands import serve as serve_cmd

    parser = argparse.ArgumentParser()
    serve_cmd.register(parser.add_subparsers())
    args = parser.parse_args(
        ["serve", "--model", runs["lm"], "--cors-origin", "http://a.test", "--device", "cpu"]
    )
    assert (args.host, args.port, args.api_key) == ("127.0.0.1", 8000, None)
    seen = {}
    monkeypatch.setenv(serve_cmd.API_KEY_ENV, "from-env")
    monkeypatch.setattr(
        uvicorn, "run", lambda app, host, port, **kw: seen.update(app=app, host=host, port=port, kw=kw)
    )
    assert serve_cmd.run(args) == 0
    app = seen["app"]
    try:
        assert seen["host"] == "127.0.0.1"
        guard = [m for m in app.user_middleware if m.cls is serve_app._Guard][0]
        assert guard.kwargs["api_key"] == "from-env"
        assert guard.kwargs["read_timeout_s"] == 30.0
        hosts = [m for m in app.user_middleware if m.cls is TrustedHosts][0]
        assert hosts.kwargs["allowed_hosts"] == ["127.0.0.1", "localhost", "[::1]"]
        # uvicorn runs with the header deadline and the connection limit
        assert issubclass(seen["kw"]["http"], HeaderDeadlineProtocol)
        assert seen["kw"]["http"].header_timeout_s == 30.0
        assert seen["kw"]["limit_concurrency"] == 128
    finally:
        app.state.engine.close()
