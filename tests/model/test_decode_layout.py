"""gptlab/model/decode_layout.py: the inference layouts give the model's logits and greedy tokens
(fp32: to float rounding; bf16 packed: to bf16 rounding), and `gptlab generate` uses them."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from gptlab.generate import GREEDY, generate
from gptlab.model import GPT, GPTConfig
from gptlab.model.decode_layout import (
    PackedLinear,
    TransposedLinear,
    decode_layout_kind,
    packed_linear_available,
    to_decode_layout,
)
from gptlab.model.quantize import quantize_model, weight_bytes


def make_model(vocab_size: int = 64, seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=64, dropout=0.0)
    return GPT(GPTConfig(**{**cfg, **overrides})).eval()


IDX = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("tie", [True, False])
def test_fp32_layout_gives_the_reference_logits_and_tokens(tie):
    model = make_model(tie_weights=tie, bias=not tie)
    assert decode_layout_kind(model) == "transposed"
    fast = to_decode_layout(copy.deepcopy(model))
    assert all(not isinstance(m, torch.nn.Linear) for m in fast.modules())
    assert isinstance(fast.lm_head, TransposedLinear) and decode_layout_kind(fast) is None  # done once
    with torch.no_grad():
        torch.testing.assert_close(fast(IDX)[0], model(IDX)[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(generate(fast, IDX, 5, GREEDY), generate(model, IDX, 5, GREEDY))
    if tie:  # the tied matrix is stored once
        assert weight_bytes(fast) == weight_bytes(model)


@pytest.mark.skipif(not packed_linear_available(), reason="this torch has no oneDNN packed linear")
@pytest.mark.parametrize("tie", [True, False])
def test_bf16_packed_layout_gives_the_bf16_logits(tie):
    model = make_model(tie_weights=tie).to(torch.bfloat16)
    assert decode_layout_kind(model) == "packed"
    fast = to_decode_layout(copy.deepcopy(model))
    assert isinstance(fast.lm_head, PackedLinear) and fast.decode_layout == "packed"
    with torch.no_grad():
        ref, got = model(IDX)[0].float(), fast(IDX)[0].float()
    assert got.dtype == torch.float32 and ref.shape == got.shape
    # same bf16 weights, another summation order: equal to bf16 rounding of the logits' scale
    assert float((got - ref).abs().max()) <= 2e-2 * float(ref.abs().max())
    assert generate(fast, IDX, 5, GREEDY).shape == (2, 15)


def test_no_layout_for_quantised_or_other_models():
    assert decode_layout_kind(quantize_model(make_model(), 8)) is None
    assert decode_layout_kind(make_model().half()) is None
    rnn = GPT.__new__(GPT)  # only the config is read for another architecture
    torch.nn.Module.__init__(rnn)
    rnn.config = GPTConfig(vocab_size=64, block_size=64, n_layer=1, n_head=1, n_embd=16, arch="lstm")
    assert decode_layout_kind(rnn) is None


def test_generate_command_uses_the_layout_and_gives_the_plain_models_text(tiny_run, capsys, monkeypatch):
    from gptlab.cli import main
    from gptlab.commands import generate as command
    from gptlab.generate import generate_text
    from gptlab.rundir import load_model

    kinds = []

    def spy(model):
        kinds.append(decode_layout_kind(model))
        return to_decode_layout(model)

    monkeypatch.setattr(command, "to_decode_layout", spy)
    args = ["generate", "--model", str(tiny_run), "--prompt", "the ", "--max-new-tokens", "12",
            "--temperature", "0", "--json"]  # fmt: skip
    assert main(args) == 0
    cli = json.loads(capsys.readouterr().out)
    assert kinds == ["transposed"]
    model, tokenizer = load_model(tiny_run)
    plain = generate_text(model, tokenizer, "the ", max_new_tokens=12, sampler=GREEDY)
    assert cli["samples"][0]["completion"] == plain
