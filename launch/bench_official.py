"""Side by side: the official CoMM / FactorCL PyTorch train steps vs jaxmm's jitted train step.

    pip install -e '.[official]'          # torch (+ einops), never needed by CI or the demo
    git clone https://github.com/Duplums/CoMM /path/to/CoMM
    git clone https://github.com/pliang279/FactorCL /path/to/FactorCL
    python -m launch.bench_official --official-dir /path/to/CoMM [--threads 1] [--steps 20]
    python -m launch.bench_official --official-dir /path/to/CoMM --factorcl-dir /path/to/FactorCL \
        --configs mosi,mosi3,mimic,factorcl_synthetic,factorcl_mosi --threads 2

Configs `tiny` and `32px` are toy CoMM steps (below); `mosi`, `mosi3`, `mimic` (CoMM) and
`factorcl_synthetic`, `factorcl_mosi` (the full FactorCL step, critic optimisers included) are
shaped like the papers' runs: see `jaxmm.benchmarks.official_multibench`. `--official-dir` is
needed for the CoMM configs, `--factorcl-dir` for the FactorCL ones; `--batch` overrides each
config's default batch (64; FactorCL: 256 synthetic, 32 MOSI, as the official notebooks).
`--unfused` adds, for each FactorCL config, a row where jaxmm runs the critic update and the main
update as two compiled calls (the official loop's structure) instead of one. `--levers` prints
only a table of jaxmm step variants of each paper-shaped config, timed round-robin (no torch)
(`official_multibench.jaxmm_levers`: dispatch, masked passes, fusion of the critic update, the
PRNG of the dropout bits).

No official code is part of jaxmm: it is imported from the user's checkout at run time
(`pl_modules.comm.CoMM`, `models.mmfusion.MMFusion`, `models.input_adapters`, `models.mlp.MLP`,
`losses.comm_loss.CoMMLoss` through CoMM). The official step is `CoMM.training_step` (forward of
both views through every mask, `CoMMLoss`, `loss.item()`) + `backward` + the AdamW built by the
official `configure_optimizers` (weight-decay groups of `set_weight_decay_per_param`); ours is
`jaxmm.train.Trainer.train_step` (one compiled function: the same forward, loss, gradient and
AdamW update, state donated) followed by a wait for the loss. The two are timed alternately in one
loop on the same random batch; medians are printed with the ratio official / jaxmm.

Matched models (parameter counts printed for both; the learnable ones, torch buffers and our
BatchNorm running averages excluded):

* tiny: two vector modalities (16 features), each an MLP 16 -> 128 -> 16 then a feature tokenizer
  (16 tokens of width 128); fusion width 128, 1 layer, 8 heads; head 128-128-128 with BatchNorm.
* 32px: two 32x32x3 images, each a small AlexNet (channels 16-32-64-64-64, 5x5/5x5/3x3 convs
  at stride 1, 2x2 max-pools after conv 1, 2, 5 -> a 4x4x64 map) then a 1x1 patch embedding
  (16 tokens of width 64); fusion width 64, 1 layer, 8 heads; head 64-64-64 with BatchNorm.
  The official AlexNet encoder is torchvision's 224 px network, so the torch side of this
  encoder is written here (same layers as `jaxmm.models.AlexNet(variant="small")`); the adapter,
  fusion, head, loss and optimizer are the official ones.

Threads: `--threads N` sets `torch.set_num_threads(N)` and pins the process to N cores before jax
starts (XLA's Eigen kernels single-threaded for N = 1), one jax device. Without the pinning XLA
runs independent ops (the two encoders) on other cores even with single-threaded kernels, so an
unpinned "1 thread" run gave jaxmm two cores. Modules that the official training code imports
but this step never uses (pytorch_lightning, omegaconf, tensorboard, pandas, PIL) are
replaced by empty stand-ins when they are not installed; LightningModule then is torch.nn.Module
and `log_dict` a no-op (logging is not part of the step being timed).

`--encoders` adds the 32px config's two encoders alone (forward + backward). `--layers` adds
every convolution pass of one 32px encoder (forward, input gradient, weight gradient per layer,
XLA vs torch, one pass per call) with a 1024^3 matmul for each library's dense rate, then, for
`--threads 1`, two what-ifs for the 32px step (`conv_what_ifs`): XLA's weight gradients at its
forward rates, and every convolution pass at torch's time.
"""

from __future__ import annotations

import argparse
import os
import sys

from jaxmm.benchmarks import official_multibench as multibench
from jaxmm.benchmarks.official import (
    CONFIGS as TOY_CONFIGS,
)
from jaxmm.benchmarks.official import (
    conv_layers,
    conv_what_ifs,
    encoders_only,
    run,
    set_threads,
    stand_ins,
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m launch.bench_official",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--official-dir", help="checkout of github.com/Duplums/CoMM (CoMM configs)")
    p.add_argument(
        "--factorcl-dir", help="checkout of github.com/pliang279/FactorCL (FactorCL configs)"
    )
    p.add_argument("--configs", default=",".join(TOY_CONFIGS))
    p.add_argument("--batch", type=int, default=None, help="default: each config's own")
    p.add_argument("--steps", type=int, default=20, help="timed steps per side (medians)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch and XLA CPU threads")
    p.add_argument(
        "--full-length-passes",
        action="store_true",
        help="jaxmm: masked passes at full length (attention-masked) instead of dropped tokens",
    )
    p.add_argument(
        "--encoders",
        action="store_true",
        help="add a row timing the 32px config's two encoders alone (forward + backward)",
    )
    p.add_argument(
        "--layers",
        action="store_true",
        help="add a table of the 32px encoders' convolution passes, XLA vs torch, one per call",
    )
    p.add_argument(
        "--unfused",
        action="store_true",
        help="FactorCL configs: add a row with the critic and main updates as two jaxmm calls",
    )
    p.add_argument(
        "--levers",
        action="store_true",
        help="paper-shaped configs: only a table of jaxmm step variants, timed round-robin "
        "(no torch, no checkout)",
    )
    args = p.parse_args(argv)
    names = args.configs.split(",")
    known = TOY_CONFIGS + multibench.CONFIGS
    bad = [n for n in names if n not in known]
    if bad:
        p.error(f"--configs: unknown {bad}; expected a subset of {list(known)}")
    if args.levers:  # jaxmm alone: no torch, no checkout
        if any(n not in multibench.CONFIGS for n in names):
            p.error(f"--levers: paper-shaped configs only, a subset of {list(multibench.CONFIGS)}")
        set_threads(args.threads)
        levers = []
        for n in names:
            levers += multibench.jaxmm_levers(
                n, batch=args.batch, steps=args.steps, warmup=args.warmup
            )
            print(_row_line(levers[-1]), flush=True)
        print(f"jaxmm step variants, {args.threads} thread(s), round-robin medians of {args.steps}")
        _table(levers)
        return 0
    dirs = []
    if any(n not in multibench.FACTORCL_CONFIGS for n in names):
        if not args.official_dir or not os.path.isfile(
            os.path.join(args.official_dir, "pl_modules", "comm.py")
        ):
            p.error(
                f"--official-dir: {args.official_dir!r} has no pl_modules/comm.py (CoMM checkout?)"
            )
        dirs.append(args.official_dir)
    if any(n in multibench.FACTORCL_CONFIGS for n in names):
        if not args.factorcl_dir or not os.path.isfile(
            os.path.join(args.factorcl_dir, "multibench_model.py")
        ):
            p.error(
                f"--factorcl-dir: {args.factorcl_dir!r} has no multibench_model.py "
                "(FactorCL checkout?)"
            )
        dirs.append(args.factorcl_dir)
    set_threads(args.threads)
    try:
        import torch
    except ImportError:
        p.error("torch is not installed: pip install -e '.[official]'")
    torch.set_num_threads(args.threads)
    stand_ins()
    for d in dirs:
        sys.path.insert(0, os.path.abspath(d))
    rows = []
    for n in names:
        kw = dict(steps=args.steps, warmup=args.warmup, drop=not args.full_length_passes)
        if n in TOY_CONFIGS:
            rows.append(run(n, args.official_dir, batch=args.batch or 64, **kw))
            continue
        variants = (False, True) if args.unfused and n in multibench.FACTORCL_CONFIGS else (False,)
        for unfused in variants:
            rows.append(multibench.run(n, batch=args.batch, unfused=unfused, **kw))
            print(_row_line(rows[-1]), flush=True)
    if args.encoders:
        rows.append(encoders_only(args.batch or 64, args.steps, args.warmup))
    print(f"{args.threads} thread(s), medians of {args.steps} alternating steps")
    _table(rows)
    if args.layers:
        b = args.batch or 64
        layers = conv_layers(b, args.steps, args.warmup)
        print(f"\nconvolution passes at {2 * b} images (one encoder; the step runs two)")
        _table(layers)
        _conv_summary(layers, next((r for r in rows if r["config"] == "32px"), None), args.threads)
    return 0


def _row_line(row: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())


def _table(rows: list[dict]) -> None:
    cols = list(dict.fromkeys(c for r in rows for c in r))
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [
            f"{v:.3g}" if isinstance(v, float) else str(v) for v in (r.get(c, "") for c in cols)
        ]
        print("| " + " | ".join(cells) + " |")


def _conv_summary(layers: list[dict], step: dict | None, threads: int) -> None:
    w = conv_what_ifs(layers, step)
    print(
        "\nboth encoders, ms (XLA / torch): "
        + ", ".join(f"{k} {x:.1f} / {t:.1f}" for k, (x, t) in w["encoders_ms"].items())
    )
    if step is None:
        return
    if threads != 1:
        print(
            "(what-ifs for --threads 1 only: on more cores XLA runs the two encoders side by side)"
        )
        return
    print(
        f"XLA's convolution passes alone: {w['xla_convs_ms']:.1f} ms per step; a step 1.5x faster "
        f"than the official one may take {step['official_ms'] / 1.5:.1f} ms in all"
    )
    print(
        f"32px step {step['jaxmm_ms']:.1f} ms (official {step['official_ms']:.1f} ms); with XLA's "
        f"weight gradients at its forward rates: {w['wgrad_at_forward_rate_ms']:.1f} ms, ratio "
        f"{w['wgrad_at_forward_rate_ratio']:.2f}; with every convolution pass at torch's time: "
        f"{w['torch_convs_ms']:.1f} ms, ratio {w['torch_convs_ratio']:.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
