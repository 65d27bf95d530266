"""Regularisation in the GPT: label smoothing in its loss, and dropout at each site on its own."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn

from gptlab.errors import GptlabError
from gptlab.model import GPT, GPTConfig
from gptlab.model import gpt as gpt_module
from gptlab.rundir import load_model, save_model


def smoothed_loss_by_hand(logits: torch.Tensor, targets: torch.Tensor, eps: float) -> float:
    """Mean over the counted positions of (1 - eps) * -log p(target) + eps * mean_v -log p(v)."""
    logp = logits.double().log_softmax(-1).flatten(0, 1)
    total, n = 0.0, 0
    for row, target in zip(logp, targets.flatten().tolist()):
        if target == -100:
            continue
        total += (1 - eps) * -row[target].item() + eps * -row.mean().item()
        n += 1
    return total / n


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.4])
def test_label_smoothed_loss_matches_the_definition_with_masked_targets(tiny_model, eps):
    torch.manual_seed(1)
    idx = torch.randint(0, 65, (2, 10))
    targets = torch.randint(0, 65, (2, 10))
    targets[0, :4] = -100  # a masked prompt
    targets[1, -2:] = -100  # padding
    logits, loss = tiny_model(idx, targets, label_smoothing=eps)
    assert loss.item() == pytest.approx(smoothed_loss_by_hand(logits, targets, eps), rel=1e-5)
    if eps:  # and it is not the plain loss
        assert abs(loss.item() - tiny_model(idx, targets)[1].item()) > 1e-4


def site_config(tiny_config, **rates) -> GPTConfig:
    return GPTConfig(**{**tiny_config.to_dict(), "dropout": 0.0, **rates})


def dropout_report(model: GPT, idx: torch.Tensor) -> dict[str, bool]:
    """Which sites changed a tensor in one train-mode forward: 'embd' and 'resid' from their
    nn.Dropout modules' inputs and outputs, 'attn' from the dropout_p SDPA was called with."""
    changed = {"embd": False, "resid": False, "attn": False}

    def hook(site):
        def record(module, inputs, output):
            changed[site] |= not torch.equal(inputs[0], output)

        return record

    model.transformer.drop.register_forward_hook(hook("embd"))
    for block in model.transformer.h:
        block.attn.resid_dropout.register_forward_hook(hook("resid"))
        block.mlp.dropout.register_forward_hook(hook("resid"))
    sdpa = gpt_module.F.scaled_dot_product_attention

    def spy(*args, dropout_p=0.0, **kwargs):
        changed["attn"] |= dropout_p > 0
        return sdpa(*args, dropout_p=dropout_p, **kwargs)

    gpt_module.F.scaled_dot_product_attention = spy
    try:
        model.train()(idx)
    finally:
        gpt_module.F.scaled_dot_product_attention = sdpa
    return changed


@pytest.mark.parametrize("site", ["embd", "attn", "resid"])
def test_each_dropout_site_acts_alone(tiny_config, site):
    torch.manual_seed(0)
    idx = torch.randint(0, 65, (2, 16))
    model = GPT(site_config(tiny_config, **{f"{site}_dropout": 0.5}))
    assert dropout_report(model, idx) == {s: s == site for s in ("embd", "attn", "resid")}
    with torch.no_grad():  # and in train mode it changes the logits; eval mode is deterministic
        assert not torch.equal(model.train()(idx)[0], model.eval()(idx)[0])


def test_the_site_fields_default_to_dropout_and_override_it(tiny_config):
    every = GPT(site_config(tiny_config, dropout=0.2))
    assert {m.p for m in every.modules() if isinstance(m, nn.Dropout)} == {0.2}
    assert every.transformer.h[0].attn.dropout == 0.2
    one_off = GPT(site_config(tiny_config, dropout=0.2, resid_dropout=0.0))
    assert one_off.transformer.drop.p == 0.2 and one_off.transformer.h[0].attn.dropout == 0.2
    assert (
        one_off.transformer.h[0].mlp.dropout.p == 0.0 and one_off.transformer.h[1].attn.resid_dropout.p == 0.0
    )
    for bad in (1.0, -0.1, "0.1", True, math.nan):
        with pytest.raises(GptlabError, match="attn_dropout"):
            site_config(tiny_config, attn_dropout=bad)


def test_a_model_file_written_before_the_site_fields_loads_with_the_same_logits(
    tmp_path, tiny_model, char_tokenizer
):
    save_model(tmp_path / "run", tiny_model, char_tokenizer)
    meta_path = tmp_path / "run" / "model.json"
    meta = json.loads(meta_path.read_text())
    for site in ("embd", "attn", "resid"):
        assert meta["config"].pop(f"{site}_dropout") is None  # the file as an older gptlab wrote it
    meta["config"]["dropout"] = 0.1
    meta_path.write_text(json.dumps(meta))
    loaded, _ = load_model(tmp_path / "run")
    assert {m.p for m in loaded.modules() if isinstance(m, nn.Dropout)} == {0.1}
    idx = torch.randint(0, 65, (2, 12))
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], tiny_model(idx)[0])
