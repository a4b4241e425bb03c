"""Structure checks for ``src/unitarget``: no import cycles, modules and functions of a readable size.

Run as ``python tools/check_structure.py`` (exit 1 and a list of offences) or through
``tests/test_structure.py``. Imports are read with ``ast``, so nothing is executed; an import
inside a function counts like one at the top (a cycle hidden in a function body is still a cycle).
``if TYPE_CHECKING:`` imports count too: two modules that need each other's types are one concept
split in two, and the shared types want a module of their own.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "unitarget"
ROOT = Path(__file__).resolve().parent.parent / "src" / PACKAGE
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. unitarget.training.loop
    path: Path
    is_package: bool


def modules(root: Path = ROOT) -> list[Module]:
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        found.append(Module(name, path, is_package))
    return found


def imports(module: Module, known: set[str]) -> set[str]:
    """The modules of the package that ``module`` imports (``from pkg import sub`` names ``pkg.sub``
    when that is a module, else ``pkg``)."""
    tree = ast.parse(module.path.read_text(), str(module.path))
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {name for name in found if name in known and name != module.name}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    mods = modules(root)
    known = {m.name for m in mods}
    return {m.name: imports(m, known) for m in mods}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between the package's first-level subpackages and modules
    (``unitarget.reports`` imports ``unitarget.studies`` if any module of one imports the other);
    the package's own ``__init__`` is left out, since it may re-export anything."""
    def top(name: str) -> str:
        return ".".join(name.split(".")[:2])

    out: dict[str, set[str]] = {}
    for source, targets in graph.items():
        if source == PACKAGE:
            continue
        out.setdefault(top(source), set()).update(top(t) for t in targets if top(t) != top(source) and t != PACKAGE)
    return out


def long_modules(root: Path = ROOT, limit: int = MAX_MODULE_LINES) -> list[tuple[str, int]]:
    return [(str(m.path.relative_to(root.parent)), n) for m in modules(root)
            if (n := len(m.path.read_text().splitlines())) > limit]


def long_functions(root: Path = ROOT, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    found = []
    for m in modules(root):
        tree = ast.parse(m.path.read_text(), str(m.path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append((f"{m.path.relative_to(root.parent)}:{node.lineno} {node.name}", length))
    return found


def problems(root: Path = ROOT) -> list[str]:
    graph = import_graph(root)
    out = [f"import cycle between modules: {' <-> '.join(c)}" for c in cycles(graph)]
    out += [f"import cycle between packages: {' <-> '.join(c)}" for c in cycles(package_graph(graph))]
    out += [f"module over {MAX_MODULE_LINES} lines: {path} ({n})" for path, n in long_modules(root)]
    out += [f"function over {MAX_FUNCTION_LINES} lines: {name} ({n})" for name, n in long_functions(root)]
    return out


def main() -> int:
    found = problems()
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
