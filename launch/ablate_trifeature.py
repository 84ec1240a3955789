"""The exploration loop behind the demo recipe's ablation table (docs/results.md, "Recipe").

python -m launch.ablate_trifeature --steps 400 --crop 0.5 --blur 0            # one row
python -m launch.ablate_trifeature --steps 1000 --period 4 --crop 0.5 --blur 0 --eval-every 250
python -m launch.ablate_trifeature --biased --steps 800 --period 4 --crop 0.5 --blur 0 \
    --tasks synergy,texture1,color2                                           # synergy rows
python -m launch.ablate_trifeature --method sup --steps 300 --period 4 --crop 0.5 --blur 0

CoMM (the library's model, Eq. 7 loss, BatchNorm head and probes) pre-trained on bimodal
Trifeature with every knob of the demo's recipe exposed as a flag: resolution and texture period,
crop scale, blur, jitter, grayscale, widths, head, temperature, batch, steps, learning rate and
schedule. To try many settings quickly it keeps both splits in memory and draws the two SimCLR
views on the device inside one jitted step (`jaxmm.data.augment_jax`), with no checkpoints: it is
a measuring tool, not a trainer (`launch.demo` / `launch.train` are). `--method sup` trains the
same encoders and fusion with linear heads on shape and both textures (cross-entropy), a
calibration of how fast the textures can be learnt at all. Probes are `jaxmm.probe.probe` (the
synergy task class-balanced, as in the demo). Each run appends one JSON line to `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys

from launch import runtime


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.ablate_trifeature",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", default="comm", choices=("comm", "sup"))
    p.add_argument("--size", type=int, default=32, help="image side (px32 / px64 / px224)")
    p.add_argument("--period", type=int, default=None, help="texture period in px")
    p.add_argument("--biased", action="store_true", help="pre-train on the synergy pairs")
    p.add_argument(
        "--train-pairs", type=int, default=None, help="train pairs to build (default: 10 000)"
    )
    p.add_argument(
        "--test-pairs", type=int, default=None, help="test pairs to build, at most (default: 4096)"
    )
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--schedule", default="constant", choices=("constant", "cosine"))
    p.add_argument("--channels", default="16,32,64,64,64", help="AlexNet conv widths")
    p.add_argument("--variant", default="small", help="AlexNet variant (small, small_s2)")
    p.add_argument("--width", type=int, default=64, help="fusion width")
    p.add_argument("--proj", type=int, default=64, help="projection width")
    p.add_argument("--head-layers", type=int, default=1, help="hidden layers of the head")
    p.add_argument("--head-norm", default="batch", choices=("batch", "layer", "none"))
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--crop", default="0.08", help="min crop scale, or 'none'")
    p.add_argument("--jitter", type=float, default=0.4, help="brightness/contrast/saturation")
    p.add_argument("--hue", type=float, default=0.1)
    p.add_argument("--gray", type=float, default=0.2, help="grayscale probability")
    p.add_argument("--blur", type=float, default=0.5, help="blur probability")
    p.add_argument("--eval-every", type=int, default=0, help="also probe every N steps")
    p.add_argument("--tasks", default=None, help="probe tasks (default by experiment)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--out", default="outputs/ablate_trifeature.jsonl")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.train_pairs is not None and args.train_pairs < args.batch_size:
        parser.error(
            f"--train-pairs {args.train_pairs}: needs at least --batch-size ({args.batch_size})"
        )
    if args.test_pairs is not None and args.test_pairs < 1:
        parser.error(f"--test-pairs {args.test_pairs}: needs at least 1")
    runtime.enable_compilation_cache()
    from jaxmm.experiments import ablate

    result = ablate.run(args)
    print("RESULT", json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
