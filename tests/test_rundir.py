"""Run directories: round trip, tied weights stored once, clear errors, crash-safe saves."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
from safetensors import safe_open

from gptlab.errors import GptlabError
from gptlab.model import GPT, GPTConfig
from gptlab.model.modes import resolve_device
from gptlab.rundir import load_model, save_model

TEXT = "To be, or not to be, that is the question: héllo wörld 😀\n"


@pytest.fixture(scope="module")
def tokenizer():
    from gptlab.tokenizers import CharTokenizer

    return CharTokenizer.train(TEXT)


def make_model(tokenizer, seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32)
    return GPT(GPTConfig(**{**cfg, **overrides})).eval()


def logits(model: GPT) -> torch.Tensor:
    idx = torch.arange(10)[None] % model.config.vocab_size
    with torch.no_grad():
        return model(idx)[0]


@pytest.mark.parametrize("overrides", [dict(), dict(tie_weights=False, pos_encoding="rope", bias=False)])
def test_round_trip_keeps_config_weights_and_tokenizer(tmp_path, tokenizer, overrides):
    model = make_model(tokenizer, **overrides)
    save_model(tmp_path, model, tokenizer, extra={"step": 7})
    loaded, tok = load_model(tmp_path)
    assert loaded.config == model.config
    torch.testing.assert_close(logits(loaded), logits(model), rtol=0, atol=0)
    assert tok.encode(TEXT) == tokenizer.encode(TEXT)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["format"] == "gptlab-model" and meta["extra"] == {"step": 7}
    assert meta["n_params"] == model.num_params()
    assert not loaded.training
    if model.config.tie_weights:
        assert loaded.lm_head.weight is loaded.transformer.wte.weight


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's imports warn about torch.jit
def test_compiled_model_is_saved_without_the_wrapper_prefix(tmp_path, tokenizer):
    model = make_model(tokenizer)
    save_model(tmp_path, torch.compile(model), tokenizer)
    loaded, _ = load_model(tmp_path)
    torch.testing.assert_close(logits(loaded), logits(model), rtol=0, atol=0)


def test_tied_weights_are_stored_once(tmp_path, tokenizer):
    save_model(tmp_path / "tied", make_model(tokenizer), tokenizer)
    save_model(tmp_path / "untied", make_model(tokenizer, tie_weights=False), tokenizer)
    with safe_open(tmp_path / "tied" / "model.safetensors", "pt") as f:
        tied = set(f.keys())
    with safe_open(tmp_path / "untied" / "model.safetensors", "pt") as f:
        untied = set(f.keys())
    assert "lm_head.weight" not in tied and "transformer.wte.weight" in tied
    assert untied == tied | {"lm_head.weight"}


def test_load_with_dtype(tmp_path, tokenizer):
    save_model(tmp_path, make_model(tokenizer), tokenizer)
    model, _ = load_model(tmp_path, dtype="bfloat16")
    assert model.transformer.wte.weight.dtype == torch.bfloat16
    with pytest.raises(GptlabError, match="dtype"):
        load_model(tmp_path, dtype="int8")


def test_corrupt_and_truncated_weights_are_clear_errors(tmp_path, tokenizer):
    save_model(tmp_path, make_model(tokenizer), tokenizer)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(GptlabError, match="model.safetensors"):
        load_model(tmp_path)
    weights.write_bytes(b"\x00" * 64 + data[64:])  # header length and JSON destroyed
    with pytest.raises(GptlabError, match="model.safetensors"):
        load_model(tmp_path)
    weights.unlink()
    with pytest.raises(GptlabError, match="not found.*model.safetensors"):
        load_model(tmp_path)


def test_wrong_shape_names_the_tensor_and_both_shapes(tmp_path, tokenizer):
    model = make_model(tokenizer)
    save_model(tmp_path, model, tokenizer)
    weights = tmp_path / "model.safetensors"
    state = safetensors.torch.load_file(weights)
    state["transformer.h.1.mlp.c_fc.weight"] = torch.zeros(64, 32)  # (4 * n_embd, n_embd) expected
    safetensors.torch.save_file(state, weights)
    with pytest.raises(GptlabError) as e:
        load_model(tmp_path)
    msg = str(e.value)
    assert "model.safetensors" in msg and "'transformer.h.1.mlp.c_fc.weight' has shape (64, 32)" in msg
    assert "expected (128, 32)" in msg


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda m: {**m, "format": "something"}, ["not a gptlab model file"]),
        (lambda m: {**m, "version": 99}, ["version", "99"]),
        (lambda m: {**m, "config": {**m["config"], "n_layers": 2}}, ["n_layers"]),
        (lambda m: {**m, "config": {**m["config"], "norm": "batchnorm"}}, ["norm", "batchnorm"]),
    ],
)
def test_bad_model_json_is_a_clear_error_naming_the_file(tmp_path, tokenizer, edit, words):
    save_model(tmp_path, make_model(tokenizer), tokenizer)
    meta = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps(edit(meta)))
    with pytest.raises(GptlabError) as e:
        load_model(tmp_path)
    assert "model.json" in str(e.value) and all(w in str(e.value) for w in words)


def test_missing_paths_are_clear_errors(tmp_path, tokenizer):
    with pytest.raises(GptlabError, match="model not found"):
        load_model(tmp_path / "nope")
    with pytest.raises(GptlabError, match="neither a gptlab run directory"):
        load_model(tmp_path)
    save_model(tmp_path, make_model(tokenizer), tokenizer)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(GptlabError, match="tokenizer.json"):
        load_model(tmp_path)


def test_a_crash_while_saving_weights_leaves_the_previous_model_loadable(tmp_path, tokenizer, monkeypatch):
    old = make_model(tokenizer, seed=1)
    save_model(tmp_path, old, tokenizer)

    def crash_midway(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial checkpoint bytes")
        raise KeyboardInterrupt  # Ctrl-C halfway through writing

    monkeypatch.setattr(safetensors.torch, "save_file", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        save_model(tmp_path, make_model(tokenizer, seed=2), tokenizer)
    monkeypatch.undo()
    loaded, _ = load_model(tmp_path)
    torch.testing.assert_close(logits(loaded), logits(old), rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors", "tokenizer.json"]


def test_a_crash_while_writing_model_json_leaves_the_previous_model_loadable(
    tmp_path, tokenizer, monkeypatch
):
    import gptlab.rundir

    old = make_model(tokenizer, seed=1)
    save_model(tmp_path, old, tokenizer, extra={"step": 1})

    def crash(path, obj, indent=2):
        raise OSError("disk full")

    monkeypatch.setattr(gptlab.rundir, "atomic_write_json", crash)
    with pytest.raises(GptlabError, match=f"cannot save the model to {tmp_path}: disk full"):
        save_model(tmp_path, old, tokenizer, extra={"step": 2})
    monkeypatch.undo()
    loaded, _ = load_model(tmp_path)
    assert json.loads((tmp_path / "model.json").read_text())["extra"] == {"step": 1}
    torch.testing.assert_close(logits(loaded), logits(old), rtol=0, atol=0)


def test_cli_generate_from_a_run(tmp_path, tokenizer, capsys):
    from gptlab.cli import main

    save_model(tmp_path, make_model(tokenizer), tokenizer)
    args = [
        "generate",
        "--model",
        str(tmp_path),
        "--prompt",
        "To be",
        "--max-new-tokens",
        "12",
        "--seed",
        "5",
    ]
    assert main([*args, "--json", "--num-samples", "2", "--top-k", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["seed"] for s in out["samples"]] == [5, 6] and out["top_k"] == 5
    assert all(
        0 < len(s["completion"]) <= 12 for s in out["samples"]
    )  # a char tokenizer: <= 1 char per token
    assert main([*args, "--temperature", "0"]) == 0
    plain = capsys.readouterr().out
    assert main([*args, "--temperature", "0", "--stream"]) == 0
    assert capsys.readouterr().out == plain and plain.startswith("To be")
    assert main([*args, "--top-p", "2"]) == 2
    assert "top_p" in capsys.readouterr().err
    assert main([*args, "--temperature", "nan"]) == 2  # refused by the argument parser
    assert "finite number" in capsys.readouterr().err
    assert main([*args, "--device", "tpu9"]) == 2
    assert "error: unknown device 'tpu9'" in capsys.readouterr().err


def test_devices_are_checked(tmp_path, tokenizer):
    save_model(tmp_path, make_model(tokenizer), tokenizer)
    with pytest.raises(GptlabError, match="unknown device 'gpu0'"):
        load_model(tmp_path, device="gpu0")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(GptlabError, match="CUDA is not available"):
            load_model(tmp_path, device="cuda")
    else:
        with pytest.raises(GptlabError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_saving_over_a_file_is_a_clear_error(tmp_path, tokenizer):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(GptlabError, match="run directory .*run exists and is not a folder"):
        save_model(tmp_path / "run", make_model(tokenizer), tokenizer)
    assert (tmp_path / "run").read_text() == "not a folder"
    with pytest.raises(GptlabError, match="cannot save the model to .*inside"):
        save_model(tmp_path / "run" / "inside", make_model(tokenizer), tokenizer)


def test_a_tokenizer_larger_than_the_model_is_refused(tmp_path, tokenizer):
    save_model(tmp_path, make_model(tokenizer, vocab_size=tokenizer.vocab_size - 1), tokenizer)
    with pytest.raises(GptlabError, match="do not belong together"):
        load_model(tmp_path)


def test_dtype_names_and_auto(monkeypatch):
    from gptlab.model import modes

    assert modes.resolve_dtype("fp32") is torch.float32 and modes.resolve_dtype("BF16") is torch.bfloat16
    assert modes.resolve_dtype(None) is None and modes.resolve_dtype(torch.float16) is torch.float16
    monkeypatch.setattr(modes, "native_bf16", lambda device: device.type == "cpu")
    assert modes.resolve_dtype("auto") is torch.bfloat16
    monkeypatch.setattr(modes, "native_bf16", lambda device: False)
    assert modes.resolve_dtype("auto", "cpu") is torch.float32
    with pytest.raises(GptlabError, match="auto"):
        modes.resolve_dtype("float8")


def test_load_auto_dtype_is_bf16_where_native_and_exactly_fp32_elsewhere(tmp_path, tokenizer, monkeypatch):
    from gptlab.model import modes

    model = make_model(tokenizer)
    save_model(tmp_path, model, tokenizer)
    monkeypatch.setattr(modes, "native_bf16", lambda device: False)
    for name in ("auto", "fp32", "float32"):
        fp32, _ = load_model(tmp_path, dtype=name)
        assert fp32.transformer.wte.weight.dtype == torch.float32
        torch.testing.assert_close(logits(fp32), logits(model), rtol=0, atol=0)  # the fp32 path, unchanged
    monkeypatch.setattr(modes, "native_bf16", lambda device: True)
    bf16, _ = load_model(tmp_path, dtype="auto")
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    torch.testing.assert_close(logits(bf16).float(), logits(model), rtol=0.05, atol=0.05)


def test_auto_dtype_leaves_a_quantised_model_as_stored(tmp_path, tokenizer, monkeypatch):
    from gptlab.model import modes
    from gptlab.model.quantize import quantize_model

    save_model(tmp_path, quantize_model(make_model(tokenizer), 8), tokenizer)
    monkeypatch.setattr(modes, "native_bf16", lambda device: True)
    model, _ = load_model(tmp_path, dtype="auto")
    assert model.transformer.wte.qweight.dtype == torch.int8
    assert model.transformer.wte.scales.dtype == torch.float32


def test_serve_app_loads_the_model_in_the_dtype_asked(tmp_path, tokenizer):
    pytest.importorskip("fastapi")
    from gptlab.serve.app import create_app

    save_model(tmp_path, make_model(tokenizer), tokenizer)
    assert create_app(tmp_path).state.model.transformer.wte.weight.dtype == torch.float32
    app = create_app(tmp_path, dtype="bf16")
    assert app.state.model.transformer.wte.weight.dtype == torch.bfloat16
    with pytest.raises(GptlabError, match="unknown dtype"):
        create_app(tmp_path, dtype="int3")
