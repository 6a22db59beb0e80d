"""fastai DataLoaders for the experiments.

Two paths, chosen per run (``RunSpec.data_path``):

* ``tensor``: small-image datasets (digits, MNIST, CIFAR) decoded once into uint8 tensors
  (``registry.datasets.load_arrays``, cached on disk), kept on the training device; a batch is one
  index into the tensor, and augmentation (random crop with padding, horizontal flip) and
  normalisation are batched tensor ops.
* ``pil``: fastai's ``DataBlock`` over image folders with per-item PIL transforms (Imagenette,
  Imagewoof, or CIFAR from its folder for comparison), decoded and augmented in ``num_workers``
  worker processes (default: fastai's, one per core available, at most 16; 0: in the training
  process).

Exact resume with workers (``SeededTfmdDL``): every random choice an item transform makes is drawn
from generators seeded, for that one item, from the loader's epoch seed and the item's index in the
dataset; the epoch seed is the draw fastai's ``DataLoader.randomize`` makes from the loader's own
``rng`` at the start of each pass (the same draw it always made, so the shuffle is unchanged), and
that ``rng`` is seeded from the run's seed and kept in every checkpoint. So the images a batch
holds do not depend on which process made them, how many workers there are, or whether the run was
killed and resumed in between: 0, 1 or N workers give the same batches, bit for bit.
"""
import random
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from fastai.data.core import DataLoaders, TfmdDL
from fastai.data.load import DataLoader, _loaders
from fastai.torch_core import to_device
from fastcore.basics import num_cpus

from .registry.datasets import (dataset_info, folder_path, holdout_record, holdout_split, load_arrays,
                                stratified_subset)
from .registry.user import is_import_path, load_dataset

__all__ = ["DataBundle", "build_dataloaders", "BatchAugment", "user_dataloaders", "SeededTfmdDL",
           "default_workers", "check_workers", "item_seed"]

MAX_DEFAULT_WORKERS = 16  # fastai's cap (TfmdDL: min(16, defaults.cpus))
CROP_PAD = 4  # pad_crop_flip's zero padding in pixels, on both data paths


def default_workers():
    """fastai's default number of loader workers: one per core this process may run on
    (``os.sched_getaffinity``, else ``os.cpu_count()``), at most 16."""
    return min(MAX_DEFAULT_WORKERS, num_cpus() or 1)


@dataclass
class DataBundle:
    dls: DataLoaders
    n_in: int
    n_out: int
    size: int
    n_train: int
    n_valid: int
    path: str
    test: object = None          # three splits (a holdout): the test split's loader, scored once at the end
    n_test: int | None = None
    holdout: dict | None = None  # three splits: {"size", "seed", "of"} of the held-out validation split


class BatchAugment:
    """uint8 (B, C, H, W) -> normalised float; when ``train``: random crop after zero padding by
    ``pad`` pixels, and a random horizontal flip, drawn per image with torch's global RNG."""

    def __init__(self, mean, std, pad=0, flip=False, train=False):
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.pad, self.flip, self.train = pad, flip, train

    def __call__(self, batch):
        x, y = batch
        x = x.float().div_(255)
        if self.train and self.pad:
            b, _, h, w = x.shape
            padded = torch.nn.functional.pad(x, (self.pad,) * 4)
            dy = torch.randint(0, 2 * self.pad + 1, (b,), device=x.device)
            dx = torch.randint(0, 2 * self.pad + 1, (b,), device=x.device)
            rows = (dy.view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1)
            cols = (dx.view(b, 1) + torch.arange(w, device=x.device)).view(b, 1, 1, w)
            batch_index = torch.arange(b, device=x.device).view(b, 1, 1, 1)
            channel = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
            x = padded[batch_index, channel, rows, cols]
        if self.train and self.flip:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x - mean) / std, y


class _Indexed:
    """A length for fastai's DataLoader; the batch is cut from the tensors by ``TensorDataLoader``."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


class TensorDataLoader(DataLoader):
    """fastai DataLoader over in-memory tensors: samples are indices, a batch is one gather."""

    def __init__(self, x, y, augment, **kwargs):
        self.x, self.y, self.augment = x, y, augment
        super().__init__(_Indexed(len(x)), indexed=True, **kwargs)

    def create_batch(self, b):
        idx = torch.as_tensor(b, device=self.x.device)
        return self.augment((self.x[idx], self.y[idx]))

    def new(self, dataset=None, cls=None, **kwargs):
        # fastai builds a copy for validation/show; keep tensors and augmentation
        res = super().new(dataset=dataset, cls=cls, x=self.x, y=self.y, augment=self.augment, **kwargs)
        return res


def _augmentation(info, augment):
    """The augmentation a run gets: ``augment`` is a ``RunSpec.augment`` name (True/False: default/none);
    "default" is the dataset entry's own (``DatasetInfo.augment``)."""
    if augment is True or augment is None:
        augment = "default"
    elif augment is False:
        augment = "none"
    return info.augment if augment == "default" else augment


def _tensor_dataloaders(info, data_dir, bs, n_train, n_valid, device, augment, holdout=None):
    if augment not in ("pad_crop_flip", "none"):
        raise ValueError(f"augmentation {augment!r} needs the PIL path; the tensor path does pad_crop_flip or none")
    data = load_arrays(info.name, data_dir=data_dir, n_train=n_train, n_valid=n_valid, seed=0, holdout=holdout)
    x_train = data.x_train.to(device)
    x_valid = data.x_valid.to(device)
    mean = x_train.float().mean(dim=(0, 2, 3)) / 255
    std = x_train.float().std(dim=(0, 2, 3)) / 255
    pad, flip = (CROP_PAD, True) if augment == "pad_crop_flip" else (0, False)
    train = TensorDataLoader(x_train, data.y_train.to(device), BatchAugment(mean, std, pad, flip, train=True),
                             bs=bs, shuffle=True, drop_last=True)
    valid = TensorDataLoader(x_valid, data.y_valid.to(device), BatchAugment(mean, std),
                             bs=bs * 2, shuffle=False, drop_last=False)
    dls = DataLoaders(train, valid, device=torch.device(device))
    test = {}
    if data.x_test is not None:  # normalised with the training images' statistics, as valid
        test = dict(test=TensorDataLoader(data.x_test.to(device), data.y_test.to(device), BatchAugment(mean, std),
                                          bs=bs * 2, shuffle=False, drop_last=False, device=torch.device(device)),
                    n_test=len(data.x_test), holdout=data.holdout)
    return DataBundle(dls, data.channels, data.n_classes, data.image_size, len(x_train), len(x_valid),
                      str(data.source), **test)


_MASK64 = (1 << 64) - 1


def item_seed(epoch_seed, index):
    """A 63-bit seed for one item of one pass: splitmix64 of (epoch seed, index in the dataset), so
    neighbouring items and neighbouring epochs get unrelated streams."""
    z = ((int(epoch_seed) & 0xFFFFFFFF) << 32 | (int(index) & 0xFFFFFFFF)) & _MASK64
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1


def _seed_item(seed):
    """Python's ``random`` (fastai's item transforms draw from it), NumPy's global generator and
    torch's CPU generator, all seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.default_generator.manual_seed(seed)  # torch.manual_seed would seed every accelerator too (slow)


@contextmanager
def _process_rngs_kept():
    """Python's, NumPy's and torch's CPU generators put back as they were after the block, so that
    items made in the training process (no workers) leave its own streams where they were."""
    state = random.getstate(), np.random.get_state(), torch.default_generator.get_state()
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.default_generator.set_state(state[2])


_END = object()


class SeededTfmdDL(TfmdDL):
    """fastai's ``TfmdDL`` whose item transforms draw from per-item generators (see the module's
    docstring), and which copies batches to the GPU without blocking when they come from pinned
    memory."""

    epoch_seed = 0  # before the first pass (fastai's set-up pass over one item)

    def randomize(self):
        # fastai's own: self.rng = random.Random(self.rng.randint(0, 2**32 - 1)); the draw is kept
        self.epoch_seed = self.rng.randint(0, 2**32 - 1)
        self.rng = random.Random(self.epoch_seed)

    def do_item(self, s):
        _seed_item(item_seed(self.epoch_seed, 0 if s is None else s))
        return super().do_item(s)

    def create_batches(self, samps):
        # the process's generators are saved and put back around each batch (not each item: saving
        # NumPy's state costs about as much as decoding a small image)
        batches = super().create_batches(samps)
        while True:
            with _process_rngs_kept():
                b = next(batches, _END)
            if b is _END:
                return
            yield b

    def _one_pass(self):  # fastai's set-up pass over one item, outside create_batches
        with _process_rngs_kept():
            return super()._one_pass()

    def __iter__(self):
        # fastai's DataLoader.__iter__, with non_blocking copies from pinned memory
        self.randomize()
        self.before_iter()
        self._DataLoader__idxs = self.get_idxs()  # in the main process (sample() reads it in the workers)
        non_blocking = bool(self.pin_memory)
        for b in _loaders[self.fake_l.num_workers == 0](self.fake_l):
            if self.pin_memory and type(b) == list:  # pin_memory turns tuples into lists
                b = tuple(b)
            if self.device is not None:
                b = to_device(b, self.device, non_blocking=non_blocking)
            yield self.after_batch(b)
        self.after_iter()
        if hasattr(self, "it"):
            del self.it


def _folder_items(root, folder, n, seed, holdout=None):
    """The image files of ``root/folder``, a class-stratified sample of ``n`` of them (None: all).
    With ``holdout`` (three splits): (that sample taken from what the held-out split leaves, the held-out
    files, how many files the folder has); the files are then sorted first, so the held-out split is the
    same on every filesystem (without a holdout they keep fastai's order, as runs stored before had them)."""
    from fastai.data.transforms import get_image_files
    files = get_image_files(root / folder)
    held, total = [], len(files)
    if holdout is not None:
        files = sorted(files)
    labels = np.array([f.parent.name for f in files])
    if holdout is not None:
        keep, out = holdout_split(labels, holdout)
        files, held, labels = [files[i] for i in keep], [files[i] for i in out], labels[keep]
    if n is not None and n < len(files):
        files = [files[i] for i in stratified_subset(labels, n, seed=seed)]
    return (list(files), held, total) if holdout is not None else list(files)


def _pil_dataloaders(info, data_dir, bs, n_train, n_valid, size, device, augment, num_workers, holdout=None):
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import GrandparentSplitter, IndexSplitter, Normalize, parent_label
    from fastai.vision.augment import CropPad, FlipItem, RandomCrop
    from fastai.vision.data import ImageBlock

    from .registry.augmentations import folder_transforms

    root = folder_path(info.name, data_dir)
    train_folder, valid_folder = info.train_folder, info.valid_folder
    test_items = held = None
    if holdout is None:
        items = _folder_items(root, train_folder, n_train, (0, 1)) + _folder_items(root, valid_folder, n_valid, (0, 2))
    else:  # three splits: validate on files held out of the train folder; the valid folder is the test split
        train_items, held, total = _folder_items(root, train_folder, n_train, (0, 1), holdout)
        items, test_items = train_items + held, _folder_items(root, valid_folder, n_valid, (0, 2))
    size = size or info.image_size
    batch_tfms = []
    if augment == "pad_crop_flip":  # the same as the tensor path: zero-pad 4, random crop, horizontal flip
        item_tfms = [CropPad(size + 2 * CROP_PAD, pad_mode="zeros"), RandomCrop(size), FlipItem(0.5)]
    elif augment == "none" and info.small:
        item_tfms = []
    else:  # folder_default, rrc_flip, none (Resize) for folders
        item_tfms, batch_tfms = folder_transforms("default" if augment == "folder_default" else augment, size)
    mean, std = info.stats
    channels = 3  # fastai's ImageBlock opens images as RGB
    batch_tfms = [*batch_tfms, Normalize.from_stats(tuple(mean) * (channels // len(mean)),
                                                    tuple(std) * (channels // len(std)))]
    splitter = GrandparentSplitter(train_name=train_folder, valid_name=valid_folder) if holdout is None else \
        IndexSplitter(range(len(items) - len(held), len(items)))
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=lambda _: items, splitter=splitter,
                      get_y=parent_label, item_tfms=item_tfms, batch_tfms=batch_tfms)
    device = torch.device(device)
    dls = block.dataloaders(root, bs=bs, device=device, num_workers=num_workers, dl_type=SeededTfmdDL,
                            pin_memory=device.type == "cuda" and num_workers > 0)
    if holdout is not None:
        test = dls.test_dl(test_items, with_labels=True)  # the valid loader's transforms, unshuffled
        split = holdout_record(len(held), total)
        return DataBundle(dls, 3, len(dls.vocab), size, len(items) - len(held), len(held), str(root),
                          test=test, n_test=len(test_items), holdout=split)
    n_train_items = sum(1 for f in items if f.parent.parent.name == train_folder)
    return DataBundle(dls, 3, len(dls.vocab), size, n_train_items, len(items) - n_train_items, str(root))


def build_dataloaders(name, *, data_dir=None, bs=64, n_train=None, n_valid=None, size=None, path="auto",
                      device="cpu", augment="default", num_workers=None, holdout=None):
    """DataLoaders for dataset ``name``; ``path`` is ``tensor``, ``pil`` or ``auto`` (tensor for
    small-image datasets, PIL for folder datasets); ``augment`` a ``RunSpec.augment`` name
    ("default": the dataset entry's own augmentation). ``num_workers``: worker processes of the PIL
    path (None: :func:`default_workers`; 0: none); the tensor path has none (its batches are one
    gather on the device). The batches are the same whatever the number of workers.

    ``holdout`` (three splits, tensor and PIL paths): valid is a fixed class-stratified part of the
    training split, and the bundle's ``test`` the dataset's test split (``load_arrays``)."""
    num_workers = check_workers(num_workers)
    if holdout is not None and is_import_path(name):
        raise ValueError(f"a holdout (three splits) needs a built-in dataset, not {name!r}")
    if is_import_path(name):
        return user_dataloaders(name, bs=bs, n_train=n_train, n_valid=n_valid, device=device)
    info = dataset_info(name)
    augment = _augmentation(info, augment)
    if path == "auto":
        path = "tensor" if info.small else "pil"
    if path == "tensor":
        if not info.small:
            raise ValueError(f"dataset {name!r} has no in-memory tensor path; use data_path 'pil'")
        return _tensor_dataloaders(info, data_dir, bs, n_train, n_valid, device, augment, holdout)
    if path == "pil":
        return _pil_dataloaders(info, data_dir, bs, n_train, n_valid, size, device, augment, num_workers, holdout)
    raise ValueError(f"data path must be 'tensor', 'pil' or 'auto', got {path!r}")


def user_dataloaders(import_path, *, bs=64, n_train=None, n_valid=None, device="cpu"):
    """DataLoaders for a user's own dataset callable (``registry.user.load_dataset``): its fastai
    DataLoaders as they are, or fastai DataLoaders over its torch Datasets (train shuffled with the
    last partial batch dropped, as the built-in datasets; ``n_train`` / ``n_valid``: the first
    items of each). The Datasets' own transforms are the only augmentation."""
    data = load_dataset(import_path)
    if data.dls is not None:  # loaded once per process: its shuffling RNGs drawn afresh, as a new loader's
        dls = data.dls.to(torch.device(device))
        for dl in dls.loaders:
            dl.rng = random.Random(random.randint(0, 2 ** 32 - 1))
        n_tr, n_va = (len(getattr(dl, "dataset", ())) if hasattr(getattr(dl, "dataset", None), "__len__") else 0
                      for dl in (dls.train, dls.valid))
        return DataBundle(dls, 0, data.n_classes, None, n_tr, n_va, import_path)
    from torch.utils.data import Subset
    train, valid = data.train, data.valid
    if n_train is not None and n_train < len(train):
        train = Subset(train, range(n_train))
    if n_valid is not None and n_valid < len(valid):
        valid = Subset(valid, range(n_valid))
    dls = DataLoaders(DataLoader(train, bs=bs, shuffle=True, drop_last=len(train) > bs),
                      DataLoader(valid, bs=bs * 2, shuffle=False), device=torch.device(device))
    return DataBundle(dls, 0, data.n_classes, None, len(train), len(valid), import_path)


def check_workers(num_workers):
    """``num_workers`` as a count: None is :func:`default_workers`; anything but a whole number
    from 0 up is a ValueError."""
    if num_workers is None:
        return default_workers()
    if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) or num_workers < 0:
        raise ValueError(f"num_workers must be a whole number from 0 up, got {num_workers!r}")
    return int(num_workers)
