"""The BERT-style encoder and the T5-style encoder-decoder: masking, MLM training from the CLI,
fill-mask, classification on an encoder, save/load, and refusals of what they cannot serve."""

import json

import pytest
import torch
from samples import SHAKESPEARE

from gptlab.errors import GptlabError
from gptlab.fill import fill_mask, mask_ids
from gptlab.model import GPTClassifier, GPTConfig, KVCache, build_model
from gptlab.model.encdec import shift_right
from gptlab.rundir import load_model, save_model
from gptlab.train.mlm import MASK_RATE, mask_tokens, mlm_model_config


def _config(arch: str, **kw) -> GPTConfig:
    return GPTConfig(
        **{"vocab_size": 40, "block_size": 24, "n_layer": 2, "n_head": 2, "n_embd": 16, "arch": arch, **kw}
    )


def test_masking_is_bert_80_10_10():
    idx = torch.randint(0, 30, (400, 50))
    inputs, labels = mask_tokens(idx, mask_id=39, vocab=30, generator=torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert torch.equal(labels[chosen], idx[chosen])  # the labels are the original tokens
    assert torch.equal(inputs[~chosen], idx[~chosen])  # unchosen positions are untouched
    assert chosen.any(dim=1).all()  # every row has a loss term
    assert abs(chosen.float().mean().item() - MASK_RATE) < 0.01
    n = chosen.sum().item()
    masked = (inputs[chosen] == 39).sum().item() / n
    kept = (inputs[chosen] == idx[chosen]).sum().item() / n  # unchanged, or a random draw of itself
    assert abs(masked - 0.8) < 0.02 and abs(kept - (0.1 + 0.1 / 30)) < 0.02
    assert inputs.max() <= 39 and (inputs[chosen & (inputs != 39)] < 30).all()


def test_encoder_is_bidirectional_and_padding_is_invisible():
    torch.manual_seed(0)
    model = build_model(_config("encoder")).eval()
    idx = torch.randint(0, 40, (1, 10))
    with torch.no_grad():
        base = model.encode(idx)
        changed = idx.clone()
        changed[0, 9] = (changed[0, 9] + 1) % 40
        assert not torch.allclose(model.encode(changed)[0, 0], base[0, 0])  # position 0 sees the last token
        padded = torch.cat((idx, torch.randint(0, 40, (1, 5))), dim=1)
        torch.testing.assert_close(model.encode(padded, torch.tensor([10]))[:, :10], base)


def test_classifier_on_an_encoder_ignores_padding_with_first_and_mean_pooling():
    torch.manual_seed(0)
    encoder = build_model(_config("encoder")).eval()
    idx = torch.randint(0, 40, (1, 7))
    padded = torch.cat((idx, torch.zeros(1, 4, dtype=torch.long)), dim=1)
    for pooling in ("first", "mean"):
        clf = GPTClassifier(encoder, 2, pooling=pooling).eval()
        with torch.no_grad():
            torch.testing.assert_close(clf(padded, torch.tensor([7]))[0], clf(idx, torch.tensor([7]))[0])
    with pytest.raises(GptlabError, match="needs an encoder"):
        GPTClassifier(
            build_model(GPTConfig(vocab_size=40, block_size=8, n_layer=1, n_head=2, n_embd=8)), 2, "first"
        )


@pytest.mark.parametrize("arch", ["encoder", "encdec"])
def test_variants_save_load_and_refuse_decoder_calls(arch, tmp_path, char_tokenizer):
    torch.manual_seed(0)
    cfg = _config(arch, vocab_size=char_tokenizer.vocab_size + 1, mask_id=char_tokenizer.vocab_size)
    model = build_model(cfg).eval()
    save_model(tmp_path / "run", model, char_tokenizer)
    loaded, _ = load_model(tmp_path / "run")
    idx = torch.randint(0, cfg.vocab_size, (2, 9))
    kwargs = {"mlm": True} if arch == "encoder" else {"src": idx}
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx, **kwargs)[0], model(idx, **kwargs)[0], atol=0, rtol=0)
    for call in (model, model.hidden_states, model.forward_with_attention):
        with pytest.raises(GptlabError, match="decoder-only"):
            call(idx)
    with pytest.raises(GptlabError, match="decoder-only"):
        KVCache.for_model(model, 1)


def test_shift_right_starts_with_the_start_token_and_hides_ignored_targets():
    targets = torch.tensor([[5, 6, 7, -100, -100]])
    assert shift_right(targets, 0).tolist() == [[0, 5, 6, 7, 0]]


def test_mlm_config_reserves_the_mask_after_the_tokenizer():
    cfg = mlm_model_config(_config("encoder"), 30)
    assert (cfg.vocab_size, cfg.mask_id) == (31, 30)
    with pytest.raises(GptlabError, match="model.arch=encoder"):
        mlm_model_config(_config("gpt"), 30)


@pytest.mark.slow
def test_mlm_training_from_the_cli_then_fill(tmp_path, capsys):
    from gptlab.cli import main

    out = tmp_path / "enc"
    args = ["train", f"data.input={json.dumps(str(SHAKESPEARE))}", "data.tokenizer=char", "model.arch=encoder",
            "train.objective=mlm", "model.block_size=32", "model.n_layer=2", "model.n_head=2", "model.n_embd=32",
            "train.batch_size=16", "train.max_steps=60", "train.eval_every=30", "train.eval_batches=2",
            "optim.lr=3e-3", "optim.warmup_steps=5", "train.progress=false", "--out", str(out), "--json"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r["val_loss"] for r in history if "val_loss" in r]
    assert evals[-1] < evals[0]  # the masked-token loss falls
    model, tok = load_model(out)
    assert model.config.mask_id == tok.vocab_size and result["n_params"] == model.num_params()
    text = "To be, or not to b[MASK]"
    assert mask_ids(text, tok, model.config.mask_id)[-1] == model.config.mask_id
    fills = fill_mask(model, tok, text, k=3)
    assert len(fills) == 1 and len(fills[0]["fills"]) == 3
    probs = [f["probability"] for f in fills[0]["fills"]]
    assert probs == sorted(probs, reverse=True) and all(0 < p <= 1 for p in probs)
    assert main(["generate", "--model", str(out), "--prompt", "To"]) != 0
    assert "decoder-only" in capsys.readouterr().err
    with pytest.raises(GptlabError, match="no \\[MASK\\]"):
        fill_mask(model, tok, "no mask here")


@pytest.mark.slow
def test_seq2seq_learns_a_letter_shift_and_continues_from_its_run(tmp_path):
    from gptlab.finetune.seq2seq import Seq2SeqOptions, finetune_seq2seq, translate
    from gptlab.run import Run
    from gptlab.tokenizers import CharTokenizer

    rng = __import__("random").Random(0)
    words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 5))) for _ in range(400)]
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"src": w, "tgt": w.translate(str.maketrans("abcdefgh", "bcdefgha"))}) + "\n"
            for w in words
        )
    )
    CharTokenizer.train("abcdefgh").save(tmp_path / "tok.json")
    options = Seq2SeqOptions(str(data), "src", "tgt", str(tmp_path / "run"), tokenizer=str(tmp_path / "tok.json"),
                             n_layer=1, n_head=2, n_embd=64, block_size=8, epochs=20, batch_size=32, lr=2e-3,
                             test_fraction=0.1)  # fmt: skip
    result = finetune_seq2seq(options)
    losses = [h["train_loss"] for h in result["history"]]
    # it learns the alignment (cross-attention): unseen words come out shifted (chance is ~0)
    assert losses[-1] < losses[0] / 2 and result["test_exact_match"] >= 0.2
    model, tok = Run.open(tmp_path / "run").load()
    assert translate(model, tok, ["abc"], 8) == translate(model, tok, ["abc"], 8)  # deterministic, loads
    more = Seq2SeqOptions(
        str(data), "src", "tgt", str(tmp_path / "more"), model=str(tmp_path / "run"), epochs=1
    )
    assert finetune_seq2seq(more)["n_params"] == result["n_params"]
