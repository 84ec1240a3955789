"""Linear probes (and optional fine-tuning) of a trained run, from its checkpoint directory alone.

python -m launch.probe --workdir workdirs/comm_trifeature
python -m launch.probe --workdir RUN_DIR --step 2000 --split test --tasks shape,texture1 \
    --out results.json
python -m launch.probe --workdir RUN_DIR --finetune supcon --tasks shape --epochs 3

The experiment config stored with the checkpoint rebuilds the model (no config file or training
code needed); the parameters are restored into the abstract train state; frozen embeddings of the
train and test splits are probed with `jaxmm.probe` (L2 strength chosen on a validation hold-out).
Trifeature runs also print CoMM Fig. 4's redundancy / uniqueness / synergy summary; a *biased*
(synergy) run is probed on the unbiased pairs. `--finetune supcon|linear` first fine-tunes the
backbone per task (CoMM App. B.4, early stopping on a validation hold-out), then probes.

Exit codes: 0 success, 2 missing / corrupt checkpoint or bad arguments, 1 any other failure; each
is one error line naming the cause and the path (`--verbose` adds the traceback). Without
`--step`, a damaged latest checkpoint is reported in one warning line and the newest intact one
is probed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from typing import Any

from jaxmm.checkpoint import CheckpointError, one_line
from launch import logs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.probe",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--workdir",
        required=True,
        help="the run's work dir (holding checkpoints/) or its checkpoints dir",
    )
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--split", default=None, help="split reported on (default: data.eval_split)")
    p.add_argument(
        "--train-split",
        default=None,
        help="split the probes are fitted on (default: data.train_split)",
    )
    p.add_argument(
        "--tasks", default=None, help="comma-separated label names (default: all labels of the run)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="evaluation batch (default: data.eval_batch_size)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the probes' validation hold-out")
    p.add_argument("--out", default=None, help="write the report as JSON here")
    p.add_argument("--verbose", action="store_true", help="full tracebacks on errors")
    ft = p.add_argument_group("fine-tuning (CoMM App. B.4)")
    ft.add_argument(
        "--finetune",
        choices=("supcon", "linear"),
        default=None,
        help="fine-tune the backbone per task before evaluating",
    )
    ft.add_argument("--epochs", type=int, default=3, help="maximum fine-tuning epochs")
    ft.add_argument(
        "--patience",
        type=int,
        default=1,
        help="epochs without validation improvement before stopping",
    )
    ft.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate")
    ft.add_argument("--ft-batch-size", type=int, default=64, help="fine-tuning batch size")
    ft.add_argument(
        "--max-steps-per-epoch", type=int, default=None, help="cap on fine-tuning steps per epoch"
    )
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Loads the checkpoint, probes (or fine-tunes then probes) and returns the report."""
    from jaxmm import finetune as ft_lib
    from jaxmm import probe_checkpoint as pc

    run_ = pc.load_run(args.workdir, args.step)
    tasks = None if args.tasks is None else [t.strip() for t in args.tasks.split(",") if t.strip()]
    report = pc.probe_run(
        run_,
        split=args.split,
        train_split=args.train_split,
        tasks=tasks,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    print(pc.format_report(report))
    if args.finetune:
        config = ft_lib.FinetuneConfig(
            mode=args.finetune,
            epochs=args.epochs,
            patience=args.patience,
            lr=args.lr,
            batch_size=args.ft_batch_size,
            max_steps_per_epoch=args.max_steps_per_epoch,
            seed=args.seed,
        )
        report["finetune"] = ft_lib.finetune_tasks(run_, report, config, split=args.split)
    if args.out:
        from jaxmm import workdir as workdir_lib

        out = workdir_lib.path(args.out)  # local or a URI such as gs://...
        out.parent.mkdir(parents=True, exist_ok=True)
        workdir_lib.write_text(out, json.dumps(report, indent=2))
        print(f"\nWrote {out}")
    else:
        print("\nResults printed only; --out FILE saves them as JSON.")
    return report


def _fail(e: BaseException, verbose: bool, code: int, hint: bool = False) -> int:
    if verbose:
        traceback.print_exception(e, file=sys.stderr)
        text = " ".join(str(e).split()) or type(e).__name__
    else:
        text = one_line(e, 400) if hint else " ".join(str(e).split())
        if hint:
            text += " (run with --verbose for the traceback)"
    print(f"error: {text}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup_logging(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax / tfds info chatter
    logging.getLogger("jaxmm.probe").setLevel(logging.INFO)  # a line per probed task
    try:
        run(args)
    except (CheckpointError, ValueError, OSError) as e:
        return _fail(e, args.verbose, 2)
    except Exception as e:  # still one line; the traceback under --verbose
        return _fail(e, args.verbose, 1, hint=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
