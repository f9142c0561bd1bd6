"""The code's shape, checked: no import cycle among lamina's modules (function-level imports count
too), and no module outside the method files and the registry names a method."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lamina"


def module_name(path: Path) -> str:
    parts = ("lamina",) + path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every lamina module `path` imports (anywhere in it), resolved to the module, not the package."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def test_no_import_cycle():
    edges, state, cycles = graph(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


GENERIC = ["design.py", "build.py", "inject.py", "budget.py", "io.py", "merging.py", "export.py", "train.py",
           "peft_format.py", "search/space.py", "search/stages.py", "search/analysis.py", "search/record.py",
           "search/config.py", "search/engine.py", "search/joint.py", "search/oneshot.py", "search/supernet.py",
           "search/ledger.py", "search/store.py", "search/strategies.py", "search_report.py", "report.py"]


@pytest.mark.parametrize("relative", GENERIC)
def test_generic_modules_name_no_method(relative):
    from lamina.methods import METHODS

    text = (SRC / relative).read_text()
    names = "|".join(re.escape(m) for m in METHODS)
    hits = [line.strip() for line in text.splitlines() if re.search(rf"""["']({names})["']""", line)]
    assert not hits, f"{relative} names a method: {hits[:3]}"
