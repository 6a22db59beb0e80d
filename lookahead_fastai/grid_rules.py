"""Selection rules that both a sweep (which grid point to add, which setting to confirm:
experiments/extension.py) and a report (which lr is "best") use: one copy, on the lowest floor and
numbers only (numpy), so neither the sweep imports the reports nor the reports' pure modules load an
experiment (``results.selection`` re-exports these).

Choices read validation only (``record["final"]["accuracy"]``). A run that diverged (:func:`diverged`)
is data, never a number averaged in: the best row of a sweep is the one with the fewest diverged runs
(as a share of its runs), then the best mean final accuracy over the runs that trained. So a setting
that collapsed in some tuning seed is chosen only when every setting of its sweep did as often. A best
at the smallest or largest lr of the grid that ran is at an edge."""
import math

import numpy as np

__all__ = ["SELECTION_METRIC", "SELECTION_RULE", "chance_loss", "diverged", "validation_finals", "row_score",
           "sweeps", "best_rows", "at_grid_edge", "grid_edge"]

SELECTION_METRIC = "accuracy"  # the final validation accuracy; never a test_* metric
SELECTION_RULE = ("the fewest diverged runs first (as a share of the row's runs), then the best mean final "
                  "validation accuracy over the runs that trained")


def chance_loss(n_classes):
    """The cross-entropy of a uniform guess over ``n_classes``: ln C."""
    return math.log(n_classes)


def diverged(final, slow=None, n_classes=None):
    """Whether a run diverged, from its final metrics (and its slow-weight ones): a number among them
    is NaN or infinite (a loss that became non-finite), or its final train loss is at or above chance
    (ln C for C classes: the model ended no better than a uniform guess, as a run that collapsed).
    A diverged run is counted, never averaged."""
    values = [*(final or {}).values(), *(slow or {}).values()]
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        return True
    loss = (final or {}).get("train_loss")
    return bool(n_classes and n_classes > 1 and loss is not None and loss >= chance_loss(n_classes))


def validation_finals(runs, n_classes_of, metric=SELECTION_METRIC):
    """``{row: [final validation metric of each run, None for a run that diverged]}`` over ``runs``
    (dicts with ``name`` and ``record``), leaving out runs without the metric; ``n_classes_of(record)``:
    its dataset's number of classes (None if unknown), for the chance-loss rule. A test metric cannot be
    asked for: choices never read test."""
    if metric.startswith("test_"):
        raise ValueError(f"a choice reads validation only, not {metric!r}")
    finals = {}
    for r in runs:
        record = r["record"]
        value = record["final"].get(metric)
        if value is not None:
            bad = diverged(record["final"], record.get("slow"), n_classes_of(record))
            finals.setdefault(r["name"], []).append(None if bad else value)
    return finals


def row_score(values):
    """A row's rank in its sweep (larger is better), from its runs' values (None: diverged): the share
    of its runs that trained, then their mean (``-inf`` when none did)."""
    trained = [v for v in values if v is not None]
    return (len(trained) / len(values), float(np.mean(trained)) if trained else -math.inf)


def sweeps(cells):
    """``{(data, family label): [row, ...]}``, each sweep's rows in the declared (lr) order."""
    out = {}
    for c in cells:
        out.setdefault((c.data, c.label), []).append(c.row)
    return out


def best_rows(cells, finals):
    """``{(data, family label): the row of that sweep ranked first}`` (:data:`SELECTION_RULE`) over the
    rows with runs in ``finals`` (row -> values of :func:`validation_finals`). A sweep where every run
    diverged has no best."""
    best = {}
    for key, rows in sweeps(cells).items():
        present = [row for row in rows if finals.get(row)]
        if present and any(v is not None for row in present for v in finals[row]):
            best[key] = max(present, key=lambda row: row_score(finals[row]))
    return best


def at_grid_edge(best, grid):
    """Whether ``best`` is the smallest or largest value of ``grid`` (a grid of one point is all edge):
    the sweep may have stopped short of the optimum, which no point beyond it brackets."""
    grid = sorted(set(grid))
    return bool(grid) and best in (grid[0], grid[-1])


def grid_edge(best_lr, grid):
    """"top" or "bottom" when ``best_lr`` is the largest or smallest of ``grid`` (the lrs that ran),
    else None."""
    if not at_grid_edge(best_lr, grid):
        return None
    return "top" if best_lr == max(grid) else "bottom"
