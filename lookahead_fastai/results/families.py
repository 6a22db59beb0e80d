"""The declared families of the index's questions, as numbers: the implementation-noise floor per
dataset (``Experiment.same_algorithm``) and, per question, one line per comparison the experiments
declare for it (``Experiment.questions``). Which experiments answer is read from their declarations;
none is named here."""
from dataclasses import dataclass

from ..experiments import EXPERIMENTS
from .compare import compare, lr_sweep_pairs
from .lr_grid import lr_grid_cells
from .questions import LOOKAHEAD_VS_INNER
from .runs import current_specs, diverged, finished_runs
from .selection import grid_edge
from .stats import noise_floor

__all__ = ["noise_floors", "QuestionLine", "question_lines"]


def noise_floors(store, scale):
    """Per dataset (the records' name): the implementation-noise floor of the final accuracy
    (:func:`.stats.noise_floor`), pooled over every pair of rows an experiment declares as one
    algorithm through two float paths (``Experiment.same_algorithm``), paired by seed, over runs that trained."""
    diffs = {}
    for name, exp in EXPERIMENTS.items():
        if not exp.same_algorithm:
            continue
        by = {}
        for r in finished_runs(store, name, scale):
            if not diverged(r["record"]):
                by.setdefault(r["name"], {})[r["seed"]] = r["record"]
        for a, b in exp.same_algorithm:
            for seed in sorted(set(by.get(a, {})) & set(by.get(b, {}))):
                ra, rb = by[a][seed], by[b][seed]
                diffs.setdefault(ra["dataset"], []).append(ra["final"]["accuracy"] - rb["final"]["accuracy"])
    return {dataset: noise_floor(d) for dataset, d in diffs.items()}


@dataclass(frozen=True)
class QuestionLine:
    """One comparison of a question's family: Lookahead (``row``, at its sweep's best lr) minus its
    inner optimizer (``versus``, at its own best lr), paired by seed over the runs that trained."""
    experiment: str
    data: str
    dataset: str
    label: str                   # e.g. "LA k5 α0.5 / SGD"
    inner: str
    row: str
    versus: str
    lr: float
    versus_lr: float
    differences: tuple           # Lookahead minus inner, per paired seed
    edges: tuple                 # (family label, its best lr, "top"/"bottom") for each side whose best is a grid edge
    scored_slow: bool            # Lookahead validated on its slow weights with BatchNorm recomputed
    collapsed: tuple             # (Lookahead diverged, runs, inner diverged, runs)
    p_collapse: float
    stages: object = None        # the experiment's Stages at this scale: choices on tuning seeds, these differences
                                 # from the confirmation seeds' test accuracy; None: one set of seeds does both

    @property
    def in_family(self):
        return self.scored_slow and not self.edges


def question_lines(store, scale, key=LOOKAHEAD_VS_INNER.key):
    """The comparisons the experiments declare for question ``key`` ("tuned": each Lookahead family of
    a declared lr sweep at its best lr against its inner optimizer at its best), one per (dataset,
    inner optimizer, Lookahead variant), in the experiments' order."""
    out = []
    for name, exp in EXPERIMENTS.items():
        if exp.questions.get(key) != "tuned" or exp.lr_sweep is None or scale not in exp.scales:
            continue
        cells = lr_grid_cells(store, name, scale)
        cell_of = {c.row: c for c in cells}
        comps = {(c.row, c.versus): c for c in compare(store, name, scale)}
        specs = current_specs(store, name, scale)
        datasets = {r["name"]: r["record"]["dataset"] for r in finished_runs(store, name, scale)}
        for la_row, plain_row in lr_sweep_pairs(store, name, scale)[0]:
            if (la_row, plain_row) not in comps:
                continue  # chosen, but no runs on both sides to compare yet (a confirmation stage under way)
            c, la, plain = comps[(la_row, plain_row)], cell_of[la_row], cell_of[plain_row]
            edges = []
            for cell in (la, plain):
                side = grid_edge(cell.lr, [x.lr for x in cells if x.label == cell.label and x.data == cell.data])
                if side:
                    edges.append((cell.label, cell.lr, side))
            spec = specs[la_row]
            out.append(QuestionLine(name, la.data, datasets[la_row], la.label, la.inner, la_row, plain_row, la.lr,
                                    plain.lr, tuple(c.lookahead_vs_inner * d for d in c.differences), tuple(edges),
                                    bool(spec.eval_slow_weights and spec.slow_bn_batches), c.collapsed,
                                    c.p_collapse, exp.stages.get(scale)))
    return out

