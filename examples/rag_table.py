"""The markdown table of examples/rag-lab.sh: for each `gptlab eval rag --json` file, recall@k,
and answer match with retrieval and closed book (Wilson 95%), overall and per question kind.

    python examples/rag_table.py OUT/eval-bm25.json OUT/eval-hybrid.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gptlab.audit.common import wilson_interval

KINDS = {"What is": "occupation", "In what country": "country", "In what town": "birthplace"}


def cell(k: int, n: int) -> str:
    lo, hi = wilson_interval(k, n)
    return f"{k}/{n} = {k / n:.2f} [{lo:.2f}, {hi:.2f}]"


def main() -> None:
    print(
        "| mode | questions | recall@k | answer match, with retrieval [95%] | closed book [95%] | rag only / closed only |"
    )
    print("|---|---|---|---|---|---|")
    for path in sys.argv[1:]:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = d["per_question"]
        groups = {"all": rows} | {
            kind: [r for r in rows if r["question"].startswith(prefix)] for prefix, kind in KINDS.items()
        }
        for kind, group in groups.items():
            if not group:
                continue
            n = len(group)
            rag = sum(r["rag_match"] for r in group)
            closed = sum(r["closed_match"] for r in group)
            found = sum(r["rank"] is not None for r in group)
            only = sum(r["rag_match"] and not r["closed_match"] for r in group)
            c_only = sum(r["closed_match"] and not r["rag_match"] for r in group)
            print(
                f"| {d['mode']}, k={d['k']} | {kind} | {found / n:.3f} | {cell(rag, n)} | {cell(closed, n)} "
                f"| {only} / {c_only} |"
            )


if __name__ == "__main__":
    main()
