"""Length bucketing: every example once per epoch, far less padding than random batches, seeded
and different per epoch, sorted without shuffling; works as a DataLoader batch sampler."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from gptlab.errors import GptlabError
from gptlab.finetune.buckets import LengthBuckets


def padding(batches, lengths) -> int:
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(1, 300), min_size=1, max_size=200),
    st.integers(1, 17),
    st.integers(1, 4),
    st.booleans(),
)
def test_every_example_exactly_once_in_batches_of_at_most_batch_size(lengths, batch_size, pool, shuffle):
    buckets = LengthBuckets(lengths, batch_size, shuffle=shuffle, pool_batches=pool)
    batches = buckets.batches(0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches) and len(batches) == len(buckets)


def test_bucketing_pads_far_less_than_random_batches():
    rng = random.Random(0)
    lengths = [rng.randint(5, 200) for _ in range(2000)]
    batches = LengthBuckets(lengths, 16, seed=1).batches(0)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    plain = [order[i : i + 16] for i in range(0, len(order), 16)]
    assert padding(batches, lengths) < padding(plain, lengths) / 10


def test_seeded_per_epoch_and_sorted_without_shuffle():
    lengths = [random.Random(2).randint(1, 50) for _ in range(300)]
    a, b = LengthBuckets(lengths, 8, seed=3), LengthBuckets(lengths, 8, seed=3)
    assert a.batches(0) == b.batches(0) and a.batches(0) != a.batches(1)
    assert LengthBuckets(lengths, 8, seed=4).batches(0) != a.batches(0)
    fixed = LengthBuckets(lengths, 8, shuffle=False)
    flat = [i for batch in fixed.batches(0) for i in batch]
    assert [lengths[i] for i in flat] == sorted(lengths) and fixed.batches(0) == fixed.batches(5)


def test_as_a_dataloader_batch_sampler_each_epoch_differs():
    lengths = list(range(1, 41))
    loader = DataLoader(
        list(range(40)), batch_sampler=LengthBuckets(lengths, 4, pool_batches=2), collate_fn=list
    )
    first, second = list(loader), list(loader)
    assert sorted(x for b in first for x in b) == list(range(40)) and first != second


def test_bad_sizes():
    with pytest.raises(GptlabError):
        LengthBuckets([1, 2], 0)
