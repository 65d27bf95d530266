#!/usr/bin/env bash
# SciTLDR abstract -> one-sentence TLDR: a BPE tokenizer and a short language-model pretraining on
# the abstracts and TLDRs (plus the English side of Multi30k when it is there), then input ->
# output fine-tuning (prompt masked in the loss, best epoch by validation loss), scored with
# ROUGE-1/2/L against every reference TLDR of the SciTLDR dev split, next to the lead-1 and
# random-sentence baselines scored by the same code. About 30 minutes on 2 idle CPU cores; the
# budgets below are wall-time caps, so a busy machine gets a weaker model in the same time.
#   bash examples/summarize.sh OUT_DIR [DATA_DIR]   (DATA_DIR holds scitldr/{train,val}.jsonl;
#   default ../shared/data/tasks). Knobs (env): PRETRAIN_MINUTES, FINETUNE_MINUTES, EPOCHS, LIMIT.
# Leaves the recommended model at OUT_DIR/final and the scores in OUT_DIR/results.json.
set -euo pipefail
OUT="${1:?usage: examples/summarize.sh OUT_DIR [DATA_DIR]}"
source "$(dirname "$0")/_common.sh"
TASKS="${2:-$TASK_DATA_DEFAULT}"
DATA="$TASKS/scitldr"
need_file "$DATA/train.jsonl" "$DATA/val.jsonl"
mkdir -p "$OUT/text"
TEMPLATE='{input}\nTL;DR:'
if smoke; then
  VOCAB=300 PRE=(train.max_steps=4 train.batch_size=4) LIMIT=(--limit 3)
  FT=(--epochs 1 --batch-size 2 --val-fraction 0.25 --test-fraction 0.25)
  MODEL=(model.n_layer=1 model.n_head=2 model.n_embd=32 model.block_size=128)
else
  VOCAB=4000 PRE=(train.max_steps=100000 "train.max_minutes=${PRETRAIN_MINUTES:-6}" train.batch_size=16)
  FT=(--epochs "${EPOCHS:-4}" --batch-size 8 --max-minutes "${FINETUNE_MINUTES:-12}" --val-fraction 0.05
    --test-fraction 0.02)
  LIMIT=(--limit "${LIMIT:-200}")
  MODEL=(model.n_layer=4 model.n_head=4 model.n_embd=128 model.block_size=384 model.dropout=0.1)
fi

echo "== [$(elapsed)] English text: the abstracts and TLDRs (plus Multi30k's English captions if there)"
TEXTS=("$OUT/text/scitldr.txt")
"$GPTLAB" data text --input "$DATA/train.jsonl" --fields document,summary --out "$OUT/text/scitldr.txt" --overwrite
if [[ -f "$TASKS/multi30k/train.jsonl" ]]; then
  "$GPTLAB" data text --input "$TASKS/multi30k/train.jsonl" --fields en --out "$OUT/text/multi30k-en.txt" \
    --overwrite && TEXTS+=("$OUT/text/multi30k-en.txt")
fi
"$GPTLAB" tokenizer train --input "${TEXTS[@]}" --vocab-size "$VOCAB" --out "$OUT/tokenizer.json" --overwrite

echo "== [$(elapsed)] pretraining a GPT from scratch on that text (a language model)"
pretrain_from_scratch "$OUT/pretrain" "$OUT/tokenizer.json" "${TEXTS[@]}"

echo "== [$(elapsed)] fine-tuning: abstract prompt -> TLDR"
"$GPTLAB" finetune instruct --model "$OUT/pretrain" --data "$DATA/train.jsonl" --out "$OUT/final" --overwrite \
  --input-field document --output-field summary --template "$TEMPLATE" --bucket-by-length \
  --max-test-examples 8 --no-base-comparison --lr 1e-3 --max-new-tokens 40 --seed 0 --no-progress \
  "${FT[@]}" --json >"$OUT/finetune.json"

echo "== [$(elapsed)] SciTLDR dev: greedy TLDRs, ROUGE against all references; then the baselines"
"$GPTLAB" eval generation --model "$OUT/final" --data "$DATA/val.jsonl" --target-field references \
  --metrics rouge --max-new-tokens 40 --batch-size 16 "${LIMIT[@]}" --out "$OUT/eval" --overwrite \
  --json >"$OUT/eval.json"
echo "model: $(cat "$OUT/eval.json")"
"$GPTLAB" eval baseline summary --data "$DATA/val.jsonl" --target-field references --json >"$OUT/baselines.json"
"$GPTLAB" eval baseline summary --data "$DATA/val.jsonl" --target-field references

cat >"$OUT/results.json" <<JSON
{"task": "scitldr abstract->tldr", "smoke": $SMOKE, "wall_seconds": $SECONDS,
 "validation": $(cat "$OUT/eval.json"),
 "baselines": $(cat "$OUT/baselines.json"),
 "pretrain": $(cat "$OUT/pretrain.json"),
 "finetune": $(cat "$OUT/finetune.json")}
JSON
echo "== [$(elapsed)] done: $OUT/results.json; model: $OUT/final; outputs: $OUT/eval/outputs.jsonl"
