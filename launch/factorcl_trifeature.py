"""FactorCL on the demo's Trifeature recipe for longer: R/U/S against steps (logic in
`jaxmm.experiments.factorcl_trifeature`).

python -m launch.factorcl_trifeature train --steps 4800 --ckpt-every 300 --out DIR
python -m launch.factorcl_trifeature probe --out DIR --steps 1200,2400,3600,4800
python -m launch.factorcl_trifeature report --out DIR --label "lr 1e-3" --png curve.png
"""

from __future__ import annotations

import argparse
import logging
import sys

from jaxmm.experiments import factorcl_trifeature as lib
from launch import demo as demo_cli
from launch import logs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.factorcl_trifeature",
        description=lib.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train FactorCL with the demo's recipe, checkpointing")
    t.add_argument("--out", required=True, help="output directory (runs/ inside, as the demo)")
    t.add_argument("--experiment", default="rus", choices=sorted(lib.EXPERIMENTS))
    t.add_argument("--steps", type=int, required=True, help="pre-training steps")
    t.add_argument("--ckpt-every", type=int, default=300, help="checkpoint interval (all kept)")
    t.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (constant)")
    t.add_argument("--data-dir", default="data", help="TFDS data directory")
    t.add_argument("--tiny", action="store_true", help="the smoke config (tests)")
    t.add_argument("--print-config", action="store_true", help="print the config and stop")
    q = sub.add_parser("probe", help="probe checkpoints (may run while train runs)")
    q.add_argument("--out", required=True)
    q.add_argument("--experiment", default="rus", choices=sorted(lib.EXPERIMENTS))
    q.add_argument("--steps", default="", help="comma-separated steps (default: every one)")
    q.add_argument(
        "--tasks", default="", help="comma-separated probe tasks (default: the experiment's)"
    )
    r = sub.add_parser("report", help="table and plot of the probed curves")
    r.add_argument("--out", nargs="+", required=True, help="one or more output directories")
    r.add_argument("--label", nargs="+", help="a label per --out (default the directory)")
    r.add_argument("--png", help="write the plot here")
    r.add_argument("--title", default="FactorCL, bimodal Trifeature (demo recipe)")
    return p


def demo_args(args: argparse.Namespace) -> argparse.Namespace:
    """The launch.demo namespace of this run: the demo's defaults with our steps, lr, output."""
    argv = ["--methods", lib.METHOD, "--no-progress", "--out", args.out]
    argv += ["--steps", str(args.steps), "--synergy-steps", str(args.steps)]
    argv += ["--probe-every", str(args.ckpt_every), "--lr", repr(args.lr)]
    argv += ["--data-dir", args.data_dir] + (["--tiny"] if args.tiny else [])
    return demo_cli.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup_logging(quiet=("jaxmm.train",))
    logging.getLogger("absl").setLevel(logging.ERROR)
    if args.command == "train":
        cfg = lib.run_config(demo_args(args), args.experiment)
        if args.print_config:
            print(cfg.to_json())
            return 0
        seconds = lib.train(cfg, args.out, args.experiment)
        where = lib.workdir(args.out, args.experiment)
        print(f"trained {cfg.train.steps} steps in {seconds:.0f} s; checkpoints in {where}")
    elif args.command == "probe":
        steps = [int(s) for s in args.steps.split(",") if s.strip()] or None
        tasks = [t for t in args.tasks.split(",") if t.strip()] or None
        points = lib.probe_steps(args.out, args.experiment, steps, tasks)
        print(lib.format_table({args.out: {args.experiment: points}}))
    else:
        labels = args.label or args.out
        if len(labels) != len(args.out):
            print("error: one --label per --out", file=sys.stderr)
            return 2
        curves = lib.load_curves(args.out, labels)
        print(lib.format_table(curves))
        if args.png:
            lib.plot(curves, args.png, args.title)
            print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
