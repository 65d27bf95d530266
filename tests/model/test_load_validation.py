"""Loading untrusted files: the config checked against the weights file's header before anything
is built, NaN weights, unreadable files, absurdly nested JSON, absurd tokenizer ids."""

from __future__ import annotations

import builtins
import copy
import json
import os
import time
import warnings

import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gptlab.rundir as rundir
from gptlab.cli import main
from gptlab.data.tasks import read_json_records
from gptlab.errors import GptlabError
from gptlab.hf_folder import from_hf_gpt2, to_hf_gpt2
from gptlab.io import load_safetensors, parse_json, read_json, read_safetensors_header, torch_load_safe
from gptlab.model import GPT, GPTConfig
from gptlab.model.quantize import quantize_model
from gptlab.rundir import load_model, save_model
from gptlab.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer

TEXT = "To be, or not to be, that is the question.\n"
DEEP = "[" * 100_000


@pytest.fixture(scope="module")
def char_tok():
    return CharTokenizer.train(TEXT, special_tokens=["<|endoftext|>"])


def make_run(path, tok, quantize_bits=None, **overrides):
    torch.manual_seed(0)
    cfg = dict(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32)
    model = GPT(GPTConfig(**{**cfg, **overrides})).eval()
    if quantize_bits:
        quantize_model(model, quantize_bits, group_size=32)
    save_model(path, model, tok)
    return path


def edit_config(run, **fields):
    meta = json.loads((run / "model.json").read_text())
    for key, value in fields.items():
        if value is None:
            del meta["config"][key]
        else:
            meta["config"][key] = value
    (run / "model.json").write_text(json.dumps(meta))


def load_error(run) -> str:
    with pytest.raises(GptlabError) as e:
        load_model(run)
    return str(e.value)


# --- the config against the weights file's header ------------------------------------------------


@pytest.mark.parametrize("quantize_bits", [None, 8, 4])
@pytest.mark.parametrize(
    "field, value, words",
    [
        ("n_layer", 1_000_000_000, ["n_layer", "at most"]),  # hung (building 10^9 blocks) before
        ("n_embd", 2**40, ["n_embd", "at most"]),
        ("vocab_size", 2**40, ["vocab_size", "at most"]),
        ("block_size", 10**12, ["block_size", "at most"]),
        ("n_head", 10**9, ["n_head", "at most"]),
        ("n_layer", 5, ["says n_layer=5", "holds 2 blocks"]),
        ("n_layer", 1, ["says n_layer=1", "holds 2 blocks"]),
        ("n_embd", 64, ["says n_embd=64", "n_embd=32"]),
        ("vocab_size", 1000, ["says vocab_size=1000"]),
        ("block_size", 64, ["says block_size=64", "block_size=32"]),
    ],
)
def test_a_config_that_does_not_match_the_weights_is_refused_quickly(
    tmp_path, char_tok, quantize_bits, field, value, words
):
    run = make_run(tmp_path, char_tok, quantize_bits)
    edit_config(run, **{field: value})
    start = time.perf_counter()
    msg = load_error(run)
    assert time.perf_counter() - start < 5
    assert "model.json" in msg and all(w in msg for w in words), msg


def test_the_header_is_checked_before_any_tensor_is_loaded(tmp_path, char_tok, monkeypatch):
    run = make_run(tmp_path, char_tok)
    edit_config(run, n_layer=3)

    def must_not_load(*args, **kwargs):
        raise AssertionError("the weights were loaded before the config was checked")

    monkeypatch.setattr(rundir, "load_safetensors", must_not_load)
    assert "says n_layer=3 but" in load_error(run)


def test_a_model_json_without_a_shape_field_is_an_error_not_a_default(tmp_path, char_tok):
    run = make_run(tmp_path, char_tok)
    for field in ("n_layer", "n_head", "n_embd", "vocab_size", "block_size"):
        meta = json.loads((run / "model.json").read_text())
        saved = copy.deepcopy(meta)
        del meta["config"][field]
        (run / "model.json").write_text(json.dumps(meta))
        msg = load_error(run)
        assert f"missing field {field!r}" in msg and "model.json" in msg
        (run / "model.json").write_text(json.dumps(saved))
    load_model(run)  # the options (bias, norm, ...) may still be left out of Python configs
    assert GPTConfig(n_layer=2).n_head == 12


@pytest.mark.parametrize("n_layer, words", [(10**9, ["n_layer", "at most"]), (3, ["n_layer=3", "2 blocks"])])
def test_a_hugging_face_config_is_checked_against_its_weights(tmp_path, n_layer, words):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=300, block_size=32, n_layer=2, n_head=2, n_embd=32)
    hf_dir = to_hf_gpt2(GPT(config), tmp_path / "hf")
    hf_config = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**hf_config, "n_layer": n_layer}))
    start = time.perf_counter()
    with pytest.raises(GptlabError) as e:
        from_hf_gpt2(hf_dir)
    assert time.perf_counter() - start < 5 and all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(n_head=0), ["n_head", "positive integer"]),
        (dict(n_layer=-3), ["n_layer", "positive integer"]),
        (dict(n_layer=2.0), ["n_layer", "positive integer"]),
        (dict(n_embd="32"), ["n_embd", "positive integer"]),
        (dict(n_layer=True), ["n_layer", "positive integer"]),
        (dict(n_head=3), ["divisible"]),
        (dict(dropout=1.5), ["dropout"]),
        (dict(norm_eps=float("inf")), ["norm_eps"]),
    ],
)
def test_out_of_range_config_values_name_the_field(tmp_path, char_tok, fields, words):
    run = make_run(tmp_path, char_tok)
    edit_config(run, **fields)
    msg = load_error(run)
    assert "model.json" in msg and all(w in msg for w in words), msg


def test_absurd_sizes_in_python_are_clear_errors_not_overflows():
    for field in ("n_embd", "n_layer", "vocab_size", "block_size"):
        with pytest.raises(GptlabError, match=f"{field} must be at most"):
            GPTConfig(**{field: 2**40})


def test_a_block_missing_from_the_file_is_named(tmp_path, char_tok):
    run = make_run(tmp_path, char_tok, n_layer=3)
    weights = run / "model.safetensors"
    state = safetensors.torch.load_file(weights)
    state = {k: v for k, v in state.items() if not k.startswith("transformer.h.1.")}
    safetensors.torch.save_file(state, weights)
    assert "block 1 has no tensors" in load_error(run)


def test_the_header_reader_refuses_garbage(tmp_path):
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file({"a": torch.zeros(2, 3)}, path)
    assert read_safetensors_header(path) == {"a": (2, 3)}
    data = path.read_bytes()
    for bad in (b"", b"\x01\x00", (10**12).to_bytes(8, "little") + data[8:], data[:20]):
        path.write_bytes(bad)
        with pytest.raises(GptlabError, match="w.safetensors"):
            read_safetensors_header(path)
    header = b'{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}'
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(GptlabError, match="'a' has no valid shape"):
        read_safetensors_header(path)


# --- NaN / inf weights ---------------------------------------------------------------------------


def poison(run, name="transformer.h.1.attn.c_proj.weight", value=float("nan")):
    weights = run / "model.safetensors"
    state = safetensors.torch.load_file(weights)
    state[name][0, 0] = value
    safetensors.torch.save_file(state, weights)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_weights_with_nan_or_inf_are_refused_naming_the_tensor(tmp_path, char_tok, value):
    run = make_run(tmp_path, char_tok)
    poison(run, value=value)
    msg = load_error(run)
    assert "NaN/inf" in msg and "'transformer.h.1.attn.c_proj.weight'" in msg


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "--model", "RUN", "--prompt", "To be", "--max-new-tokens", "3"],
        ["analyze", "attention", "--model", "RUN", "--text", "To be"],
    ],
)
def test_cli_on_nan_weights_is_one_error_line(tmp_path, char_tok, capsys, argv):
    run = make_run(tmp_path, char_tok)
    poison(run)
    assert main([str(run) if a == "RUN" else a for a in argv]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1 and "NaN/inf" in err
    assert "Traceback" not in err and out == ""


def test_finite_weights_that_overflow_to_nan_logits_are_one_error_line(tmp_path, char_tok, capsys):
    run = make_run(tmp_path, char_tok)
    weights = run / "model.safetensors"
    state = safetensors.torch.load_file(weights)
    state["transformer.wte.weight"].fill_(3e38)  # finite, but LayerNorm's sums overflow: NaN logits
    safetensors.torch.save_file(state, weights)
    for temperature in ("0", "0.8"):
        argv = ["generate", "--model", str(run), "--prompt", "To", "--temperature", temperature]
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert err.startswith("error: the model produced NaN logits") and err.count("\n") == 1


# --- unreadable files ----------------------------------------------------------------------------


def deny_reading(monkeypatch, target):
    """Make opening ``target`` fail as it does for a file without read permission (the tests run
    as root here, where chmod 000 stops nothing)."""
    real_open = builtins.open
    target = os.fspath(target)

    def fake_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)


@pytest.mark.parametrize("name", ["model.json", "model.safetensors", "tokenizer.json"])
def test_an_unreadable_run_file_says_permission_denied(tmp_path, char_tok, monkeypatch, name):
    run = make_run(tmp_path, char_tok)
    deny_reading(monkeypatch, run / name)
    msg = load_error(run)
    assert msg.startswith("cannot read ") and f"{name}: Permission denied" in msg


def test_every_reader_says_permission_denied(tmp_path, char_tok, monkeypatch):
    path = tmp_path / "f"
    path.write_text("{}")
    deny_reading(monkeypatch, path)
    for read in (read_json, load_safetensors, read_safetensors_header, load_tokenizer, torch_load_safe):
        with pytest.raises(GptlabError, match=r"cannot read .*f: Permission denied"):
            read(path)
    with pytest.raises(GptlabError, match="cannot read tokenizer file .*: Permission denied"):
        CharTokenizer.load(path)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files without permission"
)
def test_a_chmod_000_weights_file_is_not_reported_missing(tmp_path, char_tok):
    run = make_run(tmp_path, char_tok)
    (run / "model.safetensors").chmod(0)
    try:
        msg = load_error(run)
    finally:
        (run / "model.safetensors").chmod(0o644)
    assert "Permission denied" in msg and "not found" not in msg and "No such file" not in msg


# --- deeply nested JSON --------------------------------------------------------------------------


def test_deeply_nested_json_is_a_clear_error_in_every_reader(tmp_path, char_tok):
    path = tmp_path / "deep.json"
    path.write_text(DEEP)
    with pytest.raises(GptlabError, match="deep.json is nested too deeply"):
        read_json(path)
    with pytest.raises(GptlabError, match="deep.json is nested too deeply"):
        load_tokenizer(path)
    with pytest.raises(GptlabError, match="is nested too deeply"):
        parse_json(DEEP.encode(), "bytes")
    run = make_run(tmp_path / "run", char_tok)
    (run / "model.json").write_text(DEEP)
    assert "model.json is nested too deeply" in load_error(run)
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text('{"instruction": "x", "output": "y"}\n' + DEEP + "\n")
    with pytest.raises(GptlabError, match="data.jsonl line 2 is nested too deeply"):
        read_json_records(jsonl)
    listed = tmp_path / "data.json"
    listed.write_text('[\n{"instruction": "x", "output": "y"},\n' + DEEP)
    with pytest.raises(GptlabError, match="data.json line 3 is nested too deeply"):
        read_json_records(listed)


def test_deep_json_in_lora_adapter_metadata_is_a_clear_error():
    from gptlab.model.lora import ADAPTER_FORMAT, ADAPTER_VERSION, _parse_metadata

    meta = dict(format=ADAPTER_FORMAT, version=str(ADAPTER_VERSION), rank="4", alpha="8", dropout="0")
    with pytest.raises(GptlabError, match="adapter metadata 'targets' is nested too deeply"):
        _parse_metadata({**meta, "targets": DEEP}, "a.safetensors")


def test_deep_json_in_a_weights_header_is_a_clear_error(tmp_path):
    path = tmp_path / "w.safetensors"
    header = ('{"a": ' + DEEP[:5000]).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(GptlabError, match="w.safetensors is nested too deeply"):
        read_safetensors_header(path)


# --- tokenizer files -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bpe_dict():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the corpus is too small for every merge
        return BPETokenizer.train(TEXT * 5, vocab_size=280).to_dict()


@pytest.mark.parametrize(
    "special_id, words",
    [
        (2**32, ["id 4294967296", "largest id"]),
        (2**24, ["largest id"]),
        (-1, ["non-negative integer id"]),
        (65, ["already ids of ordinary tokens"]),
        ("300", ["non-negative integer id"]),
    ],
)
def test_absurd_special_token_ids_are_refused_on_load(tmp_path, bpe_dict, special_id, words):
    data = {**bpe_dict, "special_tokens": {"<|endoftext|>": special_id}}
    path = tmp_path / "tok.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GptlabError) as e:
        load_tokenizer(path)
    assert "tok.json" in str(e.value) and all(w in str(e.value) for w in words)


def test_char_tokenizer_special_ids_must_follow_the_chars(tmp_path, char_tok):
    data = char_tok.to_dict()
    data["special_tokens"] = {"<|endoftext|>": 2**32}
    with pytest.raises(GptlabError, match="special_tokens"):
        CharTokenizer.from_dict(data)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj[:40]):  # the vocab list is long: mutate near its start
            yield from _paths(value, (*prefix, i))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, 255, 256, 2**24, 2**32, -1])
    | st.floats(allow_nan=False)
    | st.text(max_size=6)
    | st.sampled_from(["<|endoftext|>", "Ġ", "a b", "bpe", "char", "gpt2", "\\u00ff"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)


@pytest.mark.slow  # a few seconds of real sockets, browser or property examples; the full suite runs it
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_tokenizer_files_load_or_raise_gptlab_error(tmp_path, bpe_dict, char_tok, data):
    """Replace, delete or add a value anywhere in a valid tokenizer file: loading either works
    (and the tokenizer encodes and decodes) or raises GptlabError, never another exception."""
    doc = copy.deepcopy(data.draw(st.sampled_from([bpe_dict, char_tok.to_dict()])))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from([p for p in _paths(doc) if p]))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.text(max_size=8))] = data.draw(JSON_VALUES)
        else:
            parent[path[-1]] = data.draw(JSON_VALUES)
    file = tmp_path / "mutated.json"
    file.write_text(json.dumps(doc))
    try:
        tok = load_tokenizer(file)
    except GptlabError:
        return
    try:
        ids = tok.encode(TEXT, allowed_special="all")
    except GptlabError:  # e.g. a char vocabulary that lost a character of TEXT
        return
    assert all(0 <= i < tok.vocab_size for i in ids)
    tok.decode(ids)
