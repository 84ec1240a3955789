"""Train, embed and probe any registered method on your own arrays (README "Your own data").

The command line (`jaxmm/configs/arrays.py` registers `<method>_arrays` for every method):

    python -m launch.train --config comm_arrays --set data.path=FILE.npz --workdir W
    python -m launch.probe --workdir W [--out W/probe.json]
    python -m launch.embed --workdir W --out emb.npz

and the same from Python, on arrays in memory (saved to ``W/data.npz`` so that the run's
directory alone can be probed later, by `probe` or `launch.probe`):

    >>> from jaxmm import own_data
    >>> cfg = own_data.fit({"a": xa, "b": xb, "label": y}, workdir="W", method="comm",
    ...                    overrides=["train.steps=300"])
    >>> report = own_data.probe("W")            # the report launch.probe prints
    >>> emb = own_data.embed("W")               # {"train_embedding": (n, D), "test_label": ...}

The file / dict convention, the standardisation and the checks are those of `jaxmm.data.arrays`;
`resolve_data` turns a template config (`default_config`) into a concrete one.

Template (sized by `resolve_data`; W = `model.fusion.width`, default 128):

  tabular  (N, d)        MLP d -> 2W -> W, one token (`jaxmm.models.MLPEncoder`)
  sequence (N, T, d)     2-layer, 4-head Transformer of width W with sine-cosine positions
  image    (N, H, W, C)  5-conv "small" AlexNet, channels W/4, W/2, ..., pooled, one token

with a 1-layer, 4-head fusion Transformer and a W -> W -> W projection head. Views: Gaussian
noise of std `data.tabular_sigma` = 1.0 on the standardised tabular features (sigma 0.1, the
CoMM App. B.2 value for raw features, makes the task trivial on standardised ones: measured in
docs/results_own_data.md), `data.sequence_sigma` = 0.5 plus dropping 0-80% of the steps on
sequences (CoMM App. C.1), a random resized crop (25-100% of the area) on images. AdamW at lr
1e-3 with 50 warm-up steps and cosine decay, batch 256, 300 steps (600 steps add 0.6 point on
digits at twice the time: docs/results_own_data.md).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxmm import experiment, validation
from jaxmm.config import OptimizerConfig, TrainConfig
from jaxmm.data import arrays as arrays_lib
from jaxmm.data import augment as aug_lib
from jaxmm.data import inputs
from jaxmm.data.inputs import ARRAYS_BUILDER, DataConfig, ModalityData
from jaxmm.experiment import ExperimentConfig, MethodConfig
from jaxmm.methods import registry
from jaxmm.models import FusionConfig, HeadConfig, ModalityConfig, ModelConfig

__all__ = ["METHODS", "default_config", "embed", "fit", "probe", "template_model"]

log = logging.getLogger(__name__)

METHODS = tuple(registry.METHODS)
WIDTH = 128
STEPS = 300
BATCH = 256
DATA_FILE = "data.npz"  # where `fit` saves in-memory arrays, inside the work dir


def template_model(width: int = WIDTH) -> ModelConfig:
    """One template modality per array kind, named by the kind (see the module docstring)."""
    return ModelConfig(
        modalities=(
            ModalityConfig("tabular", "mlp", {}, "one_token"),
            ModalityConfig("sequence", "transformer", {"num_layers": 2, "num_heads": 4}),
            ModalityConfig("image", "alexnet", {"variant": "small", "pool": True}, "one_token"),
        ),
        fusion=FusionConfig(width=width, num_layers=1, num_heads=4),
        head=HeadConfig((width,), width),
    )


def _method(name: str, width: int) -> MethodConfig:
    if name not in registry.METHODS:  # built-ins and methods registered since (plug-ins)
        raise ValueError(f"unknown method {name!r}; methods: {list(registry.METHODS)}")
    return MethodConfig(name, registry.method_class(name).own_data_config(width))


def default_config(method: str = "comm", *, smoke: bool = False) -> ExperimentConfig:
    """The unresolved `<method>_arrays` config: set `data.path`, then `resolve_data`.

    smoke: W = 8 and 4 steps at batch 8 (seconds on CPU; tests).
    """
    width = 8 if smoke else WIDTH
    method_cfg = _method(method, width)
    name = f"{method}_arrays"
    if smoke:
        from jaxmm.configs import common  # every family's smoke loop

        train = common.smoke_train(name)
    else:
        train = TrainConfig(
            steps=STEPS, batch_size=BATCH, log_every=50, ckpt_every=0, keep=1,
            workdir=f"workdirs/{name}",
        )  # fmt: skip
    return ExperimentConfig(
        name=f"{name}_smoke" if smoke else name,
        data=DataConfig(
            builder=ARRAYS_BUILDER,
            num_views=registry.method_class(method_cfg.name).own_data_views,
            eval_batch_size=64 if smoke else 512,
        ),
        model=template_model(width),
        method=method_cfg,
        optimizer=OptimizerConfig(lr=1e-3, weight_decay=1e-4, warmup_steps=0 if smoke else 50),
        train=train,
    )


def fit(
    data: Mapping[str, np.ndarray] | str | os.PathLike,
    *,
    workdir: str | os.PathLike,
    method: str = "comm",
    overrides: Sequence[str] = (),
    config: ExperimentConfig | None = None,
) -> ExperimentConfig:
    """Trains `method` on arrays (a dict, saved to ``workdir/data.npz``) or on an .npz file.

    Args:
      data: {key: array} following the .npz convention, or the path of an .npz file.
      workdir: the run directory (checkpoints with the full experiment config, metrics.jsonl,
        config.json); `launch.probe --workdir` reads it.
      method: a registered method (`METHODS`).
      overrides: "dotted.key=value" overrides, as `--set` (e.g. "train.steps=300",
        "data.modalities=a,b", "data.tabular_sigma=0.5").
      config: an unresolved config to start from instead of `default_config(method)`.

    Returns:
      The resolved `ExperimentConfig` the run trained with (as stored in its checkpoints).

    Raises:
      ValueError: a bad array or config, in one line naming the key / field and its shape.
    """
    import jax

    from jaxmm import train as train_lib
    from jaxmm import workdir as workdir_lib

    workdir = workdir_lib.path(workdir)
    # One writer per work dir (jaxmm.workdir): a live run holding it is refused before data.npz.
    with workdir_lib.hold(workdir):
        if isinstance(data, Mapping):
            path = workdir / DATA_FILE
            buf = io.BytesIO()
            np.savez(buf, **{k: np.asarray(v) for k, v in data.items()})
            workdir_lib.write_bytes(path, buf.getvalue())  # whole, never half-written
            path = os.fspath(path)
        else:
            path = os.fspath(data)
        cfg = default_config(method) if config is None else config
        cfg = experiment.override(
            cfg, [*overrides, f"data.path={path}", f"train.workdir={os.fspath(workdir)}"]
        )
        cfg = resolve_data(cfg)
        validation.validate(cfg)
        it, _ = inputs.build_train_iterator(cfg, process_index=0, process_count=1)
        cfg = experiment.resolve_steps(cfg, inputs.num_train_examples(cfg))
        if jax.process_index() == 0:
            workdir_lib.write_text(workdir / "config.json", cfg.to_json() + "\n")
        train_lib.train(
            experiment.train_config(cfg),
            experiment.build_method(cfg),
            it,
            experiment_config=cfg.to_dict(),
            batch_transform=inputs.device_augmentation(cfg),
        )
    return cfg


def embed(
    workdir: str | os.PathLike, *, step: int | None = None, batch_size: int | None = None
) -> dict[str, np.ndarray]:
    """Frozen embeddings of a run's train and test splits, with their labels.

    Returns:
      {"train_embedding": (n_train, D) float32, "test_embedding": (n_test, D),
       "train_index" / "test_index": rows of the .npz (arange for TFDS data),
       "train_<label>" / "test_<label>": the labels, with the file's original class values}.
    """
    from jaxmm import probe_checkpoint as pc

    run = pc.load_run(workdir, step)
    cfg = run.config
    out: dict[str, np.ndarray] = {}
    ds = inputs.arrays_dataset(cfg) if cfg.data.path is not None else None
    for prefix, split in (("train", cfg.data.train_split), ("test", cfg.data.eval_split)):
        emb, labels = pc.extract_embeddings(
            run.method, run.params, cfg, split, batch_size=batch_size
        )
        out[f"{prefix}_embedding"] = emb
        out[f"{prefix}_index"] = (
            ds.index[split].astype(np.int64) if ds is not None else np.arange(len(emb))
        )
        for name, y in labels.items():
            out[f"{prefix}_{name}"] = ds.original_labels(name, y) if ds is not None else y
    return out


def probe(workdir: str | os.PathLike, *, step: int | None = None, **kwargs: Any) -> dict:
    """`launch.probe`'s report of a run directory (`jaxmm.probe_checkpoint.probe_run`)."""
    from jaxmm import probe_checkpoint as pc

    return pc.probe_run(pc.load_run(workdir, step), **kwargs)


# ------------------------------------------------------------------------------------------------
# Filling a template config in from the .npz it reads.

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
    method_cls = registry.method_class(cfg.method.name)
    mc = cfg.method.config
    try:
        method_cls.check_modalities(mc, list(mods))
    except ValueError as e:
        found = ", ".join(f"{k!r} {(stats['num_examples'], *v['shape'])}" for k, v in mods.items())
        raise ValueError(
            f"{where}: {e} (found {found}; a modality is a float array with >= 2 dims)"
        ) from None
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
