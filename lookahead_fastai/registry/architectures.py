"""Architectures: name -> a function that builds a fastai ``Learner`` for DataLoaders.

torchvision ResNets go through ``cnn_learner`` (never pretrained: no weights can be fetched here and
the experiments train from scratch); the CIFAR-style ResNet-18 (3x3 stem, no max-pool, as in the
Lookahead paper), the small CNN and the MLP are plain ``Learner`` models for small images.
``xresnet50_mish`` is fastai's XResNet-50 with Mish activations, built as fastai's Imagenette recipe
(``nbs/examples/train_imagenette.py``) builds it with its defaults: a plain ``Learner`` (one
parameter group); ``xse_resnext50_mish_sa_maxpool`` is the model the recipe builds with the flags of
the leaderboard's 2020-01 entries (fastai/imagenette ``2020-01-train.md``: ``--arch xse_resnext50
--sa 1 --pool MaxPool``).
"""
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .user import build_model, is_import_path

__all__ = ["ARCHITECTURES", "ArchInfo", "body_and_head", "build_learner", "cifar_resnet18", "cifar_resnet_small",
           "small_cnn", "strided_cnn", "mlp", "xresnet50_mish", "xse_resnext50_mish_sa_maxpool"]


class _BasicBlock(nn.Module):
    def __init__(self, n_in, n_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, n_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(n_out)
        self.conv2 = nn.Conv2d(n_out, n_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or n_in != n_out:
            self.shortcut = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride, bias=False), nn.BatchNorm2d(n_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def cifar_resnet18(n_in=3, n_out=10, width=64):
    """ResNet-18 for 32x32 images: 3x3 stem, no max-pool, stages of 2 basic blocks."""
    layers = [nn.Conv2d(n_in, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    n = width
    for i, mult in enumerate((1, 2, 4, 8)):
        for j in range(2):
            stride = 2 if (i > 0 and j == 0) else 1
            layers.append(_BasicBlock(n, width * mult, stride))
            n = width * mult
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(n, n_out)]
    return nn.Sequential(*layers)


def cifar_resnet_small(n_in=3, n_out=10, width=8, blocks=(1, 1, 1)):
    """``cifar_resnet18``'s structure made small: the same 3x3 stem (no max-pool) and basic blocks, but
    width 8 and one block per stage in three stages (8, 16, 32 channels; a ResNet-8): about 20k
    parameters, for CPU-scale studies on 32x32 images (one training image costs about 1.5 ms of one
    core)."""
    layers = [nn.Conv2d(n_in, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    n = width
    for i, n_blocks in enumerate(blocks):
        for j in range(n_blocks):
            stride = 2 if (i > 0 and j == 0) else 1
            layers.append(_BasicBlock(n, width * 2 ** i, stride))
            n = width * 2 ** i
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(n, n_out)]
    return nn.Sequential(*layers)


def small_cnn(n_in=3, n_out=10, width=32):
    """Three conv-BN-ReLU blocks and a linear head: trains in seconds on 8x8 to 32x32 images."""
    def block(a, b, stride):
        return [nn.Conv2d(a, b, 3, stride, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*block(n_in, width, 1), *block(width, width * 2, 2), *block(width * 2, width * 4, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width * 4, n_out))


def strided_cnn(n_in=1, n_out=10, width=16):
    """Two strided conv-BN-ReLU layers (5x5 stride 2 to ``width`` channels, 3x3 stride 2 to 2 x ``width``)
    and a linear head on the flattened 7x7 map (adaptive pooling to 7x7 first, so 28x28 and 32x32
    inputs both fit): about 21k parameters, 0.22 ms of one core per 28x28 training image; learns
    Fashion-MNIST to about 90% in three epochs."""
    return nn.Sequential(nn.Conv2d(n_in, width, 5, 2, 2, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                         nn.Conv2d(width, 2 * width, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * width),
                         nn.ReLU(inplace=True),
                         nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(2 * width * 49, n_out))


def mlp(n_in=1, n_out=10, size=28, hidden=(256, 128)):
    """The MLP of the optimizer tour (seed 003): flatten, hidden ReLU layers, linear head."""
    layers, width = [nn.Flatten()], n_in * size * size
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def xresnet50_mish(n_in=3, n_out=10):
    """fastai's ``xresnet50(n_out, act_cls=Mish, sa=False, sym=False, pool=AvgPool)``, the Imagenette
    recipe's model (random init)."""
    from fastai.layers import AvgPool, Mish
    from fastai.vision.models.xresnet import xresnet50
    return xresnet50(c_in=n_in, n_out=n_out, act_cls=Mish, sa=False, sym=False, pool=AvgPool)


def xse_resnext50_mish_sa_maxpool(n_in=3, n_out=10):
    """fastai's ``xse_resnext50(n_out, act_cls=Mish, sa=True, sym=False, pool=MaxPool)``: the
    Imagenette recipe's model with the 2020-01 leaderboard flags (random init)."""
    from fastai.layers import MaxPool, Mish
    from fastai.vision.models.xresnet import xse_resnext50
    return xse_resnext50(c_in=n_in, n_out=n_out, act_cls=Mish, sa=True, sym=False, pool=MaxPool)


def body_and_head(model):
    """Two parameter groups for the plain models: everything but the last layer, and the last layer
    (so a discriminative lr can give the body less)."""
    return [list(model[:-1].parameters()), list(model[-1].parameters())]


@dataclass(frozen=True)
class ArchInfo:
    name: str
    description: str
    build: Callable  # (dls, n_in, n_out, size, **learner_kwargs) -> Learner


def _plain(model_fn):
    def build(dls, n_in, n_out, size, **learner_kwargs):
        from fastai.learner import Learner
        kwargs = dict(n_in=n_in, n_out=n_out)
        if model_fn is mlp:
            kwargs["size"] = size
        return Learner(dls, model_fn(**kwargs), splitter=body_and_head, **learner_kwargs)
    return build


def _recipe(model_fn):
    def build(dls, n_in, n_out, size, **learner_kwargs):
        from fastai.learner import Learner
        return Learner(dls, model_fn(n_in=n_in, n_out=n_out), **learner_kwargs)  # fastai's default splitter
    return build


def _torchvision(arch_name):
    def build(dls, n_in, n_out, size, **learner_kwargs):
        import torchvision.models as tvm
        from fastai.vision.learner import cnn_learner
        arch = getattr(tvm, arch_name)
        return cnn_learner(dls, arch, n_in=n_in, n_out=n_out, pretrained=False, **learner_kwargs)
    return build


ARCHITECTURES = {
    "resnet18": ArchInfo("resnet18", "torchvision ResNet-18 via cnn_learner (not pretrained)", _torchvision("resnet18")),
    "resnet34": ArchInfo("resnet34", "torchvision ResNet-34 via cnn_learner (not pretrained)", _torchvision("resnet34")),
    "resnet50": ArchInfo("resnet50", "torchvision ResNet-50 via cnn_learner (not pretrained)", _torchvision("resnet50")),
    "cifar_resnet18": ArchInfo("cifar_resnet18", "ResNet-18 with a 3x3 stem for 32x32 images (the paper's)",
                               _plain(cifar_resnet18)),
    "cifar_resnet_small": ArchInfo("cifar_resnet_small", "cifar_resnet18's structure, width 8, one block in each "
                                   "of 3 stages (a ResNet-8), for CPU-scale studies", _plain(cifar_resnet_small)),
    "small_cnn": ArchInfo("small_cnn", "3 conv blocks + linear head, for quick scales", _plain(small_cnn)),
    "strided_cnn": ArchInfo("strided_cnn", "2 strided conv-BN-ReLU layers + linear head on the 7x7 map "
                            "(Fashion-MNIST / MNIST at CPU scale)", _plain(strided_cnn)),
    "mlp": ArchInfo("mlp", "2 hidden layers (256, 128), for MNIST / digits", _plain(mlp)),
    "xresnet50_mish": ArchInfo("xresnet50_mish", "fastai XResNet-50 with Mish (fastai's Imagenette recipe)",
                               _recipe(xresnet50_mish)),
    "xse_resnext50_mish_sa_maxpool": ArchInfo(
        "xse_resnext50_mish_sa_maxpool", "fastai XSE-ResNeXt-50 with Mish, self-attention and MaxPool (the "
        "Imagenette leaderboard's 2020-01 entries)", _recipe(xse_resnext50_mish_sa_maxpool)),
}


def build_learner(arch, dls, n_in, n_out, size, **learner_kwargs):
    if is_import_path(arch):  # a user's own model: one parameter group (fastai's default splitter)
        from fastai.learner import Learner
        return Learner(dls, build_model(arch, n_out), **learner_kwargs)
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch].build(dls, n_in, n_out, size, **learner_kwargs)
