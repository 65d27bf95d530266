"""A tiny fine-tuning chain for the continual-learning tests: a random char GPT (base), a
sentiment classifier fine-tuned from it (A) and a translation fine-tune after A (A→B), with the
made-up data files they read."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

from samples import char_run

POSITIVE = ["good", "great", "fine", "nice", "happy"]
NEGATIVE = ["bad", "awful", "poor", "sad", "dull"]
WORDS = {"cat": "katze", "dog": "hund", "house": "haus", "tree": "baum", "sun": "sonne", "water": "wasser"}
TEMPLATE = "EN: {input}\nDE: "


def write_sentiment(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        word = rng.choice(POSITIVE if label else NEGATIVE)
        rows.append(json.dumps({"sentence": f"a {word} film", "label": label}))
    path.write_text("\n".join(rows) + "\n")
    return path


def write_pairs(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    rows = [json.dumps({"en": w, "de": WORDS[w]}) for w in (rng.choice(sorted(WORDS)) for _ in range(n))]
    path.write_text("\n".join(rows) + "\n")
    return path


def chain_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lm.txt").write_text("a good film\nthe cat and the dog\na sad house\n")
    return {
        "sentiment": write_sentiment(folder / "sentiment.jsonl", 120, 0),
        "sentiment_eval": write_sentiment(folder / "sentiment_eval.jsonl", 40, 1),
        "pairs": write_pairs(folder / "pairs.jsonl", 80, 2),
        "pairs_eval": write_pairs(folder / "pairs_eval.jsonl", 12, 3),
        "lm": folder / "lm.txt",
    }


def base_run(folder: Path) -> Path:
    return char_run(folder, string.ascii_letters + " :\n", block_size=48)


def classify_options(base: Path, data: Path, out: Path, **overrides):
    from gptlab.finetune.classify import ClassifyOptions

    settings = dict(
        model=str(base), data=str(data), out=str(out), text_column="sentence", epochs=2, batch_size=16,
        lr=3e-3, device="cpu", prompting_shots=(), progress=False,
    )  # fmt: skip
    return ClassifyOptions(**(settings | overrides))


def instruct_options(data: Path, out: Path, **overrides):
    from gptlab.finetune.instruct import InstructOptions

    settings = dict(
        data=str(data), out=str(out), template=TEMPLATE, input_field="en", output_field="de", epochs=2,
        batch_size=8, lr=3e-3, weight_decay=0.0, val_fraction=0.1, test_fraction=0.1, max_new_tokens=6,
        max_test_examples=4, device="cpu", progress=False, compare_base=False,
    )  # fmt: skip
    return InstructOptions(**(settings | overrides))


def build_chain(root: Path, instruct_epochs: int = 2) -> dict:
    """The files, the base, A (a classifier of base) and, with ``instruct_epochs``, A→B."""
    from gptlab.finetune.classify import finetune_classifier
    from gptlab.finetune.instruct import finetune_instruct

    files = chain_files(root / "data")
    base = base_run(root / "base")
    first = finetune_classifier(classify_options(base, files["sentiment"], root / "A")).out_dir
    chain = {"root": root, "files": files, "base": base, "A": first}
    if instruct_epochs:
        options = instruct_options(files["pairs"], root / "B", after=str(first), epochs=instruct_epochs)
        chain["B"] = finetune_instruct(options).out_dir
    return chain
