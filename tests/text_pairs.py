"""Real hypothesis/reference pairs for the text-metric tests (BLEU, ROUGE, the eval CLI).

References are the outputs of an Alpaca-format instruction file (tests/data/instructions.json, or
the real instruction-data through the ``dataset`` fixture); hypotheses are seeded
perturbations of them (word drops, swaps, substitutions) or unrelated outputs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PERTURBATIONS_MAX = 4
UNRELATED_SHARE = 0.2


def instruction_outputs(path: Path) -> list[str]:
    return [item["output"] for item in json.loads(path.read_text("utf-8"))]


def perturb(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    """Up to PERTURBATIONS_MAX edits: drop a word, swap two words, or substitute a word."""
    words = text.split()
    for _ in range(rng.randint(0, PERTURBATIONS_MAX)):
        if not words:
            break
        i = rng.randrange(len(words))
        edit = rng.choice(("drop", "swap", "substitute"))
        if edit == "drop":
            del words[i]
        elif edit == "swap":
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
        else:
            words[i] = rng.choice(vocabulary)
    return " ".join(words)


def make_pairs(path: Path, n: int, seed: int) -> list[tuple[str, str]]:
    """n (hypothesis, reference) pairs: mostly perturbed references, some unrelated lines."""
    outputs = instruction_outputs(path)
    vocabulary = sorted({w for line in outputs for w in line.split()})
    rng = random.Random(seed)
    pairs = []
    for reference in rng.sample(outputs, n):
        if rng.random() < UNRELATED_SHARE:
            pairs.append((rng.choice(outputs), reference))
        else:
            pairs.append((perturb(reference, rng, vocabulary), reference))
    return pairs
