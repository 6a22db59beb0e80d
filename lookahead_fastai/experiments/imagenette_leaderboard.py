"""imagenette_leaderboard: fastai's Imagenette recipe (``nbs/examples/train_imagenette.py`` in the
fastai repository) with the flags of the fastai/imagenette leaderboard's 2020-01 entries, with the
optimizer as the only thing that changes.

At ``full`` every setting is traced in ``SOURCES`` (rendered in the report beside the deviations):
the flags are those of ``2020-01-train.md`` (``--lr 8e-3 --sqrmom 0.99 --mom 0.95 --eps 1e-6 --bs 64
--opt ranger --sa 1 --fp16 1 --arch xse_resnext50 --pool MaxPool``, no mixup at 5 and 20 epochs), the
rest is the script version that file names: ``RandomResizedCrop(size, min_scale=0.35)`` +
``FlipItem(0.5)``, ``LabelSmoothingCrossEntropy()``, ``fit_flat_cos(epochs, lr, wd=1e-2)``,
Mish activations, metrics accuracy and top-5. The reference numbers are those 2020-01 entries at
128 px (5 and 20 epochs, Imagenette and Imagewoof), each with its README commit and line.

Rows: fastai's own ``ranger`` (the entries' optimizer, untouched), ours ``lookahead(radam)`` with the
same k, alpha and RAdam settings, RAdam alone, fastai's Adam and SGD -- everything else identical,
5 runs each at ``full``. "LA/RAdam (ours) vs RAdam" and "ranger (fastai) vs RAdam" are like-for-like
comparisons (only the wrapper differs); Adam and SGD against RAdam differ only in the optimizer, at
the entries' lr 8e-3, which nobody tuned for them: a verdict there holds at that lr only.

No Imagenette or Imagewoof copy exists offline: ``cpu`` and ``smoke`` run the recipe's optimizers,
loss, schedule and wd with the script's default lr and momentum (1e-2, 0.9: their committed runs
predate the 2020-01 flags) on the CIFAR-10 subset (a SUBSTITUTE, with the small CNN and CIFAR's
pad-crop-flip); their numbers say nothing about the leaderboard.
"""
from .deviations import Deviation
from .sources import PRECISION, ReferenceNumber, Source, reference_markdown
from .spec import Experiment, grid

# The optimizer settings: the script's defaults at the small scales (their committed runs predate the
# 2020-01 flags), the 2020-01 flags at full. wd is fit_flat_cos's 1e-2 in both.
FLAGS = {"small": {"lr": 1e-2, "mom": 0.9}, "full": {"lr": 8e-3, "mom": 0.95}}
LOOKAHEAD = {"k": 6, "alpha": 0.5}  # fastai ranger's defaults


def flags(scale):
    return FLAGS["full" if scale == "full" else "small"]


def rows(scale):
    """(name, optimizer, hyper) of each row at ``scale``."""
    lr_mom = flags(scale)
    radam = {"mom": lr_mom["mom"], "sqr_mom": 0.99, "eps": 1e-6, "wd": 1e-2}
    return [("ranger (fastai)", "fastai_ranger", {**radam, "beta": 0.0}),
            ("LA/RAdam (ours)", "lookahead(radam)", {**radam, "beta": 0.0, **LOOKAHEAD}),
            ("RAdam", "radam", {**radam, "beta": 0.0}),
            ("Adam", "fastai_adam", dict(radam)),
            ("SGD", "fastai_sgd", {"mom": lr_mom["mom"], "wd": 1e-2})]


RECIPE = dict(arch="xse_resnext50_mish_sa_maxpool", bs=64, size=128, loss="label_smoothing", augment="rrc_flip",
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
    specs = [dict(name=row_name(name, label, epochs), dataset=dataset, epochs=epochs, optimizer=opt, hyper=hyper)
             for dataset, label in datasets.items() for epochs in epoch_settings for name, opt, hyper in rows(scale)]
    return grid("imagenette_leaderboard", scale, specs, lr=flags(scale)["lr"], **s)


LABEL_EPOCHS = (("CIFAR-10 substitute", (1, 5)), ("Imagenette", (5, 20)), ("Imagewoof", (5, 20)))  # rows' labels


def _comparisons():
    pairs = []
    for label, epoch_settings in LABEL_EPOCHS:
        for epochs in epoch_settings:
            radam = row_name("RAdam", label, epochs)
            pairs += [(row_name("LA/RAdam (ours)", label, epochs), radam),
                      (row_name("ranger (fastai)", label, epochs), radam),
                      (row_name("LA/RAdam (ours)", label, epochs), row_name("ranger (fastai)", label, epochs)),
                      (row_name("Adam", label, epochs), radam),
                      (row_name("SGD", label, epochs), radam)]
    return tuple(pairs)


def _same_algorithm():
    """fastai's ranger and ours (Lookahead over fastai's RAdam, the same settings) are one algorithm
    through two float paths (``lerp_`` against ``add_`` in the sync): how far apart they end is the
    implementation-noise floor."""
    return tuple((row_name("LA/RAdam (ours)", label, epochs), row_name("ranger (fastai)", label, epochs))
                 for label, epoch_settings in LABEL_EPOCHS for epochs in epoch_settings)


# --- sources: where each setting of the full specs comes from (what was read, at which commit) ---
TRAIN_MD = "fastai/imagenette@090b513 2020-01-train.md"
SCRIPT = "fastai/fastai@3faec08 nbs/examples/train_imagenette.py"  # fastai2's, the version 2020-01-train.md names
SCRIPT_NOW = "fastai/fastai@52ff7b4 nbs/examples/train_imagenette.py"
FASTAI = "fastai 2.8.12 (installed here)"
README = "fastai/imagenette@58a6317 README.md"  # 2020-01-14: the 2020-01 entries at 128 px, before later ones

SOURCES = (
    Source("data: Imagenette", {"dataset": "imagenette_320", "n_train": None, "n_valid": None},
           "untar_data(URLs.IMAGENETTE_320) for size <= 224; train/ and val/ (GrandparentSplitter(valid_name='val'))",
           f"{SCRIPT} lines 14-21 (fastai2's script at the commit {TRAIN_MD} line 8 links: the script of every "
           "citation below)", when={"dataset": "imagenette_320"}),
    Source("data: Imagewoof", {"dataset": "imagewoof_320", "n_train": None, "n_valid": None},
           "--woof (changed per run): URLs.IMAGEWOOF_320 for size <= 224, the same folders",
           f"{TRAIN_MD} line 10; {SCRIPT} lines 15, 30", when={"dataset": "imagewoof_320"}),
    Source("image size", {"size": 128}, "--size (changed per run): the 128 px entries",
           f"{TRAIN_MD} line 10; {README} lines 78-79 and 97-98"),
    Source("epochs (5)", {"epochs": 5}, "--epochs (changed per run): the 5-epoch entries",
           f"{TRAIN_MD} line 10; {README} lines 78, 97", when={"epochs": 5}),
    Source("epochs (20)", {"epochs": 20}, "--epochs (changed per run): the 20-epoch entries",
           f"{TRAIN_MD} line 10; {README} lines 79, 98", when={"epochs": 20}),
    Source("batch size", {"bs": 64}, "--bs 64", f"{TRAIN_MD} line 5"),
    Source("model", {"arch": "xse_resnext50_mish_sa_maxpool"},
           "--arch xse_resnext50 --sa 1 --pool MaxPool; m(c_out=10, act_cls=act_fn, sa=sa, sym=sym, pool=pool) with "
           "the defaults act_fn 'MishJit' and sym 0; random init",
           f"{TRAIN_MD} lines 5-6; {SCRIPT} lines 40-47, 64, 68; {FASTAI} vision/models/xresnet.py line 99"),
    Source("augmentation, no mixup", {"augment": "rrc_flip", "data_path": "auto", "mixup": 0.0},
           "item_tfms RandomResizedCrop(size, min_scale=0.35) + FlipItem(0.5); RandomErasing only with --sh "
           "(default 0); 'The 80 and 200 epoch runs use mixup. 5 and 20 do not use mixup.'",
           f"{SCRIPT} lines 22-23, 38, 41, 72; {TRAIN_MD} line 12"),
    Source("loss", {"loss": "label_smoothing"}, "LabelSmoothingCrossEntropy() (eps 0.1 by default)",
           f"{SCRIPT} line 69; {FASTAI} losses.py line 195"),
    Source("learning rate", {"lr": 0.008}, "--lr 8e-3 (the script passes it to whichever --opt)",
           f"{TRAIN_MD} line 5; {SCRIPT} line 76"),
    Source("optimizer: ranger", {"optimizer": "fastai_ranger"},
           "--opt ranger: partial(ranger, mom=mom, sqr_mom=sqrmom, eps=eps, beta=beta); fastai's ranger is "
           "Lookahead(RAdam(...))",
           f"{TRAIN_MD} line 5; {SCRIPT} line 59; {FASTAI} optimizer.py lines 416-427"),
    Source("momentum, sqr_mom, eps", {"hyper.mom": 0.95, "hyper.sqr_mom": 0.99, "hyper.eps": 1e-6},
           "--sqrmom 0.99 --mom 0.95 --eps 1e-6, passed to ranger (and to adam; sgd takes mom only)",
           f"{TRAIN_MD} line 5; {SCRIPT} lines 56-59"),
    Source("RAdam's beta, decoupled weight decay", {"hyper.beta": 0.0, "hyper.decouple_wd": True},
           "--beta 0 (the default: no SAdam); fastai's RAdam, Adam and SGD decouple weight decay by default",
           f"{SCRIPT} lines 44, 59; {FASTAI} optimizer.py lines 176-183, 233-242, 266-275"),
    Source("Lookahead: k and alpha", {"hyper.k": 6, "hyper.alpha": 0.5}, "ranger's defaults k=6, alpha=0.5",
           f"{FASTAI} optimizer.py lines 422-423 (the fastai2 version of 2020-01 was not read)"),
    Source("weight decay and its reach", {"hyper.wd": 0.01, "lr_mult": 1.0,
                                          "weight decay applies to": "all but BatchNorm and bias (fastai Learner, "
                                                                     "wd_bn_bias=False)"},
           "fit_flat_cos(epochs, lr, wd=1e-2); Learner(...) with its defaults: one parameter group, wd_bn_bias=False",
           f"{SCRIPT} lines 68, 76; {FASTAI} learner.py line 121"),
    Source("schedule", {"schedule": "flat_cos", "schedule_params.pct_start": 0.75,
                        "schedule_params.div_final": 100000.0},
           "learn.fit_flat_cos(epochs, lr, ...): flat lr, then cosine annealing from 75% of training to lr/1e5",
           f"{SCRIPT} line 76; {FASTAI} callback/schedule.py line 138"),
    Source("one fit per run, fast weights validated", {"state_reset": "off", "sessions": [],
                                                      "eval_slow_weights": False, "slow_bn_batches": None},
           "one Learner and one fit per run; fastai's Lookahead keeps its slow weights inside the optimizer, so "
           "validation sees the weights as trained",
           f"{SCRIPT} lines 66-76; {FASTAI} optimizer.py lines 381-390"),
    Source("evaluation", {"evaluation": "accuracy after the last epoch, on the 'val' split", "holdout": None},
           "metrics accuracy and top-5 on val/; the leaderboard's Accuracy column",
           f"{SCRIPT} lines 20, 69; {README} line 76"),
)

DEVIATIONS = (
    Deviation("normalisation", "the 2020-01 script version adds no Normalize (batch_tfms is None without --sh, "
              "lines 22-25); the script's later version normalises with ImageNet statistics "
              f"({SCRIPT_NOW} line 24)",
              "ImageNet statistics (the data module's PIL path always normalises)",
              "the data module's rule (not this experiment's to change); as the script's later version",
              settings=("normalisation",)),
    Deviation("numeric precision", f"fp16 with loss scaling: --fp16 1, learn.to_fp16() ({TRAIN_MD} line 6; "
              f"{SCRIPT} line 71)", PRECISION,
              "the runner's one rule for every CUDA run: bf16 needs no loss scaler and has fp32's range; on a GPU "
              "without bf16 it is the entries' to_fp16", settings=("precision",)),
    Deviation("runs and seeds", "each 2020-01 entry is a single run ('All results are from a single run', "
              f"{TRAIN_MD} line 12); the leaderboard notes +/- 1% from run to run ({README} line 68)",
              "5 runs per row with seeds 0-4, each in a fresh Learner; the reference numbers stay single runs",
              "2020-01-train.md asks for averages of 5 runs; paired comparisons need the same seed per row",
              settings=("runs",)),
    Deviation("fastai version", "fastai2 of January 2020 (the script at 3faec08: xse_resnext50, MishJit, ranger, "
              "RAdam, fit_flat_cos, to_fp16 of that version)",
              "fastai 2.8.12's (nn.Mish computes the same function as MishJit)",
              "the installed fastai; the two versions' model and optimizer code were not compared line by line"),
    Deviation("Lookahead implementation", "fastai's Lookahead (ranger)",
              "both: fastai's ranger untouched, and ours lookahead(radam) with the same settings as a separate row "
              "(no momentum pullback, as fastai's)",
              "so the comparison of implementations is itself a like-for-like row",
              settings=("optimizer", "hyper.pullback"), when={"optimizer": "lookahead(radam)"}),
    Deviation("extra row: RAdam", "no leaderboard entry trains RAdam without Lookahead",
              "RAdam with ranger's settings, no Lookahead", "the like-for-like baseline of both Lookahead rows",
              settings=("optimizer",), when={"optimizer": "radam"}),
    Deviation("extra row: Adam", "no 2020-01 entry uses --opt adam",
              "fastai's Adam with the entries' flags (lr 8e-3, mom 0.95, sqr_mom 0.99, eps 1e-6, wd 1e-2)",
              "a common baseline; its lr is ranger's, untuned for it", settings=("optimizer",),
              when={"optimizer": "fastai_adam"}),
    Deviation("extra row: SGD", "no 2020-01 entry uses --opt sgd",
              "fastai's SGD with the entries' lr and momentum (8e-3, 0.95), wd 1e-2",
              "a common baseline; its lr is ranger's, untuned for it", settings=("optimizer",),
              when={"optimizer": "fastai_sgd"}),
    Deviation("data loading workers", "min(8, CPUs) DataLoader workers, each drawing from its own RNG",
              "min(16, CPUs) workers by default (`--workers`), each item's crop and flip drawn from a generator "
              "seeded by (run seed, epoch, item index)",
              "exact resume and the same batches at any worker count; the transforms and their order are the "
              "recipe's, only which random draw an item gets differs"),
    Deviation("cpu and smoke scales", "Imagenette / Imagewoof at 128 px, xse_resnext50 + Mish + self-attention, "
              "the 2020-01 flags",
              "the CIFAR-10 subset (5,085 / 1,017) as a SUBSTITUTE, small CNN, pad-crop-flip, 5 (1) epochs; the "
              "recipe's optimizers, label smoothing, flat-cos schedule and wd, at the script's default lr 1e-2 and "
              "momentum 0.9 (their committed runs predate the 2020-01 flags; changing them would change their run "
              "ids)",
              "no Imagenette copy offline and 2 CPU cores; these scales test the pipeline, not the leaderboard"),
)

REFERENCE_NUMBERS = tuple(
    ReferenceNumber(f"{label} · 128 px · {epochs} epochs", value, row_name("ranger (fastai)", label, epochs),
                    f"{README} line {line}: {label} table, row 128 px / {epochs} epochs, 'fastai2 "
                    "train_imagenette.py 2020-01', a single run")
    for label, epochs, value, line in (("Imagenette", 5, "84.71%", 78), ("Imagenette", 20, "91.13%", 79),
                                       ("Imagewoof", 5, "71.90%", 97), ("Imagewoof", 20, "84.83%", 98)))

REFERENCE = reference_markdown(REFERENCE_NUMBERS) + """
These are the leaderboard's entries trained with the flags this experiment's `full` rows use
(random init, no test-time augmentation), each a single run. Later versions of the leaderboard
list other entries at 128 px (MaxBlurPool, tuned hyper-parameters, other architectures): they are
not this recipe and are not put beside these rows. Only the `full` scale of this experiment stands
beside these numbers.
"""

EXPERIMENT = Experiment(
    name="imagenette_leaderboard",
    description="fastai's Imagenette recipe with the leaderboard's 2020-01 flags (xse_resnext50 + Mish + "
                "self-attention, flat-cos, label smoothing): ranger vs Lookahead(RAdam) vs RAdam / Adam / SGD",
    baseline=row_name("RAdam", "CIFAR-10 substitute", 5), build=build, comparisons=_comparisons(),
    reference=REFERENCE, default_seeds={"smoke": 1, "cpu": 5, "full": 5}, deviations=DEVIATIONS, sources=SOURCES,
    reference_numbers=REFERENCE_NUMBERS, same_algorithm=_same_algorithm(),
    protocol={"smoke": "CIFAR-10 subset SUBSTITUTE, 256 / 128 images, small CNN, 1 epoch",
              "cpu": "CIFAR-10 subset (5,085 / 1,017) as a SUBSTITUTE for Imagenette (no offline copy): small "
                     "CNN, the recipe's optimizers, label smoothing, flat-cos, lr 1e-2, wd 1e-2, bs 64, 5 epochs",
              "full": "fastai's recipe with the 2020-01 leaderboard flags (every setting traced in the report's sources table): "
                      "imagenette2-320 / imagewoof2-320 at 128 px, xse_resnext50 + Mish + self-attention + MaxPool, "
                      "RandomResizedCrop(0.35) + flip, label smoothing, flat-cos, lr 8e-3, mom 0.95, wd 1e-2, bs 64, "
                      "mixed precision, 5 and 20 epochs, 5 runs"},
)
