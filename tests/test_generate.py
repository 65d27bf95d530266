"""Generation: sampler contracts, KV-cache engine vs the naive reference, batching, streaming text."""

from __future__ import annotations

import pytest
import torch

import gptlab.generate as gen
from gptlab.errors import GptlabError
from gptlab.generate import (
    GREEDY,
    Sampler,
    generate,
    generate_naive,
    generate_text,
    stream_text,
    top_k_filter,
    top_p_filter,
)
from gptlab.model import GPT, GPTConfig

EOT = 256


class ByteTokenizer:
    """One token per UTF-8 byte (+ <|endoftext|>): every non-ASCII character spans several tokens."""

    vocab_size = 257
    special_tokens = {"<|endoftext|>": EOT}

    def __init__(self, eot: bool = True) -> None:
        self.eot_id = EOT if eot else None

    def encode(self, text: str, allowed_special="none") -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def make_model(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=257, block_size=24, n_layer=2, n_head=2, n_embd=32)
    return GPT(GPTConfig(**{**cfg, **overrides})).eval()


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- sampler contracts -----------------------------------------------------------------------


def test_top_k_never_emits_outside_the_k_best():
    logits = torch.randn(8, 50, generator=seeded(0))
    best = logits.topk(5, dim=-1).indices
    g = seeded(1)
    for _ in range(200):
        picks = Sampler(top_k=5)(logits, generator=g)
        assert (best == picks[:, None]).any(dim=-1).all()
    assert torch.isinf(top_k_filter(logits, 5)).sum(-1).eq(45).all()


def test_top_p_emits_only_from_the_smallest_set_reaching_p():
    logits = torch.randn(8, 50, generator=seeded(2)) * 2
    p = 0.6
    probs = logits.softmax(-1)
    nucleus = []
    for row in probs:  # the reference: add tokens from most likely until the mass reaches p
        order = row.argsort(descending=True).tolist()
        chosen, mass = set(), 0.0
        for t in order:
            chosen.add(t)
            mass += row[t].item()
            if mass >= p:
                break
        nucleus.append(chosen)
    g = seeded(3)
    for _ in range(200):
        for row, pick in enumerate(Sampler(top_p=p)(logits, generator=g).tolist()):
            assert pick in nucleus[row]
    kept = torch.isfinite(top_p_filter(logits, p))
    assert [set(torch.nonzero(k).flatten().tolist()) for k in kept] == nucleus


def test_same_seed_same_draws_and_different_seed_different_draws():
    logits = torch.randn(4, 100, generator=seeded(4))
    sampler = Sampler(temperature=1.5, top_k=50, top_p=0.95)
    a = torch.stack([sampler(logits, generator=g) for g in [seeded(7)] for _ in range(20)])
    b = torch.stack([sampler(logits, generator=g) for g in [seeded(7)] for _ in range(20)])
    c = torch.stack([sampler(logits, generator=g) for g in [seeded(8)] for _ in range(20)])
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_temperature_towards_zero_equals_greedy():
    logits = torch.randn(16, 100, generator=seeded(5))
    greedy = Sampler(temperature=0.0)(logits)
    assert torch.equal(greedy, logits.argmax(-1))
    assert torch.equal(Sampler(temperature=1e-320)(logits, generator=seeded(6)), greedy)  # no inf/NaN
    assert torch.equal(Sampler(temperature=1e-4)(logits, generator=seeded(6)), greedy)


def test_repetition_penalty_lowers_the_probability_of_seen_tokens():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0, 1.0]])
    seen = torch.tensor([[True, True, False, False, False]])
    before = logits.softmax(-1)
    after = gen.apply_repetition_penalty(logits, seen, 1.3).softmax(-1)
    assert after[0, 0] < before[0, 0] and after[0, 1] < before[0, 1]
    assert torch.all(after[0, 2:] > before[0, 2:])
    # greedy flips to an unseen token once the penalty is strong enough
    assert Sampler(temperature=0, repetition_penalty=3.0)(logits, seen).item() == 4


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(top_k=float("inf")), "top_k"),
        (dict(top_k="5"), "top_k"),
        (dict(top_p="0.5"), "top_p"),
        (dict(temperature=-0.5), "temperature"),
        (dict(temperature=True), "temperature"),
        (dict(repetition_penalty="2"), "repetition_penalty"),
        (dict(top_p=-0.1), "top_p"),
        (dict(top_p=float("nan")), "top_p"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(repetition_penalty=float("inf")), "repetition_penalty"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature=float("inf")), "temperature"),
    ],
)
def test_bad_sampling_settings_are_clear_errors(kwargs, field):
    # every generation entry point takes a Sampler, so this is the one place settings are checked
    with pytest.raises(GptlabError, match=field):
        Sampler(**kwargs)


# --- engine vs naive reference ---------------------------------------------------------------


@pytest.mark.parametrize("pos_encoding", ["learned", "rope", "sinusoidal"])
def test_greedy_with_cache_equals_naive_even_past_the_context(pos_encoding):
    model = make_model(pos_encoding=pos_encoding)
    idx = torch.randint(0, 256, (2, 10), generator=seeded(0))
    n = 30  # 10 + 30 > block_size 24: the context slides
    fast = generate(model, idx, n, GREEDY)
    slow = generate_naive(model, idx, n, GREEDY)
    assert fast.shape == (2, 40)
    assert torch.equal(fast, slow)


def test_seeded_sampling_with_cache_equals_naive():
    model = make_model(pos_encoding="rope")
    idx = torch.randint(0, 256, (3, 5), generator=seeded(1))
    sampler = Sampler(temperature=0.9, top_k=40, top_p=0.9, repetition_penalty=1.2)
    fast = generate(model, idx, 25, sampler, generator=seeded(9))
    slow = generate_naive(model, idx, 25, sampler, generator=seeded(9))
    assert torch.equal(fast, slow)
    assert not torch.equal(fast, generate(model, idx, 25, sampler, generator=seeded(10)))


@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
def test_batch_of_different_lengths_gives_each_prompt_its_own_tokens(pos_encoding):
    model = make_model(pos_encoding=pos_encoding)
    prompts = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9], [42], list(range(30, 50))]
    batched = generate(model, prompts, 12, GREEDY)
    for prompt, row in zip(prompts, batched):
        alone = generate_naive(model, torch.tensor([prompt]), 12, GREEDY)
        assert row == alone[0].tolist()


def test_eos_stops_rows_and_pads_finished_ones():
    model = make_model()
    idx = torch.randint(0, 256, (2, 4), generator=seeded(2))
    free = generate(model, idx, 10, GREEDY)
    eos = free[0, 6].item()  # row 0's third new token becomes the end token
    out = generate(model, idx, 10, GREEDY, eos_id=eos)
    assert torch.equal(out, generate_naive(model, idx, 10, GREEDY, eos_id=eos))
    row0 = out[0, 4:].tolist()
    first = row0.index(eos)
    assert all(t == eos for t in row0[first:])
    ragged = generate(model, idx.tolist(), 10, GREEDY, eos_id=eos)
    assert ragged[0][-1] == eos and len(ragged[0]) == 4 + first + 1


def test_prompt_longer_than_context_uses_its_last_block_size_tokens():
    model = make_model()
    long = torch.randint(0, 256, (1, 40), generator=seeded(3))
    out = generate(model, long, 5, GREEDY)
    tail = generate(model, long[:, -24:], 5, GREEDY)
    assert torch.equal(out[:, 40:], tail[:, 24:])


def test_generation_leaves_the_model_in_its_mode():
    model = make_model(dropout=0.5).train()
    idx = torch.zeros(1, 3, dtype=torch.long)
    a = generate(model, idx, 8, GREEDY)  # dropout is off while generating
    assert torch.equal(a, generate(model, idx, 8, GREEDY))
    assert model.training


def test_empty_prompt_token_list_is_an_error():
    with pytest.raises(GptlabError, match="empty prompt"):
        generate(make_model(), [[1, 2], []], 3)
    for decode in (generate, generate_naive):
        with pytest.raises(GptlabError, match="empty prompt"):
            decode(make_model(), torch.zeros(2, 0, dtype=torch.long), 3)


def test_top_p_one_and_huge_top_k_change_nothing():
    logits = torch.randn(4, 30, generator=seeded(11))
    full = Sampler()(logits, generator=seeded(12))
    assert torch.equal(Sampler(top_p=1.0, top_k=1000)(logits, generator=seeded(12)), full)
    assert torch.equal(Sampler(top_k=1)(logits, generator=seeded(13)), logits.argmax(-1))


# --- text --------------------------------------------------------------------------------------


def fake_stream(monkeypatch, text: str, extra: list[int] = ()):
    """Make the model 'generate' exactly the bytes of text (then extra ids)."""
    ids = list(text.encode("utf-8")) + list(extra)

    def tokens(model, prompt_ids, max_new_tokens, sampler, eos_id, generator):
        for t in ids[:max_new_tokens]:
            if t == eos_id:
                return
            yield t

    monkeypatch.setattr(gen, "stream_tokens", tokens)


def test_streaming_never_splits_a_multibyte_character(monkeypatch):
    text = "héllo, wörld € 😀 日本語!"
    fake_stream(monkeypatch, text)
    pieces = list(stream_text(make_model(), ByteTokenizer(), "x", max_new_tokens=100))
    assert "".join(pieces) == text
    assert len(pieces) > 10
    assert all("\ufffd" not in p for p in pieces)


def test_invalid_bytes_at_the_end_come_out_as_replacement_characters(monkeypatch):
    fake_stream(monkeypatch, "ok", extra=[0xE2, 0x82])  # a truncated euro sign
    assert generate_text(make_model(), ByteTokenizer(), "x") == "ok\ufffd"


@pytest.mark.parametrize(
    "text, stop, expected",
    [
        ("abc STOP def", ["STOP"], "abc "),
        ("abc STOP def", ["zzz", "c S"], "ab"),
        ("abc ST def", ["STOP"], "abc ST def"),  # a stop prefix that does not complete is emitted
        ("naïve\n\nnext", ["\n\n"], "naïve"),
    ],
)
def test_stop_strings_end_the_completion_before_them(monkeypatch, text, stop, expected):
    fake_stream(monkeypatch, text)
    pieces = list(stream_text(make_model(), ByteTokenizer(), "x", stop=stop))
    assert "".join(pieces) == expected


def test_end_of_text_token_ends_the_completion(monkeypatch):
    fake_stream(monkeypatch, "done", extra=[EOT, ord("x")])
    assert generate_text(make_model(), ByteTokenizer(), "x") == "done"


def test_generate_text_is_the_decoded_completion_and_seeded():
    model, tok = make_model(), ByteTokenizer(eot=False)
    kw = dict(max_new_tokens=20, sampler=Sampler(temperature=1.0, top_k=20))
    a = generate_text(model, tok, "Hi", seed=3, **kw)
    assert a == generate_text(model, tok, "Hi", seed=3, **kw)
    assert a != generate_text(model, tok, "Hi", seed=4, **kw)
    ids = generate(
        model,
        torch.tensor([tok.encode("Hi")]),
        20,
        Sampler(top_k=20),
        generator=torch.Generator().manual_seed(3),
    )
    assert a == tok.decode(ids[0, 2:].tolist())


def test_empty_prompt_starts_from_end_of_text_or_fails_without_it():
    model = make_model()
    greedy_from_eot = generate(model, [[EOT]], 5, GREEDY)[0][1:]
    text = generate_text(model, ByteTokenizer(), "", max_new_tokens=5, sampler=GREEDY)
    assert text == ByteTokenizer().decode(greedy_from_eot)
    with pytest.raises(GptlabError, match="empty prompt"):
        generate_text(model, ByteTokenizer(eot=False), "")


def test_zero_new_tokens_returns_the_prompt_and_negative_is_an_error():
    model, idx = make_model(), torch.tensor([[1, 2, 3]])
    assert torch.equal(generate(model, idx, 0), idx)
    assert torch.equal(generate_naive(model, idx, 0), idx)
    with pytest.raises(GptlabError, match="max_new_tokens"):
        generate(model, idx, -1)
