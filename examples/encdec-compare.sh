#!/usr/bin/env bash
# Decoder-only vs encoder vs encoder-decoder on SST-2 sentiment at a small, equal budget
# (docs/experiments.md, "Encoder, decoder, encoder-decoder"). Usage: bash examples/encdec-compare.sh OUT [DATA_DIR] [MINUTES]
set -euo pipefail
OUT=${1:?usage: encdec-compare.sh OUT [DATA_DIR] [MINUTES]}
DATA=${2:-${GPTLAB_DATA_MIRROR:-data}/tasks}
MIN=${3:-1}
G="python -m gptlab"
mkdir -p "$OUT"
python - "$DATA/sst2/train.jsonl" "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][:4000]
out = sys.argv[2]
open(f"{out}/sentences.txt", "w").write("".join(r["sentence"] + "\n" for r in rows))
open(f"{out}/sst2.jsonl", "w").write("".join(json.dumps({"text": r["sentence"], "label": ["negative", "positive"][r["label"]]}) + "\n" for r in rows))
PY
SHAPE="model.block_size=64 model.n_layer=2 model.n_head=4 model.n_embd=64 data.tokenizer=bpe data.vocab_size=1000"
TRAIN="train.batch_size=16 train.max_steps=100000 train.max_minutes=$MIN train.eval_every=200 train.eval_batches=4 train.sample_tokens=0 train.progress=false optim.lr=1e-3 optim.warmup_steps=50"
$G train data.input="[\"$OUT/sentences.txt\"]" $SHAPE $TRAIN --out "$OUT/gpt" --overwrite --json > "$OUT/gpt.json"
$G train data.input="[\"$OUT/sentences.txt\"]" $SHAPE $TRAIN model.arch=encoder train.objective=mlm --out "$OUT/encoder" --overwrite --json > "$OUT/encoder.json"
for M in gpt encoder; do
  POOL=last; [ $M = encoder ] && POOL=first
  $G finetune classify --model "$OUT/$M" --data "$OUT/sst2.jsonl" --text-column text --label-column label \
    --pooling $POOL --epochs 3 --batch-size 32 --lr 3e-4 --prompting-shots --out "$OUT/$M-clf" --overwrite --json --no-progress > "$OUT/$M-clf.json"
done
# the encoder-decoder writes the label word; its exact match on the test split is the accuracy
$G finetune seq2seq --data "$OUT/sst2.jsonl" --input-field text --output-field label --tokenizer "$OUT/gpt" \
  --n-layer 1 --n-head 4 --n-embd 64 --block-size 64 --epochs 100 --minutes $MIN --batch-size 16 --lr 1e-3 \
  --test-fraction 0.2 --max-test 800 --out "$OUT/encdec" --overwrite --json > "$OUT/encdec.json"
python - "$OUT" <<'PY'
import json, sys
o = sys.argv[1]
for m in ("gpt", "encoder"):
    r = json.load(open(f"{o}/{m}-clf/results.json"))
    t = json.load(open(f"{o}/{m}.json"))
    acc = r.get("test", r).get("accuracy") if isinstance(r.get("test"), dict) else r.get("test_accuracy")
    print(f"| {m} | {t['n_params']:,} | {t['elapsed_s']:.0f} s, {t['step']} steps | {acc} |")
e = json.load(open(f"{o}/encdec.json"))
print(f"| encdec | {e['n_params']:,} | {e['train_seconds']:.0f} s | {e['test_exact_match']:.4f} |")
PY
