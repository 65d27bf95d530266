"""`gptlab finetune instruct` on input -> output pairs: a prompt-string template, the prompt
masked out of the loss, a separate validation file, length buckets, selection by a task metric,
the template and fields recorded for `eval generation`; bad input is a clear error."""

from __future__ import annotations

import json
import random
import string

import pytest
from samples import char_run

from gptlab.cli import main
from gptlab.data.tasks import InstructionDataset, InstructionExample, collate_instructions
from gptlab.errors import GptlabError
from gptlab.eval.generation import GenerationOptions, evaluate_generation
from gptlab.finetune.instruct import InstructOptions, finetune_instruct
from gptlab.model.gpt import IGNORE_INDEX
from gptlab.run import Run

WORDS = {"cat": "katze", "dog": "hund", "house": "haus", "tree": "baum", "sun": "sonne", "water": "wasser"}
TEMPLATE = "EN: {input}\nDE: "


def write_pairs(path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    words = sorted(WORDS)
    lines = [
        json.dumps({"en": w, "de": WORDS[w], "id": i})
        for i, w in enumerate(rng.choice(words) for _ in range(n))
    ]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    return char_run(tmp_path_factory.mktemp("base") / "run", string.ascii_letters + " :\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    write_pairs(folder / "train.jsonl", 150, seed=0)
    write_pairs(folder / "val.jsonl", 24, seed=1)
    return folder


def options(base_run, files, out, **overrides) -> InstructOptions:
    settings = dict(
        model=str(base_run),
        data=str(files / "train.jsonl"),
        val_data=str(files / "val.jsonl"),
        out=str(out),
        template=TEMPLATE,
        input_field="en",
        output_field="de",
        epochs=5,
        batch_size=8,
        lr=3e-3,
        weight_decay=0.0,
        test_fraction=0.1,
        max_new_tokens=8,
        device="cpu",
        progress=False,
        compare_base=False,
    )
    return InstructOptions(**(settings | overrides))


@pytest.fixture(scope="module")
def pairs_run(base_run, files, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "translate"
    return finetune_instruct(
        options(base_run, files, out, bucket_by_length=True, select_by="chrf", select_examples=12)
    )


@pytest.mark.slow
def test_learns_the_mapping_records_the_template_and_eval_generation_uses_it(pairs_run, files):
    assert pairs_run.scores["exact_match"] >= 0.5 and pairs_run.scores["chrf"] > 50  # a random model: 0
    run = Run.open(pairs_run.out_dir)
    assert run.template == TEMPLATE and run.fields == ("en", "de") and run.kind == "instruct"
    history = pairs_run.history
    best = max(history, key=lambda r: r["val_chrf"])  # the first of equal scores
    assert pairs_run.summary["best_epoch"] == best["epoch"] and pairs_run.summary["selected_by"] == "chrf"
    assert pairs_run.summary["splits"]["val"] == 24  # from --val-data, nothing cut from --data
    # the kept checkpoint is the selected epoch's: eval generation (the run's own template and
    # fields) on the same validation examples gives the chrF it was selected by
    options = GenerationOptions(max_new_tokens=8, limit=12, metrics=("chrf",), device="cpu")
    result = evaluate_generation(run, files / "val.jsonl", options)
    assert result.scores["chrf"] == pytest.approx(best["val_chrf"])
    responses = json.loads((pairs_run.out_dir / "responses.json").read_text())
    assert responses[0]["input"] in WORDS and responses[0]["instruction"] == ""


def test_the_prompt_is_masked_out_of_the_loss(base_run):
    _, tok = Run.open(base_run).load()
    example = InstructionExample("", "cat", "katze")
    ((ids, n_prompt),) = InstructionDataset([example], tok, TEMPLATE).items
    assert n_prompt == len(tok.encode("EN: cat\nDE: "))
    _, y = collate_instructions([(ids, n_prompt)], tok.eot_id, mask_prompt=True)
    targets = [t for t in y[0].tolist() if t != IGNORE_INDEX]
    assert tok.decode(targets[:-1]) == "katze" and targets[-1] == tok.eot_id


def test_bad_options_are_clear_errors(base_run, files, tmp_path):
    for overrides, message in (
        ({"template": "EN DE"}, r"\{input\}"),
        ({"template": "alpaca"}, r"needs a --template string with \{input\}"),
        ({"output_field": None}, "both --input-field and --output-field"),
        ({"input_field": None, "output_field": None}, "give --input-field and --output-field"),
        ({"select_by": "meteor"}, "select_by"),
    ):
        with pytest.raises(GptlabError, match=message):
            options(base_run, files, tmp_path / "x", **overrides).check()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"en": "cat", "de": ""}', "line 3: empty text in field 'de'"),
        ('"cat katze"', "line 3: expected a JSON object"),
    ],
)
def test_bad_data_names_the_line_on_the_command_line(base_run, tmp_path, capsys, line, message):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"en": "cat", "de": "katze"}\n{"en": "dog", "de": "hund"}\n' + line + "\n")
    args = [
        "finetune",
        "instruct",
        "--model",
        str(base_run),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "o"),
    ]
    args += ["--input-field", "en", "--output-field", "de", "--template", "EN: {input}\\nDE: ", "--json"]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert message in captured.err and str(data) in captured.err and captured.out == ""


def test_a_template_without_input_is_refused_on_the_command_line(base_run, files, tmp_path, capsys):
    args = ["finetune", "instruct", "--model", str(base_run), "--data", str(files / "train.jsonl")]
    args += [
        "--out",
        str(tmp_path / "o"),
        "--input-field",
        "en",
        "--output-field",
        "de",
        "--template",
        "EN DE",
    ]
    assert main(args) == 2 and "{input}" in capsys.readouterr().err
