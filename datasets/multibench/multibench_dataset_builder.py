"""MultiBench datasets (Liang et al. 2021) read from the files MultiBench distributes.

One builder, one config per dataset (they share the manual-download logic and format checks):

* `mosi`, `mosei`, `humor` (UR-FUNNY), `sarcasm` (MUsTARD): the affect pickles `mosi_data.pkl`,
  `mosei_senti_data.pkl`, `humor.pkl`, `sarcasm.pkl` -- a dict with 'train' / 'valid' / 'test',
  each holding 'vision' (N, 50, dv), 'audio' (N, 50, da), 'text' (N, 50, 300) and 'labels'
  (one value per sample; 'id' is ignored). Cleaning follows MultiBench `affect/get_data.py`:
  samples whose text is all zero are dropped, -inf audio becomes 0 (other non-finite values are
  zeroed too), and the leading zero padding of the text marks the start of the real steps; as in
  MultiBench's `max_pad` path every modality is shifted so that the real steps come first and
  `<modality>_valid` is True on them. Labels: `label_raw` (float32, the stored value) and
  `label` = 1[label_raw > 0] (CoMM; `*_ge0` configs use >= 0 as FactorCL); for humor and
  sarcasm -1 / 0 become 0.
* `mimic`: `im.pk` with 'ep_tdata' (N, 24, 12), 'adm_features_all' (N, 5), 'y_icd9' (N, 20) and
  'adm_labels_all' (N, >= 6). Non-finite values -> 0, z-scored over the whole file, and split as
  MultiBench `mimic/get_data.py` does (`random.seed(10); random.shuffle`, first 10% validation,
  next 10% test, rest train). Labels: `icd9_group7` (ICD-9 460-519, the CoMM/FactorCL task),
  `icd9` (all 20 groups) and the 6-class `mortality` of MultiBench task -1.
* `vision_touch`: every `*.h5` episode under the manual dir, with 'image' (T, 128, 128, 3),
  'proprio' (T, >= 8), 'ee_forces_continuous' (T, >= 32, 6), 'contact' (T, ...) and 'action'
  (T, 4). One example per step t < T - 1, as in MultiBench's `MultimodalManipulationDataset`:
  image[t], proprio[t, :8], force = ee_forces_continuous[t, -32:], and the next-step targets
  `contact_next` = 1[sum(contact[t + 1]) > 0], `action` = action[t + 1],
  `ee_yaw_next` = proprio[t + 1, :4]. Episodes are split 80/20 by file with a seed.
"""

from __future__ import annotations

import dataclasses
import pickle
import random
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

_VERSION = "1.0.0"
_SEQ_LEN = 50
_TEXT_DIM = 300


class MultiBenchFormatError(ValueError):
    """A MultiBench file is missing or not in the distributed format."""


@dataclasses.dataclass(eq=False)
class MultiBenchConfig(tfds.core.BuilderConfig):
    """Which dataset, its file(s) and dataset-specific options."""

    dataset: str = "mosi"  # mosi | mosei | humor | sarcasm | mimic | vision_touch
    filename: str = ""  # pickle name in the manual dir ('' for vision_touch: all *.h5)
    vision_dim: int = 0  # affect only
    audio_dim: int = 0  # affect only
    label_ge0: bool = False  # affect sentiment: 1[y >= 0] instead of 1[y > 0]
    mimic_task: int = 7  # ICD-9 group of the main MIMIC label
    force_steps: int = 32  # vision_touch: last force readings kept
    proprio_dim: int = 8
    action_dim: int = 4
    image_size: int = 128
    train_fraction: float = 0.8  # vision_touch: share of episode files in train
    seed: int = 0  # vision_touch file split


_AFFECT = {  # dataset: (file, vision dim, audio dim)
    "mosi": ("mosi_data.pkl", 20, 5),
    "mosei": ("mosei_senti_data.pkl", 35, 74),
    "humor": ("humor.pkl", 371, 81),
    "sarcasm": ("sarcasm.pkl", 371, 81),
}


def _configs() -> list[MultiBenchConfig]:
    out = []
    for ds, (fname, dv, da) in _AFFECT.items():
        out.append(
            MultiBenchConfig(
                name=ds,
                version=_VERSION,
                dataset=ds,
                filename=fname,
                vision_dim=dv,
                audio_dim=da,
                description=f"{ds} ({fname})",
            )
        )
        if ds in ("mosi", "mosei"):
            out.append(
                MultiBenchConfig(
                    name=f"{ds}_ge0",
                    version=_VERSION,
                    dataset=ds,
                    filename=fname,
                    vision_dim=dv,
                    audio_dim=da,
                    label_ge0=True,
                    description=f"{ds}, label 1[y >= 0] (FactorCL)",
                )
            )
    out.append(
        MultiBenchConfig(
            name="mimic",
            version=_VERSION,
            dataset="mimic",
            filename="im.pk",
            description="MIMIC-III (im.pk)",
        )
    )
    out.append(
        MultiBenchConfig(
            name="vision_touch",
            version=_VERSION,
            dataset="vision_touch",
            description="Vision&Touch h5 episodes",
        )
    )
    return out


def _fail(path, msg: str):
    raise MultiBenchFormatError(f"{path}: {msg}")


def _load_pickle(path: Path):
    if not path.is_file():
        _fail(
            path,
            "file not found; place the MultiBench file in the manual dir "
            "(see MANUAL_DOWNLOAD_INSTRUCTIONS)",
        )
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except Exception as e:  # noqa: BLE001 -- any unpickling failure is a format error
        _fail(path, f"cannot be unpickled ({type(e).__name__}: {e})")


def _get(container, key: str, path: Path, where: str = ""):
    if not isinstance(container, dict) or key not in container:
        _fail(path, f"missing key '{where}{key}'")
    return container[key]


def _array(value, path: Path, key: str, shape: tuple, dtype=np.float32) -> np.ndarray:
    """Checks `value` against `shape` (None = any size) and returns it as `dtype`."""
    arr = np.asarray(value)
    ok = arr.ndim == len(shape) and all(
        e is None or e == a for e, a in zip(shape, arr.shape, strict=True)
    )
    if not ok:
        want = "(" + ", ".join("N" if e is None else str(e) for e in shape) + ")"
        _fail(path, f"key {key!r} must have shape {want}, got {arr.shape}")
    return arr.astype(dtype)


def clean_affect_split(split: dict, path: Path, key: str, vision_dim: int, audio_dim: int):
    """MultiBench cleaning of one affect split; returns arrays plus per-sample lengths."""
    mods = {}
    for m, d in (("vision", vision_dim), ("audio", audio_dim), ("text", _TEXT_DIM)):
        raw = _get(split, m, path, f"{key}/")
        arr = _array(raw, path, f"{key}/{m}", (None, _SEQ_LEN, d))
        mods[m] = arr
    labels = np.asarray(_get(split, "labels", path, f"{key}/"), dtype=np.float64)
    n = mods["text"].shape[0]
    if labels.shape[:1] != (n,) or labels.size != n:
        _fail(
            path,
            f"key '{key}/labels' must hold one value per sample, shape (N,) / (N, 1) / "
            f"(N, 1, 1) with N = {n}, got {labels.shape}",
        )
    for m in mods:
        if mods[m].shape[0] != n:
            _fail(path, f"key '{key}/{m}' has {mods[m].shape[0]} samples, text has {n}")
    # MultiBench drop_entry: samples with an all-zero transcript carry no aligned steps.
    keep = np.abs(mods["text"]).sum(axis=(1, 2)) != 0
    mods = {m: a[keep] for m, a in mods.items()}
    labels = labels.reshape(n)[keep]
    mods["audio"][mods["audio"] == -np.inf] = 0.0
    for m in mods:
        mods[m][~np.isfinite(mods[m])] = 0.0
    # Aligned data: real steps begin at the first non-zero text step (leading zero padding).
    nonzero = np.any(mods["text"] != 0, axis=2)
    start = np.argmax(nonzero, axis=1)
    lengths = _SEQ_LEN - start
    steps = np.arange(_SEQ_LEN)
    src = np.minimum(steps[None, :] + start[:, None], _SEQ_LEN - 1)
    valid = steps[None, :] < lengths[:, None]
    for m in mods:
        shifted = np.take_along_axis(mods[m], src[:, :, None], axis=1)
        mods[m] = np.where(valid[:, :, None], shifted, 0.0).astype(np.float32)
    return mods, valid, labels.astype(np.float32)


def affect_binary_label(dataset: str, label_raw: np.ndarray, ge0: bool = False) -> np.ndarray:
    """Binary task label: sentiment 1[y > 0] (or >= 0); humor / sarcasm map -1 and 0 to 0."""
    if dataset in ("mosi", "mosei") and ge0:
        return (label_raw >= 0).astype(np.int64)
    return (label_raw > 0).astype(np.int64)


def load_mimic(path: Path, task: int = 7) -> dict[str, np.ndarray]:
    """Reads and cleans `im.pk` like MultiBench; returns arrays in the file's order."""
    data = _load_pickle(path)
    ts = _array(_get(data, "ep_tdata", path), path, "ep_tdata", (None, 24, 12), np.float64)
    st = _array(
        _get(data, "adm_features_all", path), path, "adm_features_all", (None, 5), np.float64
    )
    icd = np.asarray(_get(data, "y_icd9", path))
    if icd.ndim != 2 or icd.shape[1] != 20:
        _fail(path, f"key 'y_icd9' must have shape (N, 20), got {icd.shape}")
    adm = np.asarray(_get(data, "adm_labels_all", path))
    if adm.ndim != 2 or adm.shape[1] < 6:
        _fail(path, f"key 'adm_labels_all' must have shape (N, >=6), got {adm.shape}")
    n = ts.shape[0]
    for key, arr in (("adm_features_all", st), ("y_icd9", icd), ("adm_labels_all", adm)):
        if arr.shape[0] != n:
            _fail(path, f"key {key!r} has {arr.shape[0]} rows, 'ep_tdata' has {n}")
    if not 0 <= task < 20:
        raise ValueError(f"mimic_task must lie in [0, 20), got {task}")
    ts[~np.isfinite(ts)] = 0.0
    st[~np.isfinite(st)] = 0.0

    def z(x, axes):  # z-score over the whole file, as MultiBench (constant columns left at 0)
        std = x.std(axis=axes)
        return (x - x.mean(axis=axes)) / np.where(std > 0, std, 1.0)

    # MultiBench task -1: first positive column among 1..5 of adm_labels_all, else 0.
    pos = adm[:, 1:6] > 0
    mortality = np.where(pos.any(axis=1), pos.argmax(axis=1) + 1, 0)
    return {
        "timeseries": z(ts, (0, 1)).astype(np.float32),
        "static": z(st, 0).astype(np.float32),
        "icd9": (icd > 0).astype(np.int64),
        "icd9_group7": (icd[:, task] > 0).astype(np.int64),
        "mortality": mortality.astype(np.int64),
    }


def mimic_split_indices(n: int) -> dict[str, np.ndarray]:
    """MultiBench split: `random.seed(10); random.shuffle(datasets)` then 10% / 10% / 80%."""
    order = list(range(n))
    random.Random(10).shuffle(order)
    order = np.asarray(order, dtype=np.int64)
    return {
        "validation": order[: n // 10],
        "test": order[n // 10 : n // 5],
        "train": order[n // 5 :],
    }


def _open_h5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as e:
        _fail(path, f"cannot be opened as HDF5 ({e})")


def check_episode(f, path: Path, cfg: MultiBenchConfig) -> bool:
    """Validates keys, shapes and dtypes of an open episode (no data read).

    Returns True when the image is stored channels-first (3, H, W), as some MultiBench files are.
    """
    for key in ("image", "proprio", "ee_forces_continuous", "contact", "action"):
        if key not in f:
            _fail(path, f"missing key {key!r}")
    s = cfg.image_size
    img = f["image"]
    chw = len(img.shape) == 4 and tuple(img.shape[1:]) == (3, s, s)
    if not (chw or (len(img.shape) == 4 and tuple(img.shape[1:]) == (s, s, 3))) or (
        img.dtype != np.uint8
    ):
        _fail(
            path,
            f"key 'image' must be uint8 of shape (T, {s}, {s}, 3), got {img.dtype} {img.shape}",
        )
    t = img.shape[0]
    if t < 2:
        _fail(path, f"key 'image' must hold at least 2 steps, got {t}")
    pro, force, act = f["proprio"].shape, f["ee_forces_continuous"].shape, f["action"].shape
    if len(pro) != 2 or pro[0] != t or pro[1] < cfg.proprio_dim:
        _fail(path, f"key 'proprio' must have shape ({t}, >={cfg.proprio_dim}), got {pro}")
    if len(force) != 3 or force[0] != t or force[1] < cfg.force_steps or force[2] != 6:
        _fail(
            path,
            f"key 'ee_forces_continuous' must have shape ({t}, >={cfg.force_steps}, 6), "
            f"got {force}",
        )
    if tuple(f["contact"].shape[:1]) != (t,):
        _fail(path, f"key 'contact' must have {t} steps, got shape {f['contact'].shape}")
    if tuple(act) != (t, cfg.action_dim):
        _fail(path, f"key 'action' must have shape ({t}, {cfg.action_dim}), got {act}")
    return chw


def read_episode(path: Path, cfg: MultiBenchConfig) -> dict[str, np.ndarray]:
    """One Vision&Touch h5 episode -> per-step examples (T - 1 of them)."""
    with _open_h5(path) as f:
        chw = check_episode(f, path, cfg)
        image = np.asarray(f["image"])
        proprio = np.asarray(f["proprio"], dtype=np.float32)
        force = np.asarray(f["ee_forces_continuous"], dtype=np.float32)
        contact = np.asarray(f["contact"])
        action = np.asarray(f["action"], dtype=np.float32)
    if chw:
        image = np.transpose(image, (0, 3, 2, 1))  # as MultiBench's transpose (2, 1, 0)
    t = image.shape[0]
    nxt = slice(1, t)
    return {
        "image": image[: t - 1],
        "proprio": proprio[: t - 1, : cfg.proprio_dim],
        "force": force[: t - 1, -cfg.force_steps :],
        "action": action[nxt],
        "ee_yaw_next": proprio[nxt, :4],
        "contact_next": (contact[nxt].reshape(t - 1, -1).sum(axis=1) > 0).astype(np.int64),
    }


def split_episode_files(files: list[Path], train_fraction: float, seed: int):
    """Seeded 80/20 split of episode files (at least one file in each split when >= 2)."""
    files = sorted(files)
    perm = np.random.default_rng(seed).permutation(len(files))
    n_train = int(train_fraction * len(files))
    if len(files) >= 2:
        n_train = min(max(n_train, 1), len(files) - 1)
    return [files[i] for i in sorted(perm[:n_train])], [files[i] for i in sorted(perm[n_train:])]


class Multibench(tfds.core.GeneratorBasedBuilder):
    """MultiBench affect, MIMIC and Vision&Touch data from the user's MultiBench files."""

    name = "multibench"
    VERSION = tfds.core.Version(_VERSION)
    RELEASE_NOTES = {_VERSION: "Reads MultiBench's distributed pickles and h5 episodes."}
    BUILDER_CONFIGS = _configs()
    DEFAULT_CONFIG_NAME = "mosi"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download the MultiBench files (https://github.com/pliang279/MultiBench) and pass their folder
    as --manual-dir:
      mosi / mosi_ge0: mosi_data.pkl      mosei / mosei_ge0: mosei_senti_data.pkl
      humor: humor.pkl                    sarcasm: sarcasm.pkl
      mimic: im.pk                        vision_touch: the episode *.h5 files (any sub-folders)
    """

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config

        def t(shape, dtype=np.float32):
            return tfds.features.Tensor(shape=shape, dtype=dtype)

        scalar_i, scalar_f = t((), np.int64), t(())
        if cfg.dataset in _AFFECT:
            feats = {
                "vision": t((_SEQ_LEN, cfg.vision_dim)),
                "audio": t((_SEQ_LEN, cfg.audio_dim)),
                "text": t((_SEQ_LEN, _TEXT_DIM)),
                "vision_valid": t((_SEQ_LEN,), np.bool_),
                "audio_valid": t((_SEQ_LEN,), np.bool_),
                "text_valid": t((_SEQ_LEN,), np.bool_),
                "label": scalar_i,
                "label_raw": scalar_f,
            }
        elif cfg.dataset == "mimic":
            feats = {
                "timeseries": t((24, 12)),
                "static": t((5,)),
                "icd9_group7": scalar_i,
                "icd9": t((20,), np.int64),
                "mortality": scalar_i,
            }
        elif cfg.dataset == "vision_touch":
            s = cfg.image_size
            feats = {
                "image": tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8, encoding="zlib"),
                "proprio": t((cfg.proprio_dim,)),
                "force": t((cfg.force_steps, 6)),
                "action": t((cfg.action_dim,)),
                "ee_yaw_next": t((4,)),
                "contact_next": scalar_i,
            }
        else:
            raise ValueError(f"unknown MultiBench dataset {cfg.dataset!r}")
        return tfds.core.DatasetInfo(
            builder=self,
            description=(__doc__ or "") + f"\nThis config: {cfg.description}",
            features=tfds.features.FeaturesDict(feats),
            homepage="https://github.com/pliang279/MultiBench",
            citation="Liang et al., MultiBench: Multiscale Benchmarks for Multimodal "
            "Representation Learning, NeurIPS 2021 Datasets and Benchmarks.",
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        root = Path(dl_manager.manual_dir)
        if cfg.dataset in _AFFECT:
            path = root / cfg.filename
            data = _load_pickle(path)
            out = {}
            for key, split in (("train", "train"), ("valid", "validation"), ("test", "test")):
                part = _get(data, key, path)
                out[split] = self._generate_examples(
                    self._affect_examples(
                        *clean_affect_split(part, path, key, cfg.vision_dim, cfg.audio_dim)
                    )
                )
            return out
        if cfg.dataset == "mimic":
            data = load_mimic(root / cfg.filename, cfg.mimic_task)
            idx = mimic_split_indices(len(data["static"]))
            return {s: self._generate_examples(self._rows(data, i)) for s, i in idx.items()}
        files = sorted(root.rglob("*.h5"))
        if not files:
            _fail(root, "no Vision&Touch episode (*.h5) found in the manual dir")
        for path in files:  # fail before writing anything, on headers only
            with _open_h5(path) as f:
                check_episode(f, path, cfg)
        if len(files) < 2:
            _fail(
                root,
                f"needs at least 2 episode (*.h5) files for the train/test split, "
                f"found {len(files)}",
            )
        train, test = split_episode_files(files, cfg.train_fraction, cfg.seed)
        return {
            "train": self._generate_examples(self._episodes(train, root)),
            "test": self._generate_examples(self._episodes(test, root)),
        }

    def _generate_examples(self, examples):
        # Each dataset has its own example iterator; TFDS requires this hook by name.
        yield from examples

    def _affect_examples(self, mods, valid, label_raw):
        cfg = self.builder_config
        label = affect_binary_label(cfg.dataset, label_raw, cfg.label_ge0)
        for i in range(len(label)):
            ex = {m: a[i] for m, a in mods.items()}
            ex.update({f"{m}_valid": valid[i] for m in mods})
            ex["label"] = int(label[i])
            ex["label_raw"] = float(label_raw[i])
            yield i, ex

    def _rows(self, data, indices):
        for i in indices:
            yield int(i), {k: (v[i] if v.ndim > 1 else v[i].item()) for k, v in data.items()}

    def _episodes(self, files, root):
        cfg = self.builder_config
        for path in files:
            ep = read_episode(path, cfg)
            rel = path.relative_to(root).as_posix()
            for k in range(len(ep["contact_next"])):
                ex = {key: v[k] for key, v in ep.items()}
                ex["contact_next"] = int(ex["contact_next"])
                yield f"{rel}:{k}", ex


BUILDER = Multibench
