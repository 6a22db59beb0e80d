"""A run's life around its training, written once for every place a run trains
(``runner.fit_and_record`` in this process, the Ray executor's driver and its workers):

* :func:`claimed_run`: the store's answer to a claim -- ``finished`` (the lease carries the record),
  ``held`` by another live process (:class:`RunHeld`, with who holds it as fields), or ``claimed``
  (or ``observed`` by a non-writing DDP rank) -- and the claim released when the block ends;
* :func:`recording_failure`: an error of the block marks the run failed (its checkpoint kept for
  the next attempt), then goes on;
* :func:`wandb_session`: a W&B run opened for the block (none when W&B is disabled) and finished
  with the run's record, or as failed when the block raises.

Stdlib and the store only: W&B is imported when a session is asked for.
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path

from .store import LeaseLost

__all__ = ["RunHeld", "claimed_run", "recording_failure", "wandb_session", "WandbSession"]


class RunHeld(RuntimeError):
    """Another live process is training this run (it holds the claim); this one skips it.

    Fields: ``run_id``, ``experiment``, ``name``, ``seed``, and the holder: ``holder`` (in words,
    ``"pid 123 on host"``), ``pid`` and ``host``."""

    def __init__(self, run_id, experiment, name, seed, holder, pid=None, host=None):
        self.run_id, self.experiment, self.name, self.seed = run_id, experiment, name, seed
        self.holder, self.pid, self.host = holder, pid, host
        super().__init__(f"{experiment}/{name} seed {seed} is being trained by {holder}")

    def __reduce__(self):  # picklable with its fields (e.g. across processes)
        return type(self), (self.run_id, self.experiment, self.name, self.seed, self.holder, self.pid, self.host)


@contextmanager
def claimed_run(store, spec, seed, *, writer=True, on_claim=None):
    """Claim the run of ``spec`` and ``seed`` in ``store`` (``writer=False``: observe it, as a DDP
    rank that follows rank 0) and yield its lease, released when the block ends.

    ``on_claim(state)`` is called with the answer first. ``"finished"``: the lease's ``record`` is
    the run's; ``"held"``: :class:`RunHeld` is raised (nothing was written); ``"claimed"`` /
    ``"observed"``: the run is this process's to train."""
    run_id = spec.run_id(seed)
    lease = (store.claim(run_id, spec.experiment, spec.name, seed, spec.to_dict()) if writer
             else store.observe(run_id))
    with lease:
        if on_claim is not None:
            on_claim(lease.state)
        if lease.state == "held":
            raise RunHeld(run_id, spec.experiment, spec.name, seed, lease.holder, lease.holder_pid,
                          lease.holder_host)
        yield lease


@contextmanager
def recording_failure(lease):
    """An exception of the block marks the run failed (``"Type: message"``; the checkpoint stays
    for the next attempt), then goes on. Not for :class:`LeaseLost`: the run is another's now."""
    try:
        yield lease
    except BaseException as e:
        if not isinstance(e, LeaseLost):
            try:
                lease.fail(f"{type(e).__name__}: {e}")
            except (sqlite3.Error, OSError):  # best effort (a full disk): the claim ends with this
                pass                          # process, and the next attempt takes the run over
        raise


class WandbSession:
    """What :func:`wandb_session` yields: ``run`` (a ``callbacks.wandb.WandbRun``, None when W&B is
    disabled) and ``record``, which the block sets to the run's record once it trained."""

    def __init__(self, run):
        self.run, self.record = run, None


@contextmanager
def wandb_session(mode, spec, seed, directory):
    """A W&B run of ``spec`` and ``seed`` for the block (``mode``: offline / online / disabled; its
    files under ``directory``), finished with ``session.record`` when the block ends, or as failed
    (no record, exit code 1) when it raises."""
    run = None
    if mode != "disabled":
        from .callbacks.wandb import open_wandb_run  # imports wandb only when asked for
        run = open_wandb_run(mode, spec, seed, spec.run_id(seed), Path(directory))
    session = WandbSession(run)
    try:
        yield session
    except BaseException:
        if run is not None:
            run.finish(None)
        raise
    if run is not None:
        run.finish(session.record)
