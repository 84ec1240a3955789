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
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

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


def prepare(cfg: experiment.ExperimentConfig) -> None:
    """Joins the multi-process job (before anything touches devices), then validates `cfg`."""
    train_lib.maybe_initialize_distributed(**dataclasses.asdict(cfg.distributed))
    experiment.validate(cfg)


def run(cfg: experiment.ExperimentConfig):
    """Builds data and method from a `prepare`d config and trains; returns the final state."""
    import jax

    it, _ = experiment.build_train_iterator(
        cfg, process_index=jax.process_index(), process_count=jax.process_count()
    )
    cfg = experiment.resolve_steps(cfg, experiment.num_train_examples(cfg))
    workdir = os.path.abspath(cfg.train.workdir)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if os.path.isdir(ckpt_dir) and cfg.train.resume:
        try:
            saved = ckpt_lib.load_config(ckpt_dir)
        except ckpt_lib.CheckpointError:
            saved = None
        if saved is not None:
            changes = _config_changes(saved, cfg.to_dict())
            if changes:
                log.warning(
                    "Resuming %s with a config that differs from the checkpoint's: %s",
                    workdir,
                    "; ".join(changes),
                )
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
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
