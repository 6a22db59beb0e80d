"""Raw results as JSON lines (committed beside reports; see ``lookahead-fastai store``): export an
experiment's finished runs, import a file's runs all or nothing (each line checked by
:mod:`~lookahead_fastai.store.lines` first)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .codec import canonical_json, dumps, now
from .leases import LEASE_S, _alive

__all__ = ["JsonLines"]


def _epoch_rows(run: dict) -> list[tuple[int, str]]:
    """An exported run's epoch rows as the epochs table holds them: (epoch, metrics JSON)."""
    return [(e["epoch"], dumps({k: v for k, v in e.items() if k != "epoch"})) for e in run["epochs"]]


class JsonLines:
    """Export and import of a :class:`~lookahead_fastai.store.ResultsStore`."""

    def export_jsonl(self, experiment: str, path: str | os.PathLike) -> int:
        """Write every finished run of ``experiment`` (spec, record, epoch rows) to ``path``, one JSON
        object per line in a stable order; returns the number of runs. Atomic (temp file + rename)."""
        path = Path(path)
        lines = []
        for r in self.runs(experiment, status="finished"):
            lines.append(dumps({"run_id": r["run_id"], "experiment": r["experiment"], "name": r["name"],
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
        (added, already present: the same record). Every line is checked first (:mod:`.lines`: the
        schema, sizes, finite numbers, its run id recomputed from its spec and seed), then against
        the store: a run finished here with another record, or held by a live claim (a process is
        training it), is refused, and so are two lines of one run with different contents. Any refusal
        raises one ValueError naming the file, the line and the field, and writes nothing. Each run
        added keeps where it came from: the file's name and sha256 (:meth:`imported`)."""
        from .lines import BadLine, parse_line
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
            body = dumps({k: run[k] for k in ("experiment", "name", "seed", "spec", "record", "epochs")})
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
                    if row[1] != dumps(run["record"]) or epochs != _epoch_rows(run):
                        field = "record" if row[1] != dumps(run["record"]) else "epochs"
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
                           run["started_at"] or now(), run["finished_at"] or now(), dumps(run["record"]), source))
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

