"""bench/finetune_peft.py end to end at smoke size on the tests/data SMS fixture; the figures
themselves are in docs/finetuning.md, produced by the full command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gptlab.commands.bench import BENCHMARKS
from gptlab.data.tasks import CHAT_SPECIAL_TOKENS
from gptlab.model import GPT, GPTConfig
from gptlab.rundir import save_model
from gptlab.tokenizers.base import EOT
from gptlab.tokenizers.char import CharTokenizer

ROOT = Path(__file__).resolve().parents[2]
SMS = ROOT / "tests" / "data" / "sms.tsv"
INSTRUCTIONS = ROOT / "tests" / "data" / "instructions.json"
C, N_LAYER = 32, 2


@pytest.mark.slow
def test_peft_bench_reports_each_method_with_its_own_parameter_count(tmp_path):
    tok = CharTokenizer.train(SMS.read_text(encoding="utf-8"), special_tokens=[EOT])
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=tok.vocab_size, block_size=128, n_layer=N_LAYER, n_head=2, n_embd=C, dropout=0.0
    )
    base = save_model(tmp_path / "base", GPT(config), tok)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "finetune_peft.py"), "--base", str(base), "--data", str(SMS),
         "--epochs", "1", "--methods", "ia3", "prompt-10", "--json"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(done.stdout)  # the whole of stdout is one JSON document
    methods = r["methods"]
    assert set(methods) == {"ia3", "prompt-10"} and "finetune-peft" in BENCHMARKS
    head = C * 2 + 2  # the classifier head: weight (2, C) and bias
    # IA3 on GPT-2's defaults: q/k/v scales (3C) and the MLP's hidden scales (4C) per block
    assert methods["ia3"]["trainable_params"] == head + N_LAYER * 7 * C
    assert methods["prompt-10"]["trainable_params"] == head + 10 * C
    for name, m in methods.items():
        assert m["optimizer_state_mb"] == pytest.approx(m["trainable_params"] * 12 / 2**20, abs=1e-3), name
        assert 0 <= m["test_accuracy"] <= 1 and m["checkpoint_mb"] > 0 and m["peak_rss_mb"] > 0


@pytest.mark.slow
def test_peft_bench_instruction_task_scores_responses_with_intervals(tmp_path):
    records = json.loads(INSTRUCTIONS.read_text(encoding="utf-8"))
    text = "\n".join(r[k] for r in records for k in ("instruction", "input", "output"))
    tok = CharTokenizer.train(text, special_tokens=[EOT, *CHAT_SPECIAL_TOKENS])
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=tok.vocab_size, block_size=128, n_layer=N_LAYER, n_head=2, n_embd=C, dropout=0.0
    )
    base = save_model(tmp_path / "base", GPT(config), tok)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "finetune_peft.py"), "--task", "instruct", "--base", str(base),
         "--data", str(INSTRUCTIONS), "--epochs", "1", "--max-new-tokens", "4", "--methods", "ia3",
         "head-only", "--json"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(done.stdout)
    methods = r["methods"]
    assert set(methods) == {"ia3"}  # no head, so no head-only row on this task
    assert methods["ia3"]["trainable_params"] == N_LAYER * 7 * C  # no classifier head here
    assert r["flags"]["ia3"][:2] == ["--peft", "ia3"]  # classify's --trainable head is not passed
    for name, m in methods.items():
        hits, n = m["exact_match_count"]
        assert m["exact_match"] == hits / n and 0 < n <= r["config"]["test_examples"], name
        lo, hi = m["exact_match_ci95"]
        assert 0 <= lo <= m["exact_match"] <= hi <= 1, name
        lo, hi = m["rougeL_f_ci95"]
        assert 0 <= lo <= m["rougeL_f"] <= hi <= 1, name
        assert 0 < m["checkpoint_mb"] < 0.1 and m["peak_rss_mb"] > 0, name  # the adapter file only
    (tmp_path / "report.json").write_text(done.stdout)
    table = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "finetune_peft.py"), "--table", str(tmp_path / "report.json")],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=True,
    ).stdout.splitlines()  # fmt: skip
    hits, n = methods["ia3"]["exact_match_count"]
    assert table[0].startswith("| method |") and table[2].startswith(f"| ia3 | {N_LAYER * 7 * C:,} (")
    assert f"| {hits}/{n} = " in table[2]
