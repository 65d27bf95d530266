"""Resumable downloads (HTTP Range) against a loopback server that drops the connection midway:
the next call asks for the rest and finishes the file; a .part from other bytes ends in a checksum
mismatch that deletes it; a server without ranges starts again."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading

import pytest
from samples import SHAKESPEARE

from gptlab.data import registry
from gptlab.data.registry import REGISTRY, download
from gptlab.errors import GptlabError

DATA = SHAKESPEARE.read_bytes()
CUT_AT = len(DATA) // 3


@pytest.fixture(autouse=True)
def pinned(monkeypatch):
    """``the-verdict`` re-pinned to the bytes served here (the download is tested, not the text)."""
    entry = dataclasses.replace(
        REGISTRY["the-verdict"], sha256=hashlib.sha256(DATA).hexdigest(), size=len(DATA)
    )
    monkeypatch.setitem(REGISTRY, "the-verdict", entry)
    for name in (registry.INSECURE_ENV, registry.MIRROR_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def flaky():
    """(url, requests, options) of a server on 127.0.0.1: the first GET sends CUT_AT bytes of DATA
    and drops the connection; later ones honour ``Range: bytes=N-`` (unless options["ranges"] is
    False). requests records each GET's Range header."""
    requests: list = []
    options = {"ranges": True, "body": DATA}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = options["body"]
            wanted = self.headers.get("Range")
            requests.append(wanted)
            if len(requests) == 1:  # promise everything, send a third, hang up
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:CUT_AT])
                self.close_connection = True
                return
            if wanted and options["ranges"]:
                start = int(wanted.removeprefix("bytes=").rstrip("-"))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/the-verdict.txt", requests, options
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_a_cut_connection_resumes_where_it_stopped(flaky, tmp_path):
    url, requests, _ = flaky
    cache = tmp_path / "cache"
    with pytest.raises(
        GptlabError, match=f"cut short: got {CUT_AT} of {len(DATA)} bytes .* run it again to resume"
    ):
        download("the-verdict", cache, url=url, progress=False)
    assert not (cache / "the-verdict.txt").exists()
    assert (cache / "the-verdict.txt.part").read_bytes() == DATA[:CUT_AT]
    path = download("the-verdict", cache, url=url, progress=False)
    assert path.read_bytes() == DATA
    assert requests == [None, f"bytes={CUT_AT}-"]  # the second request asked only for the rest
    assert [p.name for p in cache.iterdir()] == ["the-verdict.txt"]


def test_a_server_without_ranges_starts_the_file_again(flaky, tmp_path):
    url, requests, options = flaky
    options["ranges"] = False
    with pytest.raises(GptlabError, match="cut short"):
        download("the-verdict", tmp_path, url=url, progress=False)
    assert download("the-verdict", tmp_path, url=url, progress=False).read_bytes() == DATA
    assert requests == [None, f"bytes={CUT_AT}-"]  # asked, got a 200 with the whole file


def test_a_resumed_file_with_the_wrong_bytes_is_refused_and_not_cached(flaky, tmp_path):
    url, _, options = flaky
    with pytest.raises(GptlabError, match="cut short"):
        download("the-verdict", tmp_path, url=url, progress=False)
    # the upstream file changed between the two calls: same length, other bytes after the cut
    options["body"] = DATA[:CUT_AT] + DATA[CUT_AT:].replace(b"e", b"E")
    with pytest.raises(GptlabError, match="checksum mismatch for the-verdict"):
        download("the-verdict", tmp_path, url=url, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the .part nor a final file
