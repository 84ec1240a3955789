"""A real two-view tabular data set as a .npz, and logistic regression on its raw features.

scikit-learn's `load_digits` (1 797 real 8 x 8 handwritten digits, UCI): view ``a`` = the left
4 columns of each image, view ``b`` = the right 4 columns, each as (N, 32) float features,
``label`` = the digit. The file follows README "Your own data" (no ``split`` array, so a run uses
the seeded stratified 80/20 split); ``--baseline`` fits scikit-learn's multinomial logistic
regression on the concatenated raw features, standardised with training statistics, on exactly
that split (L2 strength picked by 5-fold cross-validation on the training rows).

    python -m launch.digits_npz --out digits.npz --baseline
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def make(out: str) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.astype(np.float32)  # (N, 8, 8), values 0..16
    arrays = {
        "a": images[:, :, :4].reshape(len(images), -1),
        "b": images[:, :, 4:].reshape(len(images), -1),
        "label": d.target.astype(np.int64),
    }
    np.savez(out, **arrays)
    return arrays


def baseline(arrays: dict[str, np.ndarray], seed: int = 0, test_fraction: float = 0.2) -> dict:
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from jaxmm.data import arrays as arrays_lib

    train, test, how = arrays_lib.split_indices(
        arrays, {"label": "classification"}, seed=seed, test_fraction=test_fraction
    )
    x = np.concatenate([arrays["a"], arrays["b"]], axis=1).astype(np.float64)
    mean, std = x[train].mean(0), x[train].std(0)
    x = (x - mean) / np.where(std > 1e-6, std, 1.0)
    y = arrays["label"]
    t0 = time.perf_counter()
    clf = LogisticRegressionCV(Cs=np.logspace(-3, 2, 11), max_iter=5000).fit(x[train], y[train])
    pred = clf.predict(x[test])
    return {
        "split": how,
        "num_train": int(train.size),
        "num_test": int(test.size),
        "accuracy": float(accuracy_score(y[test], pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y[test], pred)),
        "C": float(clf.C_[0]),
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m launch.digits_npz", description=__doc__)
    p.add_argument("--out", default="digits.npz", help="the .npz to write")
    p.add_argument("--baseline", action="store_true", help="logistic regression on raw features")
    args = p.parse_args(argv)
    arrays = make(args.out)
    print(f"Wrote {args.out}: " + ", ".join(f"{k} {v.shape} {v.dtype}" for k, v in arrays.items()))
    if args.baseline:
        print("Logistic regression on the raw standardised features (a, b concatenated):")
        print(json.dumps(baseline(arrays), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
