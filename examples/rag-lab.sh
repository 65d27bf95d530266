#!/usr/bin/env bash
# Retrieval with a model that reads its context (docs/experiments.md, "Retrieval with a model that
# copies from its sources"): `gptlab data instructions --kind rag-copy` writes retrieval prompts
# about invented people (gptlab.rag.facts; `rag ask`'s exact prompt format, the answer's chunk among
# K sources, names from the training half only); a BPE tokenizer and a tiny GPT are trained from
# scratch on those lines; then `gptlab eval rag` asks it about 100 other invented people (the
# held-out half of the names: never in its training text) with retrieval (BM25 and hybrid,
# MiniLM) and closed book; answer match with Wilson 95% intervals.
#   bash examples/rag-lab.sh OUT_DIR      knobs (env): N, K, PRETRAIN_MINUTES, STEPS, SEED, ENTITIES (100),
#   MODES ("bm25 hybrid"); SMOKE=1: seconds
set -euo pipefail
OUT="${1:?usage: examples/rag-lab.sh OUT_DIR}"
source "$(dirname "$0")/_common.sh"
SEED="${SEED:-0}" K="${K:-2}"
if smoke; then
  N=60 VOCAB=300 ENTITIES=6 PRE=(train.max_steps=4 train.batch_size=4)
  MODEL=(model.n_layer=1 model.n_head=2 model.n_embd=32 model.block_size=160)
else
  N="${N:-4500}" VOCAB=600 ENTITIES="${ENTITIES:-100}"
  PRE=("train.max_steps=${STEPS:-3000}" train.batch_size=16 "train.max_minutes=${PRETRAIN_MINUTES:-30}")
  MODEL=(model.n_layer=2 model.n_head=4 model.n_embd=96 model.block_size=160 model.dropout=0.0)
fi
mkdir -p "$OUT/data"
echo "== [$(elapsed)] $N rag-copy training lines (seed $SEED, $K sources each)"
"$GPTLAB" data instructions --kind rag-copy --n "$N" --seed "$SEED" --out "$OUT/data/rag-copy.json" --overwrite
# the prompts keep their newlines (`gptlab data text` would write each record on one line, and the
# model must read them exactly as `rag ask` builds them); a blank line between examples
python - "$OUT/data/rag-copy.json" "$OUT/data/text.txt" <<'PY'
import json, sys
records = json.load(open(sys.argv[1], encoding="utf-8"))
open(sys.argv[2], "w", encoding="utf-8").write("".join(r["text"] + "\n\n" for r in records))
PY
"$GPTLAB" tokenizer train --input "$OUT/data/text.txt" --vocab-size "$VOCAB" --out "$OUT/tokenizer.json" --json >/dev/null

echo "== [$(elapsed)] a tiny GPT trained from scratch on those lines"
pretrain_from_scratch "$OUT/model" "$OUT/tokenizer.json" "$OUT/data/text.txt"

echo "== [$(elapsed)] the evaluation collection: $ENTITIES people with held-out names, 3 questions each"
rm -rf "$OUT/facts"
python "$HERE/rag_facts.py" --entities "$ENTITIES" --seed 1 --names held-out \
  --questions occupation country birthplace --out "$OUT/facts"
"$GPTLAB" rag index --docs "$OUT/facts/docs.jsonl" --out "$OUT/index" --overwrite --chunk-tokens 32 --overlap 8 \
  --json >"$OUT/index.json"
for mode in ${MODES:-bm25 hybrid}; do
  echo "== [$(elapsed)] eval rag, $mode, k=$K"
  "$GPTLAB" eval rag --index "$OUT/index" --model "$OUT/model" --data "$OUT/facts/qa.jsonl" --k "$K" --mode $mode \
    --json >"$OUT/eval-$mode.json"
done
python "$HERE/rag_table.py" "$OUT"/eval-*.json
