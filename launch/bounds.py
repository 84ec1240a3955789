"""MI bounds on a Gaussian staircase (logic in `jaxmm.experiments.bounds`).

python -m launch.bounds --out outputs/bounds                # InfoNCE, NCE-CLUB, CLUB
python -m launch.bounds --out outputs/bounds --all-bounds   # + NWJ, TUBA, DV, JS, SMILE
"""

from __future__ import annotations

import argparse
import sys

from jaxmm.experiments import bounds as lib
from jaxmm.experiments.bounds import DIMS


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m launch.bounds",
        description="MI lower/upper bounds on a staircase of correlated Gaussians "
        "(FactorCL Fig. 3, Poole et al. 2019 Fig. 2).",
    )
    p.add_argument("--out", default="outputs/bounds", help="output directory")
    p.add_argument("--dim", type=int, default=20, choices=DIMS, help="dimension d of x and y")
    p.add_argument(
        "--mi-levels",
        type=lambda s: [float(v) for v in s.split(",")],
        default=[2.0, 4.0, 6.0, 8.0, 10.0],
        help="true MI staircase, nats, comma list",
    )
    p.add_argument("--batch-size", type=int, default=64, help="K, samples per step")
    p.add_argument(
        "--steps-per-level",
        type=int,
        default=4000,
        help="training steps at each MI level (4000 as in Poole et al. and FactorCL)",
    )
    p.add_argument("--critic", choices=("separable", "concat"), default="separable")
    p.add_argument("--hidden", type=int, default=256, help="MLP width (critics and CLUB's q)")
    p.add_argument("--layers", type=int, default=2, help="hidden layers of the critic MLPs")
    p.add_argument("--embed-dim", type=int, default=32, help="separable critic embedding size")
    p.add_argument(
        "--softplus-scores",
        action="store_true",
        help="pass critic scores through softplus (FactorCL's Gaussian notebook uses "
        "a concat critic, 1 hidden layer of 512, softplus head, lr 5e-3)",
    )
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate of the critics")
    p.add_argument(
        "--club-lr",
        type=float,
        default=None,
        help="Adam learning rate of CLUB's q(y|x) (default: --lr)",
    )
    p.add_argument(
        "--all-bounds", action="store_true", help="also train NWJ, TUBA, DV, JS and SMILE critics"
    )
    p.add_argument("--cubic", action="store_true", help="y -> y^3 (MI unchanged)")
    p.add_argument("--ema-span", type=float, default=200.0, help="EMA span of the plot")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    args = p.parse_args(argv)
    if args.batch_size < 2:
        p.error(f"--batch-size must be >= 2 (InfoNCE needs negatives), got {args.batch_size}")
    if args.steps_per_level < 1:
        p.error(f"--steps-per-level must be >= 1, got {args.steps_per_level}")
    if not args.mi_levels or min(args.mi_levels) < 0:
        p.error(f"--mi-levels must be non-negative nats, got {args.mi_levels}")
    if args.club_lr is None:
        args.club_lr = args.lr
    return args


def main(argv=None) -> int:
    lib.run_and_report(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
