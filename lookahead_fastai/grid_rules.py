"""Selection rules that both a sweep (which grid point to add, experiments/extension.py) and a report
(which lr is "best") use: one copy, on the lowest floor and numbers only (numpy), so neither the sweep
imports the reports nor the reports' pure modules load an experiment (``results.selection`` and
``results.questions`` re-export these).

Choices read validation only (``record["final"]["accuracy"]``); the best lr of a sweep is the one
with the best mean final accuracy over the rows that have values; a best at the smallest or largest
lr of the grid that ran is at an edge."""
import numpy as np

__all__ = ["SELECTION_METRIC", "validation_finals", "sweeps", "best_rows", "at_grid_edge", "grid_edge"]

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


def best_rows(cells, finals):
    """``{(data, family label): the row of that sweep with the best mean final accuracy}`` over the
    rows with values in ``finals`` (row -> final accuracies)."""
    best = {}
    for key, rows in sweeps(cells).items():
        present = [row for row in rows if row in finals]
        if present:
            best[key] = max(present, key=lambda row: float(np.mean(finals[row])))
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
