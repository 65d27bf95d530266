"""Win rate of one instruction model over another (DPO over SFT), judged by a reward model and by ROUGE-L.

    python bench/preference_winrate.py --a runs/dpo --b runs/sft --reward runs/rm --data test.json --json

For each held-out Alpaca-format example both models answer greedily (each with its own template,
gptlab.finetune.instruct.generate_responses). A judge compares the two answers: the reward model
(`gptlab finetune reward`: the higher reward wins) and ROUGE-L F against the reference (the higher
score wins). Equal scores (often: identical answers) are ties and count half, the usual convention
of pairwise win rates; the ties' share is reported too. Intervals: 95% percentile bootstrap over the
examples (seeded). Also the mean reward and ROUGE-L F of each model. ``--out FILE`` keeps the
answers and their scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from gptlab.data.tasks import load_instructions
from gptlab.eval.forgetting import bootstrap_interval
from gptlab.eval.text_metrics import rouge
from gptlab.finetune.instruct import generate_responses
from gptlab.finetune.prefs import PreferenceExample
from gptlab.finetune.reward import load_reward
from gptlab.run import Run


def win_rate(a: Sequence[float], b: Sequence[float], resamples: int = 2000, seed: int = 0) -> dict:
    """A's win rate over B from paired scores (higher is better, ties count half), its 95% bootstrap
    interval over the pairs, and the shares of wins, ties and losses."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError("win_rate needs two non-empty score lists of one length")
    points = np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))
    rows = np.stack([points, np.ones_like(points)], axis=1)  # (pairs, [points, count])
    low, high = bootstrap_interval(rows, lambda s: s[0] / s[1], resamples=resamples, seed=seed)
    return {
        "win_rate": float(points.mean()),
        "interval": [low, high],
        "wins": float((a > b).mean()),
        "ties": float((a == b).mean()),
        "losses": float((a < b).mean()),
        "n": len(a),
    }


def mean_interval(values: Sequence[float], seed: int = 0) -> dict:
    rows = np.stack([np.asarray(values, dtype=np.float64), np.ones(len(values))], axis=1)
    low, high = bootstrap_interval(rows, lambda s: s[0] / s[1], resamples=2000, seed=seed)
    return {"mean": float(np.mean(values)), "interval": [low, high]}


def answers(run_path: str, examples, max_new_tokens: int) -> list[str]:
    run = Run.open(run_path)
    gpt, tokenizer = run.load()
    return generate_responses(gpt, tokenizer, examples, run.template, max_new_tokens)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, metavar="RUN", help="the challenger (e.g. the DPO run)")
    parser.add_argument("--b", required=True, metavar="RUN", help="the baseline (e.g. the SFT run)")
    parser.add_argument("--reward", required=True, metavar="RUN", help="the reward model judge")
    parser.add_argument("--data", required=True, metavar="FILE", help="held-out Alpaca-format examples")
    parser.add_argument("--limit", type=int, help="the first N examples only")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--out", metavar="FILE", help="write the answers and their scores (JSON)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    examples = load_instructions(args.data)[: args.limit]
    a, b = answers(args.a, examples, args.max_new_tokens), answers(args.b, examples, args.max_new_tokens)
    judge = load_reward(args.reward)
    prompts = [PreferenceExample(ex.instruction, "-", "+", ex.input) for ex in examples]
    reward_a, reward_b = judge.score(prompts, a), judge.score(prompts, b)
    rouge_a = [rouge(x, ex.output, ("rougeL",))["rougeL"].fmeasure for x, ex in zip(a, examples)]
    rouge_b = [rouge(x, ex.output, ("rougeL",))["rougeL"].fmeasure for x, ex in zip(b, examples)]
    result = {
        "a": args.a,
        "b": args.b,
        "reward_model": args.reward,
        "data": args.data,
        "n": len(examples),
        "identical_answers": sum(x == y for x, y in zip(a, b)),
        "by_reward": win_rate(reward_a, reward_b),
        "by_rougeL": win_rate(rouge_a, rouge_b),
        "reward": {"a": mean_interval(reward_a), "b": mean_interval(reward_b)},
        "rougeL_f": {"a": mean_interval(rouge_a), "b": mean_interval(rouge_b)},
    }
    if args.out:
        rows = [
            {"instruction": ex.instruction, "input": ex.input, "reference": ex.output, "a": x, "b": y,
             "reward_a": ra, "reward_b": rb, "rougeL_a": ga, "rougeL_b": gb}
            for ex, x, y, ra, rb, ga, gb in zip(examples, a, b, reward_a, reward_b, rouge_a, rouge_b)
        ]  # fmt: skip
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1, ensure_ascii=False)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for judge_name in ("by_reward", "by_rougeL"):
        r = result[judge_name]
        print(
            f"{judge_name}: A wins {r['win_rate']:.3f} [{r['interval'][0]:.3f}, {r['interval'][1]:.3f}] "
            f"(wins {r['wins']:.2f}, ties {r['ties']:.2f}, losses {r['losses']:.2f}, n={r['n']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
