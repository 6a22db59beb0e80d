"""Reports from the store: numbers first, words after.

The first half computes (dataclasses, nothing formatted): per-row summaries over seeds
(:func:`summarize`), paired comparisons with their *kind* and Holm-adjusted verdicts
(:func:`compare`), where the runs ran (:func:`run_environments`). The second half formats those
numbers, in one place: the tables (:func:`summary_table`, :func:`paired_differences`), the plots,
``reports/EXP.md`` (:func:`write_report`) and the index ``reports/README.md`` (:func:`write_index`).

A comparison's kind is derived from the two rows' specs, never from their labels:

* ``like-for-like``: the rows differ in one factor only (for a Lookahead row against its plain inner
  optimizer: only the wrapper -- same inner optimizer, hyper-parameters, lr, data, schedule);
* ``tuned``: they differ only in the optimizer's own settings (wrapper, inner optimizer, lr, its
  hyper-parameters), and each row's settings come from a sweep the experiment declares
  (``Experiment.tuned``) at that scale;
* ``confounded``: anything else (the difference cannot be put on one factor).

Within one report and scale, the verdicts are Holm-adjusted over all its comparisons that have a
p-value: the chance that any "better"/"worse" among them is false, when those rows do not differ,
is at most 5% (the family-wise error rate of that table). Nothing is corrected across reports.

Everything here reads finished runs from the SQLite store; nothing trains.
"""
import datetime as dt
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .experiments import SCALES, get_experiment, use_experiment
from .experiments.deviations import deviations_markdown
from .experiments.sources import sources_markdown
from .registry.optimizers import optimizer_parts
from .results import plots, text as words
from .results.plots import plot_lr_find, plot_lr_robustness
from .results.questions import LOOKAHEAD_VS_INNER, at_grid_edge
from .results.stats import (ALPHA, Paired, Stat, collapse_test, detectable, diverged as _diverged, family_effects,
                            holm, noise_floor, std_bounds as _std_bounds)
from .store import ResultsStore
from .sweep import lr_find_path

__all__ = ["Stat", "RowSummary", "Comparison", "summarize", "compare", "comparison_kind", "holm",
           "run_environments", "summary_table", "paired_differences", "plot_curves", "plot_lr_find",
           "write_report", "write_index", "KINDS", "ALPHA", "UNKNOWN_ENV"]

KINDS = ("like-for-like", "tuned", "confounded")
UNKNOWN_ENV = "unknown (not recorded)"
BETTER, WORSE, NOT_SHOWN = "better", "worse", "no difference shown"
IDENTICAL = "identical in every seed"
CONSTANT = "same difference in every seed"
ONE_SEED, NO_SEEDS = "cannot tell (1 seed)", "no paired seeds"


# ================================================================================================
# numbers
# ================================================================================================
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


def n_classes(record):
    """The number of classes of a record's dataset, from the dataset registry (None if unknown there)."""
    from .registry.datasets import DATASETS
    info = DATASETS.get(record.get("dataset"))
    return info.n_classes if info is not None else None


def diverged(record):
    """Whether a finished run diverged (:func:`results.stats.diverged`): a number among its final (or
    slow-weight) metrics is NaN or infinite, or its final train loss is at or above chance (ln C for
    its dataset's C classes). Such a run is counted, never averaged."""
    return _diverged(record.get("final"), record.get("slow"), n_classes(record))


def _runs(store, experiment, scale=None):
    """Finished runs of ``experiment`` (at ``scale``) whose spec is the one the experiment declares
    now: runs of an older version of a row (say, fewer epochs) stay in the store but not in reports."""
    runs = [r for r in store.runs(experiment, status="finished") if r["record"]]
    if scale is not None:
        runs = [r for r in runs if r["record"].get("scale") == scale]
    exp = get_experiment(experiment)
    specs = {s: exp.specs(s) for s in {r["record"].get("scale") for r in runs} if s in exp.scales}
    current = {spec.run_id(r["seed"]) for r in runs for spec in specs.get(r["record"].get("scale"), [])
               if spec.name == r["name"]}
    return [r for r in runs if r["run_id"] in current]


@dataclass(frozen=True)
class Completeness:
    """How much of an experiment's planned grid (its rows × seeds 0..n-1: the experiment's default
    seeds, or more when some row ran more) has finished."""
    done: int
    planned: int
    rows: int
    seeds: int
    short: tuple  # (row, seeds finished) for each row with fewer than ``seeds``

    @property
    def complete(self):
        return self.done >= self.planned

    def text(self):
        return (f"{self.done} of {self.planned} planned ({self.rows} rows × {self.seeds} "
                f"seed{'s' if self.seeds != 1 else ''})")


def completeness(experiment_name, scale, runs):
    """:class:`Completeness` of ``runs`` (finished, current-spec) against the default grid at ``scale``."""
    exp = get_experiment(experiment_name)
    names = [s.name for s in exp.specs(scale)]
    n = max([exp.default_seeds.get(scale, 1)] + [r["seed"] + 1 for r in runs if r["name"] in names])
    have = {name: {r["seed"] for r in runs if r["name"] == name} for name in names}
    short = tuple((name, len(have[name])) for name in names if len(have[name]) < n)
    return Completeness(sum(map(len, have.values())), n * len(names), len(names), n, short)


def incomplete_note(c, listed=6):
    """The warning a report of an unfinished grid (``not c.complete``) opens with."""
    rows = [f"{row} ({k})" for row, k in c.short[:listed]]
    more = f", and {len(c.short) - listed} more rows" if len(c.short) > listed else ""
    return (f"> **Incomplete**: {c.text()} runs have finished. Rows short of {c.seeds} seeds (seeds finished): "
            f"{', '.join(rows)}{more}. Everything below uses only the finished runs; "
            "`lookahead-fastai run` with the same store finishes the rest.\n")


def _order(experiment, names):
    """Rows in the experiment's declared order (baseline first)."""
    declared = []
    for scale in experiment.scales:
        for spec in experiment.specs(scale):
            if spec.name not in declared:
                declared.append(spec.name)
    ordered = [n for n in declared if n in names] + sorted(n for n in names if n not in declared)
    if experiment.baseline in ordered:
        ordered.remove(experiment.baseline)
        ordered.insert(0, experiment.baseline)
    return ordered


def summarize(store, experiment_name, scale):
    """One :class:`RowSummary` per row with finished runs, in the experiment's order."""
    experiment = get_experiment(experiment_name)
    by_name = {}
    for r in _runs(store, experiment_name, scale):
        by_name.setdefault(r["name"], []).append(r["record"])
    out = []
    for name in _order(experiment, by_name):
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
            seconds=Stat.of(r.get("seconds") for r in recs)))
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


# --- tests ----------------------------------------------------------------------------------------
def _comparison_pairs(experiment, names):
    if experiment.comparisons:
        return [(a, b) for a, b in experiment.comparisons if a in names and b in names]
    return [(n, experiment.baseline) for n in names if n != experiment.baseline and experiment.baseline in names]


def compare(store, experiment_name, scale, metric="accuracy", alpha=ALPHA):
    """The experiment's declared comparisons at ``scale`` (else each row against the baseline):
    final ``metric`` of the row minus the other row's, paired by seed, with the comparison's kind,
    the raw 95% t-interval and p-value, and the Holm-adjusted p-value and verdict over the table."""
    experiment = get_experiment(experiment_name)
    specs = {s.name: s for s in experiment.specs(scale)}
    tuned_rows = dict(experiment.tuned.get(scale, {}))
    table, gone = {}, Counter()
    for r in _runs(store, experiment_name, scale):
        bad = diverged(r["record"])
        gone[r["name"]] += bad
        table.setdefault(r["name"], {})[r["seed"]] = None if bad else r["record"]["final"].get(metric)
    partial = []
    pairs = _comparison_pairs(experiment, _order(experiment, table))
    best_lr_pairs, picked = _lr_sweep_pairs(store, experiment_name, scale)  # tuned vs tuned (lr_robustness)
    tuned_rows.update({row: "the best lr of its declared sweep" for row in picked})
    for name, versus in pairs + [p for p in best_lr_pairs if p not in pairs]:
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


def run_seconds(runs):
    """Each finished run's training wall time in seconds (its record's ``seconds``), where recorded."""
    return [float(r["record"]["seconds"]) for r in runs if r["record"].get("seconds") is not None]


def compute_text(runs):
    """What the runs cost, from their records: the training wall times summed, and their mean."""
    seconds = run_seconds(runs)
    if not seconds:
        return "not recorded"
    return (f"{sum(seconds) / 3600:.2f} h of training summed over {len(seconds)} runs (each run's wall time from "
            f"the start of its fit to its last validation; mean {np.mean(seconds):.1f} s per run)")


def run_environments(runs):
    """The distinct environments (machine, device, torch, fastai, python) the runs were trained in,
    from their records; runs recorded before environments were kept count as UNKNOWN_ENV."""
    seen = []
    for r in runs:
        env = (r.get("record") or {}).get("env")
        if env:
            text = (f"{env.get('machine', '?')}; device {env.get('device', '?')}; torch {env.get('torch', '?')}; "
                    f"fastai {env.get('fastai', '?')}; python {env.get('python', '?')}")
        else:
            text = UNKNOWN_ENV
        if text not in seen:
            seen.append(text)
    return seen


# ================================================================================================
# words: every number is formatted below this line (the formatters live in results.text)
# ================================================================================================
_fmt, _pp, _p, _pct, _join, _markdown = words.stat, words.pp, words.p_value, words.pct, words.join, words.markdown
_save_figure = plots.save_figure


def summary_table(store, experiment_name, scale):
    """One row per optimizer: mean ± std over seeds of the final and best accuracy, losses, time."""
    rows = []
    summaries = summarize(store, experiment_name, scale)
    for s in summaries:
        row = {"optimizer": s.row, "seeds": s.seeds}
        if any(x.diverged for x in summaries):
            row["diverged"] = s.diverged
        row["final accuracy"] = _fmt(s.final_accuracy, pct=True)
        row["best accuracy"] = _fmt(s.best_accuracy, pct=True)
        if s.top5 is not None:
            row["top-5"] = _fmt(s.top5, pct=True)
        row.update({"valid loss": _fmt(s.valid_loss), "train loss": _fmt(s.train_loss),
                    "slow-weights accuracy": _fmt(s.slow_accuracy, pct=True), "seconds": _fmt(s.seconds, digits=1)})
        rows.append(row)
    return pd.DataFrame(rows)


def _interval_text(c):
    if c.verdict in (IDENTICAL, CONSTANT):
        return f"— (the same {_pp(c.mean)} pp in all {len(c.seeds)} seeds: no spread, no interval)"
    if c.verdict == ONE_SEED:
        return "needs ≥ 2 seeds"
    if c.verdict == NO_SEEDS:
        return "—"
    return f"[{_pp(c.low)}, {_pp(c.high)}] pp"


def paired_differences(store, experiment_name, scale, metric="accuracy"):
    """The comparisons of :func:`compare`, formatted: kind, what differs, mean difference, the raw
    95% interval and p-value, the Holm-adjusted p-value and the verdict it gives (``conclusion``)."""
    rows = []
    comparisons = compare(store, experiment_name, scale, metric)
    collapses = any(c.collapsed[0] or c.collapsed[2] for c in comparisons)
    for c in comparisons:
        row = {"optimizer": c.row, "vs": c.versus, "paired seeds": len(c.seeds), "kind": c.kind,
               "differs in": ", ".join(c.differs) or "nothing",
               "mean difference": "—" if math.isnan(c.mean) else f"{_pp(c.mean)} pp",
               "95% interval": _interval_text(c), "p": _p(c.p_raw), "p (Holm)": _p(c.p_holm),
               "conclusion": c.verdict}
        if collapses:
            row.update(_collapse_columns(c))
        rows.append(row)
    return pd.DataFrame(rows)


def _collapse_columns(c):
    """The diverged runs of both sides (k/n) and the exact test of the two collapse rates."""
    a, n_a, b, n_b = c.collapsed
    return {"diverged (row / vs)": f"{a}/{n_a} / {b}/{n_b}", "collapse p (Fisher)": _p(c.p_collapse)}


def plot_curves(store, experiment_name, scale, path):
    """Valid accuracy and train loss per epoch: mean over seeds with a ±1 std band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experiment = get_experiment(experiment_name)
    frame = store.epochs_frame(experiment_name)
    runs = {r["run_id"] for r in _runs(store, experiment_name, scale) if not diverged(r["record"])}  # never averaged
    frame = frame[frame["run_id"].isin(runs)] if len(frame) else frame
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if len(frame):
        for name in _order(experiment, set(frame["name"])):
            sub = frame[frame["name"] == name]
            for ax, col in zip(axes, ("accuracy", "train_loss")):
                if col not in sub:
                    continue
                stats = sub.groupby("epoch")[col].agg(["mean", "std"]).fillna(0.0)
                epochs = stats.index.to_numpy() + 1
                ax.plot(epochs, stats["mean"], label=name)
                ax.fill_between(epochs, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.2)
    axes[0].set(title="valid accuracy (mean ± std over seeds)", xlabel="epoch", ylabel="accuracy")
    axes[1].set(title="train loss, epoch mean (mean ± std)", xlabel="epoch", ylabel="loss", yscale="log")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{experiment_name} — scale {scale}")
    return _save_figure(fig, path)


def _data_source(path):
    if "site-packages" in str(path):
        return "the copy embedded in scikit-learn"
    return f"`{path}`"


SOURCES_TEXT = ("Each setting of the `full` specs (keys as in the spec; `hyper.*` are the optimizer's effective "
                "hyper-parameters, declared or its constructor's defaults), the rows it applies to, what the source "
                "says and where. A setting not listed here, or listed with another value, is in the deviations "
                "below (tests/test_sources.py checks this).")
KINDS_TEXT = (
    "Each comparison has a **kind**, derived from the two rows' specs: *like-for-like* (they differ in one "
    "factor only — for a Lookahead row against its plain inner optimizer, only the wrapper), *tuned* (they "
    "differ only in the optimizer's settings, each picked by a sweep the experiment declares) or "
    "*confounded* (anything else: a difference there cannot be put on one factor). \"differs in\" lists the "
    "factors.")


def _stats_text(n_tests):
    return (
        "Differences are per seed (same seed = same initialisation and data order). \"95% interval\" is the "
        "raw Student-t interval of the mean difference and \"p\" the raw two-sided paired t-test, each for "
        f"that comparison alone. \"conclusion\" uses Holm's adjustment over the {n_tests} comparisons of this "
        "table that have a p-value (\"p (Holm)\" ≤ 0.05): it keeps the family-wise error rate of this table "
        "— the chance that any of its better/worse verdicts is false where the rows do not differ — at "
        "5% or less. A raw interval that excludes 0 can therefore still read \"no difference shown\". "
        "\"No difference shown\" means these seeds cannot tell, not that the rows are the same. A "
        "difference that is the same in every seed has no spread, so no interval or test: it is reported "
        "as such.")


def _n_tested(comparisons):
    """How many comparisons have a p-value: the size of the family Holm's adjustment runs over."""
    return sum(not math.isnan(c.p_raw) for c in comparisons)


def _kind_counts(comparisons):
    return ", ".join(f"{k} {sum(c.kind == k for c in comparisons)}" for k in KINDS)


def _integrity_text(runs, imported):
    """Bullets for runs that diverged (left out of every number) and runs added by ``store import``
    (``imported``: run_id -> source); empty when there are none, as in every committed report."""
    lines = []
    gone = [r for r in runs if diverged(r["record"])]
    if gone:
        names = dict.fromkeys(r["name"] for r in gone)
        rows = ", ".join(f"{name} {sum(r['name'] == name for r in gone)}" for name in names)
        lines.append(f"- **Diverged** (a final metric NaN or infinite, or the final train loss at or above chance, "
                     f"ln C for C classes): {len(gone)} of {len(runs)} runs ({rows}); counted here, left out of every "
                     "mean, interval and paired test and of the seed counts below; collapse rates are compared with "
                     "Fisher's exact test\n")
    mine = sorted({imported[r["run_id"]] for r in runs if r["run_id"] in imported})
    if mine:
        n = sum(r["run_id"] in imported for r in runs)
        lines.append(f"- **Imported**: {n} of these {len(runs)} runs were added by `lookahead-fastai store import`, "
                     f"not trained in this store (from {', '.join(mine)})\n")
    return "".join(lines)


def write_report(store_path, experiment_name, out_dir="reports", scales=None, source=None):
    """Write ``out_dir/EXP.md`` (+ ``EXP_<scale>.png``) from the finished runs in the store; ``source``
    names where they came from in the report's first line (default: the store). ``experiment_name``:
    a name, or an :class:`Experiment` (a user's own)."""
    experiment_name = use_experiment(experiment_name)
    experiment = get_experiment(experiment_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ResultsStore(store_path, readonly=True) as store:
        runs = _runs(store, experiment_name)
        imported = store.imported(experiment_name)  # shown when the report is of a store, not of a file (source)
        present = sorted({r["record"]["scale"] for r in runs}, key=SCALES.index)
        scales = [s for s in (scales or present) if s in present]
        parts = [f"# {experiment_name}: {experiment.description}\n",
                 f"Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by "
                 f"`lookahead-fastai report {experiment_name}` from `{source or store_path}`.\n"]
        if not scales:
            parts.append("_No finished runs in the store for this experiment yet: run "
                         f"`lookahead-fastai run {experiment_name}` first._\n")
        for scale in scales:
            scale_runs = [r for r in runs if r["record"]["scale"] == scale]
            seeds = sorted({r["seed"] for r in scale_runs})
            dates = sorted(r["finished_at"] for r in scale_runs if r.get("finished_at"))
            envs = run_environments(scale_runs)
            done = completeness(experiment_name, scale, scale_runs)
            parts.append(f"## Scale `{scale}`\n")
            parts.append(
                "- **Data**: " + "; ".join(dict.fromkeys(  # every dataset of the scale, in run order
                    f"{r['record']['dataset']} ({r['record']['n_train']} train / {r['record']['n_valid']} valid "
                    f"images), from {_data_source(r['record']['data'])}" for r in scale_runs)) + "\n"
                f"- **Protocol**: {experiment.protocol.get(scale, '')}\n"
                f"- **Seeds**: {len(seeds)} ({', '.join(map(str, seeds))})\n"
                f"- **Runs**: {done.text()}\n"
                + _integrity_text(scale_runs, imported if source is None else {}) +
                f"- **Runs finished**: {dates[0][:16] if dates else '?'} to {dates[-1][:16] if dates else '?'} UTC\n"
                f"- **Compute**: {compute_text(scale_runs)}\n"
                f"- **Ran on** (from the runs' records): {' | '.join(envs)}\n")
            if not done.complete:
                parts.append(incomplete_note(done))
            if scale != "full":
                parts.append(f"> Scale `{scale}` is a small-budget run on offline data. These numbers are **not** "
                             "a reproduction of the original GPU results; compare optimizers within this table "
                             "only.\n")
            if experiment_name == LR_ROBUSTNESS:  # its own sections, per dataset and lr
                parts += lr_robustness_sections(store, experiment_name, scale, out_dir)
                continue
            parts.append("### Final metrics (mean ± std over seeds)\n")
            parts.append(_markdown(summary_table(store, experiment_name, scale)))
            comparisons = compare(store, experiment_name, scale)
            n_tests = _n_tested(comparisons)
            parts.append("\n### Paired differences in final accuracy\n")
            parts.append(KINDS_TEXT + " Here: " + _kind_counts(comparisons) + ".\n\n" + _stats_text(n_tests) + "\n\n")
            parts.append(_markdown(paired_differences(store, experiment_name, scale)))
            png = plot_curves(store, experiment_name, scale, out_dir / f"{experiment_name}_{scale}.png")
            parts.append(f"\n![curves]({png.name})\n")
            curve_file = lr_find_path(store_path, experiment_name, scale)
            if experiment.lr_find_row and curve_file.exists():
                curve = json.loads(curve_file.read_text())
                lr_png = plot_lr_find(curve, out_dir / f"{experiment_name}_{scale}_lr_find.png")
                parts.append(f"\nfastai `lr_find` on `{curve['row']}` (seed 0): valley suggestion "
                             f"{curve['valley']:.2e}; the row was trained at its protocol lr.\n\n![lr_find]({lr_png.name})\n")
    tuned = {scale: rows for scale, rows in experiment.tuned.items() if rows}
    if tuned:
        parts.append("## Declared sweeps (rows whose settings a sweep picked)\n")
        for scale, rows in tuned.items():
            parts += [f"- `{scale}` · {row}: {sweep}" for row, sweep in rows.items()]
        parts.append("")
    if experiment.sources:
        parts.append("## Sources of the `full` protocol, setting by setting\n")
        parts.append(SOURCES_TEXT + "\n")
        parts.append(sources_markdown(experiment))
    parts.append("## Deviations from the original\n")
    parts.append(deviations_markdown(experiment.deviations))
    if experiment.reference:
        parts.append("## Reference numbers from the original work\n")
        parts.append(experiment.reference.strip() + "\n")
    report = out_dir / f"{experiment_name}.md"
    report.write_text("\n".join(parts))
    return report


# ================================================================================================
# lr_robustness: accuracy against the inner optimizer's lr, per dataset (numbers, then words)
# ================================================================================================
LR_ROBUSTNESS = "lr_robustness"
NEAR_BEST_PP = 1.0  # an lr is "near the best" when its mean is within this many points of the best


def _lr_sweep_pairs(store, experiment_name, scale):
    """Tuned against tuned, for an experiment that declares lr sweeps (lr_robustness): each Lookahead
    family at the lr of its sweep with the best mean final accuracy, against its plain inner optimizer
    at that one's best lr. Returns (pairs, the rows picked)."""
    if experiment_name != LR_ROBUSTNESS:
        return [], set()
    from .experiments.lr_robustness import lookahead_pairs, sweeps
    finals = {}
    for r in _runs(store, experiment_name, scale):
        if r["record"]["final"].get("accuracy") is not None:
            finals.setdefault(r["name"], []).append(r["record"]["final"]["accuracy"])
    best = {}
    for key, rows in sweeps(scale).items():
        present = [row for row in rows if row in finals]
        if present:
            best[key] = max(present, key=lambda row: float(np.mean(finals[row])))
    pairs = []
    for data in dict.fromkeys(data for data, _ in sweeps(scale)):
        for la, plain in lookahead_pairs():
            if (data, la) in best and (data, plain) in best:
                pairs.append((best[(data, la)], best[(data, plain)]))
    return pairs, {row for pair in pairs for row in pair}


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


def lr_robustness_cells(store, experiment_name, scale):
    """The lr grid of ``scale`` with its finished runs: one :class:`LrCell` per row that has runs,
    in the declared order."""
    from .experiments.lr_robustness import cells
    runs = _runs(store, experiment_name, scale)
    frame = store.epochs_frame(experiment_name)
    if len(frame):
        frame = frame[frame["run_id"].isin({r["run_id"] for r in runs if not diverged(r["record"])})]
    out = []
    for cell in cells(scale):
        name = cell["row"]["name"]
        recs = {r["seed"]: r["record"] for r in runs if r["name"] == name}
        if not recs:
            continue
        by_epoch = {}
        if len(frame) and "accuracy" in frame:
            for epoch, values in frame[frame["name"] == name].groupby("epoch")["accuracy"]:
                by_epoch[int(epoch)] = Stat.of(values)
        by_seed = {s: rec["final"].get("accuracy") for s, rec in sorted(recs.items()) if not diverged(rec)}
        out.append(LrCell(name, cell["data"], cell["inner"], cell["variant"], cell["label"], cell["row"]["lr"],
                          Stat.of(by_seed.values()), by_seed, by_epoch, len(recs) - len(by_seed)))
    return out


def _by_label(cells):
    out = {}
    for c in cells:
        out.setdefault(c.label, []).append(c)
    return out


def _lr_table(cells, lrs, value):
    """Markdown: one line per optimizer family, one column per lr; ``value(cell)`` gives the text."""
    lines = ["| optimizer | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---|" + "---|" * len(lrs)]
    for label, group in _by_label(cells).items():
        at = {c.lr: c for c in group}
        lines.append(f"| {label} | " + " | ".join(value(at[lr]) if lr in at else "—" for lr in lrs) + " |")
    return "\n".join(lines) + "\n"


def _lr_tables(cells, value):
    """One :func:`_lr_table` per inner optimizer (its families against its own lr grid)."""
    tables = []
    for inner in dict.fromkeys(c.inner for c in cells):
        icells = [c for c in cells if c.inner == inner]
        tables.append(_lr_table(icells, sorted({c.lr for c in icells}), value))
    return tables


def _robustness_rows(cells):
    """Per optimizer family: best and worst lr (by mean), the range between them, the grid mean, the
    lrs near the best, the worst single run and the per-seed range over the grid, all over the runs that
    trained; and ``diverged``: (lr, runs diverged, runs) at each lr where some did."""
    rows = []
    for label, group in _by_label(cells).items():
        ok = [c for c in group if not math.isnan(c.final.mean)]
        if not ok:
            continue
        best = max(ok, key=lambda c: c.final.mean)
        worst = min(ok, key=lambda c: c.final.mean)
        seeds = set.intersection(*(set(c.by_seed) for c in ok))
        seed_ranges = [max(c.by_seed[s] for c in ok) - min(c.by_seed[s] for c in ok) for s in sorted(seeds)
                       if all(c.by_seed[s] is not None for c in ok)]
        rows.append(dict(label=label, inner=group[0].inner, variant=group[0].variant, lrs=len(ok),
                         lowest_lr=min(c.lr for c in ok), highest_lr=max(c.lr for c in ok),
                         best_lr=best.lr, best=best.final.mean, worst_lr=worst.lr, worst=worst.final.mean,
                         range=best.final.mean - worst.final.mean,
                         grid_mean=float(np.mean([c.final.mean for c in ok])),
                         near=[c.lr for c in ok if best.final.mean - c.final.mean <= NEAR_BEST_PP / 100],
                         worst_run=min(v for c in ok for v in c.by_seed.values() if v is not None),
                         seed_range=Stat.of(seed_ranges),
                         diverged=[(c.lr, c.diverged, c.diverged + c.final.n) for c in group if c.diverged]))
    return rows


def _detectable(comparisons, n_family, alpha=ALPHA):
    """:func:`results.stats.detectable` over the per-seed differences of ``comparisons`` that have an interval."""
    return detectable([c.differences for c in comparisons if not math.isnan(c.low)], n_family, alpha)


def _diverged_text(diverged):
    """"lr 1: 5/5, ..." for (lr, diverged, runs) triples; "none" when there are none."""
    return _join((f"lr {lr:g}: {k}/{n}" for lr, k, n in diverged))


def _comparison_label(c, lr_of, picked=()):
    if lr_of[c.row] == lr_of[c.versus]:
        also = " (also each one's best lr: the tuned comparison)" if (c.row, c.versus) in picked else ""
        return f"{c.row.split(' · ')[0]} − {c.versus.split(' · ')[0]}, both at lr {lr_of[c.row]:g}{also}"
    return (f"tuned: {c.row.split(' · ')[0]} at its best lr {lr_of[c.row]:g} − {c.versus.split(' · ')[0]} "
            f"at its best lr {lr_of[c.versus]:g}")


def _plain_at_same_lr(cells, la):
    """The plain inner optimizer's cell at a Lookahead cell's lr (None if it has not run)."""
    return next((b for b in cells if not b.variant and b.inner == la.inner and b.lr == la.lr), None)


def _edge_text(robust):
    """The families whose best lr is the smallest or largest of their grid (rows of
    :func:`_robustness_rows`): their sweep may have stopped short of their best, so a tuned comparison
    involving them can misstate the gap."""
    edge = []
    for r in robust:
        if r["lrs"] > 1 and r["best_lr"] in (r["lowest_lr"], r["highest_lr"]):
            side = "top" if r["best_lr"] == r["highest_lr"] else "bottom"
            edge.append(f"{r['label']} (lr {r['best_lr']:g}, the grid's {side})")
    if not edge:
        return ""
    return (f" Best lr at an edge of its grid: {_join(edge)}; the sweep may have stopped short of that family's "
            "best, so a tuned comparison involving it can misstate the gap.")


def _grid_position_text(at_lr, cells, robust):
    """Where the like-for-like better/worse verdicts sit on the lr grid: below, at or above the plain
    inner optimizer's best lr (its best mean over seeds), with the reading the pattern suggests."""
    inner_of = {c.row: c.inner for c in cells}
    best_lr = {r["inner"]: r["best_lr"] for r in robust if not r["variant"]}
    lr_of = {c.row: c.lr for c in cells}

    def position(c):
        best = best_lr.get(inner_of[c.versus])
        if best is None:
            return None
        return "below" if lr_of[c.row] < best else "above" if lr_of[c.row] > best else "at"

    counts = {v: Counter(position(c) for c in at_lr if c.lookahead_verdict == v) for v in (BETTER, WORSE)}
    if not any(counts.values()):
        return ""
    places = ("below", "at", "above")

    def spread(counter):
        return ", ".join(f"{counter[p]} {p}" for p in places if counter[p]) or "none"

    text = (f"**Where in the lr grid** (each like-for-like verdict's lr against the plain optimizer's best lr, "
            f"{_join(f'{inner} {lr:g}' for inner, lr in best_lr.items())}): Lookahead better "
            f"{sum(counts[BETTER].values())} ({spread(counts[BETTER])}), worse {sum(counts[WORSE].values())} "
            f"({spread(counts[WORSE])}).")
    if counts[BETTER] and set(counts[BETTER]) <= {"above"} and counts[WORSE] and set(counts[WORSE]) <= {"below"}:
        text += (" Every better verdict is above the plain optimizer's best lr and every worse one below it: "
                 "the pattern of a wrapper that shrinks the effective step (the slow weights move α of the way "
                 "to the fast ones every k steps), so Lookahead gains where the plain lr is too large and loses "
                 "where it is too small. That reading is a description of where the verdicts fall, not a test.")
    return text


def _closing_parts(data, cells, comparisons, tuned, robust, n_family, alpha=ALPHA):
    """The closing paragraphs for one dataset, from the numbers (what these seeds support, what not),
    by name: "support", "tuned", "where", "detectable", "robustness", "variance", "early", "not supported"."""
    lr_of = {c.row: c.lr for c in cells}
    label_of = {c.row: c.label for c in cells}
    at_lr = [c for c in comparisons if lr_of[c.row] == lr_of[c.versus]]
    text = {}
    seeds = sorted({len(c.seeds) for c in comparisons if c.seeds})
    seed_text = "/".join(map(str, seeds)) or "0"
    def where(cs):
        return _join(f"{label_of[c.row].split(' / ')[0]}/{label_of[c.versus]} at lr {lr_of[c.row]:g} "
                     f"({_pp(c.mean)} pp)" for c in cs)
    better = [c for c in at_lr if c.lookahead_verdict == BETTER]
    worse = [c for c in at_lr if c.lookahead_verdict == WORSE]
    other = [c for c in at_lr if c.verdict not in (BETTER, WORSE, NOT_SHOWN)]
    collapsed = [c for c in at_lr if c.collapsed[0] or c.collapsed[2]]
    text["support"] = (
        f"**What {seed_text} seeds on {data} support.** Like-for-like, at each lr (only the wrapper differs; "
        f"Holm-adjusted over the {n_family} comparisons of this scale, family-wise error ≤ {alpha:.0%}): Lookahead "
        f"better at {where(better)}; worse at {where(worse)}; no difference shown at the other lrs"
        + (", except where a side has no paired seeds or no spread ("
           + _join(f"{n} {v}" for v, n in Counter(c.verdict for c in other).items()) + ")" if other else "") + ". These are the per-lr effects of the table above, not a score: the lrs of a grid "
        "are neither independent nor equally relevant."
        + (" Runs that diverged, Lookahead against its inner optimizer at the same lr: " + "; ".join(
            f"{label_of[c.row].split(' / ')[0]}/{label_of[c.versus]} at lr {lr_of[c.row]:g}: {c.collapsed[0]}/"
            f"{c.collapsed[1]} against {c.collapsed[2]}/{c.collapsed[3]} (Fisher p {_p(c.p_collapse)}, raw)"
            for c in collapsed) + "." if collapsed else ""))
    tuned_text = []
    for c in tuned:
        tuned_text.append(f"{label_of[c.row]} at lr {lr_of[c.row]:g} vs {label_of[c.versus]} at lr "
                          f"{lr_of[c.versus]:g}: {_pp(c.mean)} pp, {_interval_text(c)}, {c.verdict}")
    if tuned_text:
        text["tuned"] = ("Each family at its own best lr (tuned against tuned; "
                         + ("like-for-like where the best lrs coincide; "
                            if any(c.kind == "like-for-like" for c in tuned) else "")
                         + "the best lr was picked from these same seeds, which flatters every family's best by a "
                           "similar selection effect): " + "; ".join(tuned_text) + "."
                         + _edge_text(robust))
    where_text = _grid_position_text(at_lr, cells, robust)
    if where_text:
        text["where"] = where_text
    det = _detectable(comparisons, n_family)
    if det:
        text["detectable"] = (
            f"**The smallest difference these seeds could detect**: the raw 95% intervals' half-width is "
            f"{det['median'] * 100:.2f} pp at the median ({det['low'] * 100:.2f}–{det['high'] * 100:.2f} pp): a "
            "true difference smaller than that would most likely read \"no difference shown\". After Holm's "
            f"adjustment the bar is higher: its first (strictest) step needed about {det['holm_first'] * 100:.2f} pp "
            "at the median spread. \"No difference shown\" means these seeds cannot tell, not that Lookahead and "
            "its inner optimizer perform the same.")
    plain = {r["inner"]: r for r in robust if not r["variant"]}
    rob = []
    for r in robust:
        if r["variant"] and r["inner"] in plain:
            p = plain[r["inner"]]
            rob.append(f"{r['label']}: range {r['range'] * 100:.2f} pp, worst {_pct(r['worst'])}%"
                       + (f", diverged {_diverged_text(r['diverged'])}" if r["diverged"] else "")
                       + f" (plain {r['inner']}: {p['range'] * 100:.2f} pp, worst {_pct(p['worst'])}%"
                       + (f", diverged {_diverged_text(p['diverged'])}" if p["diverged"] else "") + ")")
    if rob:
        narrower = sum(r["range"] < plain[r["inner"]]["range"] for r in robust if r["variant"] and r["inner"] in plain)
        text["robustness"] = (
            "**Robustness to the lr** (range and worst case of the mean over the grid; descriptive, not "
            "tested; over the runs that trained, with the runs that diverged named): "
            f"{'; '.join(rob)}. Lookahead's range was narrower in {narrower} of {len(rob)} families. "
            "Whether a narrower range is more than seed noise rests on the per-lr comparisons above: a "
            "robustness claim is supported only where Lookahead is *better* at the grid's poor lrs.")
    pairs = []
    for la in (c for c in cells if c.variant):
        base = _plain_at_same_lr(cells, la)
        if base is not None and not math.isnan(la.final.std) and not math.isnan(base.final.std):
            pairs.append((la, base))
    if pairs:
        n = min(min(la.final.n, b.final.n) for la, b in pairs)
        low, high, f_ratio = _std_bounds(n) if n > 1 else (math.nan,) * 3
        lower = sum(la.final.std < b.final.std for la, b in pairs)
        beyond = [la for la, b in pairs if b.final.std > 0 and la.final.std > 0 and
                  max(la.final.std / b.final.std, b.final.std / la.final.std) > f_ratio]
        text["variance"] = (
            f"**Seed variance**: Lookahead's std over seeds was lower than its inner optimizer's at "
            f"{lower} of {len(pairs)} (family, lr) cells. With {n} seeds a std is known only within ×{low:.2f} to "
            f"×{high:.2f} of its estimate (95%), and two stds differ at 5% (two-sided F-test, one cell alone, "
            f"treating the two rows as independent) only "
            f"when their ratio exceeds ×{f_ratio:.2f}: {len(beyond)} cell(s) did"
            + (f" ({_join(f'{c.label} at lr {c.lr:g}' for c in beyond)})" if beyond else "")
            + ". So the variance claim is "
            + ("not supported either way by these seeds." if not beyond else
               "open to the cells listed, uncorrected for the many cells looked at."))
    early = []
    for la in (c for c in cells if c.variant and 0 in c.by_epoch):
        base = _plain_at_same_lr(cells, la)
        if base is not None and 0 in base.by_epoch:
            early.append(la.by_epoch[0].mean - base.by_epoch[0].mean)
    if early:
        text["early"] = (
            f"**Early progress** (accuracy after epoch 1, Lookahead minus its inner optimizer at the same lr, "
            f"means over seeds; descriptive, not tested): ahead in {sum(d > 0 for d in early)} of {len(early)} "
            f"cells, median {np.median(early) * 100:+.2f} pp (from {min(early) * 100:+.2f} to "
            f"{max(early) * 100:+.2f} pp).")
    text["not supported"] = (
        "**What they do not support**: anything beyond this dataset, model, schedule and number of epochs "
        "(the paper's setting is 200 epochs of ResNet-18 on the full CIFAR); a claim of *no* difference where "
        "the verdict is \"no difference shown\"; and the untested descriptive figures (range, worst case, "
        "std, early accuracy) read as established.")
    return text


def budget_text(runs, experiment_name, scale):
    """The study's measured compute against its budget (lr_robustness at scale cpu: 3 hours of the 2
    cores, run as single-threaded sweeps sharing one store), from the runs' recorded times."""
    from .experiments import lr_robustness as study
    if scale != "cpu":
        return ""
    seconds = run_seconds(runs)
    if not seconds:
        return ""
    planned = completeness(experiment_name, scale, runs).planned
    hours = sum(seconds) / 3600
    machine = study.machine_hours(sum(seconds))
    text = (f"**Compute against the budget** (the whole study in at most {study.BUDGET_HOURS:g} hours of the "
            f"{study.WORKERS} cores): the training times of the {len(seconds)} finished runs sum to {hours:.2f} h of "
            f"one core; as {study.WORKERS} single-threaded sweeps sharing one store, that is **{machine:.2f} h of "
            f"the {study.WORKERS} cores**")
    if len(seconds) < planned:
        whole = study.machine_hours(np.mean(seconds) * planned)
        text += f" for {len(seconds)} of {planned} runs (all {planned} at their mean: about {whole:.2f} h)"
    return (text + f", against {study.projected_hours(scale):.2f} h projected from single runs (the module's "
            "MEASURED), each sweep's process start included. The times are wall times of runs on a machine at times "
            "shared with other jobs, so they include that contention; the time before each fit (loading the data, "
            "building the Learner) is not in them.\n")


def _study_by_dataset(store, experiment_name, scale):
    """The lr grid's cells and comparisons split by dataset: ``([(data, cells, comparisons, tuned), ...],
    n_family, picked)`` -- ``tuned`` the comparisons at each family's best lr, ``n_family`` the number of
    tested comparisons Holm's adjustment ran over (the whole scale), ``picked`` the tuned (row, versus) pairs."""
    cells = lr_robustness_cells(store, experiment_name, scale)
    comparisons = compare(store, experiment_name, scale)
    picked = set(_lr_sweep_pairs(store, experiment_name, scale)[0])
    datasets = []
    for data in dict.fromkeys(c.data for c in cells):
        dcells = [c for c in cells if c.data == data]
        rows = {c.row for c in dcells}
        dcomp = [c for c in comparisons if c.row in rows and c.versus in rows]
        datasets.append((data, dcells, dcomp, [c for c in dcomp if (c.row, c.versus) in picked]))
    return datasets, _n_tested(comparisons), picked


def study_summary(store, scale, experiment_name=LR_ROBUSTNESS):
    """The study's answer for the index, per dataset: the closing paragraphs on the like-for-like
    comparisons at each lr, the tuned ones at each family's best lr, where on the grid the verdicts
    fall and the robustness over the grid."""
    datasets, n_family, _ = _study_by_dataset(store, experiment_name, scale)
    lines = []
    for data, dcells, dcomp, tuned in datasets:
        parts = _closing_parts(data, dcells, dcomp, tuned, _robustness_rows(dcells), n_family)
        lines += ["- " + " ".join(parts[k] for k in ("support", "tuned", "where", "robustness") if k in parts)]
    return lines


def lr_robustness_sections(store, experiment_name, scale, out_dir):
    """The lr_robustness report's body for one scale: per dataset, accuracy against lr (table and
    figure), robustness over the grid, seed std at each lr, accuracy after the first epochs, the
    paired comparisons (like-for-like at each lr, tuned at each family's best lr; Holm-adjusted over
    the scale) and a closing paragraph written from those numbers."""
    datasets, n_family, picked = _study_by_dataset(store, experiment_name, scale)
    parts = [t for t in [budget_text(_runs(store, experiment_name, scale), experiment_name, scale)] if t]
    for data, dcells, dcomp, tuned in datasets:
        lr_of = {c.row: c.lr for c in dcells}
        seeds = sorted({s for c in dcells for s in c.by_seed})
        parts.append(f"### {data}\n")
        parts.append(f"{len(dcells)} rows × up to {len(seeds)} seeds ({', '.join(map(str, seeds))}).\n")
        parts.append("#### Final accuracy against the inner optimizer's lr (%, mean ± std over seeds, n)\n")
        parts += _lr_tables(dcells, lambda c: f"{_fmt(c.final, pct=True)} ({c.final.n}"
                            + (f"; {c.diverged} diverged, left out" if c.diverged else "") + ")")
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in data)
        png = plot_lr_robustness(dcells, Path(out_dir) / f"{experiment_name}_{scale}_{safe}.png",
                                 f"{experiment_name} · {data} · scale {scale}")
        parts.append(f"\n![accuracy against lr, {data}]({png.name})\n")
        parts.append("#### Robustness over the lr grid\n")
        parts.append(f"From the means over seeds: the best and worst lr, the range between them, the mean over the "
                     f"grid, the lrs within {NEAR_BEST_PP:g} pp of the best; the worst single run; and the range over "
                     "the grid seed by seed (mean ± std over seeds). Descriptive: none of these is tested. All of them "
                     "are over the runs that trained: a diverged run is left out and counted in the last column (an "
                     "lr where every run diverged has no mean and is not among the lrs).\n")
        lines = ["| optimizer | lrs | best lr (acc %) | worst lr (acc %) | range (pp) | grid mean (%) | "
                 f"lrs within {NEAR_BEST_PP:g} pp of best | worst run (%) | per-seed range (pp) | diverged runs |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for r in _robustness_rows(dcells):
            sr = r["seed_range"]
            lines.append(f"| {r['label']} | {r['lrs']} | {r['best_lr']:g} ({_pct(r['best'])}) | {r['worst_lr']:g} "
                         f"({_pct(r['worst'])}) | {r['range'] * 100:.2f} | {_pct(r['grid_mean'])} | "
                         f"{_join(f'{v:g}' for v in r['near'])} | {_pct(r['worst_run'])} | "
                         f"{_pct(sr.mean)} ± {_pct(sr.std)} | {_diverged_text(r['diverged'])} |")
        parts.append("\n".join(lines) + "\n")
        parts.append("#### Seed std at each lr (pp; the variance claim)\n")
        parts += _lr_tables(dcells, lambda c: _pct(c.final.std))
        n = min((c.final.n for c in dcells), default=0)
        if n > 1:
            low, high, f_ratio = _std_bounds(n)
            parts.append(f"With {n} seeds a std's 95% interval is ×{low:.2f} to ×{high:.2f} of the estimate; two "
                         f"stds differ at 5% (F-test) only when their ratio exceeds ×{f_ratio:.2f}.\n")
        epochs = sorted({e for c in dcells for e in c.by_epoch})[:2]
        if epochs:
            parts.append("#### Accuracy after the first epochs (%, mean over seeds; the speed claim)\n")
            parts.append(" / ".join(f"epoch {e + 1}" for e in epochs) + " in each cell.\n")
            parts += _lr_tables(dcells, lambda c: " / ".join(
                _pct(c.by_epoch[e].mean) if e in c.by_epoch else "—" for e in epochs))
        parts.append("#### Paired differences: Lookahead − its inner optimizer (final accuracy)\n")
        parts.append(f"Like-for-like at each lr, and tuned against tuned at each family's best lr. Holm-adjusted "
                     f"over all {n_family} comparisons of this scale (both datasets). " + _stats_text(n_family) + "\n")
        collapses = any(c.collapsed[0] or c.collapsed[2] for c in dcomp)
        extra = " diverged (Lookahead / inner) | collapse p (Fisher) |" if collapses else ""
        lines = ["| comparison | kind | seeds | mean (pp) | raw 95% interval | half-width (pp) | p | p (Holm) | "
                 "conclusion |" + extra, "|---|---|---|---|---|---|---|---|---|" + "---|" * (2 * collapses)]
        for c in dcomp:
            half = "—" if math.isnan(c.low) else f"{(c.high - c.low) / 2 * 100:.2f}"
            lines.append(f"| {_comparison_label(c, lr_of, picked)} | {c.kind} | {len(c.seeds)} | "
                         f"{'—' if math.isnan(c.mean) else _pp(c.mean)} | {_interval_text(c)} | {half} | "
                         f"{_p(c.p_raw)} | {_p(c.p_holm)} | {c.verdict} |"
                         + (" " + " | ".join(_collapse_columns(c).values()) + " |" if collapses else ""))
        if collapses:
            lines.append("\nA paired seed needs both runs to have trained: a comparison where every run of one side "
                         "diverged has no paired seeds and is answered by the collapse rates, compared with Fisher's "
                         "exact test (two-sided, raw: for that comparison alone).")
        parts.append("\n".join(lines) + "\n")
        parts.append("#### What these seeds support, and what they do not\n")
        parts.append("\n\n".join(_closing_parts(data, dcells, dcomp, tuned, _robustness_rows(dcells),
                                                 n_family).values()) + "\n")
    if not datasets:
        parts.append("_No finished runs of the lr grid at this scale._\n")
    return parts


INDEX_PREAMBLE = """# Reports

Generated by `lookahead-fastai report all` from the results store. Every report states its scale, data,
seeds, date and where its runs ran, and lists how its experiment deviates from the original it reproduces.
`cpu`-scale numbers come from small CNNs/MLPs trained for a few epochs on the offline data (CIFAR-10
subset: 5,085 train / 1,017 test real images; MNIST subset; the complete Fashion-MNIST); they compare optimizers **within** one table
and are **not** reproductions of the original GPU results (those are quoted in each report for context).
Where Imagenette/Imagewoof have no offline copy, the CIFAR-10 subset stands in for them and the rows say
"CIFAR-10 substitute". CIFAR-100 has no offline copy: no cpu rows exist. Only `paper_cifar` at scale `full`
is the Lookahead paper's setting (its Table 1), and only `imagenette_leaderboard` at scale `full` is the
Imagenette leaderboard's.

The question comes first, answered by one declared family of comparisons as effect sizes with intervals
(never a count of verdicts). Below it, each report's comparisons have a kind, derived from the specs:
*like-for-like* (one factor differs: for Lookahead against its plain inner optimizer, only the wrapper),
*tuned* (each row at settings a declared sweep picked) or *confounded* (anything else). Within each report
and scale, verdicts are Holm-adjusted (family-wise error rate at most 5% per table); the lists below pool
the reports without a further correction. "No difference shown" means the seeds cannot tell, not that
there is no difference; 3 to 5 seeds give wide intervals (see each report's smallest detectable difference,
beside the noise floor of its data, in the table of reports).
"""


DETECTABLE_TEXT = (
    "*Smallest detectable difference*: the median half-width of the report's raw 95% intervals over seeds (a true "
    "difference smaller than that most likely reads \"no difference shown\"), and in brackets what the strictest "
    "step of Holm's adjustment over the report's comparisons needed at the median spread; \"—\" where no "
    "comparison had a spread to test. *Noise floor of its data*: how far one algorithm ends from itself through two "
    "float paths (fastai's `ranger` against ours), seed by seed, on the report's datasets where it was measured.")


def _datasets_text(runs):
    return "; ".join(dict.fromkeys(f"{r['record']['dataset']} ({r['record']['n_train']} / {r['record']['n_valid']})"
                                   for r in runs))


def _detectable_text(det):
    if det is None:
        return "—"
    return f"{det['median'] * 100:.2f} pp ({det['holm_first'] * 100:.2f} pp after Holm), {det['seeds']} seeds"


# ================================================================================================
# the questions: one declared family per question, as effects (numbers in results/, words here)
# ================================================================================================
def noise_floors(store, scale):
    """Per dataset (the records' name): the implementation-noise floor of the final accuracy
    (:func:`results.stats.noise_floor`), pooled over every pair of rows an experiment declares as one
    algorithm through two float paths (``Experiment.same_algorithm``), paired by seed, over runs that trained."""
    from .experiments import EXPERIMENTS
    diffs = {}
    for name, exp in EXPERIMENTS.items():
        if not exp.same_algorithm:
            continue
        by = {}
        for r in _runs(store, name, scale):
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

    @property
    def in_family(self):
        return self.scored_slow and not self.edges


def question_lines(store, scale, key=LOOKAHEAD_VS_INNER.key):
    """The comparisons the experiments declare for question ``key`` ("tuned": each Lookahead family of
    a declared lr sweep at its best lr against its inner optimizer at its best), one per (dataset,
    inner optimizer, Lookahead variant), in the experiments' order."""
    from .experiments import EXPERIMENTS
    out = []
    for name, exp in EXPERIMENTS.items():
        if exp.questions.get(key) != "tuned" or scale not in exp.scales:
            continue
        cells = lr_robustness_cells(store, name, scale)
        cell_of = {c.row: c for c in cells}
        comps = {(c.row, c.versus): c for c in compare(store, name, scale)}
        specs = {s.name: s for s in exp.specs(scale)}
        datasets = {r["name"]: r["record"]["dataset"] for r in _runs(store, name, scale)}
        for la_row, plain_row in _lr_sweep_pairs(store, name, scale)[0]:
            c, la, plain = comps[(la_row, plain_row)], cell_of[la_row], cell_of[plain_row]
            edges = []
            for cell in (la, plain):
                grid = [x.lr for x in cells if x.label == cell.label and x.data == cell.data]
                if at_grid_edge(cell.lr, grid):
                    edges.append((cell.label, cell.lr, "top" if cell.lr == max(grid) else "bottom"))
            spec = specs[la_row]
            out.append(QuestionLine(name, la.data, datasets[la_row], la.label, la.inner, la_row, plain_row, la.lr,
                                    plain.lr, tuple(c.lookahead_vs_inner * d for d in c.differences), tuple(edges),
                                    bool(spec.eval_slow_weights and spec.slow_bn_batches), c.collapsed,
                                    c.p_collapse))
    return out


def _reading(line, effect, alpha=ALPHA):
    if not line.scored_slow:
        return "flagged: Lookahead not scored on slow weights with BatchNorm recomputed; not in the family"
    if line.edges:
        return ("flagged: best lr at a grid edge (" + _join(f"{label} at {lr:g}, the {side}"
                                                           for label, lr, side in line.edges) + "); not in the family")
    if effect.paired.n < 2:
        return "cannot tell (fewer than 2 paired seeds)"
    if math.isnan(effect.p_holm):
        return "the same difference in every seed (no spread, no test)"
    if effect.p_holm <= alpha:
        return "**Lookahead better**" if effect.paired.mean > 0 else "**Lookahead worse**"
    return "no difference shown"


def question_section(store, scale, out_dir, question=LOOKAHEAD_VS_INNER, floors=None):
    """The index's first section for ``question``: its family as a forest plot, then the numbers,
    how Lookahead is scored, what is flagged and left out, and the noise floor beside it."""
    lines = question_lines(store, scale, question.key)
    head = [f"## {question.title} (scale `{scale}`)", ""]
    if not lines:
        return head + ["_No finished runs of an experiment that declares this question at this scale._", ""]
    effects = family_effects({i: line.differences for i, line in enumerate(lines)},
                             in_family={i: line.in_family for i, line in enumerate(lines)})
    m = sum(e.in_family and not math.isnan(e.paired.p) for e in effects)
    png = plots.forest_plot(
        [(f"{line.data} · {line.label} − {line.inner}" + ("" if line.in_family else " (flagged)"),
          e.paired.mean * 100, e.low * 100, e.high * 100, line.in_family) for line, e in zip(lines, effects)],
        Path(out_dir) / f"question_{question.key}_{scale}.png",
        f"{question.short} (scale {scale})\nblack: the family (Holm, Bonferroni-level intervals); grey: flagged, raw 95%",
        "final accuracy, Lookahead − inner optimizer (pp)")
    floors = floors or {}
    studies = []
    for n in dict.fromkeys(line.experiment for line in lines):
        grid = completeness(n, scale, _runs(store, n, scale))
        studies.append(f"[{n}]({n}.md)" + ("" if grid.complete else f" (**incomplete**: {grid.text()} runs finished)"))
    studies = _join(studies)
    head += [f"![{question.title}: effects]({png.name})", "",
             f"One line per dataset × inner optimizer × Lookahead variant, from {studies}: Lookahead at the best lr of "
             "its own sweep minus its inner optimizer at the best lr of its own sweep, final accuracy paired by seed "
             "(each comparison once; the runs of an inner optimizer at its best lr serve both of its Lookahead "
             f"variants). {question.scoring} The family is the {m} comparisons not flagged: their "
             f"p-values are Holm-adjusted over the {m}, and their intervals are at the Bonferroni level "
             f"(1 − 0.05/{m}: Holm's step-down has no interval of its own and this one contains each step's). "
             "A comparison whose best lr sits at an edge of its grid is flagged (the sweep may have stopped short "
             "of that family's optimum) and is drawn grey with its raw 95% interval, outside the family. "
             "Runs that diverged (a loss NaN or infinite, or a final train loss at or above chance, ln C) are left "
             "out of the differences and counted; their rates are compared with Fisher's exact test. The best lr is "
             "picked on the same seeds and on the validation images, which are the dataset's test split: the "
             "selection flatters every best lr; a held-out validation split and fresh confirmation seeds are not "
             "in place yet. \"No difference shown\" means these seeds cannot tell, not that there is no difference.",
             "", "| dataset | comparison | Lookahead lr | inner lr | paired seeds | diverged (Lookahead / inner) | "
             "mean (pp) | interval (pp) | p (Holm) | reading | noise floor of the dataset |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for line, e in zip(lines, effects):
        a, n_a, b, n_b = line.collapsed
        collapse = f"{a}/{n_a} / {b}/{n_b}" + (f" (Fisher p {_p(line.p_collapse)})" if a or b else "")
        kind = "Bonferroni" if line.in_family else "raw 95%"
        interval = "—" if math.isnan(e.low) else f"{words.interval(e.low, e.high)} ({kind})"
        head.append(f"| {line.data} | {line.label} − {line.inner} | {line.lr:g} | {line.versus_lr:g} | {e.paired.n} | "
                    f"{collapse} | {'—' if math.isnan(e.paired.mean) else _pp(e.paired.mean)} | {interval} | "
                    f"{_p(e.p_holm)} | {_reading(line, e)} | {words.noise_floor(floors.get(line.dataset))} |")
    head += ["", "*Noise floor*: fastai's `ranger` and ours (Lookahead over fastai's RAdam, the same settings) are one "
             "algorithm through two float paths; how far apart they end, seed by seed, is the floor (declared by "
             "the experiments as `same_algorithm`). A difference below it cannot be put on the algorithm.", ""]
    return head


def write_index(store_path, out_dir="reports", scale="cpu"):
    """``out_dir/README.md``: first the answer to each declared question (:func:`question_section`: a
    forest plot of one family's effects, then the numbers; never a count of verdicts), then one line
    per experiment report (scale, data, seeds, smallest detectable difference beside the noise floor of
    its data, date, where the runs ran) and every comparison by verdict."""
    from .experiments import EXPERIMENTS
    out_dir = Path(out_dir)
    rows, shown, not_shown, constant, collapses = [], [], [], [], []
    with ResultsStore(store_path, readonly=True) as store:
        floors = noise_floors(store, scale)
        question = question_section(store, scale, out_dir, floors=floors)
        for name in EXPERIMENTS:
            runs = _runs(store, name, scale)
            if not runs:
                continue
            seeds = sorted({r["seed"] for r in runs})
            dates = sorted(r["finished_at"] for r in runs if r.get("finished_at"))
            comparisons = compare(store, name, scale)
            det = _detectable(comparisons, _n_tested(comparisons))
            grid = completeness(name, scale, runs)
            runs_text = f"{grid.done} of {grid.planned}" + ("" if grid.complete else " (**incomplete**)")
            floor = "; ".join(f"{d}: {words.noise_floor(floors[d])}" for d in
                              dict.fromkeys(r["record"]["dataset"] for r in runs) if d in floors) or "not measured"
            rows.append(f"| [{name}]({name}.md) | `{scale}` | {_datasets_text(runs)} | {len(seeds)} | {runs_text} | "
                        f"{_detectable_text(det)} | {floor} | {dates[-1][:10] if dates else '?'} | "
                        f"{' / '.join(run_environments(runs))} |")
            for c in comparisons:
                if c.collapsed[0] or c.collapsed[2]:
                    a, n_a, b, n_b = c.collapsed
                    collapses.append(f"- **{name}**: {c.row} vs {c.versus}: {a} of {n_a} runs diverged against {b} of "
                                     f"{n_b}, Fisher's exact p {_p(c.p_collapse)} (raw, for that comparison alone)")
                if c.verdict in (ONE_SEED, NO_SEEDS):
                    continue
                line = (f"- **{name}**: {c.row} vs {c.versus} ({c.kind}): {_pp(c.mean)} pp, "
                        + (f"raw 95% interval {_interval_text(c)}, Holm p {_p(c.p_holm)} over {len(c.seeds)} seeds"
                           if c.verdict in (BETTER, WORSE, NOT_SHOWN) else f"in each of {len(c.seeds)} seeds"))
                target = shown if c.verdict in (BETTER, WORSE) else not_shown if c.verdict == NOT_SHOWN else constant
                target.append(line + (f" — **{c.verdict}**" if c.verdict in (BETTER, WORSE) else f" — {c.verdict}"))
    context = ("These are short runs of small models on small data. The paper's setting is `paper_cifar` at scale "
               "`full`, which needs a GPU." if scale != "full" else
               "At scale `full`, only `paper_cifar` is the paper's setting; the other experiments reproduce their "
               "own originals.")
    text = [INDEX_PREAMBLE, *question, context, "", "## Reports", "", DETECTABLE_TEXT, "",
            "| report | scale | data (train / valid) | seeds | runs finished of planned | smallest detectable difference "
            "| noise floor of its data | date | ran on |",
            "|---|---|---|---|---|---|---|---|---|", *rows, "",
            "## Every comparison of every report (Holm-adjusted within each report, not across them)", "",
            "### What these seeds show", "", *(shown or ["- nothing"]), "",
            "### What they cannot tell (no difference shown, which is not the same as no difference)", "",
            *(not_shown or ["- nothing"]), "",
            "### Differences that are the same in every seed (no spread: no interval, no test)", "",
            *(constant or ["- none"]), "",
            "### Runs that diverged (left out of every number above; their rates compared here)", "",
            *(collapses or ["- none"]), ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "README.md"
    path.write_text("\n".join(text))
    return path
