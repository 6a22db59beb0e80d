"""Where the runs of a grid train: here, one after another (``local``, the default), or as Ray tasks
on a cluster (``ray``, optional: ``pip install 'lookahead-fastai[ray]'``).

Both are thin loops over the one run lifecycle (``lifecycle.claimed_run``: the store's claim -> a
``RunLease``: resume point, epoch rows, finish or fail; ``lifecycle.wandb_session``), and in both
the process that runs the sweep (the *driver*) is the only writer of the results store:

* ``LocalExecutor`` runs :func:`~lookahead_fastai.runner.fit_and_record` for every run in this
  process (claim, resume from the epoch checkpoint, epoch rows as they end, finish); a run another
  live process holds is skipped; the first run that raises stops the sweep.
* ``RayExecutor`` claims every pending run, then makes each one Ray task that calls
  :func:`~lookahead_fastai.runner.train` (no storage, no checkpoints) and hands back the record and
  its per-epoch rows; the driver writes them through the run's lease. A worker lost mid-run
  (process killed, node lost) is retried by Ray up to ``max_retries`` times; a run that raises is
  marked failed with its error and the rest of the grid goes on; ``run`` then raises
  :class:`RunsFailed`.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from contextlib import ExitStack

from .lifecycle import RunHeld, claimed_run, wandb_session
from .runner import fit_and_record, train
from .store import opened
from .store.paths import wandb_dir

__all__ = ["EXECUTORS", "LocalExecutor", "RayExecutor", "RunsFailed", "Failure", "ExecutorUnavailable", "make_executor",
           "RAY_INSTALL_HINT"]

EXECUTORS = ("local", "ray")
RAY_INSTALL_HINT = "pip install 'lookahead-fastai[ray]'"


class ExecutorUnavailable(ValueError):
    """The executor asked for cannot run here (e.g. Ray is not installed); one-line message."""


@dataclass
class Failure:
    index: int     # position in the grid
    job: object    # sweep.Job
    error: str     # "ExceptionType: message"

    def describe(self):
        return f"{self.job.spec.name} seed {self.job.seed} ({self.error})"


class RunsFailed(RuntimeError):
    """Some runs of a grid failed (they are marked ``failed`` in the store); the others finished.
    ``records`` holds the grid's records in grid order, ``None`` where a run failed."""

    def __init__(self, failures, records):
        self.failures, self.records = list(failures), list(records)
        listed = "; ".join(f.describe() for f in self.failures[:3])
        more = f"; and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
        super().__init__(f"{len(self.failures)} of {len(self.records)} runs failed: {listed}{more}")


def _callbacks_for(extra_cbs, spec, seed):
    """``extra_cbs`` is a list of fastai callbacks, or ``f(spec, seed) -> list`` (called where the
    run trains, e.g. on a Ray worker)."""
    if callable(extra_cbs):
        return list(extra_cbs(spec, seed) or ())
    return list(extra_cbs or ())


class LocalExecutor:
    """Every run in this process, one after another; an exception stops the sweep (the run is
    marked failed in the store first). A run that another live process is training is skipped
    (``on_skip(i, job, reason)``, ``reason`` a :class:`~.lifecycle.RunHeld`; its record is None here)."""
    name = "local"

    def run(self, jobs, store, *, data_dir=None, device=None, wandb="disabled", progress=False, extra_cbs=(),
            on_record=None, on_error=None, on_skip=None, distributed=False, num_workers=None):
        records = []
        with opened(store) as db:
            for i, job in enumerate(jobs):
                def claimed(state, job=job):
                    if state == "finished":  # e.g. by another process sharing the store, since the plan
                        job.finished = True
                try:
                    record = fit_and_record(job.spec, job.seed, store=db, data_dir=data_dir, device=device,
                                            wandb=wandb, progress=progress, distributed=distributed,
                                            extra_cbs=_callbacks_for(extra_cbs, job.spec, job.seed),
                                            on_claim=claimed, num_workers=num_workers)
                except RunHeld as held:
                    records.append(None)
                    if on_skip is not None:
                        on_skip(i, job, held)
                    continue
                records.append(record)
                if on_record is not None:
                    on_record(i, job, record)
        return records


# ------------------------------------------------------------------------------------------------
# Ray
# ------------------------------------------------------------------------------------------------
def import_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailable(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL_HINT}") from None
    return ray


def _train_on_worker(spec, seed, data_dir, device, wandb, wandb_dir, progress, extra_cbs, threads, num_workers):
    """A Ray task: train one run (no storage); return its record and per-epoch rows. Offline W&B
    runs are written under ``wandb_dir`` (the driver's store folder, when the worker shares it)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    epochs = []
    with wandb_session(wandb, spec, seed, wandb_dir) as wb:
        wb.record = train(spec, seed, data_dir=data_dir, device=device, progress=progress,
                          on_epoch=lambda epoch, metrics: epochs.append((epoch, metrics)), wandb_run=wb.run,
                          extra_cbs=_callbacks_for(extra_cbs, spec, seed), num_workers=num_workers)
    return {"record": wb.record, "epochs": epochs, "node": socket.gethostname(), "pid": os.getpid()}


def _describe_error(ray, exc):
    """One line: the application's exception for a task that raised, else Ray's own error."""
    cause = getattr(exc, "cause", None) if isinstance(exc, ray.exceptions.RayTaskError) else None
    err = cause if isinstance(cause, BaseException) else exc
    text = " ".join(str(err).split())
    if len(text) > 500:
        text = text[:497] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class RayExecutor:
    """Every pending run as one Ray task (``num_cpus=cpus_per_run``, ``num_gpus=gpus_per_run``).

    ``address=None`` starts a local Ray instance with ``num_cpus`` CPUs for the sweep (and stops it
    afterwards); otherwise ``ray.init(address=address)`` joins an existing cluster (``"auto"``, or
    ``"ray://head:10001"``, ...). If Ray is already initialised in this process, that session is
    used and left running. ``max_retries``: how often Ray reruns a task whose worker died;
    ``retry_exceptions``: whether a task that raised is retried too (off: training errors are
    deterministic). The device defaults to ``cuda`` when runs get GPUs, else ``cpu``.
    """
    name = "ray"

    def __init__(self, address=None, gpus_per_run=0, cpus_per_run=1, max_retries=3, retry_exceptions=False,
                 num_cpus=2, init_kwargs=None):
        if gpus_per_run is None:
            gpus_per_run = 0
        if cpus_per_run is None:
            cpus_per_run = 1
        if gpus_per_run < 0:
            raise ValueError(f"gpus per run must be >= 0, got {gpus_per_run}")
        if cpus_per_run <= 0:
            raise ValueError(f"cpus per run must be > 0, got {cpus_per_run}")
        self.ray = import_ray()
        self.address, self.gpus_per_run, self.cpus_per_run = address, gpus_per_run, cpus_per_run
        self.max_retries, self.retry_exceptions = max_retries, retry_exceptions
        self.num_cpus, self.init_kwargs = num_cpus, dict(init_kwargs or {})

    def _init(self):
        ray = self.ray
        if ray.is_initialized():
            return False
        import logging
        kwargs = {"logging_level": logging.WARNING, **self.init_kwargs}
        if self.address is None:
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, **kwargs)
        else:
            ray.init(address=self.address, **kwargs)
        return True

    def run(self, jobs, store, *, data_dir=None, device=None, wandb="disabled", progress=False, extra_cbs=(),
            on_record=None, on_error=None, on_skip=None, distributed=False, num_workers=None):
        if distributed:
            raise ValueError("the ray executor runs each run in one task; distributed (DDP) runs are launched "
                             "with torchrun or accelerate launch")
        ray = self.ray
        device = device or ("cuda" if self.gpus_per_run else "cpu")
        threads = max(1, int(self.cpus_per_run))
        if num_workers is None:  # a task's loader gets the CPUs the task was given, not the node's
            num_workers = int(self.cpus_per_run)
        data_dir = None if data_dir is None else str(Path(data_dir).resolve())
        started_here = self._init()
        records, failures, pending = [None] * len(jobs), [], {}  # pending: task -> (grid index, lease)

        def finished(i, job, record):
            records[i] = record
            if on_record is not None:
                on_record(i, job, record)

        try:
            task = ray.remote(_train_on_worker).options(
                num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=self.max_retries,
                retry_exceptions=self.retry_exceptions, name="lookahead_fastai.fit_and_record")
            # the claims of runs that never come back are released at the end: stale for the next sweep
            with opened(store) as db, ExitStack() as claims:
                for i, job in enumerate(jobs):
                    lease = _claim(claims, db, i, job, finished, on_skip)
                    if lease is not None:
                        lease.resume_point(resumable=False)  # a worker trains from the start: drop old rows
                        ref = task.remote(job.spec, job.seed, data_dir, device, wandb, str(wandb_dir(db.path)),
                                          progress, extra_cbs, threads, num_workers)
                        pending[ref] = (i, lease)
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for ref in done:
                        i, lease = pending.pop(ref)
                        failure = self._settle(ref, i, jobs[i], lease, finished)
                        if failure is not None:
                            failures.append(failure)
                            if on_error is not None:
                                on_error(i, jobs[i], failure.error)
        except BaseException:
            for ref in pending:  # on a cluster the tasks would go on without us
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001  (best effort)
                    pass
            raise
        finally:
            if started_here:
                ray.shutdown()
        if failures:
            raise RunsFailed(sorted(failures, key=lambda f: f.index), records)
        return records

    def _settle(self, ref, i, job, lease, finished):
        """A task that came back: its epoch rows and record written through the run's lease, or the
        run marked failed with the task's error (returned as a :class:`Failure`)."""
        ray = self.ray
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as e:
            failure = Failure(i, job, _describe_error(ray, e))
            lease.fail(failure.error)
            return failure
        for epoch, metrics in result["epochs"]:
            lease.log_epoch(epoch, metrics)
        lease.finish(result["record"])  # drops a local sweep's leftover checkpoint too
        finished(i, job, result["record"])
        return None


def _claim(claims, db, i, job, finished, on_skip):
    """The driver's claim of a run (``lifecycle.claimed_run``, kept open on ``claims``): its lease
    when this sweep trains it; None when it is finished (``finished(i, job, record)``) or held by
    another live process (``on_skip(i, job, RunHeld)``)."""
    try:
        lease = claims.enter_context(claimed_run(db, job.spec, job.seed))
    except RunHeld as held:
        if on_skip is not None:
            on_skip(i, job, held)
        return None
    if lease.state == "finished":
        job.finished = True  # e.g. by another process sharing the store, since the plan
        finished(i, job, lease.record)
        return None
    return lease


def make_executor(executor="local", **options):
    """An executor from its name (``local`` or ``ray``) and options; an executor object is
    returned as it is. Options given to the local executor must be ``None``."""
    if not isinstance(executor, str):
        return executor
    if executor == "local":
        given = [k for k, v in options.items() if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: only for the ray executor")
        return LocalExecutor()
    if executor == "ray":
        return RayExecutor(**{k: v for k, v in options.items() if v is not None})
    raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
