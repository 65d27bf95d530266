#!/usr/bin/env bash
# The "Retrieval" experiment of docs/experiments.md: a made-up fact collection (examples/rag_facts.py),
# indexed with MiniLM and with the model's own mean-pooled states, scored by `gptlab eval rag` in the
# three search modes.   bash examples/rag-experiment.sh OUT [MODEL]   (MODEL: runs/quickstart/best)
set -euo pipefail
OUT=${1:?usage: rag-experiment.sh OUT [MODEL]}
MODEL=${2:-runs/quickstart/best}
python examples/rag_facts.py --entities 100 --seed 0 --out "$OUT/facts"
python -m gptlab rag index --docs "$OUT/facts/docs.jsonl" --out "$OUT/idx-minilm" --chunk-tokens 32 --overlap 8 --json \
  > "$OUT/index-minilm.json"
python -m gptlab rag index --docs "$OUT/facts/docs.jsonl" --out "$OUT/idx-run" --embedder "$MODEL" --chunk-tokens 32 \
  --overlap 8 --json > "$OUT/index-run.json"
for mode in bm25 dense hybrid; do
  python -m gptlab eval rag --index "$OUT/idx-minilm" --model "$MODEL" --data "$OUT/facts/qa.jsonl" --k 4 --mode $mode \
    --json > "$OUT/eval-minilm-$mode.json"
done
for mode in dense hybrid; do
  python -m gptlab eval rag --index "$OUT/idx-run" --model "$MODEL" --data "$OUT/facts/qa.jsonl" --k 4 --mode $mode \
    --json > "$OUT/eval-run-$mode.json"
done
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| embedder | mode | recall@4 [95% CI] | MRR@4 | answer match, with retrieval | closed book |")
print("|---|---|---|---|---|---|")
for path in sorted(out.glob("eval-*.json")):
    _, embedder, mode = path.stem.split("-")
    d = json.loads(path.read_text())
    r, a, c = d["recall_at_k"], d["answer_match_rag"], d["answer_match_closed_book"]
    cell = lambda x: f"{x['count']}/{x['n']} [{x['ci95'][0]:.3f}, {x['ci95'][1]:.3f}]"
    print(f"| {embedder} | {mode} | {r['value']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | {d['mrr']:.3f} | {cell(a)} | {cell(c)} |")
PY
