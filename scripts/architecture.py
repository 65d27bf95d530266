"""Guards that keep the package's shape (run by scripts/test.sh and tests/test_architecture.py).

1. No import circles inside ``gptlab/``: every ``import``, module-level or inside a function, is an
   edge of the graph (a function-level import only hides a circle until that function runs).
   Imports under ``if TYPE_CHECKING:`` are not edges: they never run.
2. The library never imports the CLI: nothing in ``gptlab/`` outside ``gptlab/commands/`` and
   ``gptlab/cli.py`` imports ``gptlab.commands``.
3. No ``_private`` name imported from another module (``from gptlab.x import _y``): what one
   module needs from another is public, named and documented there.
4. Lines per package folder, printed, against the budget in the README's architecture section
   (a table row ``| gptlab/audit | ... | 4000 |``: the last number in the row is the budget).

``python scripts/architecture.py`` prints the counts and the findings and exits 1 on any finding.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "gptlab"
README = REPO / "README.md"
CLI_MODULES = ("gptlab.commands", "gptlab.cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node that can run (skipping ``if TYPE_CHECKING:`` bodies)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_block(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve_from(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges(modules: dict[str, Path]):
    """(importer, imported module, names imported, line) for every gptlab-internal import."""
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("gptlab"):
                        yield module, alias.name, [], node.lineno
                continue
            source = _resolve_from(module, path, node)
            if not source.startswith("gptlab"):
                continue
            names = [a.name for a in node.names]
            submodules = [n for n in names if f"{source}.{n}" in modules]
            for n in submodules:
                yield module, f"{source}.{n}", [], node.lineno
            others = [n for n in names if n not in submodules]
            if others or not submodules:
                yield module, source, others, node.lineno


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))  # a deep import chain; restored, since tests import this
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def findings() -> tuple[list[str], list[list[str]]]:
    modules = package_modules()
    graph: dict[str, set[str]] = defaultdict(set)
    problems: list[str] = []
    for importer, imported, names, line in import_edges(modules):
        if imported in modules and imported != importer:
            graph[importer].add(imported)
        where = f"{modules[importer].relative_to(REPO)}:{line}"
        in_cli = importer.startswith(CLI_MODULES)
        if not in_cli and imported.startswith("gptlab.commands"):
            problems.append(f"{where}: the library imports the CLI ({imported})")
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private and imported != importer:
            problems.append(f"{where}: imports private {', '.join(private)} from {imported}")
    for module, path in modules.items():
        if module.startswith(CLI_MODULES):
            continue
        # importlib.import_module(f"gptlab.commands.{name}") is an import too
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("gptlab.commands"):
                problems.append(f"{path.relative_to(REPO)}:{node.lineno}: names the CLI module {node.value!r}")
    loops = circles(graph)
    problems += [f"import circle: {' <-> '.join(c)}" for c in loops]
    return problems, loops


def line_counts() -> dict[str, int]:
    """Lines of Python per folder of gptlab/ (``gptlab`` alone: the top-level modules)."""
    counts: dict[str, int] = defaultdict(int)
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(REPO).parts
        folder = "/".join(rel[:2]) if len(rel) > 2 else "gptlab"
        counts[folder] += len(path.read_text(encoding="utf-8").splitlines())
    return dict(sorted(counts.items()))


def budgets(readme: Path = README) -> dict[str, int]:
    """``| gptlab/x | ... | N |`` rows of the README's line-budget table."""
    found = {}
    for row in readme.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`?(gptlab(?:/[a-z_]+)?)/?`?\s*\|.*\|\s*([\d,]+)\s*\|\s*$", row)
        if m:
            found[m.group(1)] = int(m.group(2).replace(",", ""))
    return found


def over_budget(counts: dict[str, int], budget: dict[str, int]) -> list[str]:
    problems = [f"{f}: {n} lines, over its budget of {budget[f]}" for f, n in counts.items() if f in budget and n > budget[f]]
    problems += [f"{f}: no line budget in README.md" for f in counts if f not in budget]
    return problems


def main() -> int:
    counts = line_counts()
    budget = budgets()
    print("lines per package folder (budget from README.md):")
    for folder, n in counts.items():
        print(f"  {folder:<18} {n:>6}  / {budget.get(folder, '?')}")
    print(f"  {'total':<18} {sum(counts.values()):>6}")
    problems, _ = findings()
    problems += over_budget(counts, budget)
    for p in problems:
        print(f"architecture: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
