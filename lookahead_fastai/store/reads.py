"""Reading a results store: a run's status and record, runs, epoch rows, and epoch rows as a
DataFrame (pandas is imported only there)."""
from __future__ import annotations

import json

from .codec import flatten, loads

__all__ = ["Reads", "STATUSES"]

STATUSES = ("running", "finished", "failed")


class Reads:
    """The reads of a :class:`~lookahead_fastai.store.ResultsStore`."""

    def status(self, run_id: str) -> str | None:
        rows = self._read("SELECT status FROM runs WHERE run_id = ?", (run_id,))
        return rows[0][0] if rows else None

    def is_finished(self, run_id: str) -> bool:
        return self.status(run_id) == "finished"

    def record(self, run_id: str) -> dict | None:
        """The record of a finished run (None otherwise): one row read, by key."""
        rows = self._read("SELECT record_json FROM runs WHERE run_id = ? AND status = 'finished'", (run_id,))
        return loads(rows[0][0]) if rows else None

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
                        "spec": loads(spec_json), "status": st, "started_at": started,
                        "finished_at": finished, "error": error, "record": loads(record_json),
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
            row = flatten(json.loads(metrics_json))
            row.update(run_id=run_id, name=name, seed=seed, epoch=epoch)
            rows.append(row)
        return _frame(pd, rows, base)


def _frame(pd, rows: list[dict], base: list[str]):
    if not rows:
        return pd.DataFrame(columns=base)
    df = pd.DataFrame(rows)
    rest = [c for c in df.columns if c not in base]
    return df[base + rest].reset_index(drop=True)

