"""Grids that bracket the optimum: an experiment declares (``Experiment.lr_extension``) that a family
of its lr sweep whose best lr is at an edge of its grid gets the next grid point in that direction
(lr x ``factor`` above, lr / ``factor`` below), automatically, up to ``max_steps`` points each way.

The steps are worked out from finished runs only, so a sweep that is stopped and started again (or a
report reading the store) finds the same points: a family is extended once every row it has so far
has all its runs finished; its best lr is picked on validation (:mod:`.selection`, the rule the
reports use); at an edge, the next point is added with the same seeds; again until the best is
interior or the limit is reached. A best still at the limit stays at the edge of what ran, which the
reports flag (and keep out of any headline).

The same pass gives each family's choice (:func:`tuning_outcome`): once its tuning is settled, the row
it selected, which a study with stages (``Experiment.stages``) then reruns on its confirmation seeds.
With stages, only the tuning seeds' runs feed these choices."""
from dataclasses import dataclass
from typing import Callable

from ..grid_rules import best_rows, grid_edge, validation_finals
from .spec import SpecError

__all__ = ["LrExtension", "TuningOutcome", "finals_reader", "extension_steps", "tuning_outcome"]


@dataclass(frozen=True)
class LrExtension:
    """``factor`` (> 1) between grid points; ``max_steps`` (>= 1) points added at most in each
    direction; ``extend(scale, cell, lr) -> (SweepCell, RunSpec)``: the family of ``cell`` (a
    SweepCell at the edge) at the new ``lr``, its row name new."""
    factor: float
    max_steps: int
    extend: Callable

    def __post_init__(self):
        if isinstance(self.factor, bool) or not isinstance(self.factor, (int, float)) or not self.factor > 1:
            raise SpecError(f"lr_extension: factor must be a number > 1, got {self.factor!r}")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise SpecError(f"lr_extension: max_steps must be an int >= 1, got {self.max_steps!r}")


@dataclass(frozen=True)
class TuningOutcome:
    """What an lr sweep's finished tuning runs call for: ``added``, the grid points ``lr_extension``
    added (``[(SweepCell, RunSpec)]``, family by family, each in the order added); ``chosen``, each
    family whose choice is made (every row's runs finished, no further point to add) -> the
    ``(SweepCell, RunSpec)`` it selected, or None when every run of it diverged. A family not in
    ``chosen`` waits for runs still to finish."""
    added: list
    chosen: dict


def finals_reader(finished, seeds, n_classes_of):
    """``finals_of(spec)`` for :func:`tuning_outcome`, the one reading a sweep and a report share: from
    ``finished`` (run id -> finished run, with its record), the final validation accuracies of ``spec``'s
    runs on ``seeds`` (None for one that diverged, grid_rules.validation_finals) once every one of them
    has finished, else None (the family waits)."""
    def finals_of(spec):
        runs = [finished.get(spec.run_id(seed)) for seed in seeds]
        if any(r is None for r in runs):
            return None
        return validation_finals(runs, n_classes_of).get(spec.name, [])

    return finals_of


def extension_steps(experiment, scale, finals_of):
    """The grid points added to ``experiment``'s lr sweep at ``scale``: ``[(SweepCell, RunSpec), ...]``
    (:func:`tuning_outcome`'s ``added``)."""
    return tuning_outcome(experiment, scale, finals_of).added


def tuning_outcome(experiment, scale, finals_of):
    """:class:`TuningOutcome` of ``experiment``'s lr sweep at ``scale`` (empty without one).
    ``finals_of(spec)``: the final validation accuracies of ``spec``'s tuning runs (None for one that
    diverged, grid_rules.validation_finals) when all of them have finished, else None (a family waits
    for every row it has)."""
    if experiment.lr_sweep is None:
        return TuningOutcome([], {})
    specs = {s.name: s for s in experiment.specs(scale)}
    families = {}
    for cell in experiment.lr_sweep(scale):
        families.setdefault((cell.data, cell.label), []).append(cell)
    added, chosen = [], {}
    for key, cells in families.items():
        steps, decided, best = _family_steps(experiment.lr_extension, scale, list(cells), dict(specs), finals_of)
        added += steps
        if decided:
            chosen[key] = best
    return TuningOutcome(added, chosen)


# long: one loop of the rule (pick on validation, extend at an edge, stop interior or at the limit)
def _family_steps(ext, scale, cells, specs, finals_of):
    """``(points added, decided, (cell, spec) chosen or None)`` for one family; ``ext`` None: no extension."""
    added, taken = [], {"top": 0, "bottom": 0}
    while True:
        finals = {c.row: finals_of(specs[c.row]) for c in cells if c.row in specs}
        if len(finals) < len(cells) or any(v is None for v in finals.values()):
            return added, False, None  # a row not declared as a spec, or runs still to finish: nothing decided yet
        scored = [c for c in cells if finals[c.row]]
        key = (cells[0].data, cells[0].label)
        best_row = best_rows(scored, {row: v for row, v in finals.items() if v}).get(key)
        if best_row is None:
            return added, True, None  # no runs, or every run diverged: nothing to choose
        best = next(c for c in scored if c.row == best_row)
        side = grid_edge(best.lr, [c.lr for c in scored])
        if ext is None or side is None or taken[side] >= ext.max_steps:
            return added, True, (best, specs[best.row])  # interior, or still at the limit (the reports flag it)
        taken[side] += 1
        lr = best.lr * ext.factor if side == "top" else best.lr / ext.factor
        cell, spec = ext.extend(scale, best, lr)
        if cell.row != spec.name or cell.row in specs or (cell.data, cell.label) != (best.data, best.label):
            raise SpecError(f"lr_extension: extend must give a new row of family {best.label} ({best.data}) "
                            f"named as its spec, got {cell.row!r} / {spec.name!r}")
        cells.append(cell)
        specs[cell.row] = spec
        added.append((cell, spec))
