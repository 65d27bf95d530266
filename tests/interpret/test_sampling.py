"""The sampling study: the sweep and its validation, parity with gptlab.generate, the per-step
distribution checked against independent recomputations (teacher-forced forward, top-k, top-p),
temperature and entropy, reproducibility, the HTML page and ``gptlab analyze sampling``."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.generate import generate
from gptlab.interpret.sampling import (
    SamplingSetting,
    build_sweep,
    plot_sampling,
    render_sampling_html,
    sample_steps,
    sampling_study,
)
from gptlab.model import GPT, GPTConfig

CORPUS = "the cat sat on the mat, a dog ran to the big red barn <script>xyz"
PROMPT = "the cat"
BLOCK = 32


@pytest.fixture(scope="module")
def tokenizer():
    from gptlab.tokenizers import CharTokenizer

    return CharTokenizer.train([CORPUS])


@pytest.fixture(scope="module")
def model(tokenizer) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig.preset(
        "tiny", vocab_size=tokenizer.vocab_size, n_layer=2, n_embd=32, n_head=4, block_size=BLOCK
    )
    gpt = GPT(cfg).eval()
    with torch.no_grad():
        # a freshly initialised model is almost uniform over the vocabulary; larger (tied) embeddings
        # give peaked, step-dependent distributions, so the settings actually differ
        gpt.transformer.wte.weight.mul_(6)
    return gpt


@pytest.fixture(scope="module")
def prompt_ids(tokenizer) -> list[int]:
    return tokenizer.encode(PROMPT)


def teacher_forced_logits(model: GPT, prompt_ids: list[int], tokens: torch.Tensor) -> torch.Tensor:
    """A plain forward pass (no cache) over prompt + sampled tokens (N, n): the logits (N, n, V)
    that predicted each sampled token."""
    n = tokens.size(1)
    idx = torch.cat((torch.tensor([prompt_ids] * tokens.size(0)), tokens), dim=1)  # (N, P + n)
    assert idx.size(1) <= BLOCK, "keep teacher forcing inside the context"
    with torch.no_grad():
        logits, _ = model(idx)  # (N, P + n, V)
    return logits[:, len(prompt_ids) - 1 : len(prompt_ids) - 1 + n].double()


# ---------------------------------------------------------------------------------- sweep, errors


def test_sweep_one_factor_at_a_time_grid_and_labels():
    labels = [s.label for s in build_sweep()]
    assert labels == ["T=0.1", "T=0.7", "T=1.2", "top-p=0.5", "top-p=0.9"]
    sweep = build_sweep([0, 1.0], [10], [0.9])
    assert [s.label for s in sweep] == ["T=0 (greedy)", "T=1", "top-k=10", "top-p=0.9"]
    assert sweep[2] == SamplingSetting(1.0, 10, 1.0) and sweep[3] == SamplingSetting(1.0, 0, 0.9)
    grid = build_sweep([0.7, 1.2], [], [0.5, 1.0], grid=True)
    assert [s.label for s in grid] == ["T=0.7, top-p=0.5", "T=0.7", "T=1.2, top-p=0.5", "T=1.2"]
    assert build_sweep([1.0], [], [1.0]) == [SamplingSetting()]  # duplicates dropped
    assert SamplingSetting(0.7, 10, 0.9).label == "T=0.7, top-k=10, top-p=0.9"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=-0.1), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_k=-1), "top-k"),
        (dict(top_k=2.5), "top-k"),
        (dict(top_p=0.0), "top-p"),
        (dict(top_p=1.5), "top-p"),
    ],
)
def test_invalid_settings_raise(kwargs, message):
    with pytest.raises(GptlabError, match=message):
        SamplingSetting(**kwargs)


def test_invalid_study_arguments_raise(model, tokenizer, prompt_ids):
    with pytest.raises(GptlabError, match="empty"):
        build_sweep([], [], [])
    with pytest.raises(GptlabError, match="top-p"):
        build_sweep([1.0], [], [0.5, 2.0])
    with pytest.raises(GptlabError, match="samples"):
        sample_steps(model, prompt_ids, SamplingSetting(), 0, 5, 0)
    with pytest.raises(GptlabError, match="max_new_tokens"):
        sample_steps(model, prompt_ids, SamplingSetting(), 2, 0, 0)
    with pytest.raises(GptlabError, match="no sampling settings"):
        sampling_study(model, tokenizer, PROMPT, [])


# ----------------------------------------------------------------------- the distribution, per step


@pytest.mark.slow
@pytest.mark.parametrize(
    "setting",
    [SamplingSetting(0.7), SamplingSetting(top_k=5), SamplingSetting(top_p=0.9), SamplingSetting(1.3, 8, 0.8)]
    + [SamplingSetting(0.0)],
    ids=lambda s: s.label,
)
def test_same_tokens_as_generate(model, prompt_ids, setting):
    """Same seed, same settings: the study draws the tokens gptlab.generate draws, also once the
    context is full and slides (7 prompt tokens + 40 new > 32)."""
    n, new = 4, 40
    steps = sample_steps(model, prompt_ids, setting, n, new, seed=3)
    expected = generate(
        model,
        torch.tensor([prompt_ids] * n),
        new,
        setting.sampler(),
        generator=torch.Generator().manual_seed(3),
    )
    assert torch.equal(steps["tokens"], expected[:, len(prompt_ids) :])


def test_steps_match_a_teacher_forced_forward_pass(model, tokenizer, prompt_ids):
    """Model log-probs and entropies, and the sampling distribution's entropy and log-prob, equal
    independent recomputations from plain forward-pass logits: softmax(top_p(top_k(logits / T)))
    built here by sorting, without gptlab.generate's filters."""
    setting = SamplingSetting(0.8, 6, 0.7)
    steps = sample_steps(model, prompt_ids, setting, 5, 20, seed=1)
    logits = teacher_forced_logits(model, prompt_ids, steps["tokens"])  # (N, n, V)
    tokens = steps["tokens"][..., None]
    model_lp = logits.log_softmax(-1)
    torch.testing.assert_close(
        steps["model_logprob"].double(), model_lp.gather(-1, tokens)[..., 0], atol=1e-4, rtol=0
    )
    model_h = -(model_lp.exp() * model_lp).sum(-1)
    torch.testing.assert_close(steps["model_entropy"].double(), model_h, atol=1e-4, rtol=0)

    scaled = logits / setting.temperature
    order = scaled.argsort(dim=-1, descending=True)
    probs_k = scaled.gather(-1, order[..., : setting.top_k]).softmax(
        -1
    )  # (N, n, k) renormalised over the top k
    cum = probs_k.cumsum(-1)
    keep = (cum - probs_k < setting.top_p).sum(-1)  # (N, n): tokens until the mass reaches p
    assert torch.equal(steps["nucleus"], keep)
    mask = torch.arange(setting.top_k) < keep[..., None]
    sampling_p = probs_k * mask
    sampling_p = sampling_p / sampling_p.sum(-1, keepdim=True)
    entropy = torch.special.entr(sampling_p).sum(-1)
    torch.testing.assert_close(steps["sampling_entropy"].double(), entropy, atol=1e-4, rtol=0)
    rank = (order[..., : setting.top_k] == tokens).int().argmax(-1, keepdim=True)  # sampled token's rank
    assert bool((rank[..., 0] < keep).all()), "a sampled token lies outside the nucleus"
    torch.testing.assert_close(
        steps["sampling_logprob"].double(), sampling_p.gather(-1, rank)[..., 0].log(), atol=1e-4, rtol=0
    )

    result = sampling_study(model, tokenizer, PROMPT, [setting], n_samples=5, max_new_tokens=20, seed=1)
    record = result["settings"][0]
    assert record["mean_logprob"] == pytest.approx(float(model_lp.gather(-1, tokens).mean()), abs=1e-5)
    assert record["per_step"]["model_entropy"] == pytest.approx(model_h.mean(0).tolist(), abs=1e-4)


@pytest.mark.parametrize("p", [0.3, 0.6, 0.95])
def test_top_p_nucleus_is_the_smallest_set_reaching_p(model, prompt_ids, p):
    steps = sample_steps(model, prompt_ids, SamplingSetting(top_p=p), 6, 20, seed=2)
    probs = teacher_forced_logits(model, prompt_ids, steps["tokens"]).softmax(-1)  # (N, n, V) float64
    cum = probs.sort(dim=-1, descending=True).values.cumsum(-1)
    smallest = (cum < p).sum(-1) + 1  # the first k whose top-k mass reaches p
    # float32 sampling vs float64 here may disagree only where a cumulative mass is within rounding of p
    clear = ((cum - p).abs() > 1e-4).all(-1)
    assert clear.float().mean() > 0.9
    assert torch.equal(steps["nucleus"][clear], smallest[clear])
    assert steps["nucleus"].min() >= 1 and steps["nucleus"].max() < probs.size(-1)


@pytest.mark.parametrize("k", [1, 3, 7, 1000])
def test_top_k_caps_the_nucleus_at_k(model, tokenizer, prompt_ids, k):
    steps = sample_steps(model, prompt_ids, SamplingSetting(top_k=k), 4, 15, seed=0)
    vocab = model.config.vocab_size
    assert bool((steps["nucleus"] == min(k, vocab)).all())  # random logits have no ties: exactly k
    assert bool((steps["effective"] <= min(k, vocab) + 1e-3).all())
    if k == 1:
        assert bool((steps["sampling_entropy"].abs() < 1e-6).all())


def test_greedy_and_near_zero_temperature_collapse_the_samples(model, tokenizer):
    n = 6
    result = sampling_study(
        model, tokenizer, PROMPT, build_sweep([0, 1e-3, 1.0], [], []), n_samples=n, max_new_tokens=30
    )
    greedy, cold, warm = result["settings"]
    assert greedy["nucleus_size"] == 1 and greedy["nucleus_size_max"] == 1
    assert greedy["sampling_entropy"] == 0 and greedy["mean_sampling_logprob"] == 0
    assert set(greedy["per_step"]["nucleus_size"]) == {1.0}
    assert len(set(greedy["samples"])) == 1
    # identical samples: each n-gram occurs at least n times, so distinct-n <= 1/n
    assert greedy["distinct_1"] <= 1 / n + 1e-9 and greedy["distinct_2"] <= 1 / n + 1e-9
    # T -> 0: the same tokens as greedy, one effective choice, but (unfiltered) the whole vocabulary kept
    assert cold["token_ids"] == greedy["token_ids"]
    assert cold["effective_size"] == pytest.approx(1.0, abs=1e-3)
    assert cold["nucleus_size"] == result["vocab_size"]
    assert len(set(warm["samples"])) == n and warm["distinct_2"] > greedy["distinct_2"]
    assert warm["model_entropy"] == pytest.approx(warm["sampling_entropy"], abs=1e-5)  # T=1, no filter
    assert warm["mean_logprob"] == pytest.approx(warm["mean_sampling_logprob"], abs=1e-5)


def test_higher_temperature_raises_sampling_entropy(model, tokenizer):
    temps = [0, 0.3, 0.6, 1.0, 1.5, 3.0]
    result = sampling_study(
        model, tokenizer, PROMPT, build_sweep(temps, [], []), n_samples=8, max_new_tokens=20
    )
    records = result["settings"]
    first = [r["per_step"]["sampling_entropy"][0] for r in records]  # the same context for every T
    mean = [r["sampling_entropy"] for r in records]
    assert all(a < b for a, b in zip(first, first[1:])), first
    assert all(a < b for a, b in zip(mean, mean[1:])), mean
    assert mean[-1] <= math.log(result["vocab_size"])


def test_results_are_reproducible_and_independent_of_other_settings(model, tokenizer):
    a, b = SamplingSetting(0.9), SamplingSetting(top_p=0.8)
    alone = sampling_study(model, tokenizer, PROMPT, [b], n_samples=4, max_new_tokens=12, seed=5)
    both = sampling_study(model, tokenizer, PROMPT, [a, b], n_samples=4, max_new_tokens=12, seed=5)
    assert both["settings"][1] == alone["settings"][0]
    assert sampling_study(model, tokenizer, PROMPT, [a, b], n_samples=4, max_new_tokens=12, seed=5) == both
    other = sampling_study(model, tokenizer, PROMPT, [b], n_samples=4, max_new_tokens=12, seed=6)
    assert other["settings"][0]["token_ids"] != alone["settings"][0]["token_ids"]
    json.dumps(both)  # JSON-serialisable as it is


# -------------------------------------------------------------------------------------- views, CLI


def _no_network(page: str) -> None:
    for url in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert not url.startswith(("http:", "https:", "//")), url
    assert "http://" not in page and "https://" not in page


def test_html_page_is_self_contained_and_escapes_samples(model, tokenizer):
    result = sampling_study(
        model, tokenizer, PROMPT, build_sweep([0.7], [4], [0.9]), n_samples=3, max_new_tokens=8
    )
    result["settings"][0]["samples"][0] = "<script>alert(1)</script>"
    png = plot_sampling(result)
    assert png.startswith(b"\x89PNG")
    page = render_sampling_html(result, png)
    _no_network(page)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for section in ("metrics", "plots", "samples"):
        assert f'id="{section}"' in page
    assert 'src="data:image/png;base64,' in page
    for label in ("T=0.7", "top-k=4", "top-p=0.9"):
        assert label in page
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, model, tokenizer):
    from gptlab.rundir import save_model

    path = tmp_path_factory.mktemp("sampling") / "run"
    save_model(path, model, tokenizer)
    return path


def test_cli_json_and_out(run_dir, tmp_path, capsys):
    out = tmp_path / "views"
    args = ["analyze", "sampling", "--model", str(run_dir), "--prompt", PROMPT, "--temperatures", "0,0.7"]
    args += ["--top-k", "5", "--top-p", "0.9", "--samples", "3", "--max-new-tokens", "6", "--seed", "1"]
    assert main([*args, "--json", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    labels = [r["label"] for r in result["settings"]]
    assert labels == ["T=0 (greedy)", "T=0.7", "top-k=5", "top-p=0.9"]
    assert result["n_samples"] == 3 and all(len(r["token_ids"]) == 3 for r in result["settings"])
    assert all(len(r["per_step"]["nucleus_size"]) == 6 for r in result["settings"])
    assert result["html"] == str(out / "sampling.html")
    page = (out / "sampling.html").read_text()
    _no_network(page)
    assert (out / "sampling.png").read_bytes().startswith(b"\x89PNG")

    assert main([*args, "--grid"]) == 0  # the table: 2 temperatures x 1 top-k x 1 top-p
    printed = capsys.readouterr().out
    assert "T=0.7, top-k=5, top-p=0.9" in printed and "distinct-2" in printed and "nucleus" in printed
    assert printed.count("--- ") == 2  # one sample per setting


def test_cli_rejects_bad_values(run_dir, capsys):
    base = ["analyze", "sampling", "--model", str(run_dir), "--prompt", PROMPT]
    assert main([*base, "--top-k", "ten"]) == 2
    assert "--top-k" in capsys.readouterr().err
    assert main([*base, "--temperatures", "-1"]) == 2
    assert "temperature" in capsys.readouterr().err
    assert main([*base, "--samples", "0"]) == 2


def test_analyze_all_runs_the_default_sweep(run_dir, tmp_path):
    """`gptlab analyze all` runs the sampling study with the default sweep, its own sample counts."""
    from gptlab.interpret.analyses import sampling as sampling_analysis
    from gptlab.interpret.analysis import AllOptions
    from gptlab.run import Run

    run = Run.open(run_dir)
    options = sampling_analysis.in_all(run, AllOptions(text=PROMPT, samples=2, max_new_tokens=4))
    assert (options.samples, options.max_new_tokens, options.prompt) == (2, 4, PROMPT)
    page = sampling_analysis.run(run, options).write(tmp_path / "all")
    assert page == tmp_path / "all" / "sampling.html"
    text = page.read_text()
    assert all(label in text for label in ("T=0.1", "T=0.7", "T=1.2", "top-p=0.5", "top-p=0.9"))
    assert (tmp_path / "all" / "sampling.png").is_file()
