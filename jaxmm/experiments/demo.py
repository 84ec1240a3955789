"""The main job: CoMM vs. Cross on bimodal Trifeature, redundancy / uniqueness / synergy.

python -m launch.demo                                   # ~15 min on 2 idle CPU cores
python -m launch.demo --probe-every 300                 # + R/U/S against steps (curve.png)
python -m launch.demo --long                            # ~40 min: 4 800 + 1 600 steps

Reproduces the experiment of CoMM (Dufumier et al., ICLR 2025) Sec. 4.1 / Fig. 4 at a small scale:

* Experiment 1 (redundancy, uniqueness): pre-train each method on the unbiased pairs that share
  their shape (`trifeature/px32`), then linear-probe ``shape`` (R) and ``texture1`` /
  ``texture2`` (U) on frozen embeddings; chance 10%.
* Experiment 2 (synergy): pre-train on the *biased* pairs (`trifeature/px32_biased`: every
  training pair respects a texture -> colour mapping), then probe ``synergy`` (does the pair
  respect the mapping?) fitted on unbiased training pairs, tested on the unbiased test pairs;
  reported as balanced accuracy, chance 50%. The probe is fitted class-balanced (10% of the
  pairs are positive); the official code's unweighted fit and the AUROC are reported beside it.
* A control row: CoMM's model probed at its random initialisation on every task.

Each run goes through `launch.train` (config validation, the jaxmm trainer, orbax checkpoints in
``<out>/runs/<method>_<experiment>``) and is then probed from its checkpoint directory alone
(`jaxmm.probe_checkpoint`), exactly as ``python -m launch.probe --workdir ...`` would. Outputs:
``<out>/results.json`` (every probe, timings, the configs, the curves) and ``<out>/rus.png``
(bar chart; ``curve.png`` with ``--probe-every``).

The recipe (docs/results.md, "The recipe"): 32 px images with a 4 px texture period, the
small-image SimCLR views (crop scale 0.5-1, no blur) drawn in the jitted step, a 16-64 channel
AlexNet and a 64-wide fusion, 1 200 steps for R/U and 800 for synergy at batch 64 and AdamW 1e-3.
The paper trains a 512-d AlexNet on 224 px images for 100 epochs
(`launch.train --config comm_trifeature --variant paper`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from typing import Any

PAPER_RUS: dict[str, dict[str, float]] = {
    "cross": {"redundancy": 100.0, "uniqueness": 11.6, "synergy": 50.0},
    "cross_self": {"redundancy": 99.7, "uniqueness": 86.9, "synergy": 50.0},
    "factorcl": {"redundancy": 99.8, "uniqueness": 62.5, "synergy": 46.5},
    "comm": {"redundancy": 99.9, "uniqueness": 87.8, "synergy": 71.9},
}


METHOD_LABELS = {
    "comm": "CoMM",
    "cross": "Cross",
    "cross_self": "Cross+Self",
    "factorcl": "FactorCL",
    "comm-init": "CoMM, random init",
}


GROUPS = ("redundancy", "uniqueness", "synergy")

# The synergy probe is fitted class-balanced (10% of the unbiased pairs are positive; see
# `jaxmm.probe.ProbeTask.class_weight`); the official code's unweighted fit is reported beside it.
SYNERGY_PROBE = {"synergy": "balanced"}


EXPERIMENTS = (
    ("rus", None, ("shape", "texture1", "texture2")),
    ("synergy", "biased", ("synergy",)),
)


_REGISTRY = {
    "comm": "comm_trifeature",
    "cross": "cross_trifeature",
    "cross_self": "crossself_trifeature",
    "factorcl": "factorcl_trifeature",
}


log = logging.getLogger("launch.demo")


def demo_config(method: str, variant: str | None, args: argparse.Namespace):
    """The `ExperimentConfig` of one demo run: the registry's Trifeature config, made smaller."""
    from jaxmm import configs, experiment
    from jaxmm.configs import trifeature

    if method not in _REGISTRY:
        raise ValueError(f"--methods: unknown method {method!r}; choose from {sorted(_REGISTRY)}")
    name = _REGISTRY[method]
    if args.tiny:
        cfg = configs.get_config(name, "smoke")
        if variant == "biased":
            cfg = dataclasses.replace(
                cfg, data=dataclasses.replace(cfg.data, builder_config="px32_biased")
            )
    else:
        channels = tuple(int(c) for c in args.channels.split(","))
        cfg = trifeature.at_width(configs.get_config(name, variant), args.width, channels)
    # The demo's recipe (docs/results.md, "Recipe"): a 4 px texture period at 32 px, and the
    # small-image SimCLR set where the registry uses SimCLR's (crop 0.5-1, no blur).
    mods = tuple(
        dataclasses.replace(m, augment=args.augment) if m.augment == "simclr" else m
        for m in cfg.data.modalities
    )
    overrides = dict(cfg.data.builder_overrides)
    if args.texture_period is not None:
        overrides["texture_period"] = args.texture_period
    # Device augmentation only where there is something to augment (Cross's views are clean).
    on = args.augment_on if any(m.augment != "none" for m in mods) else "host"
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            cfg.data, modalities=mods, builder_overrides=overrides, augment_on=on
        ),
    )
    exp = "synergy" if variant == "biased" else "rus"
    steps = args.synergy_steps if exp == "synergy" and args.synergy_steps else args.steps
    warmup = min(args.warmup, steps // 10) if args.schedule == "cosine" else 0
    workdir = os.path.join(args.out, "runs", f"{method}_{exp}")
    cfg = dataclasses.replace(cfg, name=f"demo_{method}_{exp}", epochs=None)
    return experiment.override(
        cfg,
        [
            f"train.steps={steps}",
            f"train.batch_size={args.batch_size}",
            f"train.workdir={workdir}",
            f"train.ckpt_every={args.probe_every}",
            f"train.keep={1 + steps // args.probe_every if args.probe_every else 1}",
            f"train.log_every={max(1, min(50, steps))}",
            f"train.seed={args.seed}",
            f"train.progress={not args.no_progress}",
            f"data.seed={args.seed}",
            f"data.data_dir={args.data_dir}",
            f"optimizer.lr={args.lr}",
            f"optimizer.schedule={args.schedule}",
            f"optimizer.warmup_steps={warmup}",
        ],
    )


def run_one(cfg, curve: bool = False) -> tuple[dict[str, Any], dict[str, float]]:
    """Pre-trains `cfg` from scratch through launch.train, then probes its checkpoint.

    With `curve`, every checkpoint the run kept (``train.ckpt_every``) is probed too and the
    report gets ``curve``: [{"step", "rus": {group: %}}, ...] (the last entry is the final probe),
    and the timings ``curve_probes``: the seconds spent probing the intermediate checkpoints.
    """
    from jaxmm import checkpoint as ckpt_lib
    from jaxmm import probe_checkpoint as pc
    from jaxmm.experiments import training

    shutil.rmtree(cfg.train.workdir, ignore_errors=True)
    t0 = time.perf_counter()
    training.prepare(cfg)
    training.run(cfg)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    exp = {e[0]: e for e in EXPERIMENTS}["synergy" if cfg.name.endswith("synergy") else "rus"]
    run = pc.load_run(cfg.train.workdir)
    report = probe_report(run, list(exp[2]))
    t_probe = time.perf_counter() - t0
    timings = {"train": t_train, "probe": t_probe, **probe_split(report)}
    if curve:
        t0 = time.perf_counter()
        with ckpt_lib.Checkpointer(pc.checkpoint_dir(cfg.train.workdir), read_only=True) as c:
            steps = sorted(c.all_steps())
        report["curve"] = [
            {
                "step": s,
                "rus": _rus_percent(
                    pc.probe_run(
                        pc.load_run(cfg.train.workdir, s),
                        tasks=list(exp[2]),
                        class_weights=SYNERGY_PROBE,
                    )
                ),
            }
            for s in steps
            if s != run.step
        ] + [{"step": run.step, "rus": _rus_percent(report)}]
        timings["curve_probes"] = time.perf_counter() - t0
    return report, timings


def probe_report(run, tasks: list[str]) -> dict[str, Any]:
    """`probe_checkpoint.probe_run` on `tasks`, the synergy task with the class-balanced probe;
    with synergy, also the official code's unweighted probe, as ``synergy_unweighted``."""
    from jaxmm import probe_checkpoint as pc

    report = pc.probe_run(
        run, tasks=tasks, class_weights=SYNERGY_PROBE, compare_unweighted="synergy" in tasks
    )
    if "synergy" in tasks:
        report["synergy_unweighted"] = report.pop("tasks_unweighted")["synergy"]
    return report


def probe_split(report: dict[str, Any]) -> dict[str, float]:
    """Seconds of a run's probing spent embedding its splits (``embed``) and fitting its linear
    probes (``probe_fits``), from `probe_checkpoint.probe_run`'s report; the rest of the run's
    ``probe`` time is restoring the checkpoint."""
    return {"embed": report["seconds"]["embed"], "probe_fits": report["seconds"]["probe"]}


def format_time_split(timings: dict[str, dict[str, float]], total: float) -> str:
    """One line: where the demo's time went (pre-training, restoring + embedding, probe fits)."""
    train = sum(t["train"] for t in timings.values())
    fits = sum(t.get("probe_fits", 0.0) for t in timings.values())
    embed = sum(t["probe"] for t in timings.values()) - fits
    rest = total - train - embed - fits
    return (
        f"Time split: pre-training {train:.0f} s, restoring + embedding {embed:.0f} s, "
        f"probe fits {fits:.0f} s, other {rest:.0f} s"
    )


def probe_init(cfg) -> dict[str, Any]:
    """Probes `cfg`'s model at its initialisation (the trainer's seeded init, no step taken) on
    every R/U/S task: the random-init row that tells what training added."""
    import jax
    import numpy as np

    from jaxmm import distributed, experiment, validation
    from jaxmm import probe_checkpoint as pc
    from jaxmm import train as train_lib

    method = experiment.build_method(cfg)
    example = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), validation.example_spec(cfg))
    mesh = distributed.make_mesh(jax.local_devices()[:1])
    trainer = train_lib.Trainer(method, experiment.train_config(cfg), example, mesh=mesh)
    run = pc.LoadedRun(cfg, method, trainer.init_state().params, 0, "(initialisation)")
    return probe_report(run, [t for _, _, names in EXPERIMENTS for t in names])


def _rus_percent(report: dict[str, Any], field: str = "metrics") -> dict[str, float]:
    """{group: balanced accuracy in %} of one probe report (the groups it has tasks for).

    field: "metrics" for the probe's value, "chance" for the chance level of the same tasks.
    """
    from jaxmm import probe_checkpoint as pc

    out = {}
    for group, names in pc.RUS_TASKS.items():
        if all(n in report["tasks"] for n in names):
            vals = [report["tasks"][n][field]["balanced_accuracy"] for n in names]
            out[group] = 100 * sum(vals) / len(vals)
    return out


def summarise(reports: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{method: {group: {"value", "chance"}}} in % from the experiments' probe reports."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for key, report in reports.items():
        method = key.rsplit("_", 1)[0]
        chance = _rus_percent(report, "chance")
        for group, value in _rus_percent(report).items():
            out.setdefault(method, {})[group] = {"value": value, "chance": chance[group]}
        syn = report["tasks"].get("synergy", {}).get("metrics", {})
        if "auroc" in syn:
            out[method]["synergy_auroc"] = {"value": 100 * syn["auroc"], "chance": 50.0}
        if "synergy_unweighted" in report:
            out[method]["synergy_unweighted"] = {
                "value": 100 * report["synergy_unweighted"]["metrics"]["balanced_accuracy"],
                "chance": 50.0,
            }
    return out


def format_synergy_note(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    """One line per method: the synergy probe's AUROC and the unweighted (official) probe."""
    lines = []
    for method, groups in summary.items():
        if "synergy_auroc" in groups:
            plain = groups.get("synergy_unweighted", {}).get("value", float("nan"))
            auroc = groups["synergy_auroc"]["value"]
            lines.append(
                f"  {METHOD_LABELS.get(method, method)}: AUROC {auroc:.1f}, balanced accuracy "
                f"of the unweighted probe {plain:.1f}"
            )
    if not lines:
        return ""
    return "Synergy (class-balanced probe in the table; chance AUROC 50):\n" + "\n".join(lines)


def format_summary(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    """Side-by-side table: measured R/U/S (balanced accuracy, %) next to the paper's Fig. 4."""
    rows = [("method", *(f"{g} (paper)" for g in GROUPS))]
    chance = {}
    for method, groups in summary.items():
        cells = []
        for g in GROUPS:
            if g in groups:
                chance[g] = groups[g]["chance"]
                paper = PAPER_RUS.get(method, {}).get(g)
                cells.append(f"{groups[g]['value']:5.1f}" + (f" ({paper:5.1f})" if paper else ""))
            else:
                cells.append("-")
        rows.append((METHOD_LABELS.get(method, method), *cells))
    rows.append(("chance", *(f"{chance[g]:5.1f}" if g in chance else "-" for g in GROUPS)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def plot(summary: dict[str, dict[str, dict[str, float]]], path: str, title: str) -> None:
    """Grouped bars (one group per interaction, one bar per method), chance as dashed lines and
    the paper's values as black markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(summary)
    x = np.arange(len(GROUPS))
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, method in enumerate(methods):
        offs = x - 0.4 + width * (i + 0.5)
        vals = [summary[method].get(g, {}).get("value", np.nan) for g in GROUPS]
        ax.bar(offs, vals, width, label=METHOD_LABELS.get(method, method))
        paper = [PAPER_RUS.get(method, {}).get(g, np.nan) for g in GROUPS]
        ax.scatter(
            offs,
            paper,
            marker="_",
            s=300,
            color="black",
            zorder=3,
            label="paper (CoMM Fig. 4)" if i == 0 else None,
        )
    for j, g in enumerate(GROUPS):
        levels = [summary[m][g]["chance"] for m in methods if g in summary[m]]
        if levels:
            ax.hlines(
                levels[0],
                j - 0.45,
                j + 0.45,
                linestyles="dashed",
                colors="grey",
                label="chance" if j == 0 else None,
            )
    ax.set_xticks(x, ["redundancy\n(shape)", "uniqueness\n(texture1/2)", "synergy\n(mapping)"])
    ax.set_ylabel("linear-probe balanced accuracy (%)")
    ax.set_ylim(0, 118)  # headroom so the legend row clears the paper's ~100% markers
    ax.set_title(_wrap(title), fontsize=8)
    ax.legend(fontsize=8, loc="upper center", ncol=4, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _wrap(title: str, width: int = 80) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(title, width))


def plot_curves(curves: dict[str, list[dict[str, Any]]], path: str, title: str) -> None:
    """One panel per interaction: probe accuracy (%) against pre-training step, one line per
    method (R and U from the unbiased run, S from the biased one), chance dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chance = {"redundancy": 10.0, "uniqueness": 10.0, "synergy": 50.0}
    methods = sorted({key.rsplit("_", 1)[0] for key in curves})
    colour = {m: f"C{i}" for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharex=True)
    for ax, group in zip(axes, GROUPS, strict=True):
        for key, points in sorted(curves.items()):
            pts = [(p["step"], p["rus"][group]) for p in points if group in p["rus"]]
            if pts:
                method = key.rsplit("_", 1)[0]
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                label = METHOD_LABELS.get(method, method) if group == "redundancy" else None
                ax.plot(xs, ys, marker="o", color=colour[method], label=label)
        ax.axhline(chance[group], ls="--", color="grey", lw=1)
        ax.set_title(group, fontsize=9)
        ax.set_xlabel("pre-training step")
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("linear-probe balanced accuracy (%)")
    axes[0].legend(fontsize=8, frameon=False)
    fig.suptitle(_wrap(title, 120), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Runs the experiment of `args` (the launch script's namespace); returns the exit code."""
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        plan = [
            (m, exp, demo_config(m, variant, args))
            for m in methods
            for exp, variant, _ in EXPERIMENTS
        ]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()
    reports, timings = {}, {}
    for method, exp, cfg in plan:
        log.info(
            "%s / %s: pre-training %d steps of batch %d on %s/%s",
            method,
            exp,
            cfg.train.steps,
            cfg.train.batch_size,
            cfg.data.builder,
            cfg.data.builder_config,
        )
        reports[f"{method}_{exp}"], timings[f"{method}_{exp}"] = run_one(
            cfg, curve=bool(args.probe_every)
        )
        t = timings[f"{method}_{exp}"]
        log.info(
            "%s / %s: trained in %.0f s, probed in %.0f s%s",
            method,
            exp,
            t["train"],
            t["probe"],
            f" (+ {t['curve_probes']:.0f} s on earlier checkpoints)" if "curve_probes" in t else "",
        )
        if method == "comm" and exp == "rus" and args.init_row:
            t0 = time.perf_counter()
            reports["comm-init_all"] = probe_init(cfg)
            timings["comm-init_all"] = {
                "train": 0.0,
                "probe": time.perf_counter() - t0,
                **probe_split(reports["comm-init_all"]),
            }
            log.info("comm at initialisation: probed in %.0f s", timings["comm-init_all"]["probe"])
        # Partial results survive an interrupted demo.
        with open(os.path.join(args.out, "partial.json"), "w") as f:
            json.dump({"summary": summarise(reports), "seconds": timings}, f, indent=2)
    summary = summarise(reports)
    total = time.perf_counter() - t_start
    curve_s = sum(t.get("curve_probes", 0.0) for t in timings.values())
    table = format_summary(summary)
    scale = (
        "tiny smoke scale"
        if args.tiny
        else f"px32, texture period {args.texture_period} px, {args.augment}, AlexNet "
        f"{args.channels}, width {args.width}, {args.steps} (synergy "
        f"{args.synergy_steps or args.steps}) steps x batch {args.batch_size}, "
        f"lr {args.lr:g} {args.schedule}"
    )
    print(
        f"\nBimodal Trifeature, linear probes (balanced accuracy %, paper values in brackets: "
        f"224 px, AlexNet-512, 100 epochs)\n{scale}\n\n{table}\n\n"
        f"{format_synergy_note(summary)}\n\nTotal time {total:.0f} s"
        + (f" ({curve_s:.0f} s of it probing earlier checkpoints)" if curve_s else "")
        + f"\n{format_time_split(timings, total)}"
    )
    png = os.path.join(args.out, "rus.png")
    plot(summary, png, f"Bimodal Trifeature R/U/S — {scale}")
    curves = {k: r["curve"] for k, r in reports.items() if "curve" in r}
    if "comm-init_all" in reports:  # CoMM's step 0 is the random-init probe
        init = _rus_percent(reports["comm-init_all"])
        for key, points in curves.items():
            if key.startswith("comm_"):
                start = {g: v for g, v in init.items() if g in points[-1]["rus"]}
                curves[key] = [{"step": 0, "rus": start}, *points]
    if curves:
        plot_curves(curves, os.path.join(args.out, "curve.png"), f"R/U/S against steps — {scale}")
    result = {
        "summary": summary,
        "paper": PAPER_RUS,
        "table": table,
        "scale": scale,
        "seconds": {"total": total, **timings},
        "reports": reports,
        "curves": curves,  # {run: [{"step", "rus": {group: %}}]}, CoMM's from step 0
        "configs": {f"{m}_{e}": c.to_dict() for m, e, c in plan},
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
    runs = os.path.join(args.out, "runs")
    print(f"Wrote {os.path.join(args.out, 'results.json')} and {png}; checkpoints in {runs}/")
    return 0
