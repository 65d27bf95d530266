"""Two small facts about a model that many modules need: which device it is on, and how to run it
in eval mode for a while without losing the mode it was in (a sample or a score taken mid-training
must not leave dropout off, nor turn it on for a model that was evaluating)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Dropout off inside the block, then the model's previous mode back, however the block ends."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer: a quantised model's weights are
    buffers); cpu for a model with neither."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")
