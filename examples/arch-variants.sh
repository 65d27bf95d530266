#!/usr/bin/env bash
# The architecture-variant experiments of docs/experiments.md ("Architecture variants"): three
# `gptlab sweep`s of small char-level GPTs on tinyshakespeare, 2 seeds each, equal tokens per run
# (400 steps x 16 x 64 tokens). About 12 minutes of CPU time (one thread per run).
#   bash examples/arch-variants.sh OUT_DIR [DATA_FILE]   (default data: ../shared/data/tinyshakespeare.txt)
# Re-running resumes: finished runs are kept (gptlab sweep).
set -euo pipefail
OUT="${1:?usage: examples/arch-variants.sh OUT_DIR [DATA_FILE]}"
source "$(dirname "$0")/_common.sh"
DATA="${2:-$SHARED_DATA/tinyshakespeare.txt}"
[[ -f "$DATA" ]] || { echo "data file not found: $DATA" >&2; exit 2; }
PYTHON="${PYTHON:-$(dirname "$(command -v "$GPTLAB")")/python}"  # the interpreter gptlab runs in
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # tiny models: one thread is as fast and shares the machine

# shakespeare-char's recipe (context 64, char tokenizer), 4 layers x 64 wide, 400 steps of 16 windows
COMMON=(--config shakespeare-char --seeds 2
  --set "data.input=[\"$DATA\"]" --set model.n_layer=4 --set model.n_head=4 --set model.n_embd=64
  --set train.batch_size=16 --set train.max_steps=400 --set train.eval_every=100 --set train.eval_batches=10
  --set optim.warmup_steps=20)

echo "== pre- vs post-norm, at the recipe's lr and at 10x it"
"$GPTLAB" sweep "${COMMON[@]}" --grid "model.norm_position=pre,post" --grid "optim.lr=1e-3,1e-2" --out "$OUT/norm"

echo "== stability: per run, the train loss at steps 50, 100 and 400 (unigram level: ~3.3), the"
echo "   largest grad norm after warm-up (before clipping at 1.0) and the final val loss"
"$PYTHON" - "$OUT/norm/runs" <<'PY'
import sys
from pathlib import Path

from gptlab.train import read_metrics

print(f"{'run':<44} {'loss@50':>7} {'loss@100':>8} {'loss@400':>8} {'max grad norm':>13} {'val loss':>8}")
for run in sorted(Path(sys.argv[1]).iterdir()):
    records = read_metrics(run)
    loss = {r["step"]: r["loss"] for r in records if r["kind"] == "train"}
    norm = max(r["grad_norm"] for r in records if r["kind"] == "train" and r["step"] > 20)
    val = [r["val_loss"] for r in records if r["kind"] == "eval"][-1]
    print(f"{run.name:<44} {loss[50]:>7.3f} {loss[100]:>8.3f} {loss[400]:>8.3f} {norm:>13.3f} {val:>8.4f}")
PY

echo "== sliding-window attention: val loss vs window (window 64 = the whole context: full attention)"
"$GPTLAB" sweep "${COMMON[@]}" --set 'model.attention="local"' --set model.window=64 --grid "model.window=2,8,32,64" \
  --set optim.lr=2e-3 --out "$OUT/window"

echo "== dense MLP vs 4 experts, top-1 (the same active parameters per token)"
"$GPTLAB" sweep "${COMMON[@]}" --grid "model.mlp=dense,moe" --set model.n_experts=4 --set model.top_k=1 \
  --set optim.lr=2e-3 --out "$OUT/moe"
echo "== per MoE-sweep run: parameters, active parameters per token, the experts' share of the tokens"
echo "   (per layer, over the last 10 steps: metrics.jsonl's expert_fraction)"
"$PYTHON" - "$OUT/moe/runs" <<'PY'
import sys
from pathlib import Path

from gptlab.rundir import load_model
from gptlab.train import read_metrics

for run in sorted(Path(sys.argv[1]).iterdir()):
    model, _ = load_model(run)
    total = model.num_params()
    experts = sum(p.numel() for name, p in model.named_parameters() if ".experts." in name)
    active = total - experts + experts // model.config.n_experts * model.config.top_k
    shares = [r for r in read_metrics(run) if r["kind"] == "train"][-1].get("expert_fraction")
    shown = "" if shares is None else " ".join("[" + " ".join(f"{x:.2f}" for x in layer) + "]" for layer in shares)
    print(f"{run.name:<22} params {total:>7,}  active {active:>7,}  {shown}")
PY
