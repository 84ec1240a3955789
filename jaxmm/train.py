"""One data-parallel trainer for every jaxmm method (see `jaxmm.methods.base` for the contract).

The pieces, big_vision style:

* `TrainState`: a pytree (step, params, opt_state, inner_opt_state, rng), replicated.
* `Trainer.train_step(state, batch) -> (state, metrics)`: one pure function compiled once, state
  donated, rng folded with the step inside. The loss and its gradient are computed inside
  `jax.shard_map` over the mesh's "data" axis: parameters replicated, the batch split on its
  leading dimension, `axis_name="data"` handed to the method so estimators gather contrastive
  negatives from every device. We differentiate `pmean(loss)`; with shard_map's varying-manual-
  axes checks the gradient w.r.t. replicated parameters is then already the all-device mean
  (transposing the implicit broadcast of a replicated input is a psum) — a `pmean` of the
  gradient would be wrong twice over.
* AdamW (decoupled weight decay on parameters with ndim >= 2 that are not biases or norm
  parameters, by name as the official CoMM code; `decay_mask`) with linear warm-up then cosine
  decay, optional global-norm clipping.
* Methods with an inner objective (FactorCL's critics): `inner_steps` updates of the inner
  parameters under `inner_loss` with their own optimizer, then the main update, in which the
  inner parameters' updates are zero (`optax.multi_transform` with `set_to_zero`).
* `train(...)`: the loop — progress bar, JSON-lines metrics from process 0, periodic async
  checkpoints, resume from the work dir, a checkpoint on Ctrl-C and on preemption (SIGTERM).

Faults (see also `jaxmm.checkpoint`):

* Non-finite loss, gradients or updated parameters: the step keeps the previous parameters and
  optimizer states (a `jnp.where` select inside the compiled step, so nothing is recompiled and
  no host sync is needed), counts the skip in `TrainState.skipped` and reports `nonfinite` = 1 in
  its metrics. The loop reads that flag one step late (so it never waits for the device) and
  stops with `NonFiniteError` after `TrainConfig.max_consecutive_skips` skips in a row, after
  checkpointing the (finite) state. A checkpoint therefore never holds non-finite parameters
  unless the initial ones were.
* Resume: nothing in the work dir is written before the resume decision (`resume=False` on a
  run with checkpoints refuses without touching it). Stale `*.orbax-checkpoint-tmp*` directories
  (a write killed mid-way) are removed; the newest intact checkpoint is restored, each unreadable
  newer one is reported in one warning line and moved to `checkpoints.corrupt/`. `metrics.jsonl`
  keeps exactly one row per logged step: rows after the restored step (replayed by the resumed
  run) and a torn last line are dropped.
* Preemption: SIGTERM (a scheduler's notice, with a grace period) makes the run finish the step
  in flight, checkpoint it, wait for the write and raise `Preempted` (`launch.train` exits with
  `PREEMPTED_EXIT_CODE`, 75: re-queue it, it resumes bitwise). With several processes the
  signal is left to JAX's preemption service (`jax.distributed` installs its SIGTERM notifier):
  every process asks `Checkpointer.reached_preemption(step)` at every step, and all of them
  stop at the same agreed step even if only one was signalled.
* One writer: the work dir is locked for the run (`jaxmm.workdir`; process 0 holds the lock of a
  multi-process run); a second run on it raises `jaxmm.workdir.WorkdirBusy` before writing.
* Write failures: a checkpoint that cannot be written raises
  `jaxmm.checkpoint.CheckpointWriteError` (one line: the step directory and the cause); the
  previous checkpoint stays as it was.

Multi-host: call `maybe_initialize_distributed` first; each process then feeds its own slice of
the global batch (`Trainer.shard` wraps `jax.make_array_from_process_local_data`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmm import checkpoint as ckpt_lib
from jaxmm import progress
from jaxmm import workdir as workdir_lib
from jaxmm.config import TrainConfig
from jaxmm.distributed import DATA_AXIS, make_mesh, shard_batch
from jaxmm.methods import base
from jaxmm.optimizers import make_optimizers

log = logging.getLogger(__name__)


@flax.struct.dataclass
class TrainState:
    """Everything a training step reads and writes (a pytree; checkpointed as a whole)."""

    step: jax.Array  # int32 scalar: number of main updates applied so far
    params: Any  # the method's parameter pytree
    opt_state: Any  # main optimizer state
    inner_opt_state: Any  # inner (critic) optimizer state; None for methods without one
    rng: jax.Array  # base key; step `s` uses fold_in(rng, s)
    skipped: jax.Array  # int32 scalar: steps whose update was skipped (non-finite loss/gradients)


class NonFiniteError(FloatingPointError):
    """Too many consecutive steps had a non-finite loss or gradients (the message says which)."""


PREEMPTED_EXIT_CODE = 75  # sysexits' EX_TEMPFAIL: "try again later"; a scheduler re-queues on it


class Preempted(Exception):  # noqa: N818 (an event, not a failure)
    """The run was preempted (SIGTERM) and checkpointed at `step`; run it again to resume."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


# ------------------------------------------------------------------------------------------------
# The trainer.


def _zeros_like_batch(batch: Any) -> Any:
    # Parameter shapes depend only on the batch's shapes; zeros make `init` identical on every
    # process even though each process holds different data.
    return jax.tree.map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype), batch)


class Trainer:
    """Builds the optimizer(s), the initial/abstract state and the compiled train step.

    Args:
      method: a `jaxmm.methods.base.Method` (optionally with the inner objective).
      config: the training config.
      example_batch: one process-local batch (numpy); only its shapes and dtypes are used.
      mesh: a mesh with a "data" axis; default all devices.
      batch_transform: optional ``(batch, key) -> batch`` run on each device's shard inside
        the step before the loss (see `train`); `example_batch` is its input.

    Example:
      >>> trainer = Trainer(method, cfg, example_batch)
      >>> state = trainer.init_state()
      >>> state, metrics = trainer.train_step(state, trainer.shard(batch))
    """

    def __init__(
        self,
        method: base.Method,
        config: TrainConfig,
        example_batch: Any,
        *,
        mesh: jax.sharding.Mesh | None = None,
        batch_transform: Callable[[Any, jax.Array], Any] | None = None,
    ):
        self.method, self.config = method, config
        self.batch_transform = batch_transform
        self.mesh = make_mesh() if mesh is None else mesh
        if DATA_AXIS not in self.mesh.axis_names:
            raise ValueError(f"mesh needs a {DATA_AXIS!r} axis, got axes {self.mesh.axis_names}")
        self.replicated = NamedSharding(self.mesh, P())
        self.data_sharding = NamedSharding(self.mesh, P(DATA_AXIS))
        self._example = _zeros_like_batch(example_batch)
        if batch_transform is not None:  # the method sees transformed batches
            shapes = jax.eval_shape(batch_transform, self._example, jax.random.key(0))
            self._example = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
        self.has_inner = base.has_inner(method)
        self._init_rng, self._state_rng = jax.random.split(jax.random.key(config.seed))
        # eval_shape also lets NNX methods record their graphdef without allocating parameters.
        abstract_params = jax.eval_shape(method.init, self._init_rng, self._example)
        self.num_params = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract_params))
        self.labels = (
            base.inner_labels(abstract_params, method.inner_param_filter)
            if self.has_inner
            else None
        )
        if self.has_inner and base.INNER not in jax.tree.leaves(self.labels):
            raise ValueError(f"{type(method).__name__}.inner_param_filter selects no parameter")
        self.tx, self.inner_tx, self.schedule = make_optimizers(
            config.optimizer, config.steps, self.labels
        )
        self.train_step = jax.jit(
            self._step,
            donate_argnums=(0,),
            in_shardings=(self.replicated, self.data_sharding),
            out_shardings=(self.replicated, self.replicated),
        )

    # -- state ---------------------------------------------------------------------------------

    def _init(self, rng_init: jax.Array, rng_state: jax.Array, example: Any) -> TrainState:
        params = self.method.init(rng_init, example)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=self.tx.init(params),
            inner_opt_state=self.inner_tx.init(params) if self.has_inner else None,
            rng=rng_state,
            skipped=jnp.zeros((), jnp.int32),
        )

    def init_state(self) -> TrainState:
        """Fresh parameters and optimizer states, replicated over the mesh."""
        init = jax.jit(self._init, out_shardings=self.replicated)
        return init(self._init_rng, self._state_rng, self._example)

    def abstract_state(self) -> TrainState:
        """The state's shapes, dtypes and shardings (the restore target; nothing is allocated)."""
        shapes = jax.eval_shape(self._init, self._init_rng, self._state_rng, self._example)
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.replicated), shapes
        )

    def shard(self, local_batch: Any) -> Any:
        """This process's numpy batch -> a global batch sharded over the "data" axis."""
        return shard_batch(local_batch, self.mesh)

    # -- the step ------------------------------------------------------------------------------

    def _value_and_grad(self, loss_fn):
        """(params, batch, rng) -> (loss, metrics, grads), data-parallel over the "data" axis."""

        def per_device(params, batch, rng):
            # Distinct randomness per shard (dropout, masks); replicated params: one key per step.
            rng = jax.random.fold_in(rng, jax.lax.axis_index(DATA_AXIS))
            if self.batch_transform is not None:  # e.g. device augmentation; no gradient
                rng, k_batch = jax.random.split(rng)
                batch = self.batch_transform(batch, k_batch)

            def objective(p):
                loss, metrics = loss_fn(p, batch, rng, axis_name=DATA_AXIS)
                # pmean is idempotent on losses the estimators already reduced over the axis.
                return jax.lax.pmean(loss, DATA_AXIS), jax.lax.pmean(metrics, DATA_AXIS)

            (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(params)
            return loss, metrics, grads

        return jax.shard_map(
            per_device, mesh=self.mesh, in_specs=(P(), P(DATA_AXIS), P()), out_specs=P()
        )

    def _step(self, state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        rng = jax.random.fold_in(state.rng, state.step)
        rng_main, rng_inner = jax.random.split(rng)
        params, inner_opt_state = state.params, state.inner_opt_state
        measurements = {}

        if self.has_inner and self.config.inner_steps > 0:
            inner_vg = self._value_and_grad(self.method.inner_loss)

            def inner_update(carry, i):
                p, opt = carry
                loss, metrics, grads = inner_vg(p, batch, jax.random.fold_in(rng_inner, i))
                updates, opt = self.inner_tx.update(grads, opt, p)
                return (optax.apply_updates(p, updates), opt), {"loss": loss, **metrics}

            (params, inner_opt_state), inner_metrics = jax.lax.scan(
                inner_update, (params, inner_opt_state), jnp.arange(self.config.inner_steps)
            )
            measurements.update({f"inner/{k}": v[-1] for k, v in inner_metrics.items()})

        loss_fn = getattr(self.method, "loss_and_state", self.method.loss)  # see methods.base
        loss, metrics, grads = self._value_and_grad(loss_fn)(params, batch, rng_main)
        state_updates = metrics.pop(base.STATE_UPDATES, None)  # e.g. BatchNorm running stats
        updates, opt_state = self.tx.update(grads, state.opt_state, params)
        new_params = optax.apply_updates(params, updates)
        if state_updates is not None:
            new_params = self.method.apply_state_updates(new_params, state_updates)

        if self.labels is not None:
            # Report the gradient the main optimizer uses, not the one it discards.
            grads = jax.tree.map(
                lambda g, lab: g if lab == base.MAIN else jnp.zeros_like(g), grads, self.labels
            )
        # A non-finite loss or gradient (a NaN batch, an overflow) would poison the parameters
        # and Adam's moments for good: keep the previous state instead. The inner updates are
        # undone too (a NaN critic makes the main loss NaN, so `finite` covers them).
        finite = _all_finite(loss) & _all_finite(grads) & _all_finite(new_params)
        if self.has_inner:
            finite &= _all_finite(inner_opt_state)

        def keep_if_bad(new, old):
            # One conditional for the whole tree, not a select per leaf: the same values, and
            # XLA compiles the step in about two thirds of the time (CoMM 32 px: 15.6 -> 10.5 s
            # on one core; the selects doubled the optimized HLO).
            return jax.lax.cond(finite, lambda: new, lambda: old)

        measurements.update(metrics)
        measurements.update(
            loss=loss,
            l2_grads=optax.tree.norm(grads),
            l2_updates=optax.tree.norm(updates),
            l2_params=optax.tree.norm(new_params),
            lr=self.schedule(state.step),
            nonfinite=(~finite).astype(jnp.float32),
            skipped=state.skipped + (~finite).astype(jnp.int32),
        )
        new_state = state.replace(
            step=state.step + 1,
            params=keep_if_bad(new_params, state.params),
            opt_state=keep_if_bad(opt_state, state.opt_state),
            inner_opt_state=keep_if_bad(inner_opt_state, state.inner_opt_state),
            skipped=measurements["skipped"],
        )
        return new_state, measurements


def _all_finite(tree: Any) -> jax.Array:
    """A boolean scalar: every floating leaf of `tree` is finite (True for no such leaf)."""
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


# ------------------------------------------------------------------------------------------------
# The loop.


class _StopFlag:
    """Ctrl-C and SIGTERM, read at step boundaries.

    SIGINT: the first finishes the current step, checkpoints, then raises KeyboardInterrupt; a
    second has the default behaviour. SIGTERM (in a single process; several processes leave it
    to JAX's preemption service): finish the step, checkpoint, raise `Preempted`; repeated
    notices change nothing.
    """

    def __init__(self):
        self.requested = False
        self.preempted = False

    @contextlib.contextmanager
    def installed(self, *, sigint: bool = True, sigterm: bool = False):
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set from the main thread
            return
        previous = {}

        def on_sigint(signum, frame):
            # Donated buffers make an exception mid-step unsafe: the old state may already be gone.
            self.requested = True
            signal.signal(signal.SIGINT, previous[signal.SIGINT])

        def on_sigterm(signum, frame):
            self.preempted = True

        for sig, handler, wanted in (
            (signal.SIGINT, on_sigint, sigint),
            (signal.SIGTERM, on_sigterm, sigterm),
        ):
            if wanted:
                previous[sig] = signal.getsignal(sig)
                signal.signal(sig, handler)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _peek(data_iter: Iterator[Any]) -> tuple[Any, Iterator[Any]]:
    """The next batch without consuming it (grain iterators rewind; others are chained)."""
    if ckpt_lib.supports_data_state(data_iter):
        position = data_iter.get_state()
        batch = next(data_iter)
        data_iter.set_state(position)
        return batch, data_iter
    batch = next(data_iter)
    return batch, itertools.chain([batch], data_iter)


def train(
    config: TrainConfig,
    method: base.Method,
    train_iter: Iterator[Any],
    *,
    mesh: jax.sharding.Mesh | None = None,
    experiment_config: Any = None,
    batch_transform: Callable[[Any, jax.Array], Any] | None = None,
) -> TrainState:
    """Trains `method` for `config.steps` steps on this process's batches from `train_iter`.

    Writes to `config.workdir`: `checkpoints/` (state, data-iterator position, experiment config)
    and `metrics.jsonl` (one JSON line per `log_every` steps, process 0 only). If the work dir
    already holds a checkpoint and `config.resume`, training continues from it (parameters,
    optimizer states, step, rng and — for grain iterators — the data position); a checkpoint is
    written every `ckpt_every` steps, at the end, on the first Ctrl-C (then KeyboardInterrupt
    is re-raised; a second Ctrl-C aborts at once) and on SIGTERM (then `Preempted` is raised).
    `config.workdir` may be local or a URI orbax accepts (``gs://...``); it is locked for the run
    (`jaxmm.workdir.hold`).

    Args:
      config: the training config (`batch_size` is the GLOBAL batch).
      method: a `jaxmm.methods.base.Method`.
      train_iter: yields this process's batches (global batch / process count examples each).
        A grain `DatasetIterator` makes resumption exact.
      mesh: a mesh with a "data" axis; default all devices of all processes.
      experiment_config: the full experiment config (`jaxmm.experiment.ExperimentConfig` or its
        `to_dict()`) stored with each checkpoint, from which `launch.probe` rebuilds the model.
        None stores no config (a bare `TrainConfig` cannot rebuild a model) and warns.
      batch_transform: ``(batch, key) -> batch`` applied to each device's shard inside the
        jitted step, before the loss and outside its gradient (the device augmentation of
        `jaxmm.data.inputs.device_augmentation`); keys differ per step and device.

    Returns:
      The final `TrainState`.

    Raises:
      ValueError: the batch size does not match the config, or the work dir holds a checkpoint
        while `config.resume` is False (nothing is written then).
      jaxmm.checkpoint.CheckpointError: no checkpoint of the work dir restores (nothing moved).
      NonFiniteError: `config.max_consecutive_skips` steps in a row had a non-finite loss or
        gradients (after checkpointing the last, finite, state).
      KeyboardInterrupt: after saving, on Ctrl-C.
      Preempted: after saving and waiting for the write, on SIGTERM (JAX's preemption notice
        with several processes; all of them stop at the same step).
      jaxmm.workdir.WorkdirBusy: another live run holds the work dir (nothing is written).
      jaxmm.checkpoint.CheckpointWriteError: a checkpoint could not be written (the previous one
        is intact).
    """
    n_proc = jax.process_count()
    if config.batch_size % n_proc:
        raise ValueError(
            f"train.batch_size {config.batch_size} not divisible by {n_proc} processes"
        )
    local_bs = config.batch_size // n_proc
    train_iter = iter(train_iter)
    example, train_iter = _peek(train_iter)
    got = jax.tree.leaves(example)[0].shape[0]
    if got != local_bs:
        raise ValueError(
            f"train_iter yields batches of {got} examples; "
            f"train.batch_size={config.batch_size} over "
            f"{n_proc} process(es) needs {local_bs} per process"
        )
    trainer = Trainer(method, config, example, mesh=mesh, batch_transform=batch_transform)
    mesh = trainer.mesh
    if config.batch_size % mesh.shape[DATA_AXIS]:
        raise ValueError(
            f"train.batch_size {config.batch_size} not divisible by {mesh.shape[DATA_AXIS]} devices"
        )

    workdir = workdir_lib.path(config.workdir)
    ckpt_dir = workdir / "checkpoints"
    # Decide before writing anything: a refused resume must leave the work dir as it was.
    latest = _latest_finalised_step(ckpt_dir)
    if n_proc > 1:
        # Every process looks before process 0 writes (removes tmp dirs, creates the checkpoint
        # dir): otherwise a late process sees the new dir, opens it, and its orbax barriers no
        # longer pair with process 0's.
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("jaxmm.train:resume_decision")
    if latest is not None and not config.resume:
        raise ValueError(
            f"{workdir} already holds checkpoint step {latest}; use resume or a new dir"
        )
    # One writer per work dir; a live holder is refused here, before anything is written.
    with workdir_lib.hold(workdir):
        return _run(
            config,
            trainer,
            train_iter,
            workdir=workdir,
            latest=latest,
            experiment_config=experiment_config,
        )


def _run(
    config: TrainConfig,
    trainer: Trainer,
    train_iter: Iterator[Any],
    *,
    workdir: Any,
    latest: int | None,
    experiment_config: Any,
) -> TrainState:
    """The loop of `train`, once the work dir is held (see `train`)."""
    n_proc, is_main = jax.process_count(), jax.process_index() == 0
    ckpt_dir = workdir / "checkpoints"
    data_state = ckpt_lib.supports_data_state(train_iter)
    stop = _StopFlag()
    # SIGTERM from here on (restore and compilation can take minutes): a preempted run then
    # always exits with PREEMPTED_EXIT_CODE, never as killed.
    with stop.installed(sigint=False, sigterm=n_proc == 1):
        if is_main:
            for path in ckpt_lib.remove_stale_tmp_dirs(ckpt_dir):
                log.warning("Removed %s (a checkpoint write that never finished)", path)
        ckpt = ckpt_lib.Checkpointer(ckpt_dir, max_to_keep=config.keep)
        try:
            if latest is not None:
                restored_step, state, failed = ckpt.restore_newest_intact(
                    trainer.abstract_state(), data_iter=train_iter if data_state else None
                )
                if failed and is_main:
                    for bad, _ in failed:
                        log.warning("Moved unreadable step %d to %s", bad, ckpt.quarantine(bad))
                if failed and n_proc > 1:
                    from jax.experimental import multihost_utils

                    multihost_utils.sync_global_devices("jaxmm.train: corrupt checkpoints moved")
                    ckpt.reload()
                log.info("Resumed from %s at step %d", ckpt.directory, restored_step)
            else:
                state = trainer.init_state()
        except BaseException:
            ckpt.close()
            raise
        return _loop(config, trainer, train_iter, ckpt, state, stop, workdir, experiment_config)


def _loop(config, trainer, train_iter, ckpt, state, stop, workdir, experiment_config):
    n_proc, is_main = jax.process_count(), jax.process_index() == 0
    mesh = trainer.mesh
    data_state = ckpt_lib.supports_data_state(train_iter)
    if not data_state:
        log.warning(
            "train_iter (%s) has no checkpointable state: a resumed run will not continue "
            "the data stream where it stopped",
            type(train_iter).__name__,
        )

    log.info(
        "Mesh %s over %d %s device(s) in %d process(es); global batch %d (%d per process, %d per "
        "device); %s parameters; inner objective: %s",
        dict(mesh.shape),
        mesh.size,
        mesh.devices.flat[0].platform,
        n_proc,
        config.batch_size,
        config.batch_size // n_proc,
        config.batch_size // mesh.size,
        f"{trainer.num_params:,}",
        trainer.has_inner,
    )

    if experiment_config is None and is_main:
        log.warning(
            "train(experiment_config=None): the checkpoints hold no experiment config, so "
            "launch.probe / launch.embed cannot rebuild the model; pass the ExperimentConfig "
            "(jaxmm.own_data.fit does)"
        )
    start = int(jax.device_get(state.step))

    def save(at_step: int, st: TrainState) -> None:
        ckpt.save(
            at_step, st, data_iter=train_iter if data_state else None, config=experiment_config
        )
        if metrics is not None:
            metrics.flush()  # an object store gets the rows with each checkpoint

    metrics = None
    bar = None
    try:
        metrics = workdir_lib.MetricsLog(workdir / "metrics.jsonl", start) if is_main else None
        bar = progress.bar(
            desc="train",
            total=config.steps,
            initial=start,
            disable=not (config.progress and is_main),
            dynamic_ncols=True,
        )
        guard = _SkipGuard(config.max_consecutive_skips)
        step, last_saved = start, start
        t_last, step_last = time.perf_counter(), start
        with stop.installed(sigint=True):
            while step < config.steps and not stop.preempted:
                try:
                    local = next(train_iter)
                except StopIteration:
                    log.warning("train_iter exhausted at step %d of %d", step, config.steps)
                    break
                state, metrics_ = trainer.train_step(state, trainer.shard(local))
                step += 1
                bar.update(1)
                guard.push(step, metrics_["nonfinite"])
                if step % config.log_every == 0 or step == config.steps:
                    row = {k: float(v) for k, v in jax.device_get(metrics_).items()}
                    guard.flush()
                    now = time.perf_counter()
                    row["examples_per_sec"] = (
                        (step - step_last) * config.batch_size / (now - t_last)
                    )
                    t_last, step_last = now, step
                    bar.set_postfix(
                        loss=f"{row['loss']:.4f}", ex_s=f"{row['examples_per_sec']:.0f}"
                    )
                    if metrics is not None:
                        metrics.write({"step": step, **row})
                if config.ckpt_every and step % config.ckpt_every == 0:
                    save(step, state)
                    last_saved = step
                # Several processes: JAX's preemption service agrees on one step for all of
                # them (it must be asked at every step, by every process).
                if n_proc > 1 and ckpt.reached_preemption(step):
                    stop.preempted = True
                if stop.requested or stop.preempted or guard.exceeded:
                    break
        guard.flush()
        if step != last_saved:
            save(step, state)
        if guard.exceeded:
            ckpt.wait_until_finished()
            raise NonFiniteError(
                f"training stopped at step {step}: {guard.limit} consecutive steps (the last at "
                f"step {guard.last_bad}) had a non-finite loss or gradients and were skipped "
                f"(train.max_consecutive_skips={guard.limit}); the finite state is checkpointed "
                f"in {ckpt.directory} at step {step}; lower optimizer.lr, set "
                "optimizer.clip_norm or check the data"
            )
        if stop.preempted:
            ckpt.wait_until_finished()
            log.warning("Preempted: checkpointed step %d in %s", step, ckpt.directory)
            raise Preempted(
                f"preempted (SIGTERM) at step {step}; checkpoint saved in {ckpt.directory}; run "
                "the same command again to resume",
                step,
            )
        if stop.requested:
            ckpt.wait_until_finished()
            raise KeyboardInterrupt(
                f"interrupted at step {step}; checkpoint saved in {ckpt.directory}"
            )
        ckpt.wait_until_finished()  # a failed last write is reported here, in one line
    finally:
        if bar is not None:
            bar.close()
        if metrics is not None:
            metrics.close()
        ckpt.close()
    return state


class _SkipGuard:
    """Counts consecutive skipped updates from each step's `nonfinite` flag, one step late.

    Reading step t's flag right after dispatching step t would wait for the device every step;
    reading step t-1's flag once step t is queued costs nothing (it is already computed).
    """

    def __init__(self, limit: int):
        self.limit, self.consecutive, self.last_bad = limit, 0, None
        self._pending: list[tuple[int, jax.Array]] = []

    @property
    def exceeded(self) -> bool:
        return self.consecutive >= self.limit

    def push(self, step: int, flag: jax.Array) -> None:
        self._pending.append((step, flag))
        while len(self._pending) > 1:
            self._account(*self._pending.pop(0))

    def flush(self) -> None:
        while self._pending:
            self._account(*self._pending.pop(0))

    def _account(self, step: int, flag: jax.Array) -> None:
        if self.exceeded:
            return  # the run stops at the limit; later steps are not counted
        if float(jax.device_get(flag)) > 0:
            self.consecutive += 1
            self.last_bad = step
            log.warning(
                "Step %d: non-finite loss or gradients, update skipped (%d in a row, limit %d)",
                step,
                self.consecutive,
                self.limit,
            )
        else:
            self.consecutive = 0


def _latest_finalised_step(ckpt_dir: Any) -> int | None:
    """The newest finalised step in `ckpt_dir` without creating anything (None if none)."""
    if not workdir_lib.path(ckpt_dir).is_dir():
        return None
    with ckpt_lib.Checkpointer(ckpt_dir, read_only=True) as ckpt:
        return ckpt.latest_step()
