"""One experiment's report, ``reports/EXP.md`` (+ its figures), from the finished runs in the store:
the tables (:func:`summary_table`, :func:`paired_differences`: formatted here, at the edge, from the
numbers of :mod:`.compare`), the learning curves, and for an experiment that declares an lr sweep its
lr-grid sections (:mod:`.lr_report`). Everything here reads finished runs; nothing trains."""
import datetime as dt
import json
import math
from pathlib import Path

import pandas as pd

from ..experiments import SCALES, get_experiment, use_experiment
from ..experiments.deviations import deviations_markdown
from ..experiments.sources import sources_markdown
from ..store import ResultsStore
from ..store.paths import lr_find_path
from . import plots, text as words
from .compare import compare, n_tested, summarize, verdict_metric
from .lr_report import lr_grid_sections
from .plots import plot_lr_find
from .runs import completeness, epoch_curves, finished_runs
from .wording import (KINDS_TEXT, SOURCES_TEXT, collapse_columns, completeness_text, compute_text, data_source,
                      incomplete_note, integrity_text, interval_text, kind_counts, run_environments, stats_text)

__all__ = ["summary_table", "summary_frame", "paired_differences", "comparison_frame", "plot_curves", "write_report"]

_fmt, _pp, _p, _markdown = words.stat, words.pp, words.p_value, words.markdown


def summary_table(store, experiment_name, scale):
    """One row per optimizer: mean ± std over seeds of the final and best accuracy, losses, time
    (:func:`summary_frame` of :func:`.compare.summarize`)."""
    return summary_frame(summarize(store, experiment_name, scale))


def summary_frame(summaries):
    """The :class:`.compare.RowSummary` numbers as the summary table, formatted here (at the edge): one
    row per optimizer, mean ± std over seeds; a consumer that needs a number reads the summaries."""
    rows = []
    for s in summaries:
        row = {"optimizer": s.row, "seeds": s.seeds}
        if any(x.diverged for x in summaries):
            row["diverged"] = s.diverged
        three_splits = any(x.test_accuracy is not None for x in summaries)
        if three_splits:  # validation (what every choice reads) and test (scored once at the end), labelled
            row["final accuracy (validation)"] = _fmt(s.final_accuracy, pct=True)
            row["test accuracy"] = _fmt(s.test_accuracy, pct=True) if s.test_accuracy is not None else "—"
        else:
            row["final accuracy"] = _fmt(s.final_accuracy, pct=True)
        row["best accuracy"] = _fmt(s.best_accuracy, pct=True)
        if s.top5 is not None:
            row["top-5"] = _fmt(s.top5, pct=True)
        row.update({"valid loss": _fmt(s.valid_loss), "train loss": _fmt(s.train_loss),
                    "slow-weights accuracy": _fmt(s.slow_accuracy, pct=True), "seconds": _fmt(s.seconds, digits=1)})
        rows.append(row)
    return pd.DataFrame(rows)


def paired_differences(store, experiment_name, scale, metric=None):
    """The comparisons of :func:`.compare.compare` as a table (:func:`comparison_frame`)."""
    return comparison_frame(compare(store, experiment_name, scale, metric))


def comparison_frame(comparisons):
    """:class:`.compare.Comparison` numbers formatted here (at the edge): kind, what differs, mean
    difference, the raw 95% interval and p-value, the Holm-adjusted p-value and the verdict it gives
    (``conclusion``)."""
    rows = []
    collapses = any(c.collapsed[0] or c.collapsed[2] for c in comparisons)
    for c in comparisons:
        row = {"optimizer": c.row, "vs": c.versus, "paired seeds": len(c.seeds), "kind": c.kind,
               "differs in": ", ".join(c.differs) or "nothing",
               "mean difference": "—" if math.isnan(c.mean) else f"{_pp(c.mean)} pp",
               "95% interval": interval_text(c), "p": _p(c.p_raw), "p (Holm)": _p(c.p_holm),
               "conclusion": c.verdict}
        if collapses:
            row.update(collapse_columns(c))
        rows.append(row)
    return pd.DataFrame(rows)


def plot_curves(store, experiment_name, scale, path):
    """Valid accuracy and train loss per epoch: mean over seeds with a ±1 std band
    (:func:`.runs.epoch_curves` drawn by :func:`.plots.plot_curves`)."""
    return plots.plot_curves(epoch_curves(store, experiment_name, scale), path, f"{experiment_name} — scale {scale}")


def _scale_header(experiment, experiment_name, scale, scale_runs, imported):
    """A scale's heading and what its runs were (data, protocol, seeds, completeness, integrity, dates,
    compute, machines), with the notes on an incomplete grid and on a scale short of ``full``."""
    seeds = sorted({r["seed"] for r in scale_runs})
    dates = sorted(r["finished_at"] for r in scale_runs if r.get("finished_at"))
    envs = run_environments(scale_runs)
    done = completeness(experiment_name, scale, scale_runs)
    parts = [f"## Scale `{scale}`\n",
             "- **Data**: " + "; ".join(dict.fromkeys(  # every dataset of the scale, in run order
                 _data_text(r["record"]) for r in scale_runs)) + "\n"
             f"- **Protocol**: {experiment.protocol.get(scale, '')}\n"
             f"- **Seeds**: {_seeds_text(experiment, scale, seeds)}\n"
             f"- **Runs**: {completeness_text(done)}\n"
             + integrity_text(scale_runs, imported) +
             f"- **Runs finished**: {dates[0][:16] if dates else '?'} to {dates[-1][:16] if dates else '?'} UTC\n"
             f"- **Compute**: {compute_text(scale_runs)}\n"
             f"- **Ran on** (from the runs' records): {' | '.join(envs)}\n"]
    if not done.complete:
        parts.append(incomplete_note(done))
    if scale != "full":
        parts.append(f"> Scale `{scale}` is a small-budget run on offline data. These numbers are **not** "
                     "a reproduction of the original GPU results; compare optimizers within this table "
                     "only.\n")
    return parts


def _seeds_text(experiment, scale, seeds):
    """The seeds of a scale's runs; with stages, each stage's and what it does."""
    stages = experiment.stages.get(scale)
    if not stages:
        return f"{len(seeds)} ({', '.join(map(str, seeds))})"
    return (f"two stages: tuning {', '.join(map(str, stages.tuning))} (every row of the grid; these choose), "
            f"confirmation {', '.join(map(str, stages.confirmation))} (each family's chosen row, seeds never used in "
            "tuning; these give the verdicts)")


def _data_text(record):
    """A run's data in words: its splits' sizes (three splits: the held-out validation split's size and
    seed, and that the test split is scored once and never chooses), and where the images came from."""
    split = record.get("holdout")
    if split:
        sizes = (f"{record['n_train']} train / {record['n_valid']} validation, held out of the "
                 f"{split['of']} training images (class-stratified, seed {split['seed']}, the same in every run) / "
                 f"{record.get('n_test')} test images, scored once at the end and never used to choose")
    else:
        sizes = f"{record['n_train']} train / {record['n_valid']} valid images"
    return f"{record['dataset']} ({sizes}), from {data_source(record['data'])}"


def _scale_results(store, store_path, experiment, experiment_name, scale, out_dir):
    """A scale's results without an lr grid: the final metrics, the paired differences, the learning
    curves and, when the experiment names a row for it and the curve was saved, fastai's ``lr_find``."""
    parts = ["### Final metrics (mean ± std over seeds)\n", _markdown(summary_table(store, experiment_name, scale))]
    comparisons = compare(store, experiment_name, scale, metric="accuracy")  # the heading's: final (validation)
    n_tests = n_tested(comparisons)
    parts.append("\n### Paired differences in final accuracy\n")
    parts.append(KINDS_TEXT + " Here: " + kind_counts(comparisons) + ".\n\n" + stats_text(n_tests) + "\n\n")
    parts.append(_markdown(comparison_frame(comparisons)))
    if any("test_accuracy" in r["record"]["final"] for r in finished_runs(store, experiment_name, scale)):
        parts.append("\n### Paired differences in test accuracy\n")
        parts.append("Three splits: the accuracies above are on the validation split held out of the training "
                     "images, which every choice reads; these are the same comparisons on the test split, scored "
                     "once after training and never used to choose."
                     + (" With stages these, on the confirmation seeds, are the verdicts."
                        if verdict_metric(experiment_name, scale) == "test_accuracy" else "") + "\n\n")
        parts.append(_markdown(paired_differences(store, experiment_name, scale, metric="test_accuracy")))
    png = plot_curves(store, experiment_name, scale, out_dir / f"{experiment_name}_{scale}.png")
    parts.append(f"\n![curves]({png.name})\n")
    curve_file = lr_find_path(store_path, experiment_name, scale)
    if experiment.lr_find_row and curve_file.exists():
        curve = json.loads(curve_file.read_text())
        lr_png = plot_lr_find(curve, out_dir / f"{experiment_name}_{scale}_lr_find.png")
        parts.append(f"\nfastai `lr_find` on `{curve['row']}` (seed 0): valley suggestion "
                     f"{words.scientific(curve['valley'])}; the row was trained at its protocol lr.\n\n"
                     f"![lr_find]({lr_png.name})\n")
    return parts


def _declared_sections(experiment):
    """What the experiment declares, after the results: its swept rows, the sources of its ``full``
    protocol, its deviations from the original and the original's reference numbers."""
    parts = []
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
    return parts


def write_report(store_path, experiment_name, out_dir="reports", scales=None, source=None):
    """Write ``out_dir/EXP.md`` (+ ``EXP_<scale>.png``) from the finished runs in the store; ``source``
    names where they came from in the report's first line (default: the store). ``experiment_name``:
    a name, or an :class:`Experiment` (a user's own)."""
    experiment_name = use_experiment(experiment_name)
    experiment = get_experiment(experiment_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ResultsStore(store_path, readonly=True) as store:
        runs = finished_runs(store, experiment_name)
        imported = store.imported(experiment_name)  # shown when the report is of a store, not of a file (source)
        present = sorted({r["record"]["scale"] for r in runs}, key=SCALES.index)
        scales = [s for s in (scales or present) if s in present]
        parts = [f"# {experiment_name}: {experiment.description}\n",
                 f"Generated {words.utc_minute(dt.datetime.now(dt.timezone.utc))} UTC by "
                 f"`lookahead-fastai report {experiment_name}` from `{source or store_path}`.\n"]
        if not scales:
            parts.append("_No finished runs in the store for this experiment yet: run "
                         f"`lookahead-fastai run {experiment_name}` first._\n")
        for scale in scales:
            scale_runs = [r for r in runs if r["record"]["scale"] == scale]
            parts += _scale_header(experiment, experiment_name, scale, scale_runs, imported if source is None else {})
            if experiment.lr_sweep is not None:  # a declared lr grid: its own sections, per dataset and lr
                parts += lr_grid_sections(store, experiment_name, scale, out_dir)
            else:
                parts += _scale_results(store, store_path, experiment, experiment_name, scale, out_dir)
    parts += _declared_sections(experiment)
    report = out_dir / f"{experiment_name}.md"
    report.write_text("\n".join(parts))
    return report
