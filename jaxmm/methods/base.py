"""The method contract: what the trainer, the probe and the notebooks know about a method.

A method is a small object of pure functions over a parameter pytree (scenic's "model = module +
loss" contract, in functional form):

  init(rng, example_batch) -> params
      A pytree of arrays. NNX methods build their module here, keep its graphdef on `self`
      (static: no arrays) and return `nnx.split(model)[1]` (Params and BatchStats). `init`
      must be traceable: the trainer calls it under `jax.jit` and, to resume, under
      `jax.eval_shape` (never re-initialising parameters that a checkpoint will overwrite).
  loss(params, batch, rng, *, axis_name=None) -> (loss, metrics)
      A scalar loss and a flat dict of scalar metrics. Under data parallelism the trainer calls
      it inside `jax.shard_map` with `axis_name="data"` on this device's shard: the method passes
      `axis_name` on to its estimators so contrastive negatives are gathered from all devices
      (those return the global-batch value already). Any term may be either a per-shard mean or
      such a global value: the trainer averages loss and metrics over the axis (`lax.pmean`,
      which leaves global values unchanged) and differentiates that average.
  embed(params, batch) -> features (B, D)
      Frozen representations for linear probing.

Optional, for methods with non-trainable state (the BatchNorm head's running averages):

  loss_and_state(params, batch, rng, *, axis_name=None) -> (loss, metrics)
      `loss` with, in its metrics under the key STATE_UPDATES, a pytree of new state values
      (e.g. `nnx.state(module, nnx.BatchStat)` after the forward pass). The trainer calls it
      instead of `loss` when it exists, takes the updates out of the metrics, averages them
      over the data axis (`lax.pmean`; a no-op for values already synchronised, as
      SyncBatchNorm statistics) and after the optimizer step calls
  apply_state_updates(params, updates) -> params
      which writes the new values into the parameter pytree (the state is checkpointed with it).
      Gradients w.r.t. state leaves are zero, so the optimizer never moves them.

Optional, for methods that train auxiliary networks with their own objective (FactorCL's
NCE-CLUB critics, Liang et al. 2023, Sec. 3.2 / Algorithm 1):

  inner_loss(params, batch, rng, *, axis_name=None) -> (loss, metrics)
  inner_param_filter(path) -> bool
      `path` is the parameter's key path as a tuple of strings (see `path_names`), e.g.
      ("critic", "kernel", "value") for an NNX State. True selects an inner parameter.

When both are present the trainer runs `TrainConfig.inner_steps` optimizer steps on the inner
parameters under `inner_loss` (with their own optimizer) BEFORE each main step, and the main
step leaves them unchanged (their updates are set to zero). Inner steps never move the main
parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax

Params = Any  # a pytree of arrays (e.g. an nnx.State of Params)
Batch = dict[str, Any]  # see the batch contract in README / jaxmm.data
Metrics = dict[str, jax.Array]  # flat dict of scalars

STATE_UPDATES = "state_updates"  # metrics key of non-trainable state updates (see above)
INNER = "inner"
MAIN = "main"


@runtime_checkable
class Method(Protocol):
    """The contract every jaxmm method satisfies (see the module docstring)."""

    def init(self, rng: jax.Array, example_batch: Batch) -> Params:
        """Creates the parameters; `example_batch` provides the input shapes only."""
        ...

    def loss(
        self, params: Params, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[jax.Array, Metrics]:
        """Returns (scalar loss, metrics) on this device's shard; `axis_name` gathers negatives."""
        ...

    def embed(self, params: Params, batch: Batch) -> jax.Array:
        """Returns the (B, D) representations used by linear probes."""
        ...


@runtime_checkable
class InnerMethod(Method, Protocol):
    """A method with auxiliary parameters trained by their own loss before each main step."""

    def inner_loss(
        self, params: Params, batch: Batch, rng: jax.Array, *, axis_name: str | None = None
    ) -> tuple[jax.Array, Metrics]:
        """Loss minimised over the inner parameters only."""
        ...

    def inner_param_filter(self, path: tuple[str, ...]) -> bool:
        """True for the parameters that `inner_loss` trains (and the main step must not move)."""
        ...


def has_inner(method: Any) -> bool:
    """Whether `method` defines the optional inner objective (both halves of it)."""
    has_loss = callable(getattr(method, "inner_loss", None))
    has_filter = callable(getattr(method, "inner_param_filter", None))
    if has_loss != has_filter:
        raise ValueError(
            f"{type(method).__name__} defines only one of inner_loss / inner_param_filter; "
            "an inner objective needs both"
        )
    return has_loss


def path_names(keypath: tuple[Any, ...]) -> tuple[str, ...]:
    """A jax key path (DictKey, GetAttrKey, SequenceKey, ...) as a tuple of strings."""
    names = []
    for k in keypath:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                names.append(str(getattr(k, attr)))
                break
        else:
            names.append(str(k))
    return tuple(names)


def inner_labels(params: Params, param_filter: Callable[[tuple[str, ...]], bool]) -> Params:
    """Labels every leaf of `params` with INNER or MAIN (for `optax.multi_transform`)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: INNER if param_filter(path_names(path)) else MAIN, params
    )
