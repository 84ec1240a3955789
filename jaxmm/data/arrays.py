"""A user's own arrays as a dataset: one .npz file -> modalities, labels, a split, statistics.

The convention (README "Your own data"):

* every float array with >= 2 dimensions is a modality named by its key: (N, d) tabular (MLP
  encoder), (N, T, d) sequence (Transformer encoder), (N, H, W, C) image (CNN); uint8 arrays of
  rank 4 are images too. A bool (N, T) array named ``<key>_valid`` is the step mask of sequence
  ``<key>`` (default: every step valid);
* every 1-D integer or bool array is a classification label (its values are mapped to class
  indices 0..K-1, in sorted order), every 1-D float array a regression target;
* an array named ``split`` holding 0/1 (0 = train) or "train"/"test" gives the split; without it
  a seeded stratified split (by the first classification label) keeps ``test_fraction`` for test;
* each modality is standardised with statistics of the TRAINING rows only (per feature for
  tabular and sequence data, over valid steps; per channel for images); the statistics, the
  class values and the file's SHA-1 are stored in the run's config (`jaxmm.data.inputs.DataConfig
  .stats`), so probes and embeddings of the run apply exactly the same transformation.

`resolve_stats` reads and checks a file once (each problem is ONE ValueError naming the file,
the key and its shape); `ArraysDataset` is the duck-typed stand-in of a TFDS builder
(`info.features`, `info.splits`, `as_data_source(split)`) that `jaxmm.experiment` reads batches
from through the same grain pipelines as the TFDS datasets.

Example:
  >>> stats = resolve_stats("mine.npz", seed=0, test_fraction=0.2)
  >>> ds = ArraysDataset("mine.npz", stats, seed=0, test_fraction=0.2)
  >>> ds.as_data_source("train")[0]          # {"a": standardised float32 (32,), "y": int32 ()}
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "IMAGE",
    "SEQUENCE",
    "SPLIT_KEY",
    "TABULAR",
    "ArraysDataset",
    "ArraysSource",
    "describe",
    "file_sha1",
    "infer_keys",
    "load_npz",
    "resolve_stats",
    "split_indices",
]

TABULAR, SEQUENCE, IMAGE = "tabular", "sequence", "image"
_RANK_KIND = {2: TABULAR, 3: SEQUENCE, 4: IMAGE}
SPLIT_KEY = "split"
_VALID_SUFFIX = "_valid"
_STD_FLOOR = 1e-6  # constant features keep std 1 (they are only centred)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of an .npz file, loaded into memory (no pickled objects)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"data.path {path!r}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise ValueError("not an .npz archive (a single .npy array?)")
            return {k: np.asarray(f[k]) for k in f.files}
    except ValueError as e:
        raise ValueError(f"data.path {path!r} is not a readable .npz file: {e}") from None
    except Exception as e:  # zipfile.BadZipFile, OSError, ...
        raise ValueError(
            f"data.path {path!r} is not a readable .npz file: {type(e).__name__}: {e}"
        ) from None


def file_sha1(path: str | os.PathLike) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _desc(key: str, a: np.ndarray) -> str:
    return f"{key!r} {tuple(a.shape)} {a.dtype}"


def describe(arrays: Mapping[str, np.ndarray]) -> str:
    """ "'a' (2000, 32) float32, 'y' (2000,) int64" — for error messages."""
    return ", ".join(_desc(k, a) for k, a in arrays.items()) or "none"


def _is_modality(a: np.ndarray) -> bool:
    return (a.dtype.kind == "f" and a.ndim >= 2) or (a.dtype == np.uint8 and a.ndim == 4)


def _label_kind(a: np.ndarray) -> str | None:
    if a.ndim != 1:
        return None
    if a.dtype.kind in "biu":
        return "classification"
    if a.dtype.kind == "f":
        return "regression"
    return None


def infer_keys(
    arrays: Mapping[str, np.ndarray],
    where: str,
    *,
    modalities: Sequence[str] = (),
    labels: Sequence[str] = (),
) -> tuple[dict[str, str], dict[str, str]]:
    """({modality: tabular|sequence|image}, {label: classification|regression}) of a file.

    ``modalities`` / ``labels`` select keys (default: every key of that role, in file order).

    Raises:
      ValueError: a key that fits no role, arrays of different N, a selected key missing or of
        the wrong role, no modality, no label (each naming the key and its shape).
    """
    arrays = {k: v for k, v in arrays.items() if k != SPLIT_KEY}
    if not arrays:
        raise ValueError(f"{where} holds no arrays besides 'split'")
    mods, labs = {}, {}
    for key, a in arrays.items():
        if key.endswith(_VALID_SUFFIX) and key[: -len(_VALID_SUFFIX)] in arrays:
            continue  # the step mask of a sequence modality
        if _is_modality(a):
            if a.ndim not in _RANK_KIND:
                raise ValueError(
                    f"{where}: modality {_desc(key, a)} has rank {a.ndim}; modalities are "
                    "(N, d) tabular, (N, T, d) sequences or (N, H, W, C) images"
                )
            mods[key] = _RANK_KIND[a.ndim]
        elif _label_kind(a):
            labs[key] = _label_kind(a)
        elif not (modalities or labels) or key in (*modalities, *labels):
            raise ValueError(
                f"{where}: array {_desc(key, a)} is neither a modality (float, >= 2 dims) nor a "
                "label (1-D integer, bool or float); cast it (e.g. .astype(np.float32)) or leave "
                "it out of the file"
            )
    n = {k: a.shape[0] if a.ndim else None for k, a in arrays.items()}
    first = next(iter(n))
    for key, size in n.items():
        if size is None or size != n[first]:
            raise ValueError(
                f"{where}: arrays have different numbers of examples N (first dimension): "
                f"{_desc(first, arrays[first])} vs {_desc(key, arrays[key])}"
            )
    for role, chosen, found in (
        ("data.modalities", modalities, mods),
        ("data.labels", labels, labs),
    ):
        for key in chosen:
            if key not in arrays:
                raise ValueError(
                    f"{role} names {key!r}, which {where} lacks; its arrays: {describe(arrays)}"
                )
            if key not in found:
                what = "modality (float, >= 2 dims)" if role == "data.modalities" else "label"
                raise ValueError(f"{role} names {_desc(key, arrays[key])}, which is not a {what}")
    if modalities:
        mods = {k: mods[k] for k in modalities}
    if labels:
        labs = {k: labs[k] for k in labels}
    if not mods:
        raise ValueError(
            f"{where} has no modality (a float array with >= 2 dims); arrays: {describe(arrays)}"
        )
    if not labs:
        raise ValueError(
            f"{where} has no label (a 1-D integer / bool array for classification, a 1-D float "
            f"array for regression) to probe; arrays: {describe(arrays)}"
        )
    for key in mods:
        vkey = key + _VALID_SUFFIX
        if vkey in arrays:
            v = arrays[vkey]
            if mods[key] != SEQUENCE or v.dtype != np.bool_ or v.shape != arrays[key].shape[:2]:
                raise ValueError(
                    f"{where}: step mask {_desc(vkey, v)} must be bool {arrays[key].shape[:2]} "
                    f"for sequence {_desc(key, arrays[key])}"
                )
    return mods, labs


def _check_finite(arrays: Mapping[str, np.ndarray], keys: Sequence[str], where: str) -> None:
    for key in keys:
        a = arrays[key]
        if a.dtype.kind != "f":
            continue
        bad = ~np.isfinite(a)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise ValueError(
                f"{where}: {_desc(key, a)} has {int(bad.sum())} NaN/inf value(s) (first in row "
                f"{row}); impute or drop those rows"
            )


def _file_split(split: np.ndarray, n: int, where: str) -> np.ndarray:
    """Bool (N,) is_test from a 'split' array of 0/1, bools or 'train'/'test'."""
    desc = _desc(SPLIT_KEY, split)
    if split.shape != (n,):
        raise ValueError(f"{where}: {desc} must be 1-D with one entry per example (N = {n})")
    if split.dtype.kind in "US":
        values = np.char.lower(split.astype(str))
        ok = np.isin(values, ("train", "test"))
        is_test = values == "test"
    elif split.dtype.kind in "biu":
        ok = np.isin(split, (0, 1))
        is_test = split == 1
    else:
        ok, is_test = np.zeros(n, bool), None
    if not ok.all():
        others = np.unique(split[~ok])[:5].tolist()
        raise ValueError(
            f"{where}: {desc} must hold 0/1 (1 = test) or 'train'/'test'; found other values "
            f"{others}"
        )
    if is_test.all() or not is_test.any():
        raise ValueError(f"{where}: {desc} puts every example in one split; need train and test")
    return is_test


def split_indices(
    arrays: Mapping[str, np.ndarray],
    labels: Mapping[str, str],
    *,
    seed: int,
    test_fraction: float,
    where: str = "data",
) -> tuple[np.ndarray, np.ndarray, str]:
    """(train indices, test indices, how): the file's ``split`` array, else a seeded split.

    The seeded split is stratified by the first classification label (each class keeps
    round(test_fraction * count) test examples, at least one of each class with >= 2 examples
    in train and in test), or uniform when every label is a regression target.
    """
    n = next(iter(arrays[k] for k in labels)).shape[0]
    if SPLIT_KEY in arrays:
        is_test = _file_split(np.asarray(arrays[SPLIT_KEY]), n, where)
        return np.flatnonzero(~is_test), np.flatnonzero(is_test), "file"
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"data.test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    strat = next((k for k, kind in labels.items() if kind == "classification"), None)
    groups = (
        np.zeros(n, np.int64) if strat is None else np.unique(arrays[strat], return_inverse=True)[1]
    )
    test = []
    for g in np.unique(groups):
        idx = rng.permutation(np.flatnonzero(groups == g))
        k = int(round(test_fraction * idx.size))
        if idx.size >= 2:
            k = min(max(k, 1), idx.size - 1)
        test.append(idx[:k])
    is_test = np.zeros(n, bool)
    is_test[np.concatenate(test)] = True
    if is_test.all() or not is_test.any():
        raise ValueError(f"{where}: {n} examples are too few for a train/test split")
    how = f"stratified by {strat!r}" if strat else "uniform"
    return np.flatnonzero(~is_test), np.flatnonzero(is_test), f"seeded {how}"


def _moments(x: np.ndarray, axes: tuple[int, ...], valid: np.ndarray | None):
    x = x.astype(np.float64)
    if valid is not None:  # sequences: statistics over valid steps only
        w = valid.astype(np.float64)[..., None]
        count = np.maximum(w.sum(axes), 1.0)
        mean = (x * w).sum(axes) / count
        var = (((x - mean) ** 2) * w).sum(axes) / count
    else:
        mean, var = x.mean(axes), x.var(axes)
    std = np.sqrt(var)
    return mean, np.where(std > _STD_FLOOR, std, 1.0)


def resolve_stats(
    path: str | os.PathLike,
    *,
    modalities: Sequence[str] = (),
    labels: Sequence[str] = (),
    seed: int = 0,
    test_fraction: float = 0.2,
) -> dict[str, Any]:
    """Reads and checks an .npz file; returns the JSON-ready record a run stores with its config.

    Returns:
      {"path", "sha1", "num_examples", "split", "num_train", "num_test",
       "modalities": {key: {"kind", "shape" (per example), "mean", "std", "valid": bool}},
       "labels": {key: {"kind", "classes" (classification: the original values, sorted)}}}
    """
    path = os.path.abspath(os.fspath(path))
    where = f"data.path {path!r}"
    arrays = load_npz(path)
    mods, labs = infer_keys(arrays, where, modalities=modalities, labels=labels)
    _check_finite(arrays, [*mods, *labs], where)
    train_idx, test_idx, how = split_indices(
        arrays, labs, seed=seed, test_fraction=test_fraction, where=where
    )
    out_mods = {}
    for key, kind in mods.items():
        a = arrays[key]
        valid = arrays.get(key + _VALID_SUFFIX)
        axes = {TABULAR: (0,), SEQUENCE: (0, 1), IMAGE: (0, 1, 2)}[kind]
        mean, std = _moments(a[train_idx], axes, None if valid is None else valid[train_idx])
        out_mods[key] = {
            "kind": kind,
            "shape": list(a.shape[1:]),
            "mean": mean.astype(np.float32).tolist(),
            "std": std.astype(np.float32).tolist(),
            "valid": valid is not None,
        }
    out_labs = {}
    for key, kind in labs.items():
        entry: dict[str, Any] = {"kind": kind}
        if kind == "classification":
            classes = np.unique(arrays[key].astype(np.int64))
            if classes.size < 2:
                raise ValueError(
                    f"{where}: label {_desc(key, arrays[key])} has a single class "
                    f"{classes.tolist()}: nothing to probe"
                )
            entry["classes"] = classes.tolist()
        out_labs[key] = entry
    return {
        "path": path,
        "sha1": file_sha1(path),
        "num_examples": int(next(iter(arrays[k] for k in labs)).shape[0]),
        "split": how,
        "num_train": int(train_idx.size),
        "num_test": int(test_idx.size),
        "modalities": out_mods,
        "labels": out_labs,
    }


@dataclasses.dataclass(frozen=True)
class Feature:
    """What `jaxmm.validation.example_spec` and the probe read of a TFDS feature."""

    shape: tuple[int, ...]
    np_dtype: Any
    num_classes: int | None = None


class ArraysSource:
    """Random-access source (`__len__`, `__getitem__` -> dict of numpy) of one split."""

    def __init__(self, columns: Mapping[str, np.ndarray], index: np.ndarray):
        self.columns, self.index = dict(columns), np.asarray(index)

    def __len__(self) -> int:
        return int(self.index.size)

    def __getitem__(self, i):
        j = self.index[i]
        return {k: v[j] for k, v in self.columns.items()}


class _Split:
    def __init__(self, n: int):
        self.num_examples = n


class _Info:
    def __init__(self, features, splits):
        self.features, self.splits = features, splits


class ArraysDataset:
    """The .npz file of a resolved run as a TFDS-builder look-alike (splits "train", "test").

    Raises:
      ValueError: the file changed since the statistics were computed (its SHA-1 differs), or a
        recorded key is gone.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        stats: Mapping[str, Any],
        *,
        seed: int,
        test_fraction: float,
    ):
        path = os.path.abspath(os.fspath(path))
        where = f"data.path {path!r}"
        sha1 = file_sha1(path) if os.path.isfile(path) else None
        if sha1 != stats.get("sha1"):
            state = "is missing" if sha1 is None else "changed"
            raise ValueError(
                f"{where} {state} since the run's statistics were computed (SHA-1 "
                f"{stats.get('sha1')}); restore that file or train a new run"
            )
        arrays = load_npz(path)
        labels = {k: v["kind"] for k, v in stats["labels"].items()}
        train_idx, test_idx, _ = split_indices(
            arrays, labels, seed=seed, test_fraction=test_fraction, where=where
        )
        self.index = {"train": train_idx, "test": test_idx}
        columns, features = {}, {}
        for key, m in stats["modalities"].items():
            x = (arrays[key].astype(np.float32) - np.float32(m["mean"])) / np.float32(m["std"])
            columns[key] = x.astype(np.float32)
            features[key] = Feature(tuple(x.shape[1:]), np.float32)
            if m.get("valid"):
                columns[key + _VALID_SUFFIX] = arrays[key + _VALID_SUFFIX]
        self.classes = {}
        for key, lab in stats["labels"].items():
            y = arrays[key]
            if lab["kind"] == "classification":
                classes = np.asarray(lab["classes"], np.int64)
                self.classes[key] = classes
                columns[key] = np.searchsorted(classes, y.astype(np.int64)).astype(np.int32)
                features[key] = Feature((), np.int32, len(classes))
            else:
                columns[key] = y.astype(np.float32)
                features[key] = Feature((), np.float32)
        self.columns = columns
        self.info = _Info(features, {s: _Split(i.size) for s, i in self.index.items()})

    def is_prepared(self) -> bool:
        return True

    def as_data_source(self, split: str) -> ArraysSource:
        if split not in self.index:
            raise ValueError(f"arrays data have splits {sorted(self.index)}, not {split!r}")
        return ArraysSource(self.columns, self.index[split])

    def original_labels(self, key: str, y: np.ndarray) -> np.ndarray:
        """Class indices back to the file's values (regression targets unchanged)."""
        return self.classes[key][np.asarray(y)] if key in self.classes else np.asarray(y)
