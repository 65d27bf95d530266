"""Pretraining with label smoothing, per-site dropout and a fraction of the training data."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from samples import TINY_TRAINING

from gptlab.config import load_config, to_toml
from gptlab.data.shards import BatchSampler, TokenDataset, iter_eval_batches
from gptlab.errors import GptlabError
from gptlab.model import GPT
from gptlab.rundir import load_model
from gptlab.train import read_metrics, train


def one_step_config(tmp_path, *extra):
    out = f"train.out_dir={json.dumps(str(tmp_path / 'run'))}"
    return load_config(None, [*TINY_TRAINING, "train.max_steps=1", out, *extra])


def test_pretraining_loss_is_label_smoothed_and_evaluation_is_not(tmp_path):
    config = one_step_config(tmp_path, "optim.label_smoothing=0.3")
    result = train(config)
    logged = next(r["loss"] for r in read_metrics(result.run_dir) if r["kind"] == "train")
    # the first step again, by hand: the same initial weights and the same first batch
    data = TokenDataset(result.run_dir / "data", "train")
    x, y = BatchSampler(data, 2, 16, config.train.seed).next_batch()
    torch.manual_seed(config.train.seed)
    model = GPT(config.model.build(vocab_size=data.vocab_size))
    logits, _ = model(x)
    smoothed = F.cross_entropy(logits.flatten(0, 1), y.flatten(), label_smoothing=0.3)
    assert logged == pytest.approx(smoothed.item(), rel=1e-5)
    assert abs(logged - F.cross_entropy(logits.flatten(0, 1), y.flatten()).item()) > 1e-4
    # the evaluation reports the plain cross-entropy of the final weights on the val windows
    final, _ = load_model(result.run_dir)
    val = TokenDataset(result.run_dir / "data", "val")
    x, y = next(iter(iter_eval_batches(val, 2, 16, 1)))
    plain = F.cross_entropy(final(x)[0].flatten(0, 1), y.flatten()).item()
    evaluated = next(r for r in read_metrics(result.run_dir) if r["kind"] == "eval")
    assert evaluated["val_loss"] == pytest.approx(plain, rel=1e-5)


def test_data_fraction_trains_on_the_first_tokens_only(tmp_path):
    data_dir = tmp_path / "run" / "data"
    train(one_step_config(tmp_path, "train.data_fraction=0.5"))
    whole = TokenDataset(data_dir, "train")
    cut = TokenDataset(data_dir, "train").head(0.5)
    assert len(cut) == -(-len(whole) // 2) and (cut.tokens == whole.tokens[: len(cut)]).all()
    config = one_step_config(tmp_path / "tiny", "train.data_fraction=0.0001")
    with pytest.raises(GptlabError, match=r"cut to its first tokens of \d+\) has \d+ tokens, fewer than"):
        train(config)
    with pytest.raises(GptlabError, match=r"train.data_fraction must be in \(0, 1\]"):
        train(one_step_config(tmp_path / "bad", "train.data_fraction=1.5"))


def test_regularisation_keys_load_and_are_checked(tmp_path):
    config = load_config(
        None, ["model.attn_dropout=0.1", "model.embd_dropout=0", "optim.label_smoothing=0.1"]
    )
    built = config.model.build(vocab_size=65)
    assert (built.attn_dropout, built.embd_dropout, built.resid_dropout, built.dropout) == (
        0.1,
        0.0,
        None,
        0.0,
    )
    assert built.site_dropout("resid") == 0.0 and built.site_dropout("attn") == 0.1
    # a config.toml written before these keys existed loads with their defaults
    old = config.to_dict()
    old["model"] = {"preset": "tiny", "dropout": 0.2}
    del old["optim"]["label_smoothing"], old["train"]["data_fraction"]
    (tmp_path / "old.toml").write_text(to_toml(old))
    loaded = load_config(str(tmp_path / "old.toml"))
    assert loaded.optim.label_smoothing == 0.0 and loaded.train.data_fraction == 1.0
    assert loaded.model.build(vocab_size=65).site_dropout("embd") == 0.2
    for overrides, message in (
        (["optim.label_smoothing=1.0"], "optim.label_smoothing must be in"),
        (["model.resid_dropout=1"], "resid_dropout must be in"),
        (["model.attn_dropout=true"], "attn_dropout must be a float"),
        (["optim.label_smoothing=0.1", "dp.epsilon=1"], "DP training does not apply optim.label_smoothing"),
    ):
        with pytest.raises(GptlabError, match=message):
            train(load_config(None, [*overrides, f"train.out_dir={json.dumps(str(tmp_path / 'x'))}"]))
    assert not (tmp_path / "x").exists()  # refused before anything was written
