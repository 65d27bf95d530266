#!/usr/bin/env bash
# The translation half of "Encoder, decoder, encoder-decoder" (docs/experiments.md): Multi30k
# en->de at a small, equal budget. A decoder-only GPT (language-model pretraining on the English and
# German training sentences for half the minutes, then `finetune instruct` on the pairs for the other
# half) against a T5-style encoder-decoder trained from scratch on the pairs by `finetune seq2seq`
# for all the minutes; both ~the same parameters and one BPE tokenizer. Both are scored on the same
# first VAL Multi30k validation pairs (greedy, corpus BLEU and chrF, sacrebleu's definitions). An
# encoder alone cannot generate, so it has no row here.
#   bash examples/encdec-translate.sh OUT [DATA_DIR] [MINUTES]   knobs (env): PAIRS (8000), VAL (200)
set -euo pipefail
OUT=${1:?usage: encdec-translate.sh OUT [DATA_DIR] [MINUTES]}
DATA=${2:-${GPTLAB_DATA_MIRROR:-data}/tasks}/multi30k
MIN=${3:-4}
PAIRS=${PAIRS:-8000} VAL=${VAL:-200}
G="python -m gptlab"
HALF=$(python -c "print($MIN / 2)")
mkdir -p "$OUT"
head -n "$PAIRS" "$DATA/train.jsonl" >"$OUT/train.jsonl"
head -n "$VAL" "$DATA/val.jsonl" >"$OUT/val.jsonl"
$G data text --input "$OUT/train.jsonl" --fields en,de --out "$OUT/text.txt" --overwrite
$G tokenizer train --input "$OUT/text.txt" --vocab-size 2000 --out "$OUT/tokenizer.json" --overwrite --json >/dev/null
SHAPE="model.block_size=64 model.n_layer=2 model.n_head=4 model.n_embd=64 model.dropout=0.0"
$G train "data.input=[\"$OUT/text.txt\"]" "data.tokenizer=$OUT/tokenizer.json" $SHAPE train.batch_size=32 \
  train.max_steps=100000 "train.max_minutes=$HALF" train.eval_every=200 train.eval_batches=4 train.sample_tokens=0 \
  train.progress=false optim.lr=2e-3 optim.warmup_steps=50 --out "$OUT/gpt-lm" --overwrite --json >"$OUT/gpt-lm.json"
$G finetune instruct --model "$OUT/gpt-lm" --data "$OUT/train.jsonl" --input-field en --output-field de \
  --template 'English: {input}\nGerman:' --epochs 100 --max-minutes "$HALF" --batch-size 32 --lr 1e-3 \
  --val-fraction 0.02 --test-fraction 0.01 --max-test-examples 8 --max-new-tokens 40 --no-base-comparison \
  --no-progress --out "$OUT/gpt" --overwrite --json >"$OUT/gpt.json"
$G eval generation --model "$OUT/gpt" --data "$OUT/val.jsonl" --metrics bleu,chrf --max-new-tokens 40 \
  --batch-size 64 --out "$OUT/gpt-eval" --overwrite --json >"$OUT/gpt-eval.json"
$G finetune seq2seq --data "$OUT/train.jsonl" --input-field en --output-field de --tokenizer "$OUT/tokenizer.json" \
  --n-layer 1 --n-head 4 --n-embd 64 --block-size 64 --epochs 100 --minutes "$MIN" --batch-size 32 --lr 1e-3 \
  --test-fraction 0.01 --max-test 8 --out "$OUT/encdec" --overwrite --json >"$OUT/encdec.json"
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from gptlab.eval.bleu import corpus_bleu
from gptlab.eval.chrf import corpus_chrf
from gptlab.finetune.seq2seq import translate
from gptlab.rundir import load_model
out = Path(sys.argv[1])
val = [json.loads(line) for line in (out / "val.jsonl").read_text(encoding="utf-8").splitlines()]
model, tok = load_model(out / "encdec")
hyp = translate(model, tok, [r["en"] for r in val], 40)
refs = [[r["de"] for r in val]]
(out / "encdec-val.json").write_text(json.dumps([{"en": r["en"], "de": r["de"], "output": h} for r, h in zip(val, hyp)], ensure_ascii=False, indent=1))
g, lm, e = (json.loads((out / f).read_text()) for f in ("gpt-eval.json", "gpt-lm.json", "encdec.json"))
ft = json.loads((out / "gpt.json").read_text())
print(json.dumps({"gpt_eval": {k: v for k, v in g.items() if k != "examples"}, "gpt_lm": {k: lm[k] for k in ("n_params", "step", "elapsed_s", "best_val_loss")},
                  "gpt_finetune_seconds": ft.get("train_seconds"), "encdec": {k: e[k] for k in e if k in ("n_params", "train_seconds", "epochs_done", "steps", "test_bleu")},
                  "encdec_val": {"bleu": corpus_bleu(hyp, refs).score, "chrf": corpus_chrf(hyp, refs).score, "n": len(val)}}, indent=1))
PY
