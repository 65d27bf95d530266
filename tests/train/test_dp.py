"""DP-SGD (gptlab.train.dp): the from-scratch RDP accountant equals opacus's, the DP-SGD step
(per-example gradients by torch.func, clipping, noise) equals opacus's GradSampleModule +
DPOptimizer with the noise off, the noise has the calibrated scale, and both training paths
(`gptlab finetune classify --dp-epsilon`, `gptlab train --dp-epsilon`) report epsilon <= target."""

from __future__ import annotations

import json
import math
import string
import warnings

import pytest
import torch
from samples import SHAKESPEARE
from synthetic_task import synthetic_rows as shared_rows

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.model import GPT, GPTConfig
from gptlab.model.heads import GPTClassifier
from gptlab.rundir import save_model
from gptlab.tokenizers.base import EOT
from gptlab.tokenizers.char import CharTokenizer
from gptlab.train import dp

opacus = pytest.importorskip("opacus")
# opacus's hooks warn that no module input requires grad (token ids): expected, harmless
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

VOCAB = 40


def tiny_gpt(pos_encoding="learned", seed=0, **kw) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=VOCAB, block_size=16, n_layer=2, n_head=2, n_embd=16, pos_encoding=pos_encoding, **kw
    )
    return GPT(config)


def lm_batch(b=6, t=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, VOCAB, (b, t), generator=g)  # (B, T)
    return x, torch.randint(0, VOCAB, (b, t), generator=g)


def loop_per_sample_grads(model, x, y):
    """The reference: one backward per example."""
    out = {n: [] for n, p in model.named_parameters()}
    for i in range(len(x)):
        model.zero_grad(set_to_none=True)
        model(x[i : i + 1], y[i : i + 1])[1].backward()
        for n, p in model.named_parameters():
            out[n].append(p.grad.clone())
    return {n: torch.stack(v) for n, v in out.items()}


# --- accounting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sigma, q, steps, delta",
    [(1.1, 0.01, 1000, 1e-5), (0.8, 0.2, 30, 1e-3), (3.0, 0.001, 10, 1e-6), (0.5, 0.05, 200, 1e-5)],
)
def test_epsilon_matches_opacus_rdp_accountant(sigma, q, steps, delta):
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp

    accountant = RDPAccountant()
    for _ in range(steps):  # the way opacus's optimizer hook steps it
        accountant.step(noise_multiplier=sigma, sample_rate=q)
    with warnings.catch_warnings():  # opacus warns when the best order is the largest one
        warnings.simplefilter("ignore")
        theirs = accountant.get_epsilon(delta=delta)
    ours = dp.rdp_epsilon(sigma, q, steps, delta)
    assert ours == pytest.approx(theirs, rel=1e-6)
    # per order too, integer and fractional alphas alike (not only at the optimum)
    alphas = [1.5, 2, 3.7, 8, 20.5, 32]
    ref = compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=alphas)
    mine = [steps * dp.rdp_sampled_gaussian(q, sigma, a) for a in alphas]
    assert mine == pytest.approx(list(ref), rel=1e-6)
    assert dp.opacus_epsilon(sigma, q, steps, delta) == pytest.approx(theirs, rel=1e-12)


def test_epsilon_grows_with_steps_and_falls_with_noise():
    eps = [dp.rdp_epsilon(1.0, 0.02, s, 1e-5) for s in (1, 10, 100, 1000)]
    assert eps == sorted(eps) and eps[0] > 0
    assert dp.rdp_epsilon(2.0, 0.02, 100, 1e-5) < dp.rdp_epsilon(1.0, 0.02, 100, 1e-5)
    assert dp.rdp_epsilon(1.0, 0.02, 0, 1e-5) == 0.0


def test_noise_calibration_spends_at_most_the_target():
    plan = dp.DPPlan.make(8.0, 1.0, num_examples=1000, batch_size=20, steps=150)
    assert plan.delta == 1e-5 and plan.sample_rate == pytest.approx(0.02)
    spent = plan.epsilon(150)
    assert 8.0 - 0.05 < spent <= 8.0
    assert dp.rdp_epsilon(plan.noise_multiplier, plan.sample_rate, 150, plan.delta) == pytest.approx(spent)
    looser = dp.DPPlan.make(1.0, 1.0, num_examples=1000, batch_size=20, steps=150)
    assert looser.noise_multiplier > plan.noise_multiplier  # a smaller budget needs more noise
    with pytest.raises(GptlabError, match="not smaller"):
        dp.DPPlan.make(8.0, 1.0, num_examples=10, batch_size=10, steps=5)


def test_default_delta_is_below_one_over_n():
    assert dp.default_delta(558) == 1e-5
    assert dp.default_delta(3_000_000) == 1e-7
    for n in (10, 1234, 10**6, 7 * 10**8):
        assert dp.default_delta(n) < 1 / n and dp.default_delta(n) <= 1e-5
    assert dp.default_delta(10**6) == 1e-7  # strictly below 1/N, not equal


# --- the DP-SGD step ---------------------------------------------------------------------------


def test_per_sample_gradients_equal_one_backward_per_example():
    """Learned position table and tied embedding/LM head: the cases opacus's hooks cannot do."""
    model = tiny_gpt("learned")
    x, y = lm_batch()
    params = {n: p.detach() for n, p in model.named_parameters()}
    grads, losses, _ = dp.per_sample_gradients(model, dp.lm_sample_loss, params, x, y)
    ref = loop_per_sample_grads(model, x, y)
    assert set(grads) == set(ref) and "transformer.wpe.weight" in grads
    for name in ref:
        torch.testing.assert_close(grads[name], ref[name], atol=1e-6, rtol=1e-4)
    assert losses.shape == (len(x),)


def test_per_sample_gradients_equal_opacus_grad_sample_module():
    """A RoPE GPT (no position table) is one opacus's hooks handle: tied weights included, equal."""
    from opacus import GradSampleModule

    model = tiny_gpt("rope")
    x, y = lm_batch()
    params = {n: p.detach() for n, p in model.named_parameters()}
    grads, _, _ = dp.per_sample_gradients(model, dp.lm_sample_loss, params, x, y)
    wrapped = GradSampleModule(model, loss_reduction="mean")
    wrapped(x, y)[1].backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad_sample, atol=1e-6, rtol=1e-4)


def test_dp_step_without_noise_equals_opacus_clipped_gradient():
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    model = tiny_gpt("rope")
    x, y = lm_batch(b=7)
    clip = 0.05  # small enough that most examples are clipped
    ours, stats = dp.dp_sgd_gradients(
        model, dp.lm_sample_loss, (x, y), clip, noise_multiplier=0.0, expected_batch_size=7.0, chunk_size=3
    )
    assert stats.batch_size == 7 and stats.clipped_fraction > 0.5

    wrapped = GradSampleModule(model, loss_reduction="mean")
    optimizer = DPOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1),
        noise_multiplier=0.0,
        max_grad_norm=clip,
        expected_batch_size=7,
    )
    optimizer.zero_grad()
    wrapped(x, y)[1].backward()
    optimizer.pre_step()  # clip per example, sum, add (zero) noise, divide by the expected batch
    for name, p in model.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, atol=1e-7, rtol=1e-4)
    # and the clipped gradient really differs from the plain mean gradient
    plain = torch.autograd.grad(model(x, y)[1], [model.transformer.wte.weight])[0]
    assert not torch.allclose(plain, ours["transformer.wte.weight"], atol=1e-4)


def test_noise_has_std_sigma_c_over_expected_batch():
    model = tiny_gpt("learned")
    empty = (torch.empty(0, 12, dtype=torch.long), torch.empty(0, 12, dtype=torch.long))
    sigma, clip, expected = 1.3, 0.7, 5.0
    g = torch.Generator().manual_seed(0)
    grads, stats = dp.dp_sgd_gradients(model, dp.lm_sample_loss, empty, clip, sigma, expected, 4, g)
    assert stats.batch_size == 0  # an empty Poisson batch: the step is the noise alone
    noise = torch.cat([v.flatten() for v in grads.values()])
    assert noise.numel() > 5000
    assert noise.std().item() == pytest.approx(sigma * clip / expected, rel=0.05)
    assert abs(noise.mean().item()) < 0.05 * sigma * clip / expected


def test_poisson_sampler_is_a_function_of_the_step():
    sampler = dp.PoissonSampler(1000, 0.03, seed=5)
    assert torch.equal(sampler.indices(7), dp.PoissonSampler(1000, 0.03, seed=5).indices(7))
    sizes = [len(sampler.indices(s)) for s in range(300)]
    assert len(set(sizes)) > 5  # Poisson: the batch size varies
    assert sum(sizes) / len(sizes) == pytest.approx(30, rel=0.1)
    assert not torch.equal(sampler.indices(1), sampler.indices(2))


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_classifier_sample_loss_equals_the_classifier_forward(pooling):
    gpt = tiny_gpt("learned", dropout=0.0)
    clf = GPTClassifier(gpt, 3, pooling=pooling).eval()
    idx = torch.randint(0, VOCAB, (4, 10))
    lengths = torch.tensor([10, 3, 7, 1])
    labels = torch.tensor([0, 2, 1, 2])
    wrapper = dp.ClassifierSampleLoss(clf)
    for i in range(4):
        logits, loss = clf(idx[i : i + 1], lengths[i : i + 1], labels[i : i + 1])
        my_loss, my_logits = wrapper(idx[i], lengths[i], labels[i])
        torch.testing.assert_close(my_logits, logits[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(my_loss, loss, atol=1e-6, rtol=1e-5)


# --- end to end --------------------------------------------------------------------------------


def synthetic_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    return shared_rows(n, seed, max_len=10)


@pytest.mark.slow
def test_finetune_classify_with_dp_reports_epsilon(tmp_path, capsys):
    tok = CharTokenizer.train(string.ascii_letters + " :\n", special_tokens=[EOT])
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    base = save_model(tmp_path / "base", gpt, tok)
    data = tmp_path / "task.tsv"
    data.write_text("label\ttext\n" + "".join(f"{y}\t{x}\n" for y, x in synthetic_rows(120)))
    out = tmp_path / "dp"
    args = ["finetune", "classify", "--model", str(base), "--data", str(data), "--out", str(out),
            "--epochs", "2", "--batch-size", "16", "--lr", "3e-3", "--device", "cpu", "--prompting-shots",
            "--no-progress", "--dp-epsilon", "8", "--dp-max-grad-norm", "1.0"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "differential privacy: epsilon" in printed
    results = json.loads((out / "results.json").read_text())
    privacy = results["privacy"]
    n_train = results["splits"]["train"]
    assert privacy["num_examples"] == n_train and privacy["delta"] == 1e-5
    assert privacy["steps"] == 2 * math.ceil(n_train / 16)
    assert 7.5 < privacy["epsilon"] <= 8.0
    assert privacy["sample_rate"] == pytest.approx(16 / n_train)
    assert privacy["noise_multiplier"] > 0.3 and privacy["max_grad_norm"] == 1.0
    assert results["test"]["accuracy"] is not None


@pytest.mark.slow
def test_dp_pretraining_reports_epsilon(tmp_path, capsys):
    run = tmp_path / "pre"
    args = ["train", f"data.input={json.dumps(str(SHAKESPEARE))}", "data.tokenizer=char",
            "model.block_size=16", "model.n_layer=1", "model.n_head=2", "model.n_embd=16",
            "train.batch_size=8", "train.max_steps=4", "train.eval_every=2", "train.eval_batches=1",
            "train.sample_tokens=0", "train.progress=false", "--out", str(run),
            "--dp-epsilon", "4", "--dp-max-grad-norm", "0.5", "--json"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    privacy = json.loads((run / "privacy.json").read_text())
    assert result["privacy"] == privacy and privacy["steps"] == 4 and privacy["max_grad_norm"] == 0.5
    assert 3.9 < privacy["epsilon"] <= 4.0
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    spent = [r["dp_epsilon"] for r in evals if r["kind"] == "eval"]
    assert len(spent) == 2 and 0 < spent[0] < spent[1] == pytest.approx(privacy["epsilon"])
    assert "epsilon = 4.0" in (run / "config.toml").read_text()
    verdict = json.dumps(str(SHAKESPEARE))
    bad = [
        "train",
        "dp.epsilon=2",
        "train.compile=true",
        f"data.input={verdict}",
        "--out",
        str(tmp_path / "x"),
    ]
    assert main(bad) == 2
    assert "torch.func" in capsys.readouterr().err
