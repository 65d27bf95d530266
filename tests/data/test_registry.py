"""Dataset downloads against a local HTTP server on 127.0.0.1 (never the internet).

Covers: success, cache reuse without a request, a corrupt cache refreshed, checksum mismatch (the
partial file is deleted), HTTP 404, a refused connection, a truncated transfer (kept to resume), and
the CLI.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import socket
from collections import Counter
from pathlib import Path

import pytest
from file_server import TRUNCATED_PATH

from gptlab.cli import main
from gptlab.data import registry
from gptlab.data.registry import REGISTRY, cache_dir, download, get_entry, list_datasets
from gptlab.errors import GptlabError


@pytest.fixture
def mirror(server, monkeypatch):
    base, served, counter = server
    monkeypatch.setenv(registry.MIRROR_ENV, base + "/")
    return base, served, counter


# upstream files no data mirror holds, pinned by git blob id (tests/data/test_task_datasets.py)
BLOB_PINNED = {"hellaswag-val", "hellaswag-train", "popqa"}
# complete upstream task files a mirror does not hold (it has subsets of them)
FULL_SETS = {"crows-pairs", "lambada-openai"}


# every entry a data mirror holds as pinned (the mirror has no sms-spam zip, and a subset of
# instruction-data: the *-subset entries pin those)
@pytest.mark.parametrize(
    "name",
    sorted(
        set(REGISTRY)
        - {"sms-spam", "instruction-data"}
        - BLOB_PINNED
        - FULL_SETS
        - {e.name for e in registry.CORPORA}
    ),
)
def test_registry_hashes_match_the_real_files(dataset, name):
    entry = get_entry(name)
    data = dataset(name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry.sha256
    assert entry.size in (None, len(data))


def test_every_entry_is_complete():
    corpora = {entry.name for entry in registry.CORPORA}
    assert len({entry.filename for entry in REGISTRY.values()}) == len(REGISTRY)  # one cache name each
    for entry in REGISTRY.values():
        assert entry.url.startswith("https://")
        assert entry.filename and "/" not in entry.filename
        assert entry.description and entry.license
        if entry.name in corpora:  # no published checksum: unpinned, and each says so
            assert not entry.verified and entry.sha256 is None and registry.NO_CHECKSUM in entry.description
            assert re.search(r"/resolve/[0-9a-f]{40}/", entry.url)  # a fixed commit, not a branch
            continue
        if entry.name in BLOB_PINNED:  # no sha256 or size: their git blob ids
            assert entry.verified and re.fullmatch(r"[0-9a-f]{40}", entry.git_blob) and entry.size is None
            continue
        # every other entry pinned: an unpinned one would accept any file a mirror serves
        assert entry.verified and re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert entry.size and entry.size > 0


def test_download_verifies_and_then_reuses_the_cache(mirror, tmp_path, verdict_bytes):
    _, served, counter = mirror
    original = verdict_bytes
    (served / "the-verdict.txt").write_bytes(original)
    cache = tmp_path / "cache"

    path = download("the-verdict", cache, progress=False)
    assert path == cache / "the-verdict.txt"
    assert path.read_bytes() == original
    assert counter["/the-verdict.txt"] == 1
    assert sorted(p.name for p in cache.iterdir()) == ["the-verdict.txt"]  # no .part left behind

    assert download("the-verdict", cache, progress=False) == path
    assert counter["/the-verdict.txt"] == 1  # valid cached copy: no request at all

    download("the-verdict", cache, force=True, progress=False)
    assert counter["/the-verdict.txt"] == 2


def test_a_corrupt_cached_file_is_downloaded_again(mirror, tmp_path, verdict_bytes):
    _, served, counter = mirror
    original = verdict_bytes
    (served / "the-verdict.txt").write_bytes(original)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "the-verdict.txt").write_bytes(original[:-1] + b"!")
    assert download("the-verdict", cache, progress=False).read_bytes() == original
    assert counter["/the-verdict.txt"] == 1


def test_checksum_mismatch_deletes_the_partial_file(mirror, tmp_path, verdict_bytes):
    _, served, _ = mirror
    # same length: a longer file would be stopped by the size check before the hash is compared
    tampered = verdict_bytes.replace(b"Citizen", b"Citizan")
    (served / "the-verdict.txt").write_bytes(tampered)
    cache = tmp_path / "cache"
    with pytest.raises(GptlabError, match="checksum mismatch for the-verdict") as e:
        download("the-verdict", cache, progress=False)
    assert hashlib.sha256(tampered).hexdigest() in str(e.value)
    assert list(cache.iterdir()) == []  # neither the .part nor a final file


def test_http_404_names_the_url(mirror, tmp_path):
    base, _, _ = mirror
    with pytest.raises(GptlabError, match=re.escape(f"from {base}/tinyshakespeare.txt failed: HTTP 404")):
        download("tinyshakespeare", tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_unreachable_host_suggests_a_mirror(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: bind, read it, close
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GptlabError, match="cannot reach .* GPTLAB_DATA_MIRROR"):
        download("the-verdict", tmp_path / "cache", url=f"http://127.0.0.1:{port}/x", progress=False)


def test_truncated_transfer_is_an_error(server, tmp_path):
    base, _, _ = server
    # the Content-Length check catches the short read before the hash is compared
    with pytest.raises(GptlabError, match="cut short: got 10 of 1000 bytes .* kept: run it again to resume"):
        download("sms-spam", tmp_path / "cache", url=base + TRUNCATED_PATH, progress=False)
    # no file that looks finished; the bytes received wait in the .part for a resume
    # (tests/data/test_resume_downloads.py)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["sms-spam-collection.zip.part"]
    assert (tmp_path / "cache" / "sms-spam-collection.zip.part").read_bytes() == b"0123456789"


def test_url_option_wins_over_the_mirror(mirror, server, tmp_path, verdict_bytes):
    base, served, counter = mirror
    (served / "other-name.txt").write_bytes(verdict_bytes)
    download("the-verdict", tmp_path / "cache", url=f"{base}/other-name.txt", progress=False)
    assert counter == Counter({"/other-name.txt": 1})


def test_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(GptlabError, match="unknown dataset 'shakespeare': expected one of tinyshakespeare"):
        download("shakespeare", tmp_path)


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(registry.CACHE_ENV, raising=False)
    assert cache_dir() == Path.home() / ".cache" / "gptlab" / "datasets"
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "datasets"
    assert cache_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_cli_get_and_list(mirror, tmp_path, verdict_bytes, capsys):
    _, served, _ = mirror
    (served / "the-verdict.txt").write_bytes(verdict_bytes)
    cache = tmp_path / "cache"
    assert main(["data", "get", "the-verdict", "--dir", str(cache)]) == 0
    assert capsys.readouterr().out.strip() == str(cache / "the-verdict.txt")

    assert main(["data", "list", "--dir", str(cache), "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(REGISTRY)
    assert rows["the-verdict"]["cached"] == str(cache / "the-verdict.txt")
    assert rows["tinyshakespeare"]["cached"] is None
    assert list_datasets(cache) == list(rows.values())

    assert main(["data", "get", "nope", "--dir", str(cache)]) == 2
    assert "error: unknown dataset 'nope'" in capsys.readouterr().err


def test_bad_url_and_bad_folder_are_clear_errors(tmp_path, capsys):
    with pytest.raises(GptlabError, match="'notaurl' is not a valid URL"):
        download("the-verdict", tmp_path / "cache", url="notaurl", progress=False)
    assert not (tmp_path / "cache").exists()  # the URL is checked before anything is written
    (tmp_path / "file").write_text("x")
    with pytest.raises(GptlabError, match="cannot write to the dataset folder"):
        download("the-verdict", tmp_path / "file" / "sub", url="http://127.0.0.1:9/x", progress=False)
    assert main(["data", "get", "the-verdict", "--dir", str(tmp_path / "c"), "--url", "notaurl"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot download the-verdict")


# ---------------------------------------------------------------- a mirror that is a local folder


@pytest.fixture
def mirror_folder(tmp_path, monkeypatch):
    """GPTLAB_DATA_MIRROR naming a folder (no ://), with nothing in it yet."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    monkeypatch.setenv(registry.MIRROR_ENV, str(folder))
    return folder


def test_a_mirror_folder_is_copied_from_and_then_the_cache_reused(mirror_folder, tmp_path, verdict_bytes):
    (mirror_folder / "the-verdict.txt").write_bytes(verdict_bytes)
    cache = tmp_path / "cache"
    path = download("the-verdict", cache, progress=False)
    assert path == cache / "the-verdict.txt" and path.read_bytes() == verdict_bytes
    assert sorted(p.name for p in cache.iterdir()) == ["the-verdict.txt"]  # no .part left behind
    (mirror_folder / "the-verdict.txt").unlink()  # a valid cached copy is reused ...
    with pytest.raises(GptlabError, match="has no the-verdict.txt"):  # ... but a bad mirror is said at once
        download("the-verdict", cache, progress=False)
    assert path.read_bytes() == verdict_bytes


def test_a_mirror_folder_file_with_another_hash_is_an_error_naming_both(
    mirror_folder, tmp_path, verdict_bytes
):
    tampered = verdict_bytes.replace(b"Citizen", b"Citizan")  # same length: the hash decides
    (mirror_folder / "the-verdict.txt").write_bytes(tampered)
    cache = tmp_path / "cache"
    with pytest.raises(GptlabError, match="checksum mismatch for the-verdict") as e:
        download("the-verdict", cache, progress=False)
    assert hashlib.sha256(tampered).hexdigest() in str(e.value)
    assert get_entry("the-verdict").sha256 in str(e.value)
    assert str(mirror_folder / "the-verdict.txt") in str(e.value)
    assert list(cache.iterdir()) == []  # neither the .part nor a final file


def test_a_mirror_folder_file_larger_than_pinned_is_stopped(mirror_folder, tmp_path, verdict_bytes):
    (mirror_folder / "the-verdict.txt").write_bytes(verdict_bytes + b"x" * (3 << 20))
    cache = tmp_path / "cache"
    with pytest.raises(GptlabError, match=f"more than the {len(verdict_bytes):,} bytes expected"):
        download("the-verdict", cache, progress=False)
    assert list(cache.iterdir()) == []


def test_a_file_missing_from_the_mirror_folder_is_a_clear_error(mirror_folder, tmp_path, capsys):
    with pytest.raises(
        GptlabError, match=re.escape(f"{mirror_folder / 'tinyshakespeare.txt'} does not exist")
    ):
        download("tinyshakespeare", tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()
    assert main(["data", "get", "tinyshakespeare", "--dir", str(tmp_path / "cache")]) == 2
    assert "the data mirror has no tinyshakespeare.txt" in capsys.readouterr().err


def test_a_mirror_that_is_neither_a_url_nor_a_folder_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.MIRROR_ENV, str(tmp_path / "missing"))
    with pytest.raises(GptlabError, match="is not a folder"):
        download("the-verdict", tmp_path / "cache", progress=False)
    monkeypatch.setenv(registry.MIRROR_ENV, (tmp_path / "missing").as_uri())  # file:// is a URL: refused
    with pytest.raises(GptlabError, match="refusing to download the-verdict from file://"):
        download("the-verdict", tmp_path / "cache", progress=False)


def test_mirror_only_entries_are_read_under_their_mirror_name(mirror_folder, tmp_path, monkeypatch):
    data = b"ham\thello\nspam\tWIN now\n"
    entry = dataclasses.replace(
        get_entry("sms-spam-subset"), sha256=hashlib.sha256(data).hexdigest(), size=len(data)
    )
    monkeypatch.setitem(REGISTRY, "sms-spam-subset", entry)
    (mirror_folder / "sms-spam.tsv").write_bytes(data)
    path = download("sms-spam-subset", tmp_path / "cache", progress=False)
    assert path == tmp_path / "cache" / "sms-spam-subset.tsv" and path.read_bytes() == data
    monkeypatch.delenv(registry.MIRROR_ENV)  # no upstream serves these bytes: say so
    with pytest.raises(GptlabError, match="only data mirrors hold it"):
        download("sms-spam-subset", tmp_path / "other", force=True, progress=False)
