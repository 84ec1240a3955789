"""Fault injection: NaN batches, corrupt checkpoints, killed writes, refused resumes, replayed rows.

Each test damages something on purpose and checks that the run either carries on exactly (the
state bitwise equal to an undisturbed run) or stops with one clear error, leaving files intact.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm import checkpoint as ckpt_lib
from jaxmm import distributed
from jaxmm import train as train_lib
from jaxmm import workdir as workdir_lib
from jaxmm.config import OptimizerConfig, TrainConfig
from jaxmm.methods.toy import ToyContrastive, toy_dataset

BATCH = 16
SMALL = {"hidden": 16, "dim": 8, "proj_dim": 8}


def _config(workdir, **kw) -> TrainConfig:
    opt = OptimizerConfig(lr=1e-2, weight_decay=1e-3, schedule="constant")
    return TrainConfig(batch_size=BATCH, progress=False, optimizer=opt, workdir=str(workdir), **kw)


def _method():
    return ToyContrastive(critic_weight=0.5, **SMALL)


def _mesh():
    return distributed.make_mesh(jax.devices()[:1])  # one device compiles fastest


def _pipeline():
    ds = toy_dataset(64, seed=1).shuffle(seed=2).repeat().batch(BATCH)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))


def _nan_batch(batch):
    bad = jax.tree.map(np.array, batch)
    first = bad["view1"]["x"]
    name = sorted(first)[0]
    first[name][0, 0] = np.nan
    return bad


def _np(tree):
    def leaf(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(jax.device_get(x))

    return jax.tree.map(leaf, tree)


def _assert_equal(a, b):
    for x, y in zip(jax.tree.leaves(_np(a)), jax.tree.leaves(_np(b)), strict=True):
        np.testing.assert_array_equal(x, y)


def _rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _snapshot(root) -> dict[str, str]:
    """Every file under `root` with the hash of its bytes (and every directory)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.join(dirpath, d)] = "dir"
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[path] = hashlib.sha1(f.read()).hexdigest()
    return out


# ------------------------------------------------------------------------------------------------
# 1. Non-finite loss or gradients.


def test_nan_batch_skips_the_update_and_keeps_params_and_optimizer_state():
    batches = [b for _, b in zip(range(2), _pipeline(), strict=False)]
    trainer = train_lib.Trainer(_method(), _config("/unused", steps=4), batches[0], mesh=_mesh())
    state, _ = trainer.train_step(trainer.init_state(), trainer.shard(batches[0]))
    before = _np(state)
    state, metrics = trainer.train_step(state, trainer.shard(_nan_batch(batches[1])))
    assert not np.isfinite(float(metrics["loss"]))
    assert float(metrics["nonfinite"]) == 1.0 and int(metrics["skipped"]) == 1
    after = _np(state)
    _assert_equal(after.params, before.params)
    _assert_equal(after.opt_state, before.opt_state)
    _assert_equal(after.inner_opt_state, before.inner_opt_state)
    assert int(after.step) == int(before.step) + 1 and int(after.skipped) == 1
    # The next good batch trains normally from the kept state.
    state, metrics = trainer.train_step(state, trainer.shard(batches[1]))
    assert float(metrics["nonfinite"]) == 0.0 and int(state.skipped) == 1
    assert np.isfinite(float(metrics["loss"]))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(_np(state.params)))


def test_consecutive_nan_batches_stop_with_one_error_and_a_finite_checkpoint(tmp_path, caplog):
    good = [b for _, b in zip(range(2), _pipeline(), strict=False)]
    stream = iter(good + [_nan_batch(good[0])] * 10)
    cfg = _config(tmp_path, steps=10, log_every=1, ckpt_every=2, max_consecutive_skips=3)
    with pytest.raises(train_lib.NonFiniteError, match=r"3 consecutive steps .*max_consecutive"):
        train_lib.train(cfg, _method(), stream, mesh=_mesh())
    assert "update skipped (1 in a row, limit 3)" in caplog.text
    ckpt_dir = tmp_path / "checkpoints"
    trainer = train_lib.Trainer(_method(), cfg, good[0])
    with ckpt_lib.Checkpointer(ckpt_dir, read_only=True) as ckpt:
        for step in ckpt.all_steps():
            state = ckpt.restore(trainer.abstract_state(), step=step)
            assert all(np.isfinite(x).all() for x in jax.tree.leaves(_np(state.params))), step
        assert ckpt.latest_step() == 5 and int(state.skipped) == 3
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["skipped"] for r in rows] == [0, 0, 1, 2, 3]


def test_max_consecutive_skips_must_be_positive():
    with pytest.raises(ValueError, match="max_consecutive_skips must be >= 1"):
        TrainConfig(max_consecutive_skips=0)


# ------------------------------------------------------------------------------------------------
# 2. Corrupt checkpoints: every file kind falls back to the newest intact step.


def _state(v):
    return {"w": jnp.full((2, 3), v), "step": jnp.int32(v), "rng": jax.random.key(3)}


def _iterator():
    ds = grain.MapDataset.source(np.arange(40)).batch(4)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))


def _garble(path):
    with open(path, "wb") as f:
        f.write(b"\x00garbage{")


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def _each(pattern, fn):
    paths = glob.glob(pattern, recursive=True)
    assert paths, pattern
    for p in paths:
        fn(p)


_CORRUPTIONS = {
    "data_file_garbled": lambda d: _each(f"{d}/state/**/d/*", _garble),
    "data_file_truncated": lambda d: _each(f"{d}/state/**/d/*", _truncate),
    "metadata_truncated": lambda d: _truncate(f"{d}/state/_METADATA"),
    "state_deleted": lambda d: shutil.rmtree(f"{d}/state"),
    "manifest_garbled": lambda d: _each(f"{d}/state/**/manifest.ocdbt", _garble),
    "iterator_json_garbled": lambda d: _each(f"{d}/data/*.json", _garble),
}


@pytest.mark.parametrize("kind", sorted(_CORRUPTIONS))
def test_corrupt_latest_checkpoint_falls_back_to_the_newest_intact(tmp_path, kind, caplog):
    it = _iterator()
    with ckpt_lib.Checkpointer(tmp_path / "ckpt") as ckpt:
        next(it)
        ckpt.save(1, _state(1.0), data_iter=it)
        next(it)
        ckpt.save(2, _state(2.0), data_iter=it)
    _CORRUPTIONS[kind](tmp_path / "ckpt" / "2")
    fresh = _iterator()
    with ckpt_lib.Checkpointer(tmp_path / "ckpt") as ckpt:
        step, state, failed = ckpt.restore_newest_intact(
            jax.eval_shape(_state, 0.0), data_iter=fresh
        )
        assert step == 1 and float(state["w"][0, 0]) == 1.0
        assert [s for s, _ in failed] == [2]
        (cause,) = [c for _, c in failed]
        assert "\n" not in cause and len(cause) < 400
        moved = ckpt.quarantine(2)
        assert ckpt.all_steps() == [1]
    assert moved == str(tmp_path / "ckpt.corrupt" / "2") and os.path.isdir(moved)
    np.testing.assert_array_equal(next(fresh), np.arange(4, 8))  # position of step 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(m.startswith("Checkpoint step 2 in ") and "unreadable" in m for m in warnings)


def test_no_intact_checkpoint_is_one_error_and_nothing_is_moved(tmp_path):
    with ckpt_lib.Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(1, _state(1.0))
    wrong = jax.eval_shape(lambda: {**_state(0.0), "extra": jnp.zeros(2)})
    before = _snapshot(tmp_path)
    with ckpt_lib.Checkpointer(tmp_path / "ckpt") as ckpt:
        with pytest.raises(ckpt_lib.CheckpointError, match=r"could be restored \(step 1: ") as e:
            ckpt.restore_newest_intact(wrong)
    assert "\n" not in str(e.value)
    assert _snapshot(tmp_path) == before


def _straight(tmp_path, steps):
    it = _pipeline()
    cfg = _config(tmp_path / "straight", steps=steps, ckpt_every=0, log_every=1)
    return train_lib.train(cfg, _method(), it, mesh=_mesh()), it


def test_resume_after_corruption_and_a_killed_write_is_bitwise_exact(tmp_path):
    straight, straight_iter = _straight(tmp_path, 6)
    run = tmp_path / "run"
    cfg = _config(run, steps=4, ckpt_every=2, log_every=1)
    train_lib.train(cfg, _method(), _pipeline(), mesh=_mesh())
    ckpt_dir = run / "checkpoints"
    # Step 4 damaged after the fact, and a write of step 6 killed half-way (orbax's tmp dir).
    _CORRUPTIONS["iterator_json_garbled"](ckpt_dir / "4")
    shutil.copytree(ckpt_dir / "2", ckpt_dir / "6.orbax-checkpoint-tmp-1234567")
    # The killed run had logged steps 5 and 6 and was cut mid-line.
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 5, "loss": 1.0}) + "\n" + '{"step": 6, "lo')

    resumed_iter = _pipeline()
    resumed = train_lib.train(
        TrainConfig(**{**cfg.__dict__, "steps": 6}), _method(), resumed_iter, mesh=_mesh()
    )
    _assert_equal(resumed, straight)  # restarted from step 2: replayed steps 3-6 exactly
    jax.tree.map(np.testing.assert_array_equal, next(resumed_iter), next(straight_iter))
    assert sorted(os.listdir(ckpt_dir)) == ["2", "4", "6"]  # tmp removed, 4 re-written
    assert os.path.isdir(str(ckpt_dir) + ".corrupt/4")
    assert [r["step"] for r in _rows(run)] == [1, 2, 3, 4, 5, 6]


# ------------------------------------------------------------------------------------------------
# 3. A refused resume writes nothing.


def test_no_resume_on_an_existing_run_refuses_and_touches_nothing(tmp_path):
    cfg = _config(tmp_path / "run", steps=2, ckpt_every=2, log_every=1)
    train_lib.train(cfg, _method(), _pipeline(), mesh=_mesh())
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match="already holds checkpoint step 2"):
        train_lib.train(
            TrainConfig(**{**cfg.__dict__, "resume": False}), _method(), _pipeline(), mesh=_mesh()
        )
    assert _snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------
# 3-4, 6. The launcher: every bad input is one line, exit 2, before data or work-dir files.


def _error(capsys) -> str:
    """The one error line on stderr (log lines of other libraries aside), and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _launch(tmp_path, *extra, config="factorcl_ssl_synthetic"):
    from launch import train as launch_train

    argv = ["--config", config, "--variant", "smoke", "--workdir", str(tmp_path / "run")]
    return launch_train.main([*argv, "--data-dir", str(tmp_path / "data"), *extra])


@pytest.mark.parametrize(
    "override, needle",
    [
        ("optimizer.lr=-1", "optimizer.lr must be a finite number > 0, got -1.0"),
        ("optimizer.lr=0", "optimizer.lr must be a finite number > 0, got 0.0"),
        ("optimizer.lr=nan", "optimizer.lr must be a finite number > 0, got nan"),
        ("train.batch_size=12", "train.batch_size 12 is not divisible by the 8 devices"),
    ],
)
def test_bad_config_fails_in_one_line_before_data_or_workdir(tmp_path, capsys, override, needle):
    assert _launch(tmp_path, "--set", override) == 2
    assert needle in _error(capsys)
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


def test_missing_manual_files_fail_in_one_line_and_create_no_directory(tmp_path, capsys):
    assert _launch(tmp_path, config="comm_mosi") == 2
    assert "needs user-supplied files: set data.manual_dir (--manual-dir)" in _error(capsys)
    (tmp_path / "manual").mkdir()
    assert _launch(tmp_path, "--manual-dir", str(tmp_path / "manual"), config="comm_mosi") == 2
    assert f"{tmp_path / 'manual' / 'mosi_data.pkl'} not found" in _error(capsys)
    assert sorted(os.listdir(tmp_path)) == ["manual"]  # no data dir, no work dir


def test_batch_larger_than_the_training_split_is_refused(tmp_path, capsys):
    # The smoke data has 204 training examples; known only once built, then checked at once.
    assert _launch(tmp_path, "--set", "train.batch_size=304") == 2
    err = _error(capsys)
    assert "train.batch_size 304 is larger than the 204 examples of split 'train'" in err
    assert not (tmp_path / "run").exists()


def test_another_experiments_workdir_is_refused_and_left_untouched(tmp_path, capsys):
    from jaxmm import configs

    run = tmp_path / "run"
    run.mkdir()
    other = configs.get_config("cmc_synthetic", "smoke")
    (run / "config.json").write_text(other.to_json() + "\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    before = _snapshot(run)
    assert _launch(tmp_path) == 2
    err = _error(capsys)
    assert f"{run} holds another experiment ({run / 'config.json'} differs: " in err
    assert "method.name: 'cmc' -> 'factorcl'" in err
    assert _snapshot(run) == before and not (tmp_path / "data").exists()


_KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from test_faults import _config, _method, _mesh, _pipeline
from jaxmm import checkpoint as ckpt_lib
from jaxmm import train as train_lib
from jaxmm import distributed
from jaxmm import workdir as workdir_lib

save = ckpt_lib.Checkpointer.save

def save_then_die(self, step, *args, **kwargs):
    out = save(self, step, *args, **kwargs)
    if step == 4:  # the async write of step 4 is in flight: kill -9 now
        os.kill(os.getpid(), signal.SIGKILL)
    return out

ckpt_lib.Checkpointer.save = save_then_die
cfg = _config({workdir!r}, steps=6, ckpt_every=2, log_every=1)
train_lib.train(cfg, _method(), _pipeline(), mesh=_mesh())
"""


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_write_then_resume_is_bitwise_exact(tmp_path):
    import subprocess
    import sys

    run = tmp_path / "run"
    code = _KILLED_RUN.format(tests=os.path.dirname(__file__), workdir=str(run))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=600)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    straight, straight_iter = _straight(tmp_path, 6)
    resumed_iter = _pipeline()
    cfg = _config(run, steps=6, ckpt_every=2, log_every=1)
    resumed = train_lib.train(cfg, _method(), resumed_iter, mesh=_mesh())
    _assert_equal(resumed, straight)
    jax.tree.map(np.testing.assert_array_equal, next(resumed_iter), next(straight_iter))
    assert not [n for n in os.listdir(run / "checkpoints") if ckpt_lib.TMP_MARKER in n]
    assert [r["step"] for r in _rows(run)] == [1, 2, 3, 4, 5, 6]


# ------------------------------------------------------------------------------------------------
# 7. Preemption: a real SIGTERM checkpoints the step reached, exits 75, and the rerun resumes
#    bitwise.

_PREEMPTED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from test_faults import _config, _method, _mesh, _pipeline
from jaxmm import train as train_lib
from jaxmm import distributed
from jaxmm import workdir as workdir_lib

cfg = _config({workdir!r}, steps=1_000_000, ckpt_every=1000, log_every=1)
try:
    train_lib.train(cfg, _method(), _pipeline(), mesh=_mesh())
except train_lib.Preempted as e:
    print("preempted at", e.step, flush=True)
    sys.exit(train_lib.PREEMPTED_EXIT_CODE)
"""


def _logged_steps(path) -> list[int]:
    """Steps of the complete rows of a metrics.jsonl being written (a torn last line skipped)."""
    if not os.path.exists(path):
        return []
    steps = []
    with open(path) as f:
        for line in f:
            if line.endswith("\n"):
                steps.append(json.loads(line)["step"])
    return steps


def test_sigterm_checkpoints_the_step_reached_and_the_rerun_is_bitwise_exact(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    code = _PREEMPTED_RUN.format(tests=os.path.dirname(__file__), workdir=str(run))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        # Signal once the run has logged a few steps (it would run for a million).
        signalled_at = 0
        while proc.poll() is None and signalled_at < 3:
            time.sleep(0.05)
            signalled_at = max(_logged_steps(run / "metrics.jsonl"), default=0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == train_lib.PREEMPTED_EXIT_CODE, err.decode()[-2000:]
    with ckpt_lib.Checkpointer(run / "checkpoints", read_only=True) as ckpt:
        saved = ckpt.latest_step()
    assert saved >= signalled_at  # at or after the step the signal found
    assert out.decode().strip() == f"preempted at {saved}"
    assert "Preempted: checkpointed step" in err.decode()
    assert workdir_lib.claims(run) == []  # the lock is released on the way out
    # The same command again (here with an end in sight) resumes from `saved` bitwise.
    steps = saved + 3
    straight, straight_iter = _straight(tmp_path, steps)
    resumed_iter = _pipeline()
    cfg = _config(run, steps=steps, ckpt_every=1000, log_every=1)
    resumed = train_lib.train(cfg, _method(), resumed_iter, mesh=_mesh())
    _assert_equal(resumed, straight)
    jax.tree.map(np.testing.assert_array_equal, next(resumed_iter), next(straight_iter))
    # The loss trajectory (every metric but the throughput) equals the uninterrupted run's.
    rows, want = _rows(run), _rows(tmp_path / "straight")
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    for r in (*rows, *want):
        r.pop("examples_per_sec")
    assert rows == want


# ------------------------------------------------------------------------------------------------
# 8. A checkpoint write that fails stops the run in one line and leaves the previous one intact.

_FULL_DISK_RUN = """
import resource, signal, sys
sys.path.insert(0, {tests!r})
from test_faults import _config, _method, _mesh, _pipeline
from jaxmm import checkpoint as ckpt_lib
from jaxmm import train as train_lib
from jaxmm import distributed
from jaxmm import workdir as workdir_lib

save = ckpt_lib.Checkpointer.save

def save_then_fill_the_disk(self, step, *args, **kwargs):
    out = save(self, step, *args, **kwargs)
    if step == 2:
        self.wait_until_finished()
        # From now on no file may grow past {limit} bytes (EFBIG, as ENOSPC would fail it).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    return out

ckpt_lib.Checkpointer.save = save_then_fill_the_disk
cfg = _config({workdir!r}, steps=6, ckpt_every=2, log_every=1000, keep=1)
try:
    train_lib.train(cfg, _method(), _pipeline(), mesh=_mesh())
except ckpt_lib.CheckpointWriteError as e:
    print(e, flush=True)
    sys.exit(1)
"""


def test_a_failing_checkpoint_write_stops_in_one_line_and_keeps_the_previous(tmp_path):
    import subprocess
    import sys

    run = tmp_path / "run"
    code = _FULL_DISK_RUN.format(tests=os.path.dirname(__file__), workdir=str(run), limit=2048)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=600)
    out = proc.stdout.decode().strip()
    assert proc.returncode == 1, proc.stderr.decode()[-3000:]
    assert "\n" not in out
    assert out.startswith(f"Could not write checkpoint {run / 'checkpoints' / '4'}: "), out
    assert "File too large" in out and out.endswith("(step 2 is intact)"), out
    # keep=1 would have deleted step 2 after a successful write of step 4: it is still there and
    # restores into the run's state.
    cfg = _config(run, steps=6)
    batch = next(_pipeline())
    trainer = train_lib.Trainer(_method(), cfg, batch, mesh=_mesh())
    with ckpt_lib.Checkpointer(run / "checkpoints", read_only=True) as ckpt:
        assert ckpt.all_steps() == [2]
        state = ckpt.restore(trainer.abstract_state())
    assert int(state.step) == 2


def test_sigterm_during_the_restore_exits_preempted_at_the_restored_step(tmp_path, monkeypatch):
    import signal

    cfg = _config(tmp_path / "run", steps=2, ckpt_every=2, log_every=1)
    train_lib.train(cfg, _method(), _pipeline(), mesh=_mesh())
    restore = ckpt_lib.Checkpointer.restore_newest_intact

    def restore_under_notice(self, *args, **kwargs):
        signal.raise_signal(signal.SIGTERM)  # the notice arrives while the run is restoring
        return restore(self, *args, **kwargs)

    monkeypatch.setattr(ckpt_lib.Checkpointer, "restore_newest_intact", restore_under_notice)
    sigterm_before = signal.getsignal(signal.SIGTERM)
    longer = TrainConfig(**{**cfg.__dict__, "steps": 6})
    with pytest.raises(train_lib.Preempted, match="at step 2; checkpoint saved in") as e:
        train_lib.train(longer, _method(), _pipeline(), mesh=_mesh())
    assert e.value.step == 2 and signal.getsignal(signal.SIGTERM) is sigterm_before
    with ckpt_lib.Checkpointer(tmp_path / "run" / "checkpoints", read_only=True) as ckpt:
        assert ckpt.all_steps() == [2]  # no step taken, nothing new to save
    assert [r["step"] for r in _rows(tmp_path / "run")] == [1, 2]
