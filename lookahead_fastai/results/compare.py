"""Paired comparisons: per-row summaries over seeds and each declared comparison, paired by seed,
with its *kind* and Holm-adjusted verdict. Numbers only (dataclasses); the words are in :mod:`.wording`.

A comparison's kind is derived from the two rows' specs, never from their labels:

* ``like-for-like``: the rows differ in one factor only (for a Lookahead row against its plain inner
  optimizer: only the wrapper -- same inner optimizer, hyper-parameters, lr, data, schedule);
* ``tuned``: they differ only in the optimizer's own settings (wrapper, inner optimizer, lr, its
  hyper-parameters), and each row's settings come from a sweep the experiment declares
  (``Experiment.tuned``, or ``Experiment.lr_sweep``'s best lrs) at that scale;
* ``confounded``: anything else (the difference cannot be put on one factor).

Within one report and scale, the verdicts are Holm-adjusted over all its comparisons that have a
p-value: the chance that any "better"/"worse" among them is false, when those rows do not differ,
is at most 5% (the family-wise error rate of that table). Nothing is corrected across reports.
"""
import math
from collections import Counter
from dataclasses import dataclass

from ..experiments import get_experiment
from ..registry.datasets import record_classes
from ..registry.optimizers import optimizer_parts
from .runs import chosen_rows, current_specs, diverged, finished_runs, row_order, sweep_cells, verdict_stage
from .selection import best_lr_pairs, family_pairs, validation_finals
from .stats import ALPHA, Paired, Stat, collapse_test, detectable, holm

__all__ = ["KINDS", "BETTER", "WORSE", "NOT_SHOWN", "IDENTICAL", "CONSTANT", "ONE_SEED", "NO_SEEDS", "RowSummary",
           "Comparison", "summarize", "comparison_kind", "verdict_metric", "compare", "lr_sweep_pairs", "n_tested", "detectable_over"]

KINDS = ("like-for-like", "tuned", "confounded")
BETTER, WORSE, NOT_SHOWN = "better", "worse", "no difference shown"
IDENTICAL = "identical in every seed"
CONSTANT = "same difference in every seed"
ONE_SEED, NO_SEEDS = "cannot tell (1 seed)", "no paired seeds"


@dataclass(frozen=True)
class RowSummary:
    row: str
    seeds: int
    final_accuracy: Stat
    best_accuracy: Stat
    top5: Stat | None            # None when the runs have no top-5 metric
    valid_loss: Stat
    train_loss: Stat
    slow_accuracy: Stat | None   # None for rows without Lookahead slow weights
    seconds: Stat
    diverged: int = 0            # runs left out (see diverged): non-finite, or at chance loss; ``seeds`` counts the rest
    test_accuracy: Stat | None = None  # three splits (RunSpec.holdout): the test split scored once at the end, on
                                       # final's weights; shown for the report, never read to choose; None without


@dataclass(frozen=True)
class Comparison:
    row: str
    versus: str
    kind: str                    # one of KINDS
    differs: tuple               # the factors the two specs differ in
    lookahead_vs_inner: int      # +1: row is Lookahead, versus its plain inner; -1: the reverse; 0: neither
    seeds: tuple
    differences: tuple           # row minus versus, per seed (fractions)
    mean: float
    low: float                   # raw 95% Student-t interval (nan when undefined)
    high: float
    p_raw: float                 # two-sided paired t-test (nan when undefined)
    p_holm: float                # Holm-adjusted within the report's scale (nan when not in the family)
    verdict: str                 # better / worse / no difference shown / identical ... / cannot tell ...
    variant: str = ""            # for a Lookahead-vs-inner comparison, how the Lookahead side departs from the
                                 # paper's algorithm ("nested", "inner state reset at syncs", ...); "" for its own
    collapsed: tuple = (0, 0, 0, 0)  # (row diverged, row runs, versus diverged, versus runs)
    p_collapse: float = math.nan     # two-sided Fisher exact test of the two collapse rates (raw)

    @property
    def lookahead_verdict(self):
        """The verdict from Lookahead's side (better = Lookahead better), or None when this is not a
        Lookahead-vs-inner comparison or has fewer than 2 paired seeds."""
        if not self.lookahead_vs_inner or self.verdict in (ONE_SEED, NO_SEEDS):
            return None
        if self.lookahead_vs_inner > 0 or self.verdict not in (BETTER, WORSE):
            return self.verdict
        return WORSE if self.verdict == BETTER else BETTER



def summarize(store, experiment_name, scale):
    """One :class:`RowSummary` per row with finished runs, in the experiment's order (with stages, over
    the confirmation runs: the runs the verdicts stand on)."""
    experiment = get_experiment(experiment_name)
    by_name = {}
    for r in finished_runs(store, experiment_name, scale, stage=verdict_stage(experiment_name, scale)):
        by_name.setdefault(r["name"], []).append(r["record"])
    out = []
    for name in row_order(experiment, by_name):
        recs = [r for r in by_name[name] if not diverged(r)]
        slow = [r["slow"]["accuracy"] for r in recs if r.get("slow")]
        out.append(RowSummary(
            row=name, seeds=len(recs), diverged=len(by_name[name]) - len(recs),
            final_accuracy=Stat.of(r["final"].get("accuracy") for r in recs),
            best_accuracy=Stat.of(r.get("best_accuracy") for r in recs),
            top5=Stat.of(r["final"].get("top5") for r in recs) if any("top5" in r["final"] for r in recs) else None,
            valid_loss=Stat.of(r["final"].get("valid_loss") for r in recs),
            train_loss=Stat.of(r["final"].get("train_loss") for r in recs),
            slow_accuracy=Stat.of(slow) if slow else None,
            seconds=Stat.of(r.get("seconds") for r in recs),
            test_accuracy=Stat.of(r["final"].get("test_accuracy") for r in recs)
            if any("test_accuracy" in r["final"] for r in recs) else None))
    return out


# --- the kind of a comparison, from the specs -------------------------------------------------------
_NOT_FACTORS = ("experiment", "name", "note", "scale", "optimizer", "hyper", "eval_slow_weights", "slow_bn_batches")


def _factors(spec):
    """The spec as the factors a comparison can differ in. Lookahead's own settings (its k, alpha,
    pullback (a reset at syncs included), evaluation on slow weights and its BatchNorm recomputation) are
    one factor, the wrapper; a plain optimizer has none of them (``eval_slow_weights`` does nothing there)."""
    parts = optimizer_parts(spec.optimizer, spec.hyper)
    d = {k: v for k, v in spec.to_dict().items() if k not in _NOT_FACTORS}
    wrapper = None
    if parts.wrapper:
        wrapper = (parts.wrapper, parts.implementation, tuple(sorted(parts.wrapper_hyper.items())),
                   bool(spec.eval_slow_weights),
                   spec.slow_bn_batches if spec.eval_slow_weights else None)
    d["wrapper"] = wrapper
    d["inner optimizer"] = parts.inner
    for key, value in parts.inner_hyper.items():
        d[f"hyper.{key}"] = value
    return d


# fields that together make one factor
_FACTOR_GROUPS = {"hyper.wd": "weight decay", "hyper.decouple_wd": "weight decay", "schedule_params": "schedule"}


def _differing(spec_a, spec_b):
    """The factors two specs differ in. A hyper-parameter only one inner optimizer has (SGD's
    nesterov, RAdam's beta) is part of the "inner optimizer" factor, not a factor of its own."""
    a, b = _factors(spec_a), _factors(spec_b)
    out = []
    for key in sorted(set(a) & set(b)):
        if a[key] != b[key]:
            factor = _FACTOR_GROUPS.get(key, key.removeprefix("hyper."))
            if factor not in out:
                out.append(factor)
    return tuple(out)


_OPTIMIZER_SETTINGS = ("wrapper", "inner optimizer", "lr", "weight decay")


def comparison_kind(spec_a, spec_b, tuned_rows=()):
    """(kind, differing factors) of comparing ``spec_a`` with ``spec_b``; ``tuned_rows``: the rows
    whose settings a declared sweep picked (at this scale)."""
    differs = _differing(spec_a, spec_b)
    inner_keys = set(optimizer_parts(spec_a.optimizer, spec_a.hyper).inner_hyper) | set(
        optimizer_parts(spec_b.optimizer, spec_b.hyper).inner_hyper)
    if len(differs) <= 1:
        return "like-for-like", differs
    if (spec_a.name in tuned_rows and spec_b.name in tuned_rows
            and all(f in _OPTIMIZER_SETTINGS or f in inner_keys for f in differs)):
        return "tuned", differs
    return "confounded", differs


_PULLBACK_TEXT = {"pullback": "inner momentum pulled back at syncs", "reset": "inner state reset at syncs"}


def _lookahead_variant(spec):
    """How ``spec``'s Lookahead departs from the paper's algorithm (slow weights every k steps, fast
    weights reset to them, inner state kept): "nested" and/or its pullback's :data:`_PULLBACK_TEXT`,
    joined; "" for the paper's own (any k and alpha, ours or fastai's)."""
    parts = optimizer_parts(spec.optimizer, spec.hyper)
    bits = ["nested"] if parts.wrapper == "nested" else []
    pullback = parts.wrapper_hyper.get("pullback", "none")
    if pullback != "none":
        bits.append(_PULLBACK_TEXT.get(pullback, f"pullback={pullback}"))
    return ", ".join(bits)


def _lookahead_vs_inner(spec_a, spec_b):
    """+1 when ``spec_a`` is a Lookahead (ours or fastai's) around the very optimizer ``spec_b`` is,
    -1 for the reverse, else 0."""
    a, b = optimizer_parts(spec_a.optimizer, spec_a.hyper), optimizer_parts(spec_b.optimizer, spec_b.hyper)
    if a.inner != b.inner:
        return 0
    return 1 if (a.wrapper and not b.wrapper) else -1 if (b.wrapper and not a.wrapper) else 0



def lr_sweep_pairs(store, experiment_name, scale):
    """Tuned against tuned, for an experiment that declares an lr sweep (``Experiment.lr_sweep``): each
    Lookahead family at the lr of its sweep with the best mean final accuracy, against its plain inner
    optimizer at that one's best lr (:func:`.selection.best_lr_pairs`). Returns (pairs, the rows picked)."""
    experiment = get_experiment(experiment_name)
    if experiment.lr_sweep is None:
        return [], set()
    cells = sweep_cells(store, experiment_name, scale)  # lr_extension's points too
    if experiment.stages.get(scale):  # the rows the sweep confirms: each family's, once its tuning has settled
        chosen = chosen_rows(experiment_name, scale, finished_runs(store, experiment_name, scale))
        pairs = [(chosen[(data, la)], chosen[(data, plain)]) for data, la, plain in family_pairs(cells)
                 if (data, la) in chosen and (data, plain) in chosen]
        return pairs, {row for pair in pairs for row in pair}
    finals = validation_finals(finished_runs(store, experiment_name, scale), record_classes)  # validation only, never test
    return best_lr_pairs(cells, finals)


# --- the comparisons ------------------------------------------------------------------------------
def _comparison_pairs(experiment, names):
    if experiment.comparisons:
        return [(a, b) for a, b in experiment.comparisons if a in names and b in names]
    return [(n, experiment.baseline) for n in names if n != experiment.baseline and experiment.baseline in names]


def verdict_metric(experiment_name, scale):
    """The final metric verdicts compare at ``scale``: with stages (fresh confirmation seeds of settings
    tuning chose on the validation split), the test split's accuracy, which no choice read; else the
    validation accuracy (which, without a holdout, is the dataset's test split)."""
    held_out = all(spec.holdout for spec in get_experiment(experiment_name).specs(scale))
    return "test_accuracy" if verdict_stage(experiment_name, scale) and held_out else "accuracy"


def compare(store, experiment_name, scale, metric=None, alpha=ALPHA):
    """The experiment's declared comparisons at ``scale`` (else each row against the baseline):
    final ``metric`` (default :func:`verdict_metric`) of the row minus the other row's, paired by seed,
    with the comparison's kind, the raw 95% t-interval and p-value, and the Holm-adjusted p-value and
    verdict over the table. With stages, over the confirmation runs only (the verdicts' stage): the pairs
    an lr sweep tunes are chosen on the tuning runs."""
    experiment = get_experiment(experiment_name)
    metric = metric or verdict_metric(experiment_name, scale)
    specs = current_specs(store, experiment_name, scale)  # with the points lr_extension added
    tuned_rows = dict(experiment.tuned.get(scale, {}))
    table, gone = {}, Counter()
    for r in finished_runs(store, experiment_name, scale, stage=verdict_stage(experiment_name, scale)):
        bad = diverged(r["record"])
        gone[r["name"]] += bad
        table.setdefault(r["name"], {})[r["seed"]] = None if bad else r["record"]["final"].get(metric)
    partial = []
    pairs = _comparison_pairs(experiment, row_order(experiment, table))
    best_pairs, picked = lr_sweep_pairs(store, experiment_name, scale)  # tuned vs tuned (declared lr sweeps)
    tuned_rows.update({row: "the best lr of its declared sweep" for row in picked})
    for name, versus in pairs + [p for p in best_pairs if p not in pairs and p[0] in table and p[1] in table]:
        kind, differs = comparison_kind(specs[name], specs[versus], tuned_rows)
        seeds = tuple(sorted(s for s in set(table[versus]) & set(table[name])  # diverged seeds: None
                             if table[name][s] is not None and table[versus][s] is not None))
        diffs = tuple(float(table[name][s] - table[versus][s]) for s in seeds)
        paired = Paired.of(diffs)  # the raw 95% interval and p (nan with < 2 seeds or no spread)
        mean, low, high, p = paired.mean, paired.low, paired.high, paired.p
        if not diffs:
            verdict = NO_SEEDS
        elif len(diffs) == 1:
            verdict = ONE_SEED
        elif paired.sd == 0.0:  # no spread: no interval, no test
            verdict = IDENTICAL if mean == 0 else CONSTANT
        else:
            verdict = None  # decided after Holm
        side = _lookahead_vs_inner(specs[name], specs[versus])
        partial.append(dict(row=name, versus=versus, kind=kind, differs=differs, lookahead_vs_inner=side,
                            seeds=seeds, differences=diffs, mean=mean, low=low, high=high, p_raw=p,
                            verdict=verdict,
                            variant=_lookahead_variant(specs[name] if side > 0 else specs[versus]) if side else "",
                            collapsed=(gone[name], len(table[name]), gone[versus], len(table[versus])),
                            p_collapse=collapse_test(gone[name], len(table[name]), gone[versus], len(table[versus]))))
    adjusted = holm([c["p_raw"] for c in partial])
    out = []
    for c, p_holm in zip(partial, adjusted):
        if c["verdict"] is None:
            c["verdict"] = (BETTER if c["mean"] > 0 else WORSE) if p_holm <= alpha else NOT_SHOWN
        out.append(Comparison(**c, p_holm=p_holm))
    return out


def n_tested(comparisons):
    """How many comparisons have a p-value: the size of the family Holm's adjustment runs over."""
    return sum(not math.isnan(c.p_raw) for c in comparisons)


def detectable_over(comparisons, n_family, alpha=ALPHA):
    """:func:`.stats.detectable` over the per-seed differences of ``comparisons`` that have an interval."""
    return detectable([c.differences for c in comparisons if not math.isnan(c.low)], n_family, alpha)
