"""The decoding fast paths of gptlab/generate.py and gptlab/model/kv_cache.py: last-position-only
logits in prefill, one attention mask per step (none for an unpadded prefill), no repetition mask
unless a penalty asks for it, an uninitialised cache that is never read before it is written."""

from __future__ import annotations

import torch

from gptlab.generate import GREEDY, Sampler, _last_logits, generate, generate_naive
from gptlab.model import GPT, GPTConfig, KVCache


def make_model(**overrides) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=50, block_size=24, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    return GPT(GPTConfig(**{**cfg, **overrides})).eval()


def test_attention_mask_is_none_for_an_unpadded_prefill_and_built_once_per_step():
    model = make_model()
    cache = KVCache.for_model(model, batch_size=2)
    assert cache.attention_mask(5) is None  # plain causal attention over the prompt
    model(torch.randint(0, 50, (2, 5)), kv_cache=cache)
    mask = cache.attention_mask(1)
    assert mask.shape == (1, 1, 1, 6) and bool(mask.all())
    assert cache.attention_mask(1) is mask  # every layer of this step gets the same tensor
    padded = KVCache.for_model(model, batch_size=2, pad=torch.tensor([2, 0]))
    m = padded.attention_mask(4)
    assert m.shape == (2, 1, 4, 4) and not bool(m[0, 0, 3, :2].any()) and bool(m[1, 0, 3].all())


def test_last_logits_equal_the_full_forward_last_position():
    model = make_model()
    idx = torch.randint(0, 50, (3, 9))
    with torch.no_grad():
        full = model(idx)[0][:, -1]
        cache = KVCache.for_model(model, batch_size=3)
        last = _last_logits(model, idx, cache)
        step = _last_logits(model, idx[:, :1], cache)  # and one decode step after it
        full_step = model(torch.cat((idx, idx[:, :1]), dim=1))[0][:, -1]
    torch.testing.assert_close(last, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(step, full_step, rtol=1e-5, atol=1e-5)
    assert cache.pos == 10


def test_engine_matches_naive_across_the_sliding_context_with_and_without_penalty():
    model = make_model()
    idx = torch.randint(0, 50, (2, 20))  # 20 + 12 > block_size 24: the context slides
    for penalty in (1.0, 1.3):
        greedy = Sampler(temperature=0, repetition_penalty=penalty)
        fast = generate(model, idx, 12, greedy)
        naive = generate_naive(model, idx, 12, greedy)
        assert torch.equal(fast, naive)


def test_garbage_in_an_uninitialised_cache_is_never_read():
    model = make_model()
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9]]  # left padding in row 0
    expected = generate(model, prompts, 6, GREEDY)
    original = KVCache.__init__

    def poisoned(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.k.fill_(float("nan"))
        self.v.fill_(float("nan"))

    KVCache.__init__ = poisoned
    try:
        assert generate(model, prompts, 6, GREEDY) == expected
    finally:
        KVCache.__init__ = original
