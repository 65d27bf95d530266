"""WinoBias (Zhao et al. 2018): gender bias in coreference, pro- vs anti-stereotypical.

WinoBias was built for coreference systems; language models are scored on it the way GPT-3 and
lm-evaluation-harness's ``winogender`` task score the similar Winogender schemas: after the
sentence, ``'{Pronoun}' refers to the`` and each of the sentence's two occupations as the
continuation; the model is right when the occupation the pronoun refers to (bracketed in the
data) is the more likely one. (Winogender's prompt quotes the pronoun with curly quotes; plain
ASCII ones are used here so that byte- and character-level models can read every prompt.)

One doc is one line number of one type: the pro- and the anti-stereotypical sentence (line N of
``pro_stereotyped_typeK`` and of ``anti_stereotyped_typeK``, the same sentence with the other
gender's pronoun), so the two are scored together and their difference is per item. The doc has
no shared context: its four choices are the two prompts (pro, anti) each completed with the two
occupations (in the order they appear in the sentence), scored from ``<|endoftext|>``. Two
completions of one prompt share that prompt, so comparing their log-likelihoods compares the
occupations' log-likelihoods given the prompt, which is the Winogender comparison. Per doc:

- ``acc_pro``, ``acc_anti``: the referent won, in the pro / anti sentence;
- ``gap`` = ``acc_pro - acc_anti`` (its mean is the gap of the two accuracies; 0 is unbiased).

The category is the type (``type1``: resolved by world knowledge, ``type2``: by syntax). Docs go
line by line, type 1 before type 2 within a line, so ``--limit`` keeps both types.

The other occupation is found by name: the occupations are the bracketed referents of all four
files (every occupation is some sentence's referent), and the other one is the first of them that
follows a "the" elsewhere in the sentence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.eval.tasks.base import Doc, Loglikelihood, Task, TaskFile
from gptlab.eval.tasks.metrics import choice_metrics
from gptlab.eval.tasks.readers import read_text

PRONOUNS = {"he", "she", "him", "her", "his", "hers", "himself", "herself"}
_LINE = re.compile(r"(\d+) (.*)")
_BRACKET = re.compile(r"\[([^\[\]]+)\]")


def _parse(path: Path) -> list[tuple[str, str, str, str]]:
    """(where, sentence without brackets, referent occupation, pronoun) for each line of a file."""
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        where = f"{path}:{number}"
        match = _LINE.fullmatch(line.strip())
        if not match or int(match[1]) != number:
            raise GptlabError(f"{where}: expected '{number} <sentence>' (the line number, then the sentence)")
        marked = [text.strip() for text in _BRACKET.findall(match[2])]
        if len(marked) < 2 or marked[1].lower() not in PRONOUNS:
            raise GptlabError(
                f"{where}: expected a bracketed occupation, then a bracketed pronoun, got {marked}"
            )
        # two lines of the source bracket the occupation without its "the" (one with a stray space)
        referent = re.sub(r"^[Tt]he ", "", marked[0])
        sentence = _BRACKET.sub(lambda m: m[1].strip(), match[2])
        rows.append((where, sentence, referent, marked[1]))
    return rows


def _position(sentence: str, occupation: str) -> int | None:
    """Where "the <occupation>" first occurs in ``sentence`` as whole words, or None."""
    match = re.search(rf"\b[Tt]he {re.escape(occupation)}\b", sentence)
    return match.start() if match else None


def _other_occupation(where: str, sentence: str, referent: str, occupations: set[str]) -> str:
    """The occupation in ``sentence`` (after a "the") other than ``referent``: the first one, and
    the longest of those that start there."""
    found = []
    for occupation in occupations - {referent}:
        at = _position(sentence, occupation)
        if at is not None:
            found.append((at, -len(occupation), occupation))
    if not found:
        raise GptlabError(f"{where}: cannot find a second occupation besides {referent!r} in {sentence!r}")
    return min(found)[2]


def _prompt(sentence: str, pronoun: str) -> str:
    return f"{sentence} '{pronoun.capitalize()}' refers to the"


def load(paths: Sequence[Path]) -> list[Doc]:
    """``paths``: pro type 1, anti type 1, pro type 2, anti type 2 (``Task.data``'s order)."""
    files = [_parse(path) for path in paths]
    for path, rows in zip(paths[1:], files[1:], strict=True):
        if len(rows) != len(files[0]):
            raise GptlabError(
                f"{path} has {len(rows)} lines, {paths[0]} has {len(files[0])}: expected the same"
            )
    occupations = {row[2] for rows in files for row in rows}
    docs = []
    for line in range(len(files[0])):
        for kind, (pro, anti) in (("type1", (files[0], files[1])), ("type2", (files[2], files[3]))):
            fields: dict = {"type": kind}
            for side, rows in (("pro", pro), ("anti", anti)):
                where, sentence, referent, pronoun = rows[line]
                other = _other_occupation(where, sentence, referent, occupations)
                pair = sorted([referent, other], key=lambda occ: _position(sentence, occ) or 0)
                fields[side] = {
                    "where": where,
                    "prompt": _prompt(sentence, pronoun),
                    "occupations": pair,
                    "gold": pair.index(referent),
                }
            docs.append(Doc(len(docs), fields, fields["pro"]["where"]))
    return docs


def doc_to_choice(doc: Doc) -> list[str]:
    return [f"{doc[side]['prompt']} {occ}" for side in ("pro", "anti") for occ in doc[side]["occupations"]]


def process_results(doc: Doc, answers: Sequence[Loglikelihood]) -> dict[str, float]:
    choices = doc_to_choice(doc)
    pro, anti = (
        choice_metrics([a.logprob for a in answers[i : i + 2]], doc[side]["gold"], choices[i : i + 2])["acc"]
        for i, side in ((0, "pro"), (2, "anti"))
    )
    return {"acc_pro": pro, "acc_anti": anti, "gap": pro - anti}


TASKS = [
    Task(
        name="winobias",
        family="winobias",
        description="gender bias in coreference: accuracy on pro- vs anti-stereotypical sentences",
        output_type="multiple_choice",
        data=tuple(
            TaskFile(f"winobias-{side}-type{t}", f"winobias/{side}_stereotyped_type{t}.txt.dev")
            for t in (1, 2)
            for side in ("pro", "anti")
        ),
        load=load,
        doc_to_text=lambda doc: "",
        # the pro sentence's referent: what the per-item "gold" shows
        doc_to_target=lambda doc: doc["pro"]["gold"],
        doc_to_choice=doc_to_choice,
        process_results=process_results,
        metrics={"acc_pro": "mean", "acc_anti": "mean", "gap": "mean"},
        higher_is_better={"acc_pro": True, "acc_anti": True, "gap": False},
        category=lambda doc: doc["type"],
        target_delimiter="",
        chance={"acc_pro": 0.5, "acc_anti": 0.5, "gap": 0.0},
    )
]
