#!/usr/bin/env bash
# Pretrain a tiny GPT on CPU, fine-tune it into an SMS spam classifier three ways (full, head only,
# LoRA), evaluate on the held-out test split and classify two messages. About 10 minutes on 2 cores.
#   bash examples/spam-classifier.sh OUT_DIR [DATA_FILE]   (default data: ../shared/data/sms-spam.tsv)
# DATA_FILE: label<TAB>text per line, no header (the SMS Spam Collection layout).
set -euo pipefail
OUT="${1:?usage: examples/spam-classifier.sh OUT_DIR [DATA_FILE]}"
source "$(dirname "$0")/_common.sh"
DATA="${2:-$SHARED_DATA/sms-spam.tsv}"
[[ -f "$DATA" ]] || { echo "data file not found: $DATA" >&2; exit 2; }
mkdir -p "$OUT"

pretrain_base "$OUT/base"
COMMON=(--model "$OUT/base" --data "$DATA" --label-column 0 --text-column 1 --epochs 3 --seed 0 --no-progress)

echo "== full fine-tune"
"$GPTLAB" finetune classify "${COMMON[@]}" --trainable all --lr 3e-4 --out "$OUT/full"
echo "== head only (a linear probe on the frozen GPT)"
"$GPTLAB" finetune classify "${COMMON[@]}" --trainable head --lr 3e-3 --prompting-shots --out "$OUT/head"
echo "== LoRA rank 8 on every block Linear, plus the head"
"$GPTLAB" finetune classify "${COMMON[@]}" --trainable head --lora-rank 8 --lr 3e-3 --prompting-shots --out "$OUT/lora"

echo "== test split, re-evaluated from the saved best checkpoint"
"$GPTLAB" eval classify --model "$OUT/full" --data "$OUT/full/test_split.jsonl"
"$GPTLAB" classify --model "$OUT/full" "WINNER!! You have been selected for a £900 prize. Call 09061701461 now" \
  "Ok, see you at the station at 5"
echo "reports: $OUT/full/report.html $OUT/head/report.html $OUT/lora/report.html"
