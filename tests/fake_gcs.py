"""An offline stand-in for ``gs://``: epath's real fsspec backend over an in-memory object store.

`etils.epath` sends ``gs://`` paths to fsspec's "gcs" file system (when TensorFlow is absent, as
here). `fake_gcs()` registers fsspec's in-memory file system under that name for the block, so
the project's own reads and writes of a ``gs://bucket/...`` work dir run through the same epath
code as on a real bucket, against a store with object-store semantics (no append, no local
path, no `os.*` call can reach it). What it cannot stand in for: TensorStore's GCS driver, which
orbax uses for array data (see the README, "Faults and resume").
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import fsspec
import fsspec.registry
from etils.epath import backend as epath_backend
from fsspec.implementations.memory import MemoryFileSystem


class FakeGCS(MemoryFileSystem):
    """fsspec's memory file system answering to gs:// (a fresh, empty store per `fake_gcs`)."""

    protocol = ("gs", "gcs")
    root_marker = ""
    store: dict = {}
    pseudo_dirs: list = [""]

    def __init__(self, *args, finalize_on_close=None, **kwargs):  # epath passes this for gcs
        super().__init__(*args, **kwargs)

    @classmethod
    def _strip_protocol(cls, path):
        path = fsspec.utils.stringify_path(path)
        for prefix in ("gs://", "gcs://"):
            if path.startswith(prefix):
                path = path[len(prefix) :]
        path = path.lstrip("/").rstrip("/")
        return "/" + path if path else ""

    def files(self) -> dict[str, bytes]:
        """Every object in the store as {"gs://...": bytes}."""
        return {"gs:/" + k: v.getvalue() for k, v in self.store.items()}


@contextlib.contextmanager
def fake_gcs() -> Iterator[FakeGCS]:
    """Serves ``gs://`` from a fresh in-memory store for the block; yields the file system."""
    registry = sys.modules["fsspec.registry"]._registry  # fsspec's table of implementations
    saved = {k: registry.get(k) for k in ("gs", "gcs")}
    FakeGCS.store, FakeGCS.pseudo_dirs = {}, [""]
    FakeGCS.clear_instance_cache()
    for name in ("gs", "gcs"):
        fsspec.register_implementation(name, FakeGCS, clobber=True)
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    try:
        yield fsspec.filesystem("gcs")
    finally:
        epath_backend.fsspec_backend._get_filesystem.cache_clear()
        for name, impl in saved.items():
            if impl is None:
                registry.pop(name, None)
            else:
                registry[name] = impl
        FakeGCS.store, FakeGCS.pseudo_dirs = {}, [""]
