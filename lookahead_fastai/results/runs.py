"""The runs a report reads: finished runs of the current specs, which of them diverged, the rows'
order and how much of the planned grid has finished. Numbers and records only: nothing formatted."""
from dataclasses import dataclass

from ..experiments import get_experiment
from ..experiments.extension import finals_reader, tuning_outcome
from ..grid_rules import diverged as _diverged
from ..grid_rules import sweeps
from ..registry.datasets import record_classes

__all__ = ["diverged", "finished_runs", "extension_of", "tuning_of", "chosen_rows", "choice_stage", "verdict_stage", "sweep_cells", "current_specs", "Completeness", "completeness", "row_order", "run_seconds",
           "epoch_curves"]


def diverged(record):
    """Whether a finished run diverged (:func:`grid_rules.diverged`): a number among its final (or
    slow-weight) metrics is NaN or infinite, or its final train loss is at or above chance (ln C for
    its dataset's C classes). Such a run is counted, never averaged."""
    return _diverged(record.get("final"), record.get("slow"), record_classes(record))


def finished_runs(store, experiment, scale=None, stage=None):
    """Finished runs of ``experiment`` (at ``scale``) whose spec is the one the experiment declares
    now: runs of an older version of a row (say, fewer epochs) stay in the store but not in reports.
    ``stage``: only the runs of that stage's seeds (``Experiment.stages`` at the run's scale)."""
    runs = [r for r in store.runs(experiment, status="finished") if r["record"]]
    if scale is not None:
        runs = [r for r in runs if r["record"].get("scale") == scale]
    exp = get_experiment(experiment)
    specs = {s: exp.specs(s) + [spec for _, spec in extension_of(exp, s, runs)]
             for s in {r["record"].get("scale") for r in runs} if s in exp.scales}
    current = {spec.run_id(r["seed"]) for r in runs for spec in specs.get(r["record"].get("scale"), [])
               if spec.name == r["name"]}
    return [r for r in runs if r["run_id"] in current
            and (stage is None or exp.stage_of(r["record"].get("scale"), r["seed"]) == stage)]


def extension_of(exp, scale, runs):
    """``[(SweepCell, RunSpec)]``: the points ``exp.lr_extension`` added to its lr sweep at ``scale``,
    as a sweep works them out (experiments/extension.py), from ``runs`` (the store's finished runs,
    each row's final validation accuracies over the seeds that choose: the tuning seeds with stages,
    else every seed found)."""
    if exp.lr_extension is None:
        return []
    return tuning_of(exp, scale, runs).added


def tuning_of(exp, scale, runs):
    """The :class:`~..experiments.extension.TuningOutcome` of ``exp``'s lr sweep at ``scale`` from
    ``runs`` (the store's finished runs): the points added and each settled family's chosen row, read
    as the sweep reads them (:func:`~..experiments.extension.finals_reader`) on the seeds that choose:
    the tuning seeds with stages, else every seed found at that scale."""
    runs = [r for r in runs if r["record"] and r["record"].get("scale") == scale]
    stages = exp.stages.get(scale)
    seeds = list(stages.tuning) if stages else sorted({r["seed"] for r in runs})
    return tuning_outcome(exp, scale, finals_reader({r["run_id"]: r for r in runs}, seeds, record_classes))


def chosen_rows(experiment, scale, runs):
    """``{(data, family label): row}``: each family's chosen row, where its tuning has settled (every
    tuning run finished, no point left to add), from ``runs`` (the store's finished runs)."""
    exp = get_experiment(experiment)
    if exp.lr_sweep is None:
        return {}
    return {key: chosen[0].row for key, chosen in tuning_of(exp, scale, runs).chosen.items() if chosen is not None}


def choice_stage(experiment, scale):
    """The stage whose runs make the choices at ``scale``: "tuning" with stages, else None (all runs)."""
    return "tuning" if get_experiment(experiment).stages.get(scale) else None


def verdict_stage(experiment, scale):
    """The stage whose runs give the verdicts at ``scale``: "confirmation" with stages, else None (all runs)."""
    return "confirmation" if get_experiment(experiment).stages.get(scale) else None


def _finished(store, experiment):
    return [r for r in store.runs(experiment, status="finished") if r["record"]]


def sweep_cells(store, experiment, scale):
    """The lr sweep's cells at ``scale`` (``Experiment.lr_sweep``) and, after them, those its
    ``lr_extension`` added from the store's runs."""
    exp = get_experiment(experiment)
    return list(exp.lr_sweep(scale)) + [cell for cell, _ in extension_of(exp, scale, _finished(store, experiment))]


def current_specs(store, experiment, scale):
    """``{row: RunSpec}`` at ``scale``: the declared specs and the lr_extension's, from the store's runs."""
    exp = get_experiment(experiment)
    extra = [spec for _, spec in extension_of(exp, scale, _finished(store, experiment))]
    return {s.name: s for s in exp.specs(scale) + extra}


@dataclass(frozen=True)
class Completeness:
    """How much of an experiment's planned grid (its rows × seeds 0..n-1: the experiment's default
    seeds, or more when some row ran more) has finished (in words: :func:`.wording.completeness_text`)."""
    done: int
    planned: int
    rows: int
    seeds: int
    short: tuple  # (row, seeds finished) for each row with fewer than ``seeds``
    confirming: int = 0  # with stages: rows confirmed (``seeds`` are then the tuning seeds)
    confirmation_seeds: int = 0

    @property
    def complete(self):
        return self.done >= self.planned


def completeness(experiment_name, scale, runs):
    """:class:`Completeness` of ``runs`` (finished, current-spec) against the default grid at ``scale``
    (with stages: every row on the tuning seeds, the lr_extension's points included, and one chosen
    row per family of the sweep on the confirmation seeds)."""
    exp = get_experiment(experiment_name)
    stages = exp.stages.get(scale)
    if stages:
        return _staged_completeness(exp, scale, runs, stages)
    names = [s.name for s in exp.specs(scale)] + [spec.name for _, spec in extension_of(exp, scale, runs)]
    n = max([exp.default_seeds.get(scale, 1)] + [r["seed"] + 1 for r in runs if r["name"] in names])
    have = {name: {r["seed"] for r in runs if r["name"] == name} for name in names}
    short = tuple((name, len(have[name])) for name in names if len(have[name]) < n)
    return Completeness(sum(map(len, have.values())), n * len(names), len(names), n, short)


def _staged_completeness(exp, scale, runs, stages):
    outcome = tuning_of(exp, scale, runs) if exp.lr_sweep else None
    names = [s.name for s in exp.specs(scale)] + ([spec.name for _, spec in outcome.added] if outcome else [])
    tuning = {name: {r["seed"] for r in runs if r["name"] == name and r["seed"] in stages.tuning} for name in names}
    if outcome is None:  # nothing is chosen: every row is confirmed
        confirming = len(names)
    else:
        confirming = len(sweeps(exp.lr_sweep(scale))) - sum(1 for chosen in outcome.chosen.values() if chosen is None)
    confirmed = sum(1 for r in runs if r["seed"] in stages.confirmation)
    short = tuple((name, len(tuning[name])) for name in names if len(tuning[name]) < len(stages.tuning))
    return Completeness(sum(map(len, tuning.values())) + confirmed,
                        len(names) * len(stages.tuning) + confirming * len(stages.confirmation),
                        len(names), len(stages.tuning), short, confirming, len(stages.confirmation))


def row_order(experiment, names):
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


def run_seconds(runs):
    """Each finished run's training wall time in seconds (its record's ``seconds``), where recorded."""
    return [float(r["record"]["seconds"]) for r in runs if r["record"].get("seconds") is not None]


def epoch_curves(store, experiment_name, scale, metrics=("accuracy", "train_loss")):
    """Per row (in the experiment's order), per metric of ``metrics`` it has: (epochs from 1, mean over
    seeds, std over seeds with 0 where undefined), from the per-epoch records of the runs that trained
    (a diverged run is never averaged)."""
    experiment = get_experiment(experiment_name)
    frame = store.epochs_frame(experiment_name)
    runs = {r["run_id"] for r in finished_runs(store, experiment_name, scale, stage=verdict_stage(experiment_name, scale))
            if not diverged(r["record"])}  # with stages, the confirmation runs (those the summary table reads)
    frame = frame[frame["run_id"].isin(runs)] if len(frame) else frame
    curves = {}
    if len(frame):
        for name in row_order(experiment, set(frame["name"])):
            sub = frame[frame["name"] == name]
            curves[name] = {}
            for col in metrics:
                if col in sub:
                    stats = sub.groupby("epoch")[col].agg(["mean", "std"]).fillna(0.0)
                    curves[name][col] = (stats.index.to_numpy() + 1, stats["mean"], stats["std"])
    return curves
