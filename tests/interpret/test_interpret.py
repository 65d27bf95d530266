"""Attention weights, rollout, head statistics, noise robustness and the logit lens."""

from __future__ import annotations

import pytest
import torch

from gptlab.errors import GptlabError
from gptlab.interpret.attention import attention_rollout, attention_weights, head_statistics, noise_robustness
from gptlab.interpret.lens import lens_logits, logit_lens
from gptlab.model import GPT, GPTConfig


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("tiny", vocab_size=40, n_layer=3, n_embd=32, n_head=4, block_size=24)).eval()


IDS = [3, 7, 1, 9, 3, 7, 2, 5, 1, 3]


def test_attention_rows_sum_to_one_and_are_causal(model):
    attns = attention_weights(model, IDS)
    assert len(attns) == 3 and all(a.shape == (4, 10, 10) for a in attns)
    for a in attns:
        torch.testing.assert_close(a.sum(-1), torch.ones(4, 10))
        assert torch.all(a.triu(diagonal=1) == 0)  # no query sees a later key


def test_attention_matches_the_fused_path(model):
    """The explicit weights are what the model computes: same logits as the fused forward."""
    idx = torch.tensor([IDS])
    logits, _ = model.forward_with_attention(idx)
    torch.testing.assert_close(logits, model(idx)[0], rtol=1e-5, atol=1e-5)


def test_rollout_is_causal_normalised_and_reduces_to_the_single_layer():
    T = 6
    a = torch.rand(2, T, T).tril()
    a = a / a.sum(-1, keepdim=True)
    r = attention_rollout([a, a])
    assert r.shape == (T, T)
    torch.testing.assert_close(r.sum(-1), torch.ones(T))
    assert torch.all(r.triu(diagonal=1).abs() < 1e-7)
    torch.testing.assert_close(attention_rollout([a], residual=False), a.mean(0))
    mixed = 0.5 * a.mean(0) + 0.5 * torch.eye(T)
    torch.testing.assert_close(attention_rollout([a, a]), mixed @ mixed)


def test_head_statistics_recognise_hand_built_heads():
    T = 5
    previous = torch.zeros(T, T)
    previous[0, 0] = 1
    previous[torch.arange(1, T), torch.arange(0, T - 1)] = 1  # each query looks one token back
    sink = torch.zeros(T, T)
    sink[:, 0] = 1  # everything on the first token
    uniform = torch.tril(torch.ones(T, T))
    uniform = uniform / uniform.sum(-1, keepdim=True)
    ids = [4, 5, 4, 5, 6]  # tokens 2 and 3 repeat earlier ones
    stats = head_statistics([torch.stack([previous, sink, uniform])], ids)
    prev, snk, uni = stats
    assert prev["previous_token"] == pytest.approx(1.0) and prev["entropy"] == pytest.approx(0.0)
    assert prev["mean_distance"] == pytest.approx(4 / 5)  # distance 1 for queries 1..4, 0 for query 0
    assert snk["first_token"] == pytest.approx(1.0) and snk["previous_token"] == pytest.approx(0.25)
    # the duplicate queries (positions 2 and 3) put all their attention on the first token for
    # the sink head: position 2's duplicate is position 0 (1.0), position 3's is position 1 (0.0)
    assert snk["duplicate_token"] == pytest.approx(0.5)
    assert uni["entropy"] == pytest.approx(sum(torch.log(torch.arange(1.0, T + 1)).tolist()) / T, rel=1e-5)
    assert head_statistics([torch.stack([uniform])], [1, 2, 3, 4, 5])[0]["duplicate_token"] is None


def test_noise_moves_attention_more_as_sigma_grows(model):
    before = attention_weights(model, IDS)
    results = noise_robustness(model, IDS, sigmas=[0.0, 0.1, 1.0, 10.0], samples=2)
    means = [r["tv_mean"] for r in results]
    assert means[0] == pytest.approx(0.0, abs=1e-6)
    assert means[1] < means[2] < means[3] <= 1.0
    assert all(len(r["tv_per_layer"]) == 3 for r in results)
    with pytest.raises(GptlabError, match=">= 0"):
        noise_robustness(model, IDS, sigmas=[-1.0])
    # the hooks are removed afterwards: the model is clean again
    for a, b in zip(attention_weights(model, IDS), before):
        torch.testing.assert_close(a, b)


def test_lens_last_layer_equals_the_models_logits(model):
    lens = lens_logits(model, IDS)
    assert lens.shape == (4, 10, 40)  # embeddings + 3 blocks
    with torch.no_grad():
        torch.testing.assert_close(lens[-1], model(torch.tensor([IDS]))[0][0], rtol=1e-5, atol=1e-5)
    top = logit_lens(model, IDS, top_k=3)
    assert len(top) == 4 and len(top[0]) == 10 and len(top[0][0]) == 3
    with torch.no_grad():
        last = model(torch.tensor([IDS]))[0][0, -1].softmax(-1)
    assert top[-1][-1][0]["id"] == int(last.argmax())
    assert top[-1][-1][0]["prob"] == pytest.approx(float(last.max()), rel=1e-5)


def test_bad_inputs_are_clear_errors(model):
    with pytest.raises(GptlabError, match="empty"):
        attention_weights(model, [])
    with pytest.raises(GptlabError, match="context"):
        attention_weights(model, list(range(30)))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, model):
    from gptlab.rundir import save_model
    from gptlab.tokenizers import CharTokenizer

    tok = CharTokenizer.train(["the cat sat on the mat, abcdefghijklmnopqrstuvwxyz"])
    assert tok.vocab_size <= 40
    path = tmp_path_factory.mktemp("run") / "tiny"
    save_model(path, model, tok)
    return path


def test_cli_analyze_views(run_dir, capsys):
    import json

    from gptlab.cli import main

    text = "the cat sat on the"
    assert main(["analyze", "attention", "--model", str(run_dir), "--text", text, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["heads"]) == 3 * 4 and len(out["tokens"]) == len(text)
    assert sum(out["rollout_last_token"]) == pytest.approx(1.0, abs=1e-5)
    assert main(["analyze", "lens", "--model", str(run_dir), "--text", text, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["last_position"]) == 4
    assert (
        main(["analyze", "saliency", "--model", str(run_dir), "--text", text, "--target", "m", "--json"]) == 0
    )
    sal = json.loads(capsys.readouterr().out)
    assert sal["target"] == "m" and sal["completeness_gap"] < 1e-2
    assert set(sal["attributions"]) == {"gradient", "gradient_x_input", "integrated_gradients", "occlusion"}
    assert main(["analyze", "attention", "--model", str(run_dir), "--text", text]) == 0
    assert "rollout into the last token" in capsys.readouterr().out
    assert main(["analyze", "saliency", "--model", str(run_dir), "--text", text, "--target", "ma"]) == 2
    assert "exactly one token" in capsys.readouterr().err
    assert main(["analyze", "attention", "--model", str(run_dir), "--text", text, "--sigmas", "a,b"]) == 2
