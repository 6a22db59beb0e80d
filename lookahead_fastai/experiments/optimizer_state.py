"""optimizer_state (seed 002): sessions of 10 + 10 + 5 epochs; between sessions a new optimizer or the
kept one (fastai's ``fit(..., reset_opt=...)``), with a constant lr (3e-4, 3e-4, 8e-5) or a new
one-cycle per session (max lrs 1e-3, 1e-5, 1e-5, as the original's torch ``OneCycleLR``: warm-up over
30%, initial lr max/25, final lr max/25e4, momentum 0.95-0.85-0.95). Adam (torch defaults), bs 100,
resnet50 from scratch on images resized to 224 px without augmentation, Imagenette and Imagewoof
(the 320 px versions at ``full``).

The one correction, applied to every row: validation on the real validation split (the original
validated on training images, which measures training accuracy; no row reproduces that).
``cpu``/``smoke`` use the CIFAR-10 subset as a named substitute for Imagenette/Imagewoof, with
sessions scaled down (4 + 4 + 2 epochs at cpu).
"""
from .deviations import Deviation, precision_deviation
from .spec import Experiment, grid

SCALES = {
    "smoke": dict(datasets={"cifar10": "CIFAR-10 substitute"}, arch="small_cnn", sessions=(1, 1, 1), bs=64,
                  n_train=256, n_valid=128, size=None),
    "cpu": dict(datasets={"cifar10": "CIFAR-10 substitute"}, arch="small_cnn", sessions=(4, 4, 2), bs=100,
                n_train=None, n_valid=None, size=None),
    "full": dict(datasets={"imagenette_320": "Imagenette", "imagewoof_320": "Imagewoof"}, arch="resnet50",
                 sessions=(10, 10, 5), bs=100, n_train=None, n_valid=None, size=224),
}
CONSTANT_LRS = (3e-4, 3e-4, 8e-5)
ONE_CYCLE_LRS = (1e-3, 1e-5, 1e-5)
TORCH_ONE_CYCLE = {"pct_start": 0.3, "div": 25.0, "div_final": 25e4}  # torch OneCycleLR's defaults


def sessions(epochs, schedule, reset_opt):
    lrs = ONE_CYCLE_LRS if schedule == "one_cycle" else CONSTANT_LRS
    params = TORCH_ONE_CYCLE if schedule == "one_cycle" else {}
    return tuple({"epochs": e, "lr": lr, "schedule": schedule, "reset_opt": reset_opt and i > 0,
                  **({"schedule_params": params} if params else {})}
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
    return grid("optimizer_state", scale, rows, optimizer="adam", hyper={}, augment="none", **s)


def _comparisons():
    pairs = []
    for label in ("CIFAR-10 substitute", "Imagenette", "Imagewoof"):
        for sched in ("constant lr", "one-cycle per session"):
            pairs.append((f"kept optimizer · {sched} · {label}", f"new optimizer · {sched} · {label}"))
    return tuple(pairs)


DEVIATIONS = (
    Deviation("validation set", "training images (its validation split was drawn from the training folder)",
              "the dataset's real validation split, for every row", "validating on training images measures "
              "training accuracy; this is a correction with no reproduction row"),
    Deviation("source images", "Imagenette / Imagewoof resized to 224 (source size not recorded here)",
              "imagenette2-320 / imagewoof2-320 resized to 224 (fastai Resize, no augmentation)",
              "the smallest official version that is at least 224 px"),
    Deviation("one-cycle schedule", "torch OneCycleLR per session (max lr 1e-3, 1e-5, 1e-5)",
              "fastai fit_one_cycle with OneCycleLR's defaults (pct_start 0.3, div 25, final lr max/25e4, "
              "momentum 0.95-0.85-0.95 on Adam's beta1)", "fastai's schedule, same shape and end points"),
    Deviation("model", "torchvision resnet50 from scratch with its own fc head",
              "torchvision resnet50 through fastai's cnn_learner (fastai head, not pretrained)",
              "the suite builds torchvision models through cnn_learner"),
    precision_deviation("fp32"),
    Deviation("cpu and smoke scales", "Imagenette / Imagewoof, resnet50, 10 + 10 + 5 epochs",
              "the CIFAR-10 subset as a SUBSTITUTE, small CNN, 4 + 4 + 2 (1 + 1 + 1) epochs, same lrs",
              "no Imagenette copy offline and 2 CPU cores"),
)

EXPERIMENT = Experiment(
    name="optimizer_state", description="keep vs recreate the optimizer between training sessions (Adam)",
    baseline="new optimizer · constant lr · CIFAR-10 substitute", build=build, comparisons=_comparisons(),
    deviations=DEVIATIONS, default_seeds={"smoke": 1, "cpu": 5, "full": 3},
    reference="Seed 002 (resnet50 from scratch, 224 px, bs 100, Adam, 10+10+5 epochs) reported no numbers we "
              "can stand beside: its validation set was in fact training images.",
    protocol={"smoke": "CIFAR-10 subset SUBSTITUTE, 256 / 128 images, sessions 1+1+1",
              "cpu": "CIFAR-10 subset (5,085 / 1,017) as a SUBSTITUTE for Imagenette/Imagewoof (no offline copy), "
                     "small CNN, sessions 4+4+2 epochs",
              "full": "seed 002: Imagenette and Imagewoof (320 px source) resized to 224, no augmentation, "
                      "resnet50, Adam, bs 100, sessions 10+10+5, real validation split"},
)
