"""Run an experiment's grid (specs x seeds) through ``fit_and_record``: the one loop the CLI and the
notebooks share. Finished runs are skipped, so a sweep can be stopped and started again."""
from dataclasses import dataclass
from pathlib import Path

from .experiments import SCALES, SpecError, get_experiment
from .runner import DEFAULT_STORE, fit_and_record
from .store import ResultsStore

__all__ = ["Job", "plan", "run_experiment"]


@dataclass
class Job:
    spec: object
    seed: int
    finished: bool  # already in the store before this sweep


def plan(experiment, scale="smoke", seeds=None, only=None, store=DEFAULT_STORE):
    """The runs of ``experiment`` at ``scale``: one Job per row x seed (seeds 0..N-1)."""
    if scale not in SCALES:
        raise SpecError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    exp = get_experiment(experiment)
    specs = exp.specs(scale)
    if only:
        names = [s.name for s in specs]
        unknown = [n for n in only if n not in names]
        if unknown:
            raise SpecError(f"--only: {', '.join(unknown)} not in {experiment}; rows are {', '.join(names)}")
        specs = [s for s in specs if s.name in only]
    n_seeds = seeds or exp.default_seeds.get(scale, 1)
    if n_seeds < 1:
        raise SpecError(f"seeds must be at least 1, got {n_seeds}")
    with ResultsStore(store) as db:
        return [Job(spec, seed, db.is_finished(spec.run_id(seed))) for seed in range(n_seeds) for spec in specs]


def run_experiment(experiment, scale="smoke", seeds=None, only=None, store=DEFAULT_STORE, data_dir=None,
                   device=None, wandb="disabled", progress=False, on_record=None):
    """Run every pending run of the grid; returns the records in grid order. ``on_record(i, job,
    record)`` is called after each run (the CLI prints a line there)."""
    jobs = plan(experiment, scale, seeds, only, store)
    records = []
    with ResultsStore(Path(store)) as db:
        for i, job in enumerate(jobs):
            record = fit_and_record(job.spec, job.seed, store=db, data_dir=data_dir, device=device, wandb=wandb,
                                    progress=progress)
            records.append(record)
            if on_record is not None:
                on_record(i, job, record)
    exp = get_experiment(experiment)
    if exp.lr_find_row and not lr_find_path(store, experiment, scale).exists():
        spec = next((j.spec for j in jobs if j.spec.name == exp.lr_find_row), None)
        if spec is not None:
            save_lr_find(spec, lr_find_path(store, experiment, scale), data_dir=data_dir, device=device)
    return records


def lr_find_path(store, experiment, scale):
    """Where a sweep keeps the lr_find curve of an experiment, beside its store."""
    return Path(store).parent / "lr_find" / f"{experiment}_{scale}.json"


def save_lr_find(spec, path, data_dir=None, device=None, seed=0):
    """fastai's ``lr_find`` on ``spec``'s learner; the curve (lr, smoothed loss) and the valley
    suggestion go to ``path`` as JSON, for the report."""
    import json

    from .runner import build_learner_for
    learn, _ = build_learner_for(spec, seed, data_dir=data_dir, device=device)
    with learn.no_bar(), learn.no_logging():
        suggestion = learn.lr_find(show_plot=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"row": spec.name, "lrs": [float(v) for v in learn.recorder.lrs],
                                "losses": [float(v) for v in learn.recorder.losses],
                                "valley": float(suggestion.valley)}))
    return path
