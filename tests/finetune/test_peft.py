"""The parameter-efficient family (gptlab.finetune.peft*): parity with peft, hand-computed
adapters, no-op initialisation, which parameters train, adapter files, KV-cache decoding, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from gptlab.errors import GptlabError
from gptlab.finetune.common import LoraOptions
from gptlab.finetune.peft import (
    METHODS,
    PeftOptions,
    add_peft,
    load_peft,
    merge_peft,
    peft_state_dict,
    resolve_peft,
    save_peft,
)
from gptlab.finetune.peft_adapter import apply_adapters
from gptlab.finetune.peft_ia3 import apply_ia3, ia3_modules
from gptlab.finetune.peft_prefix import apply_prefix
from gptlab.finetune.peft_prompt import apply_prompt
from gptlab.model import GPT, GPTConfig
from gptlab.model.heads import GPTClassifier
from gptlab.model.kv_cache import KVCache

VOCAB, C, N_LAYER, P = 61, 32, 2, 3
SETTINGS = {
    "lora": {"rank": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["attn.c_attn", "mlp.c_fc"]},
    "prefix": {"tokens": P, "projection": 0, "seed": 0},
    "prompt": {"tokens": P, "seed": 0},
    "adapter": {"kind": "houlsby", "reduction": 4},
    "ia3": {"targets": ["attn.c_attn", "mlp.c_proj"], "feedforward": ["mlp.c_proj"]},
}


def make_gpt(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=VOCAB, block_size=16, n_layer=N_LAYER, n_head=4, n_embd=C, dropout=0.0)
    return GPT(GPTConfig(**{**cfg, **overrides})).eval()


def tokens(B: int = 2, T: int = 8, seed: int = 3) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


def perturb(model, method: str, seed: int = 1) -> None:
    """Move the method's parameters off their (often no-op) start so that they show in outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if METHODS[method].owns(name):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


# --- parity with peft ---------------------------------------------------------------------------


def hf_pair():
    transformers = pytest.importorskip("transformers")
    from gptlab.model.hf import config_from_hf, gpt_from_hf_state

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(
        n_layer=N_LAYER, n_head=4, n_embd=C, vocab_size=VOCAB, n_positions=16,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    return hf, gpt_from_hf_state(hf.state_dict(), config_from_hf(hf_config.to_dict())).eval()


def check_outputs_and_gradients(ours, theirs, pairs, T: int):
    """Same logits for the real tokens, and the same gradients of a cross-entropy for every pair
    (our parameter, peft's parameter, how to view peft's as ours)."""
    idx, targets = tokens(B=3, T=T, seed=7), tokens(B=3, T=T, seed=8)
    our_logits, _ = ours(idx)
    their_logits = theirs(input_ids=idx).logits[:, -T:]  # prompt tuning returns the prompt's positions too
    torch.testing.assert_close(our_logits, their_logits, atol=1e-5, rtol=0)
    F.cross_entropy(our_logits.flatten(0, 1), targets.flatten()).backward()
    F.cross_entropy(their_logits.flatten(0, 1), targets.flatten()).backward()
    for ours_p, theirs_p, view in pairs:
        assert ours_p.grad is not None and ours_p.grad.abs().max() > 0
        torch.testing.assert_close(ours_p.grad, view(theirs_p.grad), atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("projection", [0, 8])
def test_prefix_tuning_equals_peft(projection):
    peft = pytest.importorskip("peft")
    hf, ours = hf_pair()
    config = peft.PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=P, prefix_projection=bool(projection),
        encoder_hidden_size=projection or C,
    )  # fmt: skip
    theirs = peft.get_peft_model(hf, config).eval()
    apply_prefix(ours, tokens=P, projection=projection)
    encoder = theirs.prompt_encoder["default"]
    pairs = []
    for name, p in ours.virtual_tokens.named_parameters():  # embedding.weight, transform.0.weight, ...
        theirs_p = encoder.get_parameter(name)
        with torch.no_grad():
            p.copy_(theirs_p)
        pairs.append((p, theirs_p, lambda g: g))
    assert len(pairs) == (5 if projection else 1)
    check_outputs_and_gradients(ours, theirs, pairs, T=10)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_prompt_tuning_equals_peft():
    peft = pytest.importorskip("peft")
    hf, ours = hf_pair()
    theirs = peft.get_peft_model(
        hf, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P)
    ).eval()
    apply_prompt(ours, tokens=P)
    theirs_p = theirs.prompt_encoder["default"].embedding.weight
    with torch.no_grad():
        ours.virtual_tokens.embedding.weight.copy_(theirs_p)
    check_outputs_and_gradients(
        ours, theirs, [(ours.virtual_tokens.embedding.weight, theirs_p, lambda g: g)], T=10
    )


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_ia3_equals_peft_and_merges_like_it():
    peft = pytest.importorskip("peft")
    from gptlab.model.hf import gpt_from_hf_state

    hf, ours = hf_pair()
    theirs = peft.get_peft_model(hf, peft.IA3Config(task_type="CAUSAL_LM")).eval()  # GPT-2 defaults
    apply_ia3(ours)
    inner = theirs.base_model.model
    g = torch.Generator().manual_seed(4)
    pairs = []
    for name, module in ia3_modules(ours).items():
        theirs_p = inner.get_submodule(name).ia3_l["default"]  # (out, 1) or (1, in)
        with torch.no_grad():
            theirs_p.copy_(1 + 0.2 * torch.randn(theirs_p.shape, generator=g))
            module.ia3_l.copy_(theirs_p.flatten())
        pairs.append((module.ia3_l, theirs_p, lambda grad: grad.flatten()))
    assert len(pairs) == 2 * N_LAYER
    check_outputs_and_gradients(ours, theirs, pairs, T=10)

    merged_hf = theirs.merge_and_unload()
    merge_peft(ours, "ia3")
    reference = gpt_from_hf_state(merged_hf.state_dict(), ours.config)
    for k, v in reference.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[k], v, atol=1e-6, rtol=0, msg=k)


# --- bottleneck adapters: the formulas by hand ------------------------------------------------------
# (the `adapters` library pins transformers 4.x, which this project's transformers 5 excludes)


def bottleneck(adapter, h, act):
    return h + F.linear(
        act(F.linear(h, adapter.down.weight, adapter.down.bias)), adapter.up.weight, adapter.up.bias
    )


@pytest.mark.parametrize("kind", ["houlsby", "pfeiffer"])
def test_bottleneck_adapters_follow_the_houlsby_and_pfeiffer_formulas(kind):
    gpt = make_gpt()
    apply_adapters(gpt, kind, reduction=4)
    perturb(gpt, "adapter")
    idx = tokens()
    x = gpt.transformer.wte(idx) + gpt.transformer.wpe(torch.arange(idx.size(1)))
    for block in gpt.transformer.h:
        attn_out, _ = type(block.attn).forward(block.attn, block.ln_1(x))  # the class's forward: no hook
        if kind == "houlsby":
            assert block.adapter_attn.down.out_features == C // 4
            x = x + bottleneck(block.adapter_attn, attn_out, F.silu)
        else:
            assert not hasattr(block, "adapter_attn")
            x = x + attn_out
        mlp_out = type(block.mlp).forward(block.mlp, block.ln_2(x))
        x = x + bottleneck(block.adapter_mlp, mlp_out, F.silu if kind == "houlsby" else F.relu)
    torch.testing.assert_close(gpt(idx)[0], gpt.unembed(x), atol=1e-5, rtol=0)


# --- every method -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lora", "adapter", "ia3"])
def test_a_new_adapter_leaves_the_outputs_unchanged(method):
    base = make_gpt()
    adapted = copy.deepcopy(base)
    add_peft(adapted, method, SETTINGS[method])
    idx = tokens()
    torch.testing.assert_close(adapted(idx)[0], base(idx)[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_only_the_methods_parameters_get_gradients(method):
    gpt = make_gpt()
    model = GPTClassifier(gpt, num_classes=2)
    add_peft(model, method, SETTINGS[method])
    perturb(model, method)
    idx = tokens()
    logits = model.head(model.features(idx, torch.tensor([8, 5])))
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().max() > 0}
    owned = {n for n, _ in model.named_parameters() if METHODS[method].owns(n)}
    assert owned and with_grad == owned | {"head.weight", "head.bias"}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == with_grad


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_adapter_file_round_trip_holds_only_the_trained_parameters(method, tmp_path):
    model = GPTClassifier(make_gpt(), num_classes=3)
    add_peft(model, method, SETTINGS[method])
    perturb(model, method)
    path = save_peft(model, tmp_path / "adapter.safetensors", method, SETTINGS[method])
    saved = set(peft_state_dict(model, method))
    assert saved == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(METHODS[method].owns(n) or n.startswith("head.") for n in saved)

    fresh = GPTClassifier(make_gpt(), num_classes=3)
    assert load_peft(fresh, path) == method
    idx, lengths = tokens(), torch.tensor([8, 6])
    expected = model.features(idx, lengths)
    torch.testing.assert_close(fresh.features(idx, lengths), expected, atol=1e-6, rtol=0)
    if METHODS[method].merge is not None:  # merged: a plain GPT computing the same
        merge_peft(fresh, method)
        assert set(fresh.gpt.state_dict()) == set(make_gpt().state_dict())
        torch.testing.assert_close(fresh.features(idx, lengths), expected, atol=1e-5, rtol=0)
    else:
        with pytest.raises(GptlabError, match="cannot be merged"):
            merge_peft(fresh, method)
    copied = copy.deepcopy(model)  # instruct copies the model to save it: hooks must follow the copy
    torch.testing.assert_close(copied.features(idx, lengths), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_virtual_tokens_decode_with_the_kv_cache_as_without(method):
    gpt = make_gpt()
    add_peft(gpt, method, SETTINGS[method])
    perturb(gpt, method)
    idx = tokens(B=2, T=7)
    full, _ = gpt(idx)
    cache = KVCache.for_model(gpt, batch_size=2)
    first, _ = gpt(idx[:, :4], kv_cache=cache)
    rest = [gpt(idx[:, t : t + 1], kv_cache=cache)[0] for t in range(4, 7)]
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), full, atol=1e-5, rtol=0)
    padded = KVCache.for_model(gpt, batch_size=2, pad=torch.tensor([0, 2]))
    with pytest.raises(GptlabError, match="left-padded"):
        gpt(idx, kv_cache=padded)


def test_virtual_tokens_take_room_in_the_context():
    gpt = make_gpt()
    apply_prompt(gpt, tokens=P)
    gpt(tokens(T=16 - P))
    with pytest.raises(GptlabError, match=f"at most {16 - P}"):
        gpt(tokens(T=16 - P + 1))
    with pytest.raises(GptlabError, match="full attention"):
        apply_prefix(make_gpt(attention="local", window=4), tokens=2)


def test_options_choose_the_method_and_refuse_contradictions():
    assert resolve_peft(PeftOptions(), LoraOptions()) == (None, None)
    method, settings = resolve_peft(PeftOptions(), LoraOptions(rank=4))
    assert method == "lora" and settings["rank"] == 4
    assert resolve_peft(PeftOptions(method="lora"), LoraOptions())[1]["rank"] == 8
    assert (
        resolve_peft(PeftOptions(method="adapter", adapter="pfeiffer"), LoraOptions())[1]["kind"]
        == "pfeiffer"
    )
    with pytest.raises(GptlabError, match="does not apply to --peft prefix"):
        resolve_peft(PeftOptions(method="prefix"), LoraOptions(rank=4))
    with pytest.raises(GptlabError, match="unknown parameter-efficient method 'bitfit'"):
        resolve_peft(PeftOptions(method="bitfit"), LoraOptions())


def test_an_adapter_for_another_model_or_no_adapter_is_refused(tmp_path):
    model = make_gpt()
    add_peft(model, "adapter", SETTINGS["adapter"])
    path = save_peft(model, tmp_path / "a.safetensors", "adapter", SETTINGS["adapter"])
    with pytest.raises(GptlabError, match="different model: n_embd"):
        load_peft(make_gpt(n_embd=16, n_head=2), path)
    from gptlab.io import save_safetensors

    plain = save_safetensors({"x": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(GptlabError, match="not a gptlab adapter"):
        load_peft(make_gpt(), plain)
    with pytest.raises(GptlabError, match="apply them once"):
        add_peft(model, "adapter", SETTINGS["adapter"])
