"""Launch set-up: each log line once, misleading lines dropped, the compilation cache's folder."""

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from launch import logs, runtime

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def stderr(monkeypatch):
    """Returns a function that replaces `sys.stderr` by a buffer (called in the test body: pytest
    sets its own capture stream between set-up and call); the root logger is restored after."""

    def redirect() -> io.StringIO:
        buf = io.StringIO()
        monkeypatch.setattr(sys, "stderr", buf)
        return buf

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {n: list(logging.getLogger(n).filters) for n, _ in logs._NOISE}
    yield redirect
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, filters in noisy.items():
        logging.getLogger(name).filters[:] = filters


def test_each_record_is_printed_once_after_absl_called_basic_config(stderr):
    stderr = stderr()
    # What absl's `logging.log` leaves behind when orbax logs during its import.
    basic = logging.StreamHandler(sys.stderr)
    basic.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    logging.getLogger().addHandler(basic)
    logs.setup_logging(compilation_cache=False)
    logs.setup_logging(compilation_cache=False)  # twice: still one handler
    logging.getLogger("launch.test").info("hello once")
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith("INFO launch.test: hello once"), lines


def test_tpu_and_custom_config_lines_are_dropped_unless_debugging(stderr):
    stderr = stderr()
    logs.setup_logging(compilation_cache=False)
    tpu = "Unable to initialize backend 'tpu': INTERNAL: Failed to open libtpu.so"
    logging.getLogger("jax._src.xla_bridge").info(tpu)
    logging.getLogger("absl").warning("Using custom data configuration: TrifeatureConfig(...)")
    logging.getLogger("absl").warning("a real warning")
    text = stderr.getvalue()
    assert "libtpu" not in text and "custom data" not in text and "a real warning" in text
    logs.setup_logging(logging.DEBUG, compilation_cache=False)
    logging.getLogger("jax._src.xla_bridge").info(tpu)
    assert "libtpu" in stderr.getvalue()


def test_cache_folder_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("JAXMM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert runtime.cache_dir() == str(tmp_path / "jaxmm" / "jax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert runtime.cache_dir() == str(tmp_path / "home" / ".cache" / "jaxmm" / "jax")
    monkeypatch.setenv("JAXMM_CACHE_DIR", str(tmp_path / "c"))
    assert runtime.cache_dir() == str(tmp_path / "c")
    for off in ("off", "0", "", "None"):
        monkeypatch.setenv("JAXMM_CACHE_DIR", off)
        assert runtime.cache_dir() is None


def test_tests_do_not_use_the_cache():
    assert runtime.cache_dir() is None  # conftest turns it off
    assert runtime.enable_compilation_cache() is None


def test_entry_point_set_up_turns_the_cache_on_where_asked(tmp_path):
    code = (
        "import jax; from launch import logs; logs.setup_logging();"
        "print(jax.config.jax_compilation_cache_dir)"
    )
    env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu", "JAXMM_CACHE_DIR": str(tmp_path / "jc")}
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == str(tmp_path / "jc") and (tmp_path / "jc").is_dir()
