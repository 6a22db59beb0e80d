"""Run an experiment's grid (specs x seeds) through ``fit_and_record``: the one loop the CLI and the
notebooks share. Finished runs are skipped, so a sweep can be stopped and started again.

A sweep opens its store once, for its plan and its runs. The runner (fastai's Learner, callbacks) is
imported where a run trains, not here (the experiments' registry does load torch and fastai's data
types); ``DEFAULT_STORE`` and ``lr_find_path`` come from ``store.paths`` (stdlib only) and stay
importable from here."""
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .experiments import SCALES, SpecError, get_experiment, use_experiment
from .experiments.extension import finals_reader, tuning_outcome
from .grid_rules import sweeps
from .registry.datasets import record_classes
from .registry.user import check_user_code
from .store import opened
from .store.paths import DEFAULT_STORE, lr_find_path

__all__ = ["Job", "Grid", "Planned", "STAGES", "plan", "run_experiment", "lr_find_path", "DEFAULT_STORE"]


@dataclass
class Job:
    spec: object
    seed: int
    finished: bool  # already finished in the store (at the plan, or by another process when this sweep got to it)
    imported: bool = False  # finished by ``store import`` (its record came from a file, not from training here)
    stage: str | None = None  # "tuning" / "confirmation" for an experiment with stages (Experiment.stages)


STAGES = ("tuning", "confirmation")


@dataclass(frozen=True)
class Grid:
    """What a sweep plans from: the experiment's name and scale, its declared specs, the seeds of
    each stage (``confirmation`` empty without stages), ``only`` those rows (None: all)."""
    name: str
    scale: str
    specs: list
    tuning: tuple
    confirmation: tuple
    only: tuple | None = None


def plan(experiment, scale=None, seeds=None, only=None, store=DEFAULT_STORE, stage=None):
    """The runs of ``experiment`` (a name or an :class:`Experiment`) at ``scale`` that the store's
    state calls for now: one Job per row x seed (seeds 0..N-1, or each declared stage's seeds), then
    the points ``lr_extension`` adds and, with stages, each family's chosen row on the confirmation
    seeds, as far as finished runs decide them; ``stage``: that stage's runs only. ``scale`` None:
    the experiment's first (smoke for the built-in ones). ``store``: a path (opened and closed here)
    or an open :class:`ResultsStore` (left open)."""
    grid = _grid(experiment, scale, seeds, only)
    with opened(store) as db:
        return _planned(db, grid, stage)


class Planned(list):
    """The Jobs of a :func:`plan`, and ``to_come``: the confirmation runs it cannot name yet (with stages
    and an lr sweep, one chosen row per family whose tuning has not settled, on each confirmation seed;
    0 for a plan of the tuning stage or of ``only`` some rows), so a progress bar's total is the study's,
    before any lr_extension point."""
    to_come = 0


def _grid(experiment, scale, seeds, only):
    """The experiment's :class:`Grid` at ``scale``, the user's own callables checked: all before the
    store is opened."""
    exp = get_experiment(experiment)
    scale = exp.scales[0] if scale is None else scale  # a user's experiment of one scale needs none named
    if scale not in SCALES:
        raise SpecError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    specs = exp.specs(scale)
    check_user_code(specs)  # a user's own callables: imported, called and checked before the store is opened
    if only:
        names = [s.name for s in specs]
        unknown = [n for n in only if n not in names]
        if unknown:
            raise SpecError(f"--only: {', '.join(unknown)} not in {exp.name}; rows are {', '.join(names)}")
    stages = exp.stages.get(scale)
    if stages is not None:
        if seeds:
            raise SpecError(f"{exp.name} declares its seeds at scale {scale} (tuning {_seed_text(stages.tuning)}; "
                            f"confirmation {_seed_text(stages.confirmation)}): run a stage with --stage, not --seeds")
        return Grid(exp.name, scale, specs, stages.tuning, stages.confirmation, tuple(only) if only else None)
    n_seeds = seeds or exp.default_seeds.get(scale, 1)
    if n_seeds < 1:
        raise SpecError(f"seeds must be at least 1, got {n_seeds}")
    return Grid(exp.name, scale, specs, tuple(range(n_seeds)), (), tuple(only) if only else None)


def _seed_text(seeds):
    return ", ".join(map(str, seeds))


def _key(job):
    return job.spec.run_id(job.seed)


def _planned(db, grid, stage=None):
    """Every Job the store's state calls for now (see :func:`plan`) as a :class:`Planned`, in order: the
    declared rows on the tuning seeds, lr_extension's points, then the confirmation runs, each block seed
    by seed (every row's first seed before any row's second, so an interrupted sweep leaves whole seeds)."""
    if stage is not None and stage not in STAGES:
        raise SpecError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    exp = get_experiment(grid.name)
    added, confirmed, undecided, finished = [], grid.specs if grid.confirmation else [], 0, None
    if exp.lr_sweep is not None and grid.specs:
        runs = db.runs(grid.name, status="finished")  # read once: the tuning outcome and which jobs are done
        finished = {r["run_id"] for r in runs}
        outcome = tuning_outcome(exp, grid.scale, finals_reader({r["run_id"]: r for r in runs if r["record"]},
                                                                grid.tuning, record_classes))
        added = [spec for _, spec in outcome.added]
        if grid.confirmation:  # the chosen row of each family whose tuning is settled, on the fresh seeds
            confirmed = [chosen[1] for chosen in outcome.chosen.values() if chosen is not None]
            undecided = len(sweeps(exp.lr_sweep(grid.scale))) - len(outcome.chosen)
    jobs, imported = Planned(), db.imported(grid.name)
    for specs, seeds in ((grid.specs, grid.tuning), (added, grid.tuning), (confirmed, grid.confirmation)):
        for seed in seeds:
            job_stage = exp.stage_of(grid.scale, seed)
            if stage is not None and job_stage != stage:
                continue
            for spec in specs:
                if grid.only and spec.name not in grid.only:
                    continue
                run_id = spec.run_id(seed)
                done = run_id in finished if finished is not None else db.is_finished(run_id)
                jobs.append(Job(spec, seed, done, run_id in imported, job_stage))
    jobs.to_come = 0 if grid.only or stage == "tuning" else undecided * len(grid.confirmation)
    return jobs


def run_experiment(experiment, scale=None, seeds=None, only=None, store=DEFAULT_STORE, data_dir=None,
                   device=None, wandb="disabled", progress=False, on_record=None,
                   # --- executors (see executors.py) ---
                   executor="local", address=None, gpus_per_run=None, cpus_per_run=None, extra_cbs=(),
                   on_error=None, on_skip=None, distributed=False, num_workers=None, stage=None):
    """Run every pending run of the grid; returns the records in grid order. ``on_record(i, job,
    record)`` is called after each run (the CLI prints a line there).

    ``executor``: ``"local"`` (this process, one run after another) or ``"ray"`` (one Ray task per
    run: ``address`` of the cluster, None for a local instance; ``gpus_per_run``, ``cpus_per_run``),
    or an executor object. With Ray, runs that fail are marked failed, the others go on,
    ``on_error(i, job, error)`` is called for each, and :class:`~.executors.RunsFailed` is raised
    at the end. ``extra_cbs``: fastai callbacks for every run, or ``f(spec, seed) -> callbacks``.
    ``distributed``: local executor in a torchrun / accelerate launch, every run DDP over its
    processes (see distributed.py). ``on_skip(i, job, reason)``: a run another live process is
    training (several sweeps may share one store), ``reason`` a :class:`~.lifecycle.RunHeld` (its text
    says it in words, its fields say who holds the run); its record is None. ``num_workers``: loader
    worker processes of the PIL data path (None: one per core available). ``stage``: only that stage's runs
    ("tuning" or "confirmation"; an experiment with ``stages``), see :func:`plan`."""
    from fastai.torch_core import rank_distrib

    from .executors import RunsFailed, make_executor
    runner = make_executor(executor, address=address, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run)
    experiment = use_experiment(experiment)
    scale = get_experiment(experiment).scales[0] if scale is None else scale
    grid = _grid(experiment, scale, seeds, only)
    failed = None
    with opened(store) as db:  # one store for the plan and the runs
        jobs, batch, records = [], _planned(db, grid, stage), []
        while batch:  # the declared grid, then what its finished runs call for (lr_extension, confirmation)
            first, jobs = len(jobs), jobs + batch
            try:
                records += runner.run(batch, db, data_dir=data_dir, device=device, wandb=wandb, progress=progress,
                                      extra_cbs=extra_cbs, on_record=_shifted(on_record, first),
                                      on_error=_shifted(on_error, first), on_skip=_shifted(on_skip, first),
                                      distributed=distributed, num_workers=num_workers)
            except RunsFailed as e:
                records += e.records
                failures = [dataclasses.replace(f, index=first + f.index) for f in e.failures]  # grid positions
                failed = RunsFailed(failures, records)  # every record so far, in order
                break
            known = {_key(j) for j in jobs}
            batch = [j for j in _planned(db, grid, stage) if _key(j) not in known]
        store = db.path  # the store's own path (a path given, an open store, or the default)
    exp = get_experiment(experiment)
    if rank_distrib() == 0 and exp.lr_find_row and not lr_find_path(store, experiment, scale).exists():
        spec = next((j.spec for j in jobs if j.spec.name == exp.lr_find_row), None)
        if spec is not None:
            save_lr_find(spec, lr_find_path(store, experiment, scale), data_dir=data_dir,
                         device=device if getattr(runner, "name", "local") == "local" else None,  # here, not on a worker
                         num_workers=num_workers)
    if failed is not None:
        raise failed
    return records


def _shifted(callback, first):
    """``callback(i, ...)`` told the index in the whole sweep of a job of a batch starting at ``first``."""
    if callback is None or not first:
        return callback
    return lambda i, *args: callback(first + i, *args)


def save_lr_find(spec, path, data_dir=None, device=None, seed=0, num_workers=None):
    """fastai's ``lr_find`` on ``spec``'s learner; the curve (lr, smoothed loss) and the valley
    suggestion go to ``path`` as JSON, for the report."""
    import json
    import os
    import tempfile

    from .runner import build_learner_for
    learn, _ = build_learner_for(spec, seed, data_dir=data_dir, device=device, num_workers=num_workers)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:  # lr_find saves the model there, not in the cwd
        learn.path = Path(scratch)
        with learn.no_bar(), learn.no_logging():
            suggestion = learn.lr_find(show_plot=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # several sweeps may write it at once
    tmp.write_text(json.dumps({"row": spec.name, "lrs": [float(v) for v in learn.recorder.lrs],
                               "losses": [float(v) for v in learn.recorder.losses],
                               "valley": float(suggestion.valley)}))
    tmp.replace(path)
    return path
