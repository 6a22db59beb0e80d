"""demo: is Lookahead worth it on a tiny real dataset? SGD, Lookahead(SGD), AdamW, Lookahead(AdamW)
on scikit-learn's digits (embedded, no download), one-cycle schedule. ``make demo`` runs it.

Its "slow-weights accuracy" column equals the final accuracy by construction: training ends on a
Lookahead sync (full: 660 steps) or a few steps after one (cpu: 176 steps, one step after the sync at
175; smoke: 8 steps, three after the sync at 5) at one-cycle's final lr (lr / 1e5), so the fast
weights are the slow ones or a negligible step away. It shows no effect of evaluating on slow weights.
"""
from .deviations import Deviation
from .spec import Experiment, RunSpec

# name -> (optimizer, lr, hyper-parameters)
OPTIMIZERS = {
    "SGD": ("sgd", 0.1, {"mom": 0.9, "wd": 5e-4}),
    "LA/SGD": ("lookahead(sgd)", 0.1, {"mom": 0.9, "wd": 5e-4, "k": 5, "alpha": 0.5}),
    "AdamW": ("adamw", 3e-3, {"wd": 1e-2}),
    "LA/AdamW": ("lookahead(adamw)", 3e-3, {"wd": 1e-2, "k": 5, "alpha": 0.5}),
}
SCALES = {
    # scale: dataset size, epochs, architecture
    "smoke": dict(n_train=256, n_valid=128, epochs=2, arch="mlp"),
    "cpu": dict(n_train=None, n_valid=None, epochs=8, arch="small_cnn"),
    "full": dict(n_train=None, n_valid=None, epochs=30, arch="small_cnn"),
}


def build(scale):
    s = SCALES[scale]
    return [RunSpec(experiment="demo", name=name, dataset="digits", arch=s["arch"], optimizer=opt, lr=lr,
                    hyper=hyper, epochs=s["epochs"], bs=64, scale=scale, schedule="one_cycle",
                    n_train=s["n_train"], n_valid=s["n_valid"])
            for name, (opt, lr, hyper) in OPTIMIZERS.items()]


DEVIATIONS = (
    Deviation("slow-weights accuracy column", "— (the demo reproduces no original)",
              "equals the final accuracy: training ends on a sync (full) or 1 (cpu) / 3 (smoke) steps after one, "
              "at one-cycle's final lr (lr/1e5)",
              "said here so that the equal columns are not read as 'slow weights make no difference'"),
)

EXPERIMENT = Experiment(
    name="demo", description="SGD vs Lookahead(SGD), AdamW vs Lookahead(AdamW) on digits, one-cycle",
    baseline="SGD", build=build, default_seeds={"smoke": 3, "cpu": 3, "full": 5}, deviations=DEVIATIONS,
    comparisons=(("LA/SGD", "SGD"), ("LA/AdamW", "AdamW"), ("AdamW", "SGD")),
    protocol={"smoke": "digits, 256 train / 128 valid images, MLP, 2 epochs",
              "cpu": "digits, 1,438 train / 359 valid (fixed stratified split), small CNN, 8 epochs",
              "full": "digits, small CNN, 30 epochs"},
)
