"""FactorCL synthetic: calibration, Fig. 1, Table 1 (logic in
`jaxmm.experiments.repro_factorcl_synthetic`).

python -m launch.repro_factorcl_synthetic --out outputs/factorcl_synth  # 25 min, 2 idle CPUs
python -m launch.repro_factorcl_synthetic --out outputs/fcl --parts fig1 --ratios 0,1 --seeds 1
"""

from __future__ import annotations

import argparse
import shlex
import sys

from jaxmm.experiments import repro_factorcl_synthetic as lib
from jaxmm.experiments.factorcl_synthetic import METHODS
from jaxmm.experiments.repro_factorcl_synthetic import DEFAULT_RATIOS, PARTS
from launch import logs


def _list(text: str, what: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"{what}: empty list")
    bad = [t for t in items if allowed is not None and t not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"{what}: unknown {bad}; choose from {list(allowed)}")
    return items


def _ratios(text: str) -> list[float]:
    try:
        ratios = [float(t) for t in _list(text, "--ratios")]
        for r in ratios:
            lib.ratio_config(r)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return ratios


def _positive(kind):
    def parse(text: str):
        v = kind(text)
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v

    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.repro_factorcl_synthetic",
        description=lib.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="outputs/factorcl_synth", help="output directory")
    p.add_argument(
        "--parts",
        type=lambda t: _list(t, "--parts", PARTS),
        default=list(PARTS),
        help=f"comma-separated, from {','.join(PARTS)} (table1 reads the calibration models)",
    )
    p.add_argument(
        "--ratios",
        type=_ratios,
        default=list(DEFAULT_RATIOS),
        help="Fig. 1 unique ratios, from 0,0.2,...,1 (default 0,0.4,0.6,0.8,1)",
    )
    p.add_argument(
        "--methods",
        type=lambda t: _list(t, "--methods", METHODS),
        default=list(METHODS),
        help=f"Fig. 1 methods, from {','.join(METHODS)}",
    )
    p.add_argument("--seeds", type=_positive(int), default=2, help="Fig. 1 seeds per point")
    p.add_argument("--seed", type=int, default=0, help="first seed (data, init, batches)")
    p.add_argument(
        "--probe",
        choices=("official", "jaxmm"),
        default="official",
        help="Fig. 1 probe: scikit-learn LogisticRegression(max_iter=200) on raw features "
        "(the notebook's) or jaxmm.probe (standardised, converged)",
    )
    p.add_argument(
        "--embed-dim",
        type=_positive(int),
        default=10,
        help="Fig. 1 encoder output width (the bottleneck; official 128)",
    )
    p.add_argument("--batch-size", type=_positive(int), default=128, help="Fig. 1 batch")
    p.add_argument("--lr", type=_positive(float), default=1e-4, help="Fig. 1 Adam lr")
    p.add_argument("--critic-hidden", type=_positive(int), default=64, help="Fig. 1 critic width")
    p.add_argument(
        "--critic-lr", type=_positive(float), default=1e-3, help="Fig. 1 NCE-CLUB critic lr"
    )
    p.add_argument("--factorcl-epochs", type=_positive(float), default=3.0)
    p.add_argument("--baseline-epochs", type=_positive(float), default=6.0)
    p.add_argument(
        "--official-critics",
        action="store_true",
        help="calibration with the official in-512-512-1 critics at the shared lr "
        "(~9 s per FactorCL step on 2 CPUs; default in-64-1 at a 10x critic lr)",
    )
    p.add_argument(
        "--calibration-init",
        choices=("torch", "flax"),
        default="torch",
        help="calibration weights drawn as torch's nn.Linear (the official code's) or by "
        "Flax's defaults (lecun-normal kernels, zero biases; what Fig. 1 uses)",
    )
    p.add_argument(
        "--num-samples", type=_positive(int), default=None, help="samples per data set (30 000)"
    )
    p.add_argument("--tiny", action="store_true", help="16-wide MLPs on 400 samples: for tests")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # a bad flag: argparse printed one line, exit 2; --help exits 0
        if not e.code:
            raise
        return int(e.code)
    args.command = "python -m launch.repro_factorcl_synthetic " + shlex.join(argv)
    logs.setup_logging(quiet=("jaxmm.train",))
    return lib.run(args)


if __name__ == "__main__":
    sys.exit(main())
