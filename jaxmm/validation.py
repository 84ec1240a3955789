"""Checks of an `ExperimentConfig` before any compute, each raising ONE ValueError.

* `validate(cfg)` checks the config against the dataset's declared features and traces the
  method abstractly (`jax.eval_shape`, nothing allocated or compiled): a modality the model names
  but the data lacks, a wrong feature width, a label key that is not a label, a method that needs
  a second view the pipeline does not make, ...
* `check_run(cfg, num_devices=...)`: the checks that need the machine or the disk;
  `check_batch_vs_examples`: the batch against the training split's size.
* `example_spec(cfg)`: the abstract training batch the pipeline would produce.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from jaxmm import config as config_lib
from jaxmm.data import augment as aug_lib
from jaxmm.data.inputs import ARRAYS_BUILDER, KIND_RANK, DataConfig, data_spec, tfds_builder
from jaxmm.experiment import ExperimentConfig, build_method
from jaxmm.methods import registry as method_registry

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
    features = tfds_builder(data).info.features
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
        if len(shape) != KIND_RANK[m.kind]:
            raise ValueError(
                f"modality {m.name!r} of kind {m.kind} needs rank-{KIND_RANK[m.kind]} "
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
            "jaxmm.own_data.resolve_data(cfg) first (launch.train does)"
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
    # What the method reads is declared by its class (`jaxmm.methods.common.NNXMethod`).
    method_cls = method_registry.method_class(cfg.method.name)
    for key in method_cls.labels_read(cfg.method.config):
        if key not in data.labels:
            raise ValueError(
                f"{where}: method {cfg.method.name!r} reads label {key!r} "
                f"(method.config.label_key) but data.labels is {list(data.labels)}"
            )
    views = method_cls.views_read(cfg.method.config)
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
    builder = tfds_builder(cfg.data)
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
