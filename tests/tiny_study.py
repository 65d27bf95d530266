"""The study-tiny config as the study tests run it, shared by tests/study/ (the session's one tiny
study is the fixture ``tiny_study`` in tests/study/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).parent / "data"


def tiny(*overrides: str):
    """study-tiny on the test files: the excerpt instead of the built-in corpus (the same study,
    prepared in a fraction of the time) plus the test instructions, whose characters give the char
    tokenizer everything the probe-tasks instruction model of the vulnerabilities stage writes."""
    from gptlab.study import load_study_config

    tasks = json.dumps(str(DATA / "tasks"))
    config = load_study_config(
        "study-tiny",
        [
            f"benchmarks.data_dir={tasks}",
            f"tasks.data_dir={tasks}",  # the fixtures in the layout of ../shared/data/tasks
            f"tasks.instruction_data={json.dumps(str(DATA / 'instructions.json'))}",
            # the defences' classifiers: sentences the char tokenizer of the excerpt can encode
            f"defences.classify_data={json.dumps(str(DATA / 'polarity.jsonl'))}",
            'defences.text_column="text"',
            *overrides,
        ],
    )
    texts = [str(DATA / "shakespeare-excerpt.txt"), str(DATA / "instructions.json")]
    config.sections["pretrain"].set.append(f"data.input={json.dumps(texts)}")
    return config
