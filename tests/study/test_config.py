"""Study configs: presets, overrides, and clear errors for unknown or mistyped keys."""

from __future__ import annotations

import pytest

from gptlab.errors import GptlabError
from gptlab.study import list_study_presets, load_study_config
from gptlab.study.runner import input_hashes, select
from gptlab.study.stages import STAGES


def test_presets_load():
    assert {"study-tiny", "study-quick", "study-full"} <= set(list_study_presets())
    for name in ("study-tiny", "study-quick", "study-full"):
        config = load_study_config(name)
        assert config.study.profile in name
        assert config.stage_names()[-1] == "report"


def test_overrides_are_typed():
    config = load_study_config("study-tiny", ["architecture.seeds=3", "benchmarks.tasks=lambada"])
    assert config.sections["architecture"].seeds == 3
    assert config.sections["benchmarks"].tasks == ["lambada"]
    with pytest.raises(GptlabError, match="architecture.seeds must be a int"):
        load_study_config("study-tiny", ["architecture.seeds=two"])
    with pytest.raises(GptlabError, match="unknown key 'pretrain.stepz'.*known in \\[pretrain\\]"):
        load_study_config("study-tiny", ["pretrain.stepz=3"])
    with pytest.raises(GptlabError, match="section among study, pretrain"):
        load_study_config("study-tiny", ["nosuch.key=1"])
    with pytest.raises(GptlabError, match="unknown stage forgotten"):
        load_study_config("study-tiny", ['study.stages=["pretrain", "forgotten"]'])


def test_a_changed_section_changes_its_hash_and_every_downstream_hash_only():
    base = input_hashes(load_study_config("study-tiny"))
    bench = input_hashes(load_study_config("study-tiny", ["benchmarks.limit=3"]))
    assert [n for n in base if base[n] != bench[n]] == ["benchmarks", "report"]
    pre = input_hashes(load_study_config("study-tiny", ["pretrain.eval_tokens=500"]))
    assert [n for n in base if base[n] == pre[n]] == []  # every stage reads the pretrained model


def test_only_and_skip():
    config = load_study_config("study-tiny")
    assert select(config, only=["pretrain", "report"]) == ["pretrain", "report"]
    assert select(config, skip=["architecture"]) == [n for n in STAGES if n != "architecture"]
    with pytest.raises(GptlabError, match="--skip: nope is not a stage"):
        select(config, skip=["nope"])


def test_a_stage_without_its_upstream_is_refused():
    with pytest.raises(GptlabError, match="architecture needs pretrain"):
        input_hashes(load_study_config("study-tiny", ['study.stages=["architecture"]']))


def test_a_list_of_integers_is_typed_by_its_default():
    config = load_study_config("study-tiny", ["vulnerabilities.canary_repeats=[0, 1, 16]"])
    assert config.sections["vulnerabilities"].canary_repeats == [0, 1, 16]
    for bad in ('vulnerabilities.canary_repeats=["4"]', "vulnerabilities.canary_repeats=4",
                "vulnerabilities.canary_repeats=[true]"):  # fmt: skip
        with pytest.raises(GptlabError, match="canary_repeats must be a list of integers"):
            load_study_config("study-tiny", [bad])
