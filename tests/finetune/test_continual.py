"""Chained fine-tunes (--after), replay and the EWC / L2-to-start penalties
(gptlab.finetune.continual, gptlab.finetune.anchor)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from continual_chain import build_chain, instruct_options

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.finetune.anchor import AnchorPenalty, diagonal_fisher
from gptlab.finetune.continual import chain_label, mix_replay, read_chain, replay_count, task_label
from gptlab.finetune.instruct import finetune_instruct
from gptlab.io import load_safetensors


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return build_chain(tmp_path_factory.mktemp("chain"), instruct_epochs=0)


# --- replay --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_new, fraction", [(30, 0.25), (7, 0.5), (100, 0.1), (12, 0.0), (3, 0.9)])
def test_replay_mixes_exactly_the_fraction(n_new, fraction):
    new = [("new", i) for i in range(n_new)]
    pool = [("old", i) for i in range(5)]  # smaller than some draws: reshuffled and drawn again
    mixed = mix_replay(new, pool, fraction, seed=1)
    replayed = [item for item in mixed if item[0] == "old"]
    assert mixed[:n_new] == new
    assert len(replayed) == replay_count(n_new, fraction)
    assert abs(len(replayed) / len(mixed) - fraction) <= 0.5 / len(mixed)  # rounding to whole examples
    if len(replayed) >= len(pool):  # every pool item is used before any repeats
        assert set(replayed) == set(pool)
    assert mix_replay(new, pool, fraction, seed=1) == mixed  # seeded


def test_replay_fraction_out_of_range_is_refused():
    with pytest.raises(GptlabError, match=r"\[0, 1\)"):
        replay_count(10, 1.0)


# --- the penalty ---------------------------------------------------------------------------------


def test_ewc_penalty_and_fisher_equal_a_hand_computation():
    torch.manual_seed(0)
    layer = nn.Linear(3, 1, bias=False)
    w0 = layer.weight.detach().clone()
    xs = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]])
    ys = torch.tensor([1.0, -2.0])
    params = dict(layer.named_parameters())
    fisher, count = diagonal_fisher(
        params, [lambda x=x, y=y: (layer(x) - y).pow(2).sum() for x, y in zip(xs, ys)]
    )
    # d/dw (w.x - y)^2 = 2 (w.x - y) x, per example; the Fisher is the mean of its squares
    grads = [2 * ((w0 @ x) - y) * x for x, y in zip(xs, ys)]
    assert count == 2
    assert torch.allclose(fisher["weight"][0], (grads[0] ** 2 + grads[1] ** 2) / 2)

    ewc = AnchorPenalty(params, lam=3.0, weights=fisher)
    l2 = AnchorPenalty(params, lam=3.0)
    delta = torch.tensor([[0.5, -1.0, 2.0]])
    with torch.no_grad():
        assert float(ewc()) == 0.0 and float(l2()) == 0.0  # at the start
        layer.weight += delta
        assert float(ewc()) == pytest.approx(1.5 * float((fisher["weight"] * delta**2).sum()), rel=1e-6)
        assert float(l2()) == pytest.approx(1.5 * (0.25 + 1.0 + 4.0), rel=1e-6)


def _weights(run):
    return load_safetensors(run / "model.safetensors")


@pytest.fixture(scope="module")
def plain(chain):
    """B fine-tuned after A with no penalty: what a penalty of lambda 0 must give exactly."""
    return finetune_instruct(
        instruct_options(chain["files"]["pairs"], chain["root"] / "plain", after=str(chain["A"]))
    )


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["ewc", "l2_start"])
def test_lambda_zero_equals_plain_finetuning_bit_for_bit(chain, plain, flag):
    files, root = chain["files"], chain["root"]
    zero = finetune_instruct(
        instruct_options(
            files["pairs"], root / f"zero-{flag}", after=str(chain["A"]), **{flag: 0.0}, ewc_examples=8
        )
    )
    assert zero.summary["penalty"]["kind"] == flag and zero.summary["penalty"]["lambda"] == 0.0
    a, b = _weights(plain.out_dir), _weights(zero.out_dir)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_strong_ewc_keeps_the_weights_near_the_start(chain, plain):
    strong = finetune_instruct(
        instruct_options(
            chain["files"]["pairs"], chain["root"] / "strong", after=str(chain["A"]), ewc=1e4, ewc_examples=8
        )
    )
    start = _weights(chain["A"])
    distance = lambda w: sum(float((w[k] - start[k]).pow(2).sum()) for k in start)  # noqa: E731
    assert distance(_weights(strong.out_dir)) < distance(_weights(plain.out_dir))
    assert strong.summary["penalty"]["examples"] == 8 and "classifier" in strong.summary["penalty"]["source"]


# --- the chain -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_chain_is_recorded_and_replay_draws_from_the_earlier_task(chain):
    files, root = chain["files"], chain["root"]
    assert read_chain(chain["base"]) == []
    first = read_chain(chain["A"])
    assert [s["label"] for s in first] == ["sentiment"] and first[0]["finetune"] == "classify"
    assert first[0]["columns"]["text"] == "sentence"
    second = finetune_instruct(
        instruct_options(files["pairs"], root / "B", after=str(chain["A"]), replay=0.25)
    )
    steps = read_chain(second.out_dir)
    assert [s["label"] for s in steps] == ["sentiment", "pairs"]
    assert chain_label(steps) == "sentiment→pairs" and chain_label([]) == "base"
    assert steps[1]["template"] == "EN: {input}\nDE: " and steps[1]["input_field"] == "en"
    model_json = json.loads((second.out_dir / "model.json").read_text())
    assert model_json["extra"]["chain"] == steps
    replay = second.summary["replay"]
    train = second.summary["splits"]["train"]
    assert replay["examples"] == replay_count(train, 0.25) and replay["pool"] == 120
    # the instruct run's GPT is A's body to start from, not the base's
    assert second.summary["base_model"] == str(chain["A"].resolve())


def test_task_label_names_generic_files_by_their_folder(tmp_path):
    assert task_label(tmp_path / "sst2" / "train.jsonl") == "sst2"
    assert task_label(tmp_path / "reviews.tsv") == "reviews"


def test_model_and_after_are_one_or_the_other(chain, tmp_path):
    files = chain["files"]
    with pytest.raises(GptlabError, match="--model RUN, or --after RUN"):
        finetune_instruct(instruct_options(files["pairs"], tmp_path / "x"))
    with pytest.raises(GptlabError, match="not both"):
        finetune_instruct(
            instruct_options(files["pairs"], tmp_path / "y", model=str(chain["base"]), after=str(chain["A"]))
        )
    with pytest.raises(GptlabError, match="--replay needs"):
        finetune_instruct(
            instruct_options(files["pairs"], tmp_path / "z", model=str(chain["base"]), replay=0.2)
        )
    with pytest.raises(GptlabError, match="give one"):
        finetune_instruct(
            instruct_options(files["pairs"], tmp_path / "w", after=str(chain["A"]), ewc=1.0, l2_start=1.0)
        )


@pytest.mark.slow
def test_cli_classify_after_a_classifier_with_l2_start(chain, tmp_path, capsys):
    files = chain["files"]
    out = tmp_path / "again"
    args = ["finetune", "classify", "--after", str(chain["A"]), "--data", str(files["sentiment_eval"]),
            "--text-column", "sentence", "--out", str(out), "--epochs", "1", "--l2-start", "10",
            "--prompting-shots", "--device", "cpu", "--json"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["penalty"]["kind"] == "l2_start"
    assert [s["label"] for s in read_chain(out)] == ["sentiment", "sentiment_eval"]
