"""Two real processes joined by jax.distributed on CPU train like one process on one batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import multihost_worker as worker
import numpy as np
import pytest

from jaxmm import checkpoint as ckpt_lib
from jaxmm import distributed
from jaxmm import train as train_lib
from jaxmm import workdir as workdir_lib

TIMEOUT_S = 240


def _gloo_missing_reason() -> str | None:
    if "jax_cpu_collectives_implementation" not in jax.config.values:
        return f"jax {jax.__version__} has no jax_cpu_collectives_implementation option"
    try:
        from jax._src.lib import xla_client
    except ImportError as e:
        return f"cannot inspect jaxlib for gloo: {e}"
    if not hasattr(xla_client._xla, "make_gloo_tcp_collectives"):
        return f"jaxlib {jax.__version__} was built without gloo CPU collectives"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run_workers(tmp_path, n_proc, devices_each, *extra, pids=None):
    """Starts the processes of one job; returns their outputs' paths, exit codes and logs
    (and appends their pids to `pids`)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices_each}"
    env["JAX_PLATFORMS"] = "cpu"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([repo, env.get("PYTHONPATH", "")])
    port = _free_port()
    outs = [tmp_path / f"params_{i}.npz" for i in range(n_proc)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                worker.__file__,
                str(port),
                str(i),
                str(n_proc),
                str(tmp_path / "workdir"),
                str(outs[i]),
                *map(str, extra),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n_proc)
    ]
    if pids is not None:
        pids += [p.pid for p in procs]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return outs, [p.returncode for p in procs], logs


@pytest.mark.skipif(_gloo_missing_reason() is not None, reason=str(_gloo_missing_reason()))
def test_two_processes_match_one_process_on_the_global_batch(tmp_path):
    n_proc, devices_each = 2, 2
    outs, codes, logs = _run_workers(tmp_path, n_proc, devices_each)
    for i, (code, log) in enumerate(zip(codes, logs, strict=True)):
        assert code == 0, f"process {i} failed:\n{log[-4000:]}"

    # Reference: one process, one device, the whole global batch.
    mesh = distributed.make_mesh(jax.devices()[:1])
    batches = worker.global_batches()
    cfg = worker.make_config(str(tmp_path / "unused"))
    trainer = train_lib.Trainer(worker.make_method(), cfg, batches[0], mesh=mesh)
    state = trainer.init_state()
    for i in range(worker.STEPS):
        state, _ = trainer.train_step(state, trainer.shard(batches[i]))
    want = worker.flat_params(state.params)

    for i, out in enumerate(outs):
        got = dict(np.load(out))
        assert int(got.pop("devices")) == n_proc * devices_each
        assert set(got) == set(want)
        for k in want:
            np.testing.assert_allclose(
                got[k], want[k], rtol=1e-5, atol=1e-7, err_msg=f"process {i} {k}"
            )
    # Both hosts wrote their data-iterator position into the shared checkpoint.
    data_dir = tmp_path / "workdir" / "checkpoints" / str(worker.STEPS) / "data"
    assert {f"process_{i}-of-{n_proc}.json" for i in range(n_proc)} <= set(os.listdir(data_dir))
    assert workdir_lib.claims(tmp_path / "workdir") == []  # process 0's lock, released


@pytest.mark.skipif(_gloo_missing_reason() is not None, reason=str(_gloo_missing_reason()))
def test_sigterm_to_one_process_makes_both_checkpoint_the_same_step(tmp_path):
    signal_at, pids = 5, []
    outs, codes, logs = _run_workers(tmp_path, 2, 1, signal_at, pids=pids)
    for i, (code, log) in enumerate(zip(codes, logs, strict=True)):
        assert code == train_lib.PREEMPTED_EXIT_CODE, f"process {i}:\n{log[-4000:]}"
    steps = {int(np.load(out)["preempted_step"]) for out in outs}
    (step,) = steps  # one agreed step for both
    assert step >= signal_at
    with ckpt_lib.Checkpointer(tmp_path / "workdir" / "checkpoints", read_only=True) as ckpt:
        assert ckpt.latest_step() == step
    data_dir = tmp_path / "workdir" / "checkpoints" / str(step) / "data"
    assert {f"process_{i}-of-2.json" for i in range(2)} <= set(os.listdir(data_dir))
    # While it ran, the job held the work dir once, through process 0; released on the way out.
    assert list(np.load(outs[1])["claim_pids"]) == [pids[0]]
    assert workdir_lib.claims(tmp_path / "workdir") == []


@pytest.mark.skipif(_gloo_missing_reason() is not None, reason=str(_gloo_missing_reason()))
def test_two_processes_on_a_live_work_dir_both_refuse_and_write_nothing(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        run = tmp_path / "workdir"
        run.mkdir()
        claim = run / "lock.held.json"
        info = {"host": "h", "pid": holder.pid, "since": "2026-12-07T23:00:00Z"}
        info.update(heartbeat=info["since"], node=workdir_lib.node_id())
        claim.write_text(json.dumps(info))
        outs, codes, logs = _run_workers(tmp_path, 2, 1)
    finally:
        holder.stdin.close()
        holder.wait()
    assert codes == [3, 3], logs
    busy = [line for line in logs[0].splitlines() if line.startswith("busy: ")]
    assert len(busy) == 1 and f"is in use by another run (host h, pid {holder.pid}" in busy[0]
    assert any(line.startswith("busy: ") for line in logs[1].splitlines())
    assert os.listdir(run) == ["lock.held.json"]  # no checkpoint, no metrics, the claim as it was
    assert json.loads(claim.read_text()) == info
