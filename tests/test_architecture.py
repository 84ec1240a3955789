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


def _method_name_tests(path: pathlib.Path, names: set[str]) -> list[str]:
    """Comparisons of a method name (`X.method.name`, `method`, `method_name`) with a literal
    naming a registered method: the if-chains a new method would have to extend."""

    def subject(node) -> bool:
        if isinstance(node, ast.Name):
            return node.id in ("method", "method_name")
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "name"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "method"
        )

    def literals(node) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return set().union(*(literals(e) for e in node.elts)) if node.elts else set()
        return set()

    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(map(subject, sides)) and set().union(*map(literals, sides)) & names:
                out.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return out


# The demo's `--methods` keys name its own rows (one of them gets the at-initialisation row).
_EXEMPT = {"jaxmm/experiments/demo.py"}


def test_no_method_name_is_tested_outside_methods_and_the_config_registry():
    from jaxmm.methods.registry import METHODS

    allowed = (ROOT / "jaxmm" / "methods", ROOT / "jaxmm" / "configs")
    found = []
    for path in sorted((ROOT / "jaxmm").rglob("*.py")):
        if path.parent in allowed or str(path.relative_to(ROOT)) in _EXEMPT:
            continue
        found += _method_name_tests(path, set(METHODS))
    assert not found, "\n".join(found)


def test_the_method_name_check_finds_an_if_chain(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("if cfg.method.name == 'factorcl':\n    pass\nok = method in ('x', 'y')\n")
    assert len(_method_name_tests(src, {"factorcl"})) == 1
    src.write_text("views = 1 if method == 'tuple_infonce' else 2\n")
    assert len(_method_name_tests(src, {"tuple_infonce"})) == 1
