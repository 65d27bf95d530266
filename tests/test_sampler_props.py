"""The Sampler is numerically safe: for any valid setting and any logits (huge, -inf, +inf) it
draws a valid token from a finite distribution that sums to 1; NaN logits are a clear error."""

from __future__ import annotations

import io
import math
import string
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.generate import GREEDY_BELOW, Sampler
from gptlab.model import GPT, GPTConfig
from gptlab.rundir import save_model
from gptlab.tokenizers import CharTokenizer

INF = float("inf")
F32_MAX = torch.finfo(torch.float32).max

TEMPERATURES = st.one_of(
    st.floats(min_value=0.0, max_value=1e6),
    st.sampled_from([0.0, 5e-324, 1e-320, 1e-310, 1e-300, 1e-30, GREEDY_BELOW / 2, GREEDY_BELOW, 1e6]),
)
TOP_PS = st.one_of(
    st.none(),
    st.floats(min_value=0.0, max_value=1.0, exclude_min=True),
    st.sampled_from([5e-324, 1e-300, 1e-45, 1e-8, 1.0]),
)
LOGIT = st.one_of(
    st.floats(min_value=-100, max_value=100, width=32),
    st.floats(min_value=-F32_MAX, max_value=F32_MAX, width=32),
    st.sampled_from([-INF, INF, -F32_MAX, F32_MAX, 0.0]),
)


@st.composite
def logits_batches(draw):
    rows, vocab = draw(st.integers(1, 3)), draw(st.integers(1, 40))
    values = draw(st.lists(LOGIT, min_size=rows * vocab, max_size=rows * vocab))
    return torch.tensor(values, dtype=torch.float32).view(rows, vocab)


@st.composite
def samplers(draw, vocab: int):
    return Sampler(
        temperature=draw(TEMPERATURES),
        top_k=draw(st.one_of(st.none(), st.integers(0, vocab + 3))),
        top_p=draw(TOP_PS),
        repetition_penalty=draw(st.one_of(st.just(1.0), st.floats(0.01, 100))),
    )


@pytest.mark.slow  # a few seconds of real sockets, browser or property examples; the full suite runs it
@settings(max_examples=400, deadline=None)
@given(data=st.data(), logits=logits_batches())
def test_any_setting_and_any_logits_give_a_valid_draw_from_a_finite_distribution(data, logits):
    sampler = data.draw(samplers(logits.size(1)))
    seen = data.draw(st.lists(st.booleans(), min_size=logits.numel(), max_size=logits.numel()))
    seen = torch.tensor(seen).view_as(logits)
    seed = data.draw(st.integers(0, 2**32))
    probs = sampler.probs(logits, seen)
    assert probs.shape == logits.shape and torch.isfinite(probs).all() and (probs >= 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(logits)), rtol=0, atol=1e-5)
    ids = sampler(logits, seen, generator=torch.Generator().manual_seed(seed))
    assert ids.shape == (len(logits),) and ids.dtype == torch.long
    assert ((ids >= 0) & (ids < logits.size(1))).all()
    assert (probs.gather(1, ids[:, None]) > 0).all()  # never a token the filters removed
    if sampler.top_k:
        assert ((probs > 0).sum(-1) <= sampler.top_k).all()
    if sampler.temperature < GREEDY_BELOW:  # greedy: the argmax (after the repetition penalty)
        expected = _penalized(logits, seen, sampler.repetition_penalty).argmax(-1)
        assert torch.equal(ids, expected)
        assert torch.equal(probs, torch.nn.functional.one_hot(expected, logits.size(1)).float())


def _penalized(logits, seen, penalty):
    from gptlab.generate import apply_repetition_penalty

    return apply_repetition_penalty(logits, seen, penalty) if penalty != 1.0 else logits


@settings(max_examples=200, deadline=None)
@given(logits=logits_batches(), p=TOP_PS.filter(lambda p: p is not None))
def test_top_p_keeps_at_least_the_most_likely_token(logits, p):
    probs = Sampler(temperature=1.0, top_p=p).probs(logits)
    most_likely = Sampler(temperature=0).probs(logits).argmax(-1)
    assert (probs.gather(1, most_likely[:, None]) > 0).all()


@settings(max_examples=100, deadline=None)
@given(logits=logits_batches(), k=st.integers(0, 50))
def test_top_k_of_the_vocabulary_or_more_and_zero_change_nothing(logits, k):
    unlimited = Sampler(temperature=0.7).probs(logits)
    if k == 0 or k >= logits.size(1):
        assert torch.equal(Sampler(temperature=0.7, top_k=k).probs(logits), unlimited)


def test_tiny_temperature_and_top_p_are_greedy_not_nan():
    logits = torch.tensor([[1.0, 3.0, 2.0, -INF], [F32_MAX, -F32_MAX, 0.0, 5.0]])
    for t, p in [(1e-320, 1e-300), (5e-324, None), (1e-6, 0.5), (1.0, 1e-300)]:
        sampler = Sampler(temperature=t, top_p=p)
        assert sampler(logits, generator=torch.Generator().manual_seed(0)).tolist() == [1, 0]


def test_inf_logits_share_the_mass_and_minus_inf_get_none():
    logits = torch.tensor([[INF, 0.0, INF, -INF], [-INF, -INF, -INF, -INF]])
    probs = Sampler(temperature=0.5).probs(logits)
    torch.testing.assert_close(probs[0], torch.tensor([0.5, 0.0, 0.5, 0.0]))
    torch.testing.assert_close(probs[1], torch.full((4,), 0.25))  # nothing to prefer: uniform
    draws = torch.stack([Sampler()(logits, generator=torch.Generator().manual_seed(s)) for s in range(50)])
    assert set(draws[:, 0].tolist()) == {0, 2}


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_nan_logits_are_a_clear_error(temperature):
    logits = torch.tensor([[0.0, float("nan"), 1.0]])
    with pytest.raises(GptlabError, match="the model produced NaN logits: its weights contain NaN/inf"):
        Sampler(temperature=temperature)(logits)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(temperature=0.0),
        dict(temperature=5e-324),
        dict(temperature=1e6),
        dict(top_k=0),
        dict(top_k=None),
        dict(top_k=10**9),
        dict(top_p=1e-300),
        dict(top_p=1.0),
        dict(top_p=None),
    ],
)
def test_sensible_settings_are_accepted(kwargs):
    Sampler(**kwargs)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(temperature=-1e-9), "temperature must be a finite number >= 0"),
        (dict(temperature=math.inf), "temperature must be a finite number >= 0"),
        (dict(top_k=-1), "top_k must be an integer >= 0"),
        (dict(top_k=1.5), "top_k must be an integer >= 0"),
        (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
        (dict(top_p=1.0 + 1e-9), r"top_p must be in \(0, 1\]"),
        (dict(top_p=math.nan), r"top_p must be in \(0, 1\]"),
    ],
)
def test_settings_out_of_range_are_clear_errors(kwargs, words):
    with pytest.raises(GptlabError, match=words):
        Sampler(**kwargs)


# --- end to end: the CLI with the values that used to give NaN -----------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tok = CharTokenizer.train(string.printable, special_tokens=["<|endoftext|>"])
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16)
    path = tmp_path_factory.mktemp("sampler") / "run"
    save_model(path, GPT(config), tok)
    return str(path)


EXTREMES = [
    ["--temperature", "1e-320"],
    ["--top-p", "1e-300"],
    ["--temperature", "1e-320", "--top-p", "1e-300"],
]


@pytest.mark.parametrize("extreme", EXTREMES)
def test_generate_with_extreme_settings_is_greedy(run, capsys, extreme):
    args = ["generate", "--model", run, "--prompt", "Hello", "--max-new-tokens", "8", "--seed", "1"]
    assert main([*args, "--temperature", "0"]) == 0
    greedy = capsys.readouterr().out
    assert main([*args, *extreme]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("Hello")
    if extreme[0] == "--temperature":  # below the greedy epsilon: the same text as temperature 0
        assert out == greedy


@pytest.mark.parametrize("extreme", EXTREMES)
def test_chat_with_extreme_settings_replies(run, capsys, monkeypatch, extreme):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\nhow are you\n"))
    args = ["chat", "--model", run, "--template", "none", "--max-new-tokens", "6", "--seed", "1"]
    assert main([*args, *extreme]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.count("\n") == 2
