"""bench/preference_winrate.py: the win rate by hand, and the script end to end on tiny runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gptlab.commands.bench import BENCHMARKS
from gptlab.data.tasks import InstructionExample, format_prompt
from gptlab.finetune.prefs import load_preferences
from gptlab.finetune.reward import RewardOptions, finetune_reward
from gptlab.model import GPT, GPTConfig
from gptlab.rundir import save_model
from gptlab.tokenizers.base import EOT
from gptlab.tokenizers.char import CharTokenizer

BENCH = Path(__file__).resolve().parents[2] / "bench"
PREFS = Path(__file__).resolve().parents[1] / "data" / "prefs.jsonl"


def _script():
    spec = importlib.util.spec_from_file_location("preference_winrate", BENCH / "preference_winrate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_win_rate_counts_ties_half_and_brackets_it():
    r = _script().win_rate([1.0, 2.0, 3.0, 3.0, 0.0], [0.0, 2.0, 4.0, 1.0, 0.0])
    assert r["win_rate"] == pytest.approx((1 + 0.5 + 0 + 1 + 0.5) / 5)
    assert (r["wins"], r["ties"], r["losses"], r["n"]) == (0.4, 0.4, 0.2, 5)
    assert 0 <= r["interval"][0] <= r["win_rate"] <= r["interval"][1] <= 1
    assert _script().win_rate([1.0] * 3, [1.0] * 3)["interval"] == [0.5, 0.5]
    with pytest.raises(ValueError):
        _script().win_rate([1.0], [1.0, 2.0])


@pytest.mark.slow
def test_script_compares_two_runs_by_reward_and_rouge(tmp_path):
    assert "preference-winrate" in BENCHMARKS
    rows = load_preferences(PREFS)
    text = "".join(format_prompt(InstructionExample(r.prompt, r.input)) + r.chosen + r.rejected for r in rows)
    tok = CharTokenizer.train(text, special_tokens=[EOT])
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        gpt = GPT(
            GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16, dropout=0.0)
        )
        runs.append(save_model(tmp_path / f"run{seed}", gpt, tok))
    finetune_reward(
        RewardOptions(
            model=str(runs[0]),
            data=str(PREFS),
            out=str(tmp_path / "rm"),
            epochs=1,
            device="cpu",
            progress=False,
        )
    )
    test = tmp_path / "test.json"
    test.write_text(
        json.dumps([{"instruction": r.prompt, "input": r.input, "output": r.chosen} for r in rows[:4]])
    )
    done = subprocess.run(
        [sys.executable, str(BENCH / "preference_winrate.py"), "--a", str(runs[0]), "--b", str(runs[1]),
         "--reward", str(tmp_path / "rm"), "--data", str(test), "--max-new-tokens", "4",
         "--out", str(tmp_path / "answers.json"), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    answers = json.loads((tmp_path / "answers.json").read_text())
    assert result["n"] == len(answers) == 4
    wins = sum((a["reward_a"] > a["reward_b"]) + 0.5 * (a["reward_a"] == a["reward_b"]) for a in answers) / 4
    assert result["by_reward"]["win_rate"] == pytest.approx(wins)
    assert 0 <= result["by_rougeL"]["win_rate"] <= 1
