"""Input -> output pairs (gptlab.data.pairs) and prompt-string templates (gptlab.data.tasks):
loading, line-numbered errors, filling, encoding, extracting the output, the CLI's escapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptlab.data.pairs import Pair, load_pairs
from gptlab.data.tasks import (
    InstructionExample,
    check_template,
    encode_example,
    encode_prompt,
    extract_response,
    fill_template,
    format_prompt,
    is_prompt_template,
)
from gptlab.errors import GptlabError
from gptlab.options import template_text
from gptlab.tokenizers.base import EOT
from gptlab.tokenizers.char import CharTokenizer

FIXTURE = Path(__file__).parent / "translations.jsonl"
TEMPLATE = "Translate English to German:\n{input}\n"


def write(tmp_path, *lines: str) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_load_pairs_reads_the_fields_and_line_numbers():
    pairs = load_pairs(FIXTURE, "en", "de")
    rows = [json.loads(line) for line in FIXTURE.read_text("utf-8").splitlines()]
    assert [(p.input, p.output) for p in pairs] == [(r["en"], r["de"]) for r in rows]
    assert [p.line for p in pairs] == list(range(1, len(rows) + 1))


def test_several_references_only_where_allowed(tmp_path):
    path = write(tmp_path, '{"doc": "a b c", "refs": ["a", "b c"], "x": 1}')
    assert load_pairs(path, "doc", "refs", multiple_references=True) == [Pair("a b c", ("a", "b c"), 1)]
    with pytest.raises(GptlabError, match="line 1: field 'refs' must be a string, got list"):
        load_pairs(path, "doc", "refs")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"en": "a", "de": "b"}', '["en", "de"]'], "line 2: expected a JSON object, got list"),
        (['{"en": "a", "de": "b"}', "", '{"en": "a", "de": "  "}'], "line 3: empty text in field 'de'"),
        (['{"en": "", "de": "b"}'], "line 1: empty text in field 'en'"),
        (['{"en": "a"}'], "line 1: missing field 'de' \\(fields: en\\)"),
        (['{"en": 3, "de": "b"}'], "line 1: field 'en' must be a string, got int"),
        (['{"en": "a", "de": "b"', ""], "line 1: bad JSON"),
        ([""], "has no examples"),
    ],
)
def test_bad_records_name_the_line(tmp_path, lines, message):
    path = write(tmp_path, *lines)
    with pytest.raises(GptlabError, match=message) as error:
        load_pairs(path, "en", "de", multiple_references=True)
    assert str(path) in str(error.value)


def test_field_names_must_differ_and_be_given():
    with pytest.raises(GptlabError, match="different fields"):
        load_pairs(FIXTURE, "en", "en")
    with pytest.raises(GptlabError, match="both"):
        load_pairs(FIXTURE, "en", "")


def test_a_template_string_must_contain_input():
    assert check_template(TEMPLATE) == TEMPLATE and check_template("chat") == "chat"
    for bad in ("Translate English to German:\n", "{inputs}", "vicuna", "{Input}"):
        with pytest.raises(GptlabError, match=r"\{input\}"):
            check_template(bad)
    assert is_prompt_template(TEMPLATE) and not is_prompt_template("alpaca") and not is_prompt_template(None)
    with pytest.raises(GptlabError, match="template name"):
        fill_template("alpaca", "x")


def test_filling_keeps_other_braces_and_fills_every_slot():
    assert fill_template('{"q": {input}} / {input} {other}', "hi") == '{"q": hi} / hi {other}'


def test_prompt_template_formats_encodes_and_extracts():
    tok = CharTokenizer.train(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ :\n", special_tokens=[EOT]
    )
    example = InstructionExample("", "a cat", "eine katze")
    assert format_prompt(example, TEMPLATE) == "Translate English to German:\na cat\n"
    # a chat message (no input) fills the slot with its text
    assert format_prompt(InstructionExample("a dog"), TEMPLATE) == "Translate English to German:\na dog\n"
    prompt = encode_prompt(example, tok, TEMPLATE)
    assert prompt == tok.encode("Translate English to German:\na cat\n")
    ids, n_prompt = encode_example(example, tok, TEMPLATE)
    assert n_prompt == len(prompt) and ids == prompt + tok.encode("eine katze") + [tok.eot_id]
    # the output follows the prompt directly: no marker to look for (a "###" in it stays)
    assert extract_response(" eine ### katze \n", TEMPLATE) == "eine ### katze"
    assert extract_response("eine katze" + EOT + "junk", TEMPLATE) == "eine katze"


def test_command_line_escapes_in_templates():
    assert template_text(r"Translate:\n{input}\n") == "Translate:\n{input}\n"
    assert template_text(r"a\tb\\n") == "a\tb\\n"  # an escaped backslash stays one backslash
    assert template_text("ä {input} ß") == "ä {input} ß"
