"""gptlab serve under hostile or careless clients: abandoned requests, DNS rebinding (Host header),
slow headers and bodies, the API key kept out of ``ps``, and limits refused at start-up.

Servers are real uvicorn in a background thread on 127.0.0.1 and a port the OS picks, run with the
options ``gptlab serve`` uses (gptlab.serve.guards.uvicorn_options); raw-socket clients have socket
time-outs and bounded loops, so every test stops by itself within seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import string
import time

import httpx
import pytest
import torch

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from live_server import serving  # noqa: E402

import gptlab.serve.app as serve_app  # noqa: E402
from gptlab.cli import main  # noqa: E402
from gptlab.commands import serve as serve_cmd  # noqa: E402
from gptlab.model import GPT, GPTConfig  # noqa: E402
from gptlab.rundir import save_model  # noqa: E402
from gptlab.serve.app import create_app  # noqa: E402
from gptlab.serve.guards import default_allowed_hosts, host_name, parse_allowed_hosts  # noqa: E402
from gptlab.serve.limits import ServeLimits  # noqa: E402
from gptlab.tokenizers import CharTokenizer  # noqa: E402

HTTP_TIMEOUT = 30.0
READ_TIMEOUT = 1.0  # the header and body deadline of the `slow` server


@pytest.fixture(scope="module")
def endless_run(tmp_path_factory) -> str:
    """A tiny model whose tokenizer has no <|endoftext|>: a generation only ends at max_tokens."""
    tok = CharTokenizer.train(string.printable)
    torch.manual_seed(0)
    config = GPTConfig.preset(
        "tiny", vocab_size=tok.vocab_size, n_layer=1, n_embd=32, n_head=4, block_size=64
    )
    path = tmp_path_factory.mktemp("hardening") / "endless"
    save_model(path, GPT(config), tok)
    return str(path)


@pytest.fixture(scope="module")
def endless(endless_run):
    app = create_app(
        endless_run, limits=ServeLimits(max_tokens_cap=100_000, max_n=8, read_timeout_s=READ_TIMEOUT)
    )
    with serving(app, header_timeout_s=READ_TIMEOUT, max_connections=16) as (url, port):
        yield url, port, app


def assert_openai_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def wait_for(condition, seconds: float, what: str) -> float:
    """Poll ``condition()`` until true; the seconds it took (fails after ``seconds``)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, f"{what} did not happen within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - start


# ------------------------------------------------------------------ 1. abandoned requests stop


@pytest.mark.slow  # over a second (many examples or a real corpus); the full suite runs it
def test_abandoned_non_streaming_requests_stop_early(endless):
    """Fire-and-forget: each client gives up after 0.2 s; its n=8 x 100,000-token generation must
    stop (the engine's slot freed) instead of running to max_tokens."""
    url, _, app = endless
    engine = app.state.engine
    before = engine.stats
    body = {"prompt": "go", "max_tokens": 100_000, "n": 8}
    for _ in range(3):
        with pytest.raises(httpx.ReadTimeout):  # httpx closes the connection when it gives up
            httpx.post(url + "/v1/completions", json=body, timeout=httpx.Timeout(10, read=0.2))
    wait_for(lambda: engine.stats["cancelled"] - before["cancelled"] >= 3, 10, "cancelling 3 requests")
    steps = engine.stats["steps"] - before["steps"]
    assert steps < 3 * 100_000 // 20, f"{steps} decode steps for 3 abandoned requests: not stopped early"
    wait_for(lambda: engine.stats["active"] == 0, 5, "freeing the slots")
    start = time.monotonic()  # and the server is free for the next client at once
    r = httpx.post(url + "/v1/completions", json={"prompt": "a", "max_tokens": 3}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200 and len(r.json()["choices"][0]["text"]) == 3
    assert time.monotonic() - start < 5
    time.sleep(0.3)
    assert engine.stats["active"] == 0 and engine.stats["queued"] == 0


# ------------------------------------------------------------------------- 2. the Host header


def test_foreign_host_header_is_refused(endless):
    url, port, _ = endless

    def get(host: str) -> httpx.Response:
        return httpx.get(url + "/v1/models", headers={"Host": host}, timeout=HTTP_TIMEOUT)

    for host in ("127.0.0.1", f"127.0.0.1:{port}", "localhost", f"LocalHost:{port}", f"[::1]:{port}"):
        assert get(host).status_code == 200, host
    for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example", "127.0.0.1.nip.io"):
        error = assert_openai_error(get(host), 400)
        assert error["code"] == "invalid_host" and "--allowed-hosts" in error["message"]
    # every route, the open ones and POSTs included: the attack drives the API from a web page
    r = httpx.post(
        url + "/v1/completions",
        json={"prompt": "a", "max_tokens": 2},
        headers={"Host": "evil.example"},
        timeout=HTTP_TIMEOUT,
    )
    assert_openai_error(r, 400)
    r = httpx.get(url + "/healthz", headers={"Host": "evil.example"}, timeout=HTTP_TIMEOUT)
    assert_openai_error(r, 400)
    # HTTP/1.0 without a Host header at all
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert _read_all(s).startswith(b"HTTP/1.1 400")


def test_allowed_hosts_replace_the_default_list(endless_run):
    def status(url: str, host: str) -> int:
        return httpx.get(url + "/healthz", headers={"Host": host}, timeout=HTTP_TIMEOUT).status_code

    app = create_app(endless_run, allowed_hosts=["api.example", "*.lan"])
    with serving(app) as (url, _):
        assert status(url, "api.example:8000") == 200
        assert status(url, "box.lan") == 200
        assert status(url, "lan") == 400  # "*.lan" is the subdomains
        assert status(url, "localhost") == 400
        assert status(url, "evil.example") == 400
    app = create_app(endless_run, allowed_hosts=["*"])
    with serving(app) as (url, _):
        assert status(url, "evil.example") == 200


def test_host_names_and_the_cli_defaults():
    assert host_name("[::1]:8000") == "[::1]" and host_name("::1") == "[::1]"
    assert host_name("LocalHost:80") == "localhost" and host_name("10.0.0.2") == "10.0.0.2"
    assert default_allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "[::1]"]
    assert default_allowed_hosts("10.0.0.2") == ["127.0.0.1", "localhost", "[::1]", "10.0.0.2"]
    assert default_allowed_hosts("::1") == ["127.0.0.1", "localhost", "[::1]"]
    # bound to every interface: its addresses are unknown here, the machine's name is allowed
    assert socket.gethostname().lower() in default_allowed_hosts("0.0.0.0")
    assert parse_allowed_hosts("a.example:80, [::1]:8000,,*.LAN") == ["a.example", "[::1]", "*.lan"]


# -------------------------------------------------------------------- 3. slow clients are cut off


def _read_all(s: socket.socket, seconds: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (bounded by ``seconds``)."""
    data, deadline = b"", time.monotonic() + seconds
    s.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the server kept the connection open for {seconds} s; got {data[:200]!r}")


def _read_response(s: socket.socket) -> bytes:
    """One whole response (headers and a Content-Length body) from a connection that stays open."""
    s.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536) or b"<closed>"
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += s.recv(65536) or b"<closed>"
    assert len(body) == length, "the server sent more than one response"
    return data


def _trickle(s: socket.socket, piece: bytes, seconds: float) -> tuple[bytes, float]:
    """Send ``piece`` every 0.2 s until the server closes the connection; (what it sent, when)."""
    start, data = time.monotonic(), b""
    s.settimeout(0.2)
    while time.monotonic() - start < seconds:
        try:
            s.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    else:
        raise AssertionError(f"the connection was still open after {seconds} s of trickling")
    return data, time.monotonic() - start


@pytest.mark.slow  # a few seconds of real sockets, browser or property examples; the full suite runs it
def test_slow_headers_are_cut_off(endless):
    _, port, _ = endless
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        data, seconds = _trickle(s, b"X-Slow: 1\r\n", READ_TIMEOUT + 4)
    assert data.startswith(b"HTTP/1.1 408")
    assert seconds < READ_TIMEOUT + 2
    # a connection that sends nothing at all is closed too, silently
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        start = time.monotonic()
        assert _read_all(s, READ_TIMEOUT + 4) == b""
        assert time.monotonic() - start < READ_TIMEOUT + 2
    # after a response, the keep-alive connection gets the same deadline for its next request
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _read_response(s).startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        data, seconds = _trickle(s, b"X-Slow: 1\r\n", READ_TIMEOUT + 4)
    assert data.startswith(b"HTTP/1.1 408") and seconds < READ_TIMEOUT + 2


@pytest.mark.slow  # a few seconds of real sockets, browser or property examples; the full suite runs it
def test_slow_body_gets_408_and_the_connection_is_closed(endless):
    _, port, _ = endless
    head = (
        b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    # trickled: a byte every 0.2 s keeps the connection busy, the deadline counts from the headers
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head + b'{"prompt": ')
        data, seconds = _trickle(s, b" ", READ_TIMEOUT + 4)
    assert seconds < READ_TIMEOUT + 2
    status, _, rest = data.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 408"), data[:200]
    error = json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["code"] == "request_timeout"
    # stalled: part of the body, then nothing
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        start = time.monotonic()
        s.sendall(head + b'{"prompt": "a"')
        data = _read_all(s, READ_TIMEOUT + 4)
    assert data.startswith(b"HTTP/1.1 408") and b"connection: close" in data.lower()
    assert time.monotonic() - start < READ_TIMEOUT + 2


def test_connections_beyond_the_limit_get_503(endless_run):
    app = create_app(endless_run)
    with serving(app, max_connections=3) as (url, port):
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        try:  # once the server has accepted them, a fourth connection is one too many
            wait_for(lambda: httpx.get(url + "/healthz", timeout=HTTP_TIMEOUT).status_code == 503, 5, "a 503")
        finally:
            for s in idle:
                s.close()
        wait_for(
            lambda: httpx.get(url + "/healthz", timeout=HTTP_TIMEOUT).status_code == 200, 5, "serving again"
        )


# ------------------------------------------------------------------ 4. the API key outside of ps


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_cmd.register(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def _served_key(args: argparse.Namespace, monkeypatch) -> str | None:
    """Run `gptlab serve` with uvicorn.run replaced: the API key the app was built with."""
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, kw=kw))
    assert serve_cmd.run(args) == 0
    app = seen["app"]
    app.state.engine.close()
    guard = next(m for m in app.user_middleware if m.cls is serve_app._Guard)
    return guard.kwargs["api_key"]


def test_api_key_from_a_file_or_the_environment(endless_run, tmp_path, monkeypatch, capsys):
    key_file = tmp_path / "key"
    key_file.write_text("  sk-from-file  \nsecond line ignored\n")
    key_file.chmod(0o600)
    monkeypatch.setenv(serve_cmd.API_KEY_ENV, "sk-from-env")
    base = ["--model", endless_run, "--device", "cpu"]
    assert _served_key(_parse([*base, "--api-key-file", str(key_file)]), monkeypatch) == "sk-from-file"
    assert "warning" not in capsys.readouterr().err
    assert _served_key(_parse(base), monkeypatch) == "sk-from-env"
    assert _served_key(_parse([*base, "--api-key", "sk-flag"]), monkeypatch) == "sk-flag"
    monkeypatch.delenv(serve_cmd.API_KEY_ENV)
    assert _served_key(_parse(base), monkeypatch) is None
    if os.name == "posix":
        key_file.chmod(0o644)
        assert _served_key(_parse([*base, "--api-key-file", str(key_file)]), monkeypatch) == "sk-from-file"
        assert "readable by other users" in capsys.readouterr().err


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    """gptlab.cli.main(argv): (exit code, stderr)."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the server gets as far as loading the model or starting uvicorn."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded: the bad flag should have stopped it before")

    monkeypatch.setattr(serve_app, "_load", refuse)
    monkeypatch.setattr(uvicorn, "run", refuse)


@pytest.mark.parametrize(
    ("content", "expected"),
    [("", "is empty"), ("\n\nsk-on-line-3\n", "is empty"), (None, "cannot read the API key file")],
)
def test_bad_api_key_file_fails_at_start_up(endless_run, tmp_path, capsys, no_model_load, content, expected):
    key_file = tmp_path / "key"
    if content is not None:
        key_file.write_text(content)
    code, err = _cli(["serve", "--model", endless_run, "--api-key-file", str(key_file)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], err


def test_api_key_and_key_file_together_is_an_error(endless_run, tmp_path, capsys, no_model_load):
    key_file = tmp_path / "key"
    key_file.write_text("sk-file\n")
    code, err = _cli(
        ["serve", "--model", endless_run, "--api-key", "a", "--api-key-file", str(key_file)], capsys
    )
    assert code == 2 and err.startswith("error:") and "not both" in err


def test_help_documents_the_safe_ways_to_give_the_key(capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "--api-key-file FILE" in out and serve_cmd.API_KEY_ENV in out
    assert "Visible to other users in ps" in out and "--allowed-hosts" in out and "--read-timeout" in out


# ------------------------------------------------------------------------- 5. limits at start-up


@pytest.mark.parametrize(
    "flags",
    [
        ["--max-concurrent", "0"],
        ["--max-concurrent", "-3"],
        ["--max-queue", "0"],
        ["--max-tokens", "0"],
        ["--max-n", "0"],
        ["--max-body-bytes", "-1"],
        ["--max-prompt-tokens", "0"],
        ["--max-connections", "0"],
        ["--timeout", "0"],
        ["--timeout", "-1.5"],
        ["--read-timeout", "0"],
        ["--port", "70000"],
    ],
)
def test_non_positive_limits_fail_before_loading_the_model(endless_run, capsys, no_model_load, flags):
    code, err = _cli(["serve", "--model", endless_run, *flags], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert flags[0] in lines[0]


def test_bad_limits_are_refused_before_an_app_or_model_exists(no_model_load):
    from gptlab.errors import GptlabError

    for kwargs in (
        {"max_concurrent": 0},
        {"max_queue": 0},
        {"read_timeout_s": 0},
        {"timeout_s": float("inf")},
    ):
        with pytest.raises(GptlabError):
            ServeLimits(**kwargs)
