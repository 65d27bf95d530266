"""A tiny classification task the classifier tests share: label "alarm" if the text contains a 'z'
anywhere, else "calm". The decisive character sits at a random position, so the last token's
state must look back over the whole text (what pooling="last" relies on)."""

from __future__ import annotations

import random


def synthetic_rows(n: int, seed: int = 0, min_len: int = 3, max_len: int = 12) -> list[tuple[str, str]]:
    """n (label, text) rows over the letters a-d, every other one with a 'z' planted."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        text = [rng.choice("abcd") for _ in range(rng.randint(min_len, max_len))]
        if i % 2:
            text[rng.randrange(len(text))] = "z"
        rows.append(("alarm" if "z" in text else "calm", "".join(text)))
    return rows


def write_task_tsv(path, n: int, seed: int = 0):
    """``n`` synthetic rows as a TSV with a header (label, text): the file `finetune classify` reads."""
    path.write_text("label\ttext\n" + "".join(f"{y}\t{x}\n" for y, x in synthetic_rows(n, seed)))
    return path
