"""One writer per work dir (the lock), and the project's own work-dir files on a gs:// stand-in."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys

import pytest
from fake_gcs import fake_gcs

from jaxmm import workdir as workdir_lib
from jaxmm.experiments import training


def _snapshot(root) -> dict[str, str]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.join(dirpath, d)] = "dir"
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                out[os.path.join(dirpath, name)] = hashlib.sha1(f.read()).hexdigest()
    return out


def _claim(workdir, token, **info):
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, f"lock.{token}.json")
    with open(path, "w") as f:
        json.dump(info, f)
    return path


def _sleeper():
    """A live process that is not this one (stdin closed -> it exits)."""
    code = "import sys; sys.stdin.read()"
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)


def _iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_live_holder_is_refused_untouched_then_its_dead_lock_is_taken_over(tmp_path, caplog):
    run = tmp_path / "run"
    holder = _sleeper()
    try:
        since = _iso(dt.datetime.now(dt.UTC))
        path = _claim(
            run,
            "abc",
            host="node-a",
            pid=holder.pid,
            since=since,
            heartbeat=since,
            node=workdir_lib.node_id(),
            pid_start=workdir_lib._pid_start(holder.pid),
        )
        (run / "metrics.jsonl").write_text('{"step": 1}\n')
        before = _snapshot(tmp_path)
        for attempt in (workdir_lib.check_free, workdir_lib.acquire):
            with pytest.raises(workdir_lib.WorkdirBusy) as e:
                attempt(run)
            msg = str(e.value)
            assert "\n" not in msg
            assert f"host node-a, pid {holder.pid}, since {since}" in msg and path in msg
        assert _snapshot(tmp_path) == before
    finally:
        holder.stdin.close()
        holder.wait()
    # The holder is gone: its claim is taken over, with one warning naming it.
    lock = workdir_lib.acquire(run)
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1 and f"pid {holder.pid}" in warnings[0], warnings
        assert "Taking over the lock" in warnings[0] and "no longer runs" in warnings[0]
        assert not os.path.exists(path)
        (claim,) = workdir_lib.claims(run)
        assert claim.info["pid"] == os.getpid() and claim.path == lock.path
    finally:
        lock.release()
    assert workdir_lib.claims(run) == []
    assert (run / "metrics.jsonl").read_text() == '{"step": 1}\n'  # only the lock was touched


def test_a_claim_from_another_machine_lives_until_its_heartbeat_is_stale(tmp_path, caplog):
    now = dt.datetime.now(dt.UTC)
    fresh = now - dt.timedelta(seconds=workdir_lib.HEARTBEAT_S)
    stale = now - dt.timedelta(seconds=2 * workdir_lib.STALE_AFTER_S)
    info = {"host": "node-b", "pid": 1, "since": _iso(stale), "node": "node-b/x/y"}
    _claim(tmp_path, "b", **info, heartbeat=_iso(fresh))
    with pytest.raises(workdir_lib.WorkdirBusy, match="host node-b, pid 1, since .* heartbeat"):
        workdir_lib.acquire(tmp_path)
    _claim(tmp_path, "b", **info, heartbeat=_iso(stale))
    workdir_lib.acquire(tmp_path).release()
    assert "no heartbeat for" in caplog.text and workdir_lib.claims(tmp_path) == []


_CONTENDER = """
import sys
from jaxmm import workdir
print("ready", flush=True)
sys.stdin.readline()  # all start together
try:
    lock = workdir.acquire(sys.argv[1])
except workdir.WorkdirBusy as e:
    print("busy", e, flush=True)
    sys.exit(3)
print("held", flush=True)
sys.stdin.readline()
lock.release()
"""


def test_simultaneous_starts_one_holds_the_others_are_refused(tmp_path):
    run = str(tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONTENDER, run],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        first = {p.pid: p.stdout.readline().strip() for p in procs}
        (winner,) = [pid for pid, line in first.items() if line == "held"]
        (claim,) = workdir_lib.claims(run)
        assert claim.info["pid"] == winner
        for pid, line in first.items():
            if pid != winner:
                assert line.startswith("busy ") and f"pid {winner}, since " in line, line
    finally:
        for p in procs:
            if p.poll() is None:
                p.stdin.close()
            p.wait(timeout=60)
    assert sorted(p.returncode for p in procs) == [0, 3, 3, 3]
    assert workdir_lib.claims(run) == []  # released by the winner


def test_launch_train_on_a_live_work_dir_exits_3_in_one_line_touching_nothing(tmp_path, capsys):
    from launch import train as launch_train

    run = tmp_path / "run"
    holder = _sleeper()
    try:
        since = _iso(dt.datetime.now(dt.UTC))
        info = {"host": "h", "pid": holder.pid, "since": since, "heartbeat": since}
        _claim(run, "c", **info, node=workdir_lib.node_id())
        before = _snapshot(tmp_path)
        argv = ["--config", "factorcl_ssl_synthetic", "--variant", "smoke"]
        argv += ["--workdir", str(run), "--data-dir", str(tmp_path / "data")]
        assert launch_train.main(argv) == 3
    finally:
        holder.stdin.close()
        holder.wait()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err
    assert f"{run} is in use by another run (host h, pid {holder.pid}, since {since}" in lines[0]
    assert _snapshot(tmp_path) == before  # no data dir, no config.json, the claim as it was


# ------------------------------------------------------------------------------------------------
# gs:// work dirs: everything the project itself reads and writes, through epath.


def test_remote_workdir_files_lock_metrics_config():
    from jaxmm import configs

    with fake_gcs() as fs:
        run = workdir_lib.path("gs://bucket/runs/r1")
        assert os.fspath(run) == "gs://bucket/runs/r1"
        # The lock: a claim object naming this process, refused to a live other holder.
        lock = workdir_lib.acquire(run)
        (claim,) = workdir_lib.claims(run)
        assert claim.info["pid"] == os.getpid() and os.fspath(claim.path) in fs.files()
        lock.release()
        assert not fs.files()
        other = {"host": "node-c", "pid": 7, "since": "2026-01-01T00:00:00Z", "node": "c/x/y"}
        other["heartbeat"] = _iso(dt.datetime.now(dt.UTC))
        (run / "lock.other.json").write_text(json.dumps(other))
        with pytest.raises(workdir_lib.WorkdirBusy, match=r"gs://bucket/runs/r1 is in use .*c"):
            workdir_lib.acquire(run)
        (run / "lock.other.json").unlink()

        # metrics.jsonl: no append on an object store; rows land at each flush, and a resumed
        # run keeps the rows up to its restored step (a torn last line dropped).
        metrics = workdir_lib.MetricsLog(run / "metrics.jsonl", 0)
        for step in (1, 2, 3):
            metrics.write({"step": step, "loss": 1.0 / step})
        metrics.flush()
        metrics.write({"step": 4, "loss": 0.25})
        metrics.close()
        text = fs.files()["gs://bucket/runs/r1/metrics.jsonl"].decode()
        assert [json.loads(x)["step"] for x in text.splitlines()] == [1, 2, 3, 4]
        (run / "metrics.jsonl").write_text(text + '{"step": 5, "lo')
        workdir_lib.MetricsLog(run / "metrics.jsonl", 2).close()
        kept = (run / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in kept] == [1, 2]

        # config.json: written whole, read back by the resume decision, another experiment's
        # refused with the store left as it was.
        cfg = configs.get_config("factorcl_ssl_synthetic", "smoke")
        workdir_lib.write_text(run / "config.json", cfg.to_json() + "\n")
        saved, where = training.saved_config("gs://bucket/runs/r1")
        assert saved == cfg.to_dict() and where == "gs://bucket/runs/r1/config.json"
        other_cfg = configs.get_config("cmc_synthetic", "smoke")
        from jaxmm import experiment as ex

        other_cfg = ex.override(other_cfg, ["train.workdir=gs://bucket/runs/r1"])
        before = fs.files()
        with pytest.raises(ValueError, match=r"gs://bucket/runs/r1 holds another experiment"):
            training.check_workdir(other_cfg)
        assert fs.files() == before
        # A run's checkpoints dir is found under the remote work dir, as the probe looks for it.
        from jaxmm import probe_checkpoint as pc

        assert pc.checkpoint_dir("gs://bucket/runs/r1") == "gs://bucket/runs/r1"
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "keep").write_text("")
        assert pc.checkpoint_dir("gs://bucket/runs/r1") == "gs://bucket/runs/r1/checkpoints"
        workdir_lib.write_bytes(run / "emb.npz", b"\x00\x01")
        assert fs.files()["gs://bucket/runs/r1/emb.npz"] == b"\x00\x01"


def test_the_holder_refreshes_its_heartbeat(tmp_path):
    import time

    lock = workdir_lib.acquire(tmp_path, heartbeat_s=0.1)
    try:
        (claim,) = workdir_lib.claims(tmp_path)
        first = claim.info["heartbeat"]
        # ISO seconds: the rewritten claim differs once a second has turned.
        deadline = time.monotonic() + 60
        while workdir_lib.claims(tmp_path)[0].info["heartbeat"] == first:
            assert time.monotonic() < deadline, "the heartbeat was never rewritten"
            time.sleep(0.1)
        (claim,) = workdir_lib.claims(tmp_path)  # rewritten whole: still one readable claim
        assert claim.info["since"] == first and claim.info["pid"] == os.getpid()
    finally:
        lock.release()
    assert workdir_lib.claims(tmp_path) == []
