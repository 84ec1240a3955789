"""Checkpoints: train state, data-iterator position and experiment config, with orbax.

Layout of a work directory's `checkpoints/` (one orbax CheckpointManager, async, atomic,
keep-last-N)::

    checkpoints/<step>/state/    params, optimizer state(s), step, rng (orbax StandardSave)
    checkpoints/<step>/data/     grain iterator state, one JSON file per process
    checkpoints/<step>/config/   the experiment config as JSON (rebuild the model from it alone)

Restoring always goes into an ABSTRACT target (`jax.eval_shape` of the initialiser, with
shardings): nothing is initialised just to be overwritten, and optax states come back as their
own NamedTuple types. Typed PRNG keys are stored as their raw key data and re-wrapped on restore.

Faults. orbax writes each step into `<step>.orbax-checkpoint-tmp*` and renames it when complete,
so a process killed mid-write leaves only such a temporary directory (never a half-written step);
`remove_stale_tmp_dirs` deletes them when a run starts. A finalised step can still be damaged
afterwards (disk, copy, hand edits): `Checkpointer.restore_newest_intact` tries the steps newest
first, warns in one line (step and cause) for each unreadable one and restores the newest intact
step; `quarantine` moves a damaged step aside to `<directory>.corrupt/` (kept for inspection, out
of orbax's step listing so that later saves of the same step number succeed). Every error is a
`CheckpointError` whose message is one line naming the path and the cause.

A write that fails (disk full, permission lost; orbax writes in a background thread, so the
error surfaces at the next `save` or `wait_until_finished`) raises `CheckpointWriteError`, one line
naming the step directory and the cause. The step being written never replaces anything: orbax
renames its temporary directory only once complete, and deletes old steps (`max_to_keep`) only
after a successful write, so the previous checkpoint stays intact.

Paths go through `etils.epath` (a local path or ``gs://...``), as orbax's own.

Example:
  >>> ckpt = Checkpointer("/tmp/run/checkpoints", max_to_keep=3)
  >>> ckpt.save(100, state, data_iter=it, config=cfg)
  >>> state = ckpt.restore(abstract_state, data_iter=it)   # latest step
  >>> step, state, failed = ckpt.restore_newest_intact(abstract_state, data_iter=it)
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import sys
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from jaxmm import config as config_lib
from jaxmm import workdir as workdir_lib

log = logging.getLogger(__name__)

STATE, DATA, CONFIG = "state", "data", "config"
TMP_MARKER = ".orbax-checkpoint-tmp"  # orbax's suffix of a step directory still being written
_CAUSE_CHARS = 240
_GRAIN_ITERATORS = (grain.DatasetIterator, grain.DataLoaderIterator)


class CheckpointError(ValueError):
    """A checkpoint directory is missing, empty or unreadable (the message names the path)."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (the message names the step directory and the cause).

    The previous checkpoint is left intact.
    """


def one_line(e: BaseException, limit: int = _CAUSE_CHARS) -> str:
    """`Type: first line of the message`, cut to `limit` characters.

    orbax and TensorStore errors carry a JSON spec or a whole tree diff after the first line; the
    first line alone names the cause.
    """
    text = str(e).strip().splitlines()
    first = text[0].strip() if text else ""
    out = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return out if len(out) <= limit else out[: limit - 3] + "..."


def remove_stale_tmp_dirs(directory: str | os.PathLike) -> list[str]:
    """Deletes `*.orbax-checkpoint-tmp*` entries of `directory` (left by a killed write).

    Only call this when no save into `directory` is in flight (at the start of a run).

    Returns:
      The removed paths.
    """
    directory = workdir_lib.path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for p in sorted(directory.iterdir(), key=lambda p: p.name):
        if TMP_MARKER not in p.name:
            continue
        if p.is_dir() and not os.path.islink(os.fspath(p)):
            p.rmtree()
        else:
            p.unlink()
        removed.append(os.fspath(p))
    return removed


@contextlib.contextmanager
def _quiet_async_leftovers():
    """Drops the echoes of a failed read: orbax's sibling reads fail too, and asyncio reports
    each of them ("Future exception was never retrieved", a whole TensorStore spec) on stderr
    after the first error has already been raised. That first error is reported instead."""
    asyncio_log = logging.getLogger("asyncio")
    hook = sys.unraisablehook
    previous = asyncio_log.disabled
    asyncio_log.disabled = True
    sys.unraisablehook = lambda unraisable: None
    try:
        yield
    finally:
        gc.collect()  # finalise the failed coroutines while their reports are still dropped
        sys.unraisablehook = hook
        asyncio_log.disabled = previous


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _encode_keys(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _abstract_encoded(tree: Any) -> Any:
    """The abstract tree orbax restores: key leaves become their uint32 key data."""

    def leaf(x):
        if _is_key(x):
            data = jax.eval_shape(jax.random.key_data, x)
            return jax.ShapeDtypeStruct(
                data.shape, data.dtype, sharding=getattr(x, "sharding", None)
            )
        return x

    return jax.tree.map(leaf, tree)


def _decode_keys(restored: Any, abstract: Any) -> Any:
    def leaf(x, a):
        if _is_key(a):
            # A key dtype carries its PRNG implementation (no public accessor on abstract keys).
            return jax.random.wrap_key_data(x, impl=getattr(a.dtype, "_impl", None))
        return x

    return jax.tree.map(leaf, restored, abstract)


def supports_data_state(data_iter: Any) -> bool:
    """Whether `data_iter`'s position can be checkpointed (grain iterators)."""
    return isinstance(data_iter, _GRAIN_ITERATORS)


class Checkpointer:
    """An orbax CheckpointManager for (train state, data iterator, config) triples.

    Args:
      directory: where step directories go (created on first save unless `read_only`).
      max_to_keep: keep the newest N checkpoints.
      async_save: write in a background thread (the call blocks only for the device-to-host copy,
        so the caller may donate or overwrite the state right after `save` returns).
      read_only: open an existing directory without creating anything (probes, notebooks).

    Raises:
      CheckpointError: `read_only` and `directory` does not exist.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        max_to_keep: int = 3,
        async_save: bool = True,
        read_only: bool = False,
    ):
        self.path = workdir_lib.path(directory)
        self.directory = os.fspath(self.path)  # a local path or a URI such as gs://...
        if read_only and not self.path.is_dir():
            raise CheckpointError(f"Checkpoint directory {self.directory} does not exist")
        if read_only:
            options = ocp.CheckpointManagerOptions(
                read_only=True, create=False, save_interval_steps=0, max_to_keep=None
            )
        else:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=async_save
            )
        self._manager = ocp.CheckpointManager(self.path, options=options)
        self._unconfirmed: int | None = None  # the step of a save not yet known to be on disk
        self._failed = False  # a write failed and was reported (close() does not repeat it)

    def latest_step(self) -> int | None:
        """The newest finalised step on disk, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(
        self,
        step: int,
        state: Any,
        *,
        data_iter: Any = None,
        config: Any = None,
        force: bool = True,
    ) -> bool:
        """Saves `state` (any pytree of arrays), the iterator position and the config at `step`.

        Args:
          step: the checkpoint's step number (the train state's step).
          state: a pytree of jax arrays (typed PRNG keys allowed).
          data_iter: a grain iterator whose position after the consumed batches is saved.
          config: a dataclass config (saved via `config.to_dict`) or a JSON-serialisable dict.
          force: save even if orbax's save policy would skip this step.

        Returns:
          Whether a save was started.

        Raises:
          CheckpointWriteError: this write, or the previous (asynchronous) one, failed.
        """
        items = {STATE: ocp.args.StandardSave(_encode_keys(state))}
        if data_iter is not None:
            if not supports_data_state(data_iter):
                raise ValueError(
                    f"data_iter of type {type(data_iter).__name__} cannot be checkpointed; "
                    "pass a grain DatasetIterator / DataLoaderIterator or None"
                )
            items[DATA] = grain.checkpoint.CheckpointSave(data_iter)
        if config is not None:
            items[CONFIG] = ocp.args.JsonSave(_config_dict(config))
        # orbax waits for the previous write before starting one; waiting here first names the
        # step whose write failed, should it have.
        self.wait_until_finished()
        try:
            started = self._manager.save(step, args=ocp.args.Composite(**items), force=force)
        except Exception as e:  # orbax / TensorStore / OS errors of the synchronous part
            raise self._write_error(step, e) from e
        self._unconfirmed = step if started else self._unconfirmed
        return started

    def _write_error(self, step: int | None, e: BaseException) -> CheckpointWriteError:
        self._failed = True
        previous = [s for s in self._listed_steps() if s != step]
        kept = f"step {max(previous)} is intact" if previous else "no earlier step exists"
        where = self.path / str(step) if step is not None else self.path
        # TensorStore names each file it failed on by its full path, twice: shorten them to the
        # part under the checkpoint directory, so that the cause (the OS error) fits the line.
        cause = one_line(e, 2000).replace(os.fspath(self.path) + "/", "")
        cause = cause if len(cause) <= _CAUSE_CHARS * 2 else cause[: _CAUSE_CHARS * 2 - 3] + "..."
        return CheckpointWriteError(f"Could not write checkpoint {where}: {cause} ({kept})")

    def _listed_steps(self) -> list[int]:
        try:
            self._manager.reload()
            return list(self._manager.all_steps())
        except Exception:  # the store itself may be what failed
            return []

    def _check_previous_write(self) -> None:
        """Raises the error of the last asynchronous write, if it failed."""
        try:
            self._manager.check_for_errors()
        except Exception as e:
            step, self._unconfirmed = self._unconfirmed, None
            raise self._write_error(step, e) from e

    def reached_preemption(self, step: int) -> bool:
        """Whether every process of a multi-process job reached the preemption sync point.

        JAX's preemption service turns a SIGTERM to any process into one agreed step (call this
        at every step on every process); always False in a single process.
        """
        return self._manager.reached_preemption(step)

    def restore(
        self, abstract_state: Any, *, step: int | None = None, data_iter: Any = None
    ) -> Any:
        """Restores the state at `step` (default: latest) into the structure of `abstract_state`.

        Args:
          abstract_state: a pytree of `jax.ShapeDtypeStruct` (with `.sharding` where the arrays
            should live), e.g. `jax.eval_shape(init_fn, ...)` with shardings attached.
          step: which checkpoint; None = the latest.
          data_iter: a grain iterator whose position is set to the saved one (in place).

        Returns:
          The restored state, with the tree types of `abstract_state`.

        Raises:
          CheckpointError: no checkpoint in the directory, or it cannot be read (naming the path).
        """
        self.wait_until_finished()
        step = self._resolve_step(step)
        path = self.path / str(step)
        items = {STATE: ocp.args.StandardRestore(_abstract_encoded(abstract_state))}
        if data_iter is not None:
            if not supports_data_state(data_iter):
                raise ValueError(f"data_iter of type {type(data_iter).__name__} cannot be restored")
            items[DATA] = grain.checkpoint.CheckpointRestore(data_iter)
        if not (path / STATE).is_dir():
            raise CheckpointError(f"Could not restore checkpoint {path}: no {STATE}/ directory")
        try:
            with _quiet_async_leftovers():
                restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # orbax raises many types (IO, tensorstore, tree mismatch)
            raise CheckpointError(f"Could not restore checkpoint {path}: {one_line(e)}") from e
        return _decode_keys(restored[STATE], abstract_state)

    def restore_newest_intact(
        self, abstract_state: Any, *, data_iter: Any = None
    ) -> tuple[int, Any, list[tuple[int, str]]]:
        """Restores the newest step that reads back, trying older ones on failure.

        Each unreadable step is logged as one warning line (step and cause). A step is intact
        when its state (and, with `data_iter`, the iterator position) restores into
        `abstract_state`; values are not otherwise checked.

        Returns:
          (restored step, state, [(failed step, cause), ...] newest first).

        Raises:
          CheckpointError: no step at all, or none restores (the message lists each step's cause;
            a target of another experiment fails this way, without anything being moved).
        """
        self.wait_until_finished()
        steps = sorted(self.all_steps(), reverse=True)
        if not steps:
            raise CheckpointError(f"No checkpoint found in {self.directory}")
        failed = []
        for i, step in enumerate(steps):
            try:
                state = self.restore(abstract_state, step=step, data_iter=data_iter)
            except CheckpointError as e:
                cause = one_line(e.__cause__) if e.__cause__ is not None else str(e)
                failed.append((step, cause))
                if i + 1 < len(steps):
                    log.warning(
                        "Checkpoint step %d in %s is unreadable: %s; trying step %d",
                        step,
                        self.directory,
                        cause,
                        steps[i + 1],
                    )
                continue
            return step, state, failed
        causes = "; ".join(f"step {s}: {c}" for s, c in failed)
        raise CheckpointError(f"No checkpoint in {self.directory} could be restored ({causes})")

    def quarantine(self, step: int) -> str:
        """Moves step directory `step` to `<directory>.corrupt/<step>[.N]`; returns the new path.

        Outside `directory`, orbax no longer lists it, and a new save at that step number works.
        """
        self.wait_until_finished()
        src = self.path / str(step)
        dest_dir = self.path.parent / (self.path.name + ".corrupt")
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest, n = dest_dir / str(step), 0
        while dest.exists():
            n += 1
            dest = dest_dir / f"{step}.{n}"
        src.rename(dest)
        self._manager.reload()
        return os.fspath(dest)

    def restore_config(self, step: int | None = None) -> dict[str, Any]:
        """The experiment config saved with checkpoint `step` (default: latest), as a dict."""
        self.wait_until_finished()
        step = self._resolve_step(step)
        path = self.path / str(step) / CONFIG
        if not path.is_dir():
            raise CheckpointError(f"Checkpoint {path.parent} holds no config ({path})")
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(**{CONFIG: ocp.args.JsonRestore()})
            )
        except Exception as e:  # see restore()
            raise CheckpointError(f"Could not read config {path}: {one_line(e)}") from e
        return restored[CONFIG]

    def _resolve_step(self, step: int | None) -> int:
        if step is None:
            step = self.latest_step()
            if step is None:
                raise CheckpointError(f"No checkpoint found in {self.directory}")
        elif step not in self.all_steps():
            raise CheckpointError(
                f"No checkpoint for step {step} in {self.directory}; steps: {self.all_steps()}"
            )
        return step

    def wait_until_finished(self) -> None:
        """Blocks until pending async saves are on disk (call before reading or exiting).

        Raises:
          CheckpointWriteError: the pending write failed.
        """
        try:
            self._manager.wait_until_finished()
        except Exception as e:
            step, self._unconfirmed = self._unconfirmed, None
            raise self._write_error(step, e) from e
        self._check_previous_write()
        self._unconfirmed = None

    def reload(self) -> None:
        """Re-reads the step listing from disk (after another process changed it)."""
        self._manager.reload()

    def close(self) -> None:
        """Waits for pending writes and closes; a write error not yet reported is raised."""
        try:
            if not self._failed:
                self.wait_until_finished()
        finally:
            with contextlib.suppress(Exception) if self._failed else contextlib.nullcontext():
                self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _config_dict(config: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        # A config's own `to_dict` where it has one (ExperimentConfig leaves out the trainer's
        # copies of optimizer / distributed), else the generic walk.
        to_dict = getattr(config, "to_dict", None)
        return to_dict() if callable(to_dict) else config_lib.to_dict(config)
    if isinstance(config, dict):
        return config
    raise ValueError(f"config must be a dataclass instance or a dict, got {type(config).__name__}")


def load_config(directory: str | os.PathLike, step: int | None = None) -> dict[str, Any]:
    """Reads the experiment config saved in a checkpoint directory (a probe's entry point).

    Args:
      directory: the `checkpoints/` directory of a work dir.
      step: which checkpoint; None = the latest.

    Returns:
      The config dict; rebuild the typed config with `jaxmm.config.from_dict(cls, d)`.

    Raises:
      CheckpointError: the directory is missing, empty or its config unreadable (naming the path).
    """
    with Checkpointer(directory, read_only=True) as ckpt:
        return ckpt.restore_config(step)
