"""Seconds and accuracy of the demo's linear probes, on synthetic stand-ins for its embeddings.

    python -m launch.bench_probe                       # demo shapes: 10 000 x 64 train, 4 096 test
    python -m launch.bench_probe --repeats 3 --train 4000

The demo (`launch.demo`) probes each run's frozen embeddings on four Trifeature tasks: ``shape``
(redundancy, close to separable), ``texture1`` / ``texture2`` (uniqueness: weak signal, 10
classes) and ``synergy`` (binary, weak). This script draws Gaussian class-conditional embeddings
of the same sizes with correlated features (a random mixing matrix, as in a trained encoder's
output) and a signal strength per task chosen to land near the demo's accuracies, then runs
`jaxmm.probe.probe_many` with the default L2 grid. It prints, per repeat, the wall time (the first
repeat includes compilation) and each task's test balanced accuracy, L2 chosen and final fit's
iteration count / the largest of the L2 path's. Only the public API is used, so the same command
times an older checkout (``PYTHONPATH=<old tree> python -m launch.bench_probe``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

# (task, classes, signal): class means scaled by `signal` against unit noise.
TASKS = (("shape", 10, 2.5), ("texture1", 10, 0.35), ("texture2", 10, 0.3), ("synergy", 2, 0.2))


def synthetic_embeddings(n_train: int, n_test: int, dim: int, seed: int = 0):
    """``(x_train, labels_train, x_test, labels_test)`` with one label per task of `TASKS`."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    z = rng.normal(size=(n, dim))
    labels = {}
    for name, k, signal in TASKS:
        y = rng.integers(0, k, n)
        means = rng.normal(size=(k, dim)) / np.sqrt(dim)
        z += signal * np.sqrt(dim) * means[y] / 3
        labels[name] = y
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim) + np.eye(dim)
    x = (z @ mix).astype(np.float32)
    tr = {k: v[:n_train] for k, v in labels.items()}
    te = {k: v[n_train:] for k, v in labels.items()}
    return x[:n_train], tr, x[n_train:], te


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m launch.bench_probe", description=__doc__)
    p.add_argument("--train", type=int, default=10_000, help="training rows")
    p.add_argument("--test", type=int, default=4_096, help="test rows")
    p.add_argument("--dim", type=int, default=64, help="embedding dimension")
    p.add_argument("--repeats", type=int, default=2, help="timed repeats (first one compiles)")
    p.add_argument("--seed", type=int, default=0, help="data seed")
    args = p.parse_args(argv)

    from jaxmm import probe

    x_tr, y_tr, x_te, y_te = synthetic_embeddings(args.train, args.test, args.dim, args.seed)
    tasks = [probe.ProbeTask(name, "classification", k) for name, k, _ in TASKS]
    times = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        res = probe.probe_many(x_tr, y_tr, x_te, y_te, tasks)
        times.append(time.perf_counter() - t0)
        cells = [
            f"{n} {100 * v.metrics['balanced_accuracy']:.1f}% l2={v.l2:.0e} "
            f"it={v.fit_info.get('num_iter')}/{max(v.fit_info.get('path_num_iter', [0]))}"
            for n, v in res.items()
        ]
        print(f"repeat {r}: {times[-1]:6.1f} s  " + "  ".join(cells), flush=True)
    later = times[1:] or times
    print(
        f"first (with compilation) {times[0]:.1f} s, "
        f"median of the rest {statistics.median(later):.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
