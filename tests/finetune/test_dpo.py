"""Preference tuning: the DPO / IPO / cDPO losses and their gradients against trl's DPOTrainer, the
response log-probs against the model's own cross-entropy, the Bradley-Terry loss by hand, bad
preference rows, and `finetune dpo`, `finetune reward`, `generate --best-of` and `data prefs` end
to end on a tiny model."""

from __future__ import annotations

import json
import math
import random
import string
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from gptlab.cli import main
from gptlab.data.tasks import InstructionExample, encode_prompt
from gptlab.errors import GptlabError
from gptlab.finetune.dpo import DpoOptions, finetune_dpo, preference_loss, token_kl
from gptlab.finetune.instruct import generate_responses
from gptlab.finetune.prefs import (
    PreferenceExample,
    collate_preferences,
    encode_preference,
    load_preferences,
    response_logps,
)
from gptlab.finetune.reward import bradley_terry_loss, load_reward
from gptlab.model import GPT, GPTConfig
from gptlab.rundir import load_model, read_model_json, save_model
from gptlab.tokenizers.base import EOT
from gptlab.tokenizers.char import CharTokenizer

COLORS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black"}
WRONG = ("pink", "red", "gray")


# --- parity with trl ------------------------------------------------------------------------------


def _trl_loss(loss_type, beta, eps, token_logps, completion_mask, ref_chosen, ref_rejected):
    """trl's DPOTrainer._compute_loss on given per-token log-probs: a trainer instance with only the
    attributes the loss reads, and a model that returns those log-probs (as trl's fused LM head does:
    zero off the completion)."""
    from trl import DPOTrainer

    class LogpModel:
        training = True

        def __call__(self, input_ids, labels, **kwargs):
            n = token_logps.shape[1]
            zeros = torch.zeros_like(token_logps).detach()
            return SimpleNamespace(
                log_probs=token_logps * completion_mask[:, 1:], entropy=zeros, mean_logits=zeros,
                is_top1=torch.zeros(len(input_ids), n, dtype=torch.bool),
            )  # fmt: skip

    trainer = object.__new__(DPOTrainer)
    model = LogpModel()
    identity = lambda t: t  # noqa: E731 (one process: gathering is the identity)
    attrs = dict(
        model=model, accelerator=SimpleNamespace(device="cpu", gather_for_metrics=identity, gather=identity),
        aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
        loss_types=[loss_type], loss_weights=[1.0], beta=beta, label_smoothing=eps, use_weighting=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0, _tp_size=1,
    )  # fmt: skip
    for name, value in attrs.items():
        object.__setattr__(trainer, name, value)
    inputs = {
        "input_ids": torch.zeros(completion_mask.shape, dtype=torch.long),
        "attention_mask": torch.ones_like(completion_mask),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }
    return trainer._compute_loss(model, inputs, return_outputs=False)


def _random_pairs(B=4, T=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    token_logps = (-3 * torch.rand(2 * B, T - 1, generator=g)).requires_grad_(True)
    completion_mask = torch.zeros(2 * B, T, dtype=torch.long)
    for row in range(2 * B):  # a prompt of 2..4 tokens, then a response of varying length
        start = 2 + row % 3
        completion_mask[row, start : T - row % 2] = 1
    ref = -3 * torch.rand(2 * B, generator=g)
    return token_logps, completion_mask, ref[:B], ref[B:]


def _ours(loss, beta, eps, token_logps, completion_mask, ref_chosen, ref_rejected):
    shifted = completion_mask[:, 1:]
    sums, counts = (token_logps * shifted).sum(1), shifted.sum(1)
    B = len(sums) // 2
    losses, _, _ = preference_loss(
        sums[:B], sums[B:], ref_chosen, ref_rejected, beta, loss, eps, counts[:B], counts[B:]
    )
    return losses.mean()


@pytest.mark.parametrize(
    "loss, trl_type, beta", [("dpo", "sigmoid", 0.1), ("dpo", "sigmoid", 0.5), ("ipo", "ipo", 0.1)]
)
@pytest.mark.slow  # over 0.4 s: keeps `-m "not slow"` under a minute
def test_loss_and_gradients_equal_trl(loss, trl_type, beta):
    pytest.importorskip("trl")
    token_logps, mask, ref_c, ref_r = _random_pairs()
    ours = _ours(loss, beta, 0.0, token_logps, mask, ref_c, ref_r)
    (grad_ours,) = torch.autograd.grad(ours, token_logps)
    theirs = _trl_loss(trl_type, beta, 0.0, token_logps, mask, ref_c, ref_r)
    (grad_theirs,) = torch.autograd.grad(theirs, token_logps)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=1e-5, atol=1e-8)
    assert grad_ours.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_cdpo_equals_trl_aot_on_single_pairs(eps):
    """trl 1.x has no label-smoothed sigmoid loss; its ``aot`` loss sorts the batch's log-ratios,
    which is the identity for one pair, leaving exactly cDPO's formula."""
    pytest.importorskip("trl")
    token_logps, mask, ref_c, ref_r = _random_pairs(B=3, seed=1)
    ours = _ours("cdpo", 0.2, eps, token_logps, mask, ref_c, ref_r)
    (grad_ours,) = torch.autograd.grad(ours, token_logps)
    B = 3
    theirs = (
        sum(
            _trl_loss(
                "aot", 0.2, eps, token_logps[[i, B + i]], mask[[i, B + i]], ref_c[i : i + 1], ref_r[i : i + 1]
            )
            for i in range(B)
        )
        / B
    )
    (grad_theirs,) = torch.autograd.grad(theirs, token_logps)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=1e-5, atol=1e-8)


def test_preference_loss_by_hand_and_its_rewards():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-2.0, -5.0, -3.0, -4.0))
    losses, chosen, rejected = preference_loss(pc, pr, rc, rr, beta=0.5)
    z = 0.5 * ((-2 + 3) - (-5 + 4))  # beta * (chosen log-ratio - rejected log-ratio) = 1
    assert losses.item() == pytest.approx(math.log1p(math.exp(-z)))
    assert (chosen.item(), rejected.item()) == (pytest.approx(0.5), pytest.approx(-0.5))
    smoothed, _, _ = preference_loss(pc, pr, rc, rr, beta=0.5, loss="cdpo", label_smoothing=0.25)
    assert smoothed.item() == pytest.approx(0.75 * math.log1p(math.exp(-z)) + 0.25 * math.log1p(math.exp(z)))
    ipo, _, _ = preference_loss(
        pc, pr, rc, rr, 0.5, "ipo", chosen_tokens=torch.tensor([2]), rejected_tokens=torch.tensor([4])
    )
    assert ipo.item() == pytest.approx((1 / 2 - (-1) / 4 - 1) ** 2)
    with pytest.raises(GptlabError, match="token counts"):
        preference_loss(pc, pr, rc, rr, 0.5, "ipo")
    with pytest.raises(GptlabError, match="loss must be one of"):
        preference_loss(pc, pr, rc, rr, 0.5, "kto")


def test_bradley_terry_loss_by_hand():
    chosen, rejected = torch.tensor([1.0, 0.2, -1.0]), torch.tensor([0.0, 0.5, -3.0])
    by_hand = sum(math.log(1 + math.exp(-(c - r))) for c, r in zip(chosen.tolist(), rejected.tolist())) / 3
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(by_hand)


# --- tokens and log-probs -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer.train(string.ascii_letters + string.digits + " .,:#'\n", special_tokens=[EOT])


@pytest.fixture(scope="module")
def base_run(tokenizer, tmp_path_factory):
    torch.manual_seed(0)
    gpt = GPT(
        GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    )
    return save_model(tmp_path_factory.mktemp("base") / "run", gpt, tokenizer)


def test_response_logps_are_the_models_own_cross_entropy(tokenizer, base_run):
    gpt, _ = load_model(base_run)
    ex = PreferenceExample("color of sky", "blue", "green")
    x, y = collate_preferences([encode_preference(ex, tokenizer, "alpaca")], tokenizer.eot_id, 64)
    counts = (y != -100).sum(1).tolist()
    assert counts == [len("blue") + 1, len("green") + 1]  # the response and its <|endoftext|>
    for row, response in enumerate(("blue", "green")):  # the targets are the response, prompt masked
        assert tokenizer.decode(y[row][y[row] != -100].tolist()) == response + EOT
    logits, _ = gpt(x)
    sums, n = response_logps(logits, y)
    for row in range(2):
        _, ce = gpt(x[row : row + 1], y[row : row + 1])
        assert sums[row].item() == pytest.approx(-ce.item() * n[row].item(), rel=1e-5)
    means, _ = response_logps(logits, y, average=True)
    torch.testing.assert_close(means, sums / n)
    kl, tokens = token_kl(logits, logits, y)
    assert tokens == sum(counts) and kl == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"prompt": "p", "chosen": "a"}', "line 2: missing field 'rejected'"),
        ('{"prompt": "p", "chosen": 3, "rejected": "b"}', "line 2: field 'chosen' must be a string"),
        ('["p", "a", "b"]', "line 2: expected an object"),
        ('{"prompt": " ", "chosen": "a", "rejected": "b"}', "line 2: empty text in field 'prompt'"),
        (
            '{"prompt": "p", "chosen": "same", "rejected": " same"}',
            "line 2: 'chosen' and 'rejected' are the same",
        ),
        (
            '{"prompt": "p", "chosen": "a", "rejected": "b", "input": 1}',
            "line 2: field 'input' must be a string",
        ),
        ('{"prompt": "p", "chosen": "a"', "line 2: bad JSON"),
    ],
)
def test_bad_rows_name_their_line(tmp_path, line, message):
    path = tmp_path / "prefs.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n' + line + "\n")
    with pytest.raises(GptlabError, match=message.replace("(", r"\(")):
        load_preferences(path)
    path.write_text("\n")
    with pytest.raises(GptlabError, match="no preference rows"):
        load_preferences(path)


# --- end to end -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefs_file(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("prefs") / "colors.jsonl"
    rows = []
    for _ in range(48):
        thing = rng.choice(sorted(COLORS))
        wrong = rng.choice(WRONG)  # never a right answer: the preference need not read the prompt
        rows.append({"prompt": f"color of {thing}", "chosen": COLORS[thing], "rejected": wrong})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def dpo_run(base_run, prefs_file, tmp_path_factory):
    options = DpoOptions(
        model=str(base_run), data=str(prefs_file), out=str(tmp_path_factory.mktemp("dpo") / "run"),
        beta=0.5, epochs=3, batch_size=8, lr=3e-3, val_fraction=0.25, device="cpu", progress=False,
    )  # fmt: skip
    return finetune_dpo(options)


def test_dpo_starts_at_the_reference_and_learns_the_preferences(dpo_run):
    before = dpo_run.summary["before"]
    assert before["val_margin"] == pytest.approx(0.0, abs=1e-6)  # the policy is the reference
    assert before["val_kl"] == pytest.approx(0.0, abs=1e-6)
    assert before["val_loss"] == pytest.approx(math.log(2), rel=1e-5)
    best = dpo_run.summary["best"]
    assert best["val_accuracy"] == 1.0 and best["val_margin"] > 0.5 and best["val_loss"] < 0.5
    assert best["val_kl"] > 0
    lines = (dpo_run.out_dir / "metrics.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    for key in (
        "train_loss",
        "train_margin",
        "train_accuracy",
        "val_loss",
        "val_margin",
        "val_accuracy",
        "val_kl",
    ):
        assert key in record
    extra = read_model_json(dpo_run.out_dir)[1]["extra"]
    assert extra["finetune"] == "dpo" and extra["template"] == "alpaca" and extra["preference"]["beta"] == 0.5


def test_lora_dpo_trains_the_adapters_and_saves_merged_weights(base_run, prefs_file, tmp_path):
    from gptlab.finetune.common import LoraOptions

    options = DpoOptions(
        model=str(base_run), data=str(prefs_file), out=str(tmp_path / "lora"), lora=LoraOptions(rank=2),
        epochs=1, lr=3e-3, device="cpu", progress=False,
    )  # fmt: skip
    result = finetune_dpo(options)
    costs = result.summary["costs"]
    assert 0 < costs["trainable_params"] < costs["total_params"] / 5  # the adapters only
    tuned, _ = load_model(result.out_dir)  # a plain GPT: the adapters merged
    base, _ = load_model(base_run)
    assert set(tuned.state_dict()) == set(base.state_dict())
    assert not torch.equal(
        tuned.transformer.h[0].attn.c_attn.weight, base.transformer.h[0].attn.c_attn.weight
    )


def test_dpo_options_are_checked(base_run, prefs_file, tmp_path):
    def options(**kw):
        return DpoOptions(
            model=str(base_run), data=str(prefs_file), out=str(tmp_path / "o"), device="cpu", **kw
        )

    for kw, message in (
        ({"loss": "cdpo"}, "cdpo needs --label-smoothing"),
        ({"label_smoothing": 0.1}, "cdpo's"),
        ({"loss": "cdpo", "label_smoothing": 0.5}, r"\[0, 0.5\)"),
        ({"beta": 0}, "beta must be positive"),
    ):
        with pytest.raises(GptlabError, match=message):
            finetune_dpo(options(**kw))


@pytest.mark.slow
def test_reward_model_best_of_n_and_cli(base_run, prefs_file, tmp_path, capsys):
    out = tmp_path / "reward"
    argv = ["finetune", "reward", "--model", str(base_run), "--data", str(prefs_file), "--out", str(out),
            "--epochs", "4", "--lr", "3e-3", "--val-fraction", "0.25", "--device", "cpu", "--json"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["best"]["val_accuracy"] == 1.0 and summary["best"]["val_margin"] > 0
    reward = load_reward(out)
    prompts = [PreferenceExample(f"color of {t}", "", "x") for t in COLORS]
    right = reward.score(prompts, list(COLORS.values()))
    wrong = reward.score(prompts, ["red"] * 4)
    assert all(r > w for r, w in zip(right, wrong))

    prompt = encode_prompt(InstructionExample("color of sky"), reward.tokenizer, "alpaca")
    argv = ["generate", "--model", str(base_run), "--prompt", reward.tokenizer.decode(prompt), "--best-of", "4",
            "--reward", str(out), "--max-new-tokens", "5", "--seed", "1", "--temperature", "1", "--json"]  # fmt: skip
    assert main(argv) == 0
    sample = json.loads(capsys.readouterr().out)["samples"][0]
    rewards = [c["reward"] for c in sample["candidates"]]
    assert len(rewards) == 4 and sample["reward"] == max(rewards)
    texts = [c["completion"] for c in sample["candidates"]]
    rescored = reward.score_ids(
        [prompt + reward.tokenizer.encode(t) + [reward.tokenizer.eot_id] for t in texts]
    )
    assert rescored == pytest.approx(rewards, rel=1e-5, abs=1e-6)
    with pytest.raises(GptlabError, match="not a reward model run"):
        load_reward(base_run)
    assert main(["generate", "--model", str(base_run), "--best-of", "2"]) == 2
    assert "go together" in capsys.readouterr().err


def test_data_prefs_rejects_the_models_own_responses(base_run, tmp_path, capsys):
    data = tmp_path / "it.json"
    examples = [InstructionExample(f"color of {t}", "", c) for t, c in COLORS.items()]
    data.write_text(
        json.dumps([{"instruction": e.instruction, "input": "", "output": e.output} for e in examples])
    )
    out = tmp_path / "prefs.jsonl"
    argv = ["data", "prefs", "--from", str(data), "--model", str(base_run), "--out", str(out),
            "--max-new-tokens", "6", "--device", "cpu", "--json"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    gpt, tok = load_model(base_run)
    generated = generate_responses(gpt, tok, examples, "alpaca", 6)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["pairs"] == len(rows) == 4
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [
        (e.instruction, e.output, g) for e, g in zip(examples, generated)
    ]
    assert main(argv) == 2  # never overwrites without --overwrite
    assert "already exists" in capsys.readouterr().err
