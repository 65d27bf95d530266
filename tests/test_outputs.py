"""The one output rule (gptlab/outputs.py) and the CLI's argument checks (gptlab/options.py)."""

from __future__ import annotations

import os

import pytest

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.outputs import claim_file, claim_files, claim_folder


def _tree(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_claim_folder_accepts_a_new_or_empty_folder_and_creates_nothing(tmp_path):
    assert claim_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # the writer makes it: a verb that fails leaves no trace
    (tmp_path / "empty").mkdir()
    assert claim_folder(tmp_path / "empty") == tmp_path / "empty"


def test_claim_folder_refuses_a_non_empty_folder_and_touches_nothing(tmp_path):
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "model.json").write_text("{}")
    (run / "best" / "w").write_bytes(b"x")
    before = _tree(run)
    with pytest.raises(GptlabError, match="not empty: pass --overwrite"):
        claim_folder(run)
    assert _tree(run) == before


def test_claim_folder_overwrite_empties_the_folder_so_no_stale_file_survives(tmp_path):
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "trainer_state.json").write_text("{}")
    assert claim_folder(run, overwrite=True) == run
    assert run.is_dir() and list(run.iterdir()) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_no_output_may_be_or_contain_or_sit_inside_its_source(tmp_path, overwrite):
    src = tmp_path / "src"
    (src / "best").mkdir(parents=True)
    (src / "model.json").write_text("{}")
    before = _tree(src)
    for out in (src, src / "best", src / "new", tmp_path):
        with pytest.raises(GptlabError, match="would overwrite its own input"):
            claim_folder(out, overwrite=overwrite, sources=[src])
    for out in (src, src / "audit"):  # named files: not into the run, nor a folder inside it
        with pytest.raises(GptlabError, match="would overwrite its own input"):
            claim_files(out, ["index.html"], overwrite=overwrite, sources=[src])
    claim_files(tmp_path / "views", ["index.html"], sources=[src])  # beside the run is fine
    assert _tree(src) == before


def test_a_source_that_is_not_a_local_path_is_ignored(tmp_path):
    # a hub name such as "gpt2" is not a folder here: it cannot be overwritten
    assert claim_folder(tmp_path / "out", sources=["gpt2", None]) == tmp_path / "out"


def test_claim_files_refuses_only_the_files_it_would_replace(tmp_path):
    (tmp_path / "lens.html").write_text("mine")
    claim_files(tmp_path, ["attention.html"])  # other files may share the folder
    with pytest.raises(GptlabError, match="already holds lens.html: pass --overwrite"):
        claim_files(tmp_path, ["attention.html", "lens.html"])
    claim_files(tmp_path, ["lens.html"], overwrite=True)
    assert (tmp_path / "lens.html").read_text() == "mine"  # claiming never deletes


def test_claim_file(tmp_path):
    tok = tmp_path / "tok.json"
    assert claim_file(tok) == tok
    tok.write_text("{}")
    with pytest.raises(GptlabError, match="already exists: pass --overwrite"):
        claim_file(tok)
    assert claim_file(tok, overwrite=True) == tok
    with pytest.raises(GptlabError, match="is a folder"):
        claim_file(tmp_path)
    with pytest.raises(GptlabError, match="would overwrite its own input"):
        claim_file(tok, overwrite=True, sources=[tok])


def test_a_path_under_a_regular_file_fails_at_once_and_creates_nothing(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for claim in (
        lambda: claim_folder(blocker / "run"),
        lambda: claim_files(blocker / "views", ["a.html"]),
        lambda: claim_file(blocker / "sub" / "tok.json"),
    ):
        with pytest.raises(GptlabError, match="is a file, not a folder"):
            claim()
    with pytest.raises(GptlabError, match="exists and is not a folder"):
        claim_folder(blocker)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_fails_before_any_work(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(GptlabError, match="cannot write"):
            claim_files(ro, ["a.html"])
    finally:
        ro.chmod(0o755)


# ------------------------------------------------------------------------------ argument checking


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["generate", "--model", "R", "--prompt", "a", "--seed", str(2**63)], "--seed: a seed must be"),
        (["generate", "--model", "R", "--prompt", "a", "--seed", "-1"], "--seed: a seed must be"),
        (["generate", "--model", "R", "--prompt", "a", "--temperature", "nan"], "finite number"),
        (["generate", "--model", "R", "--prompt", "a", "--temperature", "-1"], "0 or more"),
        (["generate", "--model", "R", "--prompt", "a", "--max-new-tokens", "0"], "positive integer"),
        (["audit", "bias", "--model", "R", "--alpha", "5"], "strictly between 0 and 1"),
        (["audit", "bias", "--model", "R", "--n-perm", "0", "--n-boot", "0"], "--n-perm: must be a positive"),
        (["audit", "membership", "--model", "R", "--window-tokens", "0"], "positive integer"),
        (
            ["eval", "bleu", "--hyp", "h", "--ref", "r", "--smooth", "add-k", "--smooth-value", "-1"],
            "positive",
        ),
        (["quantize", "--model", "R", "--bits", "8", "--out", "Q", "--eval-max-chars", "-5"], "positive"),
        (["finetune", "classify", "--model", "R", "--data", "d", "--out", "o", "--lr", "inf"], "finite"),
        (["train", "--bogus-flag"], "unrecognized arguments"),
    ],
)
def test_nonsense_values_are_refused_while_parsing_in_one_error_line(capsys, argv, fragment):
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith("error: ") and fragment in line


def test_bleu_api_refuses_a_negative_smoothing_value():
    from gptlab.eval.bleu import bleu_from_stats

    with pytest.raises(ValueError, match="must be a positive number"):
        bleu_from_stats([3, 1, 0, 0], [4, 3, 2, 1], 4, 4, smooth_method="add-k", smooth_value=-1)
