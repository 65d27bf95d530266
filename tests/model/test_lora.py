"""LoRA: init, freezing, parameter counts, merge/unmerge, adapter files, and parity with peft."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.errors import GptlabError
from gptlab.io import save_safetensors
from gptlab.model import GPT, GPTConfig
from gptlab.model.lora import (
    LoRALinear,
    apply_lora,
    count_trainable,
    load_adapter,
    lora_modules,
    lora_state_dict,
    merge_lora,
    remove_lora,
    save_adapter,
    unmerge_lora,
)

VOCAB, C, N_LAYER = 61, 32, 2


def make_gpt(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=VOCAB, block_size=16, n_layer=N_LAYER, n_head=4, n_embd=C, dropout=0.0)
    return GPT(GPTConfig(**{**cfg, **overrides})).eval()


def randomize_b(model: nn.Module, seed: int = 1) -> None:
    """B starts at zero (the adapter is a no-op); give it values so the update shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora_modules(model).values():
            m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * 0.1)


def tokens(B: int = 2, T: int = 12, seed: int = 3) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


# --- the layer ---------------------------------------------------------------------------------


def test_new_adapter_is_a_no_op_and_a_follows_linear_default_init():
    torch.manual_seed(0)
    base = nn.Linear(40, 24)
    x = torch.randn(3, 5, 40)
    expected = base(x)
    lora = LoRALinear(base, rank=4, alpha=8)
    assert lora.weight is base.weight and lora.bias is base.bias  # same Parameters, same names
    assert torch.equal(lora(x), expected)  # B = 0
    assert torch.count_nonzero(lora.lora_B) == 0
    bound = 1 / math.sqrt(40)  # kaiming_uniform_(a=sqrt(5)) on fan_in 40, nn.Linear's default
    assert lora.lora_A.abs().max() <= bound and lora.lora_A.std() > bound / 3
    assert lora.scaling == 2.0


def test_forward_is_w_plus_scaled_ba():
    torch.manual_seed(0)
    lora = LoRALinear(nn.Linear(8, 6), rank=2, alpha=3)
    randomize_b(nn.Sequential(lora))
    x = torch.randn(4, 8)
    w = lora.weight + (3 / 2) * lora.lora_B @ lora.lora_A
    torch.testing.assert_close(lora(x), x @ w.t() + lora.bias, atol=1e-6, rtol=0)


def test_dropout_acts_on_the_lora_branch_only():
    torch.manual_seed(0)
    lora = LoRALinear(nn.Linear(16, 16), rank=4, alpha=4, dropout=0.5).train()
    x = torch.randn(10, 16)
    base_out = F.linear(x, lora.weight, lora.bias)
    assert torch.equal(lora(x), base_out)  # B = 0: dropout cannot touch the base path
    randomize_b(nn.Sequential(lora))
    assert not torch.allclose(lora(x), lora.eval()(x))  # with B != 0, dropout changes the output


@pytest.mark.parametrize("rank, alpha, dropout", [(0, 1, 0.0), (2, 0, 0.0), (2, 1, 1.0), (1.5, 1, 0.0)])
def test_bad_arguments_are_refused(rank, alpha, dropout):
    with pytest.raises(GptlabError):
        LoRALinear(nn.Linear(4, 4), rank, alpha, dropout)


# --- applying to a GPT ---------------------------------------------------------------------------


def test_apply_lora_freezes_base_and_counts_trainable_parameters():
    model = make_gpt()
    total_before = count_trainable(model).total
    r = 4
    apply_lora(model, rank=r, alpha=8)
    # per block: c_attn C->3C, attn c_proj C->C, c_fc C->4C, mlp c_proj 4C->C; each adds r*(in+out)
    per_block = r * ((C + 3 * C) + (C + C) + (C + 4 * C) + (4 * C + C))
    count = count_trainable(model)
    assert count.trainable == N_LAYER * per_block
    assert count.total == total_before + N_LAYER * per_block
    assert count.percent == pytest.approx(100 * count.trainable / count.total)
    assert "%" in str(count)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".lora_A", ".lora_B")) for n in trainable)
    assert len(lora_modules(model)) == 4 * N_LAYER


def test_targets_choose_the_modules_and_unknown_targets_fail():
    model = apply_lora(make_gpt(), rank=2, targets=("attn.c_attn", "mlp.c_fc"))
    assert sorted(lora_modules(model)) == sorted(
        f"transformer.h.{i}.{t}" for i in range(N_LAYER) for t in ("attn.c_attn", "mlp.c_fc")
    )
    with pytest.raises(GptlabError, match="already has LoRA"):
        apply_lora(model, rank=2)
    with pytest.raises(GptlabError, match="attn.q_proj"):
        apply_lora(make_gpt(), rank=2, targets=("attn.q_proj",))
    with pytest.raises(GptlabError, match="not a Linear"):
        apply_lora(make_gpt(), rank=2, targets=("ln_1",))
    with pytest.raises(GptlabError, match="tied"):  # lm_head is the token embedding: merging would alter it
        apply_lora(make_gpt(), rank=2, targets=("lm_head",))
    untied = apply_lora(make_gpt(tie_weights=False), rank=2, targets=("lm_head",))
    assert list(lora_modules(untied)) == ["lm_head"]


def test_base_checkpoint_keys_are_unchanged_by_lora():
    model = make_gpt()
    base_keys = set(model.state_dict())
    apply_lora(model, rank=2)
    keys = set(model.state_dict())
    assert base_keys <= keys
    assert all(k.endswith((".lora_A", ".lora_B")) for k in keys - base_keys)


def test_merge_unmerge_give_the_same_outputs_and_restore_the_weights():
    model = apply_lora(make_gpt(), rank=4, alpha=8)
    randomize_b(model)
    idx = tokens()
    base_weights = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        unmerged = model(idx)[0]
        merge_lora(model)
        assert all(m.merged for m in lora_modules(model).values())
        merged = model(idx)[0]
        assert not torch.allclose(
            model.transformer.h[0].attn.c_attn.weight, base_weights["transformer.h.0.attn.c_attn.weight"]
        )
        unmerge_lora(model)
        again = model(idx)[0]
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)
    torch.testing.assert_close(again, unmerged, atol=1e-6, rtol=0)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, base_weights[k], atol=1e-6, rtol=0)


def test_remove_lora_gives_a_plain_gpt_with_the_update_merged():
    model = apply_lora(make_gpt(), rank=4, alpha=8)
    randomize_b(model)
    idx = tokens()
    with torch.no_grad():
        expected = model(idx)[0]
    remove_lora(model)
    assert not lora_modules(model)
    plain = GPT.from_state_dict(model.config, model.state_dict())  # the base architecture's keys
    with torch.no_grad():
        torch.testing.assert_close(plain(idx)[0], expected, atol=1e-5, rtol=0)


# --- adapter files ----------------------------------------------------------------------------


def test_adapter_round_trip_is_small_and_restores_the_outputs(tmp_path):
    model = apply_lora(make_gpt(seed=0), rank=4, alpha=8, targets=("attn.c_attn", "mlp.c_proj"))
    randomize_b(model)
    idx = tokens()
    with torch.no_grad():
        expected = model(idx)[0]
    path = save_adapter(model, tmp_path / "adapter.safetensors")
    n_lora = count_trainable(model).trainable
    assert path.stat().st_size < 4 * n_lora + 4096  # float32 A and B plus a small header
    assert set(lora_state_dict(model)) == {
        f"transformer.h.{i}.{t}.lora_{ab}"
        for i in range(N_LAYER)
        for t in ("attn.c_attn", "mlp.c_proj")
        for ab in "AB"
    }

    fresh = make_gpt(seed=0)  # the same base weights, no adapter yet: load_adapter applies it
    load_adapter(fresh, path)
    assert sorted(lora_modules(fresh)) == sorted(lora_modules(model))
    with torch.no_grad():
        torch.testing.assert_close(fresh(idx)[0], expected, atol=0, rtol=0)
    assert count_trainable(fresh) == count_trainable(model)


def test_adapter_keeps_other_trainable_parameters(tmp_path):
    model = nn.Module()
    model.gpt = apply_lora(make_gpt(), rank=2, targets=("mlp.c_fc",))
    model.head = nn.Linear(C, 3)  # added after apply_lora: trainable
    path = save_adapter(model, tmp_path / "a.safetensors")
    other = nn.Module()
    other.gpt, other.head = make_gpt(), nn.Linear(C, 3)
    load_adapter(other, path)
    assert torch.equal(other.head.weight, model.head.weight)
    assert other.head.weight.requires_grad and not other.gpt.transformer.wte.weight.requires_grad


def test_adapter_for_a_different_model_is_refused(tmp_path):
    path = save_adapter(apply_lora(make_gpt(), rank=2), tmp_path / "a.safetensors")
    with pytest.raises(GptlabError, match=r"different model.*n_layer"):
        load_adapter(make_gpt(n_layer=3), path)
    with pytest.raises(GptlabError, match=r"different model.*n_embd"):
        load_adapter(make_gpt(n_embd=48), path)
    # without a config to compare, tensor names and shapes still catch it
    wrapped = nn.Module()
    wrapped.inner = make_gpt()
    with pytest.raises(GptlabError, match="does not fit the model"):
        load_adapter(wrapped, path)
    other_rank = apply_lora(make_gpt(), rank=3)
    with pytest.raises(GptlabError, match="shape"):
        load_adapter(other_rank, path)
    merged = merge_lora(apply_lora(make_gpt(), rank=2))
    with pytest.raises(GptlabError, match="unmerge"):
        load_adapter(merged, path)


def test_a_plain_weights_file_is_not_an_adapter(tmp_path):
    model = make_gpt()
    weights = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied to wte
    save_safetensors(weights, tmp_path / "model.safetensors")
    with pytest.raises(GptlabError, match="not a gptlab LoRA adapter"):
        load_adapter(make_gpt(), tmp_path / "model.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(GptlabError, match="junk.safetensors"):
        load_adapter(make_gpt(), tmp_path / "junk.safetensors")
    with pytest.raises(GptlabError, match="no LoRA adapters"):
        save_adapter(model, tmp_path / "x.safetensors")


# --- parity with peft ---------------------------------------------------------------------------

PEFT_TARGETS = {  # our targets -> peft's target_modules for GPT-2 (its names are module names too)
    "all": (("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"), ["c_attn", "c_proj", "c_fc"]),
    "qkv": (("attn.c_attn",), ["c_attn"]),
}


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # inside peft
@pytest.mark.parametrize("which", sorted(PEFT_TARGETS))
def test_parity_with_peft_outputs_and_gradients(which):
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    from gptlab.model.hf import config_from_hf, gpt_from_hf_state

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(
        n_layer=2, n_head=4, n_embd=C, vocab_size=VOCAB, n_positions=16,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    ours = gpt_from_hf_state(hf.state_dict(), config_from_hf(hf_config.to_dict())).eval()

    rank, alpha = 4, 12
    our_targets, peft_targets = PEFT_TARGETS[which]
    lora_config = peft.LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=peft_targets, fan_in_fan_out=True
    )
    theirs = peft.get_peft_model(hf, lora_config).eval()
    apply_lora(ours, rank=rank, alpha=alpha, targets=our_targets)

    # the same A and B in both (B random so that gradients reach A), copied from peft's modules
    g = torch.Generator().manual_seed(5)
    inner = theirs.base_model.model
    pairs = []
    for name, module in lora_modules(ours).items():
        peft_module = inner.get_submodule(name)
        peft_a, peft_b = peft_module.lora_A["default"].weight, peft_module.lora_B["default"].weight
        with torch.no_grad():
            peft_b.copy_(torch.randn(peft_b.shape, generator=g) * 0.1)
            module.lora_A.copy_(peft_a)  # peft: Linear(in, r) weight (r, in) = our A
            module.lora_B.copy_(peft_b)  # peft: Linear(r, out) weight (out, r) = our B
        pairs.append((name, module, peft_a, peft_b))
    assert len(pairs) == (4 if which == "all" else 1) * 2
    assert count_trainable(ours).trainable == sum(p.numel() for p in theirs.parameters() if p.requires_grad)

    idx, targets = tokens(B=3, T=10, seed=7), tokens(B=3, T=10, seed=8)
    our_logits, _ = ours(idx)
    their_logits = theirs(input_ids=idx).logits
    torch.testing.assert_close(our_logits, their_logits, atol=1e-5, rtol=0)
    F.cross_entropy(our_logits.flatten(0, 1), targets.flatten()).backward()
    F.cross_entropy(their_logits.flatten(0, 1), targets.flatten()).backward()
    for name, module, peft_a, peft_b in pairs:
        assert module.lora_A.grad.abs().max() > 0, name
        torch.testing.assert_close(module.lora_A.grad, peft_a.grad, atol=1e-5, rtol=0, msg=name)
        torch.testing.assert_close(module.lora_B.grad, peft_b.grad, atol=1e-5, rtol=0, msg=name)

    # merging agrees too: peft's merge_and_unload vs ours, compared as plain GPT-2 weights
    merged_hf = theirs.merge_and_unload()
    remove_lora(ours, merge=True)
    reference = gpt_from_hf_state(merged_hf.state_dict(), ours.config)
    for k, v in reference.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[k], v, atol=1e-6, rtol=0, msg=k)
