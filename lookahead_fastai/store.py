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

Several processes may share one store (e.g. parallel workers): writes take the write lock up front
(``BEGIN IMMEDIATE``) and wait up to ``busy_timeout_ms`` for it.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["ResultsStore", "run_identity", "canonical_json", "SCHEMA_VERSION", "STATUSES"]

SCHEMA_VERSION = 1
STATUSES = ("running", "finished", "failed")

_SQLITE_HEADER = b"SQLite format 3\x00"
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
    pid         INTEGER
);
CREATE INDEX runs_experiment_status ON runs (experiment, status);
CREATE TABLE epochs (
    run_id       TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    epoch        INTEGER NOT NULL,
    metrics_json TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
"""


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
    ``ValueError`` when ``path`` is not an SQLite database, or is one written by something else
    (another schema or a newer schema version).
    """

    def __init__(self, path: str | os.PathLike, *, synchronous: str = "NORMAL",
                 busy_timeout_ms: int = 30_000) -> None:
        synchronous = synchronous.upper()
        if synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = Path(path).expanduser().resolve()
        self._conn: sqlite3.Connection | None = None
        self._check_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=busy_timeout_ms / 1000, isolation_level=None)
        except sqlite3.Error as exc:
            raise ValueError(f"cannot open results store {self.path}: {exc}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._conn = conn
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            conn.close()
            self._conn = None
            if _is_busy(exc):
                raise
            raise ValueError(f"{self.path} is not a usable SQLite database: {exc}") from None
        except BaseException:
            conn.close()
            self._conn = None
            raise
        self.journal_mode = str(mode).lower()

    # -- opening ---------------------------------------------------------------------------------
    def _check_file(self) -> None:
        if self.path.is_dir():
            raise ValueError(f"{self.path} is a directory, not an SQLite database")
        if self.path.exists() and self.path.stat().st_size > 0:
            try:
                with open(self.path, "rb") as fh:
                    header = fh.read(len(_SQLITE_HEADER))
            except OSError as exc:
                raise ValueError(f"cannot read results store {self.path}: {exc}") from None
            if header != _SQLITE_HEADER:
                raise ValueError(f"{self.path} is not an SQLite database (bad file header)")

    def _init_schema(self) -> None:
        with self._tx() as c:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                raise ValueError(f"{self.path} has results-store schema version {version}, newer "
                                 f"than this code's {SCHEMA_VERSION}; upgrade lookahead_fastai")
            if version == 0:
                n = c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if n:
                    raise ValueError(f"{self.path} is an SQLite database but not a results store "
                                     f"(it already holds {n} other schema objects)")
            for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
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
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

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

    def log_epoch(self, run_id: str, epoch: int, metrics: dict) -> None:
        """Upsert one epoch's metrics of a ``running`` run (own transaction)."""
        with self._tx() as c:
            self._require_status(c, run_id, ("running",), "log an epoch to")
            c.execute(
                """INSERT INTO epochs (run_id, epoch, metrics_json) VALUES (?, ?, ?)
                   ON CONFLICT (run_id, epoch) DO UPDATE SET metrics_json = excluded.metrics_json""",
                (run_id, int(epoch), _dumps(metrics)))

    def finish_run(self, run_id: str, record: dict) -> None:
        """Mark a ``running`` run finished with its final record, in one transaction."""
        with self._tx() as c:
            self._require_status(c, run_id, ("running",), "finish")
            c.execute("""UPDATE runs SET status = 'finished', record_json = ?, finished_at = ?,
                                         error = NULL
                         WHERE run_id = ?""", (_dumps(record), _now(), run_id))

    def fail_run(self, run_id: str, error: str) -> None:
        """Mark a ``running`` (or re-mark a ``failed``) run failed with ``error``."""
        with self._tx() as c:
            self._require_status(c, run_id, ("running", "failed"), "fail")
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
        row = self.conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else row[0]

    def is_finished(self, run_id: str) -> bool:
        return self.status(run_id) == "finished"

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
             pid) in self.conn.execute(sql, args):
            out.append({"run_id": run_id, "experiment": exp, "name": name, "seed": seed,
                        "spec": _loads(spec_json), "status": st, "started_at": started,
                        "finished_at": finished, "error": error, "record": _loads(record_json),
                        "pid": pid})
        return out

    def epochs(self, run_id: str) -> list[dict]:
        """The run's epochs in order, each ``{'epoch': n, **metrics}``."""
        rows = self.conn.execute(
            "SELECT epoch, metrics_json FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,))
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
        for run_id, name, seed, epoch, metrics_json in self.conn.execute(sql, args):
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

    # -- checkpoints -----------------------------------------------------------------------------
    def checkpoint_dir(self, run_id: str) -> Path:
        """``<db_dir>/checkpoints/<run_id>/``, created if missing."""
        d = self._checkpoint_path(run_id)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def drop_checkpoint(self, run_id: str) -> bool:
        """Delete the run's checkpoint directory (e.g. once it finished); True if one existed."""
        d = self._checkpoint_path(run_id)
        if not d.exists():
            return False
        shutil.rmtree(d)
        return True

    def _checkpoint_path(self, run_id: str) -> Path:
        if not _SAFE_RUN_ID.match(run_id) or run_id in (".", ".."):
            raise ValueError(f"run_id {run_id!r} is not safe as a directory name")
        return self.path.parent / "checkpoints" / run_id


def _frame(pd, rows: list[dict], base: list[str]):
    if not rows:
        return pd.DataFrame(columns=base)
    df = pd.DataFrame(rows)
    rest = [c for c in df.columns if c not in base]
    return df[base + rest].reset_index(drop=True)


def _is_busy(exc: sqlite3.Error) -> bool:
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg
