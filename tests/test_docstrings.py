"""Every public top-level function, public class and public method of a public class has a docstring.

Modules are read with ``ast``, so nothing is imported or executed. "Public" means a name that does not
start with ``_`` (dunder methods such as ``__init__`` are private by that rule); a class nested in a
function or a function nested in another is not part of the package's surface and is not checked.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "unitarget"
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


def missing_docstrings(root: Path = PACKAGE) -> list[str]:
    """``path:line name`` of each public definition under ``root`` without a docstring."""
    found = []
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root.parent)
        for node in ast.parse(path.read_text(), str(path)).body:
            if not isinstance(node, (*_DEFS, ast.ClassDef)) or node.name.startswith("_"):
                continue
            kind = "class " if isinstance(node, ast.ClassDef) else ""
            if not ast.get_docstring(node):
                found.append(f"{where}:{node.lineno} {kind}{node.name}")
            if isinstance(node, ast.ClassDef):
                found += [f"{where}:{m.lineno} {node.name}.{m.name}" for m in node.body
                          if isinstance(m, _DEFS) and not m.name.startswith("_") and not ast.get_docstring(m)]
    return found


def test_every_public_function_class_and_method_has_a_docstring():
    missing = missing_docstrings()
    assert missing == [], "public definitions without a docstring:\n" + "\n".join(missing)


def test_the_check_finds_functions_classes_and_methods_without_one(tmp_path):
    package = tmp_path / "unitarget"
    package.mkdir()
    (package / "a.py").write_text(
        'def bare(): pass\n'
        'def _private(): pass\n'
        'async def documented():\n    """Yes."""\n'
        'class Bare:\n    def method(self): ...\n    def __init__(self): ...\n    def _helper(self): ...\n'
        'class _Hidden:\n    def method(self): ...\n'
        'class Documented:\n    """Yes."""\n    @property\n    def size(self): return 1\n'
    )
    assert missing_docstrings(package) == [
        "unitarget/a.py:1 bare", "unitarget/a.py:5 class Bare", "unitarget/a.py:6 Bare.method",
        "unitarget/a.py:14 Documented.size",
    ]
