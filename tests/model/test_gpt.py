"""The GPT model: config validation, forward/loss, attention paths, KV cache, init, parameter count."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gptlab.errors import GptlabError
from gptlab.model import GPT, PRESETS, GPTConfig, KVCache

VOCAB = 97


def small_config(**overrides) -> GPTConfig:
    return GPTConfig(
        **{
            **dict(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=4, n_embd=32, dropout=0.0),
            **overrides,
        }
    )


def make_model(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(small_config(**overrides)).eval()


VARIANTS = [
    dict(),
    dict(pos_encoding="rope"),
    dict(pos_encoding="sinusoidal", norm="rmsnorm", activation="relu", bias=False, tie_weights=False),
]


# --- config ----------------------------------------------------------------------------------


def test_config_round_trips_through_dict():
    cfg = small_config(pos_encoding="rope", norm="rmsnorm", tie_weights=False)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "overrides, words",
    [
        (dict(n_embd=30, n_head=4), ["n_embd", "divisible", "n_head"]),
        (dict(pos_encoding="alibi"), ["pos_encoding", "learned", "rope"]),
        (dict(activation="swish"), ["activation", "gelu"]),
        (dict(norm="batchnorm"), ["norm", "rmsnorm"]),
        (dict(n_layer=0), ["n_layer"]),
        (dict(dropout=1.5), ["dropout"]),
        (dict(pos_encoding="rope", n_embd=12, n_head=4), ["rope", "even"]),
    ],
)
def test_config_rejects_bad_values_naming_the_field(overrides, words):
    with pytest.raises(GptlabError) as e:
        small_config(**overrides)
    for word in words:
        assert word in str(e.value)


def test_from_dict_names_an_unknown_key():
    with pytest.raises(GptlabError, match="n_layers"):
        GPTConfig.from_dict({**small_config().to_dict(), "n_layers": 3})


def test_presets_and_overrides():
    assert GPTConfig.preset("gpt2-355m").n_layer == 24
    tiny = GPTConfig.preset("tiny", vocab_size=300, pos_encoding="rope")
    assert (tiny.vocab_size, tiny.pos_encoding) == (300, "rope")
    with pytest.raises(GptlabError) as e:
        GPTConfig.preset("gpt5")
    assert all(name in str(e.value) for name in PRESETS)
    with pytest.raises(GptlabError, match="n_heads"):
        GPTConfig.preset("tiny", n_heads=2)


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.startswith("gpt2")])
def test_gpt2_presets_have_the_parameter_count_of_transformers_gpt2(preset):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPTConfig.preset(preset)
    with torch.device("meta"):
        ours = GPT(cfg)
        theirs = GPT2LMHeadModel(
            GPT2Config(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, n_positions=cfg.block_size)
        )
    assert ours.num_params() == theirs.num_parameters()


# --- forward and loss ------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", VARIANTS)
def test_forward_shapes_and_loss_is_mean_cross_entropy_ignoring_minus_100(overrides):
    model = make_model(**overrides)
    idx = torch.randint(0, VOCAB, (3, 10))
    targets = torch.randint(0, VOCAB, (3, 10))
    targets[0, :4] = -100
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 10, VOCAB)
    keep = targets != -100
    expected = F.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(loss, expected)
    assert model(idx)[1] is None


@pytest.mark.parametrize("overrides", VARIANTS)
def test_model_is_causal(overrides):
    model = make_model(**overrides)
    idx = torch.randint(0, VOCAB, (1, 12))
    changed = idx.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % VOCAB
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_sequence_longer_than_context_is_an_error():
    model = make_model()
    with pytest.raises(GptlabError, match="block_size"):
        model(torch.zeros(1, 33, dtype=torch.long))


@pytest.mark.parametrize("overrides", VARIANTS)
def test_explicit_attention_matches_fused_attention(overrides):
    model = make_model(**overrides)
    idx = torch.randint(0, VOCAB, (2, 16))
    fused, _ = model(idx)
    explicit, attns = model.forward_with_attention(idx)
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)
    assert len(attns) == 2
    for att in attns:
        assert att.shape == (2, 4, 16, 16)
        torch.testing.assert_close(att.sum(-1), torch.ones(2, 4, 16))
        assert torch.all(att.triu(diagonal=1) == 0)  # no query sees a later key


def test_hidden_states_feed_the_logit_lens():
    model = make_model()
    idx = torch.randint(0, VOCAB, (2, 8))
    hidden = model.hidden_states(idx)
    assert len(hidden) == model.config.n_layer + 1
    assert all(h.shape == (2, 8, 32) for h in hidden)
    torch.testing.assert_close(model.unembed(hidden[-1]), model(idx)[0])


# --- KV cache --------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", VARIANTS)
def test_kv_cache_prefill_then_single_steps_equals_full_forward(overrides):
    model = make_model(**overrides)
    idx = torch.randint(0, VOCAB, (2, 20))
    full, _ = model(idx)
    cache = KVCache.for_model(model, batch_size=2)
    pieces = [model(idx[:, :7], kv_cache=cache)[0]]
    for t in range(7, 20):
        pieces.append(model(idx[:, t : t + 1], kv_cache=cache)[0])
    assert cache.pos == 20
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides", VARIANTS)
def test_left_padded_row_in_cache_sees_what_it_sees_alone(overrides):
    model = make_model(**overrides)
    short = torch.randint(0, VOCAB, (1, 5))
    long = torch.randint(0, VOCAB, (1, 9))
    padded = torch.cat((torch.zeros(1, 4, dtype=torch.long), short), dim=1)
    cache = KVCache.for_model(model, batch_size=2, pad=torch.tensor([4, 0]))
    logits, _ = model(torch.cat((padded, long)), kv_cache=cache)
    step, _ = model(torch.tensor([[3], [3]]), kv_cache=cache)
    torch.testing.assert_close(logits[0, 4:], model(short)[0][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[1], model(long)[0][0], atol=1e-5, rtol=1e-5)
    alone, _ = model(torch.cat((short, torch.tensor([[3]])), dim=1))
    torch.testing.assert_close(step[0, 0], alone[0, -1], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(logits).all()


def test_full_cache_is_an_error():
    model = make_model()
    cache = KVCache.for_model(model, batch_size=1)
    model(torch.zeros(1, 32, dtype=torch.long), kv_cache=cache)
    with pytest.raises(GptlabError, match="KV cache full"):
        model(torch.zeros(1, 1, dtype=torch.long), kv_cache=cache)


# --- init, tying, parameters -----------------------------------------------------------------


def test_gpt2_init_scales_residual_projections():
    torch.manual_seed(0)
    model = GPT(small_config(n_layer=8, n_embd=128))
    blocks = model.transformer.h
    proj_std = torch.cat([b.mlp.c_proj.weight.flatten() for b in blocks]).std().item()
    fc_std = torch.cat([b.mlp.c_fc.weight.flatten() for b in blocks]).std().item()
    assert fc_std == pytest.approx(0.02, rel=0.05)
    assert proj_std == pytest.approx(0.02 / math.sqrt(2 * 8), rel=0.05)
    assert all(torch.all(b.attn.c_attn.bias == 0) for b in blocks)


def test_weight_tying_and_parameter_counts():
    tied, untied = make_model(), make_model(tie_weights=False)
    assert tied.lm_head.weight is tied.transformer.wte.weight
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    table = VOCAB * 32
    assert untied.num_params() - tied.num_params() == table
    assert tied.num_params(non_embedding=True) == tied.num_params() - 32 * 32  # only wpe leaves
    assert untied.num_params(non_embedding=True) == untied.num_params() - table - 32 * 32
    no_bias = make_model(bias=False)
    assert not any(name.endswith("bias") for name, _ in no_bias.named_parameters())


@pytest.mark.slow
@pytest.mark.parametrize("overrides", VARIANTS)
def test_overfits_one_tiny_batch_to_near_zero_loss(overrides):
    """A plain AdamW loop (no gptlab.train): the model must be able to memorise 4 x 16 tokens."""
    model = make_model(**overrides).train()
    batch = torch.randint(0, VOCAB, (4, 17), generator=torch.Generator().manual_seed(0))
    x, y = batch[:, :-1], batch[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(150):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if loss.item() < 0.01:
            break
    assert losses[0] == pytest.approx(math.log(VOCAB), rel=0.1)  # GPT-2 init starts near uniform
    assert losses[-1] < 0.01
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x)[0].argmax(-1), y)  # every next token of the batch memorised


def test_dropout_acts_at_the_embeddings_attention_and_residual_branches(monkeypatch):
    model = make_model(dropout=0.3)
    sites = {name for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and m.p == 0.3}
    assert "transformer.drop" in sites  # embeddings
    for i in range(2):  # the two residual branches of each block, and the explicit attention path
        assert {f"transformer.h.{i}.attn.resid_dropout", f"transformer.h.{i}.mlp.dropout"} <= sites
        assert f"transformer.h.{i}.attn.attn_dropout" in sites
    seen = []  # the fused path: dropout on the attention probabilities while training only
    real = F.scaled_dot_product_attention

    def spy(*args, dropout_p=0.0, **kwargs):
        seen.append(dropout_p)
        return real(*args, dropout_p=dropout_p, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    idx = torch.randint(0, VOCAB, (2, 8))
    model.train()(idx)
    model.eval()(idx)
    assert seen == [0.3, 0.3, 0.0, 0.0]
    torch.manual_seed(0)
    a = model.train()(idx)[0]
    b = model(idx)[0]
    assert not torch.allclose(a, b)  # training: stochastic
    model.eval()
    torch.testing.assert_close(model(idx)[0], model(idx)[0], rtol=0, atol=0)


@pytest.mark.parametrize(
    "field, value", [("dropout", "0.1"), ("norm_eps", None), ("rope_base", float("nan")), ("dropout", True)]
)
def test_config_rejects_non_numbers_with_a_clear_error(field, value):
    with pytest.raises(GptlabError, match=field):
        small_config(**{field: value})


def test_from_state_dict_refuses_integer_tensors_and_unifies_mixed_dtypes():
    model = make_model()
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    bad = dict(state, **{"transformer.wpe.weight": state["transformer.wpe.weight"].long()})
    with pytest.raises(GptlabError, match="'transformer.wpe.weight' has dtype torch.int64"):
        GPT.from_state_dict(model.config, bad)
    mixed = dict(state, **{"transformer.wpe.weight": state["transformer.wpe.weight"].half()})
    loaded = GPT.from_state_dict(model.config, mixed).eval()
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    idx = torch.randint(0, VOCAB, (1, 8))
    expected = GPT.from_state_dict(
        model.config, dict(state, **{"transformer.wpe.weight": mixed["transformer.wpe.weight"].float()})
    )
    torch.testing.assert_close(loaded(idx)[0], expected(idx)[0], rtol=0, atol=0)


def test_rope_matches_the_complex_rotation_and_depends_on_relative_position_only():
    """RoPE as RoFormer defines it: channel pair (i, i + D/2) is the complex number x1 + i x2,
    multiplied by e^(i pos theta_i) with theta_i = base^(-2i/D). Then <q_m, k_n> depends on m - n."""
    from gptlab.model.gpt import apply_rope, rope_angles

    torch.manual_seed(0)
    D, base = 16, 10000.0
    pos = torch.arange(12)
    x = torch.randn(2, 3, 12, D)  # (B, H, T, D)
    theta = base ** (-torch.arange(0, D, 2).float() / D)  # (D/2,)
    z = torch.complex(x[..., : D // 2], x[..., D // 2 :]) * torch.polar(
        torch.ones(12, D // 2), pos[:, None] * theta
    )
    expected = torch.cat((z.real, z.imag), dim=-1)
    torch.testing.assert_close(apply_rope(x, *rope_angles(pos, D, base)), expected, rtol=1e-5, atol=1e-5)

    q, k = torch.randn(D), torch.randn(D)

    def rotated(v, p):
        return apply_rope(v.view(1, 1, 1, D), *rope_angles(torch.tensor([p]), D, base)).flatten()

    assert torch.allclose(rotated(q, 7) @ rotated(k, 3), rotated(q, 14) @ rotated(k, 10), atol=1e-4)


def test_last_only_gives_the_last_positions_logits_and_refuses_a_loss():
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=50, n_layer=1, n_embd=32, n_head=2, block_size=16)).eval()
    x = torch.randint(0, 50, (3, 10))
    full, _ = model(x)
    last, _ = model(x, last_only=True)
    assert last.shape == (3, 1, 50)
    torch.testing.assert_close(last[:, 0], full[:, -1], rtol=1e-5, atol=1e-6)
    with pytest.raises(GptlabError, match="last_only"):
        model(x, x, last_only=True)
