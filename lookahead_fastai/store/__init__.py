"""Crash-safe results store for the experiment runner (stdlib ``sqlite3`` only).

One SQLite file holds every run of every experiment:

* ``runs``   -- one row per (spec, seed): status ``running`` / ``finished`` / ``failed``, the spec,
  the final record, timestamps, the error text of a failed run and the process that claimed it.
* ``epochs`` -- one row per (run, epoch) with that epoch's metrics.

A run's identity is the canonical JSON of its spec plus its seed (:func:`run_identity`), so a
re-launched sweep finds the runs it already finished and skips them (:meth:`ResultsStore.is_finished`),
while a run that was killed midway (left ``running``) or that ``failed`` is claimed again by
:meth:`ResultsStore.claim` and resumed from its checkpoint.

The parts, one module each: :mod:`.opening` (the connection and the schema), :mod:`.leases`
(claim, heartbeat, the writes of a claimed run), :mod:`.checkpoints`, :mod:`.reads`,
:mod:`.jsonl` (export / import; :mod:`.lines` checks an imported line) and :mod:`.paths` (where
a store and its files live; stdlib only, importable without torch).

Durability
----------
The database is opened in WAL mode and every write is one short transaction, so killing the process
at any moment (including SIGKILL) can neither corrupt the file nor lose or half-write a run:
:meth:`ResultsStore.finish_run` sets status, record and ``finished_at`` in a single transaction, so a
run is either still ``running`` (and will be redone) or ``finished`` with its whole record.

``synchronous=NORMAL`` (the default here) is enough for that: in WAL mode a commit has written its
frames to the WAL file before ``commit()`` returns; it only skips the fsync, so the data sits in the
OS page cache, which survives the death of the *process*. What NORMAL does not guarantee is the last
commits surviving a power loss or kernel crash (the database is still never corrupted, it just rolls
back to an earlier commit). Pass ``synchronous="FULL"`` to fsync the WAL on every commit if that
matters more than speed.

Several processes, one store
----------------------------
Writes take the write lock up front (``BEGIN IMMEDIATE``) and wait up to ``busy_timeout_ms`` for
it. A run is trained by the process that *claims* it (:meth:`ResultsStore.claim`): the claim is one
transaction that records the claimant (pid, host, a random token) and a heartbeat, which a thread of
the claimant renews every ``HEARTBEAT_S`` seconds. Another process skips a run under a live claim and
takes over a stale one: its process is gone (same host) or its heartbeat is older than ``LEASE_S``.
Every write of a claimed run checks the token, so a process whose claim was taken over cannot write
into the run any more (:class:`LeaseLost`).

Checkpoints belong to their store: ``<store>.files/checkpoints/<run_id>/`` beside the database
file (``runs/results.sqlite`` -> ``runs/results.files/``), so two stores in one folder never share
one. Its lr_find curves live under the same folder; W&B runs under the store's own folder
(``paths.wandb_dir``).
"""
from __future__ import annotations

import os
from contextlib import nullcontext

from .checkpoints import Checkpoints
from .codec import canonical_json, run_identity
from .jsonl import JsonLines
from .leases import HEARTBEAT_S, LEASE_S, LeaseLost, Leases, RunLease
from .opening import SCHEMA_VERSION, StoreBase, StoreBusy
from .paths import DEFAULT_STORE, checkpoint_path, lr_find_path, store_files_dir
from .reads import STATUSES, Reads

__all__ = ["ResultsStore", "RunLease", "LeaseLost", "run_identity", "canonical_json", "SCHEMA_VERSION", "STATUSES",
           "LEASE_S", "HEARTBEAT_S", "store_files_dir", "StoreBusy", "DEFAULT_STORE", "checkpoint_path",
           "lr_find_path", "opened"]


class ResultsStore(StoreBase, Leases, Reads, Checkpoints, JsonLines):
    """SQLite-backed store of runs and per-epoch metrics; see the module docstring.

    ``ResultsStore(path)`` creates the file (and its parent directories) when missing. Raises
    ``ValueError`` (one line) when ``path`` is not an SQLite database, is one written by something
    else (another schema or a newer schema version; such a file is looked at, never modified), or
    cannot be created or opened (permissions, read-only filesystem, over-long name).

    ``readonly=True`` opens an existing store for reading only (reports): nothing is written, not
    even the journal mode, so a store on a read-only filesystem or in a read-only folder can be read.

    Its parts: :class:`~.opening.StoreBase` (opening, schema, transactions), :class:`~.leases.Leases`
    (claims and the writes of a claimed run), :class:`~.reads.Reads`, :class:`~.checkpoints.Checkpoints`
    and :class:`~.jsonl.JsonLines` (export / import).
    """


def opened(store=None):
    """A store for a ``with`` block, opened once along a sweep: a path (None: :data:`DEFAULT_STORE`)
    is opened here and closed at the block's end; an open store is used as it is and left open (its
    opener closes it)."""
    if store is None or isinstance(store, (str, os.PathLike)):
        return ResultsStore(store or DEFAULT_STORE)
    return nullcontext(store)
