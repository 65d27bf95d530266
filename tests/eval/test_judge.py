"""LLM-as-judge against a stub OpenAI-compatible server on 127.0.0.1, and reply parsing."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gptlab.errors import GptlabError
from gptlab.eval.judge import chat_completions_url, judge_prompt, judge_responses, parse_score


class StubJudge(BaseHTTPRequestHandler):
    """Answers POST /v1/chat/completions with the server's queued behaviour; records requests."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        kind, value = server.behaviour(body) if callable(server.behaviour) else server.behaviour
        if kind == "sleep":
            time.sleep(value)
            kind, value = "reply", "50"
        if kind == "status":
            self.send_response(value)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "model not found"}}')
            return
        payload = (
            value.encode()
            if kind == "raw"
            else json.dumps(
                {"choices": [{"index": 0, "message": {"role": "assistant", "content": value}}]}
            ).encode()
        )
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout test)
            pass

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def stub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubJudge)
    server.requests, server.behaviour = [], ("reply", "75")
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield server
    server.shutdown()
    server.server_close()


RESPONSES = [
    {"instruction": "Name a colour.", "input": "", "reference": "Red.", "generated": "Blue."},
    {"instruction": "Fix the spelling.", "input": "freind", "reference": "friend", "generated": "friend"},
]


def test_scores_come_from_the_endpoint_and_requests_are_well_formed(stub):
    replies = iter(["40", "Score: 95"])
    stub.behaviour = lambda body: ("reply", next(replies))
    result = judge_responses(RESPONSES, stub.url, "judge-model", api_key="sk-test", timeout=5)
    assert result.scores == [40, 95] and result.mean == 67.5 and result.unparsed == 0
    assert [r["path"] for r in stub.requests] == ["/v1/chat/completions"] * 2
    first = stub.requests[0]
    assert first["headers"]["Authorization"] == "Bearer sk-test"
    assert first["body"]["model"] == "judge-model" and first["body"]["temperature"] == 0
    assert first["body"]["messages"] == [
        {"role": "user", "content": judge_prompt("Name a colour.", "Red.", "Blue.")}
    ]
    second = stub.requests[1]["body"]["messages"][0]["content"]
    assert "Fix the spelling.\n\nfreind" in second and "<response>\nfriend\n</response>" in second
    assert result.to_dict()["scores"] == [40, 95]


def test_no_api_key_no_header_and_unparsable_replies_count_as_unparsed(stub):
    stub.behaviour = ("reply", "I cannot grade this.")
    result = judge_responses(RESPONSES[:1], stub.url + "/chat/completions", "m", timeout=5)
    assert "Authorization" not in stub.requests[0]["headers"]
    assert stub.requests[0]["path"] == "/v1/chat/completions"
    assert result.scores == [None] and result.mean is None and result.unparsed == 1
    assert result.replies == ["I cannot grade this."]


def test_http_errors_become_gptlab_errors(stub):
    stub.behaviour = ("status", 404)
    with pytest.raises(GptlabError, match=r"HTTP 404.*model not found"):
        judge_responses(RESPONSES, stub.url, "m", timeout=5)
    stub.behaviour = ("status", 500)
    with pytest.raises(GptlabError, match="HTTP 500"):
        judge_responses(RESPONSES, stub.url, "m", timeout=5)


def test_malformed_replies_become_gptlab_errors(stub):
    stub.behaviour = ("raw", "<html>not json</html>")
    with pytest.raises(GptlabError, match="did not answer with JSON"):
        judge_responses(RESPONSES, stub.url, "m", timeout=5)
    stub.behaviour = ("raw", '{"choices": []}')
    with pytest.raises(GptlabError, match="choices"):
        judge_responses(RESPONSES, stub.url, "m", timeout=5)


def test_timeout_becomes_a_gptlab_error(stub):
    stub.behaviour = ("sleep", 1.0)
    start = time.monotonic()
    with pytest.raises(GptlabError, match="timeout"):
        judge_responses(RESPONSES, stub.url, "m", timeout=0.2)
    assert time.monotonic() - start < 1.0


def test_unreachable_endpoint_and_bad_url():
    with socket.socket() as s:  # a port nobody listens on: bind, read the number, close
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GptlabError, match="cannot reach"):
        judge_responses(RESPONSES, f"http://127.0.0.1:{port}/v1", "m", timeout=2)
    with pytest.raises(GptlabError, match="http"):
        chat_completions_url("127.0.0.1:8000")
    with pytest.raises(GptlabError, match="generated"):
        judge_responses([{"instruction": "x", "reference": "y"}], "http://127.0.0.1:1", "m")


@pytest.mark.parametrize(
    "reply, score",
    [
        ("85", 85),
        ("  **100** ", 100),
        ("0.", 0),
        ("Score: 72", 72),
        ("score = 64/100", 64),
        ("I'd give it 3 points for effort... final: 90/100", 90),
        ("<think>Maybe 20? The reference has 3 items.</think>\n88", 88),
        ("The response covers 2 of 3 points. 70", 2),  # first in-range integer: documented fallback
        ("Rating: 150", None),
        ("85.5", None),
        ("no number here", None),
        ("", None),
    ],
)
def test_parse_score(reply, score):
    assert parse_score(reply) == score


def test_url_forms():
    assert chat_completions_url("http://h:1/v1") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("https://h/v1/chat/completions/") == "https://h/v1/chat/completions"
