# Shared by the example recipes: find the gptlab command and pretrain a small base model once.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -n "${GPTLAB:-}" ]]; then :
elif command -v gptlab >/dev/null; then GPTLAB=gptlab
elif [[ -x "$HERE/../.venv/bin/gptlab" ]]; then GPTLAB="$HERE/../.venv/bin/gptlab"
else echo "gptlab not found: run 'bash scripts/test.sh' (or pip install -e .) first" >&2; exit 2
fi
SHARED_DATA="${SHARED_DATA:-$HERE/../../shared/data}"

# pretrain_base OUT_DIR: the tiny-cpu recipe (tiny GPT, BPE 2048, built-in corpus, 4.5-minute budget).
# Kept if already there, so the recipes can share one base model.
pretrain_base() {
  if [[ -f "$1/model.json" ]]; then echo "== base model: $1 (already trained)"; return; fi
  echo "== pretraining a tiny GPT on the built-in corpus -> $1"
  "$GPTLAB" train --config tiny-cpu "train.out_dir=$1" "train.max_minutes=${PRETRAIN_MINUTES:-4.5}"
}
