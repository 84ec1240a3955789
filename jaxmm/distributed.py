"""Devices and processes: `jax.distributed` set-up, the data-parallel mesh and batch sharding.

The trainer (`jaxmm.train`) runs one "data" mesh axis (`DATA_AXIS`): parameters replicated, the
batch split on its leading dimension; each process feeds its own slice of the global batch.
"""

from __future__ import annotations

import logging
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

log = logging.getLogger(__name__)

DATA_AXIS = "data"


def maybe_initialize_distributed(
    coordinator_address: str | None, num_processes: int | None, process_id: int | None
) -> bool:
    """Joins a multi-process JAX job when more than one process is configured.

    Call it first, before anything touches `jax.devices()`. On CPU the cross-process collectives
    use gloo (chosen before initialisation). Each process then sees every device in
    `jax.devices()` and its own in `jax.local_devices()`. With a `DistributedConfig` `d`:
    `maybe_initialize_distributed(**dataclasses.asdict(d))`.

    Args:
      coordinator_address: "host:port" of process 0.
      num_processes: total number of processes; None or 1 means single-process (nothing happens).
      process_id: this process's index.

    Returns:
      Whether `jax.distributed.initialize` was called.

    Raises:
      ValueError: several processes but no coordinator address or an out-of-range process id.
    """
    if num_processes is None or num_processes <= 1:
        return False
    if not coordinator_address:
        raise ValueError(f"num_processes={num_processes} needs a coordinator_address ('host:port')")
    if process_id is None or not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
    # Without gloo, CPU devices of different processes cannot share a collective; the setting
    # only concerns the CPU backend, so it is harmless on accelerators.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    return True


def make_mesh(devices: list[jax.Device] | None = None) -> jax.sharding.Mesh:
    """A 1-D data-parallel mesh over `devices` (default: all devices of all processes)."""
    devices = list(jax.devices()) if devices is None else list(devices)
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
    )


def shard_batch(local_batch: Any, mesh: jax.sharding.Mesh) -> Any:
    """This process's slice of the batch -> global arrays sharded on the leading dimension.

    Raises:
      ValueError: leaves disagree on the batch size, or it does not split over the local devices.
    """
    leaves = jax.tree.leaves(local_batch)
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"batch leaves must share a leading batch dimension, got sizes {sizes}")
    (local,) = sizes
    n_local = len(set(mesh.devices.flat) & set(jax.local_devices()))
    if local % n_local:
        raise ValueError(
            f"local batch size {local} is not divisible by this process's {n_local} devices"
        )
    sharding = NamedSharding(mesh, P(DATA_AXIS))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
