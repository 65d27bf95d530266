#!/usr/bin/env bash
# Preference tuning end to end (docs/experiments.md, "Preference tuning"): a small GPT pretrained on
# the text of 90% of the instruction data, instruction-tuned on the same 90% (SFT), preference pairs
# built from the SFT model's own answers (reference = chosen, its answer = rejected: `gptlab data
# prefs`), the SFT model DPO-tuned on them, a Bradley-Terry reward model trained on the same pairs,
# and DPO compared with SFT on the held-out 10% by the reward model and by ROUGE-L
# (bench/preference_winrate.py). Stages already done (base, sft, prefs) are kept.
#   bash examples/preference.sh OUT_DIR [DATA_FILE]   (default data: ../shared/data/instruction-data.json)
# Knobs: N_LAYER (2), N_EMBD (64), PRE_STEPS (150), SFT_EPOCHS (4), PREF_LIMIT (pairs from the first N training examples, 990),
#        NAME (the run folder: OUT_DIR/NAME, default the loss), LOSS (dpo|ipo|cdpo), BETA (0.5), DPO_LR (1e-5), DPO_EPOCHS (2), EPS (cdpo's label smoothing).
set -euo pipefail
OUT="${1:?usage: examples/preference.sh OUT_DIR [DATA_FILE]}"
source "$(dirname "$0")/_common.sh"
PYTHON="${PYTHON:-python3}"
DATA="${2:-$SHARED_DATA/instruction-data.json}"
need_file "$DATA"
mkdir -p "$OUT"

echo "== split: 90% for SFT and preference pairs, 10% held out"
"$PYTHON" - "$DATA" "$OUT" <<'PY'
import json, sys
from gptlab.data.tasks import load_instructions, split_examples
train, _, test = split_examples(load_instructions(sys.argv[1]), 0.0, 0.1, seed=0)
for name, part in (("train", train), ("test", test)):
    with open(f"{sys.argv[2]}/{name}.json", "w") as f:
        json.dump([{"instruction": e.instruction, "input": e.input, "output": e.output} for e in part], f)
print(f"train {len(train)}, test {len(test)}")
PY
if [[ ! -f "$OUT/base/model.json" ]]; then
  echo "== pretraining a small GPT on the training split's text ($(elapsed))"
  "$GPTLAB" data text --input "$OUT/train.json" --fields instruction,input,output --out "$OUT/corpus.txt" --overwrite
  MODEL=(data.vocab_size=1024 model.block_size=192 "model.n_layer=${N_LAYER:-2}" model.n_head=4 "model.n_embd=${N_EMBD:-64}" model.dropout=0.0)
  PRE=(train.max_steps="${PRE_STEPS:-150}" train.batch_size=16)
  pretrain_from_scratch "$OUT/base" bpe "$OUT/corpus.txt"
fi
if [[ ! -f "$OUT/sft/results.json" ]]; then
  echo "== SFT ($(elapsed))"
  "$GPTLAB" finetune instruct --model "$OUT/base" --data "$OUT/train.json" --out "$OUT/sft" --overwrite \
    --epochs "${SFT_EPOCHS:-4}" --lr 1e-3 --batch-size 8 --mask-prompt --max-new-tokens 64 \
    --max-test-examples 20 --no-base-comparison --seed 0 --no-progress
fi
if [[ ! -f "$OUT/prefs.jsonl" ]]; then
  echo "== preference pairs from the SFT model's answers ($(elapsed))"
  "$GPTLAB" data prefs --from "$OUT/train.json" --model "$OUT/sft" --out "$OUT/prefs.jsonl" \
    --limit "${PREF_LIMIT:-990}" --max-new-tokens 64
fi
RUN="$OUT/${NAME:-${LOSS:-dpo}}"
echo "== ${LOSS:-dpo} -> $RUN ($(elapsed))"
"$GPTLAB" finetune dpo --model "$OUT/sft" --data "$OUT/prefs.jsonl" --out "$RUN" --overwrite \
  --loss "${LOSS:-dpo}" --beta "${BETA:-0.5}" ${EPS:+--label-smoothing "$EPS"} --epochs "${DPO_EPOCHS:-2}" \
  --lr "${DPO_LR:-1e-5}" --batch-size 8 --seed 0 --no-progress
if [[ ! -f "$OUT/rm/results.json" ]]; then
  echo "== reward model ($(elapsed))"
  "$GPTLAB" finetune reward --model "$OUT/sft" --data "$OUT/prefs.jsonl" --out "$OUT/rm" --overwrite \
    --epochs 2 --lr 1e-4 --batch-size 8 --seed 0 --no-progress
fi
echo "== ${LOSS:-dpo} vs SFT on the held-out instructions ($(elapsed))"
"$PYTHON" "$HERE/../bench/preference_winrate.py" --a "$RUN" --b "$OUT/sft" --reward "$OUT/rm" --data "$OUT/test.json" \
  --max-new-tokens 64 --out "$RUN/answers.json" --json | tee "$RUN/winrate.json"
echo "== done ($(elapsed))"
