"""Leases: one process trains a run at a time. A claim is one transaction that records the
claimant (pid, host, a random token) and a heartbeat, which a thread of the claimant renews every
``HEARTBEAT_S`` seconds; another process skips a run under a live claim and takes over a stale one
(its process is gone on this host, or its heartbeat is older than ``LEASE_S``). Every write of a
claimed run checks the token, so a process whose claim was taken over writes nothing more
(:class:`LeaseLost`)."""
from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from .codec import canonical_json, dumps, loads, now

__all__ = ["Leases", "RunLease", "LeaseLost", "LEASE_S", "HEARTBEAT_S"]

LEASE_S = 120.0       # a claim whose heartbeat is older than this is stale (its process is presumed dead)
HEARTBEAT_S = 15.0    # how often a claimant renews its heartbeat


class LeaseLost(RuntimeError):
    """This process's claim on a run was taken over by another process (its heartbeat went stale)."""


class Leases:
    """The run lifecycle's writes of a :class:`~lookahead_fastai.store.ResultsStore`: claim (or
    observe) a run, then epoch rows, finish or fail, each one transaction checked against the claim."""

    def claim(self, run_id: str, experiment: str, name: str, seed: int, spec: dict, *,
              lease_s: float = LEASE_S, heartbeat_s: float = HEARTBEAT_S) -> "RunLease":
        """Claim ``run_id`` for this process, atomically; returns a :class:`RunLease` whose
        ``state`` says what happened:

        * ``"finished"``: the run is done (``lease.record`` holds its record); nothing was written.
        * ``"held"``: another live process holds it (``lease.holder`` says who, ``holder_pid`` and
          ``holder_host`` the same as fields); nothing was written.
        * ``"claimed"``: this process now holds it (a new run, or one killed, failed or abandoned by
          a process that is gone); its epoch rows and checkpoint are kept for the resume, and a
          heartbeat thread keeps the claim alive until :meth:`RunLease.finish`, ``fail`` or ``release``.
        """
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        with self._tx() as c:
            row = c.execute("SELECT status, record_json, owner, host, pid, heartbeat FROM runs WHERE run_id = ?",
                            (run_id,)).fetchone()
            if row is not None:
                status, record_json, owner, host, pid, heartbeat = row
                if status == "finished":
                    return RunLease(self, run_id, "finished", record=loads(record_json))
                if status == "running" and _alive(host, pid, heartbeat, lease_s):
                    return RunLease(self, run_id, "held", holder=(pid, host))
            c.execute(
                """INSERT INTO runs (run_id, experiment, name, seed, spec_json, status, started_at,
                                     finished_at, error, record_json, pid, host, owner, heartbeat)
                   VALUES (?, ?, ?, ?, ?, 'running', ?, NULL, NULL, NULL, ?, ?, ?, ?)
                   ON CONFLICT (run_id) DO UPDATE SET
                       experiment = excluded.experiment, name = excluded.name, seed = excluded.seed,
                       spec_json = excluded.spec_json, status = 'running', started_at = excluded.started_at,
                       finished_at = NULL, error = NULL, record_json = NULL, pid = excluded.pid,
                       host = excluded.host, owner = excluded.owner, heartbeat = excluded.heartbeat""",
                (run_id, experiment, name, int(seed), canonical_json(spec), now(), os.getpid(),
                 socket.gethostname(), token, time.time()))
        return RunLease(self, run_id, "claimed", token=token, heartbeat_s=heartbeat_s)

    def observe(self, run_id: str) -> "RunLease":
        """The run as a process that follows another's writes sees it (a non-zero DDP rank):
        ``"finished"`` with its record, else a lease that reads the checkpoint and writes nothing."""
        record = self.record(run_id)
        if record is not None:
            return RunLease(self, run_id, "finished", record=record)
        return RunLease(self, run_id, "observed")

    def _owned_tx(self, c: sqlite3.Connection, run_id: str, token: str | None, action: str) -> None:
        if token is None:
            return
        row = c.execute("SELECT owner, status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None or row[0] != token or row[1] != "running":
            raise LeaseLost(f"cannot {action} run {run_id}: this process's claim on it was taken over "
                            f"(its heartbeat was older than {LEASE_S:g} s)")

    def keep_epochs_before(self, run_id: str, epoch: int, token: str | None = None) -> list[dict]:
        """Drop the run's epoch rows from ``epoch`` on (a resume from the checkpoint of epoch - 1
        trains them again); returns the rows kept."""
        with self._tx() as c:
            self._owned_tx(c, run_id, token, "resume")
            c.execute("DELETE FROM epochs WHERE run_id = ? AND epoch >= ?", (run_id, int(epoch)))
        return self.epochs(run_id)

    def _beat(self, run_id: str, token: str) -> bool:
        """Renew the heartbeat of ``token``'s claim (own connection: called from the heartbeat thread)."""
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_ms / 1000, isolation_level=None)
        try:
            cur = conn.execute("UPDATE runs SET heartbeat = ? WHERE run_id = ? AND owner = ? AND status = 'running'",
                               (time.time(), run_id, token))
            return cur.rowcount == 1
        finally:
            conn.close()

    def log_epoch(self, run_id: str, epoch: int, metrics: dict, token: str | None = None) -> None:
        """Upsert one epoch's metrics of a ``running`` run (own transaction); with ``token``, only
        while that claim holds the run (else :class:`LeaseLost`)."""
        with self._tx() as c:
            self._require_status(c, run_id, ("running",), "log an epoch to")
            self._owned_tx(c, run_id, token, "log an epoch to")
            if token is not None:
                c.execute("UPDATE runs SET heartbeat = ? WHERE run_id = ?", (time.time(), run_id))
            c.execute(
                """INSERT INTO epochs (run_id, epoch, metrics_json) VALUES (?, ?, ?)
                   ON CONFLICT (run_id, epoch) DO UPDATE SET metrics_json = excluded.metrics_json""",
                (run_id, int(epoch), dumps(metrics)))

    def finish_run(self, run_id: str, record: dict, token: str | None = None) -> None:
        """Mark a ``running`` run finished with its final record, in one transaction."""
        with self._tx() as c:
            self._require_status(c, run_id, ("running",), "finish")
            self._owned_tx(c, run_id, token, "finish")
            c.execute("""UPDATE runs SET status = 'finished', record_json = ?, finished_at = ?,
                                         error = NULL
                         WHERE run_id = ?""", (dumps(record), now(), run_id))

    def fail_run(self, run_id: str, error: str, token: str | None = None) -> None:
        """Mark a ``running`` (or re-mark a ``failed``) run failed with ``error``."""
        with self._tx() as c:
            self._require_status(c, run_id, ("running", "failed"), "fail")
            self._owned_tx(c, run_id, token, "fail")
            c.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = ? WHERE run_id = ?",
                      (str(error), now(), run_id))

    @staticmethod
    def _require_status(c: sqlite3.Connection, run_id: str, allowed: tuple, action: str) -> None:
        row = c.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise ValueError(f"cannot {action} run {run_id}: no such run (claim it first)")
        if row[0] not in allowed:
            raise ValueError(f"cannot {action} run {run_id}: it is {row[0]}")


class RunLease:
    """What :meth:`ResultsStore.claim` returns: the outcome (``state``) and, when ``"claimed"``, the
    one handle through which the run's life is written: epoch rows, checkpoint location, finish or
    fail. From :meth:`ResultsStore.observe` (state ``"observed"``) the same handle writes nothing.
    A heartbeat thread renews the claim until the lease ends. Also a context manager (the
    heartbeat stops on exit; a run neither finished nor failed then stays ``running``, and is taken
    over by the next process that claims it)."""

    def __init__(self, store, run_id, state, *, record=None, holder=None, token=None, heartbeat_s=HEARTBEAT_S):
        self.store, self.run_id, self.state = store, run_id, state
        self.record, self.token = record, token
        # who holds a "held" run: its claimant's pid and host, as the store has them
        self.holder_pid, self.holder_host = holder if holder is not None else (None, None)
        self._binding = None
        self._stop = threading.Event()
        self._thread = None
        if state == "claimed" and heartbeat_s:
            self._thread = threading.Thread(target=self._heartbeat, args=(heartbeat_s,), daemon=True,
                                            name=f"lookahead-fastai-heartbeat-{run_id}")
            self._thread.start()

    def _heartbeat(self, every):
        while not self._stop.wait(every):
            try:
                if not self.store._beat(self.run_id, self.token):
                    return  # taken over: the next write raises LeaseLost
            except sqlite3.Error:
                pass  # busy for longer than the timeout: try again at the next beat

    @property
    def holder(self) -> str | None:
        """Who holds a ``"held"`` run, in words: ``"pid 123 on host"``; None otherwise."""
        if self.state != "held":
            return None
        return f"pid {self.holder_pid} on {self.holder_host or 'unknown host'}"

    @property
    def checkpoint_dir(self) -> Path:
        """Where this run's checkpoint lives (not created here)."""
        return self.store._checkpoint_path(self.run_id)

    @property
    def writes(self) -> bool:
        return self.state == "claimed"

    @property
    def checkpoint_binding(self) -> dict:
        """What this run's checkpoints carry: store id, run id, spec digest (see the store's method)."""
        if self._binding is None:
            self._binding = self.store.checkpoint_binding(self.run_id)
        return self._binding

    def record_checkpoint(self, digest: str) -> None:
        """Called with each checkpoint's digest before it replaces the last one (see ``save_checkpoint``)."""
        if self.writes:
            self.store.record_checkpoint(self.run_id, digest, self.token)

    def resume_point(self, resumable: bool = True, epochs: int | None = None):
        """The checkpoint to resume from (plain data, see ``checkpoint.read_checkpoint``) or None,
        after dropping the epoch rows it does not cover. A checkpoint that cannot be read, that this
        store did not write for this run (digest, store id, run id, spec), that lacks keys or whose
        epoch is outside the run's ``epochs`` is moved aside (one-line warning) and the run starts over."""
        from ..checkpoint import read_checkpoint  # torch: only where a run trains
        state = None
        if resumable:
            state = read_checkpoint(self.checkpoint_dir, move_aside=self.writes,
                                    digests=self.store.checkpoint_digests(self.run_id),
                                    binding=self.checkpoint_binding, epochs=epochs)
        if self.writes:
            self.resume_from(state["epoch"] + 1 if state else 0)
        return state

    def resume_from(self, epoch: int) -> list[dict]:
        """Keep the epoch rows before ``epoch`` (what the checkpoint holds), drop the rest."""
        return self.store.keep_epochs_before(self.run_id, epoch, self.token)

    def log_epoch(self, epoch: int, metrics: dict) -> None:
        if self.writes:
            self.store.log_epoch(self.run_id, epoch, metrics, self.token)

    def finish(self, record: dict) -> None:
        if not self.writes:
            return
        self.store.finish_run(self.run_id, record, self.token)
        self.release()
        self.store.drop_checkpoint(self.run_id)

    def fail(self, error: str) -> None:
        if not self.writes:
            return
        try:
            self.store.fail_run(self.run_id, error, self.token)
        finally:
            self.release()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __repr__(self):
        return f"RunLease({self.run_id!r}, {self.state!r})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive(host, pid, heartbeat, lease_s) -> bool:
    """Whether a ``running`` row's claimant is presumed alive: a heartbeat younger than ``lease_s``,
    and on this host a process that still exists (and is not this one: our own leftover is stale)."""
    if heartbeat is None:
        return False  # written by a store of schema 1: nobody renews it
    if host == socket.gethostname() and pid is not None:
        if pid == os.getpid() or not _pid_alive(pid):
            return False
    return time.time() - heartbeat <= lease_s


