"""Run an experiment's grid (specs x seeds) through ``fit_and_record``: the one loop the CLI and the
notebooks share. Finished runs are skipped, so a sweep can be stopped and started again.

A sweep opens its store once, for its plan and its runs. The training stack (runner, fastai) is
imported where a run trains, not here; ``DEFAULT_STORE`` and ``lr_find_path`` come from
``store.paths`` (stdlib only) and stay importable from here."""
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .experiments import SCALES, SpecError, get_experiment, use_experiment
from .experiments.extension import extension_steps
from .grid_rules import validation_finals
from .registry.user import check_user_code
from .store import ResultsStore, opened
from .store.paths import DEFAULT_STORE, lr_find_path

__all__ = ["Job", "plan", "run_experiment", "lr_find_path", "DEFAULT_STORE"]


@dataclass
class Job:
    spec: object
    seed: int
    finished: bool  # already finished in the store (at the plan, or by another process when this sweep got to it)
    imported: bool = False  # finished by ``store import`` (its record came from a file, not from training here)


def plan(experiment, scale=None, seeds=None, only=None, store=DEFAULT_STORE):
    """The runs of ``experiment`` (a name or an :class:`Experiment`) at ``scale``: one Job per row x
    seed (seeds 0..N-1); ``scale`` None: the experiment's first (smoke for the built-in ones).
    ``store``: a path (opened and closed here) or an open :class:`ResultsStore` (left open)."""
    grid = _grid(experiment, scale, seeds, only)
    with opened(store) as db:
        jobs = _jobs(db, *grid)
        return jobs + _extension_jobs(db, *grid, only, {_key(j) for j in jobs})


def _grid(experiment, scale, seeds, only):
    """The experiment's name, its specs (``only`` those rows) and its number of seeds, the user's own
    callables checked: all before the store is opened."""
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
        specs = [s for s in specs if s.name in only]
    stages = exp.stages.get(scale)  # declared stages: every seed of both, unless a number is asked for
    n_seeds = seeds or (max(stages.seeds) + 1 if stages else exp.default_seeds.get(scale, 1))
    if n_seeds < 1:
        raise SpecError(f"seeds must be at least 1, got {n_seeds}")
    return exp.name, specs, n_seeds


def _key(job):
    return job.spec.run_id(job.seed)


def _extension_jobs(db, name, specs, n_seeds, only, planned):
    """The runs of the grid points the experiment's ``lr_extension`` adds from what the store holds
    now (experiments/extension.py), less those in ``planned`` (run ids). None with ``only``: a family
    is extended by a sweep of all its rows."""
    exp = get_experiment(name)
    if exp.lr_extension is None or only or not specs:
        return []
    finished = {r["run_id"]: r for r in db.runs(name, status="finished") if r["record"]}

    def finals_of(spec):
        runs = [finished.get(spec.run_id(seed)) for seed in range(n_seeds)]
        if any(r is None for r in runs):
            return None
        return validation_finals(runs).get(spec.name, [])  # the rule the reports pick by

    added = [spec for _, spec in extension_steps(exp, specs[0].scale, finals_of)]
    return [j for j in _jobs(db, name, added, n_seeds) if _key(j) not in planned]


def _jobs(db, name, specs, n_seeds):
    imported = db.imported(name)
    return [Job(spec, seed, db.is_finished(spec.run_id(seed)), spec.run_id(seed) in imported)
            for seed in range(n_seeds) for spec in specs]


def run_experiment(experiment, scale=None, seeds=None, only=None, store=DEFAULT_STORE, data_dir=None,
                   device=None, wandb="disabled", progress=False, on_record=None,
                   # --- executors (see executors.py) ---
                   executor="local", address=None, gpus_per_run=None, cpus_per_run=None, extra_cbs=(),
                   on_error=None, on_skip=None, distributed=False, num_workers=None):
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
    worker processes of the PIL data path (None: one per core available)."""
    from fastai.torch_core import rank_distrib

    from .executors import RunsFailed, make_executor
    runner = make_executor(executor, address=address, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run)
    experiment = use_experiment(experiment)
    scale = get_experiment(experiment).scales[0] if scale is None else scale
    grid = _grid(experiment, scale, seeds, only)
    failed = None
    with opened(store) as db:  # one store for the plan and the runs
        jobs, batch, records = [], _jobs(db, *grid), []
        while batch:  # the declared grid, then each lr_extension step its finished runs call for
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
            batch = _extension_jobs(db, *grid, only, {_key(j) for j in jobs})
    exp = get_experiment(experiment)
    store = store.path if isinstance(store, ResultsStore) else store
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
