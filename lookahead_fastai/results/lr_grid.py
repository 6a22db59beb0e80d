"""The numbers of a declared lr grid (``Experiment.lr_sweep``): one cell per row over its seeds, per
family the robustness over the grid, and the grid's comparisons split by dataset. Nothing formatted
(the words are in :mod:`.lr_report`); every value comes from the sweep's cells, never from a row name."""
import math
from dataclasses import dataclass

import numpy as np

from ..experiments import get_experiment
from ..grid_rules import row_score
from .compare import compare, lr_sweep_pairs, n_tested
from .runs import choice_stage, diverged, finished_runs, sweep_cells, verdict_stage
from .stats import Stat, TimeToTarget, epochs_to_target

__all__ = ["NEAR_BEST_PP", "LrCell", "lr_grid_cells", "by_label", "robustness_rows", "plain_at_same_lr",
           "study_by_dataset", "times_to_target"]

NEAR_BEST_PP = 1.0  # an lr is "near the best" when its mean is within this many points of the best


@dataclass(frozen=True)
class LrCell:
    """One row of the lr grid: a (dataset, optimizer family) at one lr, over its seeds."""
    row: str
    data: str
    inner: str
    variant: str                 # "" for the plain inner optimizer
    label: str                   # the optimizer family, e.g. "LA k5 α0.5 / SGD"
    lr: float
    final: Stat                  # final accuracy
    by_seed: dict                # seed -> final accuracy
    by_epoch: dict               # epoch (0-based) -> Stat of the accuracy after it
    diverged: int = 0            # runs left out of final/by_seed (see diverged)
    test: Stat | None = None     # three splits: the test split's final accuracy over the same runs (never chooses)


def lr_grid_cells(store, experiment_name, scale, verdicts=False):
    """The lr grid of ``scale`` with its finished runs: one :class:`LrCell` per row that has runs,
    in the declared order: over the runs the choices read (with stages, the tuning seeds: the
    sensitivity curves), or with ``verdicts`` over the runs the verdicts read (the confirmation seeds)."""
    stage = (verdict_stage if verdicts else choice_stage)(experiment_name, scale)
    runs = finished_runs(store, experiment_name, scale, stage=stage)
    frame = store.epochs_frame(experiment_name)
    if len(frame):
        frame = frame[frame["run_id"].isin({r["run_id"] for r in runs if not diverged(r["record"])})]
    out = []
    for cell in sweep_cells(store, experiment_name, scale):  # declared, then lr_extension's points
        name = cell.row
        recs = {r["seed"]: r["record"] for r in runs if r["name"] == name}
        if not recs:
            continue
        by_epoch = {}
        if len(frame) and "accuracy" in frame:
            for epoch, values in frame[frame["name"] == name].groupby("epoch")["accuracy"]:
                by_epoch[int(epoch)] = Stat.of(values)
        by_seed = {s: rec["final"].get("accuracy") for s, rec in sorted(recs.items()) if not diverged(rec)}
        tests = [rec["final"]["test_accuracy"] for rec in recs.values() if not diverged(rec)
                 and "test_accuracy" in rec["final"]]
        out.append(LrCell(name, cell.data, cell.inner, cell.variant, cell.label, cell.lr,
                          Stat.of(by_seed.values()), by_seed, by_epoch, len(recs) - len(by_seed),
                          Stat.of(tests) if tests else None))
    return out


def by_label(cells):
    out = {}
    for c in cells:
        out.setdefault(c.label, []).append(c)
    return out


def robustness_rows(cells):
    """Per optimizer family: best (grid_rules' selection rule) and worst lr (by mean), the range between them, the grid mean, the
    lrs near the best, the worst single run and the per-seed range over the grid, all over the runs that
    trained; and ``diverged``: (lr, runs diverged, runs) at each lr where some did."""
    rows = []
    for label, group in by_label(cells).items():
        ok = [c for c in group if not math.isnan(c.final.mean)]
        if not ok:
            continue
        best = max(ok, key=lambda c: row_score(list(c.by_seed.values()) + [None] * c.diverged))  # the selection rule
        worst = min(ok, key=lambda c: c.final.mean)
        seeds = set.intersection(*(set(c.by_seed) for c in ok))
        seed_ranges = [max(c.by_seed[s] for c in ok) - min(c.by_seed[s] for c in ok) for s in sorted(seeds)
                       if all(c.by_seed[s] is not None for c in ok)]
        rows.append(dict(label=label, inner=group[0].inner, variant=group[0].variant, lrs=len(ok),
                         lowest_lr=min(c.lr for c in group), highest_lr=max(c.lr for c in group),  # every lr that ran
                         best_lr=best.lr, best=best.final.mean, worst_lr=worst.lr, worst=worst.final.mean,
                         range=best.final.mean - worst.final.mean,
                         grid_mean=float(np.mean([c.final.mean for c in ok])),
                         near=[c.lr for c in ok if best.final.mean - c.final.mean <= NEAR_BEST_PP / 100],
                         worst_run=min(v for c in ok for v in c.by_seed.values() if v is not None),
                         seed_range=Stat.of(seed_ranges),
                         diverged=[(c.lr, c.diverged, c.diverged + c.final.n) for c in group if c.diverged]))
    return rows


def plain_at_same_lr(cells, la):
    """The plain inner optimizer's cell at a Lookahead cell's lr (None if it has not run)."""
    return next((b for b in cells if not b.variant and b.inner == la.inner and b.lr == la.lr), None)


def study_by_dataset(store, experiment_name, scale):
    """The lr grid's cells and comparisons split by dataset: ``([(data, cells, comparisons, tuned), ...],
    n_family, picked)`` -- ``tuned`` the comparisons at each family's best lr, ``n_family`` the number of
    tested comparisons Holm's adjustment ran over (the whole scale), ``picked`` the tuned (row, versus) pairs."""
    cells = lr_grid_cells(store, experiment_name, scale)
    comparisons = compare(store, experiment_name, scale)
    picked = set(lr_sweep_pairs(store, experiment_name, scale)[0])
    datasets = []
    for data in dict.fromkeys(c.data for c in cells):
        dcells = [c for c in cells if c.data == data]
        rows = {c.row for c in dcells}
        dcomp = [c for c in comparisons if c.row in rows and c.versus in rows]
        datasets.append((data, dcells, dcomp, [c for c in dcomp if (c.row, c.versus) in picked]))
    return datasets, n_tested(comparisons), picked


def times_to_target(store, experiment_name, scale, picked):
    """``{(row, versus): TimeToTarget}`` for each tuned pair in ``picked`` (each family at its best lr): the
    epochs each seed took to reach ``Experiment.target_share`` of the inner optimizer's mean final accuracy
    over its runs that trained; every finished run is counted, a diverged one as never reaching it."""
    runs = finished_runs(store, experiment_name, scale, stage=verdict_stage(experiment_name, scale))
    final = {(r["name"], r["seed"]): r["record"]["final"].get("accuracy") for r in runs if not diverged(r["record"])}
    frame = store.epochs_frame(experiment_name)
    curves = {}
    if len(frame) and "accuracy" in frame:
        frame = frame[frame["run_id"].isin({r["run_id"] for r in runs})]
        for (name, seed), group in frame.groupby(["name", "seed"]):
            curves[(name, int(seed))] = [float(v) for v in group.sort_values("epoch")["accuracy"]]
    share = get_experiment(experiment_name).target_share
    out = {}
    for row, versus in sorted(picked):
        reached = [v for (name, _), v in final.items() if name == versus and v is not None]
        if not reached:
            continue
        target = share * float(np.mean(reached))
        side = {name: {seed: epochs_to_target(curve, target) for (n, seed), curve in curves.items() if n == name}
                for name in (row, versus)}
        if side[row] and side[versus]:  # no epoch records: no time to tell
            out[(row, versus)] = TimeToTarget(target, side[row], side[versus])
    return out
