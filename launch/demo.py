"""The demo: CoMM vs. Cross on bimodal Trifeature, R/U/S (logic in `jaxmm.experiments.demo`).

python -m launch.demo                                   # ~12 min on 2 idle CPU cores
python -m launch.demo --methods comm,cross,cross_self --steps 1000 --out outputs/demo_long
"""

from __future__ import annotations

import argparse
import logging
import sys

from jaxmm.experiments import demo as lib
from jaxmm.experiments.demo import _REGISTRY
from launch import logs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.demo",
        description=lib.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="outputs/demo", help="output directory")
    p.add_argument(
        "--methods", default="comm,cross", help=f"comma-separated, from {sorted(_REGISTRY)}"
    )
    p.add_argument("--steps", type=int, default=400, help="pre-training steps per run")
    p.add_argument("--batch-size", type=int, default=64, help="pre-training batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (constant)")
    p.add_argument("--channels", default="16,32,64,64,64", help="AlexNet conv widths")
    p.add_argument("--width", type=int, default=64, help="embedding / fusion / projection width")
    p.add_argument("--data-dir", default="data", help="TFDS data directory")
    p.add_argument("--seed", type=int, default=0, help="initialisation and data seed")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="the configs' smoke variant (64 pairs, 4-channel AlexNet): for tests",
    )
    p.add_argument("--no-progress", action="store_true", help="no training progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup_logging(quiet=("jaxmm.train", "launch.train"))
    logging.getLogger("absl").setLevel(logging.ERROR)  # tfds/orbax chatter on every open
    return lib.run(args)


if __name__ == "__main__":
    sys.exit(main())
