"""Strided-window perplexity against a token-by-token brute force on a tiny random GPT."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
from samples import SHAKESPEARE

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.eval.perplexity import evaluate_text, perplexity, strided_windows
from gptlab.model import GPT, GPTConfig

VOCAB, BLOCK = 23, 8
N_TOKENS = 37  # not a multiple of BLOCK or of any stride tested, so the last window is short


def tiny_gpt(vocab_size: int = VOCAB, block_size: int = BLOCK, dropout: float = 0.0, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig.preset(
        "tiny", vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=16
    )
    config.dropout = dropout
    return GPT(config).eval()


@pytest.fixture(scope="module")
def model() -> GPT:
    return tiny_gpt()


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(VOCAB, (N_TOKENS,), generator=torch.Generator().manual_seed(1))


def brute_force_nlls(model: GPT, ids: torch.Tensor, block_size: int, stride: int) -> list[float]:
    """NLL of every token t >= 1, one forward pass per token, with the context the HF method gives
    it: from the start of the first window (starts 0, stride, 2*stride, ...) that reaches t."""
    nlls = []
    for t in range(1, len(ids)):
        first_window = max(0, math.ceil((t - block_size) / stride))
        context = ids[first_window * stride : t]
        assert 1 <= len(context) <= block_size
        with torch.no_grad():
            logits, _ = model(context[None])  # (1, T, V)
        nlls.append(-torch.log_softmax(logits[0, -1].double(), -1)[ids[t]].item())
    return nlls


@pytest.mark.slow
@pytest.mark.parametrize("stride", [1, 3, 5, BLOCK])
def test_matches_brute_force(model, ids, stride):
    result = perplexity(model, ids, block_size=BLOCK, stride=stride, batch_size=4)
    nlls = brute_force_nlls(model, ids, BLOCK, stride)
    assert result.tokens == N_TOKENS - 1
    assert result.mean_nll == pytest.approx(sum(nlls) / len(nlls), abs=1e-5)
    assert result.perplexity == pytest.approx(math.exp(sum(nlls) / len(nlls)), rel=1e-5)
    assert (result.block_size, result.stride) == (BLOCK, stride)


def test_stride_1_gives_every_token_the_full_window(model, ids):
    nlls = []
    for t in range(1, N_TOKENS):
        with torch.no_grad():
            logits, _ = model(ids[max(0, t - BLOCK) : t][None])
        nlls.append(-torch.log_softmax(logits[0, -1], -1)[ids[t]].item())
    assert perplexity(model, ids, block_size=BLOCK, stride=1).mean_nll == pytest.approx(
        sum(nlls) / len(nlls), abs=1e-5
    )


def test_stride_equal_to_block_is_the_models_own_loss_on_independent_chunks(model, ids):
    total, count = 0.0, 0
    for begin in range(0, N_TOKENS - 1, BLOCK):
        x = ids[begin : min(begin + BLOCK, N_TOKENS - 1)]
        y = ids[begin + 1 : begin + 1 + len(x)]
        with torch.no_grad():
            _, loss = model(x[None], y[None])
        total, count = total + loss.item() * len(x), count + len(x)
    assert perplexity(model, ids, block_size=BLOCK, stride=BLOCK).mean_nll == pytest.approx(
        total / count, abs=1e-5
    )


def test_stride_changes_the_context_not_the_scored_tokens(model, ids):
    results = [perplexity(model, ids, block_size=BLOCK, stride=s) for s in (1, 2, 4, BLOCK)]
    assert {r.tokens for r in results} == {N_TOKENS - 1}
    assert len({round(r.mean_nll, 6) for r in results}) > 1


def test_windows_score_each_target_exactly_once():
    for n in range(2, 40):
        for block in (1, 2, 5, 8):
            for stride in range(1, block + 1):
                scored = []
                for begin, end, first in strided_windows(n, block, stride):
                    assert 0 < end - begin <= block
                    scored += range(max(first, begin), end)
                assert scored == list(range(n - 1)), (n, block, stride)


def test_batch_size_does_not_change_the_result(model, ids):
    reference = perplexity(model, ids, block_size=BLOCK, stride=3, batch_size=1)
    for batch_size in (2, 5, 64):
        result = perplexity(model, ids, block_size=BLOCK, stride=3, batch_size=batch_size)
        assert result.mean_nll == pytest.approx(reference.mean_nll, abs=1e-6)


def test_defaults_use_the_models_context_and_half_stride(model, ids):
    result = perplexity(model, ids.tolist())
    assert (result.block_size, result.stride) == (BLOCK, BLOCK // 2)
    assert result.mean_nll == pytest.approx(perplexity(model, ids, BLOCK, BLOCK // 2).mean_nll)


class UniformModel(nn.Module):
    """Same call contract as GPT, but every next token is equally likely."""

    def __init__(self, vocab_size: int, block_size: int) -> None:
        super().__init__()
        self.config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=1, n_embd=4)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, idx, targets=None):
        return torch.zeros(*idx.shape, self.config.vocab_size) + self.dummy, None  # (B, T, V)


@pytest.mark.parametrize("vocab_size", [2, 50, 50257])
def test_uniform_model_has_perplexity_vocab_size(vocab_size):
    ids = torch.randint(vocab_size, (20,), generator=torch.Generator().manual_seed(0))
    result = perplexity(UniformModel(vocab_size, 6), ids, stride=4, num_bytes=57)
    assert result.perplexity == pytest.approx(vocab_size, rel=1e-5)
    assert result.mean_nll == pytest.approx(math.log(vocab_size), rel=1e-6)
    assert result.bits_per_byte == pytest.approx(19 * math.log2(vocab_size) / 57, rel=1e-6)


def test_dropout_is_off_while_scoring_and_the_mode_is_restored(ids):
    model = tiny_gpt(dropout=0.5).train()
    first = perplexity(model, ids, block_size=BLOCK, stride=4)
    assert perplexity(model, ids, block_size=BLOCK, stride=4) == first
    assert model.training


def test_bad_arguments_are_clear_errors(model):
    with pytest.raises(GptlabError, match="at least 2 tokens"):
        perplexity(model, [3])
    with pytest.raises(GptlabError, match="at least 2 tokens"):
        perplexity(model, [])
    with pytest.raises(GptlabError, match=r"stride must be in \[1, block_size=8\]"):
        perplexity(model, [1, 2, 3], stride=9)
    with pytest.raises(
        GptlabError, match=r"block_size 9 is longer than the context of the model \(8 tokens\)"
    ):
        perplexity(model, list(range(20)), block_size=BLOCK + 1)
    with pytest.raises(GptlabError, match="block_size must be at least 1, got 0"):
        perplexity(model, list(range(20)), block_size=0)


# ----- with real tokenizers: evaluate_text, bits per byte, the CLI ---------------------------------


@pytest.fixture(scope="module")
def text() -> str:
    return SHAKESPEARE.read_text("utf-8")[:600] + " — café ∑ 🙂"


@pytest.fixture(scope="module")
def bpe(text):
    from gptlab.tokenizers import BPETokenizer

    return BPETokenizer.train(text, vocab_size=300, special_tokens=["<|endoftext|>"])


def test_evaluate_text_scores_every_byte_after_endoftext(bpe, text):
    model = tiny_gpt(vocab_size=bpe.vocab_size, block_size=32)
    result = evaluate_text(model, bpe, text, stride=16)
    ids = bpe.encode(text)
    assert result.tokens == len(ids)  # the leading <|endoftext|> makes the first token scored too
    direct = perplexity(model, [bpe.eot_id, *ids], stride=16)
    total_nll = direct.mean_nll * direct.tokens
    assert result.bits_per_byte == pytest.approx(
        total_nll / math.log(2) / len(text.encode("utf-8")), rel=1e-6
    )


def test_without_endoftext_the_first_token_and_its_bytes_are_not_scored(text):
    from gptlab.tokenizers import CharTokenizer

    char = CharTokenizer.train(text)
    assert char.eot_id is None
    model = tiny_gpt(vocab_size=char.vocab_size, block_size=32)
    result = evaluate_text(model, char, text, stride=32)
    assert result.tokens == len(text) - 1
    direct = perplexity(model, char.encode(text), stride=32)
    total_nll = direct.mean_nll * direct.tokens
    assert result.bits_per_byte == pytest.approx(
        total_nll / math.log(2) / len(text[1:].encode("utf-8")), rel=1e-6
    )


def test_char_tokenizer_with_endoftext_scores_every_character(text):
    from gptlab.tokenizers import CharTokenizer

    char = CharTokenizer.train(text, special_tokens=["<|endoftext|>"])
    model = tiny_gpt(vocab_size=char.vocab_size, block_size=32)
    assert evaluate_text(model, char, text, stride=32).tokens == len(text)


def test_text_too_short_is_an_error(bpe):
    from gptlab.tokenizers import CharTokenizer

    with pytest.raises(GptlabError, match="too short"):
        evaluate_text(tiny_gpt(vocab_size=bpe.vocab_size), bpe, "")
    char = CharTokenizer.train("abc")
    with pytest.raises(GptlabError, match="too short to score: it encodes to 1 token"):
        evaluate_text(tiny_gpt(vocab_size=char.vocab_size), char, "a")


def test_cli_eval_perplexity(bpe, text, tmp_path, capsys):
    from gptlab.rundir import save_model

    model = tiny_gpt(vocab_size=bpe.vocab_size, block_size=32)
    save_model(tmp_path / "run", model, bpe)
    (tmp_path / "input.txt").write_text(text, "utf-8")
    argv = ["eval", "perplexity", "--model", str(tmp_path / "run"), "--input", str(tmp_path / "input.txt")]
    assert main([*argv, "--stride", "8", "--batch-size", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = evaluate_text(model, bpe, text, stride=8)
    assert report["perplexity"] == pytest.approx(expected.perplexity, rel=1e-5)
    assert report["bits_per_byte"] == pytest.approx(expected.bits_per_byte, rel=1e-5)
    assert (report["tokens"], report["stride"], report["block_size"]) == (expected.tokens, 8, 32)

    assert main(argv) == 0
    assert "bits per byte" in capsys.readouterr().out
    (tmp_path / "empty.txt").write_bytes(b"")
    assert main([*argv[:-1], str(tmp_path / "empty.txt")]) == 2
    assert "empty (0 bytes)" in capsys.readouterr().err
