"""FactorCL on its controlled synthetic data: Fig. 1 (accuracy vs. unique ratio) and Table 1.

python -m launch.repro_factorcl_synthetic --out outputs/factorcl_synth   # ~10-15 min, 2 idle CPUs
python -m launch.repro_factorcl_synthetic --out outputs/fcl --ratios 0,1 --methods \
    factorcl_ssl,simclr --epochs 3 --fig1
python -m launch.repro_factorcl_synthetic --out outputs/fcl_t1 --table1 --critic-hidden 512 \
    --batch-size 256 --epochs 10                                                # closer to paper

Reproduces Liang et al., "Factorized Contrastive Learning", NeurIPS 2023, Sec. 4.1:

* Fig. 1: for each shared/unique ratio config of the `factorcl_synthetic` builder
  (``ratioXX``: the label reads a fraction r of its coordinates from the unique latents w1, w2 and
  1 - r from the shared ws) and each method, pre-train, then fit a linear probe (`jaxmm.probe`,
  logistic regression, L2 chosen on a hold-out) of the label on the frozen embedding
  (`method.embed`) and report test accuracy. A probe on the raw inputs [x1, x2] is printed as a
  reference: the label is a threshold of a linear function of the latents, which are a linear
  function of the inputs, so it is the ceiling a representation can keep.
* Table 1: on the ``official`` config, how much each learned representation knows about the
  ground-truth latent groups w1, w2, ws. FactorCL: Z_S1, Z_S2, Z_U1, Z_U2
  (`FactorCL.embed_parts`); baselines: the unimodal encoder outputs Z1, Z2. The paper reports
  "approximate" I(Z; w) in bits without its estimator. We report a *linear-Gaussian lower bound*
  in bits: the latents are independent Gaussians, so with a ridge probe ŵ_j(Z) of every
  coordinate (closed form, L2 chosen on a hold-out, test-set errors)

      I(Z; w) >= sum_j I(Z; w_j) >= sum_j max(0, 1/2 log2(Var w_j / E[(w_j - ŵ_j(Z))^2]))

  (independence of the w_j gives h(w) = sum_j h(w_j) and h(w | Z) <= sum_j h(w_j | Z); a
  Gaussian maximises entropy at fixed variance, so h(w_j | Z) <= 1/2 log(2 pi e MSE_j) while
  h(w_j) = 1/2 log(2 pi e Var w_j)). Per-group mean R^2 is stored too.

Each pre-training goes through `launch.train` (validation, the jaxmm trainer, an orbax checkpoint
in ``<out>/runs/<config>_<method>`` that ``python -m launch.probe`` can re-probe); the trained
parameters are then used in-process. Outputs: ``<out>/fig1.png``, ``<out>/results.json`` (every
probe, the configs, timings) and the printed tables.

Default scale, and why it differs from the paper (App. D.2 and the official notebook: 1-layer
MLP encoders 100 -> 512 -> 128, heads 128 -> 128 -> 128, concat critics with 512 hidden units,
Adam at 1e-4, batch 256, 10 epochs for FactorCL and 20 for SimCLR on 30 000 samples): the concat
critics score all B x B pairs, so one FactorCL step costs B^2 x hidden; at the paper's batch 256
and width 512 that is ~1.5 s per step on two CPU cores (about 2.5 minutes per epoch). The default
keeps the paper's data, encoders, heads and learning rate but uses batch 64, critics with 128
hidden units and 2 epochs (750 steps) for every method, and fits the label probes on 8 000 of the
24 000 training rows; a full default run (6 ratios + Table 1, 35 pre-trainings) takes about
10-15 minutes on two idle CPU cores (`--compile-cache DIR` saves the repeated compilations).
A 10x larger learning rate (1e-3) makes FactorCL's adversarial NCE-CLUB terms diverge (the heads
outrun the critics within ~100 steps), so the paper's 1e-4 is kept.
See docs/results_factorcl_synthetic.md for the measured numbers next to the paper's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

METHODS = ("factorcl_ssl", "factorcl_sup", "simclr", "crossself", "supcon")


METHOD_LABELS = {
    "factorcl_ssl": "FactorCL-SSL",
    "factorcl_sup": "FactorCL-SUP",
    "simclr": "SimCLR",
    "crossself": "Cross+Self",
    "supcon": "SupCon",
    "input": "input [x1,x2]",
}


LABEL_L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


RATIOS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


LATENTS = ("w1", "w2", "ws")


_PAPER_FACTORCL = {
    "zu1": {"w1": 7.83, "w2": 0.06, "ws": 9.47},
    "zu2": {"w1": 0.03, "w2": 7.17, "ws": 9.89},
    "zs1": {"w1": 6.25, "w2": 0.05, "ws": 10.13},
    "zs2": {"w1": 0.04, "w2": 5.79, "ws": 9.40},
}


PAPER_TABLE1: dict[str, dict[str, dict[str, float]]] = {
    "simclr": {
        "z1": {"w1": 4.45, "w2": 0.17, "ws": 12.61},
        "z2": {"w1": 0.16, "w2": 3.92, "ws": 12.06},
    },
    "crossself": {
        "z1": {"w1": 4.39, "w2": 0.13, "ws": 11.30},
        "z2": {"w1": 0.14, "w2": 4.26, "ws": 11.47},
    },
    "supcon": {
        "z1": {"w1": 5.17, "w2": 0.23, "ws": 7.48},
        "z2": {"w1": 0.19, "w2": 5.17, "ws": 7.17},
    },
    "factorcl_ssl": _PAPER_FACTORCL,
    "factorcl_sup": _PAPER_FACTORCL,
}


_TABLE1_ORDER = ("z1", "z2", "zu1", "zu2", "zs1", "zs2")  # the paper's column order


REPR_LABELS = {"z1": "Z1", "z2": "Z2", "zu1": "ZU1", "zu2": "ZU2", "zs1": "ZS1", "zs2": "ZS2"}


PAPER_FIG1 = (
    "FactorCL stays best at every ratio; SimCLR and SupCon drop as the unique ratio "
    "grows; Cross+Self recovers in the fully unique setting (ratio 1.0) but suffers "
    "at the other ratios."
)


log = logging.getLogger("launch.repro_factorcl_synthetic")


def ratio_config(ratio: float) -> str:
    """The builder config of a unique-information ratio in {0, 0.2, ..., 1.0}: ``ratioXX``."""
    tenths = round(ratio * 10)
    if tenths not in (0, 2, 4, 6, 8, 10) or not math.isclose(tenths / 10, ratio, abs_tol=1e-6):
        raise ValueError(f"--ratios: {ratio} is not one of the builder's ratios {list(RATIOS)}")
    return f"ratio{tenths:02d}"


def run_config(method: str, builder_config: str, args: argparse.Namespace):
    """The `ExperimentConfig` of one pre-training: the registry's synthetic config, rescaled."""
    from jaxmm import experiment
    from launch.configs import synthetic

    cfg = synthetic.get_config("smoke" if args.tiny else None, method=method)
    overrides = dict(cfg.data.builder_overrides)
    if args.num_samples is not None:
        overrides["num_samples"] = args.num_samples
    data = dataclasses.replace(
        cfg.data,
        builder_config=builder_config,
        builder_overrides=overrides,
        data_dir=args.data_dir,
        seed=args.seed,
    )
    mcfg = cfg.method.config
    if method.startswith("factorcl") and not args.tiny:
        mcfg = dataclasses.replace(mcfg, critic_hidden=args.critic_hidden)
    workdir = os.path.join(args.out, "runs", f"{builder_config}_{method}")
    cfg = dataclasses.replace(
        cfg,
        name=f"repro_{method}_{builder_config}",
        data=data,
        method=dataclasses.replace(cfg.method, config=mcfg),
        epochs=None if args.steps else args.epochs,
    )
    steps = args.steps or 1  # replaced from `epochs` by launch.train.run when --steps is unset
    return experiment.override(
        cfg,
        [
            f"train.steps={steps}",
            f"train.batch_size={args.batch_size}",
            f"train.workdir={workdir}",
            "train.ckpt_every=0",
            "train.keep=1",
            "train.log_every=50",
            f"train.seed={args.seed}",
            f"train.progress={not args.no_progress}",
            f"optimizer.lr={args.lr}",
            "optimizer.schedule=constant",
            "optimizer.warmup_steps=0",
        ],
    )


def load_split(cfg, split: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Unaugmented inputs {x1, x2} and labels {label, ws, w1, w2} of a whole split, in order.

    Read once per dataset config through the evaluation pipeline (the same normalisation as
    training) and shared by every method's embedding pass.
    """
    from jaxmm import experiment

    xs: dict[str, list] = {}
    ys: dict[str, list] = {}
    for batch in experiment.build_eval_dataset(cfg, split, pad=True).to_iter_dataset():
        keep = np.asarray(batch["mask"], bool)
        for k, v in batch["view1"]["x"].items():
            xs.setdefault(k, []).append(np.asarray(v)[keep])
        for k, v in batch["labels"].items():
            ys.setdefault(k, []).append(np.asarray(v)[keep])
    return (
        {k: np.concatenate(v) for k, v in xs.items()},
        {k: np.concatenate(v) for k, v in ys.items()},
    )


def representations(
    method: Any, params: Any, x: dict[str, np.ndarray], *, batch_size: int = 2048
) -> dict[str, np.ndarray]:
    """Frozen representations of inputs ``x``: ``"embed"`` (what Fig. 1 probes) and the Table 1
    blocks (FactorCL: zs1, zu1, zs2, zu2 of `embed_parts`; others: unimodal z1, z2)."""
    import jax

    from jaxmm.methods.factorcl import FactorCL

    def fn(p, xb):
        view = {"x": xb, "valid": {}}
        out = {"embed": method.embed(p, {"view1": view})}
        if isinstance(method, FactorCL):
            out.update(method.embed_parts(p, {"view1": view}))
        else:
            h = method.module(p).model.encode_unimodal(xb, {}, deterministic=True)
            out.update({"z1": h["x1"], "z2": h["x2"]})
        return out

    fn = jax.jit(fn)
    n = len(next(iter(x.values())))
    chunks: dict[str, list] = {}
    for start in range(0, n, batch_size):
        xb = {k: v[start : start + batch_size] for k, v in x.items()}
        for k, v in fn(params, xb).items():
            chunks.setdefault(k, []).append(np.asarray(v, np.float32))
    return {k: np.concatenate(v) for k, v in chunks.items()}


def probe_label(
    train_z: np.ndarray,
    train_y: np.ndarray,
    test_z: np.ndarray,
    test_y: np.ndarray,
    *,
    seed: int,
    max_iter: int,
    rows: int = 0,
    select: bool = False,
) -> dict[str, float]:
    """Linear-probe test accuracy of the binary label (FactorCL Fig. 1's y-axis), in %.

    `jaxmm.probe.probe` (logistic regression on standardised features) fitted on `rows` randomly
    chosen training rows (0 = all). Without `select`, one L2 strength l2 = 1 / n: the official
    notebook's scikit-learn ``LogisticRegression()`` (C = 1 = 1 / (l2 n)); with it, the strength
    is chosen from `LABEL_L2_GRID` on a stratified hold-out (about 6x the cost).
    """
    from jaxmm import probe as probe_lib

    if 0 < rows < len(train_z):
        keep = np.sort(np.random.default_rng(seed).choice(len(train_z), rows, replace=False))
        train_z, train_y = train_z[keep], train_y[keep]
    res = probe_lib.probe(
        train_z,
        train_y,
        test_z,
        test_y,
        probe_lib.ProbeTask("label", "classification", 2),
        seed=seed,
        max_iter=max_iter,
        l2_grid=LABEL_L2_GRID if select else (1.0 / len(train_z),),
    )
    return {
        "accuracy": 100 * res.metrics["accuracy"],
        "balanced_accuracy": 100 * res.metrics["balanced_accuracy"],
        "chance": 100 * res.chance["accuracy"],
        "l2": res.l2,
    }


def latent_information(
    train_z: np.ndarray,
    train_w: np.ndarray,
    test_z: np.ndarray,
    test_w: np.ndarray,
    *,
    seed: int,
    val_fraction: float = 0.2,
    l2_grid: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Linear-Gaussian lower bound on I(Z; w) in bits for a latent group w of independent
    Gaussian coordinates (see the module docstring), from one ridge probe per coordinate.

    The probe is `jaxmm.probe`'s ridge regression (objective (*) there) on standardised Z, fitted
    for all coordinates at once: with a shared design the multi-output solution is the stack of
    the single-output ones, so each coordinate picks its own L2 strength on a random hold-out of
    the training rows (validation MSE), is refitted on all of them and scored on the test set.

    Returns:
      {"bits": sum_j max(0, 1/2 log2(Var w_j / MSE_j)), "r2": mean test R^2 = 1 - MSE_j /
      Var w_j, "per_dim_bits": [...], "per_dim_r2": [...], "l2": [...]}, with Var w_j the test
      error of the training mean (the best constant predictor).
    """
    import jax

    from jaxmm import probe as probe_lib

    grid = np.asarray(probe_lib.DEFAULT_L2_GRID if l2_grid is None else l2_grid, np.float64)
    fit_idx, val_idx = probe_lib.random_split(len(train_z), val_fraction, jax.random.key(seed))
    xs, mean, std = probe_lib.standardize(train_z[fit_idx])
    xv, _, _ = probe_lib.standardize(train_z[val_idx], mean, std)
    path = probe_lib.fit_ridge_path(xs, train_w[fit_idx], grid)
    pred = np.einsum("nd,ldk->lnk", np.asarray(xv), np.asarray(path.w))
    pred = pred + np.asarray(path.b)[:, None]
    val_mse = np.mean((pred - train_w[val_idx][None]) ** 2, axis=1)  # (L, k)
    # Rank-deficient blocks (FactorCL's heads see 16 latent dims through 384 features) make the
    # float32 Cholesky of the weakest strengths fail; those strengths are simply not eligible.
    val_mse = np.where(np.isfinite(val_mse), val_mse, np.inf)
    # Ties go to the strongest regularisation, as in jaxmm.probe.probe.
    best = grid[len(grid) - 1 - np.argmin(val_mse[::-1], axis=0)]
    xs, mean, std = probe_lib.standardize(train_z)
    xt = np.asarray(probe_lib.standardize(test_z, mean, std)[0])
    mse = np.empty(train_w.shape[1])
    for lam in np.unique(best):
        cols = np.flatnonzero(best == lam)
        fit = probe_lib.fit_ridge(xs, train_w[:, cols], float(lam))
        err = xt @ np.asarray(fit.w) + np.asarray(fit.b) - test_w[:, cols]
        mse[cols] = np.mean(err**2, axis=0)
    var = np.mean((test_w - train_w.mean(axis=0)) ** 2, axis=0)
    ratio = np.maximum(mse / var, 1e-12)
    bits = np.maximum(0.0, -0.5 * np.log2(ratio))
    return {
        "bits": float(bits.sum()),
        "r2": float(np.mean(1.0 - ratio)),
        "per_dim_bits": bits.tolist(),
        "per_dim_r2": (1.0 - ratio).tolist(),
        "l2": best.tolist(),
    }


def train_one(cfg, *, reuse: bool = False):
    """Pre-trains `cfg` from scratch through launch.train; returns (method, final params, reused).

    With `reuse`, a finished checkpoint of exactly this config in the work dir is restored
    instead (`jaxmm.probe_checkpoint.load_run`), e.g. to re-probe without re-training.
    """
    from jaxmm import experiment
    from jaxmm import probe_checkpoint as pc
    from jaxmm.checkpoint import CheckpointError
    from jaxmm.experiments import training

    if reuse:
        try:
            run = pc.load_run(cfg.train.workdir)
        except CheckpointError:
            run = None
        if (
            run is not None
            and run.config.to_dict() == cfg.to_dict()
            and run.step == cfg.train.steps
        ):
            return run.method, run.params, True
        log.info("%s: no finished checkpoint of this config; training", cfg.train.workdir)
    shutil.rmtree(cfg.train.workdir, ignore_errors=True)
    training.prepare(cfg)
    state = training.run(cfg)
    return experiment.build_method(cfg), state.params, False


def _grid(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_fig1(fig1: dict[str, dict[str, dict[str, float]]]) -> str:
    """Rows: methods (and the raw-input reference); columns: ratios; cells: test accuracy %."""
    ratios = sorted({r for per in fig1.values() for r in per}, key=float)
    rows = [("method \\ unique ratio", *ratios)]
    for method, per in fig1.items():
        rows.append(
            (
                METHOD_LABELS.get(method, method),
                *(f"{per[r]['accuracy']:.1f}" if r in per else "-" for r in ratios),
            )
        )
    return _grid(rows)


def format_table1(table1: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Rows: I(Z; w1), I(Z; w2), I(Z; ws); columns: representations; "measured (paper)" bits."""
    cols = [(m, z) for m, reps in table1.items() for z in reps]
    header = ("bits", *(f"{METHOD_LABELS.get(m, m)} {REPR_LABELS.get(z, z)}" for m, z in cols))
    rows = [header]
    for w in LATENTS:
        cells = []
        for m, z in cols:
            paper = PAPER_TABLE1.get(m, {}).get(z, {}).get(w)
            cells.append(
                f"{table1[m][z][w]['bits']:.2f}" + (f" ({paper:.2f})" if paper is not None else "")
            )
        rows.append((f"I(Z;{w})", *cells))
    return _grid(rows)


def format_table1_r2(table1: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Mean test R^2 of the per-coordinate ridge probes (same layout as `format_table1`)."""
    cols = [(m, z) for m, reps in table1.items() for z in reps]
    rows = [("R^2", *(f"{METHOD_LABELS.get(m, m)} {REPR_LABELS.get(z, z)}" for m, z in cols))]
    for w in LATENTS:
        rows.append((w, *(f"{table1[m][z][w]['r2']:.3f}" for m, z in cols)))
    return _grid(rows)


def plot_fig1(fig1: dict[str, dict[str, dict[str, float]]], path: str, title: str) -> None:
    """Accuracy vs. unique ratio, one line per method; the raw-input probe dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, per in fig1.items():
        rs = sorted(per, key=float)
        style = {"linestyle": "--", "color": "grey"} if method == "input" else {"marker": "o"}
        ax.plot(
            [float(r) for r in rs],
            [per[r]["accuracy"] for r in rs],
            label=METHOD_LABELS.get(method, method),
            **style,
        )
    ax.set_xlabel("unique-information ratio (l_1 + l_2) / (l_s + l_1 + l_2)")
    ax.set_ylabel("linear-probe test accuracy (%)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _parse_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"--{what} is empty")
    return items


def plan(args: argparse.Namespace) -> tuple[list[str], dict[str, list[str]]]:
    """(methods, {builder config: what to compute on it ("fig1" / "table1")}); validates args."""
    methods = _parse_list(args.methods, "methods")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    if not (args.fig1 or args.table1):
        args.fig1 = args.table1 = True
    for name in ("epochs", "batch_size", "critic_hidden", "lr", "probe_max_iter"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.probe_rows < 0:
        raise ValueError(f"--probe-rows must be >= 0, got {args.probe_rows}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    todo: dict[str, list[str]] = {}
    if args.table1:  # first: one config, so an interrupted run still has it
        todo[args.table1_config] = ["table1"]
    if args.fig1:
        for r in _parse_list(args.ratios, "ratios"):
            try:
                value = float(r)
            except ValueError:
                raise ValueError(f"--ratios: {r!r} is not a number") from None
            todo.setdefault(ratio_config(value), []).append("fig1")
    return methods, todo


def _ratio_key(builder_config: str) -> str:
    return f"{int(builder_config[len('ratio') :]) / 10:.1f}"


def run(args: argparse.Namespace) -> int:
    """Runs the experiment of `args` (the launch script's namespace); returns the exit code."""
    try:
        methods, todo = plan(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.compile_cache:
        import jax

        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    from jaxmm import experiment

    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()
    fig1: dict[str, dict[str, dict[str, float]]] = {}
    table1: dict[str, dict[str, dict[str, Any]]] = {}
    timings: dict[str, dict[str, float]] = {}
    configs: dict[str, Any] = {}
    for builder_config, jobs in todo.items():
        t0 = time.perf_counter()
        try:
            cfg0 = run_config(methods[0], builder_config, args)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        x_tr, y_tr = load_split(cfg0, cfg0.data.train_split)
        x_te, y_te = load_split(cfg0, cfg0.data.eval_split)
        log.info(
            "%s: %d train / %d test examples loaded in %.0f s",
            builder_config,
            len(y_tr["label"]),
            len(y_te["label"]),
            time.perf_counter() - t0,
        )
        if "fig1" in jobs:
            raw = lambda x: np.concatenate([x["x1"], x["x2"]], axis=1)  # noqa: E731
            fig1.setdefault("input", {})[_ratio_key(builder_config)] = probe_label(
                raw(x_tr),
                y_tr["label"],
                raw(x_te),
                y_te["label"],
                seed=args.seed,
                max_iter=args.probe_max_iter,
                rows=args.probe_rows,
                select=args.probe_select,
            )
        for method in methods:
            key = f"{builder_config}_{method}"
            cfg = experiment.resolve_steps(
                run_config(method, builder_config, args), len(y_tr["label"])
            )
            configs[key] = cfg.to_dict()
            t0 = time.perf_counter()
            mth, params, reused = train_one(cfg, reuse=args.reuse)
            t_train = time.perf_counter() - t0
            t0 = time.perf_counter()
            z_tr = representations(mth, params, x_tr)
            z_te = representations(mth, params, x_te)
            if "fig1" in jobs:
                res = probe_label(
                    z_tr["embed"],
                    y_tr["label"],
                    z_te["embed"],
                    y_te["label"],
                    seed=args.seed,
                    max_iter=args.probe_max_iter,
                    rows=args.probe_rows,
                    select=args.probe_select,
                )
                fig1.setdefault(method, {})[_ratio_key(builder_config)] = res
                log.info("%s: label accuracy %.1f%%", key, res["accuracy"])
            if "table1" in jobs:
                blocks = [z for z in _TABLE1_ORDER if z in z_tr]
                table1[method] = {
                    z: {
                        w: latent_information(z_tr[z], y_tr[w], z_te[z], y_te[w], seed=args.seed)
                        for w in LATENTS
                    }
                    for z in blocks
                }
            timings[key] = {
                "train": t_train,
                "probe": time.perf_counter() - t0,
                "reused_checkpoint": reused,
            }
            log.info(
                "%s: %s in %.0f s, probed in %.0f s",
                key,
                "restored" if reused else "trained",
                t_train,
                timings[key]["probe"],
            )
            with open(os.path.join(args.out, "partial.json"), "w") as f:
                json.dump({"fig1": fig1, "table1": table1, "seconds": timings}, f, indent=2)
    total = time.perf_counter() - t_start
    example = configs[next(iter(configs))]
    length = "fixed steps" if args.steps else f"{args.epochs:g} epochs"
    scale = (
        "tiny smoke scale"
        if args.tiny
        else f"{example['train']['steps']} steps x batch {args.batch_size} ({length}), "
        f"critic hidden {args.critic_hidden}, lr {args.lr:g}"
    )
    out: dict[str, Any] = {
        "scale": scale,
        "paper_table1": PAPER_TABLE1,
        "paper_fig1": PAPER_FIG1,
        "seconds": {"total": total, **timings},
        "configs": configs,
    }
    if fig1:
        table = format_fig1(fig1)
        png = os.path.join(args.out, "fig1.png")
        plot_fig1(fig1, png, f"FactorCL synthetic (Fig. 1) — {scale}")
        out.update(fig1=fig1, fig1_table=table)
        print(
            f"\nFig. 1: linear-probe test accuracy (%) of the label vs. unique ratio\n{scale}\n"
            f"\n{table}\n\nPaper (plot only): {PAPER_FIG1}\nWrote {png}"
        )
    if table1:
        table, r2 = format_table1(table1), format_table1_r2(table1)
        out.update(table1=table1, table1_table=table, table1_r2_table=r2)
        print(
            f"\nTable 1 ({args.table1_config}): linear-Gaussian lower bound on I(Z; w) in bits, "
            f"paper's value in brackets\n{scale}\n\n{table}\n\nMean test R^2 of the "
            f"per-coordinate linear probes\n\n{r2}"
        )
    path = os.path.join(args.out, "results.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nTotal time {total:.0f} s. Wrote {path}")
    return 0
