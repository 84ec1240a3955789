"""Train one registered experiment (jaxmm/configs) with the jaxmm trainer.

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

Faults and resume: see `jaxmm.experiments.training` (every check runs before data is built or
anything is written in the work dir). Errors are one line on stderr; `--verbose` adds the
traceback. Exit codes:

   0  done
   1  the run failed (non-finite losses, a checkpoint that cannot be written, ...)
   2  bad input: config, files, work dir of another experiment, unreadable checkpoints
   3  the work dir is in use by another live run (nothing was written)
  75  preempted (SIGTERM): the step reached was checkpointed; re-queue the same command
 130  Ctrl-C, after a checkpoint
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from jaxmm import checkpoint as ckpt_lib
from jaxmm import configs, experiment, own_data
from jaxmm import train as train_lib
from jaxmm import workdir as workdir_lib
from jaxmm.experiments.training import RESUMABLE, check_workdir, prepare, run  # noqa: F401
from launch import logs

log = logging.getLogger("launch.train")

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_BUSY = 1, 2, 3
EXIT_PREEMPTED = train_lib.PREEMPTED_EXIT_CODE  # 75
EXIT_INTERRUPTED = 130


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
    return own_data.resolve_data(experiment.override(cfg, overrides))


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
        out = workdir_lib.path(cfg.train.workdir)
        log.info("Done: checkpoints in %s/checkpoints, metrics in %s/metrics.jsonl", out, out)
    except workdir_lib.WorkdirBusy as e:
        return _fail(e, args.verbose, EXIT_BUSY)
    except train_lib.Preempted as e:
        return _fail(e, args.verbose, EXIT_PREEMPTED)
    except (train_lib.NonFiniteError, ckpt_lib.CheckpointWriteError) as e:
        return _fail(e, args.verbose, EXIT_FAILED)
    except (ValueError, ckpt_lib.CheckpointError, OSError) as e:
        # Bad input: a config, a file or a work dir (CheckpointError is a ValueError).
        return _fail(e, args.verbose, EXIT_BAD_INPUT)
    except KeyboardInterrupt as e:
        return _fail(e, args.verbose, EXIT_INTERRUPTED)
    except Exception as e:  # anything else: still one line; the traceback under --verbose
        if not args.verbose:
            e = RuntimeError(f"{ckpt_lib.one_line(e, 400)} (run with --verbose for the traceback)")
        return _fail(e, args.verbose, EXIT_FAILED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
