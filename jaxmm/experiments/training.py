"""One experiment run from a registered config: validation, the resume decision, training.

What `launch.train` (and the demo, the FactorCL reproduction, the tests) call: `prepare(cfg)`
then `run(cfg)`.

Faults and resume. Every check runs before any data is built and before anything is written in
the work dir: the config (types, optimizer values such as lr > 0, batch vs processes and devices),
user files of a dataset that needs them (`--manual-dir`), batch vs training examples (as soon as
the split size is known), then the resume decision:

* the work dir holds another experiment (its `config.json`, or its checkpoint's config, differs
  in a field outside `RESUMABLE`): refused in one line, its files untouched;
* it holds a checkpoint and `--no-resume`: refused in one line, nothing rewritten;
* a field of `RESUMABLE` changed (e.g. train.steps): resumed, with one warning listing the
  changes; a changed `train.ckpt_every` is accepted and logged (checkpoints follow the new
  interval from the restored step on; the steps already saved stay).

One writer: a work dir held by another live run (`jaxmm.workdir`) is refused in one line naming
the holder (host, pid, since when), in `prepare` already for a single process and, for any number
of processes, in `run` before `config.json` is written; a dead run's lock is taken over with a
warning. Work dirs may be local or a URI orbax accepts (``gs://...``): every file here is read and
written through `etils.epath`.

Errors are one line on stderr (exit codes in `launch.train`: 2 for bad input: config, files, work
dir, checkpoints; 3 for a work dir in use; 1 for a run that fails, e.g. non-finite losses or a
checkpoint write; 75 when preempted, after a checkpoint; 130 on Ctrl-C, after a checkpoint);
`--verbose` adds the traceback.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from jaxmm import checkpoint as ckpt_lib
from jaxmm import distributed, experiment, validation
from jaxmm import train as train_lib
from jaxmm import workdir as workdir_lib
from jaxmm.data import inputs

__all__ = ["RESUMABLE", "check_workdir", "config_changes", "prepare", "resumable", "run"]

log = logging.getLogger("jaxmm.experiments.training")


def config_changes(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """`"dotted.key: old -> new"` for every leaf that differs between two config dicts."""
    keys = sorted(set(saved) | set(current))
    out = []
    for k in keys:
        a, b = saved.get(k), current.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


# Fields that may change between a run and its resumption (prefixes of dotted keys). A change
# anywhere else (data, model, method, batch, seeds, ...) makes the work dir another experiment's.
RESUMABLE = (
    "train.steps",
    "train.log_every",
    "train.ckpt_every",
    "train.keep",
    "train.workdir",
    "train.resume",
    "train.progress",
    "train.max_consecutive_skips",
    "data.data_dir",
    "data.manual_dir",
    "data.num_workers",
    "data.eval_batch_size",
    "data.eval_split",
    "data.val_split",
    "optimizer.",
    "distributed.",
    "epochs",
)


def resumable(change: str) -> bool:
    """Whether a `config_changes` line touches only fields of `RESUMABLE`."""
    key = change.partition(":")[0]
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def prepare(cfg: experiment.ExperimentConfig) -> None:
    """Joins the multi-process job (before anything touches devices), then validates `cfg`.

    Also the checks that need devices or files (`validation.check_run`) and the resume decision
    (`check_workdir`); nothing is built or written. Raises one ValueError.
    """
    import jax

    distributed.maybe_initialize_distributed(**dataclasses.asdict(cfg.distributed))
    validation.validate(cfg)
    validation.check_run(cfg, num_devices=jax.device_count())
    check_workdir(cfg)


def saved_config(workdir: str | os.PathLike) -> tuple[dict | None, str]:
    """The config a work dir was made with: config.json, else its checkpoint's; (None, "")."""
    workdir = workdir_lib.path(workdir)
    path = workdir / "config.json"
    if path.is_file():
        try:
            return json.loads(path.read_text()), os.fspath(path)
        except (OSError, ValueError) as e:
            raise ValueError(
                f"{path} is unreadable ({ckpt_lib.one_line(e)}); the work dir is not a run of "
                "this launcher, use a new --workdir"
            ) from None
    ckpt_dir = workdir / "checkpoints"
    if ckpt_dir.is_dir():
        try:
            return ckpt_lib.load_config(ckpt_dir), os.fspath(ckpt_dir)
        except ckpt_lib.CheckpointError:
            pass  # no step or a damaged one: the trainer falls back or starts fresh
    return None, ""


def check_workdir(cfg: experiment.ExperimentConfig) -> None:
    """The resume decision, before anything is written (see the module docstring).

    Raises:
      ValueError: another experiment's work dir, or a checkpoint while `train.resume` is off.
      jaxmm.workdir.WorkdirBusy: a single-process run finds a live run holding the work dir
        (with several processes `run` decides, on every process at once).
    """
    import jax

    workdir = workdir_lib.path(cfg.train.workdir)
    if jax.process_count() == 1:
        workdir_lib.check_free(workdir)
    saved, where = saved_config(workdir)
    if saved is not None:
        changes = config_changes(saved, cfg.to_dict())
        # The identifying fields first: they say at a glance whose run it is.
        first = ("name:", "method.name:", "data.builder:", "data.builder_config:")
        foreign = sorted(
            (c for c in changes if not resumable(c)), key=lambda c: not c.startswith(first)
        )
        if foreign:
            shown = "; ".join(foreign[:3]) + (
                f"; ... ({len(foreign)} in all)" if len(foreign) > 3 else ""
            )
            raise ValueError(
                f"{workdir} holds another experiment ({where} differs: {shown}); use a new "
                "--workdir (its files are left as they are)"
            )
    ckpt_dir = workdir / "checkpoints"
    latest = None
    if ckpt_dir.is_dir():
        with ckpt_lib.Checkpointer(ckpt_dir, read_only=True) as ckpt:
            latest = ckpt.latest_step()
    if latest is not None and not cfg.train.resume:
        raise ValueError(
            f"{workdir} already holds checkpoint step {latest}; --no-resume refuses to overwrite "
            "it: resume, or use a new --workdir"
        )
    if saved is not None and latest is not None and changes:
        log.warning(
            "Resuming %s with a config that differs from the checkpoint's: %s",
            workdir,
            "; ".join(changes),
        )
        old = saved.get("train", {}).get("ckpt_every")
        if old is not None and old != cfg.train.ckpt_every:
            log.info(
                "train.ckpt_every changed %s -> %s: checkpoints follow the new interval from the "
                "restored step on",
                old,
                cfg.train.ckpt_every,
            )


def run(cfg: experiment.ExperimentConfig):
    """Builds data and method from a `prepare`d config and trains; returns the final state."""
    import jax

    it, _ = inputs.build_train_iterator(
        cfg, process_index=jax.process_index(), process_count=jax.process_count()
    )
    n_train = inputs.num_train_examples(cfg)
    validation.check_batch_vs_examples(cfg, n_train)  # the first time the split size is known
    cfg = experiment.resolve_steps(cfg, n_train)
    workdir = workdir_lib.path(cfg.train.workdir)
    # The lock before config.json: a second run on a live work dir writes nothing.
    with workdir_lib.hold(workdir):
        if jax.process_index() == 0:
            workdir_lib.write_text(workdir / "config.json", cfg.to_json() + "\n")
        log.info(
            "Experiment %s: method %s, %d steps at global batch %d, work dir %s",
            cfg.name,
            cfg.method.name,
            cfg.train.steps,
            cfg.train.batch_size,
            workdir,
        )
        return train_lib.train(
            experiment.train_config(cfg),
            experiment.build_method(cfg),
            it,
            experiment_config=cfg.to_dict(),
            batch_transform=inputs.device_augmentation(cfg),
        )
