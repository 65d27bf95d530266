import json

import pytest
import torch

from gptlab.errors import GptlabError
from gptlab.io import atomic_write, atomic_write_json, load_safetensors, read_json, save_safetensors


def test_atomic_write_keeps_old_file_when_writer_crashes(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_json(path, {"step": 1})

    def crash(p):
        p.write_text('{"step": 2, "half')
        raise RuntimeError("simulated crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, crash)
    assert json.loads(path.read_text()) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left behind


def test_read_json_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GptlabError, match="bad.json.*not valid JSON"):
        read_json(bad)
    with pytest.raises(GptlabError, match="not found"):
        read_json(tmp_path / "missing.json")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(GptlabError, match="not UTF-8"):
        read_json(binary)


def test_safetensors_roundtrip_and_truncation(tmp_path):
    path = tmp_path / "w.safetensors"
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    save_safetensors(tensors, path)
    loaded = load_safetensors(path)
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["b"], tensors["b"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GptlabError, match="w.safetensors"):
        load_safetensors(path)
    path.write_bytes(b"garbage")
    with pytest.raises(GptlabError, match="w.safetensors"):
        load_safetensors(path)


def test_read_json_reports_deep_nesting_and_unreadable_files(tmp_path, monkeypatch):
    deep = tmp_path / "deep.json"
    deep.write_text('{"a": ' * 50_000)
    with pytest.raises(GptlabError, match="deep.json is nested too deeply"):
        read_json(deep)
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(GptlabError, match="folder.json is a directory"):
        read_json(tmp_path / "folder.json")
    ok = tmp_path / "ok.json"
    ok.write_text('{"a": [1, 2]}')
    assert read_json(ok) == {"a": [1, 2]}

    def broken_open(file, *args, **kwargs):
        raise OSError(5, "Input/output error", str(file))

    monkeypatch.setattr("builtins.open", broken_open)
    with pytest.raises(GptlabError, match=r"cannot read settings .*ok.json: Input/output error"):
        read_json(ok, "settings")


def test_parse_json_names_where_the_text_came_from():
    from gptlab.io import parse_json

    assert parse_json(b'{"x": 1}', "header") == {"x": 1}
    with pytest.raises(GptlabError, match=r"the reply is not valid JSON: .* line 1, column 2"):
        parse_json("{,}", "the reply")
    with pytest.raises(GptlabError, match="the reply is not UTF-8"):
        parse_json(b'{"x": "\xff"}', "the reply")
