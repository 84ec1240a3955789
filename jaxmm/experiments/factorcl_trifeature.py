"""FactorCL on the demo's bimodal Trifeature recipe, trained past the demo's steps (issue 26, 5).

The four-method demo (`jaxmm.experiments.demo`, ``--methods comm,cross,cross_self,factorcl``)
stops FactorCL at 1 200 steps (R/U) and 800 (synergy) with its redundancy still climbing. This
module trains the *same* run (the demo's `demo_config`, so the same views, encoders, critic
width, batch and AdamW) for longer, keeps a checkpoint every ``ckpt_every`` steps, and probes
the checkpoints with the demo's own probe (`demo.probe_report`: the same tasks, the class-balanced
synergy probe), so one long run gives R/U/S against steps. The learning rate is constant, so the
first 1 200 steps of a longer run are the demo's run.

    python -m launch.factorcl_trifeature train --steps 4800 --ckpt-every 300 --out DIR
    python -m launch.factorcl_trifeature probe --out DIR --steps 1200,2400,3600,4800
    python -m launch.factorcl_trifeature report --out DIR [DIR2 ...] --png curve.png

``probe`` can run while ``train`` is still writing checkpoints: it probes the requested steps
that exist and are not yet in ``DIR/curve_<experiment>.json``, and appends them there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from typing import Any

from jaxmm.experiments import demo

log = logging.getLogger(__name__)

METHOD = "factorcl"
# The demo's steps (R/U, synergy) and FactorCL's row of CoMM Fig. 4.
DEMO_STEPS = {"rus": 1200, "synergy": 800}
PAPER = demo.PAPER_RUS[METHOD]
EXPERIMENTS = {name: (variant, tasks) for name, variant, tasks in demo.EXPERIMENTS}


def run_config(demo_args: argparse.Namespace, experiment: str):
    """The demo's FactorCL config of `experiment` ("rus" or "synergy") for `demo_args` (the
    namespace of ``launch.demo``: steps, lr, out, ``probe_every`` = checkpoint interval)."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment {experiment!r}: choose from {sorted(EXPERIMENTS)}")
    return demo.demo_config(METHOD, EXPERIMENTS[experiment][0], demo_args)


def workdir(out: str, experiment: str) -> str:
    """Where `run_config` puts the run of `experiment` under `out` (the demo's layout)."""
    return os.path.join(out, "runs", f"{METHOD}_{experiment}")


def curve_path(out: str, experiment: str) -> str:
    return os.path.join(out, f"curve_{experiment}.json")


def train(cfg, out: str, experiment: str) -> float:
    """Trains `cfg` through launch.train's code (resuming a checkpoint in its work dir, e.g. to
    extend a run to more steps); records the wall seconds in ``out/train_<experiment>.json``."""
    from jaxmm.experiments import training

    training.prepare(cfg)
    t0 = time.perf_counter()
    training.run(cfg)
    seconds = time.perf_counter() - t0
    path = os.path.join(out, f"train_{experiment}.json")
    runs = _read(path, [])
    runs.append({"steps": cfg.train.steps, "seconds": seconds, "lr": cfg.optimizer.lr})
    _write(path, runs)
    return seconds


def checkpoint_steps(out: str, experiment: str) -> list[int]:
    from jaxmm import checkpoint as ckpt_lib
    from jaxmm import probe_checkpoint as pc

    with ckpt_lib.Checkpointer(pc.checkpoint_dir(workdir(out, experiment)), read_only=True) as c:
        return sorted(c.all_steps())


def probe_steps(
    out: str, experiment: str, steps: list[int] | None = None, tasks: list[str] | None = None
) -> list[dict]:
    """Probes the checkpoints at `steps` (None: all) that exist and whose point in the curve file
    lacks a group of `tasks` (None: the experiment's tasks), as the demo probes its final
    checkpoint; returns the whole curve, sorted by step.

    Each point: {"step", "rus": {group: balanced accuracy %}, "seconds": probe s (summed over
    the calls that made it), and for synergy "synergy_auroc" / "synergy_unweighted" in %}.
    """
    from jaxmm import probe_checkpoint as pc

    tasks = list(tasks or EXPERIMENTS[experiment][1])
    groups = {g for g, names in pc.RUS_TASKS.items() if set(names) <= set(tasks)}
    path = curve_path(out, experiment)
    points = {p["step"]: p for p in _read(path, [])}
    have = checkpoint_steps(out, experiment)
    todo = [
        s
        for s in (have if steps is None else steps)
        if s in have and not groups <= set(points.get(s, {}).get("rus", {}))
    ]
    for s in todo:
        t0 = time.perf_counter()
        report = demo.probe_report(pc.load_run(workdir(out, experiment), s), tasks)
        point = points.get(s, {"step": s, "rus": {}})
        point["rus"] = {**point["rus"], **demo._rus_percent(report)}
        summary = demo.summarise({f"{METHOD}_{experiment}": report}).get(METHOD, {})
        for extra in ("synergy_auroc", "synergy_unweighted"):
            if extra in summary:
                point[extra] = summary[extra]["value"]
        point["seconds"] = point.get("seconds", 0.0) + time.perf_counter() - t0
        points[s] = point
        log.info("%s step %d: %s (probed in %.0f s)", experiment, s, point["rus"], point["seconds"])
        _write(path, sorted(points.values(), key=lambda p: p["step"]))
    return sorted(points.values(), key=lambda p: p["step"])


def gains(points: list[dict], group: str) -> list[float | None]:
    """Per point, the change of `group` since the previous point (None for the first)."""
    vals = [p["rus"].get(group) for p in points]
    return [None] + [
        None if a is None or b is None else b - a for a, b in zip(vals, vals[1:], strict=False)
    ]


def plateau_step(points: list[dict], group: str, tol: float) -> int | None:
    """The first step from which every later probe of `group` stays within `tol` points of the
    last one; None when only the last point qualifies (no plateau seen yet)."""
    pts = [(p["step"], p["rus"][group]) for p in points if group in p["rus"]]
    if len(pts) < 2:
        return None
    last = pts[-1][1]
    first = len(pts) - 1
    while first > 0 and abs(pts[first - 1][1] - last) <= tol:
        first -= 1
    return None if first == len(pts) - 1 else pts[first][0]


def format_table(curves: dict[str, dict[str, list[dict]]]) -> str:
    """Markdown: one row per (label, step) with R, U (rus runs) and S (synergy runs)."""
    rows = [
        "| run | step | redundancy | uniqueness | synergy | probe s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, runs in curves.items():
        for experiment, points in runs.items():
            for p in points:
                cells = [
                    f"{p['rus'][g]:.1f}" if g in p["rus"] else ""
                    for g in ("redundancy", "uniqueness", "synergy")
                ]
                rows.append(
                    f"| {label} {experiment} | {p['step']} | "
                    + " | ".join(cells)
                    + f" | {p.get('seconds', 0):.0f} |"
                )
    paper = " | ".join(f"{PAPER[g]:.1f}" for g in ("redundancy", "uniqueness", "synergy"))
    rows.append(f"| paper (CoMM Fig. 4, 100 epochs) | | {paper} | |")
    return "\n".join(rows)


def plot(curves: dict[str, dict[str, list[dict]]], path: str, title: str) -> None:
    """One panel per interaction: probe accuracy against step per run label, the paper's value
    as a dotted line, chance dashed, the demo's stopping step as a vertical line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chance = {"redundancy": 10.0, "uniqueness": 10.0, "synergy": 50.0}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    for ax, group in zip(axes, demo.GROUPS, strict=True):
        experiment = "synergy" if group == "synergy" else "rus"
        for i, (label, runs) in enumerate(curves.items()):
            pts = [
                (p["step"], p["rus"][group]) for p in runs.get(experiment, []) if group in p["rus"]
            ]
            if pts:
                ax.plot(
                    [x for x, _ in pts], [y for _, y in pts], marker="o", color=f"C{i}", label=label
                )
        ax.axhline(PAPER[group], ls=":", color="black", lw=1, label="paper (CoMM Fig. 4)")
        ax.axhline(chance[group], ls="--", color="grey", lw=1, label="chance")
        ax.axvline(DEMO_STEPS[experiment], ls="-", color="grey", lw=0.6, alpha=0.6)
        ax.set_title(
            f"{group} ({'biased' if experiment == 'synergy' else 'unbiased'} pairs)", fontsize=9
        )
        ax.set_xlabel("pre-training step (batch 64)")
        ax.set_ylim(0, 105)
    axes[0].set_ylabel("linear-probe balanced accuracy (%)")
    axes[0].legend(fontsize=7, frameon=False, loc="lower right")
    fig.suptitle(demo._wrap(title, 120), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load_curves(outs: list[str], labels: list[str]) -> dict[str, dict[str, list[dict]]]:
    """{label: {experiment: points}} from the curve files of each output directory."""
    curves = {}
    for out, label in zip(outs, labels, strict=True):
        runs = {e: _read(curve_path(out, e), []) for e in EXPERIMENTS}
        curves[label] = {e: pts for e, pts in runs.items() if pts}
    return curves


def _read(path: str, default: Any) -> Any:
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def _write(path: str, value: Any) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
    os.replace(tmp, path)
