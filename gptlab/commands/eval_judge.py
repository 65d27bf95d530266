"""``gptlab eval judge``: score generated responses 0-100 with a judge model behind an
OpenAI-compatible API (thin wrapper over gptlab.eval.judge.judge_responses).

Input: ``--responses FILE.json``, a JSON list of objects with string fields ``"instruction"``,
``"reference"`` and ``"generated"`` and an optional string ``"input"`` (appended to the
instruction), as written by ``gptlab finetune instruct``. The API key is read from an environment
variable (``--api-key-env``), never from the command line, where it would land in shell history
and process lists.

The eval verb (gptlab/commands/eval.py) calls :func:`register_judge` on its sub-parsers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from gptlab.commands import add_overwrite
from gptlab.errors import GptlabError
from gptlab.eval.judge import DEFAULT_TIMEOUT_S
from gptlab.io import atomic_write_json, os_errors_as_gptlab, read_json

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
REQUIRED_FIELDS = ("instruction", "reference", "generated")


def register_judge(metrics: argparse._SubParsersAction) -> None:
    """Add the ``judge`` sub-verb to ``gptlab eval``."""
    judge = metrics.add_parser(
        "judge",
        help="LLM-as-judge: score responses 0-100 with a model behind an OpenAI-compatible API",
        description=(
            "Ask a judge model (a local Ollama, llama.cpp or vLLM server, or a hosted API) to grade each "
            "response of a responses.json file. The judge gets one user message, "
            "gptlab.eval.judge.JUDGE_PROMPT: the instruction (with its input), the reference answer and "
            "the response inside tags, and the request to reply with one integer from 0 to 100: 0 wrong, "
            "unrelated or empty; 50 partly correct or incomplete; 100 correct and complete, as good as the "
            "reference; meaning counts, not wording. The reply is parsed leniently ('85', '85/100', "
            "'Score: 85', else the first integer 0-100); a reply without one is counted as unparsed and "
            "left out of the mean. Requests go to URL/chat/completions with temperature 0. Scores are a "
            "rough signal: the judged text may try to sway the judge."
        ),
    )
    judge.add_argument(
        "--responses",
        required=True,
        metavar="FILE",
        help='JSON list of {"instruction", "input" (optional), "reference", "generated"} objects',
    )
    judge.add_argument(
        "--judge-url",
        required=True,
        metavar="URL",
        help="OpenAI-compatible base URL, e.g. http://127.0.0.1:11434/v1 (or the full /chat/completions)",
    )
    judge.add_argument("--judge-model", required=True, metavar="NAME", help="model name the server knows")
    judge.add_argument(
        "--api-key-env",
        metavar="VAR",
        help=f"environment variable holding the API key (default: {DEFAULT_KEY_ENV}; unset: no key is sent)",
    )
    judge.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per request (default: %(default)s)"
    )
    judge.add_argument(
        "--out", metavar="FILE", help="write the per-response scores and judge replies as JSON"
    )
    add_overwrite(judge, "the --out file")
    judge.add_argument("--json", action="store_true", help="print machine-readable JSON")
    judge.set_defaults(func=run_judge)


def load_judge_responses(path: str | os.PathLike) -> list[dict]:
    """The entries of a responses file, checked; GptlabError naming the file and the item index."""
    data = read_json(path, "responses file")
    if not isinstance(data, list) or not data:
        raise GptlabError(f"responses file {path}: expected a non-empty JSON list of objects")
    for i, item in enumerate(data):
        where = f"responses file {path}, item {i}"
        if not isinstance(item, dict):
            raise GptlabError(f"{where}: expected an object, got {type(item).__name__}")
        for key in REQUIRED_FIELDS:
            if key not in item:
                raise GptlabError(f"{where}: missing field {key!r}")
            if not isinstance(item[key], str):
                raise GptlabError(f"{where}: field {key!r} must be a string, got {type(item[key]).__name__}")
        if item.get("input") is not None and not isinstance(item["input"], str):
            raise GptlabError(f"{where}: field 'input' must be a string, got {type(item['input']).__name__}")
    return data


def _api_key(env_var: str | None) -> str | None:
    key = os.environ.get(env_var or DEFAULT_KEY_ENV) or None
    if env_var is not None and key is None:  # asked for by name: a typo should not go unnoticed
        raise GptlabError(f"--api-key-env {env_var}: the environment variable {env_var} is not set or empty")
    return key


def run_judge(args: argparse.Namespace) -> int:
    from gptlab.eval.judge import judge_responses

    if not args.timeout > 0:
        raise GptlabError(f"--timeout must be > 0 seconds, got {args.timeout}")
    if args.out:  # before any request is sent, not after
        from gptlab.outputs import claim_file

        claim_file(args.out, what="--out file", overwrite=args.overwrite, sources=[args.responses])
    responses = load_judge_responses(args.responses)
    api_key = _api_key(args.api_key_env)

    def progress(done: int, total: int) -> None:
        print(f"\rjudged {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    result = judge_responses(
        responses,
        args.judge_url,
        args.judge_model,
        api_key=api_key,
        timeout=args.timeout,
        progress=progress if sys.stderr.isatty() and not args.json else None,
    )
    summary = {
        "metric": "judge",
        "responses": args.responses,
        "judge_url": args.judge_url,
        "judge_model": args.judge_model,
        "mean": result.mean,
        "n": len(result.scores),
        "parsed": len(result.parsed),
        "unparsed": result.unparsed,
    }
    if args.out:
        items = [
            {**entry, "score": score, "judge_reply": reply}
            for entry, score, reply in zip(responses, result.scores, result.replies)
        ]
        with os_errors_as_gptlab(f"cannot write {args.out}"):
            atomic_write_json(Path(args.out), {**summary, "items": items})
    if args.json:
        print(json.dumps({**summary, "scores": result.scores}, indent=2))
        return 0
    mean = "n/a (no reply had a score)" if result.mean is None else f"{result.mean:.2f} / 100"
    print(f"judge {args.judge_model}: mean score {mean}")
    print(f"{len(result.parsed)} of {len(result.scores)} replies parsed, {result.unparsed} unparsed")
    if args.out:
        print(f"per-response scores: {args.out}")
    return 0
