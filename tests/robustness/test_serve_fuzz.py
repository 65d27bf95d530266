"""The server never answers 5xx, whatever JSON a client sends: hypothesis fuzzing of the request
bodies of /v1/completions and /v1/chat/completions against a tiny random model, in-process
(FastAPI's TestClient, no socket).

Three kinds of body: arbitrary JSON (and bytes that are not JSON at all); near-valid requests
(a valid one with one field replaced by an extreme or wrongly typed value: huge and negative
ints, 1e-320, NaN, "NaN", nested lists, unicode, long strings); and valid requests with values
drawn across their whole allowed ranges (subnormal temperatures and top_p included), which must
succeed. Every 4xx must carry an OpenAI error object. max_tokens is capped at 4, so each request
generates in milliseconds.
"""

from __future__ import annotations

import json
import string

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from gptlab.model import GPT, GPTConfig  # noqa: E402
from gptlab.rundir import save_model  # noqa: E402
from gptlab.serve.app import create_app  # noqa: E402
from gptlab.serve.limits import ServeLimits  # noqa: E402
from gptlab.tokenizers import CharTokenizer  # noqa: E402
from gptlab.tokenizers.base import EOT  # noqa: E402

MAX_TOKENS = 4
MAX_N = 2
ROUTES = ("/v1/completions", "/v1/chat/completions")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
VOCAB = string.ascii_letters + string.digits + " .,!?\n"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tok = CharTokenizer.train(string.printable, special_tokens=[EOT])
    torch.manual_seed(0)
    config = GPTConfig.preset(
        "tiny", vocab_size=tok.vocab_size, n_layer=1, n_embd=16, n_head=2, block_size=32
    )
    path = tmp_path_factory.mktemp("serve-fuzz") / "lm"
    save_model(path, GPT(config), tok)
    limits = ServeLimits(max_tokens_cap=MAX_TOKENS, max_n=MAX_N, max_body_bytes=20_000, timeout_s=30)
    app = create_app(path, limits=limits)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        yield c


def check(response, body=None) -> None:
    """No 5xx; a 4xx has the OpenAI error shape; a 200 has choices."""
    shown = repr(body)[:300]
    assert response.status_code < 500, f"{response.status_code} for {shown}: {response.text[:300]}"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, response.text
        assert isinstance(error["message"], str) and error["message"]
        assert error["type"] in ("invalid_request_error", "authentication_error", "not_found_error")
    else:
        assert response.status_code == 200, response.text
        assert response.json()["choices"], response.text


def post(client, route: str, body) -> None:
    content = json.dumps(body, allow_nan=True).encode()  # NaN and Infinity as JS literals, as JS sends
    r = client.post(route, content=content, headers={"Content-Type": "application/json"})
    check(r, body)
    return r


# ------------------------------------------------------------------------------------- values

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, 2**63, -(2**63), 10**30, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-320, 5e-324, -1e-320, 1e-300, 1e-45, 1e308, -0.0, 0.5, 2.0000001]),
    st.text(max_size=50),
    st.sampled_from(["NaN", "Infinity", "-inf", "1e-320", "", " ", "\x00", "<|endoftext|>", "é" * 40]),
    st.text(alphabet=VOCAB, min_size=500, max_size=2000),  # long, over the 32-token context
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

COMPLETION = {"prompt": "ab", "max_tokens": 2}
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
SAMPLING_FIELDS = [
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "n",
    "stop",
    "seed",
    "stream_options",
    "user",
    "presence_penalty",
    "frequency_penalty",
]
FIELDS = {
    "/v1/completions": [*SAMPLING_FIELDS, "prompt", "logprobs", "echo", "best_of"],
    "/v1/chat/completions": [
        *SAMPLING_FIELDS,
        "messages",
        "max_completion_tokens",
        "logprobs",
        "top_logprobs",
        "tools",
    ],
}
MESSAGE_FIELDS = ["role", "content", "name", "tool_calls"]


# ------------------------------------------------------------------------------------- the tests


@pytest.mark.slow  # over a second (many examples or a real corpus); the full suite runs it
@FUZZ
@given(route=st.sampled_from(ROUTES), body=json_values)
def test_arbitrary_json_bodies_never_5xx(client, route, body):
    post(client, route, body)


@FUZZ
@given(route=st.sampled_from(ROUTES), raw=st.binary(max_size=200))
def test_bodies_that_are_not_json_never_5xx(client, route, raw):
    r = client.post(route, content=raw, headers={"Content-Type": "application/json"})
    check(r, raw)


@pytest.mark.slow  # over a second (many examples or a real corpus); the full suite runs it
@FUZZ
@given(data=st.data(), route=st.sampled_from(ROUTES), value=json_values)
def test_one_field_replaced_by_a_bad_value_never_5xx(client, data, route, value):
    body = json.loads(json.dumps(COMPLETION if route == ROUTES[0] else CHAT))
    if route == ROUTES[1] and data.draw(st.booleans(), label="in the message"):
        body["messages"][0][data.draw(st.sampled_from(MESSAGE_FIELDS), label="message field")] = value
    else:
        body[data.draw(st.sampled_from(FIELDS[route]), label="field")] = value
    post(client, route, body)


def _tiny_or_any(low: float, high: float):
    """Floats in [low, high], with the subnormal and tiny ones that broke float32 sampling."""
    return st.one_of(
        st.floats(low, high),
        st.sampled_from([v for v in (5e-324, 1e-320, 1e-300, 1e-45, 1e-38, 1e-30, 1e-8) if low <= v <= high]),
    )


@FUZZ
@given(
    route=st.sampled_from(ROUTES),
    text=st.text(alphabet=VOCAB, min_size=1, max_size=20).filter(str.strip),  # a blank message is a 400
    temperature=st.one_of(st.just(0.0), _tiny_or_any(0.0, 2.0)),
    top_p=st.one_of(st.just(1.0), _tiny_or_any(5e-324, 1.0).filter(lambda p: p > 0)),
    top_k=st.integers(0, 10**30),
    n=st.integers(1, MAX_N),
    max_tokens=st.integers(1, MAX_TOKENS),
    seed=st.one_of(st.none(), st.integers(0, 2**63 - 1)),
    logprobs=st.one_of(st.none(), st.integers(0, 5)),
    stop=st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=5), max_size=4)),
)
def test_valid_requests_across_their_ranges_succeed(
    client, route, text, temperature, top_p, top_k, n, max_tokens, seed, logprobs, stop
):
    body = dict(
        temperature=temperature, top_p=top_p, top_k=top_k, n=n, max_tokens=max_tokens, seed=seed, stop=stop
    )
    if route == ROUTES[0]:
        body |= {"prompt": text, "logprobs": logprobs}
    else:
        body |= {"messages": [{"role": "user", "content": text}]}
        if logprobs is not None:
            body |= {"logprobs": True, "top_logprobs": logprobs}
    r = post(client, route, body)
    assert r.status_code == 200, f"a valid request was refused: {body!r}: {r.text[:300]}"
    choices = r.json()["choices"]
    assert len(choices) == n


def test_tiny_sampling_values_that_used_to_500(client):
    """The two reports: temperature 1e-320 and top_p 1e-300 gave 500 (NaN probabilities)."""
    for extra in ({"temperature": 1e-320}, {"top_p": 1e-300}, {"temperature": 5e-324, "top_p": 5e-324}):
        for route, base in zip(ROUTES, (COMPLETION, CHAT)):
            r = post(client, route, {**base, **extra})
            assert r.status_code == 200, r.text
