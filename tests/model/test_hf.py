"""GPT-2 weights both ways with Hugging Face transformers: logits and greedy decoding must match."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from samples import SHAKESPEARE

from gptlab.cli import main
from gptlab.convert import resolve_hf_source
from gptlab.errors import GptlabError
from gptlab.generate import GREEDY, generate, generate_text
from gptlab.hf_folder import from_hf_gpt2, to_hf_gpt2
from gptlab.model import GPT, GPTConfig
from gptlab.model.hf import config_from_hf, gpt_from_hf_state
from gptlab.rundir import load_model

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

VOCAB, CONTEXT = 300, 64
ATOL = 1e-4


def hf_model(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = dict(
        n_layer=2, n_head=2, n_embd=64, vocab_size=VOCAB, n_positions=CONTEXT, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**cfg, **overrides}))
    with torch.no_grad():  # random LayerNorm parameters too, so a swapped weight/bias would show
        for name, p in model.named_parameters():
            if "ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def hf_logits(model, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(idx).logits


def our_logits(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(idx)[0]


@pytest.fixture
def idx() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(tie_word_embeddings=False),
        dict(activation_function="relu", layer_norm_epsilon=1e-3),
        dict(activation_function="gelu_pytorch_tanh"),
        dict(activation_function="gelu_fast"),
        dict(n_layer=3, n_head=4, n_positions=CONTEXT + 16),
        dict(n_inner=256, reorder_and_upcast_attn=True),  # 4 * n_embd; upcasting is a no-op in fp32
    ],
)
def test_import_from_save_pretrained_matches_transformers(tmp_path, idx, overrides):
    theirs = hf_model(**overrides)
    theirs.save_pretrained(tmp_path)
    ours = from_hf_gpt2(tmp_path).eval()
    assert ours.config.tie_weights == theirs.config.tie_word_embeddings
    diff = (our_logits(ours, idx) - hf_logits(theirs, idx)).abs().max().item()
    assert diff < ATOL


def test_import_hub_style_files_with_mask_buffers_and_pytorch_bin(tmp_path, idx):
    """Hub checkpoints (e.g. openai-community/gpt2) have no 'transformer.' prefix and carry the
    causal-mask buffers 'h.N.attn.bias'; old ones are pytorch_model.bin."""
    theirs = hf_model(seed=1)
    state = {
        k.removeprefix("transformer."): v.clone()
        for k, v in theirs.state_dict().items()
        if k != "lm_head.weight"
    }
    for layer in range(2):
        state[f"h.{layer}.attn.bias"] = torch.tril(torch.ones(CONTEXT, CONTEXT)).view(1, 1, CONTEXT, CONTEXT)
        state[f"h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    theirs.config.save_pretrained(tmp_path)
    torch.save(state, tmp_path / "pytorch_model.bin")
    ours = from_hf_gpt2(tmp_path)
    assert (our_logits(ours, idx) - hf_logits(theirs, idx)).abs().max().item() < ATOL
    config = config_from_hf(theirs.config.to_dict())
    from_dict = gpt_from_hf_state({f"transformer.{k}": v for k, v in state.items()}, config)
    torch.testing.assert_close(our_logits(from_dict, idx), our_logits(ours, idx))


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(tie_weights=False), dict(bias=False), dict(activation="relu", norm_eps=1e-6)],
)
def test_export_loads_in_transformers_with_the_same_logits(tmp_path, idx, overrides):
    torch.manual_seed(2)
    cfg = GPTConfig(vocab_size=VOCAB, block_size=CONTEXT, n_layer=2, n_head=2, n_embd=64, **overrides)
    ours = GPT(cfg).eval()
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if "ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    to_hf_gpt2(ours, tmp_path)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert theirs.num_parameters() == ours.num_params() + (0 if cfg.bias else _zero_bias_count(cfg))
    diff = (hf_logits(theirs, idx) - our_logits(ours, idx)).abs().max().item()
    assert diff < ATOL
    back = from_hf_gpt2(tmp_path)
    torch.testing.assert_close(our_logits(back, idx), our_logits(ours, idx))


def _zero_bias_count(cfg: GPTConfig) -> int:
    """The zero biases HF GPT-2 has where a bias-free model has none."""
    C = cfg.n_embd
    per_layer = 3 * C + C + 4 * C + C + 2 * C  # c_attn, attn c_proj, c_fc, mlp c_proj, ln_1 + ln_2
    return cfg.n_layer * per_layer + C  # + ln_f


def test_kv_cache_greedy_decoding_of_an_imported_model_matches_transformers_generate(tmp_path):
    theirs = hf_model(seed=3)
    theirs.save_pretrained(tmp_path)
    ours = from_hf_gpt2(tmp_path)
    prompt = torch.randint(0, VOCAB, (1, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = theirs.generate(
            prompt, max_new_tokens=30, do_sample=False, eos_token_id=None, pad_token_id=0
        )
    assert torch.equal(generate(ours, prompt, 30, GREEDY), expected)


@pytest.mark.parametrize("overrides", [dict(pos_encoding="rope"), dict(norm="rmsnorm")])
def test_export_refuses_what_gpt2_cannot_express(tmp_path, overrides):
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=CONTEXT, n_layer=1, n_head=2, n_embd=32, **overrides))
    with pytest.raises(GptlabError, match="cannot export"):
        to_hf_gpt2(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(model_type="llama"), ["model_type", "gpt2"]),
        (dict(activation_function="gelu"), ["activation_function"]),
        (dict(n_inner=100), ["n_inner"]),
        (dict(scale_attn_by_inverse_layer_idx=True), ["scale_attn_by_inverse_layer_idx"]),
        (dict(n_embd=65), ["n_embd", "n_head"]),
    ],
)
def test_incompatible_hf_configs_are_clear_errors(tmp_path, change, words):
    hf_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(GptlabError) as e:
        from_hf_gpt2(tmp_path)
    assert all(w in str(e.value) for w in words)


def test_wrong_shape_and_missing_weights_name_the_tensor(tmp_path):
    theirs = hf_model()
    theirs.save_pretrained(tmp_path)
    state = {k: v for k, v in theirs.state_dict().items() if k != "lm_head.weight"}
    state["transformer.h.1.mlp.c_fc.weight"] = torch.zeros(64, 200)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    with pytest.raises(GptlabError) as e:
        from_hf_gpt2(tmp_path)
    assert "transformer.h.1.mlp.c_fc.weight" in str(e.value) and "(200, 64)" in str(e.value)
    del state["transformer.h.1.mlp.c_fc.weight"]
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    with pytest.raises(GptlabError, match="missing tensor 'transformer.h.1.mlp.c_fc.weight'"):
        from_hf_gpt2(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(GptlabError, match="no weights"):
        from_hf_gpt2(tmp_path)


def test_hub_name_without_network_is_a_clear_error(monkeypatch, tmp_path):
    import huggingface_hub

    def offline(**kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(GptlabError, match="cannot download 'gpt2'.*no network|without network"):
        resolve_hf_source("gpt2")
    with pytest.raises(GptlabError, match="no such directory"):
        resolve_hf_source(str(tmp_path / "nowhere" / "x"))
    assert resolve_hf_source(str(tmp_path)) == tmp_path


def test_truncated_or_corrupt_weight_files_are_clear_errors(tmp_path):
    hf_model().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 1000])  # truncated: the header promises more bytes
    with pytest.raises(GptlabError, match="model.safetensors.*truncated or not a safetensors file"):
        from_hf_gpt2(tmp_path)
    weights.write_bytes(b"garbage" * 100)
    with pytest.raises(GptlabError, match="model.safetensors"):
        from_hf_gpt2(tmp_path)
    weights.unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(GptlabError, match="pytorch_model.bin"):
        from_hf_gpt2(tmp_path)


@pytest.mark.parametrize(
    "config, words", [([1, 2], ["config.json", "JSON object"]), ({"layer_norm_epsilon": "x"}, ["norm_eps"])]
)
def test_malformed_config_json_is_a_clear_error(tmp_path, config, words):
    hf_model().save_pretrained(tmp_path)
    if isinstance(config, dict):
        config = {**json.loads((tmp_path / "config.json").read_text()), **config}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(GptlabError) as e:
        from_hf_gpt2(tmp_path)
    assert all(w in str(e.value) for w in words)


@pytest.fixture(scope="module")
def bpe():
    from gptlab.tokenizers import BPETokenizer

    text = SHAKESPEARE.read_text("utf-8")
    return BPETokenizer.train(text, vocab_size=VOCAB, special_tokens=["<|endoftext|>"])


@pytest.mark.slow
def test_cli_convert_generate_eval_export_round_trip(tmp_path, bpe, capsys):
    """The CLI by hand: a random HF GPT-2 saved with save_pretrained (+ its tokenizer files) ->
    convert -> generate -> eval perplexity -> export, which transformers loads with equal logits."""
    from gptlab.eval.perplexity import evaluate_text
    from gptlab.tokenizers.interop import save_hf_gpt2_tokenizer

    hf_dir, run, out = tmp_path / "hf", tmp_path / "run", tmp_path / "export"
    theirs = hf_model(seed=4, bos_token_id=bpe.eot_id, eos_token_id=bpe.eot_id)
    theirs.save_pretrained(hf_dir)
    save_hf_gpt2_tokenizer(bpe, hf_dir)

    assert main(["convert", "--from", "hf", str(hf_dir), "--out", str(run), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_params"] == theirs.num_parameters() and summary["vocab_size"] == VOCAB
    ours, tok = load_model(run)
    text = "I had always thought Jack Gisburn rather a cheap genius"
    assert tok.encode(text) == bpe.encode(text)
    ids = torch.tensor([bpe.encode(text)])
    assert (our_logits(ours, ids) - hf_logits(theirs, ids)).abs().max().item() < ATOL

    prompt = ["generate", "--model", str(run), "--prompt", "I had", "--max-new-tokens", "8"]
    assert main([*prompt, "--temperature", "0"]) == 0
    plain = capsys.readouterr().out
    assert main([*prompt, "--temperature", "0", "--stream"]) == 0
    assert capsys.readouterr().out == plain and plain.startswith("I had")
    assert plain == "I had" + generate_text(ours, tok, "I had", max_new_tokens=8, sampler=GREEDY) + "\n"

    verdict = SHAKESPEARE
    argv = ["eval", "perplexity", "--model", str(run), "--input", str(verdict), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    direct = evaluate_text(ours, bpe, verdict.read_text("utf-8"))
    assert report["perplexity"] == pytest.approx(direct.perplexity, rel=1e-6)
    assert report["bits_per_byte"] == pytest.approx(direct.bits_per_byte, rel=1e-6)

    assert main(["export", "--model", str(run), "--format", "hf", "--out", str(out)]) == 0
    capsys.readouterr()
    again = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok(text)["input_ids"] == bpe.encode(text)
    assert (hf_logits(again, ids) - hf_logits(theirs, ids)).abs().max().item() < ATOL


def test_cli_bad_input_is_error_and_exit_2(tmp_path, bpe, capsys):
    hf_dir, a_file = tmp_path / "hf", tmp_path / "file.txt"
    hf_model().save_pretrained(hf_dir)
    a_file.write_text("x")
    cases = [
        (["convert", "--from", "hf", str(hf_dir), "--out", str(tmp_path / "r")], "no tokenizer"),
        (
            ["convert", "--from", "hf", str(tmp_path / "nope" / "x"), "--out", str(tmp_path / "r")],
            "no such directory",
        ),
        (
            ["export", "--model", str(tmp_path / "nope"), "--format", "hf", "--out", str(tmp_path / "e")],
            "not found",
        ),
    ]
    from gptlab.tokenizers.interop import save_hf_gpt2_tokenizer

    save_hf_gpt2_tokenizer(bpe, tmp_path / "hf2")
    hf_model().save_pretrained(tmp_path / "hf2")
    cases += [
        (["convert", "--from", "hf", str(tmp_path / "hf2"), "--out", str(a_file)], "not a folder"),
        (
            ["export", "--model", str(tmp_path / "hf2"), "--format", "hf", "--out", str(a_file)],
            "not a folder",
        ),
    ]
    capsys.readouterr()
    for argv, words in cases:  # any exception other than a GptlabError would propagate out of main
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err, (argv, err)
    assert a_file.read_text() == "x"


def test_a_tokenizer_larger_than_the_model_is_refused(tmp_path, bpe):
    from gptlab.tokenizers.interop import save_hf_gpt2_tokenizer

    hf_model(vocab_size=VOCAB - 1).save_pretrained(tmp_path)
    save_hf_gpt2_tokenizer(bpe, tmp_path)
    with pytest.raises(GptlabError, match="tokenizer has 300 tokens but the model only 299"):
        load_model(tmp_path)
