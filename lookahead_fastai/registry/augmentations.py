"""Training augmentations: name -> the transforms each data path applies (``RunSpec.augment``).

* ``default``: small images (CIFAR) get a random crop after zero padding by 4 and a horizontal
  flip, on both data paths; folder datasets get ``RandomResizedCrop(size, min_scale=0.35)`` and
  fastai's ``aug_transforms(size=size)``.
* ``rrc_flip``: fastai's Imagenette recipe (``nbs/examples/train_imagenette.py``):
  ``RandomResizedCrop(size, min_scale=0.35)`` and ``FlipItem(0.5)``, nothing else; folder datasets.
* ``none``: no augmentation (folder datasets: ``Resize(size)``), as seed 002 trained.

Validation always sees the un-augmented images (fastai applies ``RandomResizedCrop`` to the
validation set as a centre crop).
"""
from dataclasses import dataclass

__all__ = ["AUGMENTATIONS", "check_augment", "folder_transforms"]


@dataclass(frozen=True)
class Augmentation:
    name: str
    description: str
    folder_only: bool  # only the PIL path over image folders implements it


AUGMENTATIONS = {
    "default": Augmentation("default", "CIFAR: pad-4 random crop + flip; folders: RandomResizedCrop(0.35) + "
                            "aug_transforms", False),
    "rrc_flip": Augmentation("rrc_flip", "RandomResizedCrop(size, min_scale=0.35) + FlipItem(0.5) only "
                             "(fastai's Imagenette recipe)", True),
    "none": Augmentation("none", "no augmentation (folders: Resize(size))", False),
}


def check_augment(name, small_dataset, data_path):
    """ValueError when ``name`` cannot be applied to a dataset (small or folder) on ``data_path``."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; choose one of {', '.join(AUGMENTATIONS)}")
    if AUGMENTATIONS[name].folder_only and small_dataset and data_path != "pil":
        raise ValueError(f"augmentation {name!r} needs the PIL path over image folders (data_path 'pil' "
                         "or a folder dataset)")


def folder_transforms(name, size):
    """(item_tfms, batch_tfms before normalisation) of the PIL path for a folder dataset."""
    from fastai.vision.augment import FlipItem, RandomResizedCrop, Resize, aug_transforms
    if name == "default":
        return [RandomResizedCrop(size, min_scale=0.35)], aug_transforms(size=size)
    if name == "rrc_flip":
        return [RandomResizedCrop(size, min_scale=0.35), FlipItem(0.5)], []
    if name == "none":
        return [Resize(size)], []
    raise ValueError(f"unknown augmentation {name!r}; choose one of {', '.join(AUGMENTATIONS)}")
