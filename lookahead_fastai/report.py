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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .experiments import SCALES, get_experiment
from .experiments.deviations import deviations_markdown
from .registry.optimizers import optimizer_parts
from .store import ResultsStore
from .sweep import lr_find_path

__all__ = ["Stat", "RowSummary", "Comparison", "summarize", "compare", "comparison_kind", "holm",
           "run_environments", "summary_table", "paired_differences", "plot_curves", "plot_lr_find",
           "write_report", "write_index", "KINDS", "ALPHA", "UNKNOWN_ENV"]

KINDS = ("like-for-like", "tuned", "confounded")
ALPHA = 0.05
UNKNOWN_ENV = "unknown (not recorded)"
BETTER, WORSE, NOT_SHOWN = "better", "worse", "no difference shown"
IDENTICAL = "identical in every seed"
CONSTANT = "same difference in every seed"
ONE_SEED, NO_SEEDS = "cannot tell (1 seed)", "no paired seeds"


# ================================================================================================
# numbers
# ================================================================================================
@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # nan with fewer than 2 values
    n: int

    @classmethod
    def of(cls, values):
        values = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if not values:
            return cls(math.nan, math.nan, 0)
        arr = np.asarray(values)
        return cls(float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else math.nan, len(arr))


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

    @property
    def lookahead_verdict(self):
        """The verdict from Lookahead's side (better = Lookahead better), or None when this is not a
        Lookahead-vs-inner comparison or has fewer than 2 paired seeds."""
        if not self.lookahead_vs_inner or self.verdict in (ONE_SEED, NO_SEEDS):
            return None
        if self.lookahead_vs_inner > 0 or self.verdict not in (BETTER, WORSE):
            return self.verdict
        return WORSE if self.verdict == BETTER else BETTER


def _runs(store, experiment, scale=None):
    """Finished runs of ``experiment`` (at ``scale``) whose spec is the one the experiment declares
    now: runs of an older version of a row (say, fewer epochs) stay in the store but not in reports."""
    runs = [r for r in store.runs(experiment, status="finished") if r["record"]]
    if scale is not None:
        runs = [r for r in runs if r["record"].get("scale") == scale]
    exp = get_experiment(experiment)
    specs = {s: exp.specs(s) for s in {r["record"].get("scale") for r in runs} if s in SCALES}
    current = {spec.run_id(r["seed"]) for r in runs for spec in specs.get(r["record"].get("scale"), [])
               if spec.name == r["name"]}
    return [r for r in runs if r["run_id"] in current]


def _order(experiment, names):
    """Rows in the experiment's declared order (baseline first)."""
    declared = []
    for scale in SCALES:
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
        recs = by_name[name]
        slow = [r["slow"]["accuracy"] for r in recs if r.get("slow")]
        out.append(RowSummary(
            row=name, seeds=len(recs),
            final_accuracy=Stat.of(r["final"].get("accuracy") for r in recs),
            best_accuracy=Stat.of(r.get("best_accuracy") for r in recs),
            top5=Stat.of(r["final"].get("top5") for r in recs) if any("top5" in r["final"] for r in recs) else None,
            valid_loss=Stat.of(r["final"].get("valid_loss") for r in recs),
            train_loss=Stat.of(r["final"].get("train_loss") for r in recs),
            slow_accuracy=Stat.of(slow) if slow else None,
            seconds=Stat.of(r.get("seconds") for r in recs)))
    return out


# --- the kind of a comparison, from the specs -------------------------------------------------------
_NOT_FACTORS = ("experiment", "name", "note", "scale", "optimizer", "hyper", "eval_slow_weights", "state_reset")


def _factors(spec):
    """The spec as the factors a comparison can differ in. Lookahead's own settings (its k, alpha,
    pullback, evaluation on slow weights, state reset at syncs) are one factor, the wrapper; a plain
    optimizer has none of them (``eval_slow_weights`` does nothing there)."""
    parts = optimizer_parts(spec.optimizer, spec.hyper)
    d = {k: v for k, v in spec.to_dict().items() if k not in _NOT_FACTORS}
    d["state_reset"] = "off" if spec.state_reset == "sync" else spec.state_reset  # sync: part of the wrapper
    wrapper = None
    if parts.wrapper:
        wrapper = (parts.wrapper, parts.implementation, tuple(sorted(parts.wrapper_hyper.items())),
                   bool(spec.eval_slow_weights), spec.state_reset == "sync")
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


def _lookahead_vs_inner(spec_a, spec_b):
    """+1 when ``spec_a`` is a Lookahead (ours or fastai's) around the very optimizer ``spec_b`` is,
    -1 for the reverse, else 0."""
    a, b = optimizer_parts(spec_a.optimizer, spec_a.hyper), optimizer_parts(spec_b.optimizer, spec_b.hyper)
    if a.inner != b.inner:
        return 0
    return 1 if (a.wrapper and not b.wrapper) else -1 if (b.wrapper and not a.wrapper) else 0


# --- tests ----------------------------------------------------------------------------------------
def _t_quantile(df):
    from scipy.stats import t
    return float(t.ppf(0.975, df))


def _t_p_value(mean, sd, n):
    from scipy.stats import t
    return float(2 * t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))


def holm(p_values):
    """Holm's step-down adjustment: adjusted p-values in the input order (nan stays nan and is not
    counted in the family)."""
    p = np.asarray(p_values, dtype=float)
    idx = [i for i in np.argsort(p) if not math.isnan(p[i])]
    m = len(idx)
    out = np.full(len(p), math.nan)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


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
    table = {}
    for r in _runs(store, experiment_name, scale):
        table.setdefault(r["name"], {})[r["seed"]] = r["record"]["final"].get(metric)
    partial = []
    for name, versus in _comparison_pairs(experiment, _order(experiment, table)):
        kind, differs = comparison_kind(specs[name], specs[versus], tuned_rows)
        seeds = tuple(sorted(s for s in set(table[versus]) & set(table[name])
                             if table[name][s] is not None and table[versus][s] is not None))
        diffs = tuple(float(table[name][s] - table[versus][s]) for s in seeds)
        mean = float(np.mean(diffs)) if diffs else math.nan
        low = high = p = math.nan
        if not diffs:
            verdict = NO_SEEDS
        elif len(diffs) == 1:
            verdict = ONE_SEED
        elif float(np.std(diffs)) == 0.0:  # no spread: no interval, no test
            verdict = IDENTICAL if mean == 0 else CONSTANT
        else:
            sd = float(np.std(diffs, ddof=1))
            half = _t_quantile(len(diffs) - 1) * sd / math.sqrt(len(diffs))
            low, high, p = mean - half, mean + half, _t_p_value(mean, sd, len(diffs))
            verdict = None  # decided after Holm
        partial.append(dict(row=name, versus=versus, kind=kind, differs=differs,
                            lookahead_vs_inner=_lookahead_vs_inner(specs[name], specs[versus]), seeds=seeds,
                            differences=diffs, mean=mean, low=low, high=high, p_raw=p, verdict=verdict))
    adjusted = holm([c["p_raw"] for c in partial])
    out = []
    for c, p_holm in zip(partial, adjusted):
        if c["verdict"] is None:
            c["verdict"] = (BETTER if c["mean"] > 0 else WORSE) if p_holm <= alpha else NOT_SHOWN
        out.append(Comparison(**c, p_holm=p_holm))
    return out


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
# words: every number is formatted below this line
# ================================================================================================
def _fmt(stat, pct=False, digits=4):
    if stat is None:
        return "n/a"
    if math.isnan(stat.mean):
        return "—"
    scale, unit, digits = (100.0, "%", 2) if pct else (1.0, "", digits)
    text = f"{stat.mean * scale:.{digits}f}"
    if not math.isnan(stat.std):
        text += f" ± {stat.std * scale:.{digits}f}"
    return text + unit


def _pp(value):
    return f"{value * 100:+.2f}"


def _p(value):
    return "—" if math.isnan(value) else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def summary_table(store, experiment_name, scale):
    """One row per optimizer: mean ± std over seeds of the final and best accuracy, losses, time."""
    rows = []
    for s in summarize(store, experiment_name, scale):
        row = {"optimizer": s.row, "seeds": s.seeds, "final accuracy": _fmt(s.final_accuracy, pct=True),
               "best accuracy": _fmt(s.best_accuracy, pct=True)}
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
    for c in compare(store, experiment_name, scale, metric):
        rows.append({"optimizer": c.row, "vs": c.versus, "paired seeds": len(c.seeds), "kind": c.kind,
                     "differs in": ", ".join(c.differs) or "nothing",
                     "mean difference": "—" if math.isnan(c.mean) else f"{_pp(c.mean)} pp",
                     "95% interval": _interval_text(c), "p": _p(c.p_raw), "p (Holm)": _p(c.p_holm),
                     "conclusion": c.verdict})
    return pd.DataFrame(rows)


def plot_curves(store, experiment_name, scale, path):
    """Valid accuracy and train loss per epoch: mean over seeds with a ±1 std band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experiment = get_experiment(experiment_name)
    frame = store.epochs_frame(experiment_name)
    runs = {r["run_id"] for r in _runs(store, experiment_name, scale)}
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
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _data_source(path):
    if "site-packages" in str(path):
        return "the copy embedded in scikit-learn"
    return f"`{path}`"


def plot_lr_find(curve, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(curve["lrs"], curve["losses"])
    ax.axvline(curve["valley"], color="red", linestyle="--", label=f"valley {curve['valley']:.2e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed train loss", title=f"lr_find: {curve['row']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _markdown(frame):
    if frame is None or not len(frame):
        return "_no finished runs_\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(str(row[c]).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines) + "\n"


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


def _kind_counts(comparisons):
    return ", ".join(f"{k} {sum(c.kind == k for c in comparisons)}" for k in KINDS)


def write_report(store_path, experiment_name, out_dir="reports", scales=None):
    """Write ``out_dir/EXP.md`` (+ ``EXP_<scale>.png``) from the finished runs in the store."""
    experiment = get_experiment(experiment_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ResultsStore(store_path, readonly=True) as store:
        runs = _runs(store, experiment_name)
        present = sorted({r["record"]["scale"] for r in runs}, key=SCALES.index)
        scales = [s for s in (scales or present) if s in present]
        parts = [f"# {experiment_name}: {experiment.description}\n",
                 f"Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by "
                 f"`lookahead-fastai report {experiment_name}` from `{store_path}`.\n"]
        if not scales:
            parts.append("_No finished runs in the store for this experiment yet: run "
                         f"`lookahead-fastai run {experiment_name}` first._\n")
        for scale in scales:
            scale_runs = [r for r in runs if r["record"]["scale"] == scale]
            seeds = sorted({r["seed"] for r in scale_runs})
            rec = scale_runs[0]["record"]
            dates = sorted(r["finished_at"] for r in scale_runs if r.get("finished_at"))
            envs = run_environments(scale_runs)
            parts.append(f"## Scale `{scale}`\n")
            parts.append(
                f"- **Data**: {rec['dataset']} ({rec['n_train']} train / {rec['n_valid']} valid images), "
                f"from {_data_source(rec['data'])}\n"
                f"- **Protocol**: {experiment.protocol.get(scale, '')}\n"
                f"- **Seeds**: {len(seeds)} ({', '.join(map(str, seeds))})\n"
                f"- **Runs finished**: {dates[0][:16] if dates else '?'} to {dates[-1][:16] if dates else '?'} UTC\n"
                f"- **Ran on** (from the runs' records): {' | '.join(envs)}\n")
            if scale != "full":
                parts.append(f"> Scale `{scale}` is a small-budget run on offline data. These numbers are **not** "
                             "a reproduction of the original GPU results; compare optimizers within this table "
                             "only.\n")
            parts.append("### Final metrics (mean ± std over seeds)\n")
            parts.append(_markdown(summary_table(store, experiment_name, scale)))
            comparisons = compare(store, experiment_name, scale)
            n_tests = sum(not math.isnan(c.p_raw) for c in comparisons)
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
    parts.append("## Deviations from the original\n")
    parts.append(deviations_markdown(experiment.deviations))
    if experiment.reference:
        parts.append("## Reference numbers from the original work\n")
        parts.append(experiment.reference.strip() + "\n")
    report = out_dir / f"{experiment_name}.md"
    report.write_text("\n".join(parts))
    return report


INDEX_PREAMBLE = """# Reports

Generated by `lookahead-fastai report all` from the results store. Every report states its scale, data,
seeds, date and where its runs ran, and lists how its experiment deviates from the original it reproduces.
`cpu`-scale numbers come from small CNNs/MLPs trained for a few epochs on the offline data (CIFAR-10
subset: 5,085 train / 1,017 test real images; MNIST subset); they compare optimizers **within** one table
and are **not** reproductions of the original GPU results (those are quoted in each report for context).
Where Imagenette/Imagewoof have no offline copy, the CIFAR-10 subset stands in for them and the rows say
"CIFAR-10 substitute". CIFAR-100 has no offline copy: no cpu rows exist. Only `paper_cifar` at scale `full`
is the Lookahead paper's setting (its Table 1), and only `imagenette_leaderboard` at scale `full` is the
Imagenette leaderboard's.

Each comparison has a kind, derived from the specs: *like-for-like* (one factor differs: for Lookahead
against its plain inner optimizer, only the wrapper), *tuned* (each row at settings a declared sweep
picked) or *confounded* (anything else). Within each report and scale, verdicts are Holm-adjusted: the
chance that any better/worse verdict of that table is false, where the rows do not differ, is at most 5%
(its family-wise error rate). The index below pools the reports without a further correction, so across
all of them the chance of some false verdict is larger than 5%. "No difference shown" means the seeds
cannot tell, not that there is no difference; 3 seeds give wide intervals.
"""


def write_index(store_path, out_dir="reports", scale="cpu"):
    """``out_dir/README.md``: one line per experiment report (scale, data, seeds, date, where the runs
    ran), the "Does Lookahead help?" tally over like-for-like and tuned comparisons of a Lookahead row
    with its plain inner optimizer (picked from the specs), and every comparison by verdict."""
    from .experiments import EXPERIMENTS
    out_dir = Path(out_dir)
    rows, shown, not_shown, constant, lookahead = [], [], [], [], []
    with ResultsStore(store_path, readonly=True) as store:
        for name in EXPERIMENTS:
            runs = _runs(store, name, scale)
            if not runs:
                continue
            rec = runs[0]["record"]
            seeds = sorted({r["seed"] for r in runs})
            dates = sorted(r["finished_at"] for r in runs if r.get("finished_at"))
            rows.append(f"| [{name}]({name}.md) | `{scale}` | {rec['dataset']} ({rec['n_train']} / {rec['n_valid']}) "
                        f"| {len(seeds)} | {dates[-1][:10] if dates else '?'} | {' / '.join(run_environments(runs))} |")
            for c in compare(store, name, scale):
                if c.verdict in (ONE_SEED, NO_SEEDS):
                    continue
                line = (f"- **{name}**: {c.row} vs {c.versus} ({c.kind}): {_pp(c.mean)} pp, "
                        + (f"raw 95% interval {_interval_text(c)}, Holm p {_p(c.p_holm)} over {len(c.seeds)} seeds"
                           if c.verdict in (BETTER, WORSE, NOT_SHOWN) else f"in each of {len(c.seeds)} seeds"))
                target = shown if c.verdict in (BETTER, WORSE) else not_shown if c.verdict == NOT_SHOWN else constant
                target.append(line + (f" — **{c.verdict}**" if c.verdict in (BETTER, WORSE) else f" — {c.verdict}"))
                if c.lookahead_verdict is not None:
                    lookahead.append((name, c))
    fair = [(n, c) for n, c in lookahead if c.kind in ("like-for-like", "tuned")]
    confounded = [(n, c) for n, c in lookahead if c.kind == "confounded"]
    counts = {v: sum(c.lookahead_verdict == v for _, c in fair) for v in (BETTER, WORSE, NOT_SHOWN)}
    same = len(fair) - sum(counts.values())
    by_kind = ", ".join(f"{k} {sum(c.kind == k for _, c in fair)}" for k in ("like-for-like", "tuned"))
    headline = [f"## Does Lookahead help? (scale `{scale}`)", "",
                f"Counted: the {len(fair)} like-for-like or tuned comparisons ({by_kind}) of a Lookahead row with its "
                f"plain inner optimizer, picked from the specs. Lookahead is better in {counts[BETTER]}, worse in "
                f"{counts[WORSE]}, and no difference is shown in {counts[NOT_SHOWN]} (Holm-adjusted within each "
                f"report)" + (f"; in {same} the difference is the same in every seed (no test)" if same else "")
                + f". Not counted: {len(confounded)} confounded Lookahead comparisons (another factor — lr, "
                "state reset, momentum — differs too), listed below with their kind.",
                "", ("These are short runs of small models on small data. The paper's setting is `paper_cifar` at "
                     "scale `full`, which needs a GPU." if scale != "full" else
                     "At scale `full`, only `paper_cifar` is the paper's setting; the other experiments reproduce "
                     "their own originals."), ""]
    headline += [f"- **{n}**: {c.row} vs {c.versus} ({c.kind}, differs in {', '.join(c.differs)}): "
                 f"{_pp(c.mean)} pp — " + (f"Lookahead **{c.lookahead_verdict}**" if c.lookahead_verdict in (BETTER, WORSE)
                                           else c.lookahead_verdict)
                 for n, c in fair] or ["- none at this scale"]
    text = [INDEX_PREAMBLE, *headline, "", "| report | scale | data (train / valid) | seeds | date | ran on |",
            "|---|---|---|---|---|---|", *rows, "",
            "## What these seeds show (Holm-adjusted within each report)", "", *(shown or ["- nothing"]), "",
            "## What they cannot tell (no difference shown, which is not the same as no difference)", "",
            *(not_shown or ["- nothing"]), "",
            "## Differences that are the same in every seed (no spread: no interval, no test)", "",
            *(constant or ["- none"]), ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "README.md"
    path.write_text("\n".join(text))
    return path
