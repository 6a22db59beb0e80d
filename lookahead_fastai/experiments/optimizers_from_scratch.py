"""optimizers_from_scratch (seed 004): fastai's ``Optimizer`` = stats + steppers.

SGD with decoupled weight decay (p <- p(1 - lr wd)) vs L2 (g <- g + wd p), with and without
momentum (they differ once momentum is involved); Adam with and without debiasing; AdamW; LAMB vs
Adam; and an ``lr_find`` plot. All rows are fastai optimizers built from stats and steppers.
"""
from .spec import Experiment, grid

ROWS = [
    ("SGD · weight decay", "fastai_sgd", 0.1, {"wd": 1e-2, "decouple_wd": True}),
    ("SGD · L2", "fastai_sgd", 0.1, {"wd": 1e-2, "decouple_wd": False}),
    ("SGD+momentum · weight decay", "fastai_sgd", 0.05, {"mom": 0.9, "wd": 1e-2, "decouple_wd": True}),
    ("SGD+momentum · L2", "fastai_sgd", 0.05, {"mom": 0.9, "wd": 1e-2, "decouple_wd": False}),
    ("Adam · debiased", "fastai_adam", 1e-3, {"wd": 0.0}),
    ("Adam · no debiasing", "adam_no_debias", 1e-3, {"wd": 0.0}),
    ("AdamW", "fastai_adam", 1e-3, {"wd": 1e-2, "decouple_wd": True}),
    ("LAMB", "lamb", 3e-3, {"wd": 1e-2}),
]
SCALES = {
    "smoke": dict(epochs=1, bs=128, n_train=512, n_valid=256),
    "cpu": dict(epochs=5, bs=128, n_train=10000, n_valid=None),
    "full": dict(epochs=15, bs=128, n_train=None, n_valid=None),
}


def build(scale):
    rows = [dict(name=name, optimizer=opt, lr=lr, hyper=hyper) for name, opt, lr, hyper in ROWS]
    return grid("optimizers_from_scratch", scale, rows, dataset="mnist", arch="mlp", schedule="constant",
                **SCALES[scale])


EXPERIMENT = Experiment(
    name="optimizers_from_scratch", description="fastai stats+steppers: weight decay vs L2, debiasing, LAMB",
    baseline="Adam · debiased", build=build, lr_find_row="Adam · debiased",
    comparisons=(("SGD · L2", "SGD · weight decay"), ("SGD+momentum · L2", "SGD+momentum · weight decay"),
                 ("Adam · no debiasing", "Adam · debiased"), ("AdamW", "Adam · debiased"),
                 ("LAMB", "Adam · debiased")),
    reference="Seed 004 is the fastai course's optimizer notebook: it shows the mechanisms, not a results table.",
    protocol={"smoke": "MNIST subset, 512 / 256 images, 1 epoch",
              "cpu": "MNIST (real): 10,000 training images, the full 10,000-image test set, MLP, 5 epochs, constant lr",
              "full": "MNIST 60k / 10k, 15 epochs"},
)
