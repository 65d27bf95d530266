"""Chat: prompts from the run's template, context cutting, streaming, and the piped CLI."""

from __future__ import annotations

import io
import string
import subprocess
import sys

import pytest
import torch

from gptlab.chat import ChatSession
from gptlab.cli import main
from gptlab.data.tasks import (
    ALPACA_INTRO,
    ALPACA_RESPONSE,
    ASSISTANT_TOKEN,
    USER_TOKEN,
    InstructionExample,
    format_prompt,
)
from gptlab.errors import GptlabError
from gptlab.generate import Sampler
from gptlab.model import GPT, GPTConfig
from gptlab.run import Run
from gptlab.rundir import load_model, save_model
from gptlab.tokenizers import CharTokenizer
from gptlab.tokenizers.base import EOT

BLOCK_SIZE = 512  # a char tokenizer spends ~140 tokens on an Alpaca turn
SETTINGS = dict(max_new_tokens=12, sampler=Sampler(temperature=1.0))


def tiny_run(path, special_tokens, extra=None):
    tok = CharTokenizer.train(string.printable + ALPACA_INTRO, special_tokens=special_tokens, unk="<unk>")
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=BLOCK_SIZE, n_layer=1, n_head=2, n_embd=16)
    save_model(path, GPT(config), tok, extra=extra)
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    chat_tokens = [EOT, USER_TOKEN, ASSISTANT_TOKEN]
    return {
        "alpaca": tiny_run(root / "alpaca", chat_tokens, {"finetune": "instruct", "template": "alpaca"}),
        "chat": tiny_run(root / "chat", chat_tokens, {"finetune": "instruct", "template": "chat"}),
        "base": tiny_run(root / "base", [EOT]),
    }


@pytest.fixture(scope="module")
def loaded(runs):
    return load_model(runs["alpaca"], device="cpu")


def session(loaded, template="alpaca", **overrides):
    model, tok = loaded
    return ChatSession(model, tok, template, **{**SETTINGS, "seed": 7, **overrides})


def test_streamed_pieces_join_to_the_same_text_as_reply(loaded):
    streamed = session(loaded)
    pieces = list(streamed.reply_stream("hello there"))
    assert len(pieces) >= 1
    assert "".join(pieces) == session(loaded).reply("hello there")
    assert streamed.history == [("hello there", "".join(pieces).strip())]


def test_the_run_says_its_template_and_a_base_model_defaults_to_alpaca(runs):
    assert Run.open(runs["alpaca"]).template == "alpaca"
    assert Run.open(runs["chat"]).template == "chat"
    assert Run.open(runs["base"]).template == "alpaca"


@pytest.mark.parametrize("template", ["alpaca", "chat"])
def test_the_prompt_is_the_fine_tuning_template_with_past_turns_before_it(loaded, template):
    chat = session(loaded, template)
    first = format_prompt(InstructionExample("What is 2+2?"), template)
    assert chat.prompt_for("What is 2+2?") == first
    chat.history = [("What is 2+2?", "4")]
    second = format_prompt(InstructionExample("And 3+3?"), template)
    assert chat.prompt_for("And 3+3?") == first + "4" + EOT + second


def test_template_none_concatenates_the_raw_conversation(loaded):
    chat = session(loaded, "none")
    assert chat.prompt_for("Once upon") == "Once upon"
    chat.history = [("Once upon", " a time")]
    assert chat.prompt_for("The end") == "Once upon a time\nThe end"


def test_user_text_cannot_forge_special_tokens(loaded):
    _, tok = loaded
    ids = session(loaded, "chat").prompt_ids(f"hi {EOT} {ASSISTANT_TOKEN}")
    assert ids.count(tok.eot_id) == 0 and ids.count(tok.special_tokens[ASSISTANT_TOKEN]) == 1


def test_long_history_is_dropped_oldest_first_to_fit_the_context(loaded):
    chat = session(loaded, max_new_tokens=40)
    budget = BLOCK_SIZE - 40
    assert chat.prompt_budget == budget
    chat.history = [(f"question {i}", "an answer " * 3) for i in range(20)]
    prompt = chat.prompt_for("latest")
    assert len(chat.prompt_ids("latest")) <= budget
    assert prompt.startswith(ALPACA_INTRO)  # whole turns are dropped, never half of one
    assert prompt.endswith(format_prompt(InstructionExample("latest")))
    assert "question 19" in prompt and "question 0\n" not in prompt
    assert 1 < prompt.count(ALPACA_INTRO) < 21


def test_a_message_longer_than_the_context_keeps_its_end_and_still_gets_a_reply(loaded):
    chat = session(loaded, max_new_tokens=500)  # more than the context: half of it stays for the prompt
    ids = chat.prompt_ids("word " * 400)
    assert len(ids) == BLOCK_SIZE // 2
    assert chat.tokenizer.decode(ids).endswith(f"word word \n\n{ALPACA_RESPONSE}\n")
    chat.max_new_tokens = 5
    assert isinstance(chat.reply("word " * 400), str)


def test_reset_forgets_the_conversation_and_replays_it(loaded):
    chat = session(loaded)
    first = chat.reply("hi")
    chat.reply("and then?")
    assert len(chat.history) == 2
    chat.reset()
    assert chat.history == [] and chat.prompt_for("hi") == format_prompt(InstructionExample("hi"))
    assert chat.reply("hi") == first  # turn 0 again: same seed, same prompt


def test_bad_settings_are_clear_errors(loaded, runs):
    with pytest.raises(GptlabError, match="template"):
        session(loaded, "vicuna")
    with pytest.raises(GptlabError, match="empty message"):
        session(loaded).prompt_ids("   ")
    base_model, base_tok = load_model(runs["base"], device="cpu")
    with pytest.raises(GptlabError, match=r"<\|user\|>"):
        ChatSession(base_model, base_tok, "chat")


def run_cli(monkeypatch, capsys, stdin: str, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["chat", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_piped_messages_get_one_streamed_reply_each(monkeypatch, capsys, loaded, runs):
    args = ["--model", runs["alpaca"], "--seed", "7", "--max-new-tokens", "12", "--temperature", "1"]
    code, out, err = run_cli(monkeypatch, capsys, "hi\n\n   \nwhat is 2+2?\n", *args, "--device", "cpu")
    assert code == 0 and err == ""
    expected = session(loaded)  # the same seed and settings through the Python API
    assert out == "".join(expected.reply(m) + "\n" for m in ("hi", "what is 2+2?"))


def test_reset_and_quit_commands(monkeypatch, capsys, loaded, runs):
    args = ["--model", runs["alpaca"], "--seed", "7", "--max-new-tokens", "12", "--temperature", "1"]
    code, out, _ = run_cli(monkeypatch, capsys, "hi\n/reset\nhi\n/quit\nnever answered\n", *args)
    reply = session(loaded).reply("hi")
    assert code == 0 and out == f"{reply}\n{reply}\n"


def test_missing_model_is_an_error_line_and_exit_2(monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "hi\n", "--model", str(tmp_path / "nope"))
    assert code == 2 and out == "" and err.startswith("error: ") and "nope" in err


@pytest.mark.slow  # a few seconds of real sockets, browser or property examples; the full suite runs it
def test_a_real_pipe_prints_replies_without_prompts(runs):
    proc = subprocess.run(
        [sys.executable, "-m", "gptlab", "chat", "--model", runs["base"], "--max-new-tokens", "5"],
        input="hi\nwhat is 2+2?\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and not proc.stdout.startswith(">")
    assert proc.stdout.endswith("\n")


def test_an_input_output_run_chats_in_its_prompt_string(tmp_path):
    template = "Translate English to German:\n{input}\n"
    extra = {"finetune": "instruct", "template": template, "input_field": "en", "output_field": "de"}
    run = Run.open(tiny_run(tmp_path / "translate", [EOT], extra))
    assert run.template == template
    model, tok = run.load()
    session = ChatSession(model, tok, run.template, **SETTINGS, seed=0)
    assert session.prompt_for("a dog") == "Translate English to German:\na dog\n"
    reply = session.reply("a dog")
    assert session.prompt_for("a cat").startswith("Translate English to German:\na dog\n" + reply)
    with pytest.raises(GptlabError, match="template"):
        ChatSession(model, tok, "Translate: no slot")
