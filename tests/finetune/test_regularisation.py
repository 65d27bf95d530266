"""Label smoothing in the fine-tunes: the training loss is smoothed, the val loss is not."""

from __future__ import annotations

import json
import string

import pytest
import torch
from synthetic_task import synthetic_rows

from gptlab.errors import GptlabError
from gptlab.finetune.classify import ClassifyOptions, finetune_classifier
from gptlab.finetune.instruct import InstructOptions, finetune_instruct
from gptlab.model import GPT, GPTConfig
from gptlab.model.heads import GPTClassifier
from gptlab.rundir import save_model
from gptlab.tokenizers.base import EOT
from gptlab.tokenizers.char import CharTokenizer


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    tok = CharTokenizer.train(string.ascii_letters + string.digits + " .,:#\n", special_tokens=[EOT])
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16))
    return save_model(tmp_path_factory.mktemp("base") / "run", gpt, tok)


def test_classifier_loss_is_smoothed_over_the_classes(base_run):
    from gptlab.rundir import load_model

    gpt, _ = load_model(base_run)
    torch.manual_seed(0)
    clf = GPTClassifier(gpt, num_classes=3)
    idx, lengths, labels = (
        torch.randint(0, 20, (4, 7)),
        torch.tensor([7, 3, 5, 1]),
        torch.tensor([0, 2, 1, 2]),
    )
    logits, loss = clf(idx, lengths, labels, label_smoothing=0.3)
    logp = logits.double().log_softmax(-1)
    by_hand = (0.7 * -logp[torch.arange(4), labels] + 0.3 * -logp.mean(-1)).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)


def first_epoch(metrics_file):
    return json.loads(metrics_file.read_text().splitlines()[0])


@pytest.mark.slow
def test_fine_tunes_train_on_the_smoothed_loss_and_report_the_plain_one(base_run, tmp_path):
    data = tmp_path / "task.tsv"
    data.write_text("label\ttext\n" + "".join(f"{y}\t{x}\n" for y, x in synthetic_rows(80)))
    records = {}
    for eps in (0.0, 0.6):  # a learning rate so small that the weights stay put: the same val loss
        out = tmp_path / f"clf-{eps}"
        common = dict(model=str(base_run), data=str(data), out=str(out), epochs=1, lr=1e-12, device="cpu")
        finetune_classifier(
            ClassifyOptions(**common, prompting_shots=(), progress=False, label_smoothing=eps)
        )
        records[eps] = first_epoch(out / "metrics.jsonl")
    assert records[0.0]["val"]["loss"] == pytest.approx(records[0.6]["val"]["loss"], abs=1e-6)
    assert abs(records[0.0]["train"]["loss"] - records[0.6]["train"]["loss"]) > 1e-4

    examples = tmp_path / "instructions.json"
    examples.write_text(
        json.dumps([{"instruction": f"say {w}", "output": w} for w in string.ascii_lowercase * 2])
    )
    for eps in (0.0, 0.6):
        out = tmp_path / f"instruct-{eps}"
        options = InstructOptions(
            model=str(base_run), data=str(examples), out=str(out), epochs=1, lr=1e-12, device="cpu",
            max_new_tokens=1, max_test_examples=1, compare_base=False, progress=False, label_smoothing=eps,
        )  # fmt: skip
        finetune_instruct(options)
        records[eps] = first_epoch(out / "metrics.jsonl")
    assert records[0.0]["val_loss"] == pytest.approx(records[0.6]["val_loss"], abs=1e-6)
    assert abs(records[0.0]["train_loss"] - records[0.6]["train_loss"]) > 1e-4


def test_bad_label_smoothing_is_refused():
    for options in (ClassifyOptions, InstructOptions):
        with pytest.raises(GptlabError, match="label_smoothing must be in"):
            options(model="m", data="d", out="o", label_smoothing=1.0).check()
    with pytest.raises(GptlabError, match="DP-SGD"):
        ClassifyOptions(model="m", data="d", out="o", label_smoothing=0.1, dp_epsilon=1.0).check()
