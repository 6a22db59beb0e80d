"""Selection: which lr of a declared sweep is "best", and whether it sits at an edge of its grid.

Numbers only: the caller hands in the sweep's cells (``experiments.spec.SweepCell``: each row with
the data, inner optimizer, variant, family label and lr it stands for) and each row's final accuracies.
The best lr is picked on the same seeds the comparison then uses.

Choices read validation only (:func:`validation_finals`: ``record["final"]["accuracy"]``, the split
fastai's Learner validated on). A run with three splits (``RunSpec.holdout``) validates on a part held
out of its training split and carries its test numbers apart (``test_accuracy``, ``test_loss``, ...):
those are for the final report and never feed a choice here. A run without a holdout validated on its
dataset's test split (the suite's older protocol), so a choice among such runs is made on test images.
"""
from ..grid_rules import SELECTION_METRIC, best_rows, grid_edge, sweeps, validation_finals

__all__ = ["SELECTION_METRIC", "validation_finals", "sweeps", "family_pairs", "best_rows", "best_lr_pairs", "grid_edge"]


def family_pairs(cells):
    """``[(data, Lookahead family label, plain family label)]``: every Lookahead family (a cell with a
    variant) with the plain family of its inner optimizer on the same data, in the declared order."""
    plain = {(c.data, c.inner): c.label for c in cells if not c.variant}
    pairs = dict.fromkeys((c.data, c.label, plain[(c.data, c.inner)]) for c in cells
                          if c.variant and (c.data, c.inner) in plain)
    return list(pairs)


def best_lr_pairs(cells, finals):
    """Tuned against tuned: each Lookahead family at the lr of its sweep with the best mean final
    accuracy, against its plain inner optimizer at that one's best lr. Returns (pairs of rows, the
    rows picked)."""
    best = best_rows(cells, finals)
    pairs = [(best[(data, la)], best[(data, plain)]) for data, la, plain in family_pairs(cells)
             if (data, la) in best and (data, plain) in best]
    return pairs, {row for pair in pairs for row in pair}
