"""float_paths: the implementation-noise floor of Fashion-MNIST -- one algorithm through two float paths.

fastai's own ``ranger`` (its ``Lookahead`` over its ``RAdam``) and ours (``lookahead(radam)``: our
Lookahead over the same fastai RAdam, the same settings) are one algorithm: they differ only in how
the sync is computed in floating point (``lerp_`` against ``add_``). How far apart they end, seed by
seed, is the floor below which a difference between two rows cannot be put on the algorithm
(``same_algorithm``, read by results/families.py). ``imagenette_leaderboard`` measures it on the
CIFAR-10 subset; this experiment measures it on Fashion-MNIST with what ``lr_robustness`` uses there
at each scale: the model, data, batch size, epochs, schedule and seeds of its Fashion-MNIST rows.

Settings of the pair: RAdam with lr_robustness's Adam settings (beta1 0.9, beta2 0.999, no weight
decay; eps 1e-5, fastai RAdam's default, stated for both since fastai's ranger defaults to 1e-6),
Lookahead k=5 alpha=0.5 (lr_robustness's first variant), at one lr, 1e-2: the lr at which
lr_robustness's Fashion-MNIST Adam comparisons sit at scale cpu (the best lr of Adam and of both its
Lookahead variants there), so the floor is measured where the comparisons beside it were made.
Both rows are validated on the model's (fast) weights: fastai's ranger keeps its slow weights in its
own state, out of reach of the slow-weight evaluation.

Cost at scale cpu, measured 2026-12-06 on this project's machine (2 CPU cores, shared with other jobs,
load average 2.1-4.1): the 10 runs (2 rows x 5 seeds) took 3 min 49 s of wall time and 242 CPU seconds
(user + sys, both processes' starts included), as two single-threaded sweeps sharing one store:
``OMP_NUM_THREADS=1 lookahead-fastai run float_paths --scale cpu --store S --data-dir ../shared/data``
started twice, then ``lookahead-fastai store export float_paths --store S``.
"""
from .deviations import Deviation
from . import demo, optimizer_tour
from .lr_robustness import DATASETS as LR_DATASETS, SCALES as LR_SCALES, SCHEDULE, SEEDS
from .spec import Experiment, grid

NAME = "float_paths"
DATASET = "fashion_mnist"
LR = 1e-2  # Fashion-MNIST's (kept as it was: the committed Fashion-MNIST runs' names carry it)
RADAM = {"mom": 0.9, "sqr_mom": 0.999, "eps": 1e-5, "wd": 0.0, "beta": 0.0}  # lr_robustness's Adam settings
LOOKAHEAD = {"k": 5, "alpha": 0.5}  # lr_robustness's "LA k5 α0.5"
ROWS = {"ranger (fastai)": "fastai_ranger", "LA/RAdam (ours)": "lookahead(radam)"}
SCALES = ("smoke", "cpu", "full")


def _mnist_label(n_train):
    return "MNIST" if n_train is None else f"MNIST-{n_train // 1000}k" if n_train % 1000 == 0 else f"MNIST-{n_train}"


# dataset -> its label in row names at each scale, its lr, and the RunSpec fields of the report it stands beside
DATASETS = {
    "fashion_mnist": dict(LR_DATASETS["fashion_mnist"], lr=LR),
    "digits": dict({s: "digits" for s in SCALES}, lr=demo.OPTIMIZERS["AdamW"][1]),
    "mnist": dict({s: _mnist_label(optimizer_tour.SCALES[s]["n_train"]) for s in SCALES},
                  lr=optimizer_tour.OPTIMIZERS["Adam"][1]),
}


def settings(dataset, scale):
    """The RunSpec fields every row of ``dataset`` shares at ``scale``: lr_robustness's Fashion-MNIST rows,
    demo's digits rows (bs 64, one-cycle), optimizer_tour's MNIST rows (= optimizers_from_scratch's at
    smoke and cpu) with their constant schedule."""
    if dataset == "fashion_mnist":
        return dict(LR_SCALES[scale][DATASET], schedule=SCHEDULE)
    if dataset == "digits":
        return dict(demo.SCALES[scale], bs=64, schedule="one_cycle")
    return dict(optimizer_tour.SCALES[scale], arch="mlp", schedule="constant")


def row_name(label, scale="cpu", dataset=DATASET):
    return f"{label} · lr {DATASETS[dataset]['lr']:g} · {DATASETS[dataset][scale]}"


def build(scale):
    return [spec for dataset in DATASETS for spec in grid(
        NAME, scale, [dict(name=row_name(label, scale, dataset), optimizer=opt, hyper={**RADAM, **LOOKAHEAD})
                      for label, opt in ROWS.items()],
        dataset=dataset, lr=DATASETS[dataset]["lr"], **settings(dataset, scale))]


def _pairs():
    """Ours minus fastai's, per dataset, at every scale's row names."""
    return tuple(dict.fromkeys((row_name("LA/RAdam (ours)", s, d), row_name("ranger (fastai)", s, d))
                               for d in DATASETS for s in SCALES))


def _protocol(scale):
    parts = []
    for dataset in DATASETS:
        s = settings(dataset, scale)
        images = f"{s['n_train']} / {s['n_valid'] or 'all test'} images" if s["n_train"] else "all images"
        parts.append(f"{DATASETS[dataset][scale]}: {s['arch']}, {s['epochs']} epochs, bs {s['bs']}, {images}, "
                     f"{s['schedule']} at lr {DATASETS[dataset]['lr']:g}")
    return ("; ".join(parts) + " (the settings of lr_robustness's Fashion-MNIST rows, demo's and optimizer_tour's / "
            "optimizers_from_scratch's); RAdam beta1 0.9, beta2 0.999, eps 1e-5, no weight decay, Lookahead k5 α0.5: "
            "fastai's ranger against ours, validated on the fast weights")


DEVIATIONS = (
    Deviation("what is compared", "lr_robustness compares Lookahead with its inner optimizer",
              "one algorithm (Lookahead k5 α0.5 over fastai's RAdam) through two implementations, fastai's ranger "
              "and ours, paired by seed",
              "the difference is the implementation-noise floor of the data, stated beside every report's "
              "smallest detectable difference; it is not a comparison of optimizers"),
    Deviation("one lr", "lr_robustness sweeps 5 lrs spanning 100x",
              f"lr {LR:g} only, the lr at which lr_robustness's Fashion-MNIST Adam comparisons were made at scale cpu",
              "the floor is asked of the data at the lr of the comparisons beside it; a sweep would cost 5 times more"),
    Deviation("evaluation", "lr_robustness scores its Lookahead rows on the slow weights, BatchNorm recomputed",
              "both rows on the model's (fast) weights",
              "fastai's ranger keeps its slow weights in its own state; scoring both the same way keeps them "
              "one algorithm"),
)

EXPERIMENT = Experiment(
    name=NAME,
    description="the implementation-noise floor of Fashion-MNIST: fastai's ranger vs ours (Lookahead k5 α0.5 over "
                "fastai's RAdam, the same settings) with lr_robustness's Fashion-MNIST model, data and seeds",
    baseline=row_name("ranger (fastai)"), build=build, comparisons=_pairs(), same_algorithm=_pairs(),
    default_seeds=dict(SEEDS), deviations=DEVIATIONS, protocol={s: _protocol(s) for s in LR_SCALES},
)
