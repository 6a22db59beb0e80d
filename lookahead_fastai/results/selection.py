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
import numpy as np

from .questions import at_grid_edge

__all__ = ["SELECTION_METRIC", "validation_finals", "sweeps", "family_pairs", "best_rows", "best_lr_pairs", "grid_edge"]


SELECTION_METRIC = "accuracy"  # the final validation accuracy; never a test_* metric


def validation_finals(runs, metric=SELECTION_METRIC):
    """``{row: [final validation metric of each run]}`` over ``runs`` (dicts with ``name`` and
    ``record``), leaving out runs without it. A test metric cannot be asked for: choices never read test."""
    if metric.startswith("test_"):
        raise ValueError(f"a choice reads validation only, not {metric!r}")
    finals = {}
    for r in runs:
        value = r["record"]["final"].get(metric)
        if value is not None:
            finals.setdefault(r["name"], []).append(value)
    return finals


def sweeps(cells):
    """``{(data, family label): [row, ...]}``, each sweep's rows in the declared (lr) order."""
    out = {}
    for c in cells:
        out.setdefault((c.data, c.label), []).append(c.row)
    return out


def family_pairs(cells):
    """``[(data, Lookahead family label, plain family label)]``: every Lookahead family (a cell with a
    variant) with the plain family of its inner optimizer on the same data, in the declared order."""
    plain = {(c.data, c.inner): c.label for c in cells if not c.variant}
    pairs = dict.fromkeys((c.data, c.label, plain[(c.data, c.inner)]) for c in cells
                          if c.variant and (c.data, c.inner) in plain)
    return list(pairs)


def best_rows(cells, finals):
    """``{(data, family label): the row of that sweep with the best mean final accuracy}`` over the
    rows with values in ``finals`` (row -> final accuracies)."""
    best = {}
    for key, rows in sweeps(cells).items():
        present = [row for row in rows if row in finals]
        if present:
            best[key] = max(present, key=lambda row: float(np.mean(finals[row])))
    return best


def best_lr_pairs(cells, finals):
    """Tuned against tuned: each Lookahead family at the lr of its sweep with the best mean final
    accuracy, against its plain inner optimizer at that one's best lr. Returns (pairs of rows, the
    rows picked)."""
    best = best_rows(cells, finals)
    pairs = [(best[(data, la)], best[(data, plain)]) for data, la, plain in family_pairs(cells)
             if (data, la) in best and (data, plain) in best]
    return pairs, {row for pair in pairs for row in pair}


def grid_edge(best_lr, grid):
    """"top" or "bottom" when ``best_lr`` is the largest or smallest of ``grid`` (the lrs that ran),
    else None (:func:`.questions.at_grid_edge`)."""
    if not at_grid_edge(best_lr, grid):
        return None
    return "top" if best_lr == max(grid) else "bottom"
