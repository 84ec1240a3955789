"""One process of the two-process CPU training job launched by tests/test_multihost.py.

Run as `python tests/multihost_worker.py PORT PROCESS_ID NUM_PROCESSES WORKDIR OUT.npz`, with
XLA_FLAGS giving each process its own simulated CPU devices. Every process trains on its own half
of each global batch through `jaxmm.train.train` (sharded global arrays, gloo collectives,
checkpoints written by all processes) and saves its final parameters to OUT.npz.

With a sixth argument K (preemption): the data repeat for a very long run, the LAST process sends
itself SIGTERM while drawing its batch of step K, and every process is expected to stop at one
agreed step with `Preempted`; each saves that step to OUT.npz and exits with
`PREEMPTED_EXIT_CODE`. A process refused by the work dir's lock prints `busy: <message>` and
exits with 3.
"""

from __future__ import annotations

import signal
import sys

import grain
import jax
import numpy as np

from jaxmm.config import OptimizerConfig, TrainConfig
from jaxmm.methods.toy import ToyContrastive, toy_dataset

GLOBAL_BATCH = 16
STEPS = 3


def make_method() -> ToyContrastive:
    return ToyContrastive(hidden=16, dim=8, proj_dim=8, critic_weight=0.5)


def make_config(workdir: str) -> TrainConfig:
    opt = OptimizerConfig(lr=1e-2, eps=1e-3, weight_decay=1e-3, warmup_steps=1)
    return TrainConfig(
        steps=STEPS,
        batch_size=GLOBAL_BATCH,
        log_every=1,
        ckpt_every=2,
        inner_steps=1,
        progress=False,
        workdir=workdir,
        optimizer=opt,
    )


def global_batches() -> grain.MapDataset:
    return toy_dataset(GLOBAL_BATCH * STEPS, seed=3).batch(GLOBAL_BATCH)


def flat_params(params) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(p): np.asarray(jax.device_get(x)) for p, x in leaves}


class _SigtermAt(grain.transforms.MapWithIndex):
    """Sends this process SIGTERM (a scheduler's preemption notice) while batch `at` is drawn,
    after noting the pids of the work dir's lock claims (the job holds one, process 0's)."""

    def __init__(self, at: int, workdir: str):
        self.at, self.workdir = at, workdir
        self.claim_pids: list[int] = []

    def map_with_index(self, index, element):
        if index == self.at:
            from jaxmm import workdir as workdir_lib

            self.claim_pids = [c.info["pid"] for c in workdir_lib.claims(self.workdir)]
            signal.raise_signal(signal.SIGTERM)
        return element


def main(
    port: int,
    process_id: int,
    num_processes: int,
    workdir: str,
    out: str,
    preempt_at: int | None = None,
) -> int:
    import dataclasses

    from jaxmm import distributed
    from jaxmm import train as train_lib

    distributed.maybe_initialize_distributed(f"localhost:{port}", num_processes, process_id)
    assert jax.process_count() == num_processes, jax.process_count()
    local = GLOBAL_BATCH // num_processes
    lo = process_id * local
    config = make_config(workdir)
    ds = global_batches()
    if preempt_at is not None:
        ds = toy_dataset(GLOBAL_BATCH * STEPS, seed=3).repeat().batch(GLOBAL_BATCH)
        config = dataclasses.replace(config, steps=1_000_000, log_every=1_000, ckpt_every=1_000)
    # Each host reads only its own rows of every global batch, as a real input pipeline would.
    ds = ds.map(lambda b: jax.tree.map(lambda x: x[lo : lo + local], b))
    sigterm = _SigtermAt(preempt_at - 1, workdir) if preempt_at is not None else None
    if sigterm is not None and process_id == num_processes - 1:
        ds = ds.map_with_index(sigterm)  # batch index k-1 feeds step k
    it = iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))
    from jaxmm import workdir as workdir_lib

    try:
        state = train_lib.train(config, make_method(), it)
    except train_lib.Preempted as e:
        pids = np.asarray(sigterm.claim_pids, np.int64)
        np.savez(out, preempted_step=np.int64(e.step), claim_pids=pids)
        jax.distributed.shutdown()
        return train_lib.PREEMPTED_EXIT_CODE
    except workdir_lib.WorkdirBusy as e:
        print(f"busy: {e}", flush=True)
        jax.distributed.shutdown()
        return 3
    np.savez(out, devices=np.int64(jax.device_count()), **flat_params(state.params))
    jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    port_, pid_, n_, workdir_, out_, *rest = sys.argv[1:]
    sys.exit(main(int(port_), int(pid_), int(n_), workdir_, out_, *map(int, rest)))
