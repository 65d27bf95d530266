"""Continuous batching in the serving engine (gptlab.serve.batcher, gptlab.serve.slot_cache):
the batched engine must give every request what it would get alone, token for token."""

from __future__ import annotations

import asyncio
import string

import pytest
import torch

from gptlab.generate import GREEDY, Sampler, generate
from gptlab.model import GPT, GPTConfig
from gptlab.model.build import build_model
from gptlab.model.kv_cache import KVCache
from gptlab.serve.batcher import Batcher
from gptlab.serve.engine import Engine, GenerationJob
from gptlab.serve.slot_cache import SlotCache
from gptlab.tokenizers import CharTokenizer
from gptlab.tokenizers.base import EOT

EVENT_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer.train([string.printable], special_tokens=[EOT])


def _model(vocab_size: int, block_size: int = 32, **overrides) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=4, n_embd=32, dropout=0.0, **overrides
    )
    return GPT(config).eval()


@pytest.fixture(scope="module")
def model(tok):
    return _model(tok.vocab_size)


async def _collect(handle) -> dict:
    """A request's whole answer: per choice its text, logprob entries and finish reason."""
    out: dict = {}
    while True:
        event = await handle.next_event(EVENT_TIMEOUT)
        if event["type"] == "error":
            raise event["error"]
        if event["type"] == "done":
            return out
        for c in event["choices"]:
            text, entries, _ = out.get(c["index"], ("", [], None))
            out[c["index"]] = (text + c["text"], entries + c["entries"], c["finish_reason"])


def _assert_same(got: list[dict], expected: list[dict]) -> None:
    """Same texts, tokens and finish reasons exactly; logprobs equal up to float rounding (a batch
    of another shape sums in another order)."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.keys() == e.keys()
        for index in g:
            (g_text, g_entries, g_reason), (e_text, e_entries, e_reason) = g[index], e[index]
            assert (g_text, g_reason) == (e_text, e_reason)
            assert [x["id"] for x in g_entries] == [x["id"] for x in e_entries]
            for x, y in zip(g_entries, e_entries):
                if "logprob" in x:
                    assert x["logprob"] == pytest.approx(y["logprob"], abs=1e-4)
                    assert [t for t, _ in x["top"]] == [t for t, _ in y["top"]]


def _answers(engine: Engine, jobs: list[GenerationJob]) -> list[dict]:
    async def scenario():
        handles = [engine.submit(job) for job in jobs]
        return await asyncio.gather(*(_collect(h) for h in handles))

    return asyncio.run(scenario())


def _mixed_jobs(tok) -> list[GenerationJob]:
    """8 requests that differ in everything a row can differ in; prompts from 1 to 40 characters
    (past the 32-token context: cropped, and generations slide their context)."""
    prompts = ["a", "Hello", "The quick brown fox", "x" * 40, "To be, or not", "12", "abcdefghij" * 3, "ok "]
    samplers = [
        Sampler(temperature=0.8),
        GREEDY,
        Sampler(temperature=1.2, top_k=10),
        Sampler(temperature=0.7, top_p=0.9),
        Sampler(repetition_penalty=1.3),
        Sampler(temperature=1.0, top_k=5, top_p=0.8),
        GREEDY,
        Sampler(temperature=0.5),
    ]
    return [
        GenerationJob(
            tok.encode(prompt),
            max_tokens=12 + 5 * i,
            sampler=sampler,
            n=1 + i % 3,
            stops=["e"] if i in (2, 5) else (),
            seed=100 + i,
            top_logprobs=2 if i % 2 else None,
        )
        for i, (prompt, sampler) in enumerate(zip(prompts, samplers))
    ]


@pytest.mark.slow  # 16 generations of up to 47 tokens: seconds on a busy CPU
def test_seeded_requests_give_the_same_answers_alone_and_in_a_batch(model, tok):
    engine = Engine(model, tok, max_concurrent=8, prefill_chunk=7)  # chunked: prompts up to 32 tokens
    try:
        assert engine.batching
        together = _answers(engine, _mixed_jobs(tok))
        alone = [_answers(engine, [job])[0] for job in _mixed_jobs(tok)]
    finally:
        engine.close()
    _assert_same(together, alone)
    assert sum(len(a) for a in together) == sum(1 + i % 3 for i in range(8))  # every choice answered
    assert {reason for a in together for _, _, reason in a.values()} == {"stop", "length"}


@pytest.mark.slow
def test_batched_engine_matches_the_interleaved_one(model, tok):
    """The old path drives gptlab.generate.decode_steps: same seeds, same draws, same text."""
    answers = {}
    for batching in (True, False):
        engine = Engine(model, tok, max_concurrent=8, batching=batching)
        try:
            answers[batching] = _answers(engine, _mixed_jobs(tok))
        finally:
            engine.close()
    _assert_same(answers[True], answers[False])


def test_greedy_batched_equals_greedy_alone_token_for_token(model, tok):
    prompts = ["a", "Hello there", "The quick brown fox jumps", "xyz"]
    jobs = [GenerationJob(tok.encode(p), 20, GREEDY, top_logprobs=0) for p in prompts]
    engine = Engine(model, tok, max_concurrent=4)
    try:
        answers = _answers(engine, jobs)
    finally:
        engine.close()
    for prompt, answer in zip(prompts, answers):
        ids = tok.encode(prompt)
        expected = generate(model, [ids], 20, GREEDY, eos_id=tok.eot_id)[0][len(ids) :]
        tokens = [e["id"] for e in answer[0][1]]
        assert tokens == [t for t in expected if t != tok.eot_id]


@pytest.mark.parametrize(
    "overrides",
    [{}, {"pos_encoding": "rope"}, {"pos_encoding": "sinusoidal", "attention": "local", "window": 5}],
    ids=["learned", "rope", "local-window"],
)
def test_padded_batched_step_logits_equal_unbatched(tok, overrides):
    """Rows of 3, 11 and 20 tokens decoded in one forward: each row's float32 logits are those of
    the same step decoded alone with a KVCache (within 1e-5)."""
    model = _model(tok.vocab_size, **overrides)
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, tok.vocab_size, (1, n), generator=gen) for n in (3, 11, 20)]
    nxt = torch.randint(0, tok.vocab_size, (3, 1), generator=gen)
    slots = SlotCache(model)
    expected = []
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            alone = KVCache.for_model(model, 1, max_len=prompt.size(1) + 1)
            model(prompt, kv_cache=alone)
            prefilled = KVCache.for_model(model, 1, max_len=prompt.size(1))
            model(prompt, kv_cache=prefilled)
            slots.append(
                prefilled.k[:, :, :, : prefilled.filled],
                prefilled.v[:, :, :, : prefilled.filled],
                prompt.size(1),
            )
            expected.append(model(nxt[i : i + 1], kv_cache=alone)[0][0, -1])
        batched = model(nxt, kv_cache=slots)[0][:, -1]
    assert slots.lengths.tolist() == [4, 12, 21]
    torch.testing.assert_close(batched, torch.stack(expected), atol=1e-5, rtol=0)


def test_cancelled_request_frees_its_rows_for_the_next(tok):
    endless_tok = CharTokenizer.train(string.printable)  # no end-of-text: only max_tokens ends a request
    model = _model(endless_tok.vocab_size, block_size=64)
    engine = Engine(model, endless_tok, max_concurrent=2, max_queue=4)

    async def scenario():
        ids = endless_tok.encode("go")
        first = engine.submit(GenerationJob(ids, 100_000, Sampler(), n=3, seed=1))
        second = engine.submit(GenerationJob(ids, 100_000, Sampler(), n=2, seed=2))
        for h in (first, second):
            assert (await h.next_event(EVENT_TIMEOUT))["type"] == "delta"
        third = engine.submit(GenerationJob(ids, 5, GREEDY, n=4))  # waits: both slots taken
        await asyncio.sleep(0.05)
        stats = engine.stats  # (rows: 5, or fewer while a full context is prefilled again)
        assert stats["queued"] == 1 and stats["active"] == 2 and stats["rows"] <= 5
        first.cancel()
        answer = await _collect(third)  # it gets the freed slot and runs next to `second`
        second.cancel()
        return answer

    try:
        answer = asyncio.run(scenario())
        assert [len(text) for text, _, _ in answer.values()] == [5] * 4
        deadline = asyncio.run(asyncio.sleep(0.3))  # let the worker see the last cancellation
        assert deadline is None and engine.stats["cancelled"] == 2 and engine.stats["rows"] == 0
    finally:
        engine.close()


def test_chunked_prefill_lets_decoding_go_on(tok):
    """A 30-token prompt prefilled 4 positions a step: the running request gets a token every step
    meanwhile, instead of waiting for the whole prompt."""
    endless_tok = CharTokenizer.train(string.printable)
    batcher = Batcher(_model(endless_tok.vocab_size), endless_tok, prefill_chunk=4)

    class _Handle:
        def __init__(self, job):
            self.job, self.events = job, []

        def emit(self, event):
            self.events.append(event)

    running = batcher.admit(_Handle(GenerationJob(endless_tok.encode("hi"), 30, GREEDY)))
    batcher.step()
    long = batcher.admit(_Handle(GenerationJob(endless_tok.encode("y" * 30), 3, GREEDY)))
    for _ in range(7):  # ceil(30 / 4) = 8 steps of prefill
        sampled, _, _ = batcher.step()
        assert sampled == [running]
    sampled, _, _ = batcher.step()
    assert long in sampled and long.handle.events  # its first token, after its eighth chunk
    assert batcher.cache.n == 2


def test_recurrent_models_fall_back_to_interleaving(tok):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_embd=32, n_head=4, arch="lstm")
    engine = Engine(build_model(config).eval(), tok)
    try:
        assert not engine.batching
        answer = _answers(engine, [GenerationJob(tok.encode("ab"), 5, GREEDY)])[0]
        assert answer[0][2] in ("stop", "length")
    finally:
        engine.close()


def test_prefix_tuned_models_fall_back_to_interleaving(tok):
    """Virtual tokens replace the model's forward with one that fills a KVCache of its own."""
    from gptlab.finetune.peft_prefix import Prefix
    from gptlab.finetune.peft_virtual import install

    model = _model(tok.vocab_size)
    install(model, Prefix(model, 2))
    engine = Engine(model, tok)
    try:
        assert not engine.batching
        answer = _answers(engine, [GenerationJob(tok.encode("ab"), 3, GREEDY, top_logprobs=0)])[0]
        ids = tok.encode("ab")
        expected = generate(model, [ids], 3, GREEDY, eos_id=tok.eot_id)[0][len(ids) :]
        assert [e["id"] for e in answer[0][1]] == [t for t in expected if t != tok.eot_id]
    finally:
        engine.close()
