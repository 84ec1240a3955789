"""The commands printed in README.md and docs/*.md run as written after the set-up command.

Commands are read from the Markdown's code blocks (indented or fenced, not ```python) and from
inline code spans that start with a command. Every one must start with `.venv/bin/python -m`
(the venv `make install` / `make demo` / `make test` create: nothing needs activating), `make`
with a target of the Makefile, or another tool of the venv. For each `python -m launch.X` command
the module must exist, every `--flag` must be one that the module's (or its sub-command's)
`--help` lists, and `--config` / `--variant` / `--set` must name a registered config, one of its
variants and fields it has. The cheap commands are then run: every module's `--help`, the
listings, and the README's smoke training (and a probe of it) in a temporary directory.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_PY = ".venv/bin/python"
SMOKE = "-m launch.train --config comm_trifeature --variant smoke"


def _code_lines(text: str) -> list[str]:
    """Lines of indented and non-Python fenced code blocks, and inline code spans (only the
    command-like ones are kept by the caller, so prose indented by 4 spaces does no harm)."""
    lines, fence = [], None
    for raw in text.splitlines():
        stripped = raw.strip()
        if fence is not None:
            if stripped.startswith("```"):
                fence = None
            elif fence in ("", "bash", "sh", "shell", "console"):
                lines.append(stripped)
        elif stripped.startswith("```"):
            fence = stripped[3:].strip().lower()
        elif raw.startswith("    "):
            lines.append(stripped)
        else:
            lines += [span.strip() for span in re.findall(r"`([^`]+)`", raw)]
    return lines


def _is_command(line: str) -> bool:
    return bool(re.match(r"(\.venv/bin/|python3? |make |cd )", line))


def commands() -> list[tuple[str, str]]:
    """(file name, command) for every command of README.md and docs/*.md, continuations joined."""
    out = []
    for path in DOCS:
        pending = ""
        for line in _code_lines(path.read_text()):
            if pending:
                line, pending = pending + " " + line, ""
            if line.endswith("\\"):
                pending = line[:-1].strip()
                continue
            line = re.sub(r"\s+#.*$", "", line).strip()  # trailing comment
            line = re.sub(r"^(\w+=\S*\s+)+", "", line)  # VAR=value prefixes
            if _is_command(line):
                out.append((path.name, line))
    return out


def _launch_commands() -> list[tuple[str, str, list[str]]]:
    """(file, command, argv after `-m launch.X`) of the `python -m launch.X` commands."""
    out = []
    for name, cmd in commands():
        words = shlex.split(cmd.split("&&")[-1].strip())
        # `launch.X`, `launch.<name>`: a placeholder in prose, not a command
        if (
            len(words) >= 3
            and words[1] == "-m"
            and re.fullmatch(r"launch(\.[a-z_0-9]+)+", words[2])
        ):
            out.append((name, cmd, words[2:]))
    return out


def test_the_docs_have_commands():
    found = {name for name, _ in commands()}
    assert {"README.md", "results.md", "benchmarks.md"} <= found, found
    assert any(SMOKE in cmd for _, cmd in commands()), "the README's smoke command is gone"


@pytest.mark.parametrize("name,cmd", commands(), ids=lambda x: x[:60])
def test_every_command_runs_from_the_venv_as_written(name, cmd):
    """No bare `python -m`: after set-up the packages live in `.venv/`, nothing is activated."""
    first = shlex.split(cmd)[0]
    if first == "cd":
        return
    if first == "make":
        targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
        for target in shlex.split(cmd)[1:]:
            assert target in targets, f"{name}: `{cmd}`: no Makefile target {target!r}"
        return
    assert first.startswith(".venv/bin/"), (
        f"{name}: `{cmd}` fails after set-up (packages are in .venv); write `{VENV_PY} -m ...`"
    )


def _help_texts(argvs: list[list[str]]) -> dict[str, dict]:
    """`python -m launch.X [sub] --help` for each argv, run by runpy (what `-m` does) in one
    subprocess so the imports are paid once."""
    script = (
        "import contextlib, io, json, runpy, sys\n"
        "out = {}\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    buf, rc = io.StringIO(), 0\n"
        "    sys.argv = [argv[0], *argv[1:], '--help']\n"
        "    try:\n"
        "        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):\n"
        "            runpy.run_module(argv[0], run_name='__main__', alter_sys=True)\n"
        "    except SystemExit as e:\n"
        "        rc = e.code or 0\n"
        "    except Exception as e:\n"
        "        rc, _ = 1, buf.write(repr(e))\n"
        "    out[' '.join(argv)] = {'rc': rc, 'text': buf.getvalue()}\n"
        "print(json.dumps(out))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", script, json.dumps(argvs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _help_key(argv: list[str]) -> list[str]:
    """The module, plus its sub-command when the first argument is one (`launch.data build`)."""
    if len(argv) > 1 and not argv[1].startswith(("-", "[")):
        return argv[:2]
    return argv[:1]


@pytest.fixture(scope="module")
def helps():
    keys = {tuple(_help_key(argv)) for _, _, argv in _launch_commands()}
    keys |= {(argv[0],) for _, _, argv in _launch_commands()}
    return _help_texts([list(k) for k in sorted(keys)])


def _flags(argv: list[str]) -> list[str]:
    out = []
    for word in argv:
        for part in word.strip("[]").split("|"):
            if part.startswith("--"):
                out.append(part.split("=")[0])
    return out


def test_every_documented_module_and_flag_exists(helps):
    for name, cmd, argv in _launch_commands():
        for key in {argv[0], " ".join(_help_key(argv))}:
            got = helps[key]
            assert got["rc"] == 0, f"{name}: `{cmd}`: `{key} --help` failed: {got['text'][-500:]}"
        text = helps[" ".join(_help_key(argv))]["text"]
        for flag in _flags(argv):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), (
                f"{name}: `{cmd}`: {argv[0]} has no option {flag}"
            )


def _option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, w in enumerate(argv[:-1]) if w == flag]


def test_documented_configs_variants_and_overrides_exist():
    from jaxmm import configs, experiment
    from jaxmm.data import builders

    checked = 0
    for name, cmd, argv in _launch_commands():
        if argv[:2] == ["launch.data", "build"]:
            known = builders.builder_class(argv[2]).builder_configs
            for config in _option(argv, "--config"):
                assert config in known, f"{name}: `{cmd}`: {argv[2]} has no config {config!r}"
        if argv[0] not in ("launch.train", "launch.search"):
            continue
        for config in _option(argv, "--config"):
            assert config in configs.names(), f"{name}: `{cmd}`: no config {config!r}"
            variants = _option(argv, "--variant") or [None]
            for variant in variants:
                assert variant in configs.variants(config), (
                    f"{name}: `{cmd}`: {config} has no variant {variant!r}"
                )
                cfg = configs.get_config(config, variant)
                experiment.override(cfg, _option(argv, "--set"))  # raises on an unknown field
                checked += 1
    assert checked >= 4


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Runs a documented command; `.venv/bin/python` is the interpreter running the tests."""
    assert argv[0] == VENV_PY, argv
    return subprocess.run(
        [sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300, **kw
    )


def _documented(prefix: str) -> list[str]:
    for _, cmd in commands():
        if cmd.startswith(f"{VENV_PY} {prefix}"):
            return shlex.split(cmd)
    raise AssertionError(f"no documented command starts with {prefix!r}")


def test_listing_commands_run():
    res = _run(_documented("-m launch.train --list"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "comm_trifeature" in res.stdout and "method=comm" in res.stdout
    res = _run(_documented("-m launch.data list"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "trifeature" in res.stdout


def test_readme_smoke_training_then_probe_run_and_say_where_results_went(tmp_path):
    """The README's smoke run as written (work dir and data dir moved to tmp), then a probe of it;
    each ends naming where its outputs went, and the log has no line twice."""
    argv = _documented(SMOKE)
    workdir = _option(argv, "--workdir")[0]
    run_dir = tmp_path / "run"
    argv = [str(run_dir) if w == workdir else w for w in argv]
    res = _run(argv + ["--data-dir", str(tmp_path / "data")])
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stderr.splitlines()
    assert str(run_dir / "checkpoints") in log[-1], log[-3:]
    messages = [line.split(" ", 2)[-1] for line in log if line.strip()]
    assert len(messages) == len(set(messages)), "a log line is printed twice"
    for noise in ("Unable to initialize backend", "Downloading and preparing", "WARNING:absl"):
        assert noise not in res.stderr + res.stdout, noise

    out = tmp_path / "results.json"
    res = _run(
        [VENV_PY, "-m", "launch.probe", "--workdir", str(run_dir), "--tasks", "shape"]
        + ["--out", str(out)]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert out.is_file() and str(out) in res.stdout.strip().splitlines()[-1]
