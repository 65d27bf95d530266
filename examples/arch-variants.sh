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
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # tiny models: one thread is as fast and shares the machine

# shakespeare-char's recipe (context 64, char tokenizer), 4 layers x 64 wide, 400 steps of 16 windows
COMMON=(--config shakespeare-char --seeds 2
  --set "data.input=[\"$DATA\"]" --set model.n_layer=4 --set model.n_head=4 --set model.n_embd=64
  --set train.batch_size=16 --set train.max_steps=400 --set train.eval_every=100 --set train.eval_batches=10
  --set optim.warmup_steps=20)

echo "== pre- vs post-norm, at the recipe's lr and at 10x it"
"$GPTLAB" sweep "${COMMON[@]}" --grid "model.norm_position=pre,post" --grid "optim.lr=1e-3,1e-2" --out "$OUT/norm"

echo "== sliding-window attention: val loss vs window (window 64 = the whole context: full attention)"
"$GPTLAB" sweep "${COMMON[@]}" --set 'model.attention="local"' --grid "model.window=2,8,32,64" \
  --set optim.lr=2e-3 --out "$OUT/window"

echo "== dense MLP vs 4 experts, top-1 (the same active parameters per token)"
"$GPTLAB" sweep "${COMMON[@]}" --grid "model.mlp=dense,moe" --set model.n_experts=4 --set model.top_k=1 \
  --set optim.lr=2e-3 --out "$OUT/moe"
echo "== the experts' share of the tokens at the last log step of each MoE run (per layer)"
for run in "$OUT"/moe/runs/model.mlp-moe__s*; do
  echo "$(basename "$run"): $(grep '"expert_fraction"' "$run/metrics.jsonl" | tail -1 | sed 's/.*"expert_fraction": //; s/}$//')"
done
