"""Crash-safe results store for the experiment runner (stdlib ``sqlite3`` only).

One SQLite file holds every run of every experiment:

* ``runs``   -- one row per (spec, seed): status ``running`` / ``finished`` / ``failed``, the spec,
  the final record, timestamps, the error text of a failed run and the pid that ran it.
* ``epochs`` -- one row per (run, epoch) with that epoch's metrics.

A run's identity is the canonical JSON of its spec plus its seed (:func:`run_identity`), so a
re-launched sweep finds the runs it already finished and skips them (:meth:`ResultsStore.is_finished`),
while a run that was killed midway (left ``running``) or that ``failed`` is redone from scratch by
:meth:`ResultsStore.start_run`.

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
one. Other artefacts of a store (lr_find curves, W&B files) live under the same folder.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["ResultsStore", "RunLease", "LeaseLost", "run_identity", "canonical_json", "SCHEMA_VERSION", "STATUSES",
           "LEASE_S", "HEARTBEAT_S", "store_files_dir", "StoreBusy"]

SCHEMA_VERSION = 3
LEASE_S = 120.0       # a claim whose heartbeat is older than this is stale (its process is presumed dead)
HEARTBEAT_S = 15.0    # how often a claimant renews its heartbeat
STATUSES = ("running", "finished", "failed")

_SAFE_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")

_SCHEMA = """
CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY,
    experiment  TEXT NOT NULL,
    name        TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    spec_json   TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    error       TEXT,
    record_json TEXT,
    pid         INTEGER,
    host        TEXT,
    owner       TEXT,
    heartbeat   REAL,
    checkpoint_digests TEXT,
    imported_from      TEXT
);
CREATE INDEX runs_experiment_status ON runs (experiment, status);
CREATE TABLE epochs (
    run_id       TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    epoch        INTEGER NOT NULL,
    metrics_json TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
"""
# the store's identity: a random id written once, when the store is created (or upgraded to v3)
_STORE_META = ["CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
               "INSERT INTO store_meta (key, value) VALUES ('store_id', lower(hex(randomblob(16))))"]
_SCHEMA += ";\n".join(_STORE_META)

# schema upgrades, by the version they start from: v1 -> v2 claims (owner, host, heartbeat); v2 -> v3 the
# store's identity (store_meta, a random id written once) that binds checkpoints to their store, the digests
# of each run's checkpoints, and where an imported run came from
_UPGRADES = {
    1: ["ALTER TABLE runs ADD COLUMN host TEXT", "ALTER TABLE runs ADD COLUMN owner TEXT",
        "ALTER TABLE runs ADD COLUMN heartbeat REAL"],
    2: ["ALTER TABLE runs ADD COLUMN checkpoint_digests TEXT", "ALTER TABLE runs ADD COLUMN imported_from TEXT",
        *_STORE_META],
}

# the columns each schema version has: a file with tables named runs and epochs but other columns is
# not a results store, and is refused before anything is written to it
_V1_RUNS = {"run_id", "experiment", "name", "seed", "spec_json", "status", "started_at", "finished_at",
            "error", "record_json", "pid"}
_COLUMNS = {
    1: {"runs": _V1_RUNS, "epochs": {"run_id", "epoch", "metrics_json"}},
    2: {"runs": _V1_RUNS | {"host", "owner", "heartbeat"}, "epochs": {"run_id", "epoch", "metrics_json"}},
    3: {"runs": _V1_RUNS | {"host", "owner", "heartbeat", "checkpoint_digests", "imported_from"},
        "epochs": {"run_id", "epoch", "metrics_json"}, "store_meta": {"key", "value"}},
}


# ----------------------------------------------------------------------------------------------
# identity and JSON helpers
# ----------------------------------------------------------------------------------------------
def canonical_json(spec: dict) -> str:
    """The canonical JSON of a spec: sorted keys, no whitespace, non-JSON values via ``str``."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)


def run_identity(spec: dict, seed: int) -> str:
    """Stable 16-hex-digit id of (spec, seed): independent of dict key order."""
    payload = f"{canonical_json(spec)}|seed={int(seed)}"
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _json_default(obj: Any) -> Any:
    # numpy scalars / 0-d tensors -> Python numbers; arrays / tensors -> lists; anything else -> str
    item = getattr(obj, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError, RuntimeError):
            pass
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        try:
            return tolist()
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(obj)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _epoch_rows(run: dict) -> list[tuple[int, str]]:
    """An exported run's epoch rows as the epochs table holds them: (epoch, metrics JSON)."""
    return [(e["epoch"], _dumps({k: v for k, v in e.items() if k != "epoch"})) for e in run["epochs"]]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _flatten(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


# ----------------------------------------------------------------------------------------------
# the store
# ----------------------------------------------------------------------------------------------
class ResultsStore:
    """SQLite-backed store of runs and per-epoch metrics; see the module docstring.

    ``ResultsStore(path)`` creates the file (and its parent directories) when missing. Raises
    ``ValueError`` (one line) when ``path`` is not an SQLite database, is one written by something
    else (another schema or a newer schema version; such a file is looked at, never modified), or
    cannot be created or opened (permissions, read-only filesystem, over-long name).

    ``readonly=True`` opens an existing store for reading only (reports): nothing is written, not
    even the journal mode, so a store on a read-only filesystem or in a read-only folder can be read.
    """

    def __init__(self, path: str | os.PathLike, *, synchronous: str = "NORMAL",
                 busy_timeout_ms: int = 30_000, readonly: bool = False) -> None:
        synchronous = synchronous.upper()
        if synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = Path(path).expanduser().absolute()
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None
        self.schema_version = SCHEMA_VERSION  # an older store's, when opened read-only
        self._busy_timeout_ms = int(busy_timeout_ms)
        try:
            self.path = self.path.resolve()
            self._check_file()
            if readonly:
                conn, mode = self._retrying(self._open_readonly, "open"), "unchanged (read-only)"
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._check_writable()
                conn = self._retrying(lambda: self._setup_writable(
                    self._connect(f"file:{_quote(self.path)}?mode=rwc"), synchronous), "open")
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        except OSError as exc:
            raise ValueError(f"cannot open results store {self.path}: {_os_reason(exc)}") from None
        self._conn = conn
        self.journal_mode = str(mode).lower()

    # -- opening ---------------------------------------------------------------------------------
    def _connect(self, uri: str) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self._busy_timeout_ms / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            return conn
        except sqlite3.Error as exc:
            raise ValueError(f"cannot open results store {self.path}: {exc}") from None

    def _retrying(self, step, what: str):
        """Run ``step()`` again while SQLite answers BUSY, for up to the busy timeout.

        The busy timeout makes SQLite wait for a lock, but some answers come at once, without the
        busy handler: the switch of a new store to WAL while another process switches it or
        creates its schema (measured: ~1 open in 200 when 4 processes open a new store together,
        after 0.02-0.03 s), WAL recovery (SQLITE_BUSY_RECOVERY), a stale read snapshot that must
        become a write (SQLITE_BUSY_SNAPSHOT), and a lock promotion SQLite refuses to wait for
        because waiting could deadlock. Each of those passes once the other connection moves on,
        so the step is retried from its start (a new connection for an open, a new ``BEGIN``
        for a transaction) after a short, growing, jittered sleep."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        pause = 0.002
        while True:
            try:
                return step()
            except StoreBusy:
                raise  # a nested step already waited its whole timeout
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() + pause > deadline:
                    if _is_busy(exc):
                        raise StoreBusy(f"{exc} (could not {what} results store {self.path} for "
                                        f"{self._busy_timeout_ms / 1000:g} s: another process holds it)") from None
                    raise
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 0.1)

    def _setup_writable(self, conn: sqlite3.Connection, synchronous: str) -> sqlite3.Connection:
        try:
            version = self._check_schema(conn)  # before anything is written: a foreign file stays as it was
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._conn = conn
            if version != SCHEMA_VERSION:  # a current store opens without the write lock
                self._init_schema()
            return conn
        except sqlite3.DatabaseError as exc:
            conn.close()
            self._conn = None
            if _is_busy(exc):
                raise
            if "readonly" in str(exc).lower() or "read-only" in str(exc).lower():
                raise ValueError(f"cannot write results store {self.path}: {exc} (to read it, e.g. for a "
                                 "report, it can be opened read-only)") from None
            raise self._not_a_database(exc) from None
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def _open_readonly(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise ValueError(f"no results store at {self.path}")
        writable = os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK) and \
            not _on_readonly_fs(self.path.parent)
        # immutable=1 reads a WAL-mode database without creating -wal/-shm files (read-only media);
        # when the folder is writable the normal read-only mode sees a live writer's commits too
        uri = f"file:{_quote(self.path)}?mode=ro" + ("" if writable else "&immutable=1")
        conn = self._connect(uri)
        try:
            self.schema_version = self._check_schema(conn)
            conn.execute("SELECT count(*) FROM runs").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _is_busy(exc):
                raise  # retried by _retrying
            raise self._not_a_database(exc) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_file(self) -> None:
        # The file is never opened here outside SQLite: closing any descriptor of a database file
        # drops every POSIX lock this process holds on it, so another open connection of this
        # process would look closed to other processes, and the last of those would delete the
        # WAL under it (https://www.sqlite.org/howtocorrupt.html, 2.2). SQLite itself reports a
        # file that is not a database (see _not_a_database), before anything is written.
        if self.path.is_dir():
            raise ValueError(f"{self.path} is a directory, not an SQLite database")
        if self.path.exists() and not os.access(self.path, os.R_OK):
            raise ValueError(f"cannot read results store {self.path}: Permission denied")

    def _check_writable(self) -> None:
        """Say why a store cannot be written here (SQLite would only say 'unable to open database
        file'): a WAL database needs its folder writable too, for the -wal and -shm files."""
        folder = self.path.parent
        if _on_readonly_fs(folder):
            why = "Read-only file system"
        elif not os.access(folder, os.W_OK | os.X_OK) or (self.path.exists() and not os.access(self.path, os.W_OK)):
            why = "Permission denied"
        else:
            return
        if self.path.exists():
            raise ValueError(f"cannot write results store {self.path}: {why} (to read it, e.g. for a report, "
                             "it can be opened read-only)")
        raise ValueError(f"cannot create results store {self.path}: {why}")

    def _not_a_database(self, exc: sqlite3.DatabaseError) -> ValueError:
        if "file is not a database" in str(exc).lower():
            return ValueError(f"{self.path} is not an SQLite database (bad file header)")
        return ValueError(f"{self.path} is not a usable SQLite database: {exc}")

    def _check_schema(self, conn: sqlite3.Connection) -> int:
        """Refuse a database that is not ours, reading only (nothing is written before this);
        returns its schema version.

        The version and the schema are read in one read transaction: read apart, another process
        creating the store in between (two sweeps started together on a new store) would show
        version 0 beside its new tables, and this store would be taken for another program's."""
        conn.execute("BEGIN")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            names = [(r[0], r[1]) for r in conn.execute("SELECT type, name FROM sqlite_master")]
            columns = {table: {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                       for table in _COLUMNS.get(version, {})}
        finally:
            conn.execute("COMMIT")
        if version > SCHEMA_VERSION:
            raise ValueError(f"{self.path} has results-store schema version {version}, newer "
                             f"than this code's {SCHEMA_VERSION}; upgrade lookahead_fastai")
        tables = {name for kind, name in names if kind == "table"}
        if version == 0:
            n = len(names)
            if n:
                raise ValueError(f"{self.path} is an SQLite database but not a results store "
                                 f"(it already holds {n} other schema objects)")
            if self.readonly:
                raise ValueError(f"{self.path} is an empty database, not a results store")
        elif not {"runs", "epochs"} <= tables:
            raise ValueError(f"{self.path} is an SQLite database but not a results store (no runs/epochs tables)")
        else:
            for table, expected in _COLUMNS.get(version, {}).items():
                if not expected <= columns[table]:
                    missing = sorted(expected - columns[table])
                    raise ValueError(f"{self.path} is an SQLite database but not a results store (its table "
                                     f"{table} has no column{'s' if len(missing) > 1 else ''} {', '.join(missing)})")
        return version

    def _init_schema(self) -> None:
        with self._tx() as c:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version == 0:
                for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                    c.execute(stmt)
            else:  # an older store: its upgrades in order (_UPGRADES)
                for stmt in (stmt for start in range(version, SCHEMA_VERSION) for stmt in _UPGRADES[start]):
                    c.execute(stmt)
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError(f"results store {self.path} is closed")
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction: BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error."""
        conn = self.conn
        self._retrying(lambda: conn.execute("BEGIN IMMEDIATE"), "write to")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _read(self, sql: str, args=()) -> list[tuple]:
        """All rows of one read (a statement of its own), retried like an open (see ``_retrying``)."""
        conn = self.conn
        return self._retrying(lambda: conn.execute(sql, args).fetchall(), "read")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"ResultsStore({str(self.path)!r}, {state})"

    # -- writes ----------------------------------------------------------------------------------
    def start_run(self, run_id: str, experiment: str, name: str, seed: int, spec: dict) -> None:
        """Insert ``run_id`` as ``running``, or reset a ``running`` (killed) / ``failed`` one.

        A reset run loses its old epoch rows, error and record. Raises ``ValueError`` if the run
        is already ``finished``. Checkpoint files are left alone (see :meth:`checkpoint_dir`).
        """
        with self._tx() as c:
            row = c.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None and row[0] == "finished":
                raise ValueError(f"run {run_id} ({experiment}/{name}, seed {seed}) is already "
                                 "finished; refusing to restart it")
            c.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            c.execute(
                """INSERT INTO runs (run_id, experiment, name, seed, spec_json, status, started_at,
                                     finished_at, error, record_json, pid)
                   VALUES (?, ?, ?, ?, ?, 'running', ?, NULL, NULL, NULL, ?)
                   ON CONFLICT (run_id) DO UPDATE SET
                       experiment = excluded.experiment, name = excluded.name,
                       seed = excluded.seed, spec_json = excluded.spec_json,
                       status = 'running', started_at = excluded.started_at,
                       finished_at = NULL, error = NULL, record_json = NULL, pid = excluded.pid""",
                (run_id, experiment, name, int(seed), canonical_json(spec), _now(), os.getpid()))

    # -- claims: one process trains a run at a time --------------------------------------------
    def claim(self, run_id: str, experiment: str, name: str, seed: int, spec: dict, *,
              lease_s: float = LEASE_S, heartbeat_s: float = HEARTBEAT_S) -> "RunLease":
        """Claim ``run_id`` for this process, atomically; returns a :class:`RunLease` whose
        ``state`` says what happened:

        * ``"finished"``: the run is done (``lease.record`` holds its record); nothing was written.
        * ``"held"``: another live process holds it (``lease.holder`` says who); nothing was written.
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
                    return RunLease(self, run_id, "finished", record=_loads(record_json))
                if status == "running" and _alive(host, pid, heartbeat, lease_s):
                    return RunLease(self, run_id, "held", holder=f"pid {pid} on {host or 'unknown host'}")
            c.execute(
                """INSERT INTO runs (run_id, experiment, name, seed, spec_json, status, started_at,
                                     finished_at, error, record_json, pid, host, owner, heartbeat)
                   VALUES (?, ?, ?, ?, ?, 'running', ?, NULL, NULL, NULL, ?, ?, ?, ?)
                   ON CONFLICT (run_id) DO UPDATE SET
                       experiment = excluded.experiment, name = excluded.name, seed = excluded.seed,
                       spec_json = excluded.spec_json, status = 'running', started_at = excluded.started_at,
                       finished_at = NULL, error = NULL, record_json = NULL, pid = excluded.pid,
                       host = excluded.host, owner = excluded.owner, heartbeat = excluded.heartbeat""",
                (run_id, experiment, name, int(seed), canonical_json(spec), _now(), os.getpid(),
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
                (run_id, int(epoch), _dumps(metrics)))

    def finish_run(self, run_id: str, record: dict, token: str | None = None) -> None:
        """Mark a ``running`` run finished with its final record, in one transaction."""
        with self._tx() as c:
            self._require_status(c, run_id, ("running",), "finish")
            self._owned_tx(c, run_id, token, "finish")
            c.execute("""UPDATE runs SET status = 'finished', record_json = ?, finished_at = ?,
                                         error = NULL
                         WHERE run_id = ?""", (_dumps(record), _now(), run_id))

    def fail_run(self, run_id: str, error: str, token: str | None = None) -> None:
        """Mark a ``running`` (or re-mark a ``failed``) run failed with ``error``."""
        with self._tx() as c:
            self._require_status(c, run_id, ("running", "failed"), "fail")
            self._owned_tx(c, run_id, token, "fail")
            c.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = ? WHERE run_id = ?",
                      (str(error), _now(), run_id))

    @staticmethod
    def _require_status(c: sqlite3.Connection, run_id: str, allowed: tuple, action: str) -> None:
        row = c.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise ValueError(f"cannot {action} run {run_id}: no such run (call start_run first)")
        if row[0] not in allowed:
            raise ValueError(f"cannot {action} run {run_id}: it is {row[0]}")

    # -- reads -----------------------------------------------------------------------------------
    def status(self, run_id: str) -> str | None:
        rows = self._read("SELECT status FROM runs WHERE run_id = ?", (run_id,))
        return rows[0][0] if rows else None

    def is_finished(self, run_id: str) -> bool:
        return self.status(run_id) == "finished"

    def record(self, run_id: str) -> dict | None:
        """The record of a finished run (None otherwise): one row read, by key."""
        rows = self._read("SELECT record_json FROM runs WHERE run_id = ? AND status = 'finished'", (run_id,))
        return _loads(rows[0][0]) if rows else None

    def runs(self, experiment: str | None = None, status: str | None = None) -> list[dict]:
        """Runs (optionally of one experiment / status), ordered by experiment, name, seed.

        Each dict has the table's columns with ``spec`` and ``record`` decoded (record is ``None``
        unless finished) in place of ``spec_json`` / ``record_json``.
        """
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES} or None, not {status!r}")
        where, args = [], []
        if experiment is not None:
            where.append("experiment = ?")
            args.append(experiment)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = ("SELECT run_id, experiment, name, seed, spec_json, status, started_at, finished_at, "
               "error, record_json, pid FROM runs"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY experiment, name, seed, run_id")
        out = []
        for (run_id, exp, name, seed, spec_json, st, started, finished, error, record_json,
             pid) in self._read(sql, args):
            out.append({"run_id": run_id, "experiment": exp, "name": name, "seed": seed,
                        "spec": _loads(spec_json), "status": st, "started_at": started,
                        "finished_at": finished, "error": error, "record": _loads(record_json),
                        "pid": pid})
        return out

    def epochs(self, run_id: str) -> list[dict]:
        """The run's epochs in order, each ``{'epoch': n, **metrics}``."""
        rows = self._read("SELECT epoch, metrics_json FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,))
        return [{**json.loads(m), "epoch": e} for e, m in rows]

    def epochs_frame(self, experiment: str, status: str | None = "finished"):
        """DataFrame, one row per (run, epoch): run_id, name, seed, epoch, then metric columns.

        ``status=None`` includes runs of every status. Metrics named like a base column are
        shadowed by it.
        """
        import pandas as pd

        base = ["run_id", "name", "seed", "epoch"]
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES} or None, not {status!r}")
        sql = ("SELECT r.run_id, r.name, r.seed, e.epoch, e.metrics_json FROM epochs e "
               "JOIN runs r ON r.run_id = e.run_id WHERE r.experiment = ?"
               + (" AND r.status = ?" if status is not None else "")
               + " ORDER BY r.name, r.seed, r.run_id, e.epoch")
        args = [experiment] + ([status] if status is not None else [])
        rows = []
        for run_id, name, seed, epoch, metrics_json in self._read(sql, args):
            row = _flatten(json.loads(metrics_json))
            row.update(run_id=run_id, name=name, seed=seed, epoch=epoch)
            rows.append(row)
        return _frame(pd, rows, base)

    def runs_frame(self, experiment: str, status: str | None = "finished"):
        """DataFrame, one row per run: run_id, name, seed, then the flattened record.

        Nested record dicts become dotted columns (``{'valid': {'acc': 1}}`` -> ``valid.acc``);
        lists stay as cell values. Record keys named like a base column are shadowed by it.
        """
        import pandas as pd

        rows = []
        for r in self.runs(experiment, status):
            row = _flatten(r["record"] or {})
            row.update(run_id=r["run_id"], name=r["name"], seed=r["seed"])
            rows.append(row)
        return _frame(pd, rows, ["run_id", "name", "seed"])

    # -- raw results as JSON lines (committed beside reports; see `lookahead-fastai store`) --------
    def export_jsonl(self, experiment: str, path: str | os.PathLike) -> int:
        """Write every finished run of ``experiment`` (spec, record, epoch rows) to ``path``, one JSON
        object per line in a stable order; returns the number of runs. Atomic (temp file + rename)."""
        path = Path(path)
        lines = []
        for r in self.runs(experiment, status="finished"):
            lines.append(_dumps({"run_id": r["run_id"], "experiment": r["experiment"], "name": r["name"],
                                 "seed": r["seed"], "spec": r["spec"], "started_at": r["started_at"],
                                 "finished_at": r["finished_at"], "record": r["record"],
                                 "epochs": self.epochs(r["run_id"])}))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        tmp.replace(path)
        return len(lines)

    def import_jsonl(self, path: str | os.PathLike) -> tuple[int, int]:
        """Add the finished runs of an exported file, all of them in one transaction or none; returns
        (added, already present: the same record). Every line is checked first (``store_import``: the
        schema, sizes, finite numbers, its run id recomputed from its spec and seed), then against
        the store: a run finished here with another record, or held by a live claim (a process is
        training it), is refused, and so are two lines of one run with different contents. Any refusal
        raises one ValueError naming the file, the line and the field, and writes nothing. Each run
        added keeps where it came from: the file's name and sha256 (:meth:`imported`)."""
        from .store_import import BadLine, parse_line
        path = Path(path)
        data = path.read_bytes()
        source = f"{path.name} sha256:{hashlib.sha256(data).hexdigest()[:16]}"
        runs: dict[str, tuple[int, dict, str]] = {}  # run_id -> (line number, run, its canonical text)
        for number, raw in enumerate(data.split(b"\n"), 1):
            try:
                text = raw.decode("utf-8")
                if not text.strip():
                    continue
                run = parse_line(text)
            except (BadLine, UnicodeDecodeError) as exc:
                raise ValueError(f"{path}, line {number}: {exc}") from None
            body = _dumps({k: run[k] for k in ("experiment", "name", "seed", "spec", "record", "epochs")})
            if run["run_id"] in runs and runs[run["run_id"]][2] != body:
                raise ValueError(f"{path}, line {number}: field 'run_id': run {run['run_id']} is also on line "
                                 f"{runs[run['run_id']][0]}, with different contents")
            runs.setdefault(run["run_id"], (number, run, body))
        added = present = 0
        replaced = []
        with self._tx() as c:
            for run_id, (number, run, _) in runs.items():
                row = c.execute("SELECT status, record_json, host, pid, heartbeat FROM runs WHERE run_id = ?",
                                (run_id,)).fetchone()
                where = f"{path}, line {number}: run {run_id} ({run['experiment']}/{run['name']}, seed {run['seed']})"
                if row is not None and row[0] == "finished":
                    epochs = [(e, m) for e, m in c.execute(
                        "SELECT epoch, metrics_json FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,))]
                    if row[1] != _dumps(run["record"]) or epochs != _epoch_rows(run):
                        field = "record" if row[1] != _dumps(run["record"]) else "epochs"
                        raise ValueError(f"{where}: field '{field}': this store holds the run finished with a "
                                         "different one; nothing was imported")
                    present += 1
                    continue
                if row is not None and row[0] == "running" and _alive(row[2], row[3], row[4], LEASE_S):
                    raise ValueError(f"{where}: a process is training it (pid {row[3]} on {row[2]}); nothing was "
                                     "imported: import once it is done")
                c.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
                c.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
                c.execute("""INSERT INTO runs (run_id, experiment, name, seed, spec_json, status, started_at,
                                               finished_at, error, record_json, pid, imported_from)
                             VALUES (?, ?, ?, ?, ?, 'finished', ?, ?, NULL, ?, NULL, ?)""",
                          (run_id, run["experiment"], run["name"], run["seed"], canonical_json(run["spec"]),
                           run["started_at"] or _now(), run["finished_at"] or _now(), _dumps(run["record"]), source))
                c.executemany("INSERT INTO epochs (run_id, epoch, metrics_json) VALUES (?, ?, ?)",
                              [(run_id, e, m) for e, m in _epoch_rows(run)])
                if row is not None:
                    replaced.append(run_id)
                added += 1
        for run_id in replaced:  # a killed or failed attempt's checkpoint: the run is finished now
            self.drop_checkpoint(run_id)
        return added, present

    def imported(self, experiment: str | None = None) -> dict[str, str]:
        """{run_id: where it came from ('FILE sha256:DIGEST')} of the runs added by :meth:`import_jsonl`
        (of one experiment); empty for a store of schema < 3 opened read-only."""
        sql = "SELECT run_id, imported_from FROM runs WHERE imported_from IS NOT NULL"
        args: tuple = ()
        if experiment is not None:
            sql, args = sql + " AND experiment = ?", (experiment,)
        if self.schema_version < 3:  # no imported_from column (an older store, opened read-only)
            return {}
        return dict(self._read(sql, args))

    # -- checkpoints -----------------------------------------------------------------------------
    @property
    def store_id(self) -> str | None:
        """This store's identity: a random id written when it was created (or upgraded to schema 3);
        None for an older store opened read-only. Checkpoints carry it (:meth:`checkpoint_binding`)."""
        if self.schema_version < 3:  # no store_meta table (an older store, opened read-only)
            return None
        rows = self._read("SELECT value FROM store_meta WHERE key = 'store_id'")
        return rows[0][0] if rows else None

    def checkpoint_binding(self, run_id: str) -> dict:
        """What a checkpoint of ``run_id`` written for this store carries, and must carry to be resumed
        from: this store's id, the run id and a digest of the run's spec."""
        rows = self._read("SELECT spec_json FROM runs WHERE run_id = ?", (run_id,))
        spec = hashlib.sha256(rows[0][0].encode("utf-8")).hexdigest()[:16] if rows else None
        return {"store": self.store_id, "run_id": run_id, "spec": spec}

    def checkpoint_digests(self, run_id: str) -> list[str]:
        """The sha256 digests of the run's last two checkpoints this store wrote (newest first): a
        checkpoint file whose digest is not one of them is not resumed from."""
        rows = self._read("SELECT checkpoint_digests FROM runs WHERE run_id = ?", (run_id,))
        return json.loads(rows[0][0]) if rows and rows[0][0] else []

    def record_checkpoint(self, run_id: str, digest: str, token: str | None = None) -> None:
        """Record the digest of the checkpoint about to replace the run's last one. The one before
        stays accepted too: a kill between this and the file's rename leaves that one in place."""
        with self._tx() as c:
            self._require_status(c, run_id, ("running",), "record a checkpoint of")
            self._owned_tx(c, run_id, token, "record a checkpoint of")
            (old,) = c.execute("SELECT checkpoint_digests FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            digests = [digest] + [d for d in (json.loads(old) if old else [])[:1] if d != digest]
            c.execute("UPDATE runs SET checkpoint_digests = ? WHERE run_id = ?", (json.dumps(digests), run_id))

    @property
    def files_dir(self) -> Path:
        """This store's own folder of artefacts: ``<db_dir>/<db_stem>.files/`` (checkpoints,
        lr_find curves, W&B files), so two stores in one folder never share them."""
        return store_files_dir(self.path)

    def checkpoint_dir(self, run_id: str) -> Path:
        """``<db_dir>/<db_stem>.files/checkpoints/<run_id>/``, created if missing."""
        d = self._checkpoint_path(run_id)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def drop_checkpoint(self, run_id: str) -> bool:
        """Delete the run's checkpoint (e.g. once it finished); True if one existed. Checkpoints
        that were moved aside as unusable (``last.pth.unusable-*``; ``unreadable-`` before) are kept
        for inspection: the warning that moved them names them."""
        d = self._checkpoint_path(run_id)
        if not d.exists():
            return False
        aside = [p for p in d.iterdir() if ".unusable-" in p.name or ".unreadable-" in p.name]
        if not aside:
            shutil.rmtree(d)
            return True
        rest = [p for p in d.iterdir() if p not in aside]
        for p in rest:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        return bool(rest)

    def _checkpoint_path(self, run_id: str) -> Path:
        if not _SAFE_RUN_ID.match(run_id) or run_id in (".", ".."):
            raise ValueError(f"run_id {run_id!r} is not safe as a directory name")
        return self.files_dir / "checkpoints" / run_id


def store_files_dir(path: str | os.PathLike) -> Path:
    """The folder of artefacts that belongs to the store at ``path``: ``<dir>/<stem>.files/``."""
    path = Path(path)
    return path.parent / f"{path.stem}.files"


class StoreBusy(sqlite3.OperationalError):
    """Another process held the store for longer than the busy timeout."""


class LeaseLost(RuntimeError):
    """This process's claim on a run was taken over by another process (its heartbeat went stale)."""


class RunLease:
    """What :meth:`ResultsStore.claim` returns: the outcome (``state``) and, when ``"claimed"``, the
    one handle through which the run's life is written: epoch rows, checkpoint location, finish or
    fail. From :meth:`ResultsStore.observe` (state ``"observed"``) the same handle writes nothing. A heartbeat thread renews the claim until the lease ends. Also a context manager (the
    heartbeat stops on exit; a run neither finished nor failed then stays ``running``, and is taken
    over by the next process that claims it)."""

    def __init__(self, store, run_id, state, *, record=None, holder=None, token=None, heartbeat_s=HEARTBEAT_S):
        self.store, self.run_id, self.state = store, run_id, state
        self.record, self.holder, self.token = record, holder, token
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
        from .checkpoint import read_checkpoint  # torch: only where a run trains
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
        return False  # written by a store of schema 1, or by start_run: nobody renews it
    if host == socket.gethostname() and pid is not None:
        if pid == os.getpid() or not _pid_alive(pid):
            return False
    return time.time() - heartbeat <= lease_s


def _frame(pd, rows: list[dict], base: list[str]):
    if not rows:
        return pd.DataFrame(columns=base)
    df = pd.DataFrame(rows)
    rest = [c for c in df.columns if c not in base]
    return df[base + rest].reset_index(drop=True)


def _quote(path: Path) -> str:
    from urllib.parse import quote
    return quote(str(path))


def _os_reason(exc: OSError) -> str:
    """An OSError as one short line: 'Permission denied', 'File name too long', ..."""
    reason = exc.strerror or type(exc).__name__
    return f"{reason} ({exc.filename})" if getattr(exc, "filename", None) else reason


def _on_readonly_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, extended codes (BUSY_RECOVERY, BUSY_SNAPSHOT, ...) included."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg
