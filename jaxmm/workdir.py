"""Work directories on any file system orbax accepts, and one writer per work directory.

Paths. Every file the project reads or writes in a work dir (``config.json``, ``metrics.jsonl``,
the lock, probe and embed outputs) goes through `etils.epath`, as orbax's own files do, so a work
dir may be local or ``gs://bucket/run`` (``s3://`` ...). Object stores have no append and no
atomic rename: `write_text` writes a local file through a temporary file and `os.replace`, a
remote one in one object write (atomic there); `MetricsLog` appends locally and rewrites the
whole file on a remote store (at each `flush`).

The lock. A run holds its work dir through a claim file ``lock.<id>.json`` in it, naming the
holder::

    {"host": "node-3", "pid": 4242, "since": "2026-12-07T23:10:02Z", "heartbeat": "...", ...}

`acquire` first reads the claims without writing anything: a live holder is refused in one line
(`WorkdirBusy`, naming host, pid and since when), a dead one is removed with a one-line warning.
It then writes its own claim and lists the claims again; it holds the lock only if its claim is
the only live one. On a store that lists what was written before (local disks; GCS and S3 are
strongly consistent) at most one of several simultaneous starts sees only its own claim; the
others withdraw theirs, wait a random moment and look again, and then find the winner. No
exclusive create is needed (epath has none, object stores offer it only through their own APIs).

Live or dead: a claim from this machine (same host name, boot and PID namespace) is dead when
its process is gone (or its PID now belongs to a later process); a claim from another machine is
dead when its heartbeat, rewritten every `HEARTBEAT_S` seconds by a daemon thread of the holder,
is older than `STALE_AFTER_S` (clocks of the hosts are assumed to agree to well under that). A
run killed with ``kill -9`` on another host therefore blocks its work dir for up to
`STALE_AFTER_S`; the refusal says how old the heartbeat is.

Multi-host runs take the lock once: `hold` lets process 0 acquire it and tells every process the
outcome (`jax.experimental.multihost_utils.broadcast_one_to_all`), so all processes refuse
together or run together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from etils import epath

log = logging.getLogger(__name__)

LOCK_PREFIX, LOCK_SUFFIX = "lock.", ".json"
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0
_ATTEMPTS = 6  # simultaneous starts: withdraw, wait a random moment, look again


class WorkdirBusy(RuntimeError):
    """The work dir is held by another live run (the message names it, in one line)."""


# ------------------------------------------------------------------------------------------------
# Paths.


def path(p: str | os.PathLike) -> epath.Path:
    """`p` as an `epath.Path`: a URI (``gs://...``) as given, a local path made absolute."""
    out = epath.Path(p)
    return out if is_remote(out) else epath.Path(os.path.abspath(os.path.expanduser(os.fspath(p))))


def is_remote(p: str | os.PathLike) -> bool:
    """Whether `p` is a URI of an object store (``gs://``, ``s3://``, ...), not a local path."""
    return "://" in os.fspath(p)


def write_text(p: str | os.PathLike, text: str) -> None:
    """Writes `text` whole: a reader sees the old content or the new one, never a part.

    Local: a temporary file next to `p`, then `os.replace`. Remote: one object write.
    """
    write_bytes(p, text.encode("utf-8"))


def write_bytes(p: str | os.PathLike, data: bytes) -> None:
    """`write_text` for bytes (an .npz, a .png)."""
    p = epath.Path(p)
    if is_remote(p):
        p.write_bytes(data)
        return
    tmp = p.parent / f".{p.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_bytes(data)
        os.replace(os.fspath(tmp), os.fspath(p))
    finally:
        if tmp.exists():
            tmp.unlink()


class MetricsLog:
    """``metrics.jsonl``: one JSON line per logged step, exactly one per step after resumes.

    Opening it keeps the rows up to `start_step` (the restored step; later rows are replays of
    steps the resumed run logs again) and drops a torn last line. Locally each row is appended
    and flushed; on an object store (no append) rows are kept and the whole file is rewritten by
    `flush` (the trainer flushes at each checkpoint and at the end) and `close`.
    """

    def __init__(self, p: str | os.PathLike, start_step: int):
        self.path = epath.Path(p)
        self._remote = is_remote(self.path)
        self._rows = _kept_rows(self.path, start_step)
        self._dirty = False
        self._file = None
        if not self._remote:
            self._file = open(os.fspath(self.path), "a")  # noqa: SIM115 (closed by close())

    def write(self, row: dict[str, Any]) -> None:
        line = json.dumps(row)
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()
        else:
            self._rows.append(line)
            self._dirty = True

    def flush(self) -> None:
        if self._remote and self._dirty:
            write_text(self.path, "".join(line + "\n" for line in self._rows))
            self._dirty = False

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


def _kept_rows(p: epath.Path, last_step: int) -> list[str]:
    """The rows of `p` up to `last_step`; rewrites `p` when some were dropped."""
    if not p.exists():
        return []
    lines = p.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= last_step:
            kept.append(line)
    if len(kept) != len(lines):
        write_text(p, "".join(line + "\n" for line in kept))
        log.info("%s: dropped %d row(s) after step %d", p.name, len(lines) - len(kept), last_step)
    return kept


# ------------------------------------------------------------------------------------------------
# The lock.


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(s: Any) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        return None


def _read_first_line(p: str) -> str:
    try:
        with open(p) as f:
            return f.readline().strip()
    except OSError:
        return ""


def node_id() -> str:
    """This machine and PID namespace: host name, boot id, PID-namespace inode.

    Two containers may share a host name; their PIDs are only comparable within one namespace.
    """
    boot = _read_first_line("/proc/sys/kernel/random/boot_id")[:8]
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    return f"{socket.gethostname()}/{boot}/{ns}"


def _pid_start(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot, /proc/PID/stat field 22); None if unknown."""
    stat = _read_first_line(f"/proc/{pid}/stat")
    if not stat:
        return None
    return stat.rpartition(")")[2].split()[19]  # fields after the command name start at 3


def _pid_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now_started = _pid_start(pid)
    return started is None or now_started is None or now_started == started


@dataclasses.dataclass
class Claim:
    """One ``lock.<id>.json``: who holds (or tries to hold) the work dir."""

    path: epath.Path
    info: dict[str, Any]  # empty when the file is unreadable
    mtime: float | None = None

    @property
    def token(self) -> str:
        return self.path.name[len(LOCK_PREFIX) : -len(LOCK_SUFFIX)]

    def heartbeat(self) -> dt.datetime | None:
        t = _parse_iso(self.info.get("heartbeat"))
        if t is None and self.mtime is not None:
            t = dt.datetime.fromtimestamp(self.mtime, dt.UTC)
        return t

    def dead_because(self, stale_after_s: float) -> str | None:
        """Why this claim's run is gone, or None if it may be alive."""
        if self.info.get("node") == node_id() and isinstance(self.info.get("pid"), int):
            if not _pid_alive(self.info["pid"], self.info.get("pid_start")):
                return f"process {self.info['pid']} no longer runs on this machine"
            return None
        beat = self.heartbeat()
        if beat is None:
            return None
        age = (_now() - beat).total_seconds()
        if age > stale_after_s:
            return f"no heartbeat for {age:.0f} s (stale after {stale_after_s:.0f} s)"
        return None

    def describe(self) -> str:
        if not self.info:
            return f"an unreadable claim {self.path}"
        beat = self.heartbeat()
        age = f", last heartbeat {(_now() - beat).total_seconds():.0f} s ago" if beat else ""
        return (
            f"host {self.info.get('host')}, pid {self.info.get('pid')}, "
            f"since {self.info.get('since')}{age}"
        )


def claims(workdir: str | os.PathLike) -> list[Claim]:
    """The claim files of `workdir` (none if it does not exist), oldest heartbeat first."""
    workdir = epath.Path(workdir)
    if not workdir.is_dir():
        return []
    out = []
    for p in workdir.iterdir():
        if not (p.name.startswith(LOCK_PREFIX) and p.name.endswith(LOCK_SUFFIX)):
            continue
        try:
            info = json.loads(p.read_text())
            info = info if isinstance(info, dict) else {}
        except FileNotFoundError:
            continue  # withdrawn or released while we listed
        except (OSError, ValueError):
            info = {}
        mtime = None
        if not info:
            with contextlib.suppress(OSError):
                mtime = p.stat().mtime
        out.append(Claim(p, info, mtime))
    return out


def _busy(workdir: epath.Path, holder: Claim) -> WorkdirBusy:
    return WorkdirBusy(
        f"{workdir} is in use by another run ({holder.describe()}; lock file {holder.path}); "
        "wait for it to end or stop it; a dead run's lock is taken over automatically"
    )


def check_free(workdir: str | os.PathLike, *, stale_after_s: float = STALE_AFTER_S) -> None:
    """Raises `WorkdirBusy` if a live run holds `workdir`; reads only, writes nothing."""
    workdir = path(workdir)
    for c in claims(workdir):
        if c.token not in _HELD_TOKENS and c.dead_because(stale_after_s) is None:
            raise _busy(workdir, c)


class Lock:
    """A held work-dir lock (see the module docstring); `release` gives it back."""

    def __init__(self, workdir: epath.Path, heartbeat_s: float):
        self.workdir = workdir
        self.token = uuid.uuid4().hex[:16]
        self.path = workdir / f"{LOCK_PREFIX}{self.token}{LOCK_SUFFIX}"
        now = _iso(_now())
        self.info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": now,
            "heartbeat": now,
            "node": node_id(),
            "pid_start": _pid_start(os.getpid()),
        }
        self._heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        write_text(self.path, json.dumps(self.info) + "\n")

    def _beat(self) -> None:
        warned = False
        while not self._stop.wait(self._heartbeat_s):
            self.info["heartbeat"] = _iso(_now())
            try:
                self._write()
            except OSError as e:
                if not warned:
                    log.warning("Could not refresh the work dir lock %s: %s", self.path, e)
                    warned = True

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="jaxmm-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stops the heartbeat and removes the claim (if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        _HELD_TOKENS.discard(self.token)
        try:
            self.path.unlink()
        except FileNotFoundError:
            log.warning("The work dir lock %s was removed while this run held it", self.path)


_HELD_TOKENS: set[str] = set()


def acquire(
    workdir: str | os.PathLike,
    *,
    stale_after_s: float = STALE_AFTER_S,
    heartbeat_s: float = HEARTBEAT_S,
) -> Lock:
    """Takes the lock of `workdir` for this process (see the module docstring).

    Creates `workdir` if needed (only once no live holder is found).

    Raises:
      WorkdirBusy: a live run holds it (nothing is written), or several starts kept colliding.
    """
    workdir = path(workdir)
    rng = random.Random(uuid.uuid4().int)
    for attempt in range(_ATTEMPTS):
        dead = []
        for c in claims(workdir):
            why = c.dead_because(stale_after_s)
            if why is None:
                raise _busy(workdir, c)
            dead.append((c, why))
        for c, why in dead:
            log.warning(
                "Taking over the lock of %s from a dead run (%s): %s", workdir, c.describe(), why
            )
            with contextlib.suppress(FileNotFoundError):
                c.path.unlink()
        lock = Lock(workdir, heartbeat_s)
        workdir.mkdir(parents=True, exist_ok=True)
        lock._write()
        others = [c for c in claims(workdir) if c.token != lock.token]
        if not [c for c in others if c.dead_because(stale_after_s) is None]:
            _HELD_TOKENS.add(lock.token)
            lock._start_heartbeat()
            return lock
        lock.path.unlink()  # another start wrote its claim meanwhile: withdraw, look again
        time.sleep(rng.uniform(0.05, 0.3) * (attempt + 1))
    raise WorkdirBusy(
        f"{workdir}: {_ATTEMPTS} attempts to take its lock collided with other runs starting "
        "at the same time; start one run per work dir"
    )


_HELD: dict[str, tuple[Lock | None, int]] = {}


@contextlib.contextmanager
def hold(workdir: str | os.PathLike, **kwargs: Any) -> Iterator[None]:
    """Holds the lock of `workdir` for the block; re-entrant within a process.

    With several JAX processes, process 0 acquires it and all processes learn the outcome, so
    every process raises `WorkdirBusy` or none does (call it on every process).
    """
    key = os.fspath(path(workdir))
    if key in _HELD:
        lock, depth = _HELD[key]
        _HELD[key] = (lock, depth + 1)
        try:
            yield
        finally:
            lock, depth = _HELD[key]
            _HELD[key] = (lock, depth - 1)
        return
    import jax

    lock, error = None, None
    if jax.process_index() == 0:
        try:
            lock = acquire(key, **kwargs)
        except Exception as e:  # busy, or the store refused: every process must hear of it
            error = e
    if jax.process_count() > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        busy = isinstance(error, WorkdirBusy)
        code = 0 if error is None else (1 if busy else 2)
        code = int(multihost_utils.broadcast_one_to_all(np.int32(code)))
        if code == 1 and error is None:
            live = [c.describe() for c in claims(key)]
            error = WorkdirBusy(
                f"{key} is in use by another run (process 0 could not take its lock; "
                f"claims: {'; '.join(live) or 'none left'})"
            )
        elif code == 2 and error is None:
            error = OSError(f"process 0 could not take the lock of {key} (its error says why)")
    if error is not None:
        raise error
    _HELD[key] = (lock, 1)
    try:
        yield
    finally:
        _HELD.pop(key)
        if lock is not None:
            lock.release()
