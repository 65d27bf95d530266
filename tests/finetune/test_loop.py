"""gptlab.finetune.loop.EpochRunner on a toy regression: records, best tracking, the deadline."""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch

from gptlab.finetune.common import StepSchedule
from gptlab.finetune.loop import EpochRunner, adamw_update


def runner(tmp_path, scores: list[float], max_minutes=None, started=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    x = torch.randn(8, 2)
    batches = [(x[:4], x[:4].sum(1, keepdim=True)), (x[4:], x[4:].sum(1, keepdim=True))]
    seen, saved = [], []

    def forward(batch):
        out = model(batch[0])
        return out, torch.nn.functional.mse_loss(out, batch[1])

    epoch_scores = iter(scores)
    kwargs = {} if started is None else {"started": started}
    return (
        EpochRunner(
            model=model,
            options=SimpleNamespace(epochs=len(scores), max_minutes=max_minutes, progress=False),
            batches=lambda step: batches,
            update=adamw_update(model, optimizer, forward, grad_clip=1.0),
            schedule=StepSchedule(optimizer, 0.1, 2 * len(scores)),
            device=torch.device("cpu"),
            on_batch=lambda batch, output, loss: seen.append(loss.item()),
            end_epoch=lambda: {"score": next(epoch_scores)},
            score=lambda record: record["score"],
            save=saved.append,
            **kwargs,
        ),
        seen,
        saved,
    )


def test_records_best_epochs_and_metrics_file(tmp_path):
    run, seen, saved = runner(tmp_path, [0.5, 0.4, 0.7, 0.7])
    result = run.run(tmp_path / "metrics.jsonl")
    assert saved == [1, 3] and result.best["epoch"] == 3  # a tie is not better
    assert [r.get("best", False) for r in result.history] == [True, False, True, False]
    assert result.steps == 8 and len(seen) == 8 and seen[-1] < seen[0]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == result.history and list(lines[0])[:3] == ["epoch", "step", "seconds"]
    assert not result.stopped_early and len(result.timer.times) == 8


def test_deadline_stops_after_the_step_that_passes_it(tmp_path):
    run, seen, saved = runner(tmp_path, [0.1, 0.2, 0.3], max_minutes=1.0, started=0.0)  # long past
    result = run.run(tmp_path / "metrics.jsonl")
    assert result.stopped_early and result.steps == 1 and len(result.history) == 1 and saved == [1]
