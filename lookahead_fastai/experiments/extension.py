"""Grids that bracket the optimum: an experiment declares (``Experiment.lr_extension``) that a family
of its lr sweep whose best lr is at an edge of its grid gets the next grid point in that direction
(lr x ``factor`` above, lr / ``factor`` below), automatically, up to ``max_steps`` points each way.

The steps are worked out from finished runs only, so a sweep that is stopped and started again (or a
report reading the store) finds the same points: a family is extended once every row it has so far
has all its runs finished; its best lr is picked on validation (:mod:`.selection`, the rule the
reports use); at an edge, the next point is added with the same seeds; again until the best is
interior or the limit is reached. A best still at the limit stays at the edge of what ran, which the
reports flag (and keep out of any headline)."""
from dataclasses import dataclass
from typing import Callable

from ..grid_rules import best_rows, grid_edge
from .spec import SpecError

__all__ = ["LrExtension", "extension_steps"]


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


def extension_steps(experiment, scale, finals_of):
    """The grid points added to ``experiment``'s lr sweep at ``scale``: ``[(SweepCell, RunSpec), ...]``,
    family by family in the declared order, each family's in the order they were added.
    ``finals_of(spec)``: the final validation accuracies of ``spec``'s runs when all of them have
    finished, else None (a family waits for every row it has)."""
    ext = experiment.lr_extension
    if ext is None or experiment.lr_sweep is None:
        return []
    specs = {s.name: s for s in experiment.specs(scale)}
    families = {}
    for cell in experiment.lr_sweep(scale):
        families.setdefault((cell.data, cell.label), []).append(cell)
    out = []
    for cells in families.values():
        out += _family_steps(ext, scale, list(cells), dict(specs), finals_of)
    return out


def _family_steps(ext, scale, cells, specs, finals_of):
    added, taken = [], {"top": 0, "bottom": 0}
    while True:
        finals = {c.row: finals_of(specs[c.row]) for c in cells if c.row in specs}
        if len(finals) < len(cells) or any(v is None for v in finals.values()):
            return added  # a row not declared as a spec, or runs still to finish: nothing decided yet
        scored = [c for c in cells if finals[c.row]]
        if not scored:
            return added
        best_row = best_rows(scored, {row: v for row, v in finals.items() if v})[(cells[0].data, cells[0].label)]
        best = next(c for c in scored if c.row == best_row)
        side = grid_edge(best.lr, [c.lr for c in scored])
        if side is None or taken[side] >= ext.max_steps:
            return added  # interior, or still at the limit (the reports flag it)
        taken[side] += 1
        lr = best.lr * ext.factor if side == "top" else best.lr / ext.factor
        cell, spec = ext.extend(scale, best, lr)
        if cell.row != spec.name or cell.row in specs or (cell.data, cell.label) != (best.data, best.label):
            raise SpecError(f"lr_extension: extend must give a new row of family {best.label} ({best.data}) "
                            f"named as its spec, got {cell.row!r} / {spec.name!r}")
        cells.append(cell)
        specs[cell.row] = spec
        added.append((cell, spec))
