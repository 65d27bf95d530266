"""The recurrent baseline (model.arch = lstm / gru, gptlab/model/rnn.py): it learns, saves and
loads, decodes with its recurrent state exactly as a step-by-step argmax, runs through the CLI's
training and perplexity, and what needs attention refuses it clearly."""

from __future__ import annotations

import json

import pytest
import torch
from samples import SHAKESPEARE

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.generate import GREEDY, generate
from gptlab.model import GPT, GPTConfig, KVCache, RecurrentLM, RecurrentState, apply_lora, build_model
from gptlab.model.hf import config_to_hf
from gptlab.rundir import load_model, save_model


def rnn_config(arch: str = "lstm", **overrides) -> GPTConfig:
    fields = dict(vocab_size=65, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0, arch=arch)
    return GPTConfig(**{**fields, **overrides})


def rnn(arch: str = "lstm", **overrides) -> RecurrentLM:
    torch.manual_seed(0)
    return build_model(rnn_config(arch, **overrides)).eval()


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
    """An LSTM run trained by `gptlab train` on the Shakespeare excerpt (char tokenizer, a few steps)."""
    out = tmp_path_factory.mktemp("lstm-run") / "run"
    args = ["train", f"data.input={json.dumps(str(SHAKESPEARE))}", "data.tokenizer=char", "model.arch=lstm",
            "model.block_size=32", "model.n_layer=2", "model.n_head=2", "model.n_embd=32",
            "train.batch_size=8", "train.max_steps=30", "optim.lr=0.01", "train.eval_every=10", "train.eval_batches=2",
            "train.sample_tokens=8", "train.progress=false", "--out", str(out), "--json"]  # fmt: skip
    assert main(args) == 0
    return out


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_builds_the_recurrent_model_with_a_tied_head(arch):
    model = rnn(arch)
    assert isinstance(model, RecurrentLM) and isinstance(
        model.rnn, {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[arch]
    )
    assert model.lm_head.weight is model.transformer.wte.weight
    C, V, gates = 32, 65, {"lstm": 4, "gru": 3}[arch]
    per_layer = 2 * gates * C * C + 2 * gates * C  # input and hidden matrices, two biases
    assert model.num_params() == V * C + 2 * per_layer
    assert model.num_params(non_embedding=True) == model.num_params()  # the tied head counts back in


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_overfits_a_tiny_batch(arch):
    model = rnn(arch).train()
    torch.manual_seed(1)
    x = torch.randint(0, 65, (2, 16))
    y = torch.roll(x, -1, dims=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    first = None
    for _ in range(400):
        _, loss = model(x, y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (
        first > 3.5 and loss.item() < 0.1
    )  # from ln(65) ~ 4.17 to memorised (a tied 32-wide head needs its embeddings to grow first)


def test_state_step_by_step_equals_the_whole_sequence():
    """Feeding tokens one at a time through a RecurrentState gives the logits of one full forward."""
    model = rnn()
    x = torch.randint(0, 65, (3, 12))
    full, _ = model(x)
    state = KVCache.for_model(model, 3)
    assert isinstance(state, RecurrentState)
    steps = torch.cat([model(x[:, t : t + 1], kv_cache=state)[0] for t in range(12)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)


def test_targets_minus_100_do_not_count():
    model = rnn()
    x = torch.randint(0, 65, (1, 8))
    y = x.clone()
    y[0, 4:] = -100
    logits, loss = model(x, y)
    manual = torch.nn.functional.cross_entropy(logits[0, :4], x[0, :4])
    torch.testing.assert_close(loss, manual)


def greedy_stepwise(model, prompt: list[int], n: int) -> list[int]:
    """Argmax of the model re-run on the last block_size tokens, one token at a time."""
    ids = list(prompt)
    for _ in range(n):
        logits, _ = model(torch.tensor([ids[-model.config.block_size :]]))
        ids.append(int(logits[0, -1].argmax()))
    return ids


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_greedy_generation_is_deterministic_and_equals_stepwise_argmax(arch):
    model = rnn(arch)
    prompts = [[5, 6, 7], [1], [9, 8, 7, 6, 5, 4, 3]]  # different lengths: left padding in one batch
    n = 20  # 7 + 20 > block_size 16: the context slides
    out = generate(model, prompts, n, GREEDY)
    assert out == generate(model, prompts, n, GREEDY)
    assert out == [greedy_stepwise(model, p, n) for p in prompts]


def test_save_load_round_trip(tmp_path, char_tokenizer):
    model = rnn("gru", tie_weights=False)
    save_model(tmp_path / "run", model, char_tokenizer)
    assert json.loads((tmp_path / "run" / "model.json").read_text())["config"]["arch"] == "gru"
    loaded, _ = load_model(tmp_path / "run")
    assert isinstance(loaded, RecurrentLM) and loaded.config == model.config
    x = torch.randint(0, 65, (2, 10))
    torch.testing.assert_close(loaded(x)[0], model(x)[0])


def test_a_weights_file_of_the_wrong_shape_is_refused(tmp_path, char_tokenizer):
    save_model(tmp_path / "run", rnn(), char_tokenizer)
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    meta["config"]["n_embd"] = 64
    (tmp_path / "run" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(GptlabError, match=r"tensor .* has shape \(65, 32\), expected \(65, 64\)"):
        load_model(tmp_path / "run")


def test_old_model_json_without_arch_loads_as_gpt(tmp_path, tiny_model, char_tokenizer):
    save_model(tmp_path / "run", tiny_model, char_tokenizer)
    path = tmp_path / "run" / "model.json"
    meta = json.loads(path.read_text())
    del meta["config"]["arch"]  # written before the field existed
    path.write_text(json.dumps(meta))
    loaded, _ = load_model(tmp_path / "run")
    assert type(loaded) is GPT and loaded.config.arch == "gpt"


def test_n_head_is_not_read_by_a_recurrent_model():
    assert rnn_config(n_embd=30, n_head=4).n_embd == 30  # a GPT would need n_embd divisible by n_head
    with pytest.raises(GptlabError, match="divisible by n_head"):
        rnn_config("gpt", n_embd=30, n_head=4)


def test_unknown_arch_is_an_error_naming_the_field():
    with pytest.raises(GptlabError, match="arch must be one of gpt, lstm, gru"):
        rnn_config("transformer-xl")


def test_hf_export_quantisation_and_lora_refuse_clearly():
    from gptlab.model.quantize import quantize_model

    with pytest.raises(GptlabError, match="cannot export to GPT-2 format: arch is 'lstm'"):
        config_to_hf(rnn_config())
    with pytest.raises(
        GptlabError, match="LoRA adapts a transformer's Linear layers; this model is a recurrent LSTM"
    ):
        apply_lora(rnn())
    with pytest.raises(GptlabError, match="quantisation works on GPTs only; this model is a recurrent GRU"):
        quantize_model(rnn("gru"), bits=8)


@pytest.mark.slow
def test_perplexity_cli_on_an_lstm_run(lstm_run, capsys):
    from gptlab.eval.perplexity import evaluate_text

    capsys.readouterr()
    assert main(["eval", "perplexity", "--model", str(lstm_run), "--input", str(SHAKESPEARE), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    model, tok = load_model(lstm_run)
    assert isinstance(model, RecurrentLM)
    direct = evaluate_text(model, tok, SHAKESPEARE.read_text("utf-8"))
    assert report["perplexity"] == pytest.approx(direct.perplexity, rel=1e-6)
    assert 1 < report["perplexity"] < 65  # 30 steps: better than uniform over the 65 characters


@pytest.mark.slow
@pytest.mark.parametrize("analysis", ["attention", "lens"])
def test_attention_analyses_refuse_a_recurrent_model(lstm_run, capsys, analysis):
    capsys.readouterr()
    assert main(["analyze", analysis, "--model", str(lstm_run), "--text", "To be"]) == 2
    out, err = capsys.readouterr()
    assert "needs a transformer" in err and "LSTM" in err and "Traceback" not in err


@pytest.mark.slow
def test_generate_cli_on_an_lstm_run(lstm_run, capsys):
    capsys.readouterr()
    argv = [
        "generate",
        "--model",
        str(lstm_run),
        "--prompt",
        "To be",
        "--max-new-tokens",
        "12",
        "--temperature",
        "0",
    ]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    assert capsys.readouterr().out == first and first.startswith("To be")


def test_beam_search_with_one_beam_is_greedy_decoding():
    """Beam search reorders the recurrent state (RecurrentState.select) as it does a KV cache."""
    from gptlab.beam import beam_search

    model = rnn()
    prompts = [[5, 6, 7], [1]]
    greedy = generate(model, prompts, 20, GREEDY)
    beams = beam_search(model, prompts, 20, num_beams=1)
    assert [h.tokens for h in beams] == [row[len(p) :] for row, p in zip(greedy, prompts)]


def test_choice_scoring_is_the_sum_of_the_models_log_probabilities():
    from gptlab.eval.scoring import score_choices

    model = rnn()
    (scores,) = score_choices(model, [([1, 2, 3], [[4, 5], [6]])])
    logp = model(torch.tensor([[1, 2, 3, 4, 5]]))[0].log_softmax(-1)[0]  # (T, V)
    assert scores[0].logprobs.sum().item() == pytest.approx((logp[2, 4] + logp[3, 5]).item(), abs=1e-5)
    assert scores[1].logprobs.sum().item() == pytest.approx(logp[2, 6].item(), abs=1e-5)
