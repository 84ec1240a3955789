"""Train one registered experiment (launch/configs) with the jaxmm trainer.

python -m launch.train --list
python -m launch.train --config comm_trifeature --variant smoke --workdir /tmp/run
python -m launch.train --config comm_mosi --set optimizer.lr=3e-4 --set train.batch_size=128 \
    --manual-dir ~/multibench
python -m launch.train --config comm_trifeature --coordinator host0:1234 --num-processes 2 \
    --process-id 0          # on each host, with its own --process-id

The config is validated before anything is computed (unknown override keys, wrong types, a
modality the model names but the data lacks, ... are one error). The dataset is built on demand.
The work dir receives `checkpoints/` (state, data position and the experiment config as JSON,
from which `jaxmm.experiment.ExperimentConfig.from_dict` + `build_method` rebuild the model),
`metrics.jsonl` and `config.json`. An existing checkpoint is resumed unless `--no-resume`.

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

Errors are one line on stderr (exit 2 for bad input: config, files, work dir, checkpoints; 1 for a
run that fails, e.g. non-finite losses; 130 on Ctrl-C, after a checkpoint); `--verbose` adds the
traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import traceback

from jaxmm import checkpoint as ckpt_lib
from jaxmm import experiment
from jaxmm import train as train_lib
from launch import configs, logs

log = logging.getLogger("launch.train")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="experiment name (see --list)")
    p.add_argument("--variant", default=None, help="config variant, e.g. smoke or paper")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. optimizer.lr=3e-4 (repeatable)",
    )
    p.add_argument("--workdir", default=None, help="checkpoints and metrics (train.workdir)")
    p.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="resume from a checkpoint in the work dir (default: the config's)",
    )
    p.add_argument("--data-dir", default=None, help="TFDS data directory (data.data_dir)")
    p.add_argument("--manual-dir", default=None, help="user-supplied files (data.manual_dir)")
    p.add_argument("--coordinator", default=None, help="host:port of process 0 (multi-process)")
    p.add_argument("--num-processes", type=int, default=None, help="number of processes")
    p.add_argument("--process-id", type=int, default=None, help="this process's index")
    p.add_argument("--list", action="store_true", help="list the experiment configs and exit")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config as JSON, validate it and exit",
    )
    p.add_argument("--verbose", action="store_true", help="full tracebacks on errors")
    return p


def _list() -> None:
    width = max(len(n) for n in configs.names())
    for name in configs.names():
        variants = ", ".join(str(v) for v in configs.variants(name) if v is not None)
        print(f"{name:<{width}}  method={configs.method_name(name):<14} variants: {variants}")


def build_config(args: argparse.Namespace) -> experiment.ExperimentConfig:
    """The experiment config of the command line: registry config, then every override."""
    cfg = configs.get_config(args.config, args.variant)
    overrides = list(args.overrides)
    flags = {
        "train.workdir": args.workdir,
        "train.resume": args.resume,
        "data.data_dir": args.data_dir,
        "data.manual_dir": args.manual_dir,
        "distributed.coordinator_address": args.coordinator,
        "distributed.num_processes": args.num_processes,
        "distributed.process_id": args.process_id,
    }
    overrides += [f"{k}={v}" for k, v in flags.items() if v is not None]
    # A config reading a .npz (data.path) learns its modalities and statistics from the file.
    return experiment.resolve_data(experiment.override(cfg, overrides))


def _config_changes(saved: dict, current: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(saved) | set(current))
    out = []
    for k in keys:
        a, b = saved.get(k), current.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_changes(a, b, f"{prefix}{k}.")
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


def _resumable(change: str) -> bool:
    key = change.partition(":")[0]
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def prepare(cfg: experiment.ExperimentConfig) -> None:
    """Joins the multi-process job (before anything touches devices), then validates `cfg`.

    Also the checks that need devices or files (`experiment.check_run`) and the resume decision
    (`check_workdir`); nothing is built or written. Raises one ValueError.
    """
    import jax

    train_lib.maybe_initialize_distributed(**dataclasses.asdict(cfg.distributed))
    experiment.validate(cfg)
    experiment.check_run(cfg, num_devices=jax.device_count())
    check_workdir(cfg)


def _saved_config(workdir: str) -> tuple[dict | None, str]:
    """The config a work dir was made with: config.json, else its checkpoint's; (None, "")."""
    path = os.path.join(workdir, "config.json")
    if os.path.isfile(path):
        try:
            with open(path) as f:
                return json.load(f), path
        except (OSError, ValueError) as e:
            raise ValueError(
                f"{path} is unreadable ({ckpt_lib.one_line(e)}); the work dir is not a run of "
                "this launcher, use a new --workdir"
            ) from None
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if os.path.isdir(ckpt_dir):
        try:
            return ckpt_lib.load_config(ckpt_dir), ckpt_dir
        except ckpt_lib.CheckpointError:
            pass  # no step or a damaged one: the trainer falls back or starts fresh
    return None, ""


def check_workdir(cfg: experiment.ExperimentConfig) -> None:
    """The resume decision, before anything is written (see the module docstring).

    Raises:
      ValueError: another experiment's work dir, or a checkpoint while `train.resume` is off.
    """
    workdir = os.path.abspath(cfg.train.workdir)
    saved, where = _saved_config(workdir)
    if saved is not None:
        changes = _config_changes(saved, cfg.to_dict())
        # The identifying fields first: they say at a glance whose run it is.
        first = ("name:", "method.name:", "data.builder:", "data.builder_config:")
        foreign = sorted(
            (c for c in changes if not _resumable(c)), key=lambda c: not c.startswith(first)
        )
        if foreign:
            shown = "; ".join(foreign[:3]) + (
                f"; ... ({len(foreign)} in all)" if len(foreign) > 3 else ""
            )
            raise ValueError(
                f"{workdir} holds another experiment ({where} differs: {shown}); use a new "
                "--workdir (its files are left as they are)"
            )
    ckpt_dir = os.path.join(workdir, "checkpoints")
    latest = None
    if os.path.isdir(ckpt_dir):
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

    it, _ = experiment.build_train_iterator(
        cfg, process_index=jax.process_index(), process_count=jax.process_count()
    )
    n_train = experiment.num_train_examples(cfg)
    experiment.check_batch_vs_examples(cfg, n_train)  # the first time the split size is known
    cfg = experiment.resolve_steps(cfg, n_train)
    workdir = os.path.abspath(cfg.train.workdir)
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(cfg.to_json() + "\n")
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
    )


def _fail(e: BaseException, verbose: bool, code: int) -> int:
    if verbose:
        traceback.print_exception(e, file=sys.stderr)
    text = " ".join(str(e).split()) or type(e).__name__  # one line, whatever the message
    print(f"error: {text}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        _list()
        return 0
    if not args.config:
        _parser().error("--config is required (see --list)")
    logs.setup_logging()
    try:
        cfg = build_config(args)
        if args.print_config:
            print(cfg.to_json())
        prepare(cfg)
        if args.print_config:
            return 0
        run(cfg)
        out = os.path.abspath(cfg.train.workdir)
        log.info("Done: checkpoints in %s/checkpoints, metrics in %s/metrics.jsonl", out, out)
    except (ValueError, ckpt_lib.CheckpointError, OSError) as e:
        # Bad input: a config, a file or a work dir (CheckpointError is a ValueError).
        return _fail(e, args.verbose, 2)
    except train_lib.NonFiniteError as e:
        return _fail(e, args.verbose, 1)
    except KeyboardInterrupt as e:
        return _fail(e, args.verbose, 130)
    except Exception as e:  # anything else: still one line; the traceback under --verbose
        if not args.verbose:
            e = RuntimeError(f"{ckpt_lib.one_line(e, 400)} (run with --verbose for the traceback)")
        return _fail(e, args.verbose, 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
