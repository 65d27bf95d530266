"""Weight-only int8 / int4 quantisation (gptlab/model/quantize.py): the math, the packed CPU kernels
against the dequantise-then-matmul reference, and quantised runs saved, loaded, generated from and scored through the CLI."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gptlab.errors import GptlabError
from gptlab.generate import GREEDY, generate, generate_naive
from gptlab.model import GPT, GPTConfig
from gptlab.model.quantize import (
    QuantizedEmbedding,
    QuantizedLinear,
    dequantize_int4,
    dequantize_int8,
    pack_int4,
    quantize_int4,
    quantize_int8,
    quantize_model,
    set_backend,
    unpack_int4,
    weight_bytes,
)
from gptlab.rundir import load_model, save_model

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer\n" * 4


@pytest.fixture(scope="module")
def tokenizer():
    from gptlab.tokenizers import CharTokenizer

    return CharTokenizer.train(TEXT)


def make_model(vocab_size: int, seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=64, dropout=0.0)
    return GPT(GPTConfig(**{**cfg, **overrides})).eval()


def matrices(max_rows: int = 24):
    """Random float matrices with a few rows of very different scales (and zero rows)."""
    return st.tuples(
        st.integers(1, max_rows),
        st.sampled_from([32, 64, 128]),
        st.integers(0, 2**31 - 1),
        st.floats(1e-3, 1e3),
    ).map(_matrix)


def _matrix(args) -> torch.Tensor:
    n, k, seed, scale = args
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * scale
    w[0] *= 1e-3  # a row of tiny weights next to large ones
    if n > 2:
        w[1] = 0.0  # an all-zero row
    return w


# ----------------------------------------------------------------------------- the math


@settings(max_examples=40, deadline=None)
@given(matrices())
def test_int8_round_trip_error_is_at_most_half_a_step_per_channel(w):
    q, scales = quantize_int8(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scales.shape == (w.shape[0],)
    assert int(q.abs().max()) <= 127
    err = (dequantize_int8(q, scales) - w).abs()
    assert bool((err <= scales[:, None] * 0.5 * (1 + 1e-5) + 1e-12).all())


@settings(max_examples=40, deadline=None)
@given(matrices())
def test_int8_per_channel_properties(w):
    q, scales = quantize_int8(w)
    # each non-zero row's largest weight maps to +-127 and comes back (almost) exactly
    rows = w.abs().amax(dim=1) > 0
    assert bool((q.abs().amax(dim=1)[rows] == 127).all())
    back = dequantize_int8(q, scales)
    big = w.abs().argmax(dim=1)
    idx = torch.arange(w.shape[0])
    torch.testing.assert_close(back[idx, big], w[idx, big], rtol=1e-6, atol=0.0)
    # symmetric: -w quantises to -q; zero rows stay exactly zero
    q_neg, _ = quantize_int8(-w)
    assert torch.equal(q_neg, -q)
    assert bool((back[~rows] == 0).all())
    # a row's scale does not depend on the other rows (per channel, not per tensor)
    q0, s0 = quantize_int8(w[:1])
    assert torch.equal(q0, q[:1]) and torch.equal(s0, scales[:1])


@settings(max_examples=40, deadline=None)
@given(matrices(), st.sampled_from([32, 64]))
def test_int4_group_round_trip_error_is_at_most_half_a_step(w, group):
    if w.shape[1] % group:
        return
    q, scales, mins = quantize_int4(w, group)
    assert q.dtype == torch.uint8 and int(q.max()) <= 15
    assert scales.shape == mins.shape == (w.shape[0], w.shape[1] // group)
    back = dequantize_int4(q, scales, mins)
    step = scales.repeat_interleave(group, dim=1)  # (N, K): each weight's group step
    span = w.abs().amax() + 1e-30
    assert bool(((back - w).abs() <= step * 0.5 + span * 1e-6).all())
    # every group's extremes are representable: its min exactly, its max up to rounding
    g = w.view(w.shape[0], -1, group)
    torch.testing.assert_close(back.view_as(g).amin(-1), g.amin(-1), rtol=1e-5, atol=float(span) * 1e-6)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_int4_pack_unpack_round_trip(rows, half_k, seed):
    q = torch.randint(
        0, 16, (rows, 2 * half_k), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )
    packed = pack_int4(q)
    assert packed.shape == (rows, half_k) and packed.dtype == torch.uint8
    assert torch.equal(unpack_int4(packed), q)
    assert torch.equal(packed[:, 0] & 0x0F, q[:, 0])  # low nibble = even index


def test_odd_sizes_are_errors():
    with pytest.raises(GptlabError, match="odd"):
        pack_int4(torch.zeros(2, 3, dtype=torch.uint8))
    with pytest.raises(GptlabError, match="does not divide"):
        quantize_int4(torch.randn(4, 96), 64)


# ----------------------------------------------------------------------------- kernels vs reference


@pytest.mark.parametrize("bits,group", [(8, None), (4, 32), (4, 64), (4, 128)])
@pytest.mark.parametrize("out_features", [48, 50])  # 50: the int4 kernel pads rows to 16
def test_fast_kernel_agrees_with_the_dequantised_reference(bits, group, out_features):
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, out_features)
    q = QuantizedLinear.from_linear(lin, bits, group)
    x = torch.randn(3, 5, 256)
    q.backend = "reference"
    ref = q(x)
    torch.testing.assert_close(ref, x @ q.dequantize().T + lin.bias, rtol=1e-5, atol=1e-5)
    q.backend = "kernel"
    fast = q(x)
    assert fast.shape == ref.shape == (3, 5, out_features) and fast.dtype == torch.float32
    # the kernels take bfloat16 activations: agreement to bf16 precision of the output's scale
    assert float((fast - ref).abs().max()) <= 2e-2 * float(ref.abs().max())


@pytest.mark.parametrize("bits,group", [(8, None), (4, 32)])
def test_embedding_rows_equal_the_dequantised_matrix(bits, group):
    emb = torch.nn.Embedding(40, 64)
    q = QuantizedEmbedding.from_embedding(emb, bits, group)
    idx = torch.tensor([[0, 5, 39], [7, 7, 1]])
    torch.testing.assert_close(q(idx), q.dequantize()[idx])


# ----------------------------------------------------------------------------- whole models


@pytest.mark.slow
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("bits,group,tol", [(8, None, 0.02), (4, 32, 0.2)])
def test_quantized_model_logits_are_close_and_greedy_engine_matches_naive(bits, group, tol, tie):
    model = make_model(64, tie_weights=tie)
    idx = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(idx)[0]
        q = quantize_model(copy.deepcopy(model), bits, group)
        got = q(idx)[0]
    assert float((got - ref).abs().max()) < tol * float(ref.abs().max()) + tol
    assert weight_bytes(q) < weight_bytes(model) * (0.35 if bits == 8 else 0.25)
    # the KV-cache engine and the naive decoder pick the same tokens with quantised weights too
    set_backend(q, "reference")
    assert torch.equal(generate(q, idx, 6, GREEDY), generate_naive(q, idx, 6, GREEDY))


def test_bad_settings_are_errors():
    model = make_model(64)
    with pytest.raises(GptlabError, match="bits must be 8 or 4"):
        quantize_model(copy.deepcopy(model), 3)
    with pytest.raises(GptlabError, match="group size must be one of"):
        quantize_model(copy.deepcopy(model), 4, 48)
    with pytest.raises(GptlabError, match="does not divide in_features 64"):
        quantize_model(copy.deepcopy(model), 4, 128)
    q = quantize_model(copy.deepcopy(model), 8)
    with pytest.raises(GptlabError, match="already quantised"):
        quantize_model(q, 8)


@pytest.mark.parametrize("bits", [8, 4])
def test_save_load_round_trip(tmp_path, tokenizer, bits):
    model = make_model(tokenizer.vocab_size, tie_weights=bits == 8)
    q = quantize_model(model, bits, 32)
    save_model(tmp_path / "q", q, tokenizer)
    meta = json.loads((tmp_path / "q" / "model.json").read_text())
    assert meta["quantization"]["bits"] == bits
    assert meta["quantization"]["group_size"] == (32 if bits == 4 else None)
    loaded, _ = load_model(tmp_path / "q")
    idx = torch.arange(10)[None] % tokenizer.vocab_size
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], q(idx)[0])
    # a tampered file is a clear error naming the tensor
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "q" / "model.safetensors"))
    state["transformer.h.0.mlp.c_fc.qweight"] = state["transformer.h.0.mlp.c_fc.qweight"][:-1]
    save_file(state, str(tmp_path / "q" / "model.safetensors"))
    with pytest.raises(GptlabError, match="c_fc.qweight"):
        load_model(tmp_path / "q")


# ----------------------------------------------------------------------------- the CLI


def test_cli_quantize_then_generate_and_eval(tmp_path, tokenizer, capsys):
    from gptlab.cli import main

    save_model(tmp_path / "run", make_model(tokenizer.vocab_size), tokenizer)
    (tmp_path / "eval.txt").write_text(TEXT[:200], encoding="utf-8")
    args = ["quantize", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "q4")]
    assert (
        main(
            [*args, "--bits", "4", "--group-size", "32", "--eval-file", str(tmp_path / "eval.txt"), "--json"]
        )
        == 0
    )
    r = json.loads(capsys.readouterr().out)
    assert r["bits"] == 4 and r["group_size"] == 32
    assert r["weights_file_bytes_after"] < r["weights_file_bytes_before"] / 3
    assert r["perplexity_quantized"] > 0 and abs(r["perplexity_change_percent"]) < 20

    gen = ["generate", "--model", str(tmp_path / "q4"), "--prompt", "To be", "--max-new-tokens", "8"]
    assert main([*gen, "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("To be")
    assert (
        main(["eval", "perplexity", "--model", str(tmp_path / "q4"), "--input", str(tmp_path / "eval.txt")])
        == 0
    )
    assert "perplexity" in capsys.readouterr().out

    # errors: out exists and is not empty, run already quantised, missing run, bad group size
    assert main([*args, "--bits", "8"]) == 2
    assert "already exists" in capsys.readouterr().err
    q4 = ["quantize", "--model", str(tmp_path / "q4"), "--bits", "8", "--out", str(tmp_path / "qq")]
    assert main(q4) == 2
    assert "already quantised" in capsys.readouterr().err
    missing = ["quantize", "--model", str(tmp_path / "nope"), "--bits", "8", "--out", str(tmp_path / "x")]
    assert main(missing) == 2
    assert "not found" in capsys.readouterr().err
    bad_group = ["quantize", "--model", str(tmp_path / "run"), "--bits", "4", "--group-size", "128"]
    assert main([*bad_group, "--out", str(tmp_path / "q128")]) == 2
    assert "does not divide" in capsys.readouterr().err
    assert not (tmp_path / "q128").exists()


@pytest.mark.slow
def test_cli_quantize_in_a_subprocess(tmp_path, tiny_run):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "gptlab", "quantize", "--model", str(tiny_run), "--bits", "8"]
    proc = subprocess.run([*cmd, "--out", str(tmp_path / "q8")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "size on disk" in proc.stdout
    from gptlab.cli import main

    assert main([*cmd[3:-1], "5", "--out", str(tmp_path / "q5")]) == 2  # argparse: --bits 8 or 4


# ----------------------------------------------------------------------------- the int8 LM head


@pytest.mark.parametrize("tie", [True, False])
def test_int8_head_uses_the_dynamic_kernel_within_tolerance_of_fp32(tie, tmp_path, tokenizer):
    from gptlab.model.quantize import dynamic_int8_available

    model = make_model(tokenizer.vocab_size, tie_weights=tie)
    q = quantize_model(copy.deepcopy(model), 8)
    head = q.transformer.wte if tie else q.lm_head
    assert head.backend == "dynamic"  # a tied head's matrix is the embedding's: row lookups unchanged
    assert all(m.backend == "kernel" for m in q.transformer.h.modules() if isinstance(m, QuantizedLinear))
    x = torch.randn(3, 1, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        exact = model.lm_head(x)  # fp32
        got = q.lm_head(x)
        set_backend(q, "reference")
        reference = q.lm_head(x)  # the same int8 weights, multiplied in fp32
    assert got.shape == exact.shape and got.dtype == torch.float32
    scale = float(exact.abs().max())
    # int8 weights alone: <= 1% of the logits' scale here; the 7-bit activations add a little more
    assert float((reference - exact).abs().max()) <= 0.01 * scale
    assert float((got - exact).abs().max()) <= 0.03 * scale
    if dynamic_int8_available():  # it really is another kernel, not the weight-only one
        assert not torch.equal(got, reference)
    # a saved and reloaded int8 run gets the same head kernel and the same logits
    save_model(tmp_path, quantize_model(copy.deepcopy(model), 8), tokenizer)
    loaded, _ = load_model(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded.lm_head(x), got, rtol=0, atol=0)


def test_int8_head_falls_back_to_the_weight_only_kernel(monkeypatch):
    from gptlab.model import quantize

    q = quantize_model(make_model(64), 8)
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        set_backend(q, "kernel", head=False)
        weight_only = q.lm_head(x)
        set_backend(q, "kernel")
        monkeypatch.setattr(quantize, "dynamic_int8_available", lambda: False)
        torch.testing.assert_close(q.lm_head(x), weight_only, rtol=0, atol=0)
