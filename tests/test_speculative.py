"""Speculative decoding: greedy output identical to the target's own, sampled output distributed as
the target's (a chi-square test over many seeded draws on a tiny vocabulary), cache rollback, and
the refusals (other tokenizer, local attention, repetition penalty)."""

from __future__ import annotations

import copy
import math
from collections import Counter

import pytest
import torch

from gptlab.errors import GptlabError
from gptlab.generate import GREEDY, Sampler, generate, stream_tokens
from gptlab.model import GPT, GPTConfig
from gptlab.model.kv_cache import KVCache
from gptlab.speculative import SpeculativeStats, accept_or_correct, check_draft, speculative_tokens


def _model(
    seed: int, vocab: int = 65, block: int = 32, layers: int = 2, width: int = 32, sharpen: float = 20.0
) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=vocab, block_size=block, n_layer=layers, n_head=2, n_embd=width, dropout=0.0)
    model = GPT(cfg).eval()
    with torch.no_grad():  # sharper than the init's near-uniform logits: the argmax is rarely a near-tie
        model.lm_head.weight.mul_(sharpen)
    return model


def _perturbed(model: GPT, scale: float, seed: int = 1) -> GPT:
    """A copy of ``model`` with noise on every weight: a draft that agrees with it often, not always."""
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale * p.std().clamp(min=1e-3))
    return other


def _chi2_critical(df: int, z: float = 3.09) -> float:
    """The chi-square quantile at the normal quantile z (3.09: 0.999), Wilson-Hilferty approximation."""
    c = 2.0 / (9.0 * df)
    return df * (1.0 - c + z * math.sqrt(c)) ** 3


def _chi2(counts: Counter, probs: dict, n: int) -> tuple[float, int]:
    """Pearson's statistic of ``counts`` against ``probs`` (inf if a draw lies outside their
    support) and its degrees of freedom; cells expecting < 5 draws are pooled."""
    if any(counts[key] for key in counts if key not in probs):
        return math.inf, 1
    small = [key for key, p in probs.items() if p * n < 5]
    stat, cells = 0.0, 0
    for key, p in probs.items():
        if key not in small:
            stat += (counts[key] - n * p) ** 2 / (n * p)
            cells += 1
    pooled = sum(probs[key] for key in small)
    if pooled * n >= 1:
        stat += (sum(counts[key] for key in small) - n * pooled) ** 2 / (n * pooled)
        cells += 1
    return stat, cells - 1


@pytest.mark.parametrize("k", [1, 3, 5])
def test_greedy_equals_the_targets_own_greedy_output(k):
    target = _model(0)
    prompt = [5, 17, 3, 40, 12]
    expected = generate(target, [prompt], 60, GREEDY)[0][len(prompt) :]  # runs past the 32-token context
    for draft in (copy.deepcopy(target), _perturbed(target, 0.3), _model(7, layers=1, width=16, block=16)):
        stats = SpeculativeStats()
        got = list(speculative_tokens(target, draft, prompt, 60, GREEDY, k=k, stats=stats))
        assert got == expected
        assert stats.emitted == 60
    # an identical draft is always right: every round but those near the context limit emits k + 1
    stats = SpeculativeStats()
    list(speculative_tokens(target, copy.deepcopy(target), prompt, 20, GREEDY, k=k, stats=stats))
    assert stats.acceptance_rate == 1.0
    assert stats.target_forwards == math.ceil(20 / (k + 1))


def test_greedy_with_eos_and_a_long_prompt():
    target, draft = _model(0), _perturbed(_model(0), 0.5)
    long_prompt = list(range(1, 41))  # longer than the 32-token context: starts sliding at once
    assert list(speculative_tokens(target, draft, long_prompt, 10, GREEDY, k=3)) == list(
        stream_tokens(target, long_prompt, 10, GREEDY)
    )
    plain = list(stream_tokens(target, [3, 9], 30, GREEDY))
    eos = plain[12]  # the 13th token ends the text: both stop before it
    assert list(speculative_tokens(target, draft, [3, 9], 30, GREEDY, eos_id=eos, k=4)) == list(
        stream_tokens(target, [3, 9], 30, GREEDY, eos_id=eos)
    )


def _joint_first_two(model: GPT, prompt: list[int], sampler: Sampler) -> dict[tuple[int, int], float]:
    """The exact probability of every pair of first two tokens under ``model`` alone."""
    with torch.no_grad():
        logits, _ = model(torch.tensor([prompt]))
        p1 = sampler.probs(logits[:, -1])[0]
        out = {}
        for a in range(p1.numel()):
            if p1[a] == 0:
                continue
            logits, _ = model(torch.tensor([[*prompt, a]]))
            p2 = sampler.probs(logits[:, -1])[0]
            for b in range(p2.numel()):
                if p2[b] > 0:
                    out[(a, b)] = float(p1[a] * p2[b])
    return out


@pytest.mark.slow
def test_sampling_preserves_the_targets_distribution():
    """The first two tokens of many seeded runs are distributed as under the target alone (a
    chi-square test at the 0.999 level), while the draft's own distribution is clearly rejected."""
    sampler = Sampler(temperature=0.8, top_k=4)  # applied to p and q alike
    target = _model(0, vocab=6, block=16, layers=1, width=16, sharpen=3.0)
    draft = _model(3, vocab=6, block=16, layers=1, width=16, sharpen=3.0)
    prompt = [1, 2]
    exact = _joint_first_two(target, prompt, sampler)
    n = 800
    counts = Counter()
    stats = SpeculativeStats()
    for seed in range(n):
        gen = torch.Generator().manual_seed(seed)
        counts[
            tuple(speculative_tokens(target, draft, prompt, 2, sampler, generator=gen, k=2, stats=stats))
        ] += 1
    stat, df = _chi2(counts, exact, n)
    assert df >= 4 and stat < _chi2_critical(df), (stat, df)
    assert 0 < stats.accepted < stats.proposed  # the draft was both right and wrong: both paths ran
    # the test has power: the draft's distribution differs enough to be rejected by it
    wrong = _joint_first_two(draft, prompt, sampler)
    wrong_stat, wrong_df = _chi2(Counter({key: round(p * n) for key, p in wrong.items()}), exact, n)
    assert wrong_stat > _chi2_critical(wrong_df)


@pytest.mark.slow
def test_accept_or_correct_emits_the_targets_distribution():
    """The rule alone on fixed p and q: the first emitted token follows p_1 whatever the guess."""
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4]])
    q = torch.tensor([[0.1, 0.1, 0.2, 0.6]])
    n = 6000
    counts = Counter()
    for _ in range(n):
        guess = int(torch.multinomial(q[0], 1, generator=gen))
        counts[accept_or_correct(p, q, [guess], gen)[0]] += 1
    stat, df = _chi2(counts, {i: float(p[0, i]) for i in range(3)}, n)
    assert counts[3] == 0 and stat < _chi2_critical(df)
    # all accepted: the bonus token is drawn from the last row
    assert accept_or_correct(torch.eye(4)[[0, 2]], torch.eye(4)[[0]], [0], gen) == [0, 2]


def test_rollback_then_refeed_gives_the_same_logits():
    model = _model(0)
    cache = KVCache.for_model(model, 1)
    model(torch.tensor([[1, 2, 3]]), kv_cache=cache)
    model(torch.tensor([[9, 9]]), kv_cache=cache)
    cache.rollback(3)
    again, _ = model(torch.tensor([[4]]), kv_cache=cache, last_only=True)
    fresh, _ = model(torch.tensor([[1, 2, 3, 4]]), last_only=True)
    torch.testing.assert_close(again, fresh)
    with pytest.raises(GptlabError, match="roll"):
        cache.rollback(9)


def test_refusals(char_tokenizer):
    target = _model(0)
    with pytest.raises(GptlabError, match="repetition penalty"):
        list(speculative_tokens(target, target, [1], 3, Sampler(repetition_penalty=1.2)))
    with pytest.raises(GptlabError, match="k >= 1"):
        list(speculative_tokens(target, target, [1], 3, k=0))
    local_cfg = GPTConfig(
        vocab_size=65, block_size=32, n_layer=1, n_head=2, n_embd=16, attention="local", window=8
    )
    with pytest.raises(GptlabError, match="local-attention"):
        check_draft(target, GPT(local_cfg))
    from gptlab.tokenizers import CharTokenizer

    other = CharTokenizer.train("abc")
    with pytest.raises(GptlabError, match="same tokenizer"):
        check_draft(target, target, char_tokenizer, other)


def test_cli_draft(tiny_run, tmp_path, capsys):
    """`generate --draft`: greedy text equals the plain command's; --json reports the acceptance."""
    import json
    import shutil

    from gptlab.cli import main

    args = ["generate", "--model", str(tiny_run), "--prompt", "the ", "--max-new-tokens", "12", "--temperature", "0",
            "--json"]  # fmt: skip
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--draft", str(tiny_run), "--draft-k", "3"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert spec["samples"] == plain["samples"]
    assert spec["speculative"]["acceptance_rate"] == 1.0  # the draft is the target itself
    assert spec["speculative"]["k"] == 3 and spec["speculative"]["tokens_per_s"] > 0
    # a draft with another tokenizer is refused before anything is generated
    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    for path in other.rglob("tokenizer.json"):  # the run's and its checkpoints'
        tok = json.loads(path.read_text())
        tok["chars"][-1] = "\u00e9"  # still sorted, the same size, another character
        path.write_text(json.dumps(tok))
    assert main([*args, "--draft", str(other)]) != 0
    captured = capsys.readouterr()
    assert "same tokenizer" in captured.err and captured.out == ""
