"""FactorCL synthetic Fig. 1 / Table 1 (logic in `jaxmm.experiments.repro_factorcl_synthetic`).

python -m launch.repro_factorcl_synthetic --out outputs/factorcl_synth   # ~10-15 min, 2 idle CPUs
python -m launch.repro_factorcl_synthetic --out outputs/fcl --ratios 0,1 --methods \
    factorcl_ssl,simclr --epochs 3 --fig1
"""

from __future__ import annotations

import argparse
import sys

from jaxmm.experiments import repro_factorcl_synthetic as lib
from jaxmm.experiments.repro_factorcl_synthetic import METHODS, RATIOS
from launch import logs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.repro_factorcl_synthetic",
        description=lib.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="outputs/factorcl_synth", help="output directory")
    p.add_argument(
        "--ratios",
        default=",".join(f"{r:g}" for r in RATIOS),
        help="comma-separated unique ratios for Fig. 1, from 0,0.2,...,1",
    )
    p.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, from {','.join(METHODS)}"
    )
    p.add_argument("--fig1", action="store_true", help="run Fig. 1 (default: both)")
    p.add_argument("--table1", action="store_true", help="run Table 1 (default: both)")
    p.add_argument(
        "--table1-config",
        default="official",
        help="builder config Table 1 probes (the paper's official example)",
    )
    p.add_argument("--epochs", type=float, default=2.0, help="pre-training epochs per run")
    p.add_argument(
        "--steps", type=int, default=None, help="pre-training steps per run (overrides --epochs)"
    )
    p.add_argument("--batch-size", type=int, default=64, help="pre-training batch (paper 256)")
    p.add_argument(
        "--critic-hidden",
        type=int,
        default=128,
        help="FactorCL concat-critic hidden units (paper 512)",
    )
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (paper 1e-4)")
    p.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="builder override of the sample count (default: the paper's 30 000)",
    )
    p.add_argument(
        "--probe-max-iter",
        type=int,
        default=200,
        help="L-BFGS iterations of the logistic probes (official notebook: 200)",
    )
    p.add_argument(
        "--probe-rows",
        type=int,
        default=8000,
        help="training rows (random subset) the label probes are fitted on; the "
        "FactorCL embedding is 1280-d and full-batch L-BFGS on all 24 000 rows "
        "costs minutes on 2 CPUs. 0 = all rows",
    )
    p.add_argument(
        "--probe-select",
        action="store_true",
        help="choose the label probe's L2 on a hold-out (default: l2 = 1/n, the "
        "official notebook's scikit-learn C = 1)",
    )
    p.add_argument("--data-dir", default="data", help="TFDS data directory")
    p.add_argument("--seed", type=int, default=0, help="initialisation, data and probe seed")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="the configs' smoke variant (256 samples, 16-wide MLPs): for tests",
    )
    p.add_argument(
        "--compile-cache",
        default=None,
        help="JAX persistent compilation cache dir (reuses compiles across ratios)",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="restore a finished checkpoint of the same config from <out>/runs "
        "instead of re-training (re-probing only)",
    )
    p.add_argument("--no-progress", action="store_true", help="no training progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup_logging(quiet=("jaxmm.train", "launch.train"))
    return lib.run(args)


if __name__ == "__main__":
    sys.exit(main())
