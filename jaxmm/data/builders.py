"""Registry of the project's TFDS builders (`datasets/<name>/<name>_dataset_builder.py`).

The top-level `datasets/` folder is deliberately *not* imported as a Python package: that name
belongs to HuggingFace `datasets`, which TFDS itself may import. Each builder module is loaded
from its file path and registered once in `sys.modules` as `jaxmm_datasets_<name>`, so the TFDS
class registry never sees the same builder class defined twice.

Everything is built as `array_record` and read back through `builder.as_data_source()`, which
needs neither TensorFlow nor the TFDS CLI; the data source plugs into
`grain.MapDataset.source(...)`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import sys
from pathlib import Path
from typing import Any

import jaxmm
from jaxmm import progress

__all__ = [
    "available",
    "build",
    "builder_class",
    "data_source",
    "datasets_dir",
    "get_builder",
    "load_module",
]

log = logging.getLogger(__name__)

_MODULE_PREFIX = "jaxmm_datasets"
_FILE_FORMAT = "array_record"


def datasets_dir() -> Path:
    """The `datasets/` folder: the repository's (repo root = parent of the `jaxmm` package) in a
    checkout or editable install, else the copy a `pip install .` puts under
    ``<prefix>/share/jaxmm/datasets`` (pyproject's ``data-files``)."""
    repo = Path(jaxmm.__file__).resolve().parents[1] / "datasets"
    installed = Path(sys.prefix) / "share" / "jaxmm" / "datasets"
    return repo if repo.is_dir() or not installed.is_dir() else installed


def available() -> list[str]:
    """Names of the builders found under `datasets/`."""
    root = datasets_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / f"{p.name}_dataset_builder.py").is_file())


def load_module(name: str):
    """Imports `datasets/<name>/<name>_dataset_builder.py` once, as module `jaxmm_datasets_<name>`.

    The private module name has a single component on purpose: TFDS then locates the builder's
    code with `inspect.getfile` instead of resolving a package through importlib.resources
    (which would need a real `datasets` package, or the `importlib_resources` backport).
    """
    names = available()
    if name not in names:
        raise ValueError(f"unknown dataset builder {name!r}; available builders: {names}")
    mod_name = f"{_MODULE_PREFIX}_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    path = datasets_dir() / name / f"{name}_dataset_builder.py"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[mod_name]
        raise
    return module


def builder_class(name: str):
    """The `tfds.core.GeneratorBasedBuilder` subclass defined by builder `name`."""
    module = load_module(name)
    return module.BUILDER


def get_builder(name: str, *, data_dir: str | Path, config: Any = None, **kwargs):
    """Instantiates builder `name` writing/reading array_record files under `data_dir`.

    Args:
      name: a builder from `available()`.
      data_dir: TFDS data directory.
      config: a BuilderConfig name (str), a BuilderConfig instance (e.g. a tiny test variant made
        with `dataclasses.replace(cls.builder_configs["px32"], name="tiny", ...)`), or None for
        the builder's default.
      **kwargs: forwarded to the builder constructor.
    """
    cls = builder_class(name)
    kwargs.setdefault("file_format", _FILE_FORMAT)
    return cls(data_dir=str(data_dir), config=config, **kwargs)


def build(
    name: str, data_dir: str | Path, config: Any = None, manual_dir: str | Path | None = None
):
    """Generates builder `name` into `data_dir` (no-op when already built) and returns it."""
    import tensorflow_datasets as tfds

    builder = get_builder(name, data_dir=data_dir, config=config)
    dl_config = tfds.download.DownloadConfig(
        manual_dir=None if manual_dir is None else str(manual_dir)
    )
    with _quiet_tfds():
        builder.download_and_prepare(download_config=dl_config, file_format=_FILE_FORMAT)
    return builder


@contextlib.contextmanager
def _quiet_tfds():
    """TFDS prints "Downloading and preparing dataset Unknown size" on stdout though our builders
    generate (or read local files) and download nothing: that text goes to the DEBUG log. Its
    progress bars are carriage-return redraws, kept on a terminal and turned off in a log."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.utils import tqdm_utils

    shown = getattr(tqdm_utils, "_active", True)
    tfds.display_progress_bar(shown and progress.is_terminal(sys.stderr))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            yield
    finally:
        tfds.display_progress_bar(shown)
        for line in out.getvalue().splitlines():
            log.debug("tfds: %s", line)


def data_source(name: str, split: str, data_dir: str | Path, config: Any = None):
    """Random-access array_record data source of a built split (len, __getitem__ -> dict)."""
    builder = get_builder(name, data_dir=data_dir, config=config)
    if not builder.is_prepared():
        raise ValueError(
            f"dataset {name!r} (config {getattr(builder.builder_config, 'name', None)})"
            f" is not built in {data_dir}; run `python -m launch.data build {name} "
            f"--data-dir {data_dir}` first"
        )
    return builder.as_data_source(split=split)
