"""Issue 18: every architecture variant (post-norm, local attention, mixture of experts) and the
recurrent baseline (LSTM, GRU) goes through what a GPT goes through: a fine-tune with LoRA (or,
for the recurrent models, without: LoRA refuses them clearly), GPT-2 export (refused clearly:
GPT-2's format holds only its own block), the privacy audits, and the analyses that need attention
(refused clearly by a recurrent model). A mixture of experts fine-tunes with its load-balancing
loss, as it pretrains. Saving, loading and cached decoding: tests/model/test_variants.py."""

from __future__ import annotations

import json
import math
import string

import pytest
import torch
from synthetic_task import synthetic_rows
from variant_models import EVERY, RECURRENT, VARIANTS, small

from gptlab.audit.membership import audit_membership
from gptlab.audit.memorization import audit_memorization
from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.finetune.classifier_run import ADAPTER_FILE, load_classifier
from gptlab.finetune.classify import ClassifyOptions, finetune_classifier
from gptlab.finetune.common import LoraOptions
from gptlab.finetune.instruct import InstructOptions, finetune_instruct
from gptlab.finetune.loop import adamw_update
from gptlab.interpret.attention import attention_weights, noise_robustness
from gptlab.interpret.embeddings import sentence_embeddings
from gptlab.interpret.lens import logit_lens
from gptlab.model import GPTConfig, build_model
from gptlab.model.heads import GPTClassifier
from gptlab.model.lora import load_adapter, lora_modules
from gptlab.model.moe import tokens_per_expert
from gptlab.rundir import load_model, save_model
from gptlab.tokenizers.base import EOT
from gptlab.tokenizers.char import CharTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

TASK_ALPHABET = string.ascii_letters + " :\n"


@pytest.fixture(scope="module")
def task_tokenizer():
    return CharTokenizer.train(TASK_ALPHABET, special_tokens=[EOT])


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    """The shared synthetic classification task (a 'z' anywhere: alarm, else calm), 80 rows."""
    path = tmp_path_factory.mktemp("task") / "task.tsv"
    path.write_text("label\ttext\n" + "".join(f"{y}\t{x}\n" for y, x in synthetic_rows(80)))
    return path


def base_run(path, tokenizer, **fields):
    """A saved random model of the variant ``fields`` over the task's characters."""
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16, **fields
    )
    return save_model(path, build_model(config), tokenizer)


def classify(base, data, out, **options):
    defaults = dict(epochs=2, batch_size=8, lr=3e-3, device="cpu", prompting_shots=(), progress=False)
    return finetune_classifier(
        ClassifyOptions(model=str(base), data=str(data), out=str(out), **(defaults | options))
    )


# ------------------------------------------------------------------ mixture of experts in fine-tuning


def test_a_fine_tune_update_of_a_moe_model_adds_the_load_balancing_loss():
    """One fine-tuning update (gptlab.finetune.loop.adamw_update, with plain SGD at lr 1 so the
    step is the gradient) moves the weights by the gradient of cross-entropy + moe_aux_loss *
    sum over layers of E * sum_e f_e * P_e, computed here by hand from the routers' logits."""
    coef = 0.5  # large, so that the balance term's share of the router gradient is plain to see
    model = small(std=None, mlp="moe", n_experts=4, top_k=2, moe_aux_loss=coef).train()
    idx = torch.randint(0, 65, (3, 10), generator=torch.Generator().manual_seed(1))
    targets = torch.randint(0, 65, (3, 10), generator=torch.Generator().manual_seed(2))

    router_logits = []
    hooks = [
        m.mlp.router.register_forward_hook(lambda _m, _i, out: router_logits.append(out))
        for m in model.transformer.h
    ]
    _, ce = model(idx, targets)
    for h in hooks:
        h.remove()
    balance = 0.0
    for logits in router_logits:  # (N, E) per layer
        probs = logits.float().softmax(-1)
        chosen = probs.topk(2, dim=-1).indices  # (N, 2)
        f = torch.stack([(chosen == e).sum() for e in range(4)]).float() / chosen.numel()
        balance = balance + 4 * (f * probs.mean(0)).sum()
    expected = torch.autograd.grad(ce + coef * balance, list(model.parameters()))
    ce_only = torch.autograd.grad(model(idx, targets)[1], list(model.parameters()))

    before = [p.detach().clone() for p in model.parameters()]
    update = adamw_update(
        model, torch.optim.SGD(model.parameters(), lr=1.0), lambda b: model(*b), grad_clip=0.0
    )
    _, reported = update((idx, targets))
    assert reported.item() == pytest.approx(ce.item())  # the task's loss: metrics stay the cross-entropy
    names = [n for n, _ in model.named_parameters()]
    for name, b, p, g, g_ce in zip(names, before, model.parameters(), expected, ce_only):
        torch.testing.assert_close(b - p.detach(), g, atol=1e-6, rtol=1e-5)
        if name.endswith("router.weight"):  # the balance term is what moves the router here
            assert (g - g_ce).abs().max() > 1e-3, name


def least_used_expert(clf, tokenizer) -> float:
    """The smallest fraction of tokens any expert of any layer receives on unseen task text."""
    stream = tokenizer.encode(" ".join(x for _, x in synthetic_rows(60, seed=5)))
    idx = torch.tensor(stream[: len(stream) // 32 * 32]).view(-1, 32)  # no padding
    clf.predict_proba(idx, torch.full((len(idx),), 32))
    routed = tokens_per_expert(clf).float()
    return float((routed / routed.sum(dim=-1, keepdim=True)).min())


def moe_classify(tmp_path, task_file, task_tokenizer, moe_aux_loss: float):
    """A classify fine-tune (all weights, 3 epochs) of a random 4-expert top-1 model."""
    base = base_run(
        tmp_path / "base", task_tokenizer, mlp="moe", n_experts=4, top_k=1, moe_aux_loss=moe_aux_loss
    )
    classify(base, task_file, tmp_path / "clf", epochs=3)
    records = [json.loads(line) for line in (tmp_path / "clf" / "metrics.jsonl").read_text().splitlines()]
    return records, load_classifier(tmp_path / "clf").model


@pytest.mark.slow
def test_a_moe_classify_fine_tune_logs_its_routers_and_keeps_every_expert_used(
    tmp_path, task_file, task_tokenizer
):
    records, clf = moe_classify(tmp_path, task_file, task_tokenizer, moe_aux_loss=1.0)
    assert len(records) == 3
    for record in records:  # coefficient 1 times 2 layers times a balance loss in [1, E]
        assert 2 * 0.999 <= record["moe_aux_loss"] < 2 * 4
        assert [len(layer) for layer in record["expert_fraction"]] == [4, 4]
        assert min(min(layer) for layer in record["expert_fraction"]) >= 0.05
    assert least_used_expert(clf, task_tokenizer) >= 0.05


@pytest.mark.slow
def test_without_the_balance_loss_the_same_fine_tune_starves_an_expert(tmp_path, task_file, task_tokenizer):
    """The contrast that gives the test above its teeth: the same fine-tune with moe_aux_loss 0."""
    records, clf = moe_classify(tmp_path, task_file, task_tokenizer, moe_aux_loss=0.0)
    assert all(record["moe_aux_loss"] == 0.0 for record in records)
    assert least_used_expert(clf, task_tokenizer) < 0.05


# ------------------------------------------------------------------ LoRA / fine-tuning


@pytest.mark.slow  # over 0.4 s: keeps `-m "not slow"` under a minute
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "local-rope"])
def test_a_lora_classify_fine_tune_of_every_block_variant_trains_and_its_adapter_loads(
    tmp_path, variant, task_file, task_tokenizer
):
    base = base_run(tmp_path / "base", task_tokenizer, **VARIANTS[variant])
    result = classify(base, task_file, tmp_path / "clf", lora=LoraOptions(rank=2), epochs=3, lr=1e-2)
    losses = [r["train"]["loss"] for r in result.history]
    assert losses[-1] < losses[0], losses
    merged = load_classifier(tmp_path / "clf")  # LoRA merged into the base weights
    gpt, _ = load_model(base)
    unmerged = load_adapter(GPTClassifier(gpt, 2), tmp_path / "clf" / ADAPTER_FILE).eval()
    adapters = lora_modules(unmerged)
    if variant == "moe":
        assert any(".experts." in name for name in adapters)
    assert all(m.lora_B.abs().max() > 0 for m in adapters.values())  # every adapter trained
    idx, lengths = torch.randint(3, 50, (4, 12)), torch.tensor([12, 5, 1, 9])
    torch.testing.assert_close(
        merged.model.predict_proba(idx, lengths), unmerged.predict_proba(idx, lengths), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("arch", RECURRENT)
def test_a_recurrent_model_fine_tunes_its_last_cells_and_refuses_lora_clearly(
    tmp_path, arch, task_file, task_tokenizer
):
    base = base_run(tmp_path / "base", task_tokenizer, arch=arch)
    with pytest.raises(
        GptlabError,
        match=f"LoRA adapts a transformer's Linear layers; this model is a recurrent {arch.upper()}",
    ):
        classify(base, task_file, tmp_path / "lora", lora=LoraOptions(rank=2))
    result = classify(base, task_file, tmp_path / "clf", trainable="last:1", epochs=3, lr=1e-2)
    losses = [r["train"]["loss"] for r in result.history]
    assert losses[-1] < losses[0], losses
    before, _ = load_model(base)
    after = load_classifier(tmp_path / "clf").model.gpt
    for name, p in before.rnn.named_parameters():  # only the last cell (layer 1) trained
        moved = not torch.equal(p, dict(after.rnn.named_parameters())[name])
        assert moved == name.endswith("_l1"), name


def test_dp_fine_tuning_refuses_what_per_example_gradients_cannot_run(tmp_path, task_file, task_tokenizer):
    for name, fields, message in [
        ("moe", dict(mlp="moe", n_experts=2), "cannot route tokens: use mlp 'dense'"),
        ("gru", dict(arch="gru"), "does not run through torch's GRU"),
    ]:
        base = base_run(tmp_path / name, task_tokenizer, **fields)
        with pytest.raises(GptlabError, match=message):
            classify(base, task_file, tmp_path / f"{name}-dp", dp_epsilon=8.0)


@pytest.mark.slow
def test_an_lstm_classifier_fine_tunes_under_dp_sgd(tmp_path, task_file, task_tokenizer):
    base = base_run(tmp_path / "lstm", task_tokenizer, arch="lstm")  # the LSTM's vmap rule works
    result = classify(base, task_file, tmp_path / "lstm-dp", dp_epsilon=8.0, epochs=1, prompting_shots=(0,))
    assert result.summary["privacy"]["epsilon"] <= 8.0 and result.summary["prompting"]["0-shot"]


# ------------------------------------------------------------------ GPT-2 export


@pytest.mark.parametrize(
    "variant, field",
    [
        ("post-norm", "norm_position"),
        ("local", "attention"),
        ("moe", "mlp"),
        ("lstm", "arch"),
        ("gru", "arch"),
    ],
)
def test_gpt2_export_of_a_variant_run_refuses_clearly_and_writes_nothing(
    tmp_path, variant, field, char_tokenizer, capsys
):
    run = save_model(tmp_path / "run", small(**EVERY[variant]), char_tokenizer)
    out = tmp_path / "hf"
    assert main(["export", "--model", str(run), "--format", "hf", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        f"cannot export to GPT-2 format: {field} is {EVERY[variant][field]!r}" in err
        and "Traceback" not in err
    )
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------ audits and analyses


@pytest.mark.slow  # over 0.4 s: keeps `-m "not slow"` under a minute
@pytest.mark.parametrize("variant", EVERY)
def test_the_privacy_audits_run_on_every_variant(variant, char_tokenizer):
    model = small(**EVERY[variant])
    text = "First Citizen: Before we proceed any further, hear me speak. All: Speak, speak."
    ids = char_tokenizer.encode(text)
    train_seqs, heldout = (
        [ids[i : i + 12] for i in range(0, 36, 12)],
        [ids[i : i + 12] for i in range(36, 72, 12)],
    )
    memo = audit_memorization(
        model,
        char_tokenizer,
        train_sequences=train_seqs,
        heldout_sequences=heldout,
        prefix_len=6,
        suffix_len=6,
        n_boot=20,
    )
    members = ["Before we proceed", "hear me speak", "All: Speak", "any further"]
    nonmembers = ["You are all resolved", "rather to die", "than to famish", "Resolved. resolved."]
    member = audit_membership(
        model, char_tokenizer, members, nonmembers, folds=2, classifier=False, n_boot=20
    )
    for result in (memo, member):
        assert result.findings and all(math.isfinite(f.value) for f in result.findings if f.value is not None)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_attention_analyses_run_on_every_block_variant(variant):
    model = small(**VARIANTS[variant])
    attns = attention_weights(model, [1, 2, 3, 4, 5, 6, 7, 8])
    assert len(attns) == 2 and all(torch.allclose(a.sum(-1), torch.ones(())) for a in attns)
    if "window" in VARIANTS[variant]:  # no weight beyond the window
        w = VARIANTS[variant]["window"]
        assert all(float(a[..., 7, : 8 - w].abs().max()) == 0 for a in attns)


@pytest.mark.parametrize("arch", RECURRENT)
@pytest.mark.parametrize(
    "analysis",
    [
        lambda m: attention_weights(m, [1, 2, 3]),
        lambda m: noise_robustness(m, [1, 2, 3], [0.1]),
        lambda m: logit_lens(m, [1, 2, 3]),
        lambda m: sentence_embeddings(m, CharTokenizer.train("abc "), ["ab c"], layer=1),
    ],
    ids=["attention", "noise", "lens", "inner-layer-embeddings"],
)
def test_what_needs_attention_refuses_a_recurrent_model_clearly(arch, analysis):
    with pytest.raises(GptlabError, match=f"needs a transformer .*this model is a recurrent {arch.upper()}"):
        analysis(small(**RECURRENT[arch]))


@pytest.mark.parametrize("arch", RECURRENT)
def test_last_layer_sentence_embeddings_of_a_recurrent_model_are_its_mean_outputs(arch):
    model = small(**RECURRENT[arch])
    tok = CharTokenizer.train("abc ")
    (vector,) = sentence_embeddings(model, tok, ["ab c"])
    with torch.no_grad():
        out, _ = model.rnn(model.transformer.wte(torch.tensor([tok.encode("ab c")])))
    torch.testing.assert_close(vector, out[0].mean(0))


@pytest.mark.slow
@pytest.mark.parametrize("variant, lora", [("moe", 2), ("lstm", 0)])
def test_an_instruct_fine_tune_of_a_variant_trains_saves_and_logs_its_routers(tmp_path, variant, lora):
    tokenizer = CharTokenizer.train(string.ascii_letters + string.digits + " .,:#\n", special_tokens=[EOT])
    rows = [{"instruction": f"say {w}", "input": "", "output": w} for w in ["yes", "no", "maybe"] * 8]
    (tmp_path / "data.json").write_text(json.dumps(rows))
    base = base_run(tmp_path / "base", tokenizer, **EVERY[variant])
    options = InstructOptions(
        model=str(base), data=str(tmp_path / "data.json"), out=str(tmp_path / "ft"), epochs=2, lr=3e-3,
        lora=LoraOptions(rank=lora), val_fraction=0.2, test_fraction=0.2, max_new_tokens=4, compare_base=False,
        device="cpu", progress=False,
    )  # fmt: skip
    result = finetune_instruct(options)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert all(("expert_fraction" in r) == (variant == "moe") for r in result.history)
    tuned, _ = load_model(tmp_path / "ft")
    assert tuned.config == load_model(base)[0].config
    assert (tmp_path / "ft" / "adapter.safetensors").is_file() == bool(lora)
