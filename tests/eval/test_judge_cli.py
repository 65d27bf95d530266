"""``gptlab eval judge`` end to end against a stub OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gptlab.cli import main

RESPONSES = [
    {"instruction": "Name a colour.", "input": "", "reference": "Red.", "generated": "Blue."},
    {"instruction": "Fix the spelling.", "input": "freind", "reference": "friend", "generated": "friend"},
    {"instruction": "Say hi.", "reference": "Hi!", "generated": "Hi!"},  # no "input": it is optional
]


def tagged(prompt: str, tag: str) -> str:
    return re.search(rf"<{tag}>\n(.*?)\n</{tag}>", prompt, re.DOTALL).group(1)


class FairJudge(BaseHTTPRequestHandler):
    """Scores 90 when the graded response equals the reference, else 10; the server's ``mode``
    can make it fail instead. Records each request's headers and prompt."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        self.server.seen.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "prompt": prompt}
        )
        if self.server.mode == "http500":
            status, payload = 500, b'{"error": "overloaded"}'
        elif self.server.mode == "garbage":
            status, payload = 200, b"<html>definitely not json</html>"
        else:
            score = 90 if tagged(prompt, "response") == tagged(prompt, "reference") else 10
            reply = {"choices": [{"message": {"role": "assistant", "content": f"Score: {score}"}}]}
            status, payload = 200, json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FairJudge)
    server.seen, server.mode, server.daemon_threads = [], "fair", True
    threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def responses_file(tmp_path):
    path = tmp_path / "responses.json"
    path.write_text(json.dumps(RESPONSES), encoding="utf-8")
    return path


def judge(server, responses, *extra: str) -> int:
    argv = ["eval", "judge", "--responses", str(responses), "--judge-url", server.url]
    return main([*argv, "--judge-model", "judge-1", "--timeout", "5", *extra])


def test_mean_and_per_response_scores(judge_server, responses_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    out_file = tmp_path / "scores.json"
    assert judge(judge_server, responses_file, "--out", str(out_file)) == 0
    out = capsys.readouterr().out
    assert "mean score 63.33 / 100" in out and "3 of 3 replies parsed, 0 unparsed" in out
    assert [r["path"] for r in judge_server.seen] == ["/v1/chat/completions"] * 3
    assert all(r["auth"] == "Bearer sk-from-env" for r in judge_server.seen)
    assert "Fix the spelling.\n\nfreind" in judge_server.seen[1]["prompt"]  # the input joins the instruction
    saved = json.loads(out_file.read_text(encoding="utf-8"))
    assert saved["mean"] == pytest.approx(190 / 3) and saved["n"] == 3 and saved["unparsed"] == 0
    assert [item["score"] for item in saved["items"]] == [10, 90, 90]
    assert saved["items"][0]["generated"] == "Blue." and saved["items"][0]["judge_reply"] == "Score: 10"


def test_json_output_and_a_named_key_variable(judge_server, responses_file, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-other")
    assert judge(judge_server, responses_file, "--api-key-env", "MY_JUDGE_KEY", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scores"] == [10, 90, 90] and report["parsed"] == 3 and report["judge_model"] == "judge-1"
    assert judge_server.seen[0]["auth"] == "Bearer sk-other"


def test_no_key_in_the_environment_sends_no_header(judge_server, responses_file, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert judge(judge_server, responses_file) == 0
    assert all(r["auth"] is None for r in judge_server.seen)
    monkeypatch.delenv("UNSET_KEY_VAR", raising=False)
    assert judge(judge_server, responses_file, "--api-key-env", "UNSET_KEY_VAR") == 2
    assert "UNSET_KEY_VAR is not set" in capsys.readouterr().err


@pytest.mark.parametrize("mode, message", [("http500", "HTTP 500"), ("garbage", "did not answer with JSON")])
def test_a_failing_judge_is_exit_2_with_a_clear_error(judge_server, responses_file, capsys, mode, message):
    judge_server.mode = mode
    assert judge(judge_server, responses_file) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: judge endpoint") and message in captured.err
    assert "Traceback" not in captured.err and judge_server.url in captured.err


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"instruction": "x"}', "expected a non-empty JSON list"),
        ("[]", "expected a non-empty JSON list"),
        ('[{"instruction": "x", "reference": "y", "generated": "z"}, {"instruction": "x"', "not valid JSON"),
        ('[{"instruction": "x", "reference": "y", "generated": "z"}, "text"]', "item 1: expected an object"),
        (
            '[{"instruction": "x", "reference": "y", "generated": "z"}, {"instruction": "x", "reference": "y"}]',
            "item 1: missing field 'generated'",
        ),
        ('[{"instruction": "x", "reference": ["y"], "generated": "z"}]', "item 0: field 'reference' must be"),
        ('[{"instruction": "x", "input": 3, "reference": "y", "generated": "z"}]', "item 0: field 'input'"),
    ],
)
def test_bad_responses_files_name_the_file_and_item(judge_server, tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    assert judge(judge_server, path) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err and message in err
    assert judge_server.seen == []  # the file is checked before any request


def test_help_documents_the_prompt_and_the_scale(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "judge", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "JUDGE_PROMPT" in help_text and "0 to 100" in help_text
