"""An lr sweep in your own experiment (a TOML file's ``lr_grid``, or ``your_experiment(lr_grid=...)``):
every declared row becomes a family swept over the grid, so your model gets the protocol the built-in
studies use -- each family's lr chosen on validation (with ``holdout``, a split held out of your
training data's; with ``stages``, on the tuning seeds), an edge best extended (``lr_extension``), each
Lookahead family at its chosen lr against its inner optimizer at its own, confirmed on fresh seeds::

    lr_grid = [1e-4, 1e-3, 1e-2]                     # every row at each of these lrs (a row sets no lr)
    lr_extension = { factor = 10.0, max_steps = 1 }  # optional: a best at an edge gets the next point
    holdout = 0.1                                    # three splits (built-in datasets)
    stages = { tuning = [0, 1, 2], confirmation = [10, 11, 12, 13, 14, 15, 16, 17] }

A row ``NAME`` runs as ``NAME · lr 0.001`` and so on. A Lookahead row (``lookahead(adam)``) is paired
with the plain row of the same inner optimizer (``adam``); a ``[[compare]]`` of two rows compares them
at each lr of the grid (none: every Lookahead row against its inner optimizer's, at each lr)."""
import dataclasses
from dataclasses import dataclass
from typing import Callable

from ..registry.optimizers import optimizer_parts
from .extension import LrExtension
from .spec import SpecError, SweepCell

__all__ = ["YourSweep", "lr_sweep_of", "swept_name"]


def swept_name(row, lr):
    """The name of family ``row`` at ``lr``: "Adam · lr 0.001"."""
    return f"{row} · lr {lr:g}"


@dataclass(frozen=True)
class YourSweep:
    families: tuple        # the declared rows (each a family), as given
    grid: tuple            # the lrs, ascending
    make: Callable         # (scale, row dict) -> RunSpec
    inner_of: dict         # family name -> its inner optimizer's registry name
    variant_of: dict       # family name -> its Lookahead variant's label (the family's name), "" for a plain one
    extension: LrExtension | None = None

    @property
    def rows(self):
        """Every family at every lr of the grid, as rows (dicts) named by :func:`swept_name`."""
        return [{**row, "name": swept_name(row["name"], lr), "lr": lr} for row in self.families for lr in self.grid]

    def cells(self, scale):
        """The sweep as the report reads it: one SweepCell per family and lr, in the declared order."""
        data = {r["name"]: self.make(scale, {**r, "lr": self.grid[0]}).dataset for r in self.families}
        return [SweepCell(swept_name(r["name"], lr), data[r["name"]], self.inner_of[r["name"]],
                          self.variant_of[r["name"]], r["name"], lr) for r in self.families for lr in self.grid]

    def comparisons(self, declared):
        """``declared`` (family, family) pairs at each lr; none: each Lookahead family against the plain
        family of its inner optimizer, at each lr."""
        if not declared:
            plain = {self.inner_of[f]: f for f, variant in self.variant_of.items() if not variant}
            declared = [(f, plain[self.inner_of[f]]) for f, variant in self.variant_of.items()
                        if variant and self.inner_of[f] in plain]
        return [(swept_name(a, lr), swept_name(b, lr)) for a, b in declared for lr in self.grid]

    def first_of(self, family):
        return swept_name(family, self.grid[0])

    def extend(self, scale, cell, lr):
        """lr_extension's point of ``cell``'s family at ``lr``: (SweepCell, RunSpec)."""
        row = next(r for r in self.families if r["name"] == cell.label)
        spec = self.make(scale, {**row, "name": swept_name(cell.label, lr), "lr": lr})
        return SweepCell(spec.name, cell.data, cell.inner, cell.variant, cell.label, lr), spec


def lr_sweep_of(data, rows, shared, source, make):
    """The :class:`YourSweep` a file's ``lr_grid`` (and ``lr_extension``) declare over its ``rows``
    (SpecError, one line, for a bad one)."""
    grid = data["lr_grid"]
    if not isinstance(grid, list) or len(grid) < 2 or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in grid) or len(set(grid)) != len(grid):
        raise SpecError(f"{source}: lr_grid must be a list of at least 2 distinct positive lrs, got {grid!r}")
    for where, table in [("the top level", shared)] + [(f"row {r['name']!r}", r) for r in rows]:
        if "lr" in table:
            raise SpecError(f"{source}: with lr_grid every row runs at each lr of the grid; remove lr from {where}")
    inner_of, variant_of, plain = {}, {}, {}
    for r in rows:
        try:
            parts = optimizer_parts(r.get("optimizer", shared.get("optimizer")),
                                    {**shared.get("hyper", {}), **r.get("hyper", {})})
        except (ValueError, TypeError) as e:
            raise SpecError(f"{source}, row {r['name']!r}: {e}") from None
        inner_of[r["name"]] = parts.inner
        variant_of[r["name"]] = r["name"] if parts.wrapper else ""
        if not parts.wrapper:
            if parts.inner in plain:
                raise SpecError(f"{source}: rows {plain[parts.inner]!r} and {r['name']!r} are both plain "
                                f"{parts.inner}: with lr_grid a Lookahead row needs one plain row to meet")
            plain[parts.inner] = r["name"]
    sweep = YourSweep(tuple(rows), tuple(sorted(float(v) for v in grid)), make, inner_of, variant_of)
    ext = data.get("lr_extension")
    if ext is not None:
        if not isinstance(ext, dict) or set(ext) != {"factor", "max_steps"}:
            raise SpecError(f"{source}: lr_extension must be a table {{ factor = 10.0, max_steps = 1 }}, got {ext!r}")
        sweep = dataclasses.replace(sweep, extension=LrExtension(ext["factor"], ext["max_steps"], sweep.extend))
    return sweep
