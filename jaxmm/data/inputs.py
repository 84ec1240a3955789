"""The data half of an experiment: which dataset fields are modalities and labels, how each
training view augments them, and the functions that turn that into datasets and iterators.

* `ModalityData` / `DataConfig`: the typed config (`ExperimentConfig.data`); the augmentation
  presets per modality kind are the one table of `jaxmm.data.presets`.
* `data_spec`, `dataset_features`, `tfds_builder`: the pipeline's spec and the TFDS builder.
* `build_train_iterator`, `build_eval_source`, `build_eval_dataset`, `num_train_examples`,
  `device_augmentation`: the objects a run reads (datasets are generated on demand by
  `jaxmm.data.builders.build`, a no-op when already built); `arrays_dataset`: a user's `.npz`
  once `jaxmm.own_data.resolve_data` has filled its statistics in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import jax
import numpy as np

from jaxmm.data import arrays as arrays_lib
from jaxmm.data import augment as aug_lib
from jaxmm.data import builders, pipeline
from jaxmm.data import presets as presets_lib

if TYPE_CHECKING:
    from jaxmm.experiment import ExperimentConfig

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Data.

# `DataConfig.builder` of the `<method>_arrays` configs, whose data come from `data.path` alone.
ARRAYS_BUILDER = "npz"
# Kind "auto": inferred from the array's rank by `resolve_data` (data from a .npz, `data.path`).
AUTO = "auto"
# Feature rank (without batch) each kind expects from the dataset.
KIND_RANK = {aug_lib.IMAGE: 3, aug_lib.TIME_SERIES: 2, aug_lib.TABULAR: 1, aug_lib.TOKENS: 1}


@dataclasses.dataclass(frozen=True)
class ModalityData:
    """One example field used as a modality, and how each training view augments it."""

    name: str  # example field (also the modality's name in batch["viewN"]["x"] and the model)
    kind: Literal["image", "time_series", "tabular", "tokens", "auto"] = AUTO  # decides the
    #                           augmentation set; "auto": from the .npz array's rank (data.path)
    augment: str = "default"  # preset: image simclr|simclr_small|unique|crop|none; time_series
    #                           noise_drop|noise|drop|crop|none; tabular noise|none; "default" =
    #                           the kind's CoMM default
    strength: float = 1.0  # image colour-jitter strength; noise sigma = 0.1 * strength

    @classmethod
    def from_str(cls, text: str) -> ModalityData:
        """`--set data.modalities=a,b`: each name a modality of kind "auto" (a .npz key)."""
        if not text or any(c in text for c in "=(){}[] "):
            raise ValueError(f"not a modality name: {text!r}")
        return cls(text, AUTO)

    def __post_init__(self):
        if self.kind == AUTO:
            if self.augment != "default":
                raise ValueError(f"modality {self.name!r}: kind 'auto' takes augment 'default'")
            return
        presets = presets_lib.PRESETS.get(self.kind)
        if presets is None:
            raise ValueError(
                f"modality {self.name!r}: kind must be one of {sorted(presets_lib.PRESETS)}, "
                f"got {self.kind!r}"
            )
        if self.augment != "default" and self.augment not in presets:
            raise ValueError(
                f"modality {self.name!r}: augment preset for {self.kind} must be one of "
                f"{['default', *sorted(presets)]}, got {self.augment!r}"
            )
        if not self.strength >= 0:
            raise ValueError(f"modality {self.name!r}: strength must be >= 0, got {self.strength}")

    def augmentations(self) -> list[tuple[str, dict[str, Any]]]:
        return presets_lib.host(self.kind, self.augment, self.strength)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """A TFDS dataset of this repository and how its examples become batches."""

    builder: str = "trifeature"  # a builder under datasets/ (see jaxmm.data.builders.available())
    builder_config: str | None = None  # named BuilderConfig; None = the builder's default
    # BuilderConfig fields replaced on top of `builder_config` (e.g. a tiny Trifeature for tests);
    # the result is built under its own name "<config>_<hash of the overrides>".
    builder_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    data_dir: str = "data"  # TFDS data directory (built datasets live here)
    manual_dir: str | None = None  # user-supplied files (MultiBench pickles / .h5 episodes)
    train_split: str = "train"  # split the method trains on
    eval_split: str = "test"  # split probes report on
    val_split: str | None = None  # model-selection split, where the dataset has one
    modalities: tuple[ModalityData, ...] = ()  # example fields used as modalities, model order
    labels: tuple[str, ...] = ()  # example fields passed to batch["labels"]
    joint_augment: Literal["none", "multi_drop", "multi_crop"] = "none"  # CoMM App. C.1, over all
    #                                                     sequence modalities (time-aligned data)
    num_views: int = 2  # augmented views per training example
    seed: int = 0  # shuffling and augmentation draws
    num_workers: int = 0  # grain worker processes (0 = in-process)
    # Where the training views are augmented: "host" (the grain pipeline, NumPy, per example) or
    # "device" (image modalities only: `jaxmm.data.augment_jax` inside the jitted train step; the
    # pipeline then yields one clean view and the step draws `num_views` augmented ones).
    augment_on: Literal["host", "device"] = "host"
    eval_batch_size: int = 256  # global batch of evaluation passes
    # --- A user's own arrays (jaxmm.data.arrays; README "Your own data"). With `path` set, the
    # data come from that .npz instead of `builder`; `resolve_data` infers modalities and labels.
    path: str | None = None  # the .npz file (stored absolute)
    test_fraction: float = 0.2  # seeded stratified test share when the file has no 'split'
    tabular_sigma: float = 1.0  # Gaussian noise std on standardised (N, d) modalities
    sequence_sigma: float = 0.5  # Gaussian noise std on standardised (N, T, d) modalities
    image_augment: str = "crop"  # preset for (N, H, W, C) modalities: crop | none
    # Set by `resolve_data`, never by hand: the file's SHA-1, split, per-modality training
    # mean / std, label classes. Probes and embeddings standardise with these.
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        names = [m.name for m in self.modalities]
        if len(set(names)) != len(names):
            raise ValueError(f"DataConfig.modalities has duplicate names {names}")
        for field in ("num_views", "eval_batch_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"DataConfig.{field} must be >= 1, got {getattr(self, field)}")
        if self.num_workers < 0:
            raise ValueError(f"DataConfig.num_workers must be >= 0, got {self.num_workers}")
        if self.augment_on not in ("host", "device"):
            raise ValueError(
                f"DataConfig.augment_on must be 'host' or 'device', got {self.augment_on!r}"
            )


def data_spec(data: DataConfig) -> pipeline.DataSpec:
    """The pipeline's `DataSpec` (modalities, their augmentations, labels) of `data`."""
    if not data.modalities:
        raise ValueError(
            "DataConfig.modalities is empty: name the example fields used as modalities"
        )
    auto = [m.name for m in data.modalities if m.kind == AUTO]
    if auto:
        raise ValueError(
            f"modalities {auto} have kind 'auto', which only data read from a .npz "
            "(data.path, resolved by jaxmm.own_data.resolve_data) can infer"
        )
    joint = ()
    if data.joint_augment != "none":
        seq = [m.name for m in data.modalities if m.kind in (aug_lib.TIME_SERIES, aug_lib.TOKENS)]
        if len(seq) < 2:
            raise ValueError(
                f"DataConfig.joint_augment={data.joint_augment!r} needs >= 2 sequence "
                f"modalities, got {seq}"
            )
        joint = ((data.joint_augment, {"modalities": tuple(seq)}),)
    if data.augment_on == "device":
        _check_device_augment(data)
        # The views are drawn in the train step (`device_augmentation`); the pipeline's is clean.
        specs = {m.name: pipeline.ModalitySpec(m.kind, []) for m in data.modalities}
    else:
        specs = {m.name: pipeline.ModalitySpec(m.kind, m.augmentations()) for m in data.modalities}
    if data.path is not None:  # .npz images arrive standardised, with any number of channels
        for m in data.modalities:
            if m.kind == aug_lib.IMAGE:
                c = data.stats["modalities"][m.name]["shape"][-1]
                specs[m.name] = pipeline.ModalitySpec(
                    m.kind, m.augmentations(), (0.0,) * c, (1.0,) * c
                )
    return pipeline.DataSpec(
        modalities=specs,
        labels=tuple(data.labels),
        joint_augment=joint,
    )


def resolve_builder_config(data: DataConfig) -> Any:
    """The BuilderConfig name (str) or, with `builder_overrides`, a renamed BuilderConfig copy.

    Raises:
      ValueError: unknown builder, config name or override field (naming it and the valid ones).
    """
    available = builders.available()
    if data.builder not in available:
        raise ValueError(
            f"DataConfig.builder {data.builder!r} is not a dataset of this repository; "
            f"available: {available}"
        )
    cls = builders.builder_class(data.builder)
    configs = dict(cls.builder_configs)
    name = data.builder_config or getattr(cls, "DEFAULT_CONFIG_NAME", None)
    if configs and name not in configs:
        raise ValueError(
            f"DataConfig.builder_config {name!r} is not a config of {data.builder!r}; "
            f"configs: {sorted(configs)}"
        )
    if not data.builder_overrides:
        return name
    base_cfg = configs[name]
    fields = {f.name for f in dataclasses.fields(base_cfg)} - {"name", "version", "description"}
    unknown = sorted(set(data.builder_overrides) - fields)
    if unknown:
        raise ValueError(
            f"DataConfig.builder_overrides: unknown field(s) {unknown} of "
            f"{type(base_cfg).__name__}; valid: {sorted(fields)}"
        )
    # The name identifies the built files on disk: derive it from the overrides so that two
    # different tiny variants never share a directory.
    digest = hashlib.sha1(json.dumps(data.builder_overrides, sort_keys=True).encode()).hexdigest()
    return dataclasses.replace(base_cfg, name=f"{name}_{digest[:8]}", **data.builder_overrides)


def tfds_builder(data: DataConfig):
    if data.path is not None:
        return _arrays_dataset(data)
    return builders.get_builder(
        data.builder, data_dir=data.data_dir, config=resolve_builder_config(data)
    )


def dataset_features(data: DataConfig) -> Mapping[str, Any]:
    """The dataset's declared features (TFDS `info.features`, or those of a .npz file)."""
    return tfds_builder(data).info.features


def _ensure_built(data: DataConfig):
    builder = tfds_builder(data)
    if builder.is_prepared():
        return builder
    log.info(
        "Building dataset %s/%s into %s", data.builder, builder.builder_config.name, data.data_dir
    )
    return builders.build(
        data.builder, data.data_dir, config=resolve_builder_config(data), manual_dir=data.manual_dir
    )


# ------------------------------------------------------------------------------------------------
# A user's arrays (.npz): the data-dependent parts of a config, filled in once.

# A few opened files (a run opens its file for validation, training and both probe splits).
_ARRAYS_CACHE: dict[tuple, arrays_lib.ArraysDataset] = {}


def _arrays_dataset(data: DataConfig) -> arrays_lib.ArraysDataset:
    if not data.stats:
        raise ValueError(
            f"data.path {data.path!r} is not resolved yet: call "
            "jaxmm.own_data.resolve_data(cfg) (launch.train does)"
        )
    key = (data.path, data.stats.get("sha1"), data.seed, data.test_fraction)
    key += (json.dumps(data.stats, sort_keys=True),)
    if key not in _ARRAYS_CACHE:
        if len(_ARRAYS_CACHE) >= 4:
            _ARRAYS_CACHE.pop(next(iter(_ARRAYS_CACHE)))
        _ARRAYS_CACHE[key] = arrays_lib.ArraysDataset(
            data.path, data.stats, seed=data.seed, test_fraction=data.test_fraction
        )
    return _ARRAYS_CACHE[key]


def arrays_dataset(cfg: ExperimentConfig) -> arrays_lib.ArraysDataset:
    """The opened .npz of a resolved `cfg` (split indices, class values; see jaxmm.data.arrays)."""
    if cfg.data.path is None:
        raise ValueError(f"config {cfg.name!r} does not read a .npz (data.path is None)")
    return _arrays_dataset(cfg.data)


def build_eval_source(cfg: ExperimentConfig, split: str | None = None):
    """Random-access source of `split` (default `cfg.data.eval_split`), building it if needed."""
    split = cfg.data.eval_split if split is None else split
    builder = _ensure_built(cfg.data)
    if split not in builder.info.splits:
        raise ValueError(
            f"dataset {cfg.data.builder!r} has no split {split!r}; splits: "
            f"{sorted(builder.info.splits)}"
        )
    return builder.as_data_source(split=split)


def build_eval_dataset(
    cfg: ExperimentConfig,
    split: str | None = None,
    *,
    batch_size: int | None = None,
    pad: bool = True,
    process_index: int | None = None,
    process_count: int | None = None,
):
    """Unaugmented one-view batches of `split` with a "mask" (see `pipeline.eval_dataset`)."""
    return pipeline.eval_dataset(
        build_eval_source(cfg, split),
        data_spec(cfg.data),
        batch_size=cfg.data.eval_batch_size if batch_size is None else batch_size,
        pad=pad,
        process_index=process_index,
        process_count=process_count,
    )


def num_train_examples(cfg: ExperimentConfig) -> int:
    """Size of the training split (builds the dataset if needed)."""
    builder = _ensure_built(cfg.data)
    split = cfg.data.train_split
    if split not in builder.info.splits:
        raise ValueError(
            f"dataset {cfg.data.builder!r} has no split {split!r}; splits: "
            f"{sorted(builder.info.splits)}"
        )
    return builder.info.splits[split].num_examples


def _check_device_augment(data: DataConfig) -> None:
    bad = [m.name for m in data.modalities if m.kind != aug_lib.IMAGE]
    if bad:
        raise ValueError(
            f"DataConfig.augment_on='device' augments image modalities only; {bad} are not "
            "images (use augment_on='host')"
        )
    if data.path is not None:
        raise ValueError(
            "DataConfig.augment_on='device' needs RGB images in [0, 255] from a builder; "
            ".npz images (data.path) arrive standardised: use augment_on='host'"
        )
    for m in data.modalities:
        presets_lib.device(m.kind, m.augment, m.strength)  # one error naming a host-only preset


def device_augmentation(cfg: ExperimentConfig) -> Callable[[Any, jax.Array], Any] | None:
    """The train step's batch transform of a ``data.augment_on="device"`` config, else None.

    ``transform(batch, key)`` takes the pipeline's batch (one clean, normalised ``view1``) and
    returns ``view1 ... view<num_views>``, each image modality augmented by the device version
    of its preset (`jaxmm.data.presets`) on [0, 1] pixels and normalised
    again; labels pass through. Every view and modality draws from its own fold of `key`.
    """
    data = cfg.data
    if data.augment_on != "device":
        return None
    spec = data_spec(data)
    steps = {
        m.name: (
            presets_lib.device(m.kind, m.augment, m.strength),
            np.asarray(spec.modalities[m.name].mean, np.float32),
            np.asarray(spec.modalities[m.name].std, np.float32),
        )
        for m in data.modalities
    }
    num_views = data.num_views

    def transform(batch: Any, key: jax.Array) -> Any:
        clean = batch["view1"]
        out = {k: v for k, v in batch.items() if not k.startswith("view")}
        for v in range(num_views):
            xs = {}
            for i, (name, (fn, mean, std)) in enumerate(steps.items()):
                k = jax.random.fold_in(jax.random.fold_in(key, v), i)
                x01 = clean["x"][name] * std + mean
                xs[name] = (fn(k, x01) - mean) / std
            out[f"view{v + 1}"] = {"x": xs, "valid": dict(clean.get("valid") or {})}
        return out

    return transform


def build_train_iterator(
    cfg: ExperimentConfig, *, process_index: int | None = None, process_count: int | None = None
) -> tuple[Any, Any]:
    """This process's checkpointable training iterator and one (unconsumed) batch of it.

    Builds the dataset on demand. Each process yields `train.batch_size // process_count`
    examples per batch (see `pipeline.train_dataset`).

    Returns:
      (grain DatasetIterator, example batch: nested dict of numpy arrays).
    """
    builder = _ensure_built(cfg.data)
    split = cfg.data.train_split
    if split not in builder.info.splits:
        raise ValueError(
            f"dataset {cfg.data.builder!r} has no split {split!r}; splits: "
            f"{sorted(builder.info.splits)}"
        )
    it = pipeline.train_iterator(
        builder.as_data_source(split=split),
        data_spec(cfg.data),
        batch_size=cfg.train.batch_size,
        seed=cfg.data.seed,
        num_views=1 if cfg.data.augment_on == "device" else cfg.data.num_views,
        num_workers=cfg.data.num_workers,
        process_index=process_index,
        process_count=process_count,
    )
    position = it.get_state()
    example = next(it)
    it.set_state(position)
    return it, example
