"""Opening a results store: the schema (creation, upgrades, refusing a file that is not ours), the
connection, short write transactions and retries while another process holds the file."""
from __future__ import annotations

import os
import random
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["StoreBase", "StoreBusy", "SCHEMA_VERSION"]

SCHEMA_VERSION = 3

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


class StoreBusy(sqlite3.OperationalError):
    """Another process held the store for longer than the busy timeout."""


class StoreBase:
    """The connection of a :class:`~lookahead_fastai.store.ResultsStore`: opening (see its
    docstring), the schema, ``_tx`` (one write transaction) and ``_read`` (one read), both retried
    while SQLite answers BUSY."""

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
