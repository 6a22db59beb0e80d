"""Loss functions: name -> a fastai loss (``RunSpec.loss``)."""
from dataclasses import dataclass
from typing import Callable

__all__ = ["LOSSES", "make_loss"]


@dataclass(frozen=True)
class Loss:
    name: str
    description: str
    build: Callable  # () -> loss function for Learner(loss_func=...)


def _cross_entropy():
    from fastai.losses import CrossEntropyLossFlat
    return CrossEntropyLossFlat()


def _label_smoothing():
    from fastai.losses import LabelSmoothingCrossEntropy
    return LabelSmoothingCrossEntropy(eps=0.1)  # fastai's train_imagenette.py: its default eps


LOSSES = {
    "cross_entropy": Loss("cross_entropy", "cross-entropy (fastai CrossEntropyLossFlat)", _cross_entropy),
    "label_smoothing": Loss("label_smoothing", "label-smoothing cross-entropy, eps 0.1 (fastai "
                            "LabelSmoothingCrossEntropy, as in fastai's Imagenette recipe)", _label_smoothing),
}


def make_loss(name):
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name].build()
