"""Progress: the study's bar over stages and, under it, each stage's own bar (``ctx.bar``), on
stderr only, and none at all without progress (--json, --no-progress)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gptlab.study import load_study_config, run_study


def _fake_stages(monkeypatch, seen: list):
    from gptlab.study import stages

    def counting(ctx):
        bar = ctx.bar(3, unit="item")
        seen.append((ctx.name, ctx.progress, bar.disable))  # (close() disables a bar)
        for _ in range(3):
            bar.update(1)
        bar.close()
        return {}

    for name, stage in list(stages.STAGES.items()):
        monkeypatch.setitem(stages.STAGES, name, replace(stage, run=counting, report=None, publish=()))


@pytest.mark.parametrize("progress", [True, False])
def test_each_stage_gets_its_own_bar_under_the_study_bar(progress, tmp_path, monkeypatch, capsys):
    seen: list = []
    _fake_stages(monkeypatch, seen)
    config = load_study_config("study-tiny")
    run_study(config, tmp_path / "s", progress=progress, log=lambda line: None)
    out, err = capsys.readouterr()
    assert out == ""  # bars never touch stdout (--json prints there)
    assert [name for name, _, _ in seen] == config.stage_names()
    assert all(p is progress and disabled is not progress for _, p, disabled in seen)
    if progress:
        assert "0/3 [" in err and "item/s" in err  # a stage's own bar (drawn at its start)
        assert f"{len(seen)}/{len(seen)}" in err and "stage" in err  # the bar over stages
    else:
        assert err == ""
