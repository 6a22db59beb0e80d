"""optimizer_state (seed 002): sessions of 10 + 10 + 5 epochs; between sessions a new optimizer or the
kept one (fastai's ``fit(..., reset_opt=...)``), with a constant lr (3e-4, 3e-4, 8e-5) or a new
one-cycle per session (max lr 1e-3, then lower). Adam, bs 100, on the real validation split (the
original validated on training images). ``cpu``/``smoke`` use the CIFAR-10 subset as a named
substitute for Imagenette/Imagewoof, with sessions scaled down (4 + 4 + 2 epochs at cpu).
"""
from .spec import Experiment, grid

SCALES = {
    "smoke": dict(datasets={"cifar10": "CIFAR-10 substitute"}, arch="small_cnn", sessions=(1, 1, 1), bs=64,
                  n_train=256, n_valid=128, size=None),
    "cpu": dict(datasets={"cifar10": "CIFAR-10 substitute"}, arch="small_cnn", sessions=(4, 4, 2), bs=100,
                n_train=None, n_valid=None, size=None),
    "full": dict(datasets={"imagenette": "Imagenette", "imagewoof": "Imagewoof"}, arch="resnet50",
                 sessions=(10, 10, 5), bs=100, n_train=None, n_valid=None, size=160),
}
CONSTANT_LRS = (3e-4, 3e-4, 8e-5)
ONE_CYCLE_LRS = (1e-3, 5e-4, 1e-4)


def sessions(epochs, schedule, reset_opt):
    lrs = ONE_CYCLE_LRS if schedule == "one_cycle" else CONSTANT_LRS
    return tuple({"epochs": e, "lr": lr, "schedule": schedule, "reset_opt": reset_opt and i > 0}
                 for i, (e, lr) in enumerate(zip(epochs, lrs)))


def build(scale):
    s = dict(SCALES[scale])
    datasets, epochs = s.pop("datasets"), s.pop("sessions")
    rows = []
    for dataset, label in datasets.items():
        for schedule, sched_label in (("constant", "constant lr"), ("one_cycle", "one-cycle per session")):
            for reset_opt, opt_label in ((True, "new optimizer"), (False, "kept optimizer")):
                rows.append(dict(name=f"{opt_label} · {sched_label} · {label}", dataset=dataset,
                                 sessions=sessions(epochs, schedule, reset_opt), epochs=sum(epochs),
                                 lr=ONE_CYCLE_LRS[0] if schedule == "one_cycle" else CONSTANT_LRS[0]))
    return grid("optimizer_state", scale, rows, optimizer="adam", hyper={}, **s)


def _comparisons():
    pairs = []
    for label in ("CIFAR-10 substitute", "Imagenette", "Imagewoof"):
        for sched in ("constant lr", "one-cycle per session"):
            pairs.append((f"kept optimizer · {sched} · {label}", f"new optimizer · {sched} · {label}"))
    return tuple(pairs)


EXPERIMENT = Experiment(
    name="optimizer_state", description="keep vs recreate the optimizer between training sessions (Adam)",
    baseline="new optimizer · constant lr · CIFAR-10 substitute", build=build, comparisons=_comparisons(),
    reference="Seed 002 (resnet50 from scratch, 224 px, bs 100, Adam, 10+10+5 epochs) reported no numbers we "
              "can stand beside: its validation set was in fact training images.",
    protocol={"smoke": "CIFAR-10 subset SUBSTITUTE, 256 / 128 images, sessions 1+1+1",
              "cpu": "CIFAR-10 subset (5,085 / 1,017) as a SUBSTITUTE for Imagenette/Imagewoof (no offline copy), "
                     "small CNN, sessions 4+4+2 epochs",
              "full": "Imagenette and Imagewoof 160 px, resnet50, sessions 10+10+5, real validation split"},
)
