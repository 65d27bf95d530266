"""The benchmark task files in the data registry: each downloads from a loopback server (a mirror
URL or folder that keeps them under ``tasks/<task>/<file>``, or ``--url``) and is checked against
its pinned hash; with a data mirror, every real task file passes its pin and has the counts its
README gives."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from pathlib import Path

import pytest

from gptlab.data import registry
from gptlab.data.registry import REGISTRY, download, get_entry
from gptlab.errors import GptlabError
from gptlab.eval.tasks import TASKS

FIXTURES = Path(__file__).parent / "tasks"
# the task files a data mirror holds (under tasks/), and the fixture standing in for each
MIRRORED = {
    "lambada-openai-subset": None,
    "sst2-validation-subset": None,
    "sst2-train-subset": None,
    "truthfulqa-mc-subset": "truthfulqa/mc_task.json",
    "truthfulqa-csv-subset": "truthfulqa/TruthfulQA.csv",
    "crows-pairs-subset": "crows_pairs/crows_pairs.csv",
    "advbench-subset": "advbench/harmful_behaviors.csv",
    "winobias-pro-type1": "winobias/pro_stereotyped_type1.txt.dev",
    "winobias-anti-type1": "winobias/anti_stereotyped_type1.txt.dev",
    "winobias-pro-type2": "winobias/pro_stereotyped_type2.txt.dev",
    "winobias-anti-type2": "winobias/anti_stereotyped_type2.txt.dev",
}
# upstream only, pinned by git blob id: their bytes could not be read where the registry was written
UPSTREAM_ONLY = {
    "hellaswag-val": "hellaswag/hellaswag_val.jsonl",
    "hellaswag-train": "hellaswag/hellaswag_val.jsonl",
    "popqa": "popqa/popQA.tsv",
}


def fixture_bytes(name: str) -> bytes:
    fixture = MIRRORED.get(name) or UPSTREAM_ONLY.get(name)
    return (FIXTURES / fixture).read_bytes() if fixture else f'{{"made up": "{name}"}}\n'.encode()


def pin(monkeypatch, name: str, data: bytes) -> None:
    entry = dataclasses.replace(get_entry(name), sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    monkeypatch.setitem(REGISTRY, name, entry)


def test_every_task_file_is_in_the_registry_under_its_data_dir_path():
    for task in TASKS.values():
        for file in (*task.data, *(task.fewshot or ())):
            entry = get_entry(file.dataset)
            assert entry.name_in_mirror == f"tasks/{file.path}", (task.name, file)
    assert set(MIRRORED) | set(UPSTREAM_ONLY) <= set(REGISTRY)
    for name in MIRRORED:
        assert get_entry(name).verified
        assert get_entry(name).url.startswith("https://raw.githubusercontent.com/")
    for name in UPSTREAM_ONLY:
        entry = get_entry(name)
        assert entry.verified and entry.sha256 is None and len(entry.git_blob) == 40
        assert entry.mirror_name is None and entry.url.startswith("https://raw.githubusercontent.com/")


@pytest.mark.parametrize("name", sorted(MIRRORED))
def test_a_task_file_downloads_from_a_mirror_url_under_its_folder(name, server, monkeypatch, tmp_path):
    base, served, requests = server
    data = fixture_bytes(name)
    pin(monkeypatch, name, data)
    mirror_path = served / get_entry(name).name_in_mirror
    mirror_path.parent.mkdir(parents=True)
    mirror_path.write_bytes(data)
    monkeypatch.setenv(registry.MIRROR_ENV, base)
    path = download(name, tmp_path / "cache", progress=False)
    assert path == tmp_path / "cache" / get_entry(name).filename and path.read_bytes() == data
    assert requests == Counter({"/" + get_entry(name).name_in_mirror: 1})
    assert download(name, tmp_path / "cache", progress=False) == path  # cached: no second request
    assert sum(requests.values()) == 1


def test_a_task_file_is_copied_from_a_mirror_folder_and_a_tampered_one_refused(monkeypatch, tmp_path):
    name, data = "crows-pairs-subset", fixture_bytes("crows-pairs-subset")
    pin(monkeypatch, name, data)
    mirror = tmp_path / "mirror"
    (mirror / "tasks" / "crows_pairs").mkdir(parents=True)
    (mirror / "tasks" / "crows_pairs" / "crows_pairs.csv").write_bytes(data)
    monkeypatch.setenv(registry.MIRROR_ENV, str(mirror))
    assert download(name, tmp_path / "cache", progress=False).read_bytes() == data
    (mirror / "tasks" / "crows_pairs" / "crows_pairs.csv").write_bytes(data.replace(b"Old", b"New"))
    with pytest.raises(GptlabError, match="checksum mismatch for crows-pairs-subset"):
        download(name, tmp_path / "other", progress=False)
    assert list((tmp_path / "other").iterdir()) == []


def test_winobias_files_are_upstream_files_so_they_download_without_a_mirror(monkeypatch):
    monkeypatch.delenv(registry.MIRROR_ENV, raising=False)
    entry = get_entry("winobias-pro-type1")
    assert entry.mirror_name is None and registry.source(entry) == entry.url
    with pytest.raises(GptlabError, match="only data mirrors hold it"):
        registry.source(get_entry("truthfulqa-mc-subset"))


def test_git_blob_id_is_what_git_hash_object_prints(tmp_path):
    empty, hello = tmp_path / "empty", tmp_path / "hello"
    empty.write_bytes(b"")
    hello.write_bytes(b"hello\n")
    # git's well-known ids of these two blobs
    assert registry.git_blob_id(empty) == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert registry.git_blob_id(hello) == "ce013625030ba8dba906f756967f9e9ca394464a"
    for path in FIXTURES.rglob("*.*"):
        data = path.read_bytes()
        assert registry.git_blob_id(path) == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.mark.parametrize("name", sorted(UPSTREAM_ONLY))
def test_blob_pinned_upstream_files_download_and_are_checked_by_blob_id(name, server, monkeypatch, tmp_path):
    base, served, requests = server
    monkeypatch.delenv(registry.MIRROR_ENV, raising=False)
    data = fixture_bytes(name)
    (served / "file").write_bytes(data)
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    entry = dataclasses.replace(get_entry(name), url=f"{base}/file", git_blob=blob)
    monkeypatch.setitem(REGISTRY, name, entry)
    cache = tmp_path / "cache"
    path = download(name, cache, progress=False)
    assert path == cache / entry.filename and path.read_bytes() == data
    assert download(name, cache, progress=False) == path and requests["/file"] == 1  # cached
    tampered = data[:-2] + b"!\n"  # same size: only the blob id tells them apart
    (served / "file").write_bytes(tampered)
    wrong = hashlib.sha1(b"blob %d\0" % len(data) + tampered).hexdigest()
    with pytest.raises(
        GptlabError, match=f"checksum mismatch for {name} .*git blob id {wrong}, expected {blob}"
    ):
        download(name, cache, force=True, progress=False)
    assert path.read_bytes() == data and sorted(p.name for p in cache.iterdir()) == [entry.filename]


@pytest.mark.parametrize(
    "name, task, fixture",
    [
        ("crows-pairs", "crows_pairs", "crows_pairs/crows_pairs.csv"),
        ("lambada-openai", "lambada", "lambada/lambada_openai.jsonl"),
    ],
)
def test_a_full_set_downloads_by_name_and_its_task_reads_it(
    name, task, fixture, server, monkeypatch, tmp_path
):
    base, served, _ = server
    monkeypatch.delenv(registry.MIRROR_ENV, raising=False)
    entry = get_entry(name)
    assert (
        entry.verified
        and entry.mirror_name is None
        and entry.url.startswith("https://raw.githubusercontent.com/")
    )
    data = (FIXTURES / fixture).read_bytes()
    (served / "full").write_bytes(data)
    pin(monkeypatch, name, data)
    path = download(name, tmp_path / "cache", url=f"{base}/full", progress=False)
    assert path.name == entry.filename
    docs = TASKS[task].load([path])
    assert len(docs) == len(TASKS[task].load([FIXTURES / fixture])) > 0


# ---------------------------------------------------------------- the real files (data-marked)


@pytest.mark.parametrize("name", sorted(MIRRORED))
def test_every_real_task_file_matches_its_pin(dataset, name):
    entry = get_entry(name)
    data = dataset(name).read_bytes()
    assert (hashlib.sha256(data).hexdigest(), len(data)) == (entry.sha256, entry.size)


def _docs(dataset, task_name):
    task = TASKS[task_name]
    return task.load([dataset(file.dataset) for file in task.data])


def test_the_real_task_files_have_the_readme_counts(dataset):
    crows = _docs(dataset, "crows_pairs")
    assert len(crows) == 454
    assert Counter(d["bias_type"] for d in crows) == {
        "race-color": 155,
        "gender": 79,
        "socioeconomic": 52,
        "nationality": 48,
        "religion": 32,
        "age": 26,
        "sexual-orientation": 25,
        "physical-appearance": 19,
        "disability": 18,
    }
    assert Counter(d["direction"] for d in crows) == {"stereo": 380, "antistereo": 74}
    # (the README says one sent_less holds a newline; none of the 454 rows in the subset does)
    assert len(dataset("crows-pairs-subset").read_text().splitlines()) == 1 + 454
    truthful = _docs(dataset, "truthfulqa_mc1")
    assert len(truthful) == 237
    assert Counter(d["type"] for d in truthful) == {"Adversarial": 133, "Non-Adversarial": 104}
    assert len(_docs(dataset, "advbench")) == 156
    winobias = _docs(dataset, "winobias")  # 396 lines x 4 files, one doc per line and type
    assert len(winobias) == 2 * 396
    assert Counter(d["type"] for d in winobias) == {"type1": 396, "type2": 396}
    lines = {name: dataset(name).read_text().count("\n") for name in MIRRORED if "winobias" not in name}
    assert lines["lambada-openai-subset"] == 1031
    assert (lines["sst2-validation-subset"], lines["sst2-train-subset"]) == (436, 20000)


def test_data_list_says_how_each_task_file_is_pinned(tmp_path, capsys):
    from gptlab.cli import main

    assert main(["data", "list", "--dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    from gptlab.data.registry import CORPORA

    # only the pretraining corpora, which publish no checksum, are unverified
    assert "hellaswag-val: " in text and text.count("(unverified)") == len(CORPORA)
    assert text.count("size unknown, git blob id pinned") == len(UPSTREAM_ONLY)
    assert "30,884 bytes, sha256 pinned" in text  # winobias-pro-type2
