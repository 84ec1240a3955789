"""Grain input pipelines: random-access source -> augmented multi-view batches -> device arrays.

Training (`train_dataset` / `train_iterator`)::

    source --MapDataset.source--> .seed(seed) --shuffle--> .repeat() (reshuffled every epoch)
      --random_map(TwoViews)--> [process_index::process_count] --batch(B / process_count)
      --to_iter_dataset--> (optional) mp_prefetch(num_workers)

* Augmentations run BEFORE the per-process slice, so their per-element seed comes from the global
  position in the shuffled stream: no two hosts ever reuse an augmentation draw.
* The slice interleaves the global stream: global batch b is exactly the union over processes of
  their local batch b, and every epoch is partitioned between processes.
* Batching happens on the MapDataset, so each worker process builds whole batches and
  `mp_prefetch` yields the same batches, in the same order, as the single-process iterator.
* The iterator (`grain.DatasetIterator`) is checkpointable: `get_state()` / `set_state()`, or
  through orbax with grain's handler, e.g. inside a CheckpointManager::

        mngr.save(step, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        mngr.restore(step, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(it)))

  Each process writes its own `process_<i>-of-<n>.json`; training resumes on the exact next batch.

Evaluation (`eval_dataset`): no augmentation, one view, no shuffle, no repeat. By default the
dataset is padded (with copies of its first examples) to a whole number of global batches, and
every batch carries `"mask"`: bool (B,), False on padding, so all processes run the same number of
equal-sized steps and metrics ignore the padding. With `pad=False` (single process only) the last
batch is simply smaller and its mask is all True.

Batch contract (see the project README)::

    {"view1": {"x": {modality: float32 (B, ...)}, "valid": {seq_modality: bool (B, T)}},
     "view2": {...},                       # training with num_views=2
     "labels": {task: int32 (B,) | float32 (B,) | float32 (B, k)},
     "mask": bool (B,)}                    # evaluation only

Images are float32 NHWC scaled to [0, 1] (uint8 / 255), augmented, then normalised per channel
with the modality's mean/std. Token ids stay int32 (B, T). Every sequence modality (time series,
tokens) has an entry in "valid": the example's "<modality>_valid" mask, or all True if absent.
Per-view order: joint (multimodal) augmentations first, then each modality's list in order.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import jax
import numpy as np

from jaxmm.data import augment as aug_lib

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_SEQUENCE_KINDS = (aug_lib.TIME_SERIES, aug_lib.TOKENS)


@dataclasses.dataclass(frozen=True)
class ModalitySpec:
    """How one example field becomes a model input."""

    kind: str  # one of augment.KINDS: "image" | "time_series" | "tabular" | "tokens"
    augment: Sequence[tuple[str, Mapping[str, Any]]] = ()  # (registry name, kwargs), in order
    mean: Sequence[float] = IMAGENET_MEAN  # images only: per-channel mean after scaling to [0, 1]
    std: Sequence[float] = IMAGENET_STD  # images only: per-channel std after scaling to [0, 1]

    def __post_init__(self):
        if self.kind not in aug_lib.KINDS:
            raise ValueError(f"modality kind must be one of {aug_lib.KINDS}, got {self.kind!r}")
        if self.kind == aug_lib.IMAGE and (
            len(self.mean) < 1 or len(self.std) != len(self.mean) or min(self.std) <= 0
        ):
            raise ValueError(
                f"image mean/std need one value per channel, std > 0; got {self.mean}, {self.std}"
            )


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Which example fields are modalities (and how to augment them) and which are labels."""

    modalities: Mapping[str, ModalitySpec]  # example field -> spec, in model input order
    labels: Sequence[str] = ()  # example fields passed through to batch["labels"]
    joint_augment: Sequence[tuple[str, Mapping[str, Any]]] = ()  # multi_drop / multi_crop

    def __post_init__(self):
        if not self.modalities:
            raise ValueError("DataSpec.modalities is empty")
        overlap = set(self.modalities) & set(self.labels)
        if overlap:
            raise ValueError(f"fields {sorted(overlap)} are both modalities and labels")
        # Build once here so that unknown names and misplaced augmentations fail at config time.
        self.build()

    def build(self):
        """Returns ({modality: [Augmentation]}, [JointAugmentation]), validated against kinds."""
        per_modality = {}
        for name, mod in self.modalities.items():
            augs = []
            for aug_name, kwargs in mod.augment:
                aug = aug_lib.make_augmentation(aug_name, **dict(kwargs))
                if not isinstance(aug, aug_lib.Augmentation) or mod.kind not in aug.kinds:
                    raise ValueError(
                        f"augmentation {aug_name!r} does not apply to {mod.kind} modality {name!r}"
                    )
                augs.append(aug)
            per_modality[name] = augs
        joint = []
        for aug_name, kwargs in self.joint_augment:
            aug = aug_lib.make_augmentation(aug_name, **dict(kwargs))
            if not isinstance(aug, aug_lib.JointAugmentation):
                raise ValueError(
                    f"joint_augment entry {aug_name!r} is not a multimodal "
                    "augmentation (use multi_drop / multi_crop)"
                )
            bad = [
                m
                for m in aug.modalities
                if self.modalities.get(m, ModalitySpec(aug_lib.IMAGE)).kind not in _SEQUENCE_KINDS
            ]
            if bad:
                raise ValueError(f"{aug_name!r} needs sequence modalities of this spec, got {bad}")
            joint.append(aug)
        return per_modality, joint


def trifeature_spec(
    augment: str = "simclr",
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> DataSpec:
    """Spec for the bimodal Trifeature examples ("image1", "image2" + six int labels).

    augment: "simclr" (SimCLR set on both images, CoMM Sec. 4.1 / App. B.2), "unique" (SimCLR on
    image1, FactorCL's unique augmentation -- no cropping -- on image2) or "none".
    """
    from jaxmm.data import presets as presets_lib  # the one preset table

    pairs = {
        "simclr": ("simclr", "simclr"),
        "unique": ("simclr", "unique"),
        "none": ("none", "none"),
    }
    if augment not in pairs:
        raise ValueError(f"trifeature augment must be one of {sorted(pairs)}, got {augment!r}")
    a1, a2 = (presets_lib.host(aug_lib.IMAGE, p) for p in pairs[augment])
    return DataSpec(
        modalities={
            "image1": ModalitySpec("image", a1, mean, std),
            "image2": ModalitySpec("image", a2, mean, std),
        },
        labels=("shape", "texture1", "texture2", "color1", "color2", "synergy"),
    )


# ----------------------------------------------------------------------------------------------
# Per-example transforms.
# ----------------------------------------------------------------------------------------------


def _as_label(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind in "biu":
        return arr.astype(np.int32)
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    raise ValueError(f"label {name!r} must be numeric, got dtype {arr.dtype}")


class _Prepare:
    """Shared by training and evaluation: validate an example and apply one view's transforms."""

    def __init__(self, spec: DataSpec):
        self.spec = spec
        self.per_modality, self.joint = spec.build()

    def inputs(self, example: Mapping[str, Any]):
        """Example -> (xs, valids, labels) with images float32 in [0, 1]."""
        missing = [k for k in (*self.spec.modalities, *self.spec.labels) if k not in example]
        if missing:
            raise ValueError(f"example is missing fields {missing}; has {sorted(example)}")
        xs, valids = {}, {}
        for name, mod in self.spec.modalities.items():
            x = np.asarray(example[name])
            if mod.kind == aug_lib.IMAGE:
                if x.ndim != 3 or x.shape[-1] != len(mod.mean):
                    raise ValueError(
                        f"image {name!r} must be (H, W, {len(mod.mean)}), got shape {x.shape}"
                    )
                x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
            elif mod.kind == aug_lib.TOKENS:
                if x.ndim != 1:
                    raise ValueError(f"tokens {name!r} must be (T,), got shape {x.shape}")
                x = x.astype(np.int32)
            elif mod.kind == aug_lib.TIME_SERIES:
                if x.ndim != 2:
                    raise ValueError(f"time series {name!r} must be (T, d), got shape {x.shape}")
                x = x.astype(np.float32)
            else:
                if x.ndim != 1:
                    raise ValueError(f"tabular {name!r} must be (d,), got shape {x.shape}")
                x = x.astype(np.float32)
            xs[name] = x
            if mod.kind in _SEQUENCE_KINDS:
                v = example.get(f"{name}_valid")
                v = np.ones(x.shape[0], bool) if v is None else np.asarray(v, bool)
                if v.shape != x.shape[:1]:
                    raise ValueError(f"{name}_valid must have shape {x.shape[:1]}, got {v.shape}")
                valids[name] = v
        labels = {k: _as_label(k, example[k]) for k in self.spec.labels}
        return xs, valids, labels

    def view(self, xs, valids, rng: np.random.Generator | None):
        """One view; no augmentation when rng is None. Images are normalised last."""
        if rng is not None:
            for aug in self.joint:
                xs, valids = aug(xs, valids, rng)
        out_x, out_v = {}, {}
        for name, mod in self.spec.modalities.items():
            x, v = xs[name], valids.get(name)
            if rng is not None:
                for aug in self.per_modality[name]:
                    x, v = aug(x, v, rng)
            if mod.kind == aug_lib.IMAGE:
                x = (x - np.asarray(mod.mean, np.float32)) / np.asarray(mod.std, np.float32)
            out_x[name] = x.astype(np.int32 if mod.kind == aug_lib.TOKENS else np.float32)
            if v is not None:
                out_v[name] = v
        return {"x": out_x, "valid": out_v}


class MultiViewAugment(grain.transforms.RandomMap):
    """Example -> {"view1", ..., "view<num_views>", "labels"}: independently augmented views."""

    def __init__(self, spec: DataSpec, num_views: int = 2):
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        self.prepare = _Prepare(spec)
        self.num_views = num_views

    def random_map(self, element, rng: np.random.Generator):
        xs, valids, labels = self.prepare.inputs(element)
        out = {f"view{i + 1}": self.prepare.view(xs, valids, rng) for i in range(self.num_views)}
        out["labels"] = labels
        return out


class EvalView(grain.transforms.Map):
    """(example, is_real) -> {"view1", "labels", "mask"} without augmentation."""

    def __init__(self, spec: DataSpec):
        self.prepare = _Prepare(spec)

    def map(self, element):
        example, is_real = element
        xs, valids, labels = self.prepare.inputs(example)
        return {
            "view1": self.prepare.view(xs, valids, None),
            "labels": labels,
            "mask": np.asarray(is_real, bool),
        }


class _PaddedSource:
    """Random-access source of (example, is_real); indices >= len(source) repeat from the start."""

    def __init__(self, source, length: int):
        self.source, self.length, self.n = source, length, len(source)

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        return self.source[i % self.n], i < self.n


# ----------------------------------------------------------------------------------------------
# Datasets and iterators.
# ----------------------------------------------------------------------------------------------


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    if not 0 <= pi < pc:
        raise ValueError(f"need 0 <= process_index < process_count, got {pi}, {pc}")
    return pi, pc


def _local_batch(batch_size: int, pc: int) -> int:
    if batch_size < 1 or batch_size % pc:
        raise ValueError(
            f"global batch_size {batch_size} must be a positive multiple of process_count {pc}"
        )
    return batch_size // pc


def _check_source(source) -> int:
    try:
        n = len(source)
    except TypeError as e:
        raise ValueError(
            f"source must be random access (__len__/__getitem__), got {type(source)}"
        ) from e
    if n == 0:
        raise ValueError("source is empty")
    return n


# jaxmm.data.builders imports each TFDS builder file as a private top-level module
# ("jaxmm_datasets_<name>"); grain's worker processes are spawned, cannot import that name, and so
# cannot unpickle a data source that refers to the builder. Workers re-load those modules first.
_BUILDER_MODULE_PREFIX = "jaxmm_datasets_"


def _load_builder_modules(names: Sequence[str], worker_index: int, worker_count: int) -> None:
    del worker_index, worker_count
    from jaxmm.data import builders

    for name in names:
        builders.load_module(name)


def train_dataset(
    source,
    spec: DataSpec,
    *,
    batch_size: int,
    seed: int,
    num_views: int = 2,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.MapDataset:
    """Infinite, shuffled, augmented, batched dataset of this process's share of the data.

    Args:
      source: random-access source (`__len__`, `__getitem__`) of dict-of-numpy examples.
      spec: modalities, labels and augmentations.
      batch_size: GLOBAL batch size; each process yields batch_size // process_count examples.
      seed: pipeline seed (shuffle order of every epoch and all augmentation draws).
      num_views: independently augmented views per example (2 for CoMM / FactorCL / SimCLR).
      process_index, process_count: default to jax.process_index() / jax.process_count().

    Returns:
      A `grain.MapDataset` whose element k is this process's k-th batch (see module doc).
    """
    _check_source(source)
    pi, pc = _process(process_index, process_count)
    local = _local_batch(batch_size, pc)
    ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat()
    ds = ds.random_map(MultiViewAugment(spec, num_views))
    return ds[pi::pc].batch(local, drop_remainder=True)


def train_iterator(
    source,
    spec: DataSpec,
    *,
    batch_size: int,
    seed: int,
    num_views: int = 2,
    num_workers: int = 0,
    num_threads: int = 2,
    prefetch_batches: int = 4,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.DatasetIterator:
    """Checkpointable iterator over `train_dataset(...)` batches.

    num_workers > 0 builds batches in that many worker processes (`mp_prefetch`); the batches
    are identical to num_workers = 0. num_threads / prefetch_batches set the read threads and the
    number of batches each reader keeps ahead.
    """
    ds = train_dataset(
        source,
        spec,
        batch_size=batch_size,
        seed=seed,
        num_views=num_views,
        process_index=process_index,
        process_count=process_count,
    )
    it_ds = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_batches)
    )
    if num_workers > 0:
        from absl import flags

        # grain 0.2.18's mp_prefetch reads absl flags (e.g. its debug options) when it starts the
        # workers; outside absl.app.run (scripts, notebooks, pytest) they are unparsed and reading
        # them raises UnparsedFlagAccessError.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        builder_names = sorted(
            m[len(_BUILDER_MODULE_PREFIX) :]
            for m in list(sys.modules)
            if m.startswith(_BUILDER_MODULE_PREFIX)
        )
        it_ds = it_ds.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=num_workers),
            worker_init_fn=functools.partial(_load_builder_modules, builder_names),
        )
    return iter(it_ds)


def eval_dataset(
    source,
    spec: DataSpec,
    *,
    batch_size: int,
    pad: bool = True,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.MapDataset:
    """One pass, in order, without augmentation; batches {"view1", "labels", "mask"}.

    pad=True: the data are padded to ceil(N / batch_size) global batches; "mask" is False on the
    padding, so every process yields the same number of batches of batch_size // process_count.
    pad=False (single process only): the last batch keeps the N % batch_size leftover examples.
    """
    n = _check_source(source)
    pi, pc = _process(process_index, process_count)
    local = _local_batch(batch_size, pc)
    if not pad and pc > 1:
        raise ValueError(
            "eval_dataset(pad=False) would give processes unequal batch counts; "
            "use pad=True with several processes"
        )
    length = math.ceil(n / batch_size) * batch_size if pad else n
    ds = grain.MapDataset.source(_PaddedSource(source, length)).map(EvalView(spec))
    return ds[pi::pc].batch(local, drop_remainder=False)


def to_global_arrays(batch, sharding: jax.sharding.Sharding):
    """Places this process's batch on the data-parallel mesh as global jax.Arrays.

    Every leaf is split along its leading (batch) axis according to `sharding`, e.g.
    `NamedSharding(mesh, P("data"))`; the global batch is the concatenation over processes.
    """
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
