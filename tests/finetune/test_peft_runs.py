"""``--peft`` end to end: `gptlab finetune classify` and `finetune instruct` runs with each method,
what they save, and that a reloaded run computes what the trained model computed."""

from __future__ import annotations

import json

import pytest
import torch
from synthetic_task import write_task_tsv

from gptlab.audit.robustness import RobustnessOptions, adversarial_options
from gptlab.cli import main
from gptlab.finetune.classifier_run import load_classifier
from gptlab.finetune.classify import ClassifyOptions, finetune_classifier
from gptlab.finetune.instruct import InstructOptions, finetune_instruct
from gptlab.finetune.peft import PeftOptions, load_peft
from gptlab.run import Run
from gptlab.rundir import load_model, read_model_json


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    return write_task_tsv(tmp_path_factory.mktemp("data") / "task.tsv", 120)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["prefix", "prompt", "adapter", "ia3"])
def test_classify_with_each_method_saves_only_the_adapter_and_reloads(method, base_run, task_file, tmp_path):
    options = ClassifyOptions(
        model=str(base_run), data=str(task_file), out=str(tmp_path / method), epochs=1, lr=3e-3,
        trainable="head", peft=PeftOptions(method=method, tokens=4, reduction=4), device="cpu",
        prompting_shots=(), progress=False,
    )  # fmt: skip
    result = finetune_classifier(options)
    out = result.out_dir
    assert (out / "adapter.safetensors").is_file() and not (out / "model.safetensors").exists()
    meta = json.loads((out / "classifier.json").read_text())
    assert meta["peft"]["method"] == method and meta["lora"] is None
    if method in ("prefix", "prompt"):  # the virtual tokens take room in the context
        assert meta["max_length"] == 48 - 4
    costs = result.summary["costs"]
    assert 0 < costs["trainable_params"] < costs["total_params"] / 4
    first = load_classifier(out).predict_proba(["abzc", "abcd"])
    assert torch.allclose(first.sum(-1), torch.ones(2))
    assert load_classifier(out).predict_proba(["abzc", "abcd"]).equal(first)
    # the robustness audit's adversarial retraining starts from the run's own options, --peft included
    retrain = adversarial_options(
        Run.open(out), RobustnessOptions(adversarial_training=str(tmp_path / "adv"))
    )
    assert retrain.peft == options.peft


def test_cli_refuses_a_lora_rank_with_another_method(base_run, task_file, tmp_path, capsys):
    code = main(
        ["finetune", "classify", "--model", str(base_run), "--data", str(task_file), "--out", str(tmp_path / "x"),
         "--peft", "adapter", "--lora-rank", "4", "--prompting-shots"]
    )  # fmt: skip
    assert code != 0
    assert "--lora-rank sets LoRA's rank; it does not apply to --peft adapter" in capsys.readouterr().err
    assert not (tmp_path / "x" / "classifier.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["prefix", "ia3"])
def test_instruct_run_reloads_with_its_adapter_or_merged(method, base_run, tmp_path):
    data = tmp_path / "colors.json"
    rows = [
        {"instruction": f"color of {t}", "input": "", "output": c}
        for t, c in [("sky", "blue"), ("coal", "black")]
    ]
    data.write_text(json.dumps(rows * 30))
    options = InstructOptions(
        model=str(base_run), data=str(data), out=str(tmp_path / method), template="alpaca", epochs=1,
        lr=3e-3, peft=PeftOptions(method=method, tokens=3), max_new_tokens=3, max_test_examples=3,
        compare_base=False, device="cpu", progress=False,
    )  # fmt: skip
    result = finetune_instruct(options)
    out = result.out_dir
    assert result.scores["n"] == 3
    _, meta = read_model_json(out)
    record = meta["extra"]["peft"]
    assert record["method"] == method and ("adapter" in record) == (method == "prefix")
    tuned, tok = load_model(out)  # prefix: the base weights plus the adapter named in model.json
    reference, _ = load_model(base_run)
    load_peft(reference, out / "adapter.safetensors")
    idx = torch.tensor([tok.encode("color of sky")])
    torch.testing.assert_close(tuned(idx)[0], reference(idx)[0], atol=1e-5, rtol=0)
    if method == "ia3":  # merged: the run is a plain GPT
        assert not any("ia3" in k for k in tuned.state_dict())


def test_forgetting_is_measured_in_the_context_the_virtual_tokens_leave(tiny_run):
    from gptlab.finetune.common import lm_val_loss
    from gptlab.finetune.peft_prompt import apply_prompt

    gpt, _ = load_model(tiny_run)
    data_dir = Run.open(tiny_run).data_dir
    before = lm_val_loss(gpt, data_dir)
    apply_prompt(gpt, tokens=4)  # windows of block_size tokens would no longer fit
    after = lm_val_loss(gpt, data_dir)
    assert before is not None and after is not None and after["tokens"] < before["tokens"]
