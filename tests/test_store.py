"""Tests of the crash-safe SQLite results store (lookahead_fastai/store/)."""
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lookahead_fastai import store as store_mod
from lookahead_fastai.store import SCHEMA_VERSION, ResultsStore, run_identity

SPEC = {"model": "resnet18", "opt": {"name": "lookahead", "k": 5, "alpha": 0.5}, "epochs": 3}


@pytest.fixture
def store(tmp_path):
    with ResultsStore(tmp_path / "sub" / "dir" / "results.db") as s:
        yield s


def _start(store, spec=SPEC, seed=0, experiment="exp", name="la"):
    rid = run_identity(spec, seed)
    store.claim(rid, experiment, name, seed, spec, heartbeat_s=0)
    return rid


# -- identity ------------------------------------------------------------------------------------
def test_identity_stable_across_key_order():
    reordered = {"epochs": 3, "opt": {"alpha": 0.5, "k": 5, "name": "lookahead"}, "model": "resnet18"}
    rid = run_identity(SPEC, 0)
    assert rid == run_identity(reordered, 0)
    assert len(rid) == 16 and int(rid, 16) >= 0
    assert rid == run_identity(dict(SPEC), 0)  # deterministic


def test_identity_differs_for_seed_and_spec():
    rid = run_identity(SPEC, 0)
    assert rid != run_identity(SPEC, 1)
    assert rid != run_identity({**SPEC, "epochs": 4}, 0)
    assert rid != run_identity({**SPEC, "opt": {**SPEC["opt"], "k": 6}}, 0)


# -- opening -------------------------------------------------------------------------------------
def test_open_creates_parents_wal_and_schema(tmp_path):
    path = tmp_path / "a" / "b" / "r.db"
    with ResultsStore(path) as s:
        assert path.exists()
        assert s.journal_mode == "wal"
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with pytest.raises(ValueError, match="closed"):
        s.status("x")
    s.close()  # idempotent
    with ResultsStore(path, synchronous="full") as s:
        assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_garbage_file_raises_value_error(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_bytes(b"this is definitely not an sqlite database\n" * 100)
    with pytest.raises(ValueError) as ei:
        ResultsStore(bad)
    msg = str(ei.value)
    assert str(bad) in msg and "\n" not in msg
    assert bad.read_bytes().startswith(b"this is definitely")  # untouched


def test_directory_and_foreign_db_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        ResultsStore(tmp_path)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="not a results store"):
        ResultsStore(other)
    newer = tmp_path / "newer.db"
    ResultsStore(newer).close()
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="newer"):
        ResultsStore(newer)


def test_a_store_created_by_another_process_while_this_one_checks_it_is_not_taken_for_foreign(tmp_path):
    """CI once failed this way: two sweeps started together on a new store; the second read
    user_version 0, the first then created the schema, and the second counted the new tables as
    another program's. Here the other creator starts exactly between the two reads."""
    import threading

    path = tmp_path / "new.sqlite"
    created = []

    class Between:  # the checking connection; the creator starts after its first read
        def __init__(self, conn):
            self._conn = conn

        def execute(self, sql, *args):
            rows = self._conn.execute(sql, *args).fetchall()  # the statement is done (reset) here
            cur = type("Rows", (list,), {"fetchone": lambda self: self[0] if self else None})(rows)
            if sql.startswith("PRAGMA user_version") and not created:
                thread = threading.Thread(target=lambda: created.append(ResultsStore(path).close()))
                thread.start()
                created.append(thread)
                time.sleep(0.5)  # long enough for the creator to commit, unless the check holds a snapshot
            return cur

    class Checked(ResultsStore):
        def _check_schema(self, conn):
            return super()._check_schema(Between(conn))

    with Checked(path) as s:
        created[0].join(timeout=30)
        assert len(created) == 2, "the other creator did not finish"
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# -- lifecycle -----------------------------------------------------------------------------------
def test_start_log_finish_read_back(tmp_path):
    path = tmp_path / "r.db"
    with ResultsStore(path) as s:
        rid = _start(s)
        assert s.status(rid) == "running" and not s.is_finished(rid)
        for e in range(3):
            s.log_epoch(rid, e, {"train_loss": 1.0 / (e + 1), "valid": {"acc": 0.5 + e / 10}})
        s.log_epoch(rid, 2, {"train_loss": 0.25, "valid": {"acc": 0.8}})  # upsert
        s.finish_run(rid, {"final_acc": 0.8, "time_s": 12.5, "hist": [1, 2, 3]})
    with ResultsStore(path) as s:  # reopened: persisted
        assert s.status(rid) == "finished" and s.is_finished(rid)
        assert s.status("nope") is None
        (run,) = s.runs()
        assert run["run_id"] == rid and run["experiment"] == "exp" and run["name"] == "la"
        assert run["seed"] == 0 and run["spec"] == SPEC and run["status"] == "finished"
        assert run["record"] == {"final_acc": 0.8, "time_s": 12.5, "hist": [1, 2, 3]}
        assert run["finished_at"] and run["started_at"] and run["error"] is None
        assert isinstance(run["pid"], int)
        eps = s.epochs(rid)
        assert [e["epoch"] for e in eps] == [0, 1, 2]
        assert eps[2] == {"epoch": 2, "train_loss": 0.25, "valid": {"acc": 0.8}}
        assert s.runs(experiment="other") == [] and s.runs(status="running") == []
        with pytest.raises(ValueError):
            s.runs(status="bogus")


def test_numpy_metrics_are_stored_as_numbers(store):
    np = pytest.importorskip("numpy")
    rid = _start(store)
    store.log_epoch(rid, 0, {"loss": np.float32(0.5), "n": np.int64(3), "v": np.arange(2)})
    assert store.epochs(rid) == [{"epoch": 0, "loss": 0.5, "n": 3, "v": [0, 1]}]


def test_finished_run_refuses_restart_and_writes(store):
    rid = _start(store)
    store.log_epoch(rid, 0, {"loss": 1.0})
    store.finish_run(rid, {"acc": 0.9})
    again = store.claim(rid, "exp", "la", 0, SPEC, heartbeat_s=0)  # a finished run is not claimed again
    assert again.state == "finished" and again.record == {"acc": 0.9}
    with pytest.raises(ValueError):
        store.log_epoch(rid, 1, {"loss": 0.5})
    with pytest.raises(ValueError):
        store.finish_run(rid, {"acc": 0.1})
    with pytest.raises(ValueError):
        store.fail_run(rid, "boom")
    assert store.runs()[0]["record"] == {"acc": 0.9}
    assert len(store.epochs(rid)) == 1


def test_writes_to_unknown_run_raise(store):
    for call in (lambda: store.log_epoch("0" * 16, 0, {}), lambda: store.finish_run("0" * 16, {}),
                 lambda: store.fail_run("0" * 16, "x")):
        with pytest.raises(ValueError, match="no such run"):
            call()


def test_running_run_is_restarted_and_stale_epochs_removed(tmp_path):
    path = tmp_path / "r.db"
    with ResultsStore(path) as s:
        rid = _start(s)
        for e in range(3):
            s.log_epoch(rid, e, {"loss": 9.0})
    # "process killed": reopen and redo the run
    with ResultsStore(path) as s:
        assert s.status(rid) == "running"
        lease = s.claim(rid, "exp", "la", 0, SPEC, heartbeat_s=0)  # our own leftover claim: stale
        assert lease.state == "claimed" and len(s.epochs(rid)) == 3  # kept for a resume ...
        lease.resume_from(0)  # ... which starts over here
        assert s.status(rid) == "running" and s.epochs(rid) == []
        s.log_epoch(rid, 0, {"loss": 1.0})
        s.finish_run(rid, {"acc": 1.0})
        assert [e["loss"] for e in s.epochs(rid)] == [1.0]
        assert len(s.runs()) == 1


def test_failed_run_recorded_and_redone(store):
    rid = _start(store)
    store.log_epoch(rid, 0, {"loss": float("nan")})
    store.fail_run(rid, "RuntimeError: loss is NaN")
    (run,) = store.runs(status="failed")
    assert run["error"] == "RuntimeError: loss is NaN" and run["record"] is None
    assert not store.is_finished(rid)
    store.claim(rid, "exp", "la", 0, SPEC, heartbeat_s=0).resume_from(0)  # redo from the start
    (run,) = store.runs()
    assert run["status"] == "running" and run["error"] is None and store.epochs(rid) == []


# -- frames --------------------------------------------------------------------------------------
def test_frames(store):
    for name in ("adam", "la"):
        for seed in (0, 1):
            spec = {**SPEC, "opt": name}
            rid = _start(store, spec=spec, seed=seed, name=name)
            for e in range(2):
                store.log_epoch(rid, e, {"loss": 1.0 / (e + 1) + seed, "valid": {"acc": e / 2}})
            store.finish_run(rid, {"final_acc": 0.5 + seed / 10, "valid": {"loss": 0.1}})
    pending = _start(store, spec={**SPEC, "opt": "sgd"}, name="sgd")
    store.log_epoch(pending, 0, {"loss": 3.0})
    _start(store, experiment="elsewhere")

    ef = store.epochs_frame("exp")
    assert list(ef.columns[:4]) == ["run_id", "name", "seed", "epoch"]
    assert {"loss", "valid.acc"} <= set(ef.columns)
    assert len(ef) == 8 and set(ef["name"]) == {"adam", "la"}
    assert ef.groupby("name")["loss"].mean().to_dict() == pytest.approx({"adam": 1.25, "la": 1.25})
    assert len(store.epochs_frame("exp", status=None)) == 9
    assert len(store.epochs_frame("exp", status="running")) == 1

    empty = store.epochs_frame("missing")
    assert len(empty) == 0 and list(empty.columns) == ["run_id", "name", "seed", "epoch"]


# -- checkpoints ---------------------------------------------------------------------------------
def test_checkpoint_dir_and_drop(store):
    rid = _start(store)
    d = store.checkpoint_dir(rid)
    # checkpoints belong to their store: <dir>/<stem>.files/checkpoints/<run_id>/
    assert d == store.path.parent / "results.files" / "checkpoints" / rid and d.is_dir()
    (d / "epoch_0.pth").write_bytes(b"weights")
    assert store.checkpoint_dir(rid) == d and (d / "epoch_0.pth").exists()
    store.finish_run(rid, {})
    assert store.drop_checkpoint(rid) is True and not d.exists()
    assert store.drop_checkpoint(rid) is False
    for bad in ("../evil", "a/b", "..", ""):
        with pytest.raises(ValueError):
            store.checkpoint_dir(bad)


# -- crash safety --------------------------------------------------------------------------------
_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])  # the checkout under test
    import lookahead_fastai.store as m
    s = m.ResultsStore(sys.argv[2])
    i = 0
    while True:  # an endless sweep that, like the runner, skips runs already finished
        run_spec = {"model": "m", "i": i}
        rid = m.run_identity(run_spec, 0)
        if not s.is_finished(rid):
            s.claim(rid, "crash", f"run{i:05d}", 0, run_spec, heartbeat_s=0).resume_from(0)
            for e in range(3):
                s.log_epoch(rid, e, {"loss": 1.0 / (e + 1), "i": i})
            s.finish_run(rid, {"i": i, "acc": i / 1000, "blob": "x" * 500})
            print(i, flush=True)  # only after finish_run has committed
        i += 1
""")


def _run_and_kill(store_path, n_reported, delay_s):
    """Start the writer, wait until it reported n_reported finished runs, sleep, SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(Path(store_mod.__file__).parents[2]), str(store_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reported = []
    try:
        while len(reported) < n_reported:
            line = proc.stdout.readline()
            if not line:
                break
            reported.append(int(line))
        time.sleep(delay_s)  # so the kill lands at an arbitrary point of the write loop
    finally:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    reported += [int(x) for x in out.split()]
    assert proc.returncode == -signal.SIGKILL, err
    assert len(reported) >= n_reported, err
    return reported


def test_sigkill_midway_keeps_db_consistent(tmp_path):
    path = tmp_path / "crash.db"
    reported = []
    for delay_s in (0.0, 0.002, 0.004):  # killed, resumed, killed again ...
        reported += _run_and_kill(path, 15, delay_s)
    assert len(reported) == len(set(reported))  # a resumed sweep never redid a finished run

    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()

    with ResultsStore(path) as s:
        runs = s.runs("crash", status=None)
        names = [r["name"] for r in runs]
        assert len(names) == len(set(names))  # no duplicates
        finished = [r for r in runs if r["status"] == "finished"]
        # every run the writer reported as finished is finished, and runs form a gap-free prefix
        idx = sorted(r["record"]["i"] for r in finished)
        assert idx == list(range(len(idx))) and set(reported) <= set(idx)
        for r in finished:
            i = r["record"]["i"]
            assert r["name"] == f"run{i:05d}" and r["spec"] == {"model": "m", "i": i}
            assert r["record"] == {"i": i, "acc": i / 1000, "blob": "x" * 500}
            assert r["run_id"] == run_identity(r["spec"], 0) and r["finished_at"]
            assert [e["epoch"] for e in s.epochs(r["run_id"])] == [0, 1, 2]
        others = [r for r in runs if r["status"] != "finished"]
        assert len(others) <= 1 and all(r["status"] == "running" for r in others)
        assert len(runs) in (len(idx), len(idx) + 1)
        # a resumed sweep redoes the interrupted run
        for r in others:
            lease = s.claim(r["run_id"], "crash", r["name"], 0, r["spec"], heartbeat_s=0)  # the killed writer's
            assert lease.state == "claimed"
            lease.resume_from(0)
            assert s.epochs(r["run_id"]) == []
            s.finish_run(r["run_id"], {"i": r["spec"]["i"]})
        assert all(r["status"] == "finished" for r in s.runs("crash"))


# -- paths: importable without the training stack ------------------------------------------------
def test_store_paths_import_without_torch_or_fastai():
    """In a fresh interpreter, importing lookahead_fastai.store.paths (the default store, its files
    folder, checkpoint and lr_find paths) loads neither torch nor fastai."""
    code = ("import json, sys; from lookahead_fastai.store.paths import DEFAULT_STORE, lr_find_path; "
            "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert [m for m in loaded if m.split(".")[0] in ("torch", "fastai", "pandas", "numpy")] == []


def test_store_paths():
    from lookahead_fastai.store.paths import DEFAULT_STORE, checkpoint_path, lr_find_path, store_files_dir
    assert DEFAULT_STORE == Path("runs") / "results.sqlite"
    assert store_files_dir("runs/results.sqlite") == Path("runs") / "results.files"
    assert checkpoint_path("a/r.db", "abc") == Path("a") / "r.files" / "checkpoints" / "abc"
    assert lr_find_path("a/r.db", "exp", "smoke") == Path("a") / "r.files" / "lr_find" / "exp_smoke.json"
    for bad in ("../evil", "a/b", "..", ""):
        with pytest.raises(ValueError):
            checkpoint_path("a/r.db", bad)
