#!/usr/bin/env bash
# Forgetting across tasks (docs/tasks.md, "Forgetting"): pretrain a tiny GPT on SST-2 sentences and
# Multi30k text, fine-tune a sentiment classifier on it (A = sst2), then fine-tune that GPT for
# English -> German translation (A→B) four ways: plain, with replay of A's sentences, with EWC
# (Fisher from A), with an L2-to-start penalty. `gptlab eval forgetting` scores every model on
# held-out text (perplexity), SST-2 validation (accuracy) and Multi30k validation (BLEU, chrF),
# with 95% bootstrap intervals. About 15-20 minutes on 2 CPU cores (subsets, a tiny model).
#   bash examples/forgetting.sh OUT_DIR [DATA_DIR]   (DATA_DIR default: ../shared/data/tasks)
set -euo pipefail
OUT="${1:?usage: examples/forgetting.sh OUT_DIR [DATA_DIR]}"
source "$(dirname "$0")/_common.sh"
DATA="${2:-$SHARED_DATA/tasks}"
PY="${PYTHON:-python3}"
REPLAY="${REPLAY:-0.2}" L2="${L2:-10}" EWC_MATCH_L2="${EWC_MATCH_L2:-1}"
for f in sst2/train.jsonl sst2/validation.jsonl multi30k/train.jsonl multi30k/val.jsonl; do
  [[ -f "$DATA/$f" ]] || { echo "data file not found: $DATA/$f" >&2; exit 2; }
done
mkdir -p "$OUT/data"

echo "== subsets -> $OUT/data"
"$PY" - "$DATA" "$OUT/data" <<'PY'
import json, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
sst = [json.loads(l) for l in (src / "sst2/train.jsonl").read_text("utf-8").splitlines()]
m30k = [json.loads(l) for l in (src / "multi30k/train.jsonl").read_text("utf-8").splitlines()]
val = [json.loads(l) for l in (src / "multi30k/val.jsonl").read_text("utf-8").splitlines()]
write = lambda name, lines: (dst / name).write_text("".join(l + "\n" for l in lines), "utf-8")
# pretraining text: 8000 SST-2 sentences, 8000 Multi30k pairs (English and German lines)
write("pretrain.txt", [r["sentence"] for r in sst[:8000]] + [r[k] for r in m30k[:8000] for k in ("en", "de")])
write("sst2.jsonl", [json.dumps(r) for r in sst[8000:11000]])  # task A: 3000 labelled sentences
write("multi30k.jsonl", [json.dumps(r, ensure_ascii=False) for r in m30k[8000:12000]])  # task B: 4000 pairs
# held-out text for the lm column: unseen SST-2 sentences and Multi30k validation lines (not the first 100)
write("heldout.txt", [r["sentence"] for r in sst[19800:19900]] + [r[k] for r in val[900:950] for k in ("en", "de")])
PY

if [[ ! -f "$OUT/base/model.json" ]]; then
  echo "== pretraining (BPE 2048, 2 layers x 128, context 96)"
  "$GPTLAB" train "data.input=\"$OUT/data/pretrain.txt\"" data.tokenizer=bpe data.vocab_size=2048 \
    model.preset=tiny model.n_layer=2 model.n_head=4 model.n_embd=128 model.block_size=96 model.dropout=0.0 \
    optim.lr=2e-3 optim.min_lr=2e-4 optim.warmup_steps=50 train.batch_size=32 train.max_steps=1500 \
    "train.max_minutes=${PRETRAIN_MINUTES:-5}" train.eval_every=250 train.eval_batches=8 train.progress=false \
    train.sample_tokens=0 --out "$OUT/base" --overwrite
fi

FT=(--seed 0 --device cpu --no-progress)
echo "== A: SST-2 classifier (full fine-tune)"
"$GPTLAB" finetune classify --model "$OUT/base" --data "$OUT/data/sst2.jsonl" --text-column sentence \
  --label-column label --out "$OUT/A" --overwrite --epochs 2 --batch-size 32 --lr 1e-3 --prompting-shots "${FT[@]}"

TEMPLATE='Translate English to German:\n{input}\n'
B=(--data "$OUT/data/multi30k.jsonl" --input-field en --output-field de --template "$TEMPLATE"
   --epochs 1 --batch-size 32 --lr 1e-3 --max-new-tokens 40 --max-test-examples 20 --no-base-comparison
   --after "$OUT/A" --overwrite "${FT[@]}")
echo "== A→B: Multi30k after A, plain"
"$GPTLAB" finetune instruct "${B[@]}" --out "$OUT/AB"
echo "== A→B with replay of A's sentences ($REPLAY of the training split)"
"$GPTLAB" finetune instruct "${B[@]}" --out "$OUT/AB-replay" --replay "$REPLAY"
echo "== A→B with L2-to-start (lambda $L2)"
"$GPTLAB" finetune instruct "${B[@]}" --out "$OUT/AB-l2" --l2-start "$L2"
# EWC's lambda: L2's, divided by the mean Fisher over the anchored weights, so that both penalties
# put the same total weight on the start and differ only in where (EWC: where A's loss is sensitive)
EWC=$("$PY" - "$OUT/A" "$L2" <<'PY'
import sys
from gptlab.finetune.anchor import earlier_task_fisher
from gptlab.finetune.continual import Start, read_chain
fisher, _ = earlier_task_fisher(Start(sys.argv[1], read_chain(sys.argv[1]), None), 100, 0, "cpu")
total = sum(float(f.sum()) for f in fisher.values()); count = sum(f.numel() for f in fisher.values())
print(f"{float(sys.argv[2]) * count / total:.4g}")
PY
)
echo "== A→B with EWC (lambda $EWC, Fisher from 100 SST-2 examples of A)"
"$GPTLAB" finetune instruct "${B[@]}" --out "$OUT/AB-ewc" --ewc "$EWC" --ewc-examples 100

echo "== the forgetting matrix"
"$GPTLAB" eval forgetting \
  --runs "base=$OUT/base,sst2=$OUT/A,sst2→multi30k=$OUT/AB,+ replay $REPLAY=$OUT/AB-replay,+ L2 $L2=$OUT/AB-l2,+ EWC $EWC=$OUT/AB-ewc" \
  --tasks "lm:$OUT/data/heldout.txt,sentiment:$DATA/sst2/validation.jsonl,translation:$DATA/multi30k/val.jsonl" \
  --limit 300 --max-new-tokens 40 --out "$OUT/matrix" --overwrite
