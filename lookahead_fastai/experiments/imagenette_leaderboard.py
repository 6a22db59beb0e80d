"""imagenette_leaderboard: fastai's Imagenette recipe (``nbs/examples/train_imagenette.py`` in the
fastai repository, the script behind the fastai/imagenette leaderboard's 2020 baselines), with the
optimizer as the only thing that changes.

The recipe, read from the script (its defaults): ``xresnet50`` with ``act_cls=Mish``, ``sa=False``,
``pool=AvgPool``, random init; images from imagenette2-320 / imagewoof2-320 (size <= 224) through
``RandomResizedCrop(size, min_scale=0.35)`` and ``FlipItem(0.5)``, ImageNet normalisation; bs 64;
``LabelSmoothingCrossEntropy()``; ``fit_flat_cos(epochs, lr=1e-2, wd=1e-2)``; optimizer ``ranger``
(``partial(ranger, mom=0.9, sqr_mom=0.99, eps=1e-6, beta=0.)``: fastai's ``Lookahead`` (k 6,
alpha 0.5) over its ``RAdam``); ``adam``/``sgd`` options are fastai's ``Adam(mom, sqr_mom, eps)`` and
``SGD(mom)``, at the same lr and wd; metrics accuracy and top-5.

Here, at size 128, 5 and 20 epochs, on Imagenette and Imagewoof, rows: fastai's own ``ranger``
(untouched), ours ``lookahead(radam)`` with the same k, alpha and RAdam settings, RAdam alone,
fastai's Adam and SGD -- everything else identical, 5 runs each at ``full`` (the leaderboard's rule:
a mean of 5 runs). "LA/RAdam (ours) vs RAdam" and "ranger (fastai) vs RAdam" are like-for-like
comparisons (only the wrapper differs); Adam and SGD against RAdam differ only in the optimizer, at the
recipe's shared lr 1e-2, which nobody tuned for them: a verdict there holds at that lr only.

No Imagenette or Imagewoof copy exists offline: ``cpu`` and ``smoke`` run the recipe's optimizers,
loss, schedule, lr and wd on the CIFAR-10 subset (a SUBSTITUTE, with the small CNN and CIFAR's
pad-crop-flip); their numbers say nothing about the leaderboard.
"""
from .deviations import Deviation
from .spec import Experiment, grid

RADAM = {"mom": 0.9, "sqr_mom": 0.99, "eps": 1e-6, "wd": 1e-2}  # the recipe's ranger/adam settings, its wd
LOOKAHEAD = {"k": 6, "alpha": 0.5}  # fastai ranger's defaults
ROWS = [  # name, optimizer, hyper
    ("ranger (fastai)", "fastai_ranger", {**RADAM, "beta": 0.0}),
    ("LA/RAdam (ours)", "lookahead(radam)", {**RADAM, "beta": 0.0, **LOOKAHEAD}),
    ("RAdam", "radam", {**RADAM, "beta": 0.0}),
    ("Adam", "fastai_adam", dict(RADAM)),
    ("SGD", "fastai_sgd", {"mom": 0.9, "wd": 1e-2}),
]
LR = 1e-2
RECIPE = dict(arch="xresnet50_mish", bs=64, size=128, loss="label_smoothing", augment="rrc_flip",
              schedule="flat_cos", n_train=None, n_valid=None)
SUBSTITUTE = dict(arch="small_cnn", loss="label_smoothing", schedule="flat_cos", size=None)
SCALES = {
    "smoke": dict(datasets={"cifar10": "CIFAR-10 substitute"}, epochs=(1,), bs=64, n_train=256, n_valid=128,
                  **SUBSTITUTE),
    "cpu": dict(datasets={"cifar10": "CIFAR-10 substitute"}, epochs=(5,), bs=64, n_train=None, n_valid=None,
                **SUBSTITUTE),
    "full": dict(datasets={"imagenette_320": "Imagenette", "imagewoof_320": "Imagewoof"}, epochs=(5, 20), **RECIPE),
}


def row_name(name, label, epochs):
    return f"{name} · {label} · {epochs} ep"


def build(scale):
    s = dict(SCALES[scale])
    datasets, epoch_settings = s.pop("datasets"), s.pop("epochs")
    rows = [dict(name=row_name(name, label, epochs), dataset=dataset, epochs=epochs, optimizer=opt, hyper=hyper)
            for dataset, label in datasets.items() for epochs in epoch_settings for name, opt, hyper in ROWS]
    return grid("imagenette_leaderboard", scale, rows, lr=LR, **s)


def _comparisons():
    pairs = []
    for label, epoch_settings in (("CIFAR-10 substitute", (1, 5)), ("Imagenette", (5, 20)), ("Imagewoof", (5, 20))):
        for epochs in epoch_settings:
            radam = row_name("RAdam", label, epochs)
            pairs += [(row_name("LA/RAdam (ours)", label, epochs), radam),
                      (row_name("ranger (fastai)", label, epochs), radam),
                      (row_name("LA/RAdam (ours)", label, epochs), row_name("ranger (fastai)", label, epochs)),
                      (row_name("Adam", label, epochs), radam),
                      (row_name("SGD", label, epochs), radam)]
    return tuple(pairs)


REFERENCE = """
fastai/imagenette leaderboard (random init, no test-time augmentation, mean of 5 runs), at 128 px:

| dataset | 5 epochs | 20 epochs |
|---|---|---|
| Imagenette | 87.43% | 91.57% |
| Imagewoof | 76.61% | 86.27% |

Its 2020 baselines used `ranger` (Lookahead(RAdam)) with fastai's `train_imagenette.py`; the exact
flags of each entry (learning rate, mixup, self-attention, ...) are not restated here, so a gap
between these and our `full` rows may come from the settings, not the optimizer. Only the `full`
scale of this experiment stands beside these numbers.
"""

DEVIATIONS = (
    Deviation("numeric precision", "fp32 unless `--fp16` is given (the script's default is off)",
              "mixed precision (fastai to_fp16) on CUDA", "the runner trains every CUDA run in mixed precision"),
    Deviation("runs and seeds", "`--runs 5` repeats training in one process, unseeded",
              "5 runs with seeds 0-4, each in a fresh Learner", "paired comparisons need the same seed per row"),
    Deviation("data loading workers", "min(8, CPUs) DataLoader workers", "the suite's PIL path (worker count is "
              "the data module's)", "speed only: the transforms and their order are the recipe's"),
    Deviation("Lookahead implementation", "fastai's Lookahead (ranger)",
              "both: fastai's ranger untouched, and ours lookahead(radam) with the same settings as a separate row",
              "so the comparison of implementations is itself a like-for-like row"),
    Deviation("cpu and smoke scales", "Imagenette / Imagewoof at 128 px, xresnet50 + Mish",
              "the CIFAR-10 subset (5,085 / 1,017) as a SUBSTITUTE, small CNN, pad-crop-flip, 5 (1) epochs; the "
              "recipe's optimizers, label smoothing, flat-cos schedule, lr and wd",
              "no Imagenette copy offline and 2 CPU cores; these scales test the pipeline, not the leaderboard"),
)

EXPERIMENT = Experiment(
    name="imagenette_leaderboard",
    description="fastai's Imagenette recipe (xresnet50 + Mish, flat-cos, label smoothing): ranger vs "
                "Lookahead(RAdam) vs RAdam / Adam / SGD",
    baseline=row_name("RAdam", "CIFAR-10 substitute", 5), build=build, comparisons=_comparisons(),
    reference=REFERENCE, default_seeds={"smoke": 1, "cpu": 5, "full": 5}, deviations=DEVIATIONS,
    protocol={"smoke": "CIFAR-10 subset SUBSTITUTE, 256 / 128 images, small CNN, 1 epoch",
              "cpu": "CIFAR-10 subset (5,085 / 1,017) as a SUBSTITUTE for Imagenette (no offline copy): small "
                     "CNN, the recipe's optimizers, label smoothing, flat-cos, lr 1e-2, wd 1e-2, bs 64, 5 epochs",
              "full": "fastai's recipe: imagenette2-320 / imagewoof2-320 at 128 px, xresnet50 + Mish, "
                      "RandomResizedCrop(0.35) + flip, label smoothing, flat-cos, lr 1e-2, wd 1e-2, bs 64, "
                      "5 and 20 epochs, 5 runs"},
)
