"""Where downloads may come from: pinned hashes, HTTPS only, hub names vs local paths, revisions.

Every test runs under ``only_loopback``: opening a connection to (or resolving) any host but this
machine raises ``RemoteConnection``, so a refusal that came too late would fail the test instead of
sending traffic anywhere. The HTTP server binds 127.0.0.1.
"""

from __future__ import annotations

import http.server
import io
import json
import re
import socket
import threading
import zipfile

import pytest
from samples import SHAKESPEARE

from gptlab.cli import main
from gptlab.convert import HUB_FILES, resolve_hf_source
from gptlab.data import registry
from gptlab.data.registry import REGISTRY, DatasetEntry, download
from gptlab.errors import GptlabError

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
ELSEWHERE = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never routed, and never contacted here anyway


class RemoteConnection(AssertionError):
    """Something tried to reach a host other than this machine."""


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch):
    """Fail on any connection or name lookup outside 127.0.0.1; return the attempts made."""
    attempts: list = []
    real_connect, real_lookup = socket.create_connection, socket.getaddrinfo

    def create_connection(address, *args, **kwargs):
        if address[0] not in LOOPBACK:
            attempts.append(address[0])
            raise RemoteConnection(f"tried to connect to {address}")
        return real_connect(address, *args, **kwargs)

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            attempts.append(host)
            raise RemoteConnection(f"tried to look up {host}")
        return real_lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in (registry.INSECURE_ENV, registry.MIRROR_ENV):
        monkeypatch.delenv(name, raising=False)
    return attempts


@pytest.fixture
def server():
    """(base URL, routes) of a server on 127.0.0.1: routes maps a path to bytes, or to
    ``("redirect", location)``."""
    routes: dict = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
            elif isinstance(route, tuple):
                self.send_response(302)
                self.send_header("Location", route[1])
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_response(200)
                self.send_header("Content-Length", str(len(route)))
                self.end_headers()
                self.wfile.write(route)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def fake_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("SMSSpamCollection", "ham\tsee you at 5\nspam\tWIN a prize, call now\n")
    return buffer.getvalue()


# ---------------------------------------------------------------- pinned hashes


@pytest.mark.parametrize(
    "name, fake",
    [
        ("sms-spam", fake_zip()),
        ("instruction-data", json.dumps([{"instruction": "x", "input": "", "output": "y"}]).encode()),
    ],
)
def test_a_fake_file_from_a_mirror_is_refused_and_nothing_is_cached(
    name, fake, server, monkeypatch, tmp_path
):
    base, routes = server
    routes["/" + REGISTRY[name].filename] = fake
    monkeypatch.setenv(registry.MIRROR_ENV, base)
    cache = tmp_path / "cache"
    with pytest.raises(GptlabError, match=f"checksum mismatch for {name}"):
        download(name, cache, progress=False)
    assert list(cache.iterdir()) == []


def test_a_source_sending_more_than_the_pinned_size_is_stopped(server, tmp_path):
    base, routes = server
    routes["/big"] = SHAKESPEARE.read_bytes() + b"x" * (3 << 20)
    cache = tmp_path / "cache"
    with pytest.raises(GptlabError, match="sent more than the 20,479 bytes expected for the-verdict"):
        download("the-verdict", cache, url=base + "/big", progress=False)
    assert list(cache.iterdir()) == []


@pytest.fixture
def unpinned(monkeypatch):
    entry = DatasetEntry(
        name="unpinned", url="https://example.invalid/u.txt", filename="u.txt", description="d", license="l"
    )
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    return entry


def test_an_unpinned_entry_needs_allow_unverified(unpinned, server, monkeypatch, tmp_path, capsys):
    base, routes = server
    routes["/u.txt"] = b"anything at all"
    monkeypatch.setenv(registry.MIRROR_ENV, base)
    cache = tmp_path / "cache"
    with pytest.raises(GptlabError, match="unpinned has no pinned sha256.*--allow-unverified"):
        download("unpinned", cache, progress=False)
    assert not cache.exists()

    assert main(["data", "get", "unpinned", "--dir", str(cache)]) == 2
    assert capsys.readouterr().err.startswith("error: unpinned has no pinned sha256")
    assert main(["data", "get", "unpinned", "--dir", str(cache), "--allow-unverified"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(cache / "u.txt") and (cache / "u.txt").read_bytes() == b"anything at all"
    assert "warning: unpinned has no pinned sha256" in err and "unverified" in err

    assert main(["data", "list", "--dir", str(cache), "--json"]) == 0
    verified = {row["name"]: row["verified"] for row in json.loads(capsys.readouterr().out)}
    unpinned = {"unpinned"} | {entry.name for entry in registry.CORPORA}  # the corpora publish no checksum
    assert verified == {name: name not in unpinned for name in REGISTRY}
    assert main(["data", "list", "--dir", str(cache)]) == 0
    text = capsys.readouterr().out
    assert (
        text.count("(unverified)") == len(unpinned)
        and "unpinned: d\n    size unknown, sha256 not pinned" in text
    )


# ---------------------------------------------------------------- URL schemes


def test_file_urls_are_refused_unless_allowed(tmp_path, monkeypatch, capsys, verdict_bytes):
    local = tmp_path / "copy.txt"
    local.write_bytes(verdict_bytes)
    url = local.as_uri()
    with pytest.raises(GptlabError, match=re.escape(f"refusing to download the-verdict from {url}")):
        download("the-verdict", tmp_path / "c1", url=url, progress=False)
    assert not (tmp_path / "c1").exists()
    assert main(["data", "get", "the-verdict", "--dir", str(tmp_path / "c1"), "--url", url]) == 2
    assert "--allow-insecure-url" in capsys.readouterr().err

    # explicitly allowed: the API argument, the CLI flag, the environment variable
    assert download("the-verdict", tmp_path / "c1", url=url, allow_insecure_url=True, progress=False)
    argv = ["data", "get", "the-verdict", "--dir", str(tmp_path / "c2"), "--url", url]
    assert main([*argv, "--allow-insecure-url"]) == 0
    monkeypatch.setenv(registry.INSECURE_ENV, "1")
    path = download("the-verdict", tmp_path / "c3", url=url, progress=False)
    assert path.read_bytes() == local.read_bytes()


@pytest.mark.parametrize(
    "url, mirror",
    [
        (f"http://{ELSEWHERE}/the-verdict.txt", None),
        (f"ftp://{ELSEWHERE}/the-verdict.txt", None),
        (None, f"http://{ELSEWHERE}/mirror/"),
    ],
)
def test_insecure_remote_urls_are_refused_before_connecting(
    url, mirror, only_loopback, monkeypatch, tmp_path
):
    if mirror:
        monkeypatch.setenv(registry.MIRROR_ENV, mirror)
    with pytest.raises(GptlabError, match=f"refusing to download the-verdict from \\w+://{ELSEWHERE}/"):
        download("the-verdict", tmp_path / "cache", url=url, progress=False)
    assert only_loopback == [] and not (tmp_path / "cache").exists()
    # the check is what stopped it: allowed, the same URL is really tried (and the guard stops it)
    with pytest.raises(RemoteConnection):
        download("the-verdict", tmp_path / "cache", url=url, allow_insecure_url=True, progress=False)
    assert only_loopback == [ELSEWHERE]


def test_a_redirect_is_held_to_the_same_rules(server, only_loopback, tmp_path, verdict_bytes):
    base, routes = server
    routes["/the-verdict.txt"] = verdict_bytes
    routes["/moved"] = ("redirect", "/the-verdict.txt")
    routes["/away"] = ("redirect", f"http://{ELSEWHERE}/the-verdict.txt")
    cache = tmp_path / "cache"
    assert download("the-verdict", cache, url=base + "/moved", progress=False).is_file()
    with pytest.raises(GptlabError, match=f"refusing to download the-verdict from http://{ELSEWHERE}/"):
        download("the-verdict", cache, url=base + "/away", force=True, progress=False)
    assert only_loopback == []
    assert sorted(p.name for p in cache.iterdir()) == ["the-verdict.txt"]  # no .part left


# ---------------------------------------------------------------- convert: local paths and the hub


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A fake huggingface_hub.snapshot_download: records its arguments, returns ``hub_dir``."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls: list[dict] = []
    hub_dir = tmp_path / "snapshot"

    def snapshot_download(**kwargs):
        calls.append(kwargs)
        if not hub_dir.is_dir():
            raise OSError("offline")
        return str(hub_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls, hub_dir


@pytest.mark.parametrize("source", ["A/B", "./B", "x/y/z", "~/no-such-gptlab-dir-1b7c"])
def test_a_missing_local_path_is_not_sent_to_the_hub(source, hub, tmp_path, monkeypatch, capsys):
    calls, _ = hub
    monkeypatch.chdir(tmp_path)
    (tmp_path / "A").mkdir()  # so A/B is a path with a typo, not hub user A's model B
    with pytest.raises(GptlabError, match=f"^no such directory: {re.escape(source)} "):
        resolve_hf_source(source)
    assert main(["convert", "--from", "hf", source, "--out", "R"]) == 2
    assert capsys.readouterr().err.startswith(f"error: no such directory: {source} ")
    assert calls == []


def test_owner_name_goes_to_the_hub_at_the_revision(hub, tmp_path, monkeypatch):
    calls, hub_dir = hub
    monkeypatch.chdir(tmp_path)
    hub_dir.mkdir()
    assert resolve_hf_source("openai-community/gpt2", revision="abc123") == hub_dir
    assert resolve_hf_source("gpt2") == hub_dir
    assert calls == [
        {"repo_id": "openai-community/gpt2", "revision": "abc123", "allow_patterns": HUB_FILES},
        {"repo_id": "gpt2", "revision": None, "allow_patterns": HUB_FILES},
    ]


def test_cli_revision_reaches_the_download_and_the_run(hub, tmp_path, monkeypatch, capsys):
    from gptlab.hf_folder import to_hf_gpt2
    from gptlab.model import GPT, GPTConfig
    from gptlab.tokenizers import BPETokenizer

    calls, hub_dir = hub
    monkeypatch.chdir(tmp_path)
    argv = ["convert", "--from", "hf", "someone/tiny", "--revision", "v1.0", "--out", "R1"]
    assert main(argv) == 2  # the fake hub is "offline" until hub_dir exists
    assert "error: cannot download 'someone/tiny' at revision 'v1.0'" in capsys.readouterr().err

    tok = BPETokenizer.train("the quick brown fox " * 20, vocab_size=270, special_tokens=["<|endoftext|>"])
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=16))
    to_hf_gpt2(model, hub_dir, tok)
    argv = ["convert", "--from", "hf", "someone/tiny", "--revision", "v1.0", "--out", "R2", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["revision"] == "v1.0"
    assert [c["revision"] for c in calls] == ["v1.0", "v1.0"]
    saved = json.loads((tmp_path / "R2" / "model.json").read_text())
    assert saved["extra"] == {"converted_from": "someone/tiny", "revision": "v1.0"}


def test_revision_with_a_local_directory_is_an_error(hub, tmp_path, capsys):
    calls, _ = hub
    local = tmp_path / "hf"
    local.mkdir()
    with pytest.raises(GptlabError, match="--revision v1 only applies to hub downloads"):
        resolve_hf_source(str(local), revision="v1")
    argv = ["convert", "--from", "hf", str(local), "--revision", "v1", "--out", str(tmp_path / "R")]
    assert main(argv) == 2
    assert "only applies to hub downloads" in capsys.readouterr().err
    assert calls == []
