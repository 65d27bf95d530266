"""`gptlab finetune instruct` end to end on a tiny synthetic instruction set: training, responses.json,
scores vs the base model, the chat template's added special tokens, LoRA runs saved merged."""

from __future__ import annotations

import json
import random

import pytest
import torch

from gptlab.cli import main
from gptlab.data.tasks import CHAT_SPECIAL_TOKENS, InstructionExample
from gptlab.errors import GptlabError
from gptlab.finetune.common import LoraOptions
from gptlab.finetune.instruct import (
    InstructOptions,
    add_special_tokens,
    finetune_instruct,
    generate_responses,
    score_responses,
)
from gptlab.model.lora import load_adapter, merge_lora
from gptlab.rundir import load_model, read_model_json
from gptlab.tokenizers.base import EOT

ANSWERS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black"}


def write_examples(path, n: int = 120, seed: int = 0) -> None:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        thing = rng.choice(sorted(ANSWERS))
        rows.append({"instruction": f"color of {thing}", "input": "", "output": ANSWERS[thing]})
    path.write_text(json.dumps(rows))


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "colors.json"
    write_examples(path)
    return path


@pytest.fixture(scope="module")
def chat_run(base_run, data_file, tmp_path_factory):
    options = InstructOptions(
        model=str(base_run),
        data=str(data_file),
        out=str(tmp_path_factory.mktemp("ft") / "chat"),
        template="chat",
        epochs=8,
        batch_size=8,
        lr=3e-3,
        weight_decay=0.0,
        val_fraction=0.1,
        test_fraction=0.1,
        max_new_tokens=8,
        device="cpu",
        progress=False,
    )
    return finetune_instruct(options)


@pytest.mark.slow
def test_instruct_learns_the_task_and_beats_the_base_model(chat_run):
    assert chat_run.scores["exact_match"] >= 0.5  # a 2-layer char model, seconds of training
    assert chat_run.base_scores["exact_match"] == 0.0
    assert chat_run.scores["rougeL_f"] > chat_run.base_scores["rougeL_f"]
    losses = [r["val_loss"] for r in chat_run.history]
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_instruct_run_files(chat_run):
    out = chat_run.out_dir
    responses = json.loads((out / "responses.json").read_text())
    assert len(responses) == chat_run.scores["n"] == 12
    assert set(responses[0]) == {"instruction", "input", "reference", "generated"}
    matches = sum(r["generated"] == r["reference"] for r in responses)
    assert matches == round(chat_run.scores["exact_match"] * 12)
    assert len(json.loads((out / "base_responses.json").read_text())) == 12
    _, meta = read_model_json(out)
    assert meta["extra"]["finetune"] == "instruct" and meta["extra"]["template"] == "chat"
    results = json.loads((out / "results.json").read_text())
    assert results["scores"] == chat_run.scores and results["base_scores"] == chat_run.base_scores
    assert "Instruction fine-tuning" in (out / "report.html").read_text()
    model, tok = load_model(out)
    assert set(CHAT_SPECIAL_TOKENS) <= set(tok.special_tokens) and model.config.vocab_size == tok.vocab_size


@pytest.mark.slow
def test_responses_json_is_scored_by_eval_rouge(chat_run, capsys):
    assert main(["eval", "rouge", "--responses", str(chat_run.out_dir / "responses.json"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["scores"]["rougeL"]["mean"]["fmeasure"] == pytest.approx(chat_run.scores["rougeL_f"])


def test_add_special_tokens_grows_the_embedding_with_the_mean_row(base_run):
    gpt, tok = load_model(base_run)
    old = gpt.transformer.wte.weight.detach().clone()
    new_tok = add_special_tokens(gpt, tok, CHAT_SPECIAL_TOKENS)
    assert new_tok.vocab_size == tok.vocab_size + 2 == gpt.config.vocab_size
    w = gpt.transformer.wte.weight
    assert torch.equal(w[: old.shape[0]], old)
    assert torch.allclose(w[-1], old.mean(0)) and gpt.lm_head.weight is w
    assert add_special_tokens(gpt, new_tok, CHAT_SPECIAL_TOKENS) is new_tok  # nothing missing: unchanged


@pytest.mark.slow
def test_lora_instruct_run_saves_merged_weights_and_the_adapter(base_run, data_file, tmp_path):
    options = InstructOptions(
        model=str(base_run),
        data=str(data_file),
        out=str(tmp_path / "lora"),
        template="alpaca",
        epochs=1,
        lr=3e-3,
        lora=LoraOptions(rank=2, alpha=4),
        max_new_tokens=4,
        max_test_examples=3,
        compare_base=False,
        device="cpu",
        progress=False,
    )
    result = finetune_instruct(options)
    out = result.out_dir
    assert result.base_scores is None and result.scores["n"] == 3
    merged, tok = load_model(out)
    base, _ = load_model(base_run)
    load_adapter(base, out / "adapter.safetensors")
    merge_lora(base)
    idx = torch.tensor([tok.encode("color of sky")])
    assert torch.allclose(merged(idx)[0], base(idx)[0], atol=1e-5)
    assert (out / "adapter.safetensors").stat().st_size < (out / "model.safetensors").stat().st_size / 3
    assert result.summary["costs"]["trainable_percent"] < 50


def test_generate_responses_cut_at_end_of_text(base_run):
    gpt, tok = load_model(base_run)
    examples = [InstructionExample("color of sky", "", "blue")] * 2
    out = generate_responses(gpt, tok, examples, "alpaca", max_new_tokens=5)
    assert len(out) == 2 and all(EOT not in r for r in out)


def test_score_responses_and_bad_inputs(base_run, tmp_path, capsys):
    s = score_responses(["blue sky", ""], ["blue sky", "green"])
    assert s["exact_match"] == 0.5 and s["empty"] == 1 and 0 < s["rougeL_f"] < 1
    with pytest.raises(GptlabError):
        score_responses([], [])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a"\n')
    code = main(
        ["finetune", "instruct", "--model", str(base_run), "--data", str(bad), "--out", str(tmp_path / "o")]
    )
    assert code == 2 and "line 2" in capsys.readouterr().err
    with pytest.raises(GptlabError, match="template"):
        InstructOptions(model="m", data="d", out="o", template="vicuna").check()
