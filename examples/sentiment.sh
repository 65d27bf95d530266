#!/usr/bin/env bash
# SST-2 sentiment: pretrain a small GPT from scratch on the task's own sentences plus the other
# shared English text (SciTLDR abstracts, the English side of Multi30k), fine-tune it as a
# classifier (head on the last token, all weights trained, best epoch by validation loss), and
# score it on the held-out SST-2 validation sentences next to a bag-of-words logistic regression
# fitted on the same training file. The classifier run's results.json and report.html hold the
# error analysis (most confident mistakes, least confident correct answers, accuracy by length
# and by negation words). About 30 minutes on 2 idle CPU cores; the budgets below are wall-time
# caps, so a busy machine gets a weaker model in the same time rather than a longer run.
#   bash examples/sentiment.sh OUT_DIR [DATA_DIR]   (DATA_DIR holds sst2/{train,validation}.jsonl
#   and, when there, scitldr/train.jsonl and multi30k/train.jsonl; default ../shared/data/tasks).
#   Knobs (env): PRETRAIN_MINUTES, FINETUNE_MINUTES, EPOCHS.
# Leaves the recommended model at OUT_DIR/final and the scores in OUT_DIR/results.json.
set -euo pipefail
OUT="${1:?usage: examples/sentiment.sh OUT_DIR [DATA_DIR]}"
source "$(dirname "$0")/_common.sh"
TASKS="${2:-$TASK_DATA_DEFAULT}"
need_file "$TASKS/sst2/train.jsonl" "$TASKS/sst2/validation.jsonl"
mkdir -p "$OUT/text"
if smoke; then
  VOCAB=300 PRE=(train.max_steps=4 train.batch_size=4) LIMITS=(--epochs 1 --batch-size 4)
  MODEL=(model.n_layer=1 model.n_head=2 model.n_embd=32 model.block_size=64) SPLIT=(--val-fraction 0.25 --test-fraction 0.25)
else
  VOCAB=4000 PRE=(train.max_steps=100000 "train.max_minutes=${PRETRAIN_MINUTES:-10}" train.batch_size=32)
  LIMITS=(--epochs "${EPOCHS:-2}" --batch-size 32 --max-minutes "${FINETUNE_MINUTES:-10}")
  MODEL=(model.n_layer=4 model.n_head=4 model.n_embd=128 model.block_size=128 model.dropout=0.1)
  SPLIT=(--val-fraction 0.05 --test-fraction 0.05)
fi

echo "== [$(elapsed)] English text: the SST-2 training sentences plus the other shared English text"
TEXTS=("$OUT/text/sst2.txt")
"$GPTLAB" data text --input "$TASKS/sst2/train.jsonl" --fields sentence --out "$OUT/text/sst2.txt" --overwrite
if [[ -f "$TASKS/scitldr/train.jsonl" ]]; then
  "$GPTLAB" data text --input "$TASKS/scitldr/train.jsonl" --fields document,summary \
    --out "$OUT/text/scitldr.txt" --overwrite && TEXTS+=("$OUT/text/scitldr.txt")
fi
if [[ -f "$TASKS/multi30k/train.jsonl" ]]; then
  "$GPTLAB" data text --input "$TASKS/multi30k/train.jsonl" --fields en --out "$OUT/text/multi30k-en.txt" \
    --overwrite && TEXTS+=("$OUT/text/multi30k-en.txt")
fi
echo "== [$(elapsed)] a BPE tokenizer ($VOCAB tokens) on that text"
"$GPTLAB" tokenizer train --input "${TEXTS[@]}" --vocab-size "$VOCAB" --out "$OUT/tokenizer.json" --overwrite

echo "== [$(elapsed)] pretraining a GPT from scratch on it (a language model)"
pretrain_from_scratch "$OUT/pretrain" "$OUT/tokenizer.json" "${TEXTS[@]}"

echo "== [$(elapsed)] classifier fine-tune on the SST-2 training sentences (val/test split off them)"
"$GPTLAB" finetune classify --model "$OUT/pretrain" --data "$TASKS/sst2/train.jsonl" --out "$OUT/final" \
  --overwrite --text-column sentence --label-column label "${SPLIT[@]}" --trainable all --lr 5e-4 \
  --max-length 64 --prompting-shots --seed 0 --no-progress "${LIMITS[@]}" --json >"$OUT/finetune.json"

echo "== [$(elapsed)] held-out SST-2 validation sentences: the classifier, then the bag-of-words floor"
"$GPTLAB" eval classify --model "$OUT/final" --data "$TASKS/sst2/validation.jsonl" \
  --text-field sentence --label-field label --json >"$OUT/eval.json"
"$GPTLAB" eval classify --model "$OUT/final" --data "$TASKS/sst2/validation.jsonl" \
  --text-field sentence --label-field label
"$GPTLAB" eval baseline bow --train "$TASKS/sst2/train.jsonl" --data "$TASKS/sst2/validation.jsonl" \
  --text-field sentence --label-field label --json >"$OUT/bow.json"
"$GPTLAB" eval baseline bow --train "$TASKS/sst2/train.jsonl" --data "$TASKS/sst2/validation.jsonl" \
  --text-field sentence --label-field label

cat >"$OUT/results.json" <<JSON
{"task": "sst2", "smoke": $SMOKE, "wall_seconds": $SECONDS,
 "validation": $(cat "$OUT/eval.json"),
 "bag_of_words": $(cat "$OUT/bow.json"),
 "pretrain": $(cat "$OUT/pretrain.json"),
 "finetune": $(cat "$OUT/finetune.json")}
JSON
echo "== [$(elapsed)] done: $OUT/results.json; model and error analysis: $OUT/final (report.html)"
