"""What the notebooks show, so that the notebooks themselves hold no logic: a sweep with a live
fastprogress bar (:func:`run_grid`), the report's tables as styled DataFrames and its plots inline
(:func:`show_results`), an experiment's deviations from its original (:func:`show_deviations`).

Importing this module inside IPython/Jupyter also makes the errors a user can fix from the
parameters cell (a dataset that is missing, a bad scale or seed count) show as one line instead of a
traceback (:func:`register_one_line_errors`)."""
import dataclasses
import json
import math
from contextlib import contextmanager
from pathlib import Path

from .experiments import SpecError, get_experiment, use_experiment
from .registry.datasets import DatasetUnavailable
from .results.lr_report import lr_grid_sections
from .results.plots import FigureLink, plot_lr_find
from .results.compare import summarize
from .results.report import paired_differences, plot_curves, summary_frame
from .results.runs import completeness, finished_runs
from .results.wording import incomplete_note
from .runner import DEFAULT_STORE
from .store import ResultsStore, store_files_dir
from .sweep import lr_find_path

__all__ = ["KERNEL_NAME", "KERNEL_DISPLAY_NAME", "ONE_LINE_ERRORS", "run_grid", "show_results", "show_deviations",
           "style_summary", "style_pairs", "register_one_line_errors"]

# the Jupyter kernel `make lab` registers for this project's venv; the notebooks' kernelspec names it
KERNEL_NAME = "lookahead-fastai"
KERNEL_DISPLAY_NAME = "Python (lookahead-fastai)"

# errors whose message says all (what is wrong, what to do): one line in a notebook, no traceback
ONE_LINE_ERRORS = (DatasetUnavailable, SpecError)

RUN_TABLE_HEADERS = ["run", "row", "seed", "final accuracy", "seconds"]


# ------------------------------------------------------------------------------------------------
# running a grid with a progress bar
# ------------------------------------------------------------------------------------------------
def _progress_callback(bar, label):
    """A fastai callback drawing the training batches of one run as a child bar of ``bar``."""
    from fastai.callback.core import Callback
    from fastprogress.fastprogress import progress_bar

    class GridRunProgress(Callback):
        order = 90

        def before_fit(self):
            self.batches_done = 0
            self.child = progress_bar(range(max(1, self.n_epoch * len(self.dls.train))), parent=bar)
            self.child.comment = label  # (the console bar takes no comment= argument)
            self.child.update(0)

        def after_batch(self):
            if self.training:
                self.batches_done += 1
                self.child.update(self.batches_done)

    return GridRunProgress()


def run_grid(experiment, scale=None, seeds=None, store=DEFAULT_STORE, data_dir=None, wandb="disabled",
             **options):
    """:func:`~lookahead_fastai.sweep.run_experiment` with what a notebook should show while it runs:
    a fastprogress bar over the grid's runs, a child bar over the batches of the run in training, and
    a table of the runs finished so far (runs already in the store are not trained again). Returns
    the records in grid order. ``experiment``: a name or an Experiment of your own; ``scale`` None:
    its first. ``options`` go to ``run_experiment`` (``only``, ``device``, ...)."""
    from fastprogress.fastprogress import master_bar

    from .sweep import plan, run_experiment

    experiment = use_experiment(experiment)  # a name, or an Experiment of your own
    scale = get_experiment(experiment).scales[0] if scale is None else scale
    jobs = plan(experiment, scale, seeds, options.get("only"), store, stage=options.get("stage"))
    n_runs = len(jobs) + jobs.to_come  # with stages: the confirmation runs tuning has not named yet
    bar = master_bar(range(n_runs))
    bar.update(0)
    bar.write(RUN_TABLE_HEADERS, table=True)
    done = [0]

    def finished(job, accuracy, seconds):
        done[0] += 1
        bar.write([str(done[0]), job.spec.name, str(job.seed), accuracy, seconds], table=True)
        bar.main_bar.comment = f"{job.spec.name} seed {job.seed}"
        bar.update(done[0])

    def on_record(i, job, record):
        accuracy = record["final"].get("accuracy")
        finished(job, "—" if accuracy is None else f"{accuracy:.2%}", f"{record.get('seconds') or 0:.1f}")

    def on_skip(i, job, reason):  # another process is training it (a shared store)
        finished(job, "skipped: another process holds it", "—")

    def callbacks(spec, seed):
        return [_progress_callback(bar, f"{spec.name} seed {seed}")]

    local = options.get("executor", "local") == "local"  # the child bar lives in this process only
    return run_experiment(experiment, scale, seeds, store=store, data_dir=data_dir, wandb=wandb,
                          on_record=on_record, on_skip=on_skip, extra_cbs=callbacks if local else (), **options)


# ------------------------------------------------------------------------------------------------
# tables and plots
# ------------------------------------------------------------------------------------------------
def style_summary(table, baseline=None, n_seeds=None, scores=None):
    """The summary table as a Styler: the row with the best mean final accuracy (``scores``: one number
    per row, from :func:`.results.compare.summarize`, never read back from the formatted cells) in bold
    on green, the baseline row in italics, no index."""
    finite = [(score, i) for i, score in enumerate(scores or []) if score is not None and not math.isnan(score)]
    best = table.index[max(finite, key=lambda f: f[0])[1]] if finite else None  # the first of equal bests

    def row_style(row):
        css = []
        if row.name == best:
            css.append("font-weight: bold; background-color: #d9f2d9")
        if baseline is not None and row.get("optimizer") == baseline:
            css.append("font-style: italic")
        return ["; ".join(css)] * len(row)

    caption = "mean ± std over seeds" + (f" ({n_seeds})" if n_seeds else "")
    if baseline:
        caption += f"; baseline (italics): {baseline}; best final accuracy in bold"
    return (table.style.apply(row_style, axis=1).hide(axis="index").set_caption(caption)
            .set_table_styles([{"selector": "caption", "props": "caption-side: bottom; font-size: 0.9em"},
                               {"selector": "td", "props": "white-space: nowrap"}]))


def style_pairs(pairs):
    """The paired differences as a Styler: a verdict the interval supports in green (better) or red
    (worse)."""
    colours = {"better": "color: #1a7f37; font-weight: bold", "worse": "color: #cf222e; font-weight: bold"}
    styler = pairs.style.hide(axis="index").set_caption("paired by seed; 95% Student-t interval of the mean")
    if "conclusion" in pairs:
        styler = styler.map(lambda v: colours.get(v, ""), subset=["conclusion"])
    return styler


@contextmanager
def _keep_matplotlib_backend():
    """results/report.py switches matplotlib to Agg to write its PNGs; in a notebook, keep the inline
    backend afterwards so that later plots (``learn.lr_find()``...) still show."""
    import matplotlib
    backend = matplotlib.get_backend()
    try:
        yield
    finally:
        if matplotlib.get_backend() != backend:
            shell = _shell()
            if shell is not None and "inline" in backend:  # matplotlib.use() alone shows no more plots
                shell.enable_matplotlib("inline")
            else:
                matplotlib.use(backend)


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _deviation_rows(deviations):
    """Rows (dicts) from what an experiment declares as its deviations: a DataFrame, or a sequence of
    dataclasses, named tuples, dicts, (what, original, here, why) tuples or strings; or a dict."""
    import pandas as pd
    if isinstance(deviations, pd.DataFrame):
        return deviations.to_dict("records")
    if isinstance(deviations, dict):
        return [{"what": k, **(v if isinstance(v, dict) else {"here": v})} for k, v in deviations.items()]
    rows = []
    for item in deviations:
        if hasattr(item, "as_dict"):  # experiments.deviations.Deviation
            rows.append(dict(item.as_dict()))
        elif dataclasses.is_dataclass(item):
            rows.append(dataclasses.asdict(item))
        elif hasattr(item, "_asdict"):
            rows.append(dict(item._asdict()))
        elif isinstance(item, dict):
            rows.append(dict(item))
        elif isinstance(item, (list, tuple)):
            rows.append(dict(zip(("what", "original", "here", "why"), item)))
        else:
            rows.append({"what": str(item)})
    return rows


def show_deviations(experiment):
    """Display the experiment's deviations from the original it reproduces (``Experiment.deviations``:
    what, original, here, why), as a table. Shows nothing, and returns None, for an experiment that
    declares none. Returns the table."""
    import pandas as pd
    from IPython.display import Markdown, display

    deviations = getattr(get_experiment(experiment), "deviations", None)
    if deviations is None or len(deviations) == 0:
        return None
    if isinstance(deviations, str):
        display(Markdown("#### Deviations from the original\n" + deviations))
        return deviations
    frame = pd.DataFrame(_deviation_rows(deviations))
    display(Markdown("#### Deviations from the original"))
    display(frame.style.hide(axis="index").set_properties(**{"text-align": "left", "white-space": "pre-wrap"})
            .set_table_styles([{"selector": "th", "props": "text-align: left"}]))
    return frame


def _show_markdown_with_figures(parts, figures_dir):
    """Display a report's markdown parts; a figure part (:class:`.results.plots.FigureLink`) becomes the
    figure itself (its markdown link would resolve against the notebook's folder, not ``figures_dir``)."""
    from IPython.display import Image, Markdown, display
    for part in parts:
        if isinstance(part, FigureLink):
            display(Image(filename=str(Path(figures_dir) / part.name)))
        elif part.strip():
            display(Markdown(part))


def show_results(experiment, scale=None, store=DEFAULT_STORE, figures_dir=None):
    """Display (in Jupyter) the summary table and the paired differences as styled tables, the
    learning curves (mean ± std over seeds) and, where the experiment has one, the lr_find sweep,
    inline; then the experiment's deviations and reference numbers. Returns the two tables (plain
    DataFrames)."""
    from IPython.display import Image, Markdown, display

    experiment = use_experiment(experiment)  # a name, or an Experiment of your own
    exp = get_experiment(experiment)
    scale = exp.scales[0] if scale is None else scale
    figures_dir = Path(figures_dir or store_files_dir(store) / "figures")
    figures_dir.mkdir(parents=True, exist_ok=True)
    with ResultsStore(store, readonly=True) as db, _keep_matplotlib_backend():
        summaries = summarize(db, experiment, scale)
        table = summary_frame(summaries)
        pairs = paired_differences(db, experiment, scale)
        seeds = sorted({s.seeds for s in summaries})
        display(Markdown(f"### {experiment} at scale `{scale}`: {exp.protocol.get(scale, '')}"))
        done = completeness(experiment, scale, finished_runs(db, experiment, scale))
        if not done.complete:  # an interrupted grid, shown as far as it got: say so, as the report does
            display(Markdown(incomplete_note(done)))
        display(style_summary(table, exp.baseline, "/".join(map(str, seeds)) or None,
                              [s.final_accuracy.mean for s in summaries]))
        display(Markdown("Paired differences in final accuracy (95% Student-t interval over seeds):"))
        display(style_pairs(pairs))
        if exp.lr_sweep is not None:  # a declared lr grid: the report's own sections, accuracy against lr per dataset
            _show_markdown_with_figures(lr_grid_sections(db, experiment, scale, figures_dir), figures_dir)
        else:
            display(Image(filename=str(plot_curves(db, experiment, scale, figures_dir / f"{experiment}_{scale}.png"))))
        curve_file = lr_find_path(store, experiment, scale)  # written by the sweep
        if exp.lr_find_row and curve_file.exists():
            curve = json.loads(curve_file.read_text())
            display(Image(filename=str(plot_lr_find(curve, figures_dir / f"{experiment}_{scale}_lr_find.png"))))
    show_deviations(experiment)
    if exp.reference:
        display(Markdown("#### Reference numbers from the original work\n" + exp.reference))
    return table, pairs


# ------------------------------------------------------------------------------------------------
# one-line errors
# ------------------------------------------------------------------------------------------------
def _one_line_error(shell, etype, value, tb, tb_offset=None):
    """IPython custom exception handler: the error as one line (shown as the cell's error output;
    the cell still fails, so "Run All" stops there)."""
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {' '.join(str(value).split())}"]
    shell._showtraceback(etype, value, stb)
    return stb


def register_one_line_errors(shell=None):
    """In IPython/Jupyter: show :data:`ONE_LINE_ERRORS` as one line. Returns whether a shell was
    found. Called when this module is imported."""
    shell = shell or _shell()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    shell.set_custom_exc(ONE_LINE_ERRORS, _one_line_error)
    return True


register_one_line_errors()
