"""Dataset registry: where each dataset lives, and how to load it offline or online.

Each dataset is one :class:`DatasetInfo` entry in :data:`DATASETS`: its layout (and so its
decoder), normalisation statistics and default augmentation live there, nowhere else.
Small-image datasets (``digits``, ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``) are
decoded once into uint8 tensors by :func:`load_arrays` and cached as ``.npz`` files; folder
datasets (``imagenette``, ``imagewoof``, and ``cifar10``/``cifar100`` too) are handed to fastai's
DataBlock through :func:`folder_path`.

:func:`locate` uses a folder that already exists as it is; only when none exists does fastai's
``untar_data(url, data=DIR)`` download the dataset. Set ``LOOKAHEAD_FASTAI_OFFLINE=1`` to skip that
download attempt entirely; then a missing dataset raises :class:`DatasetUnavailable` at once.

Besides the stem fastai extracts to (``cifar10``, ``mnist_png``...), ``locate`` accepts the alias
folders of the offline subsets (``cifar10_subset``, ``mnist_subset``, ``fashion_mnist``), so
``--data-dir ../shared/data`` works. IDX datasets are read from the IDX files
(``train-images-idx3-ubyte[.gz]`` ...) or, for MNIST, fastai's ``mnist_png`` layout.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import socket
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import numpy as np
import torch
from fastai.data.external import URLs, fastai_cfg, untar_data

__all__ = [
    "DATASETS", "DatasetInfo", "DatasetUnavailable", "SmallImageData", "CACHE_ENV", "OFFLINE_ENV",
    "dataset_info", "locate", "load_arrays", "folder_path", "stratified_subset", "decode_dataset",
    "default_cache_dir", "HOLDOUT_SEED", "holdout_size", "holdout_split", "holdout_record",
]

OFFLINE_ENV = "LOOKAHEAD_FASTAI_OFFLINE"
CACHE_ENV = "LOOKAHEAD_FASTAI_CACHE"
DEFAULT_CACHE_DIR = "~/.cache/lookahead_fastai"
CONNECT_TIMEOUT_S = 5.0          # reachability probe before fastai's untar_data downloads
_CACHE_VERSION = 1
_IMG_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class DatasetUnavailable(ValueError):
    """A dataset is neither on disk nor downloadable; the message (one line) says how to provide it."""


@dataclass(frozen=True)
class DatasetInfo:
    """Everything the suite knows about one dataset, in one place: adding a dataset is one entry.

    ``layout`` says what a folder of it holds, and so how it is found and decoded: ``embedded``
    (shipped inside a package), ``idx`` (MNIST-style IDX files, or fastai's ``mnist_png`` folders
    ``training/`` + ``testing/``) or ``folders`` (``<split>/<class>/*.png``). ``stats`` are the
    normalisation statistics of the PIL path (the tensor path computes them from the training
    images); ``augment`` is what ``RunSpec.augment = "default"`` means for it: ``pad_crop_flip``
    (zero-pad 4, random crop, horizontal flip), ``none``, or ``folder_default``
    (``RandomResizedCrop(min_scale=0.35)`` + fastai's ``aug_transforms``).
    """
    name: str
    n_classes: int
    image_size: int                 # side in pixels (for imagenette/imagewoof: the shorter side)
    channels: int
    url: str | None                 # fastai ``URLs.*``; None when fastai cannot download it
    stem: str | None                # folder ``untar_data`` extracts ``url`` to
    description: str
    aliases: tuple[str, ...] = ()   # other accepted folder names (offline subsets)
    train_folder: str | None = None  # folder layout: training split under root/<train_folder>/<class>/
    valid_folder: str | None = None  # ... validation split (``valid=`` of ``from_folder``)
    small: bool = False             # decodable to arrays by ``load_arrays``
    layout: str = "folders"         # embedded | idx | folders
    stats: tuple | None = None      # (mean, std) per channel, for the PIL path
    augment: str = "none"           # pad_crop_flip | none | folder_default
    system_paths: tuple[str, ...] = ()  # where an OS package installs it (e.g. Debian's)
    # the whole dataset's training and validation images: the official splits (the validation split
    # is the official test set for MNIST, Fashion-MNIST and CIFAR, ``val/`` for Imagenette/Imagewoof);
    # what a spec with n_train / n_valid None trains on (``lookahead-fastai plan`` prices it)
    full_train: int | None = None
    full_valid: int | None = None

    @property
    def full_sizes(self) -> tuple[int | None, int | None]:
        "``(full_train, full_valid)``."
        return self.full_train, self.full_valid

    @property
    def folder_names(self) -> tuple[str, ...]:
        "Folder names ``locate`` accepts inside a data dir: the stem first, then the aliases."
        return tuple(n for n in (self.stem, *self.aliases) if n)


def _url_stem(url: str) -> str:
    "The folder fastdownload extracts ``url`` to (same rule as ``FastDownload.data_path``)."
    stem = Path(urlparse(url).path).stem
    return stem[:-4] if stem.endswith(".tar") else stem


def _info(name, n_classes, size, channels, url, description, **kw) -> DatasetInfo:
    return DatasetInfo(name, n_classes, size, channels, url, _url_stem(url) if url else None,
                       description, **kw)


_MNIST_STATS = ((0.131,), (0.308,))                                      # fastai.vision.core.mnist_stats
_CIFAR_STATS = ((0.491, 0.482, 0.447), (0.247, 0.243, 0.261))       # fastai.vision.core.cifar_stats
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))    # fastai.vision.core.imagenet_stats
# Imagenette2 / Imagewoof2: the same images at 160 and 320 px
_IMAGENETTE, _IMAGEWOOF = dict(full_train=9469, full_valid=3925), dict(full_train=9025, full_valid=3929)
_IMAGE_FOLDERS = dict(train_folder="train", valid_folder="val", augment="folder_default", stats=_IMAGENET_STATS)

DATASETS: dict[str, DatasetInfo] = {d.name: d for d in [
    _info("digits", 10, 8, 1, None,
          "scikit-learn's 1,797 handwritten 8x8 digits, embedded (no download); fixed stratified "
          "80/20 split", small=True, layout="embedded", stats=_MNIST_STATS, full_train=1438, full_valid=359),
    _info("mnist", 10, 28, 1, URLs.MNIST,
          "MNIST 28x28 grayscale digits (60k/10k); fastai's mnist_png layout or IDX files",
          aliases=("mnist_subset", "mnist"), train_folder="training", valid_folder="testing",
          small=True, layout="idx", stats=_MNIST_STATS, full_train=60000, full_valid=10000),
    _info("fashion_mnist", 10, 28, 1, None,
          "Fashion-MNIST 28x28 grayscale clothing (60k/10k, Zalando, MIT licence), IDX files with MNIST's "
          "names; from --data-dir or Debian's dataset-fashion-mnist package",
          aliases=("fashion_mnist", "fashion-mnist"), small=True, layout="idx",
          stats=((0.2860,), (0.3530,)), system_paths=("/usr/share/datasets/fashion-mnist",),
          full_train=60000, full_valid=10000),
    _info("cifar10", 10, 32, 3, URLs.CIFAR,
          "CIFAR-10 32x32 RGB (50k/10k), fastai layout train/<class>/, test/<class>/",
          aliases=("cifar10_subset",), train_folder="train", valid_folder="test", small=True,
          stats=_CIFAR_STATS, augment="pad_crop_flip", full_train=50000, full_valid=10000),
    _info("cifar100", 100, 32, 3, URLs.CIFAR_100,
          "CIFAR-100 32x32 RGB (50k/10k), fastai layout train/<class>/, test/<class>/",
          aliases=("cifar100_subset",), train_folder="train", valid_folder="test", small=True,
          stats=_CIFAR_STATS, augment="pad_crop_flip", full_train=50000, full_valid=10000),
    _info("imagenette", 10, 160, 3, URLs.IMAGENETTE_160,
          "Imagenette (10 easy ImageNet classes), 160 px shorter side, train/ and val/",
          aliases=("imagenette", "imagenette2-160_subset", "imagenette_subset"), **_IMAGENETTE, **_IMAGE_FOLDERS),
    _info("imagewoof", 10, 160, 3, URLs.IMAGEWOOF_160,
          "Imagewoof (10 dog breeds from ImageNet), 160 px shorter side, train/ and val/",
          aliases=("imagewoof", "imagewoof2-160_subset", "imagewoof_subset"), **_IMAGEWOOF, **_IMAGE_FOLDERS),
    _info("imagenette_320", 10, 320, 3, URLs.IMAGENETTE_320,
          "Imagenette, 320 px shorter side (fastai's Imagenette recipe and leaderboard source), train/ and val/",
          **_IMAGENETTE, **_IMAGE_FOLDERS),
    _info("imagewoof_320", 10, 320, 3, URLs.IMAGEWOOF_320,
          "Imagewoof, 320 px shorter side (fastai's Imagenette recipe and leaderboard source), train/ and val/",
          **_IMAGEWOOF, **_IMAGE_FOLDERS),
]}


def dataset_info(name: str) -> DatasetInfo:
    "The registry entry for ``name``; ValueError naming the choices when unknown."
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[key]


def record_classes(record) -> int | None:
    "The number of classes of a run record's dataset (None for one not in the registry: a user's own)."
    info = DATASETS.get(record.get("dataset"))
    return info.n_classes if info is not None else None


# --------------------------------------------------------------------------- locating
def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _fastai_data_dir() -> Path:
    "fastai's default data folder (``~/.fastai/data`` unless its config says otherwise)."
    try:
        return Path(fastai_cfg().path("data")).expanduser().absolute()
    except Exception:  # unreadable/unwritable config: fall back to fastai's default
        return Path(os.environ.get("FASTAI_HOME", "~/.fastai")).expanduser().absolute() / "data"


def _idx_files(root: Path) -> dict[str, Path] | None:
    "The four MNIST IDX files under ``root`` (or ``root/raw``, ``root/MNIST/raw``), gzipped or not."
    wanted = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
              "valid_images": "t10k-images-idx3-ubyte", "valid_labels": "t10k-labels-idx1-ubyte"}
    for d in (root, root / "raw", root / "MNIST" / "raw"):
        found = {}
        for key, base in wanted.items():
            dotted = base.replace("-idx", ".idx")            # some mirrors use train-images.idx3-ubyte
            for cand in (base, base + ".gz", dotted, dotted + ".gz"):
                if (d / cand).is_file():
                    found[key] = d / cand
                    break
        if len(found) == len(wanted):
            return found
    return None


def _idx_or_png(root: Path) -> str | None:
    "'idx' (IDX files) or 'png' (fastai's mnist_png folders), judged by what ``root`` holds; None for neither."
    if _idx_files(root) is not None:
        return "idx"
    if (root / "training").is_dir() and (root / "testing").is_dir():
        return "png"
    return None


def _layout_ok(info: DatasetInfo, root: Path) -> bool:
    if not root.is_dir():
        return False
    if info.layout == "idx":
        return _idx_or_png(root) is not None
    return (root / info.train_folder).is_dir() and (root / info.valid_folder).is_dir()


def _layout_hint(info: DatasetInfo) -> str:
    if info.layout == "idx":
        return "IDX files (train-images-idx3-ubyte.gz, ...)" + (
            " or training/ + testing/" if info.train_folder else "")
    return f"{info.train_folder}/ + {info.valid_folder}/"


def _call_untar_data(url: str, data: Path | None) -> Path:
    """fastai's ``untar_data(url, data=data)``, undoing its side effect on fastai's global config.

    ``untar_data(url, data=X)`` writes ``X`` into the in-memory config returned by the cached
    ``fastai_cfg()``, so a later plain ``untar_data(URLs.PETS)`` would extract into ``X``.
    """
    cfg = None
    try:
        cfg = fastai_cfg()
        old = cfg.d.get("data", raw=True)
    except Exception:
        old = None
    try:
        return Path(untar_data(url, data=data))
    finally:
        if cfg is not None and data is not None:
            try:
                if old is None:
                    cfg.d.pop("data", None)
                else:
                    cfg["data"] = old
            except Exception:
                pass


def _embedded_path(info: DatasetInfo) -> Path:
    import sklearn.datasets
    return Path(sklearn.datasets.__file__).resolve().parent / "data" / "digits.csv.gz"


def _reachable(url: str) -> str | None:
    """None when ``url``'s host accepts a TCP connection within CONNECT_TIMEOUT_S, else the reason.

    fastai's download has no timeout, so this probe keeps an offline machine from hanging in it.
    Skipped (None) when a proxy is configured: urllib then reaches the host through the proxy.
    """
    from urllib.request import getproxies
    u = urlparse(url)
    if u.scheme in getproxies():
        return None
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((u.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
        return None
    except Exception as e:
        return f"{u.hostname}:{port} unreachable ({type(e).__name__}: {e})"


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def locate(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Root folder of dataset ``name``: an existing folder, or one fastai's ``untar_data`` downloads.

    Looks, in order, in ``data_dir/<stem>``, ``data_dir/<alias>``, ``data_dir`` itself when it is
    named like the dataset, fastai's data folder (``~/.fastai/data``), then the entry's system paths
    (e.g. Debian's package). The first folder with the right layout is used as it is. Only when
    nothing local exists, the dataset has a fastai URL and ``LOOKAHEAD_FASTAI_OFFLINE`` is unset,
    does ``untar_data`` download it (into ``data_dir`` if given); any failure raises
    :class:`DatasetUnavailable` with a one-line message. ``digits`` is embedded: its sklearn file.
    """
    info = dataset_info(name)
    if info.layout == "embedded":
        return _embedded_path(info)
    data = Path(data_dir).expanduser().resolve() if data_dir is not None else None
    fastai_data = _fastai_data_dir()
    candidates: list[Path] = []
    if data is not None:
        candidates += [data / n for n in info.folder_names]
        if data.name in info.folder_names:
            candidates.append(data)
    if data is None or data != fastai_data.resolve():
        candidates += [fastai_data / n for n in info.folder_names]
    candidates += [Path(p) for p in info.system_paths]

    looked, notes = [], []
    for folder in candidates:
        looked.append(str(folder))
        if _layout_ok(info, folder):
            return folder
        if folder.is_dir():
            notes.append(f"{folder} exists but lacks {_layout_hint(info)}")

    if info.url is None:
        reason = "fastai has no download for it"
    elif _offline():
        reason = f"download skipped because {OFFLINE_ENV}=1"
    else:
        reason = _reachable(info.url)
        if reason is None:
            try:
                got = _call_untar_data(info.url, data)
            except Exception as e:  # no network, HTTP error, bad archive, disk full...
                reason = f"fastai untar_data({info.url}) failed: {type(e).__name__}: {e}"
            else:
                if _layout_ok(info, got):
                    return got
                reason = f"fastai untar_data({info.url}) gave {got} without {_layout_hint(info)}"
        else:
            reason = f"download not possible: {reason}"
    noted = f" ({'; '.join(notes)})" if notes else ""
    target = "DIR" if data is None else str(data)
    folder = info.stem or info.folder_names[0]
    source = f"the extracted {info.url}" if info.url else "the dataset's files"
    network = " or run with network access so fastai's untar_data can download it" if info.url else ""
    system = f" or install it where {info.system_paths[0]} is looked at" if info.system_paths else ""
    raise DatasetUnavailable(_one_line(
        f"dataset {info.name!r} not found: looked in {', '.join(looked)}{noted}; {reason}. "
        f"Provide it with --data-dir DIR holding {folder}/ ({source}, with {_layout_hint(info)}), "
        f"e.g. {target}/{folder}/{system}{network}."))


def folder_path(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Root holding ``<train_folder>/<class>/`` and ``<valid_folder>/<class>/`` of a folder dataset.

    Use with ``ImageDataLoaders.from_folder(root, train=info.train_folder, valid=info.valid_folder)``:
    ``valid='val'`` for imagenette/imagewoof, ``valid='test'`` for cifar10/cifar100,
    ``train='training', valid='testing'`` for MNIST in fastai's mnist_png layout.
    """
    info = dataset_info(name)
    if info.train_folder is None:
        raise ValueError(f"dataset {info.name!r} has no folder layout; use load_arrays()")
    root = locate(info.name, data_dir)
    if info.layout == "idx" and _idx_or_png(root) != "png":
        raise ValueError(f"{info.name} at {root} is in IDX layout, not image folders; use load_arrays()")
    return root


# --------------------------------------------------------------------------- decoding
def stratified_subset(labels, n: int, seed: int | Sequence[int] = 0) -> np.ndarray:
    """Sorted indices of a deterministic class-stratified sample of ``n`` items.

    Each class gets its share of ``n`` in proportion to its frequency (largest remainder; at least
    one per class when ``n`` >= the number of classes); within a class the items are a seeded
    random choice. All indices when ``n`` >= ``len(labels)``.
    """
    labels = np.asarray(labels)
    total = len(labels)
    n = int(n)
    if n < 0:
        raise ValueError(f"subset size must be >= 0, got {n}")
    if n >= total:
        return np.arange(total)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = n * counts / total
    k = np.floor(quota).astype(np.int64)
    if n >= len(classes):
        k = np.maximum(k, 1)
    while k.sum() > n:                          # only after the at-least-one rule
        over = np.where(k > 1, k - quota, -np.inf)
        k[int(np.argmax(over))] -= 1
    while k.sum() < n:
        short = np.where(k < counts, quota - k, -np.inf)
        k[int(np.argmax(short))] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(inverse == c))[:k[c]] for c in range(len(classes))]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _read_idx(path: Path) -> np.ndarray:
    "An unsigned-byte IDX array (MNIST format), gzipped or not."
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        buf = f.read()
    if len(buf) < 4 or buf[:2] != b"\0\0" or buf[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = buf[3]
    dims = struct.unpack(f">{ndim}I", buf[4:4 + 4 * ndim])
    arr = np.frombuffer(buf, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {arr.size} bytes")
    return arr.reshape(dims)


def _decode_idx(root: Path) -> dict[str, np.ndarray]:
    files = _idx_files(root)
    out = {}
    for split in ("train", "valid"):
        x, y = _read_idx(files[f"{split}_images"]), _read_idx(files[f"{split}_labels"])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"MNIST IDX files in {root}: images {x.shape} vs labels {y.shape}")
        if y.size and y.max() > 9:
            raise ValueError(f"MNIST IDX labels in {root} go above 9")
        out[f"x_{split}"], out[f"y_{split}"] = x[:, None], y.astype(np.int64)
    out["classes"] = np.array([str(i) for i in range(10)])
    return out


def _load_image(path: Path, mode: str) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert(mode))


def _decode_image_folder(root: Path, train: str, valid: str, mode: str,
                         classes: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    "Decode ``root/<split>/<class>/*.png`` into uint8 (N, C, H, W) arrays and int64 labels."
    if classes is None:
        classes = sorted(d.name for d in (root / train).iterdir() if d.is_dir())
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    out = {"classes": np.array(classes)}
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for split, folder in (("train", train), ("valid", valid)):
            files, labels = [], []
            for d in sorted(p for p in (root / folder).iterdir() if p.is_dir()):
                if d.name not in index:
                    raise ValueError(f"{d}: class {d.name!r} is not among {classes}")
                fs = sorted(p for p in d.iterdir() if p.suffix.lower() in _IMG_EXTS)
                files += fs
                labels += [index[d.name]] * len(fs)
            if not files:
                raise ValueError(f"no images under {root / folder}/<class>/")
            imgs = list(pool.map(lambda p: _load_image(p, mode), files, chunksize=64))
            shapes = {im.shape for im in imgs}
            if len(shapes) > 1:
                odd = next(f for f, im in zip(files, imgs) if im.shape != imgs[0].shape)
                raise ValueError(f"images under {root / folder} differ in size "
                                 f"({imgs[0].shape} vs {odd}); load_arrays needs one size")
            x = np.stack(imgs)
            x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
            out[f"x_{split}"] = np.ascontiguousarray(x)
            out[f"y_{split}"] = np.asarray(labels, dtype=np.int64)
    return out


def _decode_digits() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    valid = stratified_subset(y, round(0.2 * len(y)), seed=0)   # fixed: never the run seed
    train = np.setdiff1d(np.arange(len(y)), valid)
    return {"x_train": x[train], "y_train": y[train], "x_valid": x[valid], "y_valid": y[valid],
            "classes": np.array([str(i) for i in range(10)])}


def decode_dataset(name: str, root: Path | None) -> dict[str, np.ndarray]:
    "Decode the whole dataset at ``root`` (ignored when embedded) into numpy arrays (no caching)."
    info = dataset_info(name)
    if not info.small:
        raise ValueError(f"dataset {info.name!r} is not a small-image dataset; use folder_path()")
    if info.layout == "embedded":
        return _decode_digits()
    if info.layout == "idx":
        if _idx_or_png(root) == "idx":
            return _decode_idx(root)
        return _decode_image_folder(root, info.train_folder, info.valid_folder, "L",
                                    classes=[str(i) for i in range(info.n_classes)])
    return _decode_image_folder(root, info.train_folder, info.valid_folder, "RGB" if info.channels == 3 else "L")


# --------------------------------------------------------------------------- arrays + cache
@dataclass
class SmallImageData:
    """A decoded small-image dataset: uint8 images (N, C, H, W) and int64 labels."""
    name: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_valid: torch.Tensor = field(repr=False)
    y_valid: torch.Tensor = field(repr=False)
    classes: list[str] = field(repr=False)
    source: Path | None = None       # dataset root (digits: sklearn's data file)
    from_cache: bool = False         # the full arrays came from the .npz cache
    x_test: torch.Tensor | None = field(default=None, repr=False)  # with a holdout: the dataset's test split
    y_test: torch.Tensor | None = field(default=None, repr=False)  # (x_valid/y_valid are then the held-out part)
    holdout: dict | None = None      # with a holdout: {"size", "seed", "of"} (see holdout_split)

    @property
    def n_classes(self) -> int: return len(self.classes)
    @property
    def channels(self) -> int: return int(self.x_train.shape[1])
    @property
    def image_size(self) -> int: return int(self.x_train.shape[2])

    def __repr__(self):
        return (f"SmallImageData({self.name!r}, train={tuple(self.x_train.shape)}, "
                f"valid={tuple(self.x_valid.shape)}, n_classes={self.n_classes}, "
                f"source={str(self.source)!r}, from_cache={self.from_cache})")


_KEYS = ("x_train", "y_train", "x_valid", "y_valid", "classes")


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    "``cache_dir``, else ``$LOOKAHEAD_FASTAI_CACHE``, else ``~/.cache/lookahead_fastai``."
    return Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()


def _cache_file(info: DatasetInfo, root: Path, cache_dir) -> Path:
    root = root.resolve()
    try:
        stamp = root.stat().st_mtime_ns
    except OSError:
        stamp = 0
    key = f"v{_CACHE_VERSION}|{info.name}|{root}|{stamp}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return default_cache_dir(cache_dir) / f"{info.name}-{digest}.npz"


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in _KEYS}
    except Exception as e:
        warnings.warn(f"ignoring unreadable dataset cache {path} ({type(e).__name__}: {e})")
        return None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **{k: arrays[k] for k in _KEYS})
        os.replace(tmp, path)
    except OSError as e:
        warnings.warn(f"could not write dataset cache {path} ({type(e).__name__}: {e})")
        tmp.unlink(missing_ok=True)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.require(a, requirements=["C", "W"]))


HOLDOUT_SEED = 20261206  # the held-out validation split's seed: one per dataset, never the run seed


def holdout_size(holdout: int | float, total: int) -> int:
    """How many of ``total`` training images ``holdout`` (a count >= 1, or a fraction in (0, 1)) holds
    out; a ValueError when that leaves no training image or holds out none."""
    n = int(holdout) if isinstance(holdout, int) else round(float(holdout) * total)
    if not 1 <= n < total:
        raise ValueError(f"holdout {holdout!r} holds out {n} of {total} training images; it must hold out "
                         f"at least 1 and leave at least 1")
    return n


def holdout_split(labels, holdout: int | float) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out validation indices) of a training split with ``labels``: a fixed
    class-stratified sample (:func:`stratified_subset`, seed :data:`HOLDOUT_SEED`) of
    :func:`holdout_size` images is held out, the rest train. The same for every run of a dataset: it
    depends on the labels and ``holdout`` only, never on the run's seed or ``n_train``."""
    labels = np.asarray(labels)
    valid = stratified_subset(labels, holdout_size(holdout, len(labels)), seed=(HOLDOUT_SEED, 3))
    return np.setdiff1d(np.arange(len(labels)), valid), valid


def holdout_record(n_held: int, n_of: int) -> dict:
    """What a run's record states of its held-out validation split (both data paths): its size, its
    seed and the size of the training split it was held out of."""
    return {"size": n_held, "seed": HOLDOUT_SEED, "of": n_of}


def load_arrays(name: str, data_dir: str | os.PathLike | None = None, n_train: int | None = None,
                n_valid: int | None = None, seed: int = 0, *,
                cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                holdout: int | float | None = None) -> SmallImageData:
    """Decode small-image dataset ``name`` (digits, mnist, cifar10, cifar100) into uint8 tensors.

    The whole dataset is decoded once and cached in ``cache_dir`` (default: ``$LOOKAHEAD_FASTAI_CACHE``
    or ``~/.cache/lookahead_fastai``) under a key of the dataset name and resolved folder; later loads
    read the ``.npz``. ``n_train``/``n_valid`` take a class-stratified sample drawn with ``seed``
    (train and valid from independent streams). digits has a fixed 80/20 split independent of seed.

    ``holdout`` (three splits): a fixed class-stratified part of the training split
    (:func:`holdout_split`) becomes ``x_valid``/``y_valid``, the dataset's own test split becomes
    ``x_test``/``y_test`` (``n_valid``: a sample of it, as without a holdout), and ``n_train`` samples
    the rest of the training split. None: two splits, valid = the test split (as always).
    """
    info = dataset_info(name)
    if not info.small:
        raise ValueError(f"dataset {info.name!r} is a folder dataset; use folder_path()")
    root = locate(info.name, data_dir)
    cache = _cache_file(info, root, cache_dir) if use_cache else None
    arrays = _read_cache(cache) if cache is not None else None
    from_cache = arrays is not None
    if arrays is None:
        arrays = decode_dataset(info.name, root)
        if cache is not None:
            _write_cache(cache, arrays)
    x_tr, y_tr, x_va, y_va = (arrays[k] for k in _KEYS[:4])
    split = None
    if holdout is not None:
        keep, held = holdout_split(y_tr, holdout)
        split = holdout_record(len(held), len(y_tr))
        x_ho, y_ho = x_tr[held], y_tr[held]
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if n_train is not None:
        i = stratified_subset(y_tr, n_train, seed=(int(seed), 1))
        x_tr, y_tr = x_tr[i], y_tr[i]
    if n_valid is not None:
        i = stratified_subset(y_va, n_valid, seed=(int(seed), 2))
        x_va, y_va = x_va[i], y_va[i]
    test = {}
    if split is not None:  # valid: the held-out part of train; test: the dataset's test split
        test = dict(x_test=_tensor(x_va), y_test=_tensor(y_va.astype(np.int64)), holdout=split)
        x_va, y_va = x_ho, y_ho
    return SmallImageData(info.name, _tensor(x_tr), _tensor(y_tr.astype(np.int64)), _tensor(x_va),
                          _tensor(y_va.astype(np.int64)), [str(c) for c in arrays["classes"]],
                          source=root, from_cache=from_cache, **test)
