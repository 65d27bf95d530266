"""The package's shape (scripts/architecture.py): no import circles, the library never imports the
CLI, no private name imported across modules, every folder within its README line budget. The
guard's own detectors are checked on small made-up packages, so a guard that stopped finding
things would fail here too."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def arch():
    spec = importlib.util.spec_from_file_location("architecture", REPO / "scripts" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["architecture"] = module
    spec.loader.exec_module(module)
    return module


def test_the_package_has_no_circles_no_cli_imports_and_no_private_imports(arch):
    problems, _ = arch.findings()
    assert problems == []


def test_every_folder_is_within_its_readme_budget(arch):
    counts = arch.line_counts()
    assert counts and all(n > 0 for n in counts.values())
    assert arch.over_budget(counts, arch.budgets()) == []


def _fake_package(tmp_path: Path, files: dict[str, str], arch, monkeypatch) -> None:
    for name, text in files.items():
        path = tmp_path / "gptlab" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setattr(arch, "REPO", tmp_path)
    monkeypatch.setattr(arch, "PACKAGE", tmp_path / "gptlab")


def test_the_guard_finds_a_circle_through_a_function_level_import(arch, tmp_path, monkeypatch):
    _fake_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from gptlab.b import f\n",
            "b.py": "def f():\n    from gptlab import c\n",
            "c.py": "import gptlab.a\n",
            "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gptlab.a import x\n",
        },
        arch,
        monkeypatch,
    )
    problems, loops = arch.findings()
    assert loops == [["gptlab.a", "gptlab.b", "gptlab.c"]]
    assert not any("gptlab.d" in p for p in problems)  # TYPE_CHECKING imports never run


def test_the_guard_finds_cli_imports_and_private_names(arch, tmp_path, monkeypatch):
    _fake_package(
        tmp_path,
        {
            "__init__.py": "",
            "cli.py": "from gptlab.commands import run\n",
            "commands/__init__.py": "def run(): pass\n",
            "lib.py": "import importlib\nfrom gptlab.util import _helper\n"
            "m = importlib.import_module(f'gptlab.commands.{1}')\n",
            "util.py": "def _helper(): pass\n",
            "other.py": "from .commands import run\n",
        },
        arch,
        monkeypatch,
    )
    problems, _ = arch.findings()
    text = "\n".join(problems)
    assert "gptlab/lib.py:2: imports private _helper from gptlab.util" in text
    assert "gptlab/lib.py:3: names the CLI module" in text
    assert "gptlab/other.py:1: the library imports the CLI" in text
    assert "cli.py" not in text  # the CLI may import its verbs


def test_budgets_are_read_from_the_readme_table(arch, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "| folder | lines | budget |\n|---|---|---|\n| `gptlab/audit` | 10 | 4,000 |\n| `gptlab` | 1 | 2500 |\n"
    )
    assert arch.budgets(readme) == {"gptlab/audit": 4000, "gptlab": 2500}
    assert arch.over_budget({"gptlab/audit": 4001, "gptlab/new": 3}, {"gptlab/audit": 4000}) == [
        "gptlab/audit: 4001 lines, over its budget of 4000",
        "gptlab/new: no line budget in README.md",
    ]
