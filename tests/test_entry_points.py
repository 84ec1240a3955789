"""Console scripts of pyproject.toml: each names a `main` of a `launch` module, which parses
``--help`` and exits 0, so `jaxmm-<name>` and `python -m launch.<name>` are the same command."""

import importlib
import pathlib
import tomllib

import pytest

PYPROJECT = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
SCRIPTS = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]


def test_scripts_cover_the_launch_entry_points():
    targets = {v.split(":")[0] for v in SCRIPTS.values()}
    for name in ("train", "probe", "demo", "bounds", "search", "data"):
        assert f"launch.{name}" in targets, f"no console script for launch.{name}"
    packages = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"]["find"]
    assert "launch*" in packages["include"]  # the scripts' modules are installed with jaxmm


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_target_parses_help(script, capsys):
    module, func = SCRIPTS[script].split(":")
    main = getattr(importlib.import_module(module), func)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out
