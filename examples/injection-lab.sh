#!/usr/bin/env bash
# The prompt-injection experiment on a model the audit can measure (docs/audits.md, "Prompt
# injection"): `gptlab data instructions --kind probe-tasks` writes a synthetic instruction suite
# (the audit's own tasks, instructions and secret convention on other inputs, plus say / recall /
# copy / format / count / fact tasks); a BPE tokenizer and a tiny GPT are trained on it from
# scratch and fine-tuned to follow it (chat template, loss on the responses); then
# `gptlab audit injection --defence` audits that plain model, fine-tunes it twice more (on clean
# task examples, and on the same plus injected examples whose target is still the task's answer,
# with attack phrasings the audit never uses) and audits both: each model's clean-task accuracy
# (the precondition of its verdicts), each attack family's success and derail rates over the probes
# whose clean twin it answered correctly (95% Wilson intervals), and the paired defended-vs-control
# change.
# About 10 minutes on 2 idle CPU cores (30,000 examples, 10 epochs; the fine-tune is capped in
# minutes: a busy machine gets a weaker model in the same time).
#   bash examples/injection-lab.sh OUT_DIR [DATA_FILE]   (DATA_FILE: a probe-tasks JSON; default:
#   written here). Knobs (env): N, VOCAB, EPOCHS, FINETUNE_MINUTES, DEFENCE_EXAMPLES, DEFENCE_LR, EXAMPLES, SEED.
# Leaves the plain model at OUT_DIR/plain, the two defence fine-tunes under OUT_DIR/defence and the
# audit (injection.json, injection_rates.png) in OUT_DIR/audit; SMOKE=1 runs every stage in seconds.
set -euo pipefail
OUT="${1:?usage: examples/injection-lab.sh OUT_DIR [DATA_FILE]}"
source "$(dirname "$0")/_common.sh"
[[ -z "${2:-}" ]] || need_file "$2"
SEED="${SEED:-0}"
if smoke; then
  N=60 VOCAB=400 PRE=(train.max_steps=4 train.batch_size=4) FT=(--epochs 1 --batch-size 8)
  MODEL=(model.n_layer=1 model.n_head=2 model.n_embd=32 model.block_size=160)
  AUDIT=(--examples 1 --max-new-tokens 4 --defence-examples 8 --epochs 1)
else
  N="${N:-30000}" VOCAB="${VOCAB:-1200}" PRE=(train.max_steps=200 train.batch_size=16 "train.max_minutes=${PRETRAIN_MINUTES:-2}")
  FT=(--epochs "${EPOCHS:-10}" --batch-size 16 --max-minutes "${FINETUNE_MINUTES:-14}")
  MODEL=(model.n_layer=3 model.n_head=4 model.n_embd=128 model.block_size=192 model.dropout=0.0)
  AUDIT=(--examples "${EXAMPLES:-8}" --max-new-tokens 32 --defence-examples "${DEFENCE_EXAMPLES:-400}" --epochs 2)
fi
mkdir -p "$OUT/data"
DATA="${2:-$OUT/data/probe-tasks.json}"

if [[ -z "${2:-}" ]]; then
  echo "== [$(elapsed)] the probe-tasks instruction suite ($N examples, seed $SEED)"
  "$GPTLAB" data instructions --kind probe-tasks --n "$N" --seed "$SEED" --out "$DATA" --overwrite
fi
echo "== [$(elapsed)] a BPE tokenizer ($VOCAB tokens, with the chat template's special tokens) on its text"
"$GPTLAB" data text --input "$DATA" --fields instruction,input,output --out "$OUT/data/text.txt" --overwrite
"$GPTLAB" tokenizer train --input "$OUT/data/text.txt" --vocab-size "$VOCAB" --out "$OUT/tokenizer.json" \
  --special "<|endoftext|>" "<|user|>" "<|assistant|>" --json >/dev/null

echo "== [$(elapsed)] a tiny GPT pretrained briefly on that text"
pretrain_from_scratch "$OUT/base" "$OUT/tokenizer.json" "$OUT/data/text.txt"

echo "== [$(elapsed)] instruction fine-tuning on the suite (chat template, loss on the responses): the plain model"
"$GPTLAB" finetune instruct --model "$OUT/base" --data "$DATA" --out "$OUT/plain" --overwrite --template chat \
  --mask-prompt --lr 2e-3 --max-new-tokens 24 --max-test-examples 60 --no-base-comparison --val-fraction 0.05 \
  --test-fraction 0.02 --seed "$SEED" --no-progress "${FT[@]}" --json >"$OUT/plain.json"

echo "== [$(elapsed)] the audit: the plain model, then two fine-tunes of it (clean control, injection-aware defence)"
"$GPTLAB" audit injection --model "$OUT/plain" --defence "$OUT/defence" --lr "${DEFENCE_LR:-3e-4}" --seed "$SEED" \
  --out "$OUT/audit" --overwrite "${AUDIT[@]}" | tee "$OUT/audit.txt"
echo "== [$(elapsed)] done: $OUT/audit/injection.json, $OUT/audit/injection_rates.png"
