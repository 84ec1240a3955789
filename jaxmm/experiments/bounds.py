"""MI bounds on a staircase of correlated Gaussians (FactorCL Fig. 3; Poole et al. 2019, Fig. 2).

    python -m launch.bounds --out outputs/bounds                # InfoNCE, NCE-CLUB, CLUB
    python -m launch.bounds --out outputs/bounds --all-bounds   # + NWJ, TUBA, DV, JS, SMILE

x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) eps with rho chosen so that the true MI walks up a
staircase (2, 4, 6, 8, 10 nats by default), fresh samples every step. Each estimator owns a model
and an Adam optimiser and climbs its own objective:

* `infonce`  -- a critic f trained on InfoNCE (van den Oord 2018; Poole et al. Eq. 12). The same
  critic also gives `nce_club`, FactorCL's upper bound (Eq. 11), "for free".
* `club`     -- vCLUB (Cheng et al. 2020, Eq. 9 / the unknown-p(y|x) form) with a Gaussian
  q(y|x) fitted by maximum likelihood.
* `--all-bounds` adds NWJ, TUBA (learned baseline), DV, JS and SMILE (tau = 5), each with its
  own critic trained on its own bound (Poole et al. Eqs. 6-11; Song & Ermon 2020, Eq. 17).

Outputs under --out: `bounds.csv` (one row per step), `bounds.png` (raw estimates faint, EMA of
span 200 bold, true staircase dashed), `summary.csv` (mean and bias over the last 20% of the
steps of each level), `config.json`. The summary table is also printed.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxmm import critics, estimators, progress
from jaxmm.data.gaussian import rho_for_mi, sample_correlated_gaussian

DIMS = (20, 50, 100, 200)


LOWER_BOUNDS = ("nwj", "tuba", "dv", "js", "smile")


LABELS = {
    "infonce": "InfoNCE",
    "nce_club": "NCE-CLUB",
    "club": "CLUB",
    "nwj": "NWJ",
    "tuba": "TUBA",
    "dv": "DV",
    "js": "JS",
    "smile": "SMILE (tau=5)",
}


LATE_FRACTION = 0.2  # summary statistics use the last 20% of the steps of each level


def club_at_true_conditional(mi: float, dim: int) -> float:
    """vCLUB (and NCE-CLUB at the InfoNCE-optimal critic) evaluated with q = p(y|x), in nats.

    With p(y|x) = N(rho x, (1 - rho^2) I): E log p(y|x) = -d/2 log(2 pi (1 - rho^2)) - d/2 and,
    for an independent y', E||y' - rho x||^2 = d (1 + rho^2), so CLUB's population value is
    d (1 + rho^2) / (2 (1 - rho^2)) - d/2 = d rho^2 / (1 - rho^2) >= -d/2 log(1 - rho^2) = I.
    The optimal InfoNCE critic log p(y|x) + c(x) gives the same NCE-CLUB value (c(x) cancels,
    FactorCL Thm. 2). This is where both upper bounds converge when their models are perfect.
    """
    rho2 = rho_for_mi(mi, dim) ** 2
    return dim * rho2 / (1.0 - rho2)


@dataclasses.dataclass(frozen=True)
class Learner:
    """One trained model: how to build it and the objective it maximises.

    `objective(model, x, y)` returns (loss to minimise, {column: estimate}); the estimates are
    computed on the same batch as the gradient, before the update (as in Poole et al.'s colab).
    """

    name: str
    make: Callable[[nnx.Rngs], nnx.Module]
    objective: Callable[[nnx.Module, jax.Array, jax.Array], tuple[jax.Array, dict]]


class _TubaModel(nnx.Module):
    """A critic plus the learned log-baseline a(x_i) of TUBA (Poole et al. 2019, Eq. 7)."""

    def __init__(self, critic: nnx.Module, x_dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.critic = critic
        self.baseline_hidden = nnx.Linear(x_dim, hidden, rngs=rngs)
        self.baseline_out = nnx.Linear(hidden, 1, rngs=rngs)

    def log_baseline(self, x):
        return self.baseline_out(nnx.relu(self.baseline_hidden(x)))[:, 0]


class _SoftplusScores(nnx.Module):
    """softplus(f(x, y)): the critic head of FactorCL's Gaussian notebook (scores kept >= 0)."""

    def __init__(self, critic: nnx.Module):
        self.critic = critic

    def __call__(self, x, y):
        return jax.nn.softplus(self.critic(x, y))


def _make_critic(args, rngs: nnx.Rngs) -> nnx.Module:
    if args.critic == "separable":
        critic = critics.SeparableCritic(
            args.dim,
            args.dim,
            hidden=args.hidden,
            embed_dim=args.embed_dim,
            layers=args.layers,
            rngs=rngs,
        )
    else:
        critic = critics.ConcatCritic(
            args.dim, args.dim, hidden=args.hidden, layers=args.layers, rngs=rngs
        )
    return _SoftplusScores(critic) if args.softplus_scores else critic


def _critic_learner(name: str, bound: Callable[[jax.Array], jax.Array], args) -> Learner:
    def objective(critic, x, y):
        value = bound(critic(x, y))
        return -value, {name: value}

    return Learner(name, lambda rngs: _make_critic(args, rngs), objective)


def build_learners(args) -> list[Learner]:
    """The models of the run, in column order."""

    def infonce_objective(critic, x, y):
        scores = critic(x, y)
        lower = estimators.infonce_lower_bound(scores)
        # NCE-CLUB plugs the InfoNCE critic into CLUB (FactorCL Eq. 11): evaluated, not trained.
        upper = estimators.nce_club_upper_bound(jax.lax.stop_gradient(scores))
        return -lower, {"infonce": lower, "nce_club": upper}

    def club_objective(q, x, y):
        log_q = q.log_likelihood_matrix(x, y)
        # q is fitted by maximum likelihood on the positive pairs (Cheng et al. 2020, Sec. 3.2),
        # and the bound is then read off with q held fixed.
        nll = -jnp.mean(jnp.diagonal(log_q))
        return nll, {"club": estimators.club_upper_bound(jax.lax.stop_gradient(log_q))}

    learners = [
        Learner("infonce", lambda rngs: _make_critic(args, rngs), infonce_objective),
        Learner(
            "club",
            lambda rngs: critics.GaussianConditional(
                args.dim, args.dim, hidden=args.hidden, rngs=rngs
            ),
            club_objective,
        ),
    ]
    if not args.all_bounds:
        return learners

    def tuba_objective(model, x, y):
        value = estimators.tuba_lower_bound(model.critic(x, y), model.log_baseline(x))
        return -value, {"tuba": value}

    learners += [
        _critic_learner("nwj", estimators.nwj_lower_bound, args),
        Learner(
            "tuba",
            lambda rngs: _TubaModel(_make_critic(args, rngs), args.dim, args.hidden, rngs=rngs),
            tuba_objective,
        ),
        _critic_learner("dv", estimators.dv_lower_bound, args),
        _critic_learner("js", estimators.js_lower_bound, args),
        _critic_learner("smile", lambda s: estimators.smile_lower_bound(s, clip=5.0), args),
    ]
    return learners


def columns_for(learners: Sequence[Learner]) -> list[str]:
    cols = []
    for learner in learners:
        cols += ["infonce", "nce_club"] if learner.name == "infonce" else [learner.name]
    return cols


def make_chunk_fn(learners, graphdefs, optimizers, args, chunk: int):
    """A jitted function running `chunk` training steps of every learner with one `lax.scan`.

    `rho` is an argument (not a constant), so every level reuses the same compiled program.
    """

    def one_step(carry, step):
        states, rho, data_key = carry
        # fold_in(step) rather than a carried split: any step's batch is reproducible alone.
        x, y = sample_correlated_gaussian(
            jax.random.fold_in(data_key, step), args.batch_size, args.dim, rho, args.cubic
        )
        new_states, row = {}, {}
        for learner, graphdef, tx in zip(learners, graphdefs, optimizers, strict=True):
            params, rest, opt_state = states[learner.name]

            def loss_fn(p, learner=learner, graphdef=graphdef, rest=rest):
                return learner.objective(nnx.merge(graphdef, p, rest), x, y)

            (_, values), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            new_states[learner.name] = (optax.apply_updates(params, updates), rest, opt_state)
            row.update(values)
        return (new_states, rho, data_key), row

    @jax.jit
    def run_chunk(states, rho, data_key, first_step):
        steps = first_step + jnp.arange(chunk)
        (states, _, _), rows = jax.lax.scan(one_step, (states, rho, data_key), steps)
        return states, rows

    return run_chunk


def _chunk_size(steps_per_level: int, cap: int = 250) -> int:
    """Largest divisor of steps_per_level not above `cap`: one compiled scan length per run."""
    return max(d for d in range(1, min(cap, steps_per_level) + 1) if steps_per_level % d == 0)


def ema(values: np.ndarray, span: float) -> np.ndarray:
    """Bias-corrected exponential moving average (pandas `ewm(span=...).mean()`, adjust=True)."""
    alpha = 2.0 / (span + 1.0)
    out = np.empty(len(values), dtype=np.float64)
    num = den = 0.0
    for t, v in enumerate(values):
        num = (1.0 - alpha) * num + v
        den = (1.0 - alpha) * den + 1.0
        out[t] = num / den
    return out


def summarise(table: dict[str, np.ndarray], columns, mi_levels, steps_per_level):
    """Mean, bias and std of each estimator over the last 20% of the steps of each level."""
    late = max(1, int(round(LATE_FRACTION * steps_per_level)))
    rows = []
    for level, mi in enumerate(mi_levels):
        stop = (level + 1) * steps_per_level
        for col in columns:
            window = table[col][stop - late : stop]
            rows.append(
                {
                    "true_mi": mi,
                    "estimator": col,
                    "mean": float(np.mean(window)),
                    "bias": float(np.mean(window) - mi),
                    "std": float(np.std(window)),
                }
            )
    return rows


def format_summary(rows, columns, mi_levels, dim) -> str:
    by_key = {(r["true_mi"], r["estimator"]): r for r in rows}
    width = 16
    head = (
        f"{'true MI':>8} | "
        + " | ".join(f"{LABELS[c]:>{width}}" for c in columns)
        + f" | {'CLUB at q=p':>11}"
    )
    lines = [head, "-" * len(head)]
    for mi in mi_levels:
        cells = []
        for c in columns:
            r = by_key[(mi, c)]
            cells.append(f"{r['mean']:>7.3f} ({r['bias']:+6.2f})".rjust(width))
        ref = club_at_true_conditional(mi, dim)
        lines.append(f"{mi:>8.2f} | " + " | ".join(cells) + f" | {ref:>11.3f}")
    lines.append(
        "cells: mean over the last 20% of each level's steps (bias = mean - true MI); "
        "CLUB at q=p: d rho^2/(1 - rho^2),"
    )
    lines.append("the closed-form value that CLUB and NCE-CLUB reach with perfect q / critic.")
    return "\n".join(lines)


def plot(table, columns, args, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [["infonce", "nce_club", "club"]] + [[c] for c in columns if c in LOWER_BOUNDS]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.8 * nrows), squeeze=False)
    step, truth = table["step"], table["true_mi"]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for p, (ax, panel) in enumerate(zip(axes.flat, panels, strict=False)):
        top = 1.25 * max(args.mi_levels) + 1.0
        for col in panel:
            colour = colours[columns.index(col) % len(colours)]
            smooth = ema(table[col], args.ema_span)
            ax.plot(step, table[col], color=colour, alpha=0.15, linewidth=0.5)
            ax.plot(step, smooth, color=colour, linewidth=1.5, label=LABELS[col])
            top = max(top, 1.1 * float(np.max(smooth)))
        ax.plot(step, truth, "k--", linewidth=1.2, label="true MI")
        if p == 0:
            ref = [club_at_true_conditional(m, args.dim) for m in truth[:: args.steps_per_level]]
            ax.plot(
                step,
                np.repeat(ref, args.steps_per_level),
                color="grey",
                linestyle="-.",
                linewidth=1.0,
                label="CLUB at q = p(y|x)",
            )
        ax.axhline(
            math.log(args.batch_size),
            color="grey",
            linestyle=":",
            linewidth=1.0,
            label=f"log K = {math.log(args.batch_size):.2f}",
        )
        # Exploding NWJ/DV estimates would flatten every other curve: clip the view, not the data.
        ax.set_ylim(-1.0, min(top, 4.0 * max(args.mi_levels) + 2.0))
        ax.set_xlabel("step")
        ax.set_ylabel("MI (nats)")
        ax.set_title(
            f"Gaussian, dim={args.dim}, {args.critic} critic" if p == 0 else LABELS[panel[0]]
        )
        ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args) -> dict:
    """Trains every learner along the staircase; returns the per-step table and the summary."""
    learners = build_learners(args)
    columns = columns_for(learners)
    init_key, data_key = jax.random.split(jax.random.key(args.seed))
    graphdefs, optimizers, states = [], [], {}
    for k, learner in enumerate(learners):
        model = learner.make(nnx.Rngs(jax.random.fold_in(init_key, k)))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        tx = optax.adam(args.club_lr if learner.name == "club" else args.lr)
        graphdefs.append(graphdef)
        optimizers.append(tx)
        states[learner.name] = (params, rest, tx.init(params))

    chunk = _chunk_size(args.steps_per_level)
    run_chunk = make_chunk_fn(learners, graphdefs, optimizers, args, chunk)
    total = args.steps_per_level * len(args.mi_levels)
    out = {c: [] for c in columns}
    start = time.perf_counter()
    with progress.bar(
        total=total, desc=f"bounds d={args.dim}", disable=args.no_progress, file=sys.stderr
    ) as bar:
        for level, mi in enumerate(args.mi_levels):
            rho = jnp.float32(rho_for_mi(mi, args.dim))
            for first in range(0, args.steps_per_level, chunk):
                step0 = level * args.steps_per_level + first
                states, rows = run_chunk(states, rho, data_key, jnp.int32(step0))
                rows = jax.device_get(rows)
                for c in columns:
                    out[c].append(np.asarray(rows[c], np.float64))
                bar.update(chunk)
                bar.set_postfix({"MI": mi, **{c: f"{out[c][-1][-1]:.2f}" for c in columns[:3]}})
    seconds = time.perf_counter() - start
    table = {c: np.concatenate(v) for c, v in out.items()}
    table["step"] = np.arange(total)
    table["true_mi"] = np.repeat(np.asarray(args.mi_levels, np.float64), args.steps_per_level)
    summary = summarise(table, columns, args.mi_levels, args.steps_per_level)
    return {"table": table, "columns": columns, "summary": summary, "seconds": seconds}


def write_outputs(result, args) -> None:
    os.makedirs(args.out, exist_ok=True)
    table, columns = result["table"], result["columns"]
    with open(os.path.join(args.out, "bounds.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "true_mi", *columns])
        for t in range(len(table["step"])):
            writer.writerow(
                [
                    int(table["step"][t]),
                    f"{table['true_mi'][t]:g}",
                    *(f"{table[c][t]:.6g}" for c in columns),
                ]
            )
    with open(os.path.join(args.out, "summary.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["true_mi", "estimator", "mean", "bias", "std"])
        writer.writeheader()
        writer.writerows(result["summary"])
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(
            {**vars(args), "train_seconds": result["seconds"], "jax_version": jax.__version__},
            f,
            indent=2,
        )
    plot(table, columns, args, os.path.join(args.out, "bounds.png"))


def run_and_report(args) -> dict:
    """`run`, `write_outputs` and the printed summary of ``python -m launch.bounds``."""
    result = run(args)
    write_outputs(result, args)
    print(
        f"\nGaussian d={args.dim}, K={args.batch_size}, {args.critic} critic, "
        f"{args.steps_per_level} steps/level, {result['seconds']:.1f} s of training"
    )
    print(format_summary(result["summary"], result["columns"], args.mi_levels, args.dim))
    print(f"wrote {args.out}/bounds.csv, bounds.png, summary.csv")
    return result
