"""Architecture variants (GPTConfig fields): post-norm blocks, sliding-window attention, mixture of experts."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from samples import SHAKESPEARE
from variant_models import EVERY, VARIANTS, small

from gptlab.beam import beam_search
from gptlab.config import load_config
from gptlab.data.shards import TokenDataset
from gptlab.errors import GptlabError
from gptlab.eval.scoring import score_choices, score_pairs
from gptlab.generate import GREEDY, Sampler, generate, generate_naive
from gptlab.model import GPT, GPTConfig, KVCache
from gptlab.model.gpt import MLP, CausalSelfAttention
from gptlab.model.hf import config_to_hf
from gptlab.model.lora import apply_lora, lora_modules, merge_lora
from gptlab.model.moe import MixtureOfExperts, aux_loss, load_balance_loss, tokens_per_expert
from gptlab.model.quantize import quantize_model
from gptlab.rundir import MODEL_JSON, load_model, save_model
from gptlab.train import read_metrics, train

# tiny models: one thread each is faster than two fighting over a shared machine
pytestmark = pytest.mark.usefixtures("one_thread")


def same_weights(dst: GPT, src: GPT) -> GPT:
    dst.load_state_dict(src.state_dict())
    return dst


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(norm_position="middle"), "norm_position must be one of pre, post"),
        (dict(attention="local"), "attention 'local' needs window"),
        (dict(attention="local", window=0), "needs window, a positive integer"),
        (dict(mlp="sparse"), "mlp must be one of dense, moe"),
        (dict(mlp="moe", n_experts=2, top_k=3), "top_k must be an integer in 1..n_experts (2)"),
        (dict(mlp="moe", n_experts=0), "n_experts must be an integer"),
        (dict(moe_aux_loss=-1.0), "moe_aux_loss must be a number >= 0"),
    ],
)
def test_bad_variant_fields_are_refused_naming_the_field(fields, message):
    with pytest.raises(GptlabError, match=re.escape(message)) as error:
        GPTConfig(**fields)
    assert str(error.value).startswith("model config: ")


def test_variant_fields_are_run_config_overrides():
    config = load_config(
        None, ['model.attention="local"', "model.window=8", 'model.mlp="moe"', "model.n_experts=4"]
    )
    built = config.model.build(vocab_size=65)
    assert (built.attention, built.window, built.mlp, built.n_experts) == ("local", 8, "moe", 4)


# ------------------------------------------------------------------ post-norm


def test_post_norm_blocks_output_a_normalised_residual_stream():
    """Post-norm: every block ends with LayerNorm (weight 1, bias 0 at init), so each position of
    each block's output has mean 0 and variance 1; pre-norm leaves the stream unnormalised."""
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=65, block_size=24, n_layer=3, n_head=2, n_embd=16, norm_position="post")
    idx = torch.randint(0, 65, (2, 10))
    for h in GPT(config).eval().hidden_states(idx)[1:]:
        torch.testing.assert_close(h.mean(-1), torch.zeros(2, 10), atol=1e-5, rtol=0)
        torch.testing.assert_close(h.var(-1, unbiased=False), torch.ones(2, 10), atol=1e-3, rtol=0)
    pre = same_weights(GPT(GPTConfig(**{**config.to_dict(), "norm_position": "pre"})), GPT(config)).eval()
    assert pre.hidden_states(idx)[-1].var(-1, unbiased=False).sub(1).abs().max() > 0.1


def test_post_norm_block_is_the_norm_of_each_residual_sum():
    model = small(norm_position="post", std=None)
    block, x = model.transformer.h[0], torch.randn(2, 6, 16)
    h = F.layer_norm(x + block.attn(x)[0], (16,), block.ln_1.weight, block.ln_1.bias)
    expected = F.layer_norm(h + block.mlp(h), (16,), block.ln_2.weight, block.ln_2.bias)
    torch.testing.assert_close(block(x)[0], expected)


# ------------------------------------------------------------------ local attention


@pytest.mark.parametrize("window", [10, 24, 100])
def test_local_attention_with_a_window_covering_the_sequence_equals_full_attention(window):
    full = small()
    local = same_weights(small(attention="local", window=window), full)
    idx = torch.randint(0, 65, (3, 10))
    torch.testing.assert_close(local(idx)[0], full(idx)[0], atol=0, rtol=0)


@pytest.mark.parametrize("window", [1, 3, 7])
def test_local_attention_equals_attention_with_an_explicit_banded_mask(window):
    """Reference: softmax(q k^T / sqrt(D)) v with scores of keys outside i-window+1..i set to -inf,
    the band written out position by position."""
    config = GPTConfig(
        vocab_size=37, block_size=24, n_layer=1, n_head=2, n_embd=16, attention="local", window=window
    )
    torch.manual_seed(1)
    attn = CausalSelfAttention(config).eval()
    x = torch.randn(2, 12, 16)
    q, k, v = attn.c_attn(x).split(16, dim=2)
    q, k, v = (t.view(2, 12, 2, 8).transpose(1, 2) for t in (q, k, v))
    band = torch.full((12, 12), float("-inf"))
    for i in range(12):
        for j in range(max(0, i - window + 1), i + 1):
            band[i, j] = 0.0
    weights = ((q @ k.transpose(-2, -1)) / math.sqrt(8) + band).softmax(-1)
    expected = attn.c_proj((weights @ v).transpose(1, 2).reshape(2, 12, 16))
    out, _ = attn(x)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    _, att = attn(x, need_weights=True)  # the explicit path gives the same weights
    torch.testing.assert_close(att, weights, atol=1e-6, rtol=1e-5)


def test_stacked_local_layers_see_window_minus_one_more_tokens_per_layer():
    """Receptive field: with window w and L layers, the logits at t depend on tokens
    t - L(w - 1) .. t only (a token at most that far back reaches t through L hops)."""
    model = small(attention="local", window=3)  # 2 layers: tokens t-4 .. t
    idx = torch.randint(0, 65, (1, 20))
    logits = model(idx)[0]
    for changed in (10, 11):
        other = idx.clone()
        other[0, changed] = (other[0, changed] + 1) % 65
        moved = (model(other)[0] - logits).abs().amax(dim=-1)[0]  # (T,) the largest change per position
        assert moved[:changed].max() == 0  # causal
        assert (moved[changed : changed + 5] > 0).all() and moved[changed + 5 :].max() == 0


@pytest.mark.parametrize("variant", EVERY)
def test_logits_through_the_kv_cache_equal_the_full_forward(variant):
    """Prefill 7 tokens, then one token at a time: every position's logits equal a forward over
    the whole sequence (for local attention, well past the window)."""
    model = small(**EVERY[variant])
    idx = torch.randint(0, 65, (2, 20))
    full, _ = model(idx)
    cache = KVCache.for_model(model, 2)
    steps = [model(idx[:, :7], kv_cache=cache)[0]]
    steps += [model(idx[:, t : t + 1], kv_cache=cache)[0] for t in range(7, 20)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_a_local_cache_keeps_only_the_window():
    model = small(attention="local", window=5)
    cache = KVCache.for_model(model, 2)
    assert cache.k.shape == (2, 2, 2, 4, 8)  # (n_layer, B, H, window - 1, D): not block_size slots
    model(torch.randint(0, 65, (2, 15)), kv_cache=cache)
    assert cache.pos == 15 and cache.filled == 4  # positions keep counting


@pytest.mark.parametrize("variant", EVERY)
@pytest.mark.parametrize("sampler", [GREEDY, Sampler(temperature=0.0, repetition_penalty=2.0)])
def test_cached_greedy_generation_equals_no_cache_decoding(variant, sampler):
    """Prompts of different lengths (left padding), 30 tokens: past the window and past
    block_size (24), where the context slides. Random models soon repeat one token under plain
    greedy decoding; the repetition penalty keeps the argmax moving, so the caches are exercised."""
    model = small(**EVERY[variant])
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11], [12]]
    cached = generate(model, prompts, 30, sampler)
    for prompt, row in zip(prompts, cached):
        naive = generate_naive(model, torch.tensor([prompt]), 30, sampler)[0].tolist()
        assert row == naive
        if sampler.repetition_penalty > 1:
            assert len(set(naive[len(prompt) :])) > 3  # not one token repeated: the check has teeth


@pytest.mark.parametrize("variant", ["local", "moe"])
def test_beam_search_with_one_beam_is_cached_greedy_decoding(variant):
    """Beam search reorders the cache's rows (`KVCache.select`) each step: a window-sized cache too."""
    model = small(**VARIANTS[variant])
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9]]
    greedy = generate(model, prompts, 26, GREEDY)
    assert [p + h.tokens for p, h in zip(prompts, beam_search(model, prompts, 26, num_beams=1))] == greedy
    best = beam_search(model, prompts, 12, num_beams=3, length_penalty=0.0)
    for prompt, hyp in zip(prompts, best):  # its score is the naive log-probability of its tokens
        idx = torch.tensor([prompt + hyp.tokens])
        logprobs = model(idx)[0].log_softmax(-1)[0, len(prompt) - 1 : -1]
        assert hyp.score == pytest.approx(
            logprobs.gather(1, torch.tensor(hyp.tokens)[:, None]).sum().item(), abs=1e-4
        )


def test_a_local_model_refuses_a_cache_without_its_window():
    model = small(attention="local", window=5)
    cache = KVCache(2, 1, 2, 8, 24)
    with pytest.raises(GptlabError, match="window"):
        model(torch.tensor([[1, 2]]), kv_cache=cache)


def test_a_local_model_scores_shared_contexts_like_each_pair_alone():
    model = small(attention="local", window=4)
    groups = [([1, 2, 3, 4, 5, 6, 7], [[8], [9, 10, 11], [12, 13]]), ([3, 4], [[5, 6], [7]])]
    alone = [score_pairs(model, [ctx] * len(conts), conts) for ctx, conts in groups]
    for scored, refs in zip(score_choices(model, groups), alone):
        for s, ref in zip(scored, refs):
            torch.testing.assert_close(s.logprobs, ref.logprobs, atol=1e-5, rtol=0)


# ------------------------------------------------------------------ mixture of experts


def test_one_expert_with_top_1_is_the_dense_mlp():
    dense = small()
    moe = small(mlp="moe", n_experts=1, top_k=1)
    state = {k.replace(".mlp.", ".mlp.experts.0."): v for k, v in dense.state_dict().items()}
    state.update({k: v for k, v in moe.state_dict().items() if "router" in k})  # any router: p = 1
    moe.load_state_dict(state)
    idx = torch.randint(0, 65, (3, 12))
    torch.testing.assert_close(moe(idx)[0], dense(idx)[0], atol=0, rtol=0)


def test_load_balance_loss_equals_a_hand_computation():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    # top 1: experts 0, 1, 0, 2 -> f = (2/4, 1/4, 1/4); P = column means = (0.375, 0.325, 0.3)
    top1 = torch.tensor([[0], [1], [0], [2]])
    assert load_balance_loss(probs, top1, 3).item() == pytest.approx(
        3 * (0.5 * 0.375 + 0.25 * 0.325 + 0.25 * 0.3)
    )
    # top 2: {0,1}, {1,2}, {0,1}, {2,0 or 1}: 8 assignments, expert 0: 3, 1: 3, 2: 2
    top2 = torch.tensor([[0, 1], [1, 2], [0, 1], [2, 0]])
    expected = 3 * (3 / 8 * 0.375 + 3 / 8 * 0.325 + 2 / 8 * 0.3)
    assert load_balance_loss(probs, top2, 3).item() == pytest.approx(expected)
    uniform = torch.full((6, 3), 1 / 3)
    assert load_balance_loss(
        uniform, torch.tensor([[0], [1], [2], [0], [1], [2]]), 3
    ).item() == pytest.approx(1.0)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_moe_output_is_the_gated_sum_of_each_tokens_experts(top_k):
    """Reference: token by token, the top_k experts of softmax(router(x)), gates p (top 1) or p
    renormalised over the chosen (top_k > 1)."""
    config = GPTConfig(
        vocab_size=37, block_size=24, n_layer=1, n_head=2, n_embd=16, mlp="moe", n_experts=4, top_k=top_k
    )
    torch.manual_seed(2)
    moe = MixtureOfExperts(config, MLP).eval()
    x = torch.randn(2, 5, 16)
    expected = torch.zeros(2, 5, 16)
    for b in range(2):
        for t in range(5):
            p = moe.router(x[b, t]).softmax(-1)
            gates, chosen = p.topk(top_k)
            if top_k > 1:
                gates = gates / gates.sum()
            for g, e in zip(gates, chosen):
                expected[b, t] += g * moe.experts[int(e)](x[b, t][None])[0]
    torch.testing.assert_close(moe(x), expected, atol=1e-6, rtol=1e-5)
    assert moe.routed.sum().item() == 2 * 5 * top_k


def test_every_expert_gets_a_gradient_even_without_tokens():
    """DDP (without find_unused_parameters) fails when a parameter takes no part in the backward:
    an expert no token chose still runs (on no tokens), so it gets a (zero) gradient."""
    model = small(mlp="moe", n_experts=4, top_k=1, std=None).train()
    with torch.no_grad():
        for block in model.transformer.h:
            block.mlp.router.weight.zero_()  # equal probabilities: every token picks expert 0
    idx = torch.randint(0, 65, (2, 8))
    _, loss = model(idx, idx)
    (loss + aux_loss(model)).backward()
    assert ((tokens_per_expert(model) > 0).sum(dim=1) == 1).all()  # one expert per layer got them all
    assert all(p.grad is not None for p in model.parameters())


def test_moe_with_activation_checkpointing_gives_the_same_gradients():
    grads = []
    for recompute in (False, True):
        model = small(mlp="moe", n_experts=3, top_k=2, std=None).train()
        model.activation_checkpointing = recompute
        idx = torch.randint(0, 65, (2, 8), generator=torch.Generator().manual_seed(0))
        _, loss = model(idx, idx)
        (loss + aux_loss(model)).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def ddp_train(out, model_fields: list[str]) -> list[dict]:
    """``gptlab train`` under torchrun, 2 CPU ranks (gloo), 4 steps of the Shakespeare excerpt with
    a tiny model of ``model_fields`` (config overrides); returns the run's train records."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [
        "-m",
        "gptlab",
        "train",
        f"data.input={json.dumps(str(SHAKESPEARE))}",
        'data.tokenizer="char"',
    ]
    command += ["model.block_size=8", "model.n_layer=1", "model.n_head=2", "model.n_embd=16", *model_fields]
    command += ["train.batch_size=1", "train.max_steps=4", "train.eval_every=4", "train.log_every=1"]
    command += [
        "train.eval_batches=1",
        "train.sample_tokens=0",
        "train.progress=false",
        'train.strategy="ddp"',
    ]
    command += ["--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    done = subprocess.run(command, cwd=out.parent, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    return [r for r in read_metrics(out) if r["kind"] == "train"]


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_trains_a_moe_model_whose_experts_get_no_tokens(tmp_path):
    """2 ranks x 8 tokens per step for 16 experts: most experts see no token in a step, and DDP
    (gptlab wraps without find_unused_parameters) must still find every gradient ready."""
    records = ddp_train(tmp_path / "run", ['model.mlp="moe"', "model.n_experts=16"])
    fractions = [r["expert_fraction"][0] for r in records]
    assert fractions and all(f.count(0.0) >= 8 for f in fractions)  # rank 0's tokens: 8 of 16 experts at most


@pytest.mark.slow
def test_a_tiny_moe_model_trains_and_uses_every_expert(tmp_path):
    out = tmp_path / "moe"
    overrides = [
        f"data.input={json.dumps(str(SHAKESPEARE))}",
        'data.tokenizer="char"',
        "model.block_size=32",
        "model.n_layer=2",
        "model.n_head=2",
        "model.n_embd=32",
        'model.mlp="moe"',
        "model.n_experts=4",
        "model.top_k=1",
        "train.batch_size=8",
        "train.max_steps=300",
        "train.eval_every=300",
        "train.log_every=50",
        "train.eval_batches=4",
        "train.sample_tokens=8",
        "train.progress=false",
        "optim.lr=3e-3",
        "optim.warmup_steps=20",
        f"train.out_dir={json.dumps(str(out))}",
    ]
    result = train(load_config(None, overrides))
    assert result.final_val_loss < result.unigram_val_loss  # it learned more than letter frequencies
    logged = [r for r in read_metrics(out) if r["kind"] == "train"]
    assert all(len(r["expert_fraction"]) == 2 and len(r["expert_fraction"][0]) == 4 for r in logged)
    assert all(r["moe_aux_loss"] >= 0.01 * 2 * 0.999 for r in logged)  # >= coefficient * layers * 1
    model, _ = load_model(out)
    val = torch.from_numpy(TokenDataset(out / "data", "val").tokens[: 16 * 32].astype("int64")).view(16, 32)
    with torch.no_grad():
        model(val)
    fractions = tokens_per_expert(model).float() / val.numel()
    assert fractions.min() >= 0.05, fractions


# ------------------------------------------------------------------ saving, formats, adapters


@pytest.mark.parametrize("variant", EVERY)
def test_every_variant_saves_and_loads(tmp_path, variant, char_tokenizer):
    model = small(**EVERY[variant])
    save_model(tmp_path / "m", model, char_tokenizer)
    loaded, _ = load_model(tmp_path / "m")
    assert loaded.config == model.config
    idx = torch.randint(0, 65, (2, 10))
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0], atol=0, rtol=0)


def test_a_model_json_written_before_the_variant_fields_loads_as_gpt2_blocks(tmp_path, char_tokenizer):
    model = small()
    save_model(tmp_path / "m", model, char_tokenizer)
    meta = json.loads((tmp_path / "m" / MODEL_JSON).read_text())
    for name in ("norm_position", "attention", "window", "mlp", "n_experts", "top_k", "moe_aux_loss"):
        del meta["config"][name]
    (tmp_path / "m" / MODEL_JSON).write_text(json.dumps(meta))
    loaded, _ = load_model(tmp_path / "m")
    assert loaded.config == model.config and loaded.config.is_gpt2_block()


@pytest.mark.parametrize(
    "variant, field", [("post-norm", "norm_position"), ("local", "attention"), ("moe", "mlp")]
)
def test_gpt2_export_refuses_variants_naming_the_field(variant, field):
    with pytest.raises(GptlabError, match=f"cannot export to GPT-2 format: {field} is"):
        config_to_hf(small(**VARIANTS[variant]).config)
    assert config_to_hf(small().config)["model_type"] == "gpt2"


def test_lora_adapts_every_expert_and_merges_back():
    model = small(mlp="moe", n_experts=3, top_k=1)
    idx = torch.randint(0, 65, (2, 8))
    before = model(idx)[0]
    apply_lora(model, rank=2)
    adapted = lora_modules(model)
    assert {f"transformer.h.0.mlp.experts.{e}.c_fc" for e in range(3)} <= set(adapted)
    assert not any("router" in name for name in adapted)  # a router adapter only if asked for
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        for m in adapted.values():
            m.lora_B.normal_()
    changed = model(idx)[0]
    assert not torch.allclose(changed, before)
    merge_lora(model)
    torch.testing.assert_close(model(idx)[0], changed, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_quantises_saves_and_loads(tmp_path, variant, char_tokenizer):
    model = small(std=None, **VARIANTS[variant])
    idx = torch.randint(0, 65, (2, 10))
    reference = model(idx)[0]
    save_model(tmp_path / "q", quantize_model(model, 8), char_tokenizer)  # the experts' Linears too
    loaded, _ = load_model(tmp_path / "q")
    assert loaded.config == model.config
    torch.testing.assert_close(loaded(idx)[0], reference, atol=0.02, rtol=0)


@pytest.mark.parametrize(
    "model, message",
    [
        (['model.mlp="moe"', "model.n_experts=2"], "DP training .* cannot route tokens: use mlp 'dense'"),
        (['model.arch="gru"'], "DP training .* does not run through torch's GRU: use arch 'lstm' or 'gpt'"),
    ],
)
def test_dp_training_refuses_what_per_example_gradients_cannot_run(tmp_path, model, message):
    overrides = [
        f"data.input={json.dumps(str(SHAKESPEARE))}",
        'data.tokenizer="char"',
        *model,
        "dp.epsilon=8.0",
        f"train.out_dir={json.dumps(str(tmp_path / 'run'))}",
    ]
    with pytest.raises(GptlabError, match=message):
        train(load_config(None, overrides))
