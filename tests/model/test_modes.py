"""gptlab.model.modes: eval_mode restores the previous mode however the block ends; model_device."""

from __future__ import annotations

import pytest
import torch

from gptlab.model.modes import eval_mode, model_device


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_turns_dropout_off_and_restores_the_mode(training):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5)).train(training)
    with eval_mode(model) as m:
        assert m is model and not model.training and not model[1].training
    assert model.training is training and model[1].training is training
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("boom")
    assert model.training is training


def test_model_device_reads_parameters_then_buffers():
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    buffers_only = torch.nn.Module()
    buffers_only.register_buffer("q", torch.zeros(2, dtype=torch.int8, device="meta"))
    assert model_device(buffers_only) == torch.device("meta")  # a quantised layer keeps int8 buffers
    assert model_device(torch.nn.Module()) == torch.device("cpu")
