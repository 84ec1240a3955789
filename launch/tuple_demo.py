"""TupleInfoNCE's claim on controlled synthetic data, E1 (logic in `jaxmm.experiments.tuple_demo`).

python -m launch.tuple_demo --out outputs/tuple_demo
python -m launch.tuple_demo --out /tmp/td --tiny
"""

from __future__ import annotations

import argparse
import sys

from jaxmm.experiments import tuple_demo as lib
from launch import logs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.tuple_demo",
        description=lib.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="outputs/tuple_demo", help="output directory")
    p.add_argument("--tiny", action="store_true", help="seconds-long settings (tests, smoke)")
    p.add_argument("--seeds", type=int, default=None, help="seeds (default 3)")
    p.add_argument("--steps", type=int, default=None, help="encoder steps per trained row")
    p.add_argument(
        "--gradient-through-positive",
        action="store_true",
        help="take the gradient through the positive too (default: stop-gradient, the public code)",
    )
    p.add_argument(
        "--beta-reward", choices=("official", "retrieval"), default=None, help="beta rounds' reward"
    )
    p.add_argument("--no-balanced", action="store_true", help="skip the balanced control")
    p.add_argument("--no-search", action="store_true", help="skip the sample optimisation")
    p.add_argument("--weak-noise", type=float, default=None, help="weak modality's noise std")
    p.add_argument(
        "--weak-unshared", action="store_true", help="variant: the weak modality without z_s"
    )
    p.add_argument("--width", type=int, default=None, help="encoder / fused embedding width")
    p.add_argument(
        "--noise-law", choices=("iid", "shared"), default=None, help="positive noise law"
    )
    p.add_argument("--no-plot", action="store_true", help="skip the figure")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup_logging(quiet=("jaxmm.probe.selection",))
    kw = dict(lib.TINY) if args.tiny else {}
    for field, value in (
        ("seeds", args.seeds),
        ("steps", args.steps),
        ("beta_reward", args.beta_reward),
        ("weak_noise", args.weak_noise),
        ("width", args.width),
        ("noise_law", args.noise_law),
    ):
        if value is not None:
            kw[field] = value
    if args.gradient_through_positive:
        kw["stop_gradient_positive"] = False
    if args.no_balanced:
        kw["balanced"] = False
    if args.no_search:
        kw["search"] = False
    if args.weak_unshared:
        kw["weak_shared"] = False
    try:
        cfg = lib.DemoConfig(**kw)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = lib.run(cfg, args.out, plot=not args.no_plot)
    print(lib.format_table(res))
    print("bars:", {k: v["met"] for k, v in res["bars"].items()})
    print("reward spearman:", res["reward_spearman"]["row_means"])
    print(f"total {res['seconds']['total']:.0f} s; results in {args.out}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
