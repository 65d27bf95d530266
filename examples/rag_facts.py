"""Write a made-up fact collection for retrieval experiments: DOCS.jsonl (one short article per
invented entity, ``{"id", "text"}``) and QA.jsonl (PopQA-style questions about them,
``{"question", "answers", "doc"}``). The generator is gptlab.rag.facts.

Why made up: PopQA's questions are about Wikidata entities whose Wikipedia articles are the
collection retrieval should search; neither PopQA itself (its registry entry has no offline copy)
nor those articles are available offline here. Invented entities also guarantee that no model has
memorised the answers, the situation of PopQA's rare facts, so a closed-book answer can only be
right by chance and any gain comes from retrieval.

    python examples/rag_facts.py --entities 200 --seed 0 --out DIR   # DIR/docs.jsonl, DIR/qa.jsonl
    # names no rag-copy training example uses, and the birthplace question too (rag-lab.sh):
    python examples/rag_facts.py --entities 100 --names held-out --questions occupation country birthplace --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptlab.rag.facts import NAME_SETS, QUESTIONS, make_facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--names", choices=NAME_SETS, default="any", help="which half of the invented names")
    parser.add_argument("--questions", nargs="+", choices=QUESTIONS, default=["occupation", "country"])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    docs, qa = make_facts(args.entities, args.seed, args.names, args.questions)
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
