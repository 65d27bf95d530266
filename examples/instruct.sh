#!/usr/bin/env bash
# Pretrain a tiny GPT on CPU (or reuse OUT_DIR/base), fine-tune it to follow Alpaca-format
# instructions, score its test-split responses (ROUGE-L, BLEU, exact match) against the base model's,
# and ask it one question through `gptlab chat`. About 7 minutes on 2 cores.
#   bash examples/instruct.sh OUT_DIR [DATA_FILE]   (default data: ../shared/data/instruction-data.json)
set -euo pipefail
OUT="${1:?usage: examples/instruct.sh OUT_DIR [DATA_FILE]}"
source "$(dirname "$0")/_common.sh"
DATA="${2:-$SHARED_DATA/instruction-data.json}"
[[ -f "$DATA" ]] || { echo "data file not found: $DATA" >&2; exit 2; }
mkdir -p "$OUT"

pretrain_base "$OUT/base"
echo "== instruction fine-tuning (Alpaca template, full fine-tune)"
"$GPTLAB" finetune instruct --model "$OUT/base" --data "$DATA" --out "$OUT/instruct" \
  --epochs 3 --lr 1e-3 --batch-size 8 --max-new-tokens 64 --seed 0 --no-progress

echo "== the fine-tuned responses, rescored from responses.json"
"$GPTLAB" eval rouge --responses "$OUT/instruct/responses.json" --types rougeL
"$GPTLAB" eval bleu --responses "$OUT/instruct/responses.json"
echo "== chat"
echo "Name three primary colors." | "$GPTLAB" chat --model "$OUT/instruct" --seed 0 --max-new-tokens 40
echo "report: $OUT/instruct/report.html"
