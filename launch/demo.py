"""The demo: CoMM vs. Cross on bimodal Trifeature, R/U/S (logic in `jaxmm.experiments.demo`).

python -m launch.demo                                   # ~15 min on 2 idle CPU cores
python -m launch.demo --probe-every 300                 # + R/U/S against steps (curve.png)
python -m launch.demo --long                            # ~40 min: 4 800 + 1 600 steps
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
    p.add_argument(
        "--steps", type=int, default=None, help=f"pre-training steps of the R/U runs ({DEFAULT[0]})"
    )
    p.add_argument(
        "--synergy-steps",
        type=int,
        default=None,
        help=f"pre-training steps of the synergy runs ({DEFAULT[1]}; 0: --steps)",
    )
    p.add_argument(
        "--long",
        action="store_true",
        help=f"the longer setting (about 40 minutes on 2 CPU cores): {LONG[0]} and {LONG[1]} "
        "steps unless --steps / --synergy-steps say otherwise",
    )
    p.add_argument("--batch-size", type=int, default=64, help="pre-training batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate")
    p.add_argument(
        "--schedule",
        default="constant",
        choices=("constant", "cosine"),
        help="learning-rate schedule after the warm-up",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=50,
        help="warm-up steps of the cosine schedule (at most a tenth of a run's steps)",
    )
    p.add_argument(
        "--texture-period",
        type=int,
        default=4,
        help="Trifeature texture period in px (4 at 32 px; the builder's default is 6)",
    )
    p.add_argument(
        "--augment",
        default="simclr_small",
        choices=("simclr_small", "simclr"),
        help="image augmentations of the SSL views: simclr_small (crop 0.5-1, no blur) or "
        "simclr (the paper's set: crop 0.08-1, blur)",
    )
    p.add_argument("--channels", default="16,32,64,64,64", help="AlexNet conv widths")
    p.add_argument("--width", type=int, default=64, help="embedding / fusion / projection width")
    p.add_argument("--data-dir", default="data", help="TFDS data directory")
    p.add_argument("--seed", type=int, default=0, help="initialisation and data seed")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="the configs' smoke variant (64 pairs, 4-channel AlexNet): for tests",
    )
    p.add_argument(
        "--augment-on",
        default="device",
        choices=("device", "host"),
        help="where the SSL views are augmented: in the jitted train step (device) or in the "
        "grain pipeline (host)",
    )
    p.add_argument(
        "--probe-every",
        type=int,
        default=0,
        help="also checkpoint every N steps and probe each checkpoint: R/U/S against steps "
        "in results.json and curve.png (0: final checkpoint only)",
    )
    p.add_argument(
        "--no-init-row",
        dest="init_row",
        action="store_false",
        help="skip the random-init row (CoMM's model probed before any training step)",
    )
    p.add_argument("--no-progress", action="store_true", help="no training progress bars")
    return p


# (R/U steps, synergy steps): the default demo and --long.
DEFAULT, LONG = (1200, 800), (4800, 1600)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line with the step defaults of the chosen setting filled in."""
    args = _parser().parse_args(argv)
    steps, synergy_steps = LONG if args.long else DEFAULT
    args.steps = steps if args.steps is None else args.steps
    if args.synergy_steps is None:  # --tiny is a smoke run: its synergy run takes --steps too
        args.synergy_steps = 0 if args.tiny else synergy_steps
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup_logging(quiet=("jaxmm.train", "launch.train"))
    logging.getLogger("absl").setLevel(logging.ERROR)  # tfds/orbax chatter on every open
    return lib.run(args)


if __name__ == "__main__":
    sys.exit(main())
