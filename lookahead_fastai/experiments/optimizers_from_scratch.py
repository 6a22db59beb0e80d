"""optimizers_from_scratch (seed 004): fastai's ``Optimizer`` = stats + steppers.

SGD with decoupled weight decay (p <- p(1 - lr wd)) vs L2 (g <- g + wd p), with and without
momentum (they differ once momentum is involved); Adam with and without debiasing; AdamW; LAMB vs
Adam; and an ``lr_find`` plot. All rows are fastai optimizers built from stats and steppers.

``full`` follows the course notebook: Imagenette (160 px source) at 128 px with a small conv net, a
few epochs (3 here; the notebook ran 1-3), plain SGD at lr 0.4 and SGD with momentum at 0.3, Adam at
1e-3, LAMB at 3e-3. ``cpu`` and ``smoke`` keep an MLP on real MNIST (offline), a different task.
"""
from .deviations import Deviation, seeds_deviation
from .spec import Experiment, grid

# (row, optimizer, lr at smoke/cpu, lr at full, hyper): full takes the course notebook's lrs for its conv
# net on Imagenette (plain SGD 0.4, SGD with momentum 0.3), the other rows keep theirs
ROWS = [
    ("SGD · weight decay", "fastai_sgd", 0.1, 0.4, {"wd": 1e-2, "decouple_wd": True}),
    ("SGD · L2", "fastai_sgd", 0.1, 0.4, {"wd": 1e-2, "decouple_wd": False}),
    ("SGD+momentum · weight decay", "fastai_sgd", 0.05, 0.3, {"mom": 0.9, "wd": 1e-2, "decouple_wd": True}),
    ("SGD+momentum · L2", "fastai_sgd", 0.05, 0.3, {"mom": 0.9, "wd": 1e-2, "decouple_wd": False}),
    ("Adam · debiased", "fastai_adam", 1e-3, 1e-3, {"wd": 0.0}),
    ("Adam · no debiasing", "adam_no_debias", 1e-3, 1e-3, {"wd": 0.0}),
    ("AdamW", "fastai_adam", 1e-3, 1e-3, {"wd": 1e-2, "decouple_wd": True}),
    ("LAMB", "lamb", 3e-3, 3e-3, {"wd": 1e-2}),
]
SCALES = {
    "smoke": dict(epochs=1, bs=128, n_train=512, n_valid=256),
    "cpu": dict(epochs=5, bs=128, n_train=10000, n_valid=None),
    "full": dict(epochs=3, bs=128, n_train=None, n_valid=None, dataset="imagenette", arch="small_cnn", size=128),
}


def build(scale):
    s = {"dataset": "mnist", "arch": "mlp", **SCALES[scale]}
    rows = [dict(name=name, optimizer=opt, hyper=hyper, lr=full_lr if scale == "full" else lr)
            for name, opt, lr, full_lr, hyper in ROWS]
    return grid("optimizers_from_scratch", scale, rows, schedule="constant", **s)


SEEDS = {"smoke": 1, "cpu": 5, "full": 3}
DEVIATIONS = (
    Deviation("model", "the course's conv net (conv layers of 32-64-128-256 channels, average pool)",
              "full: the suite's small CNN (3 conv-BN-ReLU blocks, 32-64-128 channels)",
              "the closest model in the registry; the mechanisms compared do not depend on it"),
    Deviation("epochs", "1-3 epochs per optimizer", "3 epochs", "the upper end, so the differences have time to "
              "show"),
    Deviation("learning rates", "SGD 0.3-0.4 (the notebook's), others as it ran them",
              "full: plain SGD 0.4, SGD+momentum 0.3, Adam 1e-3, LAMB 3e-3; cpu: 0.1 / 0.05 / 1e-3 / 3e-3",
              "the cpu scale's MLP on MNIST diverges at the conv net's lrs"),
    Deviation("cpu and smoke scales", "Imagenette at 128 px with a conv net",
              "an MLP on real MNIST (10,000 / 10,000 images; smoke 512 / 256), a different task",
              "no Imagenette copy offline; MNIST is real data the 2 CPU cores train in minutes"),
    seeds_deviation("one run per optimizer", SEEDS, "paired intervals need several"),
)

EXPERIMENT = Experiment(
    name="optimizers_from_scratch", description="fastai stats+steppers: weight decay vs L2, debiasing, LAMB",
    baseline="Adam · debiased", build=build, default_seeds=SEEDS,
    lr_find_row="Adam · debiased", deviations=DEVIATIONS,
    comparisons=(("SGD · L2", "SGD · weight decay"), ("SGD+momentum · L2", "SGD+momentum · weight decay"),
                 ("Adam · no debiasing", "Adam · debiased"), ("AdamW", "Adam · debiased"),
                 ("LAMB", "Adam · debiased")),
    reference="Seed 004 is the fastai course's optimizer notebook: it shows the mechanisms, not a results table.",
    protocol={"smoke": "MNIST subset, 512 / 256 images, 1 epoch",
              "cpu": "MNIST (real): 10,000 training images, the full 10,000-image test set, MLP, 5 epochs, constant lr",
              "full": "seed 004: Imagenette (160 px source) at 128 px, small CNN, 3 epochs, constant lr"},
)
