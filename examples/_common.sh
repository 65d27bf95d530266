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

# The task recipes (translate.sh, summarize.sh, sentiment.sh): SMOKE=1 shrinks every stage to
# seconds (the tests run the recipes that way on tests/data fixtures); TASK_DATA is the task folder.
TASK_DATA_DEFAULT="$SHARED_DATA/tasks"
if [[ "${SMOKE:-0}" == 1 ]]; then SMOKE=1; else SMOKE=0; fi
smoke() { [[ "$SMOKE" == 1 ]]; }  # usage: smoke && A || B

# need_file PATH...: stop with a clear message when a data file is missing.
need_file() {
  for f in "$@"; do [[ -f "$f" ]] || { echo "data file not found: $f" >&2; exit 2; }; done
}

# stopwatch: seconds since the recipe started (SECONDS is bash's own counter).
elapsed() { echo "$((SECONDS / 60)) min $((SECONDS % 60)) s"; }

# pretrain_from_scratch RUN TOKENIZER TEXT_FILE...: a GPT shaped by the caller's MODEL overrides,
# trained as a language model on the text files with the caller's PRE settings (steps, minutes,
# batch); its JSON summary goes to RUN.json.
pretrain_from_scratch() {
  local run="$1" tokenizer="$2" inputs
  shift 2
  inputs=$(printf '"%s",' "$@")
  "$GPTLAB" train --out "$run" --overwrite "data.input=[${inputs%,}]" "data.tokenizer=$tokenizer" \
    data.val_fraction=0.02 "${MODEL[@]}" optim.lr=2e-3 optim.min_lr=2e-4 optim.warmup_steps=50 \
    train.eval_every=200 train.eval_batches=8 train.sample_tokens=0 train.progress=false "${PRE[@]}" --json >"$run.json"
  echo "pretraining: $(cat "$run.json")"
}
