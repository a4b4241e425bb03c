"""The layout stays readable: no import cycles, no module over ~400 lines, no function over ~60."""

import importlib.util
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "check_structure.py"


def _tool():
    spec = importlib.util.spec_from_file_location("check_structure", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_the_package_has_no_cycles_and_no_overlong_modules_or_functions():
    assert _tool().problems() == []


def test_the_checker_finds_a_cycle_a_long_module_and_a_long_function(tmp_path):
    tool = _tool()
    package = tmp_path / "unitarget"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from unitarget.sub import b\n")
    body = "\n".join(f"    x = {i}" for i in range(70))
    (package / "sub" / "b.py").write_text("def late():\n    from unitarget import a\n" + body + "\n"
                                          + "\n" * 400)
    found = tool.problems(package)
    assert "import cycle between modules: unitarget.a <-> unitarget.sub.b" in found
    assert "import cycle between packages: unitarget.a <-> unitarget.sub" in found
    assert any(line.startswith("module over 400 lines: unitarget/sub/b.py") for line in found)
    assert any(line.startswith("function over 60 lines: unitarget/sub/b.py:1 late") for line in found)
