"""One typed config for a whole experiment, and the functions that turn it into objects.

An `ExperimentConfig` names everything a run needs — the TFDS dataset and which of its fields are
modalities / labels (`DataConfig`), the backbone (`jaxmm.models.ModelConfig`), the method and its
own config (`MethodConfig`), the optimizer, the training loop and the multi-process set-up — and
nothing else: `launch.train` builds a run from it, checkpoints store it as JSON (`to_dict`), and a
probe rebuilds the same model from the checkpoint directory alone (`from_dict` + `build_method`).

* `validate(cfg)` checks the config against the dataset's declared features and traces the
  method abstractly (`jax.eval_shape`, nothing allocated or compiled): a modality the model names
  but the data lacks, a wrong feature width, a label key that is not a label, a method that needs
  a second view the pipeline does not make, ... each raise ONE ValueError before any compute.
* `build_method(cfg)`, `build_train_iterator(cfg, ...)`, `build_eval_source(cfg, split)` and
  `build_eval_dataset(cfg, split, ...)` build the pieces; datasets are generated on demand
  (`jaxmm.data.builders.build`, a no-op when already built).

Overrides use `jaxmm.config.apply_overrides` through `override(cfg, ["optimizer.lr=3e-4", ...])`;
the method's own fields are reached as `method.config.<field>`.

Example:
  >>> from launch.configs import get_config
  >>> cfg = override(get_config("comm_trifeature", "smoke"), ["train.steps=10"])
  >>> validate(cfg)
  >>> it, example = build_train_iterator(cfg)
  >>> method = build_method(cfg)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import jax
import numpy as np

from jaxmm import config as config_lib
from jaxmm.config import DistributedConfig, OptimizerConfig, TrainConfig
from jaxmm.data import arrays as arrays_lib
from jaxmm.data import augment as aug_lib
from jaxmm.data import augment_jax, builders, pipeline
from jaxmm.methods import base
from jaxmm.methods import registry as method_registry
from jaxmm.models import ModelConfig

log = logging.getLogger(__name__)

__all__ = [
    "DataConfig",
    "ExperimentConfig",
    "MethodConfig",
    "ModalityData",
    "build_eval_dataset",
    "build_eval_source",
    "build_method",
    "build_train_iterator",
    "arrays_dataset",
    "check_batch_vs_examples",
    "check_run",
    "data_spec",
    "dataset_features",
    "device_augmentation",
    "example_spec",
    "num_train_examples",
    "override",
    "resolve_builder_config",
    "resolve_data",
    "resolve_steps",
    "train_config",
    "validate",
]

# ------------------------------------------------------------------------------------------------
# Data.

# Augmentation presets per modality kind (CoMM App. B.2 and C.1; FactorCL App. C for "unique").
# A preset is a function (strength) -> [(augmentation name, kwargs)] for `pipeline.ModalitySpec`.
_AUGMENT_PRESETS: dict[str, dict[str, Any]] = {
    aug_lib.IMAGE: {
        "simclr": lambda s: aug_lib.simclr_image_augmentations(strength=s),
        # SimCLR for small images (<= 64 px, the demo's 32 px Trifeature): crop scale (0.5, 1),
        # no blur. At 32 px a 0.08 crop keeps under half of the object in 22% of views and a
        # sigma <= 2 px blur erases a 4-6 px texture (SimCLR's own CIFAR recipe drops the blur);
        # the ablation is in docs/results.md.
        "simclr_small": lambda s: aug_lib.simclr_image_augmentations(
            strength=s, crop_scale=(0.5, 1.0), blur_p=0.0
        ),
        "unique": lambda s: aug_lib.unique_image_augmentations(strength=s),
        # Geometric only, for any channel count and standardised values (.npz images): colour
        # jitter assumes RGB in [0, 1].
        "crop": lambda s: [("random_resized_crop", {"scale": (0.25, 1.0)})],
        "none": lambda s: [],
    },
    aug_lib.TIME_SERIES: {
        # CoMM's default (App. C.1): Gaussian noise then dropping 0-80% of the steps.
        "noise_drop": lambda s: aug_lib.comm_time_series_augmentations(sigma=0.1 * s),
        "noise": lambda s: [("gaussian_noise", {"sigma": 0.1 * s})],
        "drop": lambda s: [("random_drop", {"fraction": (0.0, 0.8)})],
        "crop": lambda s: [("random_crop", {"fraction": (0.08, 1.0)})],
        "none": lambda s: [],
    },
    # CoMM App. B.2: tabular components get independent Gaussian noise (all assumed continuous).
    aug_lib.TABULAR: {
        "noise": lambda s: [("gaussian_noise", {"sigma": 0.1 * s})],
        "none": lambda s: [],
    },
    aug_lib.TOKENS: {"none": lambda s: []},
}
_DEFAULT_AUGMENT = {
    aug_lib.IMAGE: "simclr",
    aug_lib.TIME_SERIES: "noise_drop",
    aug_lib.TABULAR: "noise",
    aug_lib.TOKENS: "none",
}
# `DataConfig.builder` of the `<method>_arrays` configs, whose data come from `data.path` alone.
ARRAYS_BUILDER = "npz"
# Kind "auto": inferred from the array's rank by `resolve_data` (data from a .npz, `data.path`).
AUTO = "auto"
# Feature rank (without batch) each kind expects from the dataset.
_KIND_RANK = {aug_lib.IMAGE: 3, aug_lib.TIME_SERIES: 2, aug_lib.TABULAR: 1, aug_lib.TOKENS: 1}


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
        presets = _AUGMENT_PRESETS.get(self.kind)
        if presets is None:
            raise ValueError(
                f"modality {self.name!r}: kind must be one of {sorted(_AUGMENT_PRESETS)}, "
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
        preset = _DEFAULT_AUGMENT[self.kind] if self.augment == "default" else self.augment
        return _AUGMENT_PRESETS[self.kind][preset](self.strength)


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
            "(data.path, resolved by jaxmm.experiment.resolve_data) can infer"
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


def _builder(data: DataConfig):
    if data.path is not None:
        return _arrays_dataset(data)
    return builders.get_builder(
        data.builder, data_dir=data.data_dir, config=resolve_builder_config(data)
    )


def dataset_features(data: DataConfig) -> Mapping[str, Any]:
    """The dataset's declared features (TFDS `info.features`, or those of a .npz file)."""
    return _builder(data).info.features


def _ensure_built(data: DataConfig):
    builder = _builder(data)
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
            "jaxmm.experiment.resolve_data(cfg) (launch.train does)"
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


# Per kind of .npz array: the data kind (augmentations) and the template modality of the model.
_ARRAY_KINDS = {
    arrays_lib.TABULAR: aug_lib.TABULAR,
    arrays_lib.SEQUENCE: aug_lib.TIME_SERIES,
    arrays_lib.IMAGE: aug_lib.IMAGE,
}


def _array_modality(template: Any, name: str, shape: Sequence[int], width: int) -> Any:
    """The template encoder of a kind, sized to the array (input width / channels) and, where
    the template leaves them out, to the fusion width W: MLP d -> 2W -> W, Transformer width W,
    AlexNet channels (W/4, W/2, W/2, W/2, W/2)."""
    kwargs = dict(template.encoder_kwargs)
    if template.encoder in ("alexnet", "resnet18"):
        kwargs["in_channels"] = int(shape[-1])
    else:
        kwargs["in_features"] = int(shape[-1])
    if template.encoder == "mlp":
        kwargs.setdefault("hidden_dims", (2 * width,))
        kwargs.setdefault("out_dim", width)
    elif template.encoder == "transformer":
        kwargs.setdefault("width", width)
    elif template.encoder == "alexnet":
        c = max(4, width // 4)
        kwargs.setdefault("channels", (c, 2 * c, 2 * c, 2 * c, 2 * c))
    return dataclasses.replace(template, name=name, encoder_kwargs=kwargs)


def resolve_data(cfg: ExperimentConfig) -> ExperimentConfig:
    """Fills the data-dependent fields of a config that reads a .npz (`data.path`).

    Reads and checks the file (`jaxmm.data.arrays.resolve_stats`), then sets `data.stats`
    (training statistics, classes, SHA-1), `data.modalities` (kinds from the arrays' ranks,
    augmentations from `data.tabular_sigma` / `sequence_sigma` / `image_augment`),
    `data.labels`, the model's modalities (the template of each kind in `cfg.model.modalities`,
    named "tabular", "sequence" and "image", sized to the array), and a label key for methods
    that read one. Configs without `data.path`, and already resolved ones, are returned as they
    are.

    Raises:
      ValueError: one line naming the file, key and shape (see `jaxmm.data.arrays`), or a
        method that needs more modalities than the file provides.
    """
    data = cfg.data
    if data.path is None or data.stats:
        return cfg
    path = os.path.abspath(os.path.expanduser(data.path))
    stats = arrays_lib.resolve_stats(
        path,
        modalities=[m.name for m in data.modalities],
        labels=list(data.labels),
        seed=data.seed,
        test_fraction=data.test_fraction,
    )
    mods = stats["modalities"]
    where = f"data.path {path!r}"
    method_cls = method_registry.METHODS[cfg.method.name][0]
    need = getattr(method_cls, "min_modalities", 1)
    if len(mods) < need:
        found = ", ".join(f"{k!r} {(stats['num_examples'], *v['shape'])}" for k, v in mods.items())
        raise ValueError(
            f"method {cfg.method.name!r} needs at least {need} modalities; {where} has "
            f"{len(mods)}: {found} (a modality is a float array with >= 2 dims)"
        )
    mc = cfg.method.config
    if cfg.method.name == "factorcl" and len(mods) > 2 and mc.modalities is None:
        raise ValueError(
            f"FactorCL models two modalities; {where} has {list(mods)}: choose two with "
            "--set data.modalities=a,b"
        )
    templates = {m.name: m for m in cfg.model.modalities}
    sigma = {arrays_lib.TABULAR: data.tabular_sigma, arrays_lib.SEQUENCE: data.sequence_sigma}
    mod_data, model_mods = [], []
    for name, m in mods.items():
        kind = m["kind"]
        if kind not in templates:
            raise ValueError(
                f"config {cfg.name!r} has no template encoder for {kind} modality {name!r} "
                f"(model.modalities are {list(templates)})"
            )
        if kind == arrays_lib.IMAGE:
            if min(m["shape"][:2]) < 8 and templates[kind].encoder == "alexnet":
                raise ValueError(
                    f"{where}: image {name!r} {(stats['num_examples'], *m['shape'])} is smaller "
                    "than the CNN's 8 x 8 minimum"
                )
            mod_data.append(ModalityData(name, aug_lib.IMAGE, data.image_augment))
        else:
            preset = "noise" if kind == arrays_lib.TABULAR else "noise_drop"
            strength = sigma[kind] / 0.1  # the presets' noise sigma is 0.1 * strength
            mod_data.append(ModalityData(name, _ARRAY_KINDS[kind], preset, strength))
        model_mods.append(
            _array_modality(templates[kind], name, m["shape"], cfg.model.fusion.width)
        )
    labels = tuple(stats["labels"])
    method = cfg.method
    if hasattr(mc, "label_key") and mc.label_key not in labels:
        classif = [k for k, v in stats["labels"].items() if v["kind"] == "classification"]
        if classif:
            method = dataclasses.replace(
                method, config=dataclasses.replace(mc, label_key=classif[0])
            )
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            data, path=path, modalities=tuple(mod_data), labels=labels, stats=stats
        ),
        model=dataclasses.replace(cfg.model, modalities=tuple(model_mods)),
        method=method,
    )


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


def _preset(m: ModalityData) -> str:
    return _DEFAULT_AUGMENT[m.kind] if m.augment == "default" else m.augment


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
        augment_jax.preset_augment(_preset(m), m.strength)  # one error naming an unknown preset


def device_augmentation(cfg: ExperimentConfig) -> Callable[[Any, jax.Array], Any] | None:
    """The train step's batch transform of a ``data.augment_on="device"`` config, else None.

    ``transform(batch, key)`` takes the pipeline's batch (one clean, normalised ``view1``) and
    returns ``view1 ... view<num_views>``, each image modality augmented by the device version
    of its preset (`jaxmm.data.augment_jax.preset_augment`) on [0, 1] pixels and normalised
    again; labels pass through. Every view and modality draws from its own fold of `key`.
    """
    data = cfg.data
    if data.augment_on != "device":
        return None
    spec = data_spec(data)
    steps = {
        m.name: (
            augment_jax.preset_augment(_preset(m), m.strength),
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


# ------------------------------------------------------------------------------------------------
# Method.


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """A registered method (`jaxmm.methods.registry.METHODS`) and its own config dataclass."""

    name: str = "comm"  # registry name: comm | cross | cross_self | simclr | supcon | cmc | ...
    config: Any = None  # the method's config dataclass, its dict form, or None (its defaults)

    def __post_init__(self):
        cls = method_registry.method_config_class(self.name)
        cfg = self.config
        if cfg is None:
            cfg = cls()
        elif isinstance(cfg, Mapping):
            cfg = config_lib.from_dict(cls, cfg, _prefix="method.config.")
        elif not isinstance(cfg, cls):
            raise ValueError(
                f"method {self.name!r} takes a {cls.__name__} as method.config, got "
                f"{type(cfg).__name__}"
            )
        object.__setattr__(self, "config", cfg)


def build_method(cfg: ExperimentConfig) -> base.Method:
    """The `Method` of `cfg` (no parameters yet: call `method.init`)."""
    return method_registry.get_method(cfg.method.name, cfg.method.config, cfg.model)


# Methods whose loss always reads both augmented views (the others name theirs in `*view` fields).
_TWO_VIEW_METHODS = ("comm", "simclr", "supcon", "cross_self")


def _views_needed(method: MethodConfig) -> int:
    n = 2 if method.name in _TWO_VIEW_METHODS else 1
    c = method.config
    for f in dataclasses.fields(c):
        if getattr(c, "mode", None) != "ssl" and f.name == "aug_view":
            continue  # FactorCL-SUP reads no augmented view
        v = getattr(c, f.name)
        if f.name.endswith("view") and isinstance(v, str) and re.fullmatch(r"view\d+", v):
            n = max(n, int(v[4:]))
    return n


def _labels_needed(method: MethodConfig) -> list[str]:
    c = method.config
    if not hasattr(c, "label_key") or getattr(c, "mode", "sup") != "sup":
        return []
    return [c.label_key]


# ------------------------------------------------------------------------------------------------
# The experiment.


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs; see the module docstring.

    `optimizer` and `distributed` live at the top level only: `train_config(cfg)` hands them to the
    trainer inside its `TrainConfig` (whose own copies are not part of this config).
    """

    name: str  # experiment name (registry name in launch.configs, plus the variant)
    data: DataConfig
    model: ModelConfig
    method: MethodConfig
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    distributed: DistributedConfig = dataclasses.field(default_factory=DistributedConfig)
    # If set, `resolve_steps` replaces train.steps by ceil(epochs * N_train / train.batch_size) once
    # the training split's size N_train is known (the papers count epochs, not steps).
    epochs: float | None = None

    def __post_init__(self):
        if self.epochs is not None and not self.epochs > 0:
            raise ValueError(f"ExperimentConfig.epochs must be > 0 or None, got {self.epochs}")
        for field, cls in (
            ("data", DataConfig),
            ("model", ModelConfig),
            ("method", MethodConfig),
            ("optimizer", OptimizerConfig),
            ("train", TrainConfig),
            ("distributed", DistributedConfig),
        ):
            if not isinstance(getattr(self, field), cls):
                raise ValueError(
                    f"ExperimentConfig.{field} must be a {cls.__name__}, got "
                    f"{type(getattr(self, field)).__name__}"
                )
        nested = self.train
        if (nested.optimizer, nested.distributed) != (OptimizerConfig(), DistributedConfig()):
            raise ValueError(
                "ExperimentConfig: set optimizer.* / distributed.* at the top level, not "
                "train.optimizer / train.distributed"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (the checkpoint's config)."""
        d = config_lib.to_dict(self)
        del d["train"]["optimizer"], d["train"]["distributed"]
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExperimentConfig:
        """Inverse of `to_dict`; an unknown key or a wrongly typed value raises one ValueError."""
        if not isinstance(d, Mapping):
            raise ValueError(f"ExperimentConfig.from_dict needs a mapping, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(
                f"Unknown config key(s) {unknown} for ExperimentConfig; valid keys: "
                f"{sorted(fields)}"
            )
        missing = sorted({"name", "data", "model", "method"} - set(d))
        if missing:
            raise ValueError(f"ExperimentConfig.from_dict: missing key(s) {missing}")
        if not isinstance(d["name"], str):
            raise ValueError(f"Bad value for config field 'name': {d['name']!r} is not a valid str")
        train = d.get("train", {})
        if isinstance(train, Mapping) and {"optimizer", "distributed"} & set(train):
            raise ValueError(
                "Unknown config key(s) under 'train': optimizer / distributed are "
                "top-level keys of ExperimentConfig"
            )
        method = d["method"]
        if not isinstance(method, Mapping) or set(method) - {"name", "config"}:
            raise ValueError(
                f"config field 'method' must be a mapping with keys 'name' and 'config', "
                f"got {method!r}"
            )
        kwargs = {
            "name": d["name"],
            "model": ModelConfig.from_dict(d["model"]),
            "method": MethodConfig(**method),
        }
        if "epochs" in d:
            kwargs["epochs"] = config_lib.from_dict(_Epochs, {"epochs": d["epochs"]}).epochs
        for field, sub in (
            ("data", DataConfig),
            ("optimizer", OptimizerConfig),
            ("train", TrainConfig),
            ("distributed", DistributedConfig),
        ):
            if field in d:
                kwargs[field] = config_lib.from_dict(sub, d[field], _prefix=f"{field}.")
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExperimentConfig:
        return cls.from_dict(json.loads(text))


@dataclasses.dataclass(frozen=True)
class _Epochs:
    epochs: float | None = None  # type-checks the top-level "epochs" value of a config dict


def resolve_steps(cfg: ExperimentConfig, num_train_examples: int) -> ExperimentConfig:
    """`cfg` with train.steps = ceil(epochs * num_train / batch) when `cfg.epochs` is set."""
    if cfg.epochs is None:
        return cfg
    steps = max(1, math.ceil(cfg.epochs * num_train_examples / cfg.train.batch_size))
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps))


def train_config(cfg: ExperimentConfig) -> TrainConfig:
    """The trainer's `TrainConfig`: `cfg.train` plus the top-level optimizer and distributed."""
    return dataclasses.replace(cfg.train, optimizer=cfg.optimizer, distributed=cfg.distributed)


def override(cfg: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """`cfg` with "dotted.key=value" overrides (`jaxmm.config.apply_overrides`).

    Raises:
      ValueError: an unknown key or a value of the wrong type (naming it), including the trainer's
        nested copies `train.optimizer.*` / `train.distributed.*` (use `optimizer.*`).
    """
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key.split(".")[:2] in (["train", "optimizer"], ["train", "distributed"]):
            raise ValueError(
                f"Unknown config key {key!r}: set {key[len('train.') :]!r} instead "
                "(optimizer / distributed are top-level)"
            )
    try:
        return config_lib.apply_overrides(cfg, overrides)
    except TypeError as e:  # a dataclass rejecting a value its __post_init__ could not compare
        raise ValueError(f"Bad override in {list(overrides)}: {e}") from e


# ------------------------------------------------------------------------------------------------
# Validation.


def example_spec(cfg: ExperimentConfig, batch_size: int = 4) -> dict[str, Any]:
    """The abstract training batch (`jax.ShapeDtypeStruct` leaves) the pipeline would produce.

    Shapes come from the dataset's declared features (`builder.info`), which TFDS knows without
    building anything.

    Raises:
      ValueError: a modality or label field the dataset does not have, or of the wrong rank.
    """
    data = cfg.data
    features = _builder(data).info.features
    where = f"dataset {data.builder!r} (config {data.builder_config or 'default'})"
    missing = [f for f in (*[m.name for m in data.modalities], *data.labels) if f not in features]
    if missing:
        raise ValueError(
            f"DataConfig names field(s) {missing} that {where} does not have; its "
            f"fields: {sorted(features)}"
        )
    x, valid = {}, {}
    for m in data.modalities:
        shape = tuple(features[m.name].shape)
        if len(shape) != _KIND_RANK[m.kind]:
            raise ValueError(
                f"modality {m.name!r} of kind {m.kind} needs rank-{_KIND_RANK[m.kind]} "
                f"examples; {where} has shape {shape}"
            )
        dtype = np.int32 if m.kind == aug_lib.TOKENS else np.float32
        x[m.name] = jax.ShapeDtypeStruct((batch_size, *shape), dtype)
        if m.kind in (aug_lib.TIME_SERIES, aug_lib.TOKENS):
            valid[m.name] = jax.ShapeDtypeStruct((batch_size, shape[0]), np.bool_)
    labels = {}
    for name in data.labels:
        feat = features[name]
        kind = np.dtype(feat.np_dtype).kind
        if kind not in "biuf":
            raise ValueError(f"label {name!r} of {where} must be numeric, got {feat.np_dtype}")
        dtype = np.float32 if kind == "f" else np.int32
        labels[name] = jax.ShapeDtypeStruct((batch_size, *tuple(feat.shape)), dtype)
    batch = {f"view{i + 1}": {"x": dict(x), "valid": dict(valid)} for i in range(data.num_views)}
    batch["labels"] = labels
    return batch


def validate(cfg: ExperimentConfig, *, trace: bool = True) -> None:
    """Checks `cfg` before any compute; raises ONE ValueError naming what is wrong.

    Checks, in order: the dataset, its config and overrides exist; the data modalities exist in
    the dataset with the rank their kind needs, and their augmentations apply; the model's
    modalities are exactly the data's; the method's label key is a data label and the pipeline
    makes every view the method reads; the schedule fits the run; the global batch splits over
    the processes. With `trace`, `method.init` and `method.loss` are traced abstractly
    (`jax.eval_shape`: shapes only, nothing compiled or allocated) on the batch the pipeline will
    produce, which catches encoder/feature width mismatches.
    """
    where = f"config {cfg.name!r}"
    data = cfg.data
    if data.path is None and data.builder == ARRAYS_BUILDER:
        raise ValueError(f"{where} trains on your own arrays: pass --set data.path=FILE.npz")
    if data.path is not None and not data.stats:
        raise ValueError(
            f"{where}: data.path {data.path!r} is not resolved: call "
            "jaxmm.experiment.resolve_data(cfg) first (launch.train does)"
        )
    try:
        data_spec(data)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    data_names = [m.name for m in data.modalities]
    model_names = [m.name for m in cfg.model.modalities]
    if set(model_names) != set(data_names):
        lacking = sorted(set(model_names) - set(data_names))
        unused = sorted(set(data_names) - set(model_names))
        raise ValueError(
            f"{where}: the model's modalities {model_names} must be the data's {data_names}"
            + (f"; data.modalities lacks {lacking}" if lacking else "")
            + (f"; the model does not use {unused}" if unused else "")
        )
    for key in _labels_needed(cfg.method):
        if key not in data.labels:
            raise ValueError(
                f"{where}: method {cfg.method.name!r} reads label {key!r} "
                f"(method.config.label_key) but data.labels is {list(data.labels)}"
            )
    views = _views_needed(cfg.method)
    if views > data.num_views:
        raise ValueError(
            f"{where}: method {cfg.method.name!r} reads view{views} but "
            f"data.num_views is {data.num_views}"
        )
    try:
        config_lib.validate_optimizer(cfg.optimizer)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if cfg.optimizer.schedule == "cosine" and cfg.optimizer.warmup_steps >= cfg.train.steps:
        raise ValueError(
            f"{where}: optimizer.warmup_steps ({cfg.optimizer.warmup_steps}) must be "
            f"< train.steps ({cfg.train.steps})"
        )
    n_proc = max(cfg.distributed.num_processes, 1)
    if cfg.train.batch_size % n_proc:
        raise ValueError(
            f"{where}: train.batch_size {cfg.train.batch_size} is not divisible by "
            f"distributed.num_processes {n_proc}"
        )
    try:
        example = example_spec(cfg)
        method = build_method(cfg)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if not trace:
        return
    try:
        key = jax.random.key(0)
        params = jax.eval_shape(method.init, key, example)
        jax.eval_shape(lambda p, b, r: method.loss(p, b, r), params, example, key)
    except Exception as e:  # shape errors surface as TypeError / ValueError from deep inside flax
        raise ValueError(
            f"{where}: model/method do not fit the data {data.builder!r}: {type(e).__name__}: {e}"
        ) from None


def check_batch_vs_examples(cfg: ExperimentConfig, num_train_examples: int) -> None:
    """Raises one ValueError when the global batch is larger than the training split."""
    if cfg.train.batch_size > num_train_examples:
        raise ValueError(
            f"config {cfg.name!r}: train.batch_size {cfg.train.batch_size} is larger than the "
            f"{num_train_examples} examples of split {cfg.data.train_split!r} of dataset "
            f"{cfg.data.builder!r}"
        )


def _check_manual_files(data: DataConfig, builder) -> None:
    """A builder that reads user-supplied files (TFDS `MANUAL_DOWNLOAD_INSTRUCTIONS`) finds them.

    Checked before TFDS is asked to build, which would otherwise fail deep inside and leave an
    empty dataset directory behind. A BuilderConfig with a `filename` names its one file; any
    other needs a non-empty manual dir.
    """
    if getattr(type(builder), "MANUAL_DOWNLOAD_INSTRUCTIONS", None) is None:
        return
    where = f"dataset {data.builder!r} (config {builder.builder_config.name}) is not built in "
    where += f"{data.data_dir} and needs user-supplied files:"
    if not data.manual_dir:
        raise ValueError(f"{where} set data.manual_dir (--manual-dir) to the folder holding them")
    root = os.path.abspath(os.path.expanduser(data.manual_dir))
    if not os.path.isdir(root):
        raise ValueError(f"{where} data.manual_dir {root} is not a directory")
    filename = getattr(builder.builder_config, "filename", "")
    if filename and not os.path.isfile(os.path.join(root, filename)):
        raise ValueError(f"{where} {os.path.join(root, filename)} not found")
    if not filename and not os.listdir(root):
        raise ValueError(f"{where} data.manual_dir {root} is empty")


def check_run(cfg: ExperimentConfig, *, num_devices: int) -> None:
    """The checks of a run that need the machine or the disk; nothing is built or written.

    The global batch must split over `num_devices`; an unbuilt dataset that reads user files must
    find them; a built one must hold at least one batch of training examples (an unbuilt one is
    checked right after it is built, see `check_batch_vs_examples`). Raises one ValueError.
    """
    where = f"config {cfg.name!r}"
    if cfg.train.batch_size % num_devices:
        raise ValueError(
            f"{where}: train.batch_size {cfg.train.batch_size} is not divisible by the "
            f"{num_devices} devices"
        )
    builder = _builder(cfg.data)
    if not builder.is_prepared():
        _check_manual_files(cfg.data, builder)
        return
    splits = builder.info.splits
    if cfg.data.train_split not in splits:
        raise ValueError(
            f"{where}: dataset {cfg.data.builder!r} has no split {cfg.data.train_split!r}; "
            f"splits: {sorted(splits)}"
        )
    check_batch_vs_examples(cfg, splits[cfg.data.train_split].num_examples)
