"""Write a made-up fact collection for retrieval experiments: DOCS.jsonl (one short article per
invented entity, ``{"id", "text"}``) and QA.jsonl (PopQA-style questions about them,
``{"question", "answers", "doc"}``).

Why made up: PopQA's questions are about Wikidata entities whose Wikipedia articles are the
collection retrieval should search; neither PopQA itself (its registry entry has no offline copy)
nor those articles are available offline here. Invented entities also guarantee that no model has
memorised the answers, the situation of PopQA's rare facts, so a closed-book answer can only be
right by chance and any gain comes from retrieval.

    python examples/rag_facts.py --entities 200 --seed 0 --out DIR   # DIR/docs.jsonl, DIR/qa.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SYLLABLES = [
    "ka",
    "lo",
    "mir",
    "ten",
    "sa",
    "vu",
    "dor",
    "ell",
    "pra",
    "qui",
    "zan",
    "fo",
    "ret",
    "bal",
    "nim",
    "osk",
    "tue",
    "gar",
    "wyn",
    "hel",
]
COUNTRIES = ["Norway", "Peru", "Kenya", "Japan", "Chile", "Ghana", "Spain", "Nepal", "Italy", "Egypt"]
OCCUPATIONS = ["painter", "chemist", "sailor", "architect", "poet", "surgeon", "composer", "farmer"]
FILLER = [
    "Little else is recorded about the early years.",
    "Local archives hold a few letters from that period.",
    "The name is sometimes spelled differently in older sources.",
    "Travellers described the region as quiet and remote.",
]


def name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()


def make(entities: int, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    seen: set[str] = set()
    docs, qa = [], []
    while len(docs) < entities:
        person, town = name(rng), name(rng)
        if person in seen or town in seen or person == town:
            continue
        seen |= {person, town}
        country, job = rng.choice(COUNTRIES), rng.choice(OCCUPATIONS)
        text = (
            f"{person} was a {job} born in the town of {town}. {rng.choice(FILLER)} "
            f"{town} is a small town in {country}. {rng.choice(FILLER)}"
        )
        docs.append({"id": person, "text": text})
        qa.append({"question": f"What is {person}'s occupation?", "answers": [job], "doc": person})
        qa.append({"question": f"In what country is {town}?", "answers": [country], "doc": person})
    return docs, qa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    docs, qa = make(args.entities, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for filename, rows in (("docs.jsonl", docs), ("qa.jsonl", qa)):
        path = out / filename
        if path.exists():
            raise SystemExit(f"{path} exists: remove it first")
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{out}: {len(docs)} documents, {len(qa)} questions")


if __name__ == "__main__":
    main()
