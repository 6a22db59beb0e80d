"""fastai DataLoaders for the experiments.

Two paths, chosen per run (``RunSpec.data_path``):

* ``tensor``: small-image datasets (digits, MNIST, CIFAR) decoded once into uint8 tensors
  (``registry.datasets.load_arrays``, cached on disk), kept on the training device; a batch is one
  index into the tensor, and augmentation (random crop with padding, horizontal flip) and
  normalisation are batched tensor ops.
* ``pil``: fastai's ``DataBlock`` over image folders with per-item PIL transforms (Imagenette,
  Imagewoof, or CIFAR from its folder for comparison).
"""
from dataclasses import dataclass

import numpy as np
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader

from .registry.datasets import dataset_info, folder_path, load_arrays, stratified_subset

__all__ = ["DataBundle", "build_dataloaders", "BatchAugment"]


@dataclass
class DataBundle:
    dls: DataLoaders
    n_in: int
    n_out: int
    size: int
    n_train: int
    n_valid: int
    path: str


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


def _crop_and_flip(name):
    """Random crop + horizontal flip suit natural images (CIFAR), not digits."""
    return name in ("cifar10", "cifar100")


def _tensor_dataloaders(name, data_dir, bs, n_train, n_valid, device, augment):
    data = load_arrays(name, data_dir=data_dir, n_train=n_train, n_valid=n_valid, seed=0)
    x_train = data.x_train.to(device)
    x_valid = data.x_valid.to(device)
    mean = x_train.float().mean(dim=(0, 2, 3)) / 255
    std = x_train.float().std(dim=(0, 2, 3)) / 255
    pad = 4 if (augment and _crop_and_flip(name)) else 0
    flip = bool(augment and _crop_and_flip(name))
    train = TensorDataLoader(x_train, data.y_train.to(device), BatchAugment(mean, std, pad, flip, train=True),
                             bs=bs, shuffle=True, drop_last=True)
    valid = TensorDataLoader(x_valid, data.y_valid.to(device), BatchAugment(mean, std),
                             bs=bs * 2, shuffle=False, drop_last=False)
    dls = DataLoaders(train, valid, device=torch.device(device))
    return DataBundle(dls, data.channels, data.n_classes, data.image_size, len(x_train), len(x_valid),
                      str(data.source))


def _folder_items(root, folder, n, seed):
    from fastai.data.transforms import get_image_files
    files = get_image_files(root / folder)
    if n is not None and n < len(files):
        labels = np.array([f.parent.name for f in files])
        files = [files[i] for i in stratified_subset(labels, n, seed=seed)]
    return list(files)


def _pil_dataloaders(name, data_dir, bs, n_train, n_valid, size, device, augment):
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import GrandparentSplitter, Normalize, parent_label
    from fastai.vision.augment import CropPad, FlipItem, RandomCrop, RandomResizedCrop, Resize, aug_transforms
    from fastai.vision.core import cifar_stats, imagenet_stats, mnist_stats
    from fastai.vision.data import ImageBlock

    info = dataset_info(name)
    root = folder_path(name, data_dir)
    train_folder, valid_folder = info.train_folder, info.valid_folder
    items = _folder_items(root, train_folder, n_train, (0, 1)) + _folder_items(root, valid_folder, n_valid, (0, 2))
    size = size or info.image_size
    if info.small:
        # the same augmentation as the tensor path: for CIFAR zero-pad 4, random crop, horizontal flip
        crop_flip = augment and _crop_and_flip(name)
        item_tfms = [CropPad(size + 8, pad_mode="zeros"), RandomCrop(size), FlipItem(0.5)] if crop_flip else []
        mean, std = cifar_stats if name.startswith("cifar") else mnist_stats
        batch_tfms = [Normalize.from_stats(mean * 3 if len(mean) == 1 else mean, std * 3 if len(std) == 1 else std)]
    else:
        item_tfms = [RandomResizedCrop(size, min_scale=0.35) if augment else Resize(size)]
        batch_tfms = [*(aug_transforms(size=size) if augment else []), Normalize.from_stats(*imagenet_stats)]
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=lambda _: items,
                      splitter=GrandparentSplitter(train_name=train_folder, valid_name=valid_folder),
                      get_y=parent_label, item_tfms=item_tfms, batch_tfms=batch_tfms)
    dls = block.dataloaders(root, bs=bs, device=torch.device(device), num_workers=0)
    n_train_items = sum(1 for f in items if f.parent.parent.name == train_folder)
    return DataBundle(dls, 3, len(dls.vocab), size, n_train_items, len(items) - n_train_items, str(root))


def build_dataloaders(name, *, data_dir=None, bs=64, n_train=None, n_valid=None, size=None, path="auto",
                      device="cpu", augment=True):
    """DataLoaders for dataset ``name``; ``path`` is ``tensor``, ``pil`` or ``auto`` (tensor for
    small-image datasets, PIL for folder datasets)."""
    info = dataset_info(name)
    if path == "auto":
        path = "tensor" if info.small else "pil"
    if path == "tensor":
        if not info.small:
            raise ValueError(f"dataset {name!r} has no in-memory tensor path; use data_path 'pil'")
        return _tensor_dataloaders(name, data_dir, bs, n_train, n_valid, device, augment)
    if path == "pil":
        return _pil_dataloaders(name, data_dir, bs, n_train, n_valid, size, device, augment)
    raise ValueError(f"data path must be 'tensor', 'pil' or 'auto', got {path!r}")
