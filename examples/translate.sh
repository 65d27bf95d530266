#!/usr/bin/env bash
# Multi30k English -> German with a decoder-only GPT trained from scratch: a BPE tokenizer on both
# languages, a short language-model pretraining on the English and German sentences, then
# input -> output fine-tuning on the pairs (prompt masked in the loss, best epoch by validation
# loss), scored with corpus BLEU and chrF on the held-out validation split (greedy decoding).
# About 30 minutes on 2 idle CPU cores; the budgets below are wall-time caps, so a busy machine
# gets a weaker model in the same time rather than a longer run.
#   bash examples/translate.sh OUT_DIR [DATA_DIR]   (DATA_DIR holds multi30k/{train,val}.jsonl;
#   default ../shared/data/tasks). Knobs (env): PRETRAIN_MINUTES, FINETUNE_MINUTES, EPOCHS, BEAMS.
#   PRETRAIN_MINUTES=0 skips the language-model stage (the ablation: does pretraining help?): the
#   fine-tune then starts from the randomly initialised GPT of the same shape.
# Leaves the recommended model at OUT_DIR/final and the scores in OUT_DIR/results.json.
set -euo pipefail
OUT="${1:?usage: examples/translate.sh OUT_DIR [DATA_DIR]}"
source "$(dirname "$0")/_common.sh"
DATA="${2:-$TASK_DATA_DEFAULT}/multi30k"
need_file "$DATA/train.jsonl" "$DATA/val.jsonl"
mkdir -p "$OUT"
TEMPLATE='English: {input}\nGerman:'
if smoke; then
  VOCAB=300 PRE=(train.max_steps=4 train.batch_size=4) FT=(--epochs 1 --batch-size 4 --val-fraction 0.2 --test-fraction 0.2) LIMIT=(--limit 4)
  MODEL=(model.n_layer=1 model.n_head=2 model.n_embd=32 model.block_size=64)
else
  VOCAB=4000 PRE=(train.max_steps=100000 "train.max_minutes=${PRETRAIN_MINUTES:-5}" train.batch_size=32)
  # no pretraining: a one-step run at a vanishing learning rate only writes the initial weights
  [[ "${PRETRAIN_MINUTES:-5}" == 0 ]] && PRE=(train.max_steps=1 train.batch_size=32 optim.lr=1e-12 optim.min_lr=0)
  FT=(--epochs "${EPOCHS:-6}" --batch-size 32 --max-minutes "${FINETUNE_MINUTES:-20}" --val-fraction 0.02
    --test-fraction 0.01) LIMIT=()
  MODEL=(model.n_layer=4 model.n_head=4 model.n_embd=128 model.block_size=128 model.dropout=0.1)
fi

echo "== [$(elapsed)] a BPE tokenizer ($VOCAB tokens) on the English and German training sentences"
"$GPTLAB" data text --input "$DATA/train.jsonl" --fields en,de --out "$OUT/text/train-en-de.txt" --overwrite
"$GPTLAB" tokenizer train --input "$OUT/text/train-en-de.txt" --vocab-size "$VOCAB" \
  --out "$OUT/tokenizer.json" --overwrite
echo "== [$(elapsed)] the cost per language: tokens per character and per word, English vs German"
"$GPTLAB" data text --input "$DATA/val.jsonl" --fields en --out "$OUT/text/val-en.txt" --overwrite
"$GPTLAB" data text --input "$DATA/val.jsonl" --fields de --out "$OUT/text/val-de.txt" --overwrite
"$GPTLAB" tokenizer compare --input "$OUT/text/val-en.txt" "$OUT/text/val-de.txt" \
  --tokenizer "$OUT/tokenizer.json" --kinds tiktoken --json >"$OUT/tokenizer-cost.json"
"$GPTLAB" tokenizer compare --input "$OUT/text/val-en.txt" "$OUT/text/val-de.txt" \
  --tokenizer "$OUT/tokenizer.json" --kinds tiktoken

echo "== [$(elapsed)] pretraining from scratch on the sentences of both languages (a language model)"
pretrain_from_scratch "$OUT/pretrain" "$OUT/tokenizer.json" "$OUT/text/train-en-de.txt"

echo "== [$(elapsed)] fine-tuning on the pairs: English prompt -> German output"
"$GPTLAB" finetune instruct --model "$OUT/pretrain" --data "$DATA/train.jsonl" --out "$OUT/final" \
  --overwrite --input-field en --output-field de --template "$TEMPLATE" --bucket-by-length \
  --max-test-examples 16 --no-base-comparison \
  --lr 1e-3 --max-new-tokens 48 --seed 0 --no-progress "${FT[@]}" --json >"$OUT/finetune.json"

echo "== [$(elapsed)] held-out Multi30k validation: greedy decoding, BLEU and chrF"
"$GPTLAB" eval generation --model "$OUT/final" --data "$DATA/val.jsonl" --metrics bleu,chrf,exact \
  --max-new-tokens 48 --beams "${BEAMS:-1}" --batch-size 64 "${LIMIT[@]}" --out "$OUT/eval" --overwrite \
  --json >"$OUT/eval.json"
"$GPTLAB" eval generation --model "$OUT/final" --data "$DATA/val.jsonl" --metrics bleu,chrf \

cat >"$OUT/results.json" <<JSON
{"task": "multi30k en->de", "smoke": $SMOKE, "wall_seconds": $SECONDS,
 "validation": $(cat "$OUT/eval.json"),
 "pretrain": $(cat "$OUT/pretrain.json"),
 "finetune": $(cat "$OUT/finetune.json"),
 "tokenizer_cost": $(cat "$OUT/tokenizer-cost.json")}
JSON
echo "== [$(elapsed)] results (also in $OUT/results.json; outputs with per-sentence scores: $OUT/eval/outputs.jsonl)"
echo "validation: $(cat "$OUT/eval.json")"
echo "model: $OUT/final"
