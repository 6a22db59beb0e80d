"""float_paths: the implementation-noise floor of Fashion-MNIST, digits and MNIST -- one algorithm
through two float paths.

fastai's own ``ranger`` (its ``Lookahead`` over its ``RAdam``) and ours (``lookahead(radam)``: our
Lookahead over the same fastai RAdam, the same settings) are one algorithm: they differ only in how
the sync is computed in floating point (``lerp_`` against ``add_``). How far apart they end, seed by
seed, is the floor below which a difference between two rows cannot be put on the algorithm
(``same_algorithm``, read by results/families.py). ``imagenette_leaderboard`` measures it on the
CIFAR-10 subset; this experiment measures it on the data of the other reports, each pair with the
model, data, batch size, epochs and schedule of the report it stands beside, at each scale:

- Fashion-MNIST: lr_robustness's Fashion-MNIST rows, at lr 1e-2: the lr at which lr_robustness's
  Fashion-MNIST Adam comparisons sit at scale cpu (the best lr of Adam and of both its Lookahead
  variants there), so the floor is measured where the comparisons beside it were made.
- digits: demo's rows (small CNN, 8 epochs at cpu, bs 64, one-cycle, all 1,438 / 359 images) at lr 3e-3,
  demo's lr for its Adam-family rows (AdamW, LA/AdamW), the family RAdam belongs to.
- MNIST: optimizer_tour's rows (MLP, 5 epochs at cpu, bs 128, 10,000 training images / the whole test
  set), with a constant lr of 1e-3. At smoke and cpu these are also optimizers_from_scratch's settings
  (its rows all train at a constant lr), so one pair stands beside both MNIST reports; optimizer_tour's
  are taken because at full it stays on MNIST (optimizers_from_scratch moves to Imagenette). 1e-3 is
  the Adam lr of both reports (optimizer_tour's "Adam · constant", optimizers_from_scratch's
  "Adam · debiased" and "AdamW"), constant as all of optimizers_from_scratch and that tour row are.

Settings of every pair: RAdam with lr_robustness's Adam settings (beta1 0.9, beta2 0.999, no weight
decay; eps 1e-5, fastai RAdam's default, stated for both since fastai's ranger defaults to 1e-6),
Lookahead k=5 alpha=0.5 (lr_robustness's first variant and demo's), 5 seeds at cpu (demo has 3: the
floor's seeds 0-2 are demo's). Both rows are validated on the model's (fast) weights: fastai's ranger
keeps its slow weights in its own state, out of reach of the slow-weight evaluation.

Cost at scale cpu, measured on this project's machine (2 CPU cores, shared with other jobs), each time as
two single-threaded sweeps sharing one store:
``OMP_NUM_THREADS=1 lookahead-fastai run float_paths --scale cpu --store S --data-dir ../shared/data``
started twice, then ``lookahead-fastai store export float_paths --store S``.
Fashion-MNIST (2026-12-06, load average 2.1-4.1): the 10 runs (2 rows x 5 seeds) took 3 min 49 s of wall
time and 242 CPU seconds (user + sys, both processes' starts included).
digits and MNIST (2026-12-06, load average 0.8-1.4, the Fashion-MNIST runs imported into S first with
``lookahead-fastai store import reports/data/float_paths.jsonl --store S`` so that only the new ones
trained): their 20 runs (4 rows x 5 seeds) took 31 s of wall time and 49 CPU seconds (user + sys, both
processes' starts included; ``/usr/bin/time -v``): about 2 s of training per run.
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
    Deviation("what is compared", "lr_robustness, demo and the MNIST reports compare optimizers with one another",
              "one algorithm (Lookahead k5 α0.5 over fastai's RAdam) through two implementations, fastai's ranger "
              "and ours, paired by seed, on each report's data with its model, epochs, batch size and schedule",
              "the difference is the implementation-noise floor of the data, stated beside every report's "
              "smallest detectable difference; it is not a comparison of optimizers"),
    Deviation("one lr", "lr_robustness sweeps 6 lrs spanning more than 100x; demo and the MNIST reports set one lr per row",
              "Fashion-MNIST lr 1e-2, the lr at which lr_robustness's Fashion-MNIST Adam comparisons were made at "
              "scale cpu; digits lr 3e-3, demo's AdamW lr; MNIST lr 1e-3, the Adam lr of optimizer_tour and "
              "optimizers_from_scratch",
              "the floor is asked of the data at the lr of the comparisons beside it; a sweep would cost 5 times more"),
    Deviation("optimizer settings", "demo's Adam-family rows: AdamW with weight decay 1e-2; the MNIST reports' Adam: "
              "torch's or fastai's defaults",
              "RAdam (beta1 0.9, beta2 0.999, eps 1e-5, no weight decay) on every dataset",
              "fastai's ranger is Lookahead over RAdam; one setting on every dataset keeps the floors one measure"),
    Deviation("seeds", "demo: 3 seeds at cpu", "5 seeds on every dataset (0-4: demo's 0-2 and two more)",
              "a floor from 3 differences is a weak estimate; the digits runs take seconds"),
    Deviation("evaluation", "lr_robustness scores its Lookahead rows on the slow weights, BatchNorm recomputed",
              "both rows on the model's (fast) weights",
              "fastai's ranger keeps its slow weights in its own state; scoring both the same way keeps them "
              "one algorithm"),
)

EXPERIMENT = Experiment(
    name=NAME,
    description="the implementation-noise floor of Fashion-MNIST, digits and MNIST: fastai's ranger vs ours "
                "(Lookahead k5 α0.5 over fastai's RAdam, the same settings) with the model, data and schedule of "
                "lr_robustness's Fashion-MNIST rows, demo's digits rows and the MNIST reports' rows",
    baseline=row_name("ranger (fastai)"), build=build, comparisons=_pairs(), same_algorithm=_pairs(),
    default_seeds=dict(SEEDS), deviations=DEVIATIONS, protocol={s: _protocol(s) for s in LR_SCALES},
)
