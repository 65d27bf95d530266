"""`gptlab sweep` (gptlab.train.sweep): runs per point and seed, the summary, resuming, refusals."""

from __future__ import annotations

import json
import statistics

import pytest
from samples import TINY_TRAINING

from gptlab.cli import main
from gptlab.config import load_config, to_toml
from gptlab.errors import GptlabError
from gptlab.train import read_metrics
from gptlab.train.sweep import SweepSpec, format_table, parse_grid, run_name, run_sweep


@pytest.fixture
def base_config(tmp_path):
    """A TOML config of tiny runs of 4 steps, evaluated every 2."""
    config = load_config(
        None, [*TINY_TRAINING, "optim.warmup_steps=1", "train.max_steps=4", "train.eval_every=2"]
    )
    path = tmp_path / "base.toml"
    path.write_text(to_toml(config.to_dict()))
    return str(path)


def last_eval(run_dir):
    return [r for r in read_metrics(run_dir) if r["kind"] == "eval"][-1]


@pytest.mark.slow
def test_sweep_trains_each_point_and_seed_and_summarises_them(base_config, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--config", base_config, "--grid", "train.data_fraction=0.25,1.0", "--seeds", "2",
            "--set", "optim.lr=0.01", "--out", str(out), "--json"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)  # --json: one document on stdout
    assert result["complete"] and len(result["runs"]) == 4
    for fraction in (0.25, 1.0):
        names = [run_name({"train.data_fraction": fraction}, i) for i in range(2)]
        assert names[0] == f"train.data_fraction-{fraction}__s0"
        records = [result["runs"][n] for n in names]
        for i, (name, record) in enumerate(zip(names, records)):
            run_dir = out / "runs" / name
            config = load_config(str(run_dir / "config.toml"))
            assert (config.train.seed, config.train.data_fraction, config.optim.lr) == (
                1337 + i,
                fraction,
                0.01,
            )
            assert config.data.dir == str(out / "data")  # tokenized once for the whole sweep
            evaluated = last_eval(run_dir)
            assert (record["train_loss"], record["val_loss"]) == (
                evaluated["train_loss"],
                evaluated["val_loss"],
            )
            assert record["gap"] == pytest.approx(evaluated["val_loss"] - evaluated["train_loss"])
        point = next(p for p in result["points"] if p["point"] == {"train.data_fraction": fraction})
        assert point["n"] == 2
        gaps = [r["gap"] for r in records]
        assert point["gap"] == pytest.approx(
            {
                "mean": statistics.fmean(gaps),
                "std": statistics.stdev(gaps),
                "min": min(gaps),
                "max": max(gaps),
            }
        )
    assert json.loads((out / "sweep.json").read_text())["points"] == result["points"]
    for plot in ("gap.png", "curves.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG")
    table = format_table(result["points"])
    assert table.splitlines()[0].split()[:3] == ["train.data_fraction", "seeds", "train"]
    assert len(table.splitlines()) == 3


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_where_it_stopped(base_config, tmp_path):
    spec = SweepSpec(base_config, [parse_grid("model.dropout=0,0.2")], seeds=1)
    logs: list[str] = []

    def interrupt_second_run(step, record):
        if len(logs) >= 3 and step == 3:  # lines so far: start 1, end 1, start 2
            raise KeyboardInterrupt

    stopped = run_sweep(spec, tmp_path / "sweep", log=logs.append, on_step=interrupt_second_run)
    assert stopped.stopped == "interrupted" and list(stopped.runs) == ["model.dropout-0__s0"]
    first = tmp_path / "sweep" / "runs" / "model.dropout-0__s0" / "metrics.jsonl"
    first_written = first.stat().st_mtime_ns
    logs.clear()
    resumed = run_sweep(spec, tmp_path / "sweep", log=logs.append)
    assert resumed.complete and len(resumed.runs) == 2
    assert first.stat().st_mtime_ns == first_written  # the finished run was skipped
    assert logs[0] == "[2/2] model.dropout-0.2__s0: resuming"
    # exact resume: the same numbers as a sweep that was never interrupted
    fresh = run_sweep(spec, tmp_path / "fresh", log=lambda line: None)
    for name, record in fresh.runs.items():
        for key in ("train_loss", "val_loss", "curve"):
            assert resumed.runs[name][key] == record[key]

    with pytest.raises(GptlabError, match="holds a different sweep \\(it differs in: seeds\\)"):
        run_sweep(SweepSpec(base_config, spec.grid, seeds=2), tmp_path / "sweep")
    with pytest.raises(GptlabError, match="holds a different sweep \\(it differs in: base_config\\)"):
        run_sweep(SweepSpec(base_config, spec.grid, 1, ["optim.lr=0.1"]), tmp_path / "sweep")


def test_bad_grids_and_folders_are_refused_before_any_run(base_config, tmp_path):
    assert parse_grid("model.dropout=0, 0.1,0.2") == ("model.dropout", [0, 0.1, 0.2])
    assert parse_grid("optim.schedule=cosine,linear") == ("optim.schedule", ["cosine", "linear"])
    for text, message in (
        ("model.dropout", "must look like section.key=v1,v2"),
        ("model.dropout=0,0", "repeats a value"),
        ("model.dropout=0,,1", "empty value"),
    ):
        with pytest.raises(GptlabError, match=message):
            parse_grid(text)
    for grid, seeds, message in (
        ([("train.seed", [1, 2])], 1, "train.seed cannot be a grid axis"),
        ([("train.nope", [1])], 1, "unknown key 'train.nope'"),
        ([("model.dropout", [0.1, 1.5])], 1, "dropout must be in"),
        ([("train.data_fraction", [0.0])], 1, "train.data_fraction must be in"),
        ([("model.dropout", [0.1])], 0, "seeds must be a positive integer"),
        ([], 1, "at least one grid axis"),
    ):
        with pytest.raises(GptlabError, match=message):
            run_sweep(SweepSpec(base_config, grid, seeds), tmp_path / "never")
    assert not (tmp_path / "never").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(GptlabError, match="not an empty folder nor a sweep"):
        run_sweep(SweepSpec(base_config, [("model.dropout", [0.1])]), tmp_path / "busy")
    assert main(["sweep", "--grid", "model.dropout=0", "--seeds", "1", "--out", str(tmp_path / "x"),
                 "--set", "train.out_dir=elsewhere"]) == 2  # fmt: skip
