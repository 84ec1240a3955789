"""The layering of docs/architecture.md, checked on the source: `jaxmm` never imports `launch`."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imported_modules(path: pathlib.Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def test_library_never_imports_launch():
    offenders = {}
    for path in sorted((ROOT / "jaxmm").rglob("*.py")):
        bad = sorted(m for m in _imported_modules(path) if m.split(".")[0] == "launch")
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders, f"modules under jaxmm/ importing launch: {offenders}"


def test_the_checker_sees_imports(tmp_path):
    """The AST walk finds both import forms, nested in functions too (so the test can fail)."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from launch import configs\n    import launch.train\n")
    assert _imported_modules(src) == {"launch", "launch.train"}


def test_no_library_module_over_700_lines():
    """A module that outgrows 700 lines holds more than one idea: split it along its concerns."""
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for p in (ROOT / "jaxmm").rglob("*.py")
    }
    assert not {p: n for p, n in sizes.items() if n > 700}
