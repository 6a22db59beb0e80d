"""imagenette (seed 000): Imagenette (+ Imagewoof) x {LA/SGD, SGD, AdamW}, one-cycle + mixup, state
reset on, accuracy and top-5.

Original: 320 px source at size 224, resnet50, 40 epochs, lr LA/SGD 0.1, SGD 0.05, AdamW 0.01
(wd 0.03). Here ``full`` uses fastai's 160 px versions at size 128 (the leaderboard's setting).
No Imagenette/Imagewoof copy exists offline: ``cpu`` and ``smoke`` use the CIFAR-10 subset as a
clearly named substitute; the real dataset path is kept for ``full``.
"""
from .spec import Experiment, grid

ROWS = [
    ("LA/SGD", "lookahead(sgd)", 0.1, {"mom": 0.9, "wd": 5e-4, "k": 5, "alpha": 0.5}),
    ("SGD", "sgd", 0.05, {"mom": 0.9, "wd": 5e-4}),
    ("AdamW", "adamw", 0.01, {"wd": 0.03}),
]
SCALES = {
    "smoke": dict(datasets={"cifar10": "CIFAR-10 substitute"}, arch="small_cnn", epochs=2, bs=64,
                  n_train=256, n_valid=128, size=None),
    "cpu": dict(datasets={"cifar10": "CIFAR-10 substitute"}, arch="small_cnn", epochs=6, bs=128,
                n_train=None, n_valid=None, size=None),
    "full": dict(datasets={"imagenette": "Imagenette", "imagewoof": "Imagewoof"}, arch="resnet50", epochs=40,
                 bs=64, n_train=None, n_valid=None, size=128),
}


def build(scale):
    s = dict(SCALES[scale])
    datasets = s.pop("datasets")
    rows = [dict(name=f"{name} · {label}", dataset=dataset, optimizer=opt, lr=lr, hyper=hyper,
                 state_reset="sync" if opt.startswith("lookahead") else "epoch")
            for dataset, label in datasets.items() for name, opt, lr, hyper in ROWS]
    return grid("imagenette", scale, rows, schedule="one_cycle", mixup=0.4, **s)


def _comparisons():
    labels = ("CIFAR-10 substitute", "Imagenette", "Imagewoof")
    return tuple(pair for label in labels for pair in
                 ((f"LA/SGD · {label}", f"SGD · {label}"), (f"AdamW · {label}", f"SGD · {label}")))


REFERENCE = """
Seed 000 (Imagenette 320 px at size 224, resnet50, 40 epochs, one-cycle + mixup, reset, one seed):
LA/SGD 88.45% (top-5 98.78%), SGD 87.64%, AdamW 87.74%.
Imagenette leaderboard (128 px, random init, no TTA, 5-run means): Imagenette 87.43% at 5 epochs, 91.57% at 20;
Imagewoof 76.61% / 86.27%; its 2020 baselines used ranger (Lookahead(RAdam)).
"""

EXPERIMENT = Experiment(
    name="imagenette", description="Imagenette/Imagewoof x {LA/SGD, SGD, AdamW}, one-cycle + mixup, state reset",
    baseline="SGD · CIFAR-10 substitute", build=build, comparisons=_comparisons(), reference=REFERENCE,
    protocol={"smoke": "CIFAR-10 subset as a SUBSTITUTE for Imagenette (none offline), 256 / 128 images, 2 epochs",
              "cpu": "CIFAR-10 subset (5,085 / 1,017) as a SUBSTITUTE for Imagenette/Imagewoof (no offline copy); "
                     "small CNN, 6 epochs, one-cycle, mixup 0.4",
              "full": "Imagenette and Imagewoof 160 px at size 128, resnet50 via cnn_learner, 40 epochs"},
)
