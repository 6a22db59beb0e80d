"""A run's life in the store (issue 9): crash-exact resume through the CLI, checkpoints that are data,
checkpoints that belong to their store, several processes on one store, raw results as JSON lines.

The CLI processes run ``tests/lifecycle_cli.py`` (``python -m lookahead_fastai.cli`` plus a small
``lifecycle`` experiment and kill / count hooks wrapped around the package from outside) or the
console module itself, each with one thread (``OMP_NUM_THREADS=1``), so that runs are bit-for-bit
comparable across processes.
"""
import json
import os
import pickle
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
import torch

from lookahead_fastai.checkpoint import CHECKPOINT_NAME, CheckpointWarning
from lookahead_fastai.experiments import get_experiment
from lookahead_fastai.runner import fit_and_record, train
from lookahead_fastai.store import LEASE_S, LeaseLost, ResultsStore, run_identity, store_files_dir

LAUNCHER = Path(__file__).with_name("lifecycle_cli.py")
CLI = [sys.executable, "-m", "lookahead_fastai.cli"]
TIMEOUT = 600  # the machine may be shared and slow: generous


def child_env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for key in ("LIFECYCLE_KILL", "LIFECYCLE_TRAINED", "LIFECYCLE_READY", "LIFECYCLE_GO"):
        env.pop(key, None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def launch(*args, cwd, **env):
    return subprocess.run([sys.executable, str(LAUNCHER), *args], cwd=cwd, env=child_env(**env),
                          capture_output=True, text=True, timeout=TIMEOUT)


def by_name(store):
    """{row name: (run dict, [epoch rows without their wall time])} of every run in the store."""
    with ResultsStore(store, readonly=True) as db:
        return {r["name"]: (r, [{k: v for k, v in e.items() if k != "time"} for e in db.epochs(r["run_id"])])
                for r in db.runs()}


def raw_run(store, run_id):
    with closing(sqlite3.connect(store)) as conn:
        return conn.execute("SELECT status, pid, host, owner, heartbeat FROM runs WHERE run_id = ?",
                            (run_id,)).fetchone()


def checkpoint_epoch(path):
    return torch.load(path, weights_only=True)["epoch"]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def without_time(metrics):
    return {k: v for k, v in metrics.items() if k != "time"}


# ------------------------------------------------------------------------------------------------
# 1. crash-exact resume
# ------------------------------------------------------------------------------------------------
# (row, when, epoch): each run is SIGKILLed twice, at two different epochs, and resumed each time;
# "after": right after the epoch's checkpoint is on disk; "before": the epoch's metrics are in the
# store but its checkpoint is not written yet (the resume must drop that row and train it again)
KILLS = [("SGD", "after", 1), ("SGD", "before", 3),
         ("LA/SGD", "before", 1), ("LA/SGD", "after", 3),
         ("SGD · mixup", "after", 1), ("SGD · mixup", "after", 3)]


@pytest.mark.slow
def test_runs_killed_at_two_epochs_resume_to_the_uninterrupted_metrics(tmp_path):
    reference = subprocess.Popen([sys.executable, str(LAUNCHER), "run", "lifecycle", "--store", "ref.sqlite"],
                                 cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
    store = tmp_path / "killed.sqlite"
    args = ("run", "lifecycle", "--store", str(store))
    try:
        for row, when, epoch in KILLS:
            proc = subprocess.Popen([sys.executable, str(LAUNCHER), *args], cwd=tmp_path,
                                    env=child_env(LIFECYCLE_KILL=f"{row}@{when}@{epoch}"),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == -9, (row, when, epoch, out, err)  # SIGKILL
            assert "skipped" not in out, out  # the previous kill's claim (dead pid) was taken over
            assert "CheckpointWarning" not in err, err  # each resume used the checkpoint its store recorded
            run, rows = by_name(store)[row]
            status, pid, host, owner, heartbeat = raw_run(store, run["run_id"])
            # the claim left behind: a dead process on this host, with a heartbeat still fresh
            assert (status, pid, host) == ("running", proc.pid, socket.gethostname()), (row, when, epoch, err)
            assert not pid_alive(pid)
            assert time.time() - heartbeat < LEASE_S
            ckpt = store_files_dir(store) / "checkpoints" / run["run_id"] / CHECKPOINT_NAME
            assert checkpoint_epoch(ckpt) == (epoch if when == "after" else epoch - 1)
            assert [r["epoch"] for r in rows] == list(range(epoch + 1))
        final = subprocess.run([sys.executable, str(LAUNCHER), *args], cwd=tmp_path, env=child_env(),
                               capture_output=True, text=True, timeout=TIMEOUT)
        assert final.returncode == 0, final.stderr
        assert "CheckpointWarning" not in final.stderr, final.stderr
        assert "SGD · mixup seed 0: accuracy" in final.stdout and "skipped" not in final.stdout
        ref_out, ref_err = reference.communicate(timeout=TIMEOUT)
        assert reference.returncode == 0, ref_err
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()
    resumed, uninterrupted = by_name(store), by_name(tmp_path / "ref.sqlite")
    assert set(resumed) == set(uninterrupted) == {"SGD", "LA/SGD", "SGD · mixup"}
    for name, (run, rows) in resumed.items():
        ref_run, ref_rows = uninterrupted[name]
        assert run["status"] == ref_run["status"] == "finished"
        assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]
        assert rows == ref_rows, name  # ==, every metric of every epoch
        record, ref_record = run["record"], ref_run["record"]
        assert without_time(record["final"]) == without_time(ref_record["final"]), name
        assert record["slow"] == ref_record["slow"] and record["best_accuracy"] == ref_record["best_accuracy"]
        assert record["epochs"] == 5
    assert resumed["LA/SGD"][0]["record"]["slow"] is not None
    assert not (store_files_dir(store) / "checkpoints").exists() or \
        not any((store_files_dir(store) / "checkpoints").iterdir())  # dropped once finished


# ------------------------------------------------------------------------------------------------
# 2. checkpoints are data, not code
# ------------------------------------------------------------------------------------------------
class Payload:
    """Unpickling this runs a shell command (what a planted checkpoint could do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.slow
def test_planted_or_broken_checkpoints_never_run_and_the_grid_goes_on(tmp_path):
    store = tmp_path / "results.sqlite"
    specs = {s.name: s for s in get_experiment("demo").specs("smoke")}
    marker = tmp_path / "payload-ran"
    ckpt_dir = {name: store_files_dir(store) / "checkpoints" / s.run_id(0) for name, s in specs.items()}
    for d in ckpt_dir.values():
        d.mkdir(parents=True)
    # torch's zip format with a code-running object, a legacy plain pickle, a truncated file, garbage
    torch.save({"epoch": 0, "history": [], "model": Payload(marker)}, ckpt_dir["SGD"] / CHECKPOINT_NAME)
    with open(ckpt_dir["LA/SGD"] / CHECKPOINT_NAME, "wb") as fh:
        pickle.dump({"epoch": 0, "x": Payload(marker)}, fh)
    torch.save({"epoch": 0, "w": torch.randn(1000)}, tmp_path / "good.pth")
    whole = (tmp_path / "good.pth").read_bytes()
    (ckpt_dir["AdamW"] / CHECKPOINT_NAME).write_bytes(whole[: len(whole) // 2])
    (ckpt_dir["LA/AdamW"] / CHECKPOINT_NAME).write_bytes(b"\x00garbage" * 100)
    # the payload is live: loading it the way the code before issue 9 did runs it
    control = tmp_path / "control-ran"
    torch.save({"x": Payload(control)}, tmp_path / "control.pth")
    torch.load(tmp_path / "control.pth", weights_only=False)
    assert control.exists()

    proc = subprocess.run([*CLI, "run", "demo", "--scale", "smoke", "--seeds", "1", "--store", str(store)],
                          cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    warnings = proc.stderr.strip().splitlines()
    assert len(warnings) == 4, proc.stderr  # one line per checkpoint, nothing else
    for name, d in ckpt_dir.items():
        line = next(w for w in warnings if str(d / CHECKPOINT_NAME) in w)
        assert "CheckpointWarning" in line and "the run starts over" in line
        aside = [p.name for p in d.iterdir()] if d.exists() else []
        assert len(aside) == 1 and aside[0].startswith(f"{CHECKPOINT_NAME}.unusable-"), (name, aside)
        assert aside[0] in line
    runs = by_name(store)
    assert {n: r["status"] for n, (r, _) in runs.items()} == dict.fromkeys(specs, "finished")
    assert all([e["epoch"] for e in rows] == [0, 1] for _, rows in runs.values())  # started over
    assert "█" not in proc.stdout + proc.stderr and "\r" not in proc.stdout  # stdout is a pipe: no bars


# ------------------------------------------------------------------------------------------------
# 3. checkpoints belong to their store
# ------------------------------------------------------------------------------------------------
class Stop(Exception):
    pass


def killed_after_epoch_0(store, spec):
    """Train ``spec`` (seed 0) in ``store`` until its epoch 0 checkpoint is written, then stop, as
    a kill would: the run stays running with its checkpoint and epoch row 0."""
    with ResultsStore(store) as db:
        with db.claim(spec.run_id(0), spec.experiment, spec.name, 0, spec.to_dict()) as lease:
            def stop_at_1(epoch, metrics):
                if epoch == 1:
                    raise Stop("killed here")
                lease.log_epoch(epoch, metrics)
            with pytest.raises(Stop):
                train(spec, 0, checkpoint_dir=lease.checkpoint_dir, checkpoint_owner=lease, on_epoch=stop_at_1)
        return db.epochs(spec.run_id(0)), lease.checkpoint_dir / CHECKPOINT_NAME


def test_two_stores_in_one_folder_never_share_a_checkpoint(tmp_path):
    spec = get_experiment("demo").specs("smoke")[0]  # SGD, 2 epochs
    run_id = spec.run_id(0)
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    killed_after_epoch_0(a, spec)  # a's run was killed after epoch 0: its checkpoint is there
    a_ckpt = store_files_dir(a) / "checkpoints" / run_id / CHECKPOINT_NAME
    assert checkpoint_epoch(a_ckpt) == 0
    a_bytes = a_ckpt.read_bytes()

    from_b = fit_and_record(spec, 0, store=b)
    with ResultsStore(b, readonly=True) as db:
        assert [e["epoch"] for e in db.epochs(run_id)] == [0, 1]  # trained from the start, not from a's epoch 0
    assert a_ckpt.read_bytes() == a_bytes  # a's checkpoint untouched
    assert store_files_dir(b) != store_files_dir(a)

    from_a = fit_and_record(spec, 0, store=a)  # a resumes its own checkpoint, to the same numbers
    with ResultsStore(a, readonly=True) as db:
        assert [e["epoch"] for e in db.epochs(run_id)] == [0, 1]
    assert without_time(from_a["final"]) == without_time(from_b["final"])
    assert not a_ckpt.exists()


# ------------------------------------------------------------------------------------------------
# 4. several processes, one store
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_processes_started_together_train_every_run_once(tmp_path):
    store = tmp_path / "shared.sqlite"
    go = tmp_path / "go"
    procs = []
    for who in ("a", "b"):
        env = child_env(LIFECYCLE_TRAINED=tmp_path / f"trained-{who}", LIFECYCLE_READY=tmp_path / f"ready-{who}",
                        LIFECYCLE_GO=go)
        procs.append(subprocess.Popen([sys.executable, str(LAUNCHER), "run", "lifecycle", "--seeds", "2",
                                       "--store", str(store)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.monotonic() + TIMEOUT
        while not all((tmp_path / f"ready-{w}").exists() for w in "ab"):  # both imported: start together
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.05)
        go.touch()
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "Traceback" not in err, err
    trained = {w: (tmp_path / f"trained-{w}").read_text().split() if (tmp_path / f"trained-{w}").exists() else []
               for w in "ab"}
    runs = by_name_seed(store)
    assert len(runs) == 6 and {r["status"] for r, _ in runs.values()} == {"finished"}
    every = trained["a"] + trained["b"]
    assert sorted(every) == sorted(r["run_id"] for r, _ in runs.values())  # each run trained exactly once
    for run, epochs in runs.values():
        assert epochs == [0, 1, 2, 3, 4]  # every epoch row present exactly once
    # each process says, for each run, whether it trained it or another process did
    for w, (out, _) in zip("ab", outs):
        for (name, seed), (run, _) in runs.items():
            lines = [line for line in out.splitlines() if f"] {name} seed {seed}:" in line]
            assert len(lines) == 1, (w, name, seed, out)
            if run["run_id"] in trained[w]:
                assert "accuracy" in lines[0] and "already finished" not in lines[0], lines[0]
            else:
                assert "skipped" in lines[0] or "already finished" in lines[0], (w, lines[0], out)


def by_name_seed(store):
    with ResultsStore(store, readonly=True) as db:
        return {(r["name"], r["seed"]): (r, [e["epoch"] for e in db.epochs(r["run_id"])]) for r in db.runs()}


def test_a_run_finished_by_another_process_since_the_plan_is_not_reported_as_trained_here(tmp_path, monkeypatch):
    from lookahead_fastai import runner
    from lookahead_fastai.executors import LocalExecutor
    from lookahead_fastai.sweep import plan
    store = tmp_path / "results.sqlite"
    jobs = plan("demo", "smoke", 1, ["SGD"], store)
    assert [j.finished for j in jobs] == [False]
    finished_elsewhere = fit_and_record(jobs[0].spec, 0, store=store)  # another process, meanwhile

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(runner, "train", must_not_train)
    seen = []
    records = LocalExecutor().run(jobs, store, on_record=lambda i, job, record: seen.append(job.finished))
    assert records == [finished_elsewhere] and seen == [True]  # the CLI prints "(already finished)"


def test_stale_claims_are_taken_over_and_live_ones_skipped(tmp_path, capsys):
    from lookahead_fastai import cli
    store = tmp_path / "results.sqlite"
    spec = next(s for s in get_experiment("demo").specs("smoke") if s.name == "SGD")
    run_id = spec.run_id(0)
    sleeper = subprocess.Popen(["sleep", "600"])  # a live process that is not this one
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        with ResultsStore(store) as db:
            def set_claim(pid, heartbeat, host=socket.gethostname()):
                with db.conn:
                    db.conn.execute("UPDATE runs SET status = 'running', pid = ?, host = ?, owner = 'other', "
                                    "heartbeat = ? WHERE run_id = ?", (pid, host, heartbeat, run_id))

            def claim():
                with db.claim(run_id, spec.experiment, spec.name, 0, spec.to_dict(), heartbeat_s=0) as lease:
                    return lease.state, lease.holder

            assert claim() == ("claimed", None)
            set_claim(sleeper.pid, time.time())
            state, holder = claim()  # fresh claim of a live process
            assert state == "held" and f"pid {sleeper.pid}" in holder
            set_claim(sleeper.pid, time.time() - LEASE_S - 5)  # live process, heartbeat expired
            assert claim()[0] == "claimed"
            set_claim(dead.pid, time.time())  # dead process on this host, heartbeat fresh
            assert claim()[0] == "claimed"
            set_claim(12345, time.time(), host="elsewhere")  # another host: only the heartbeat tells
            assert claim()[0] == "held"
            set_claim(12345, time.time() - LEASE_S - 5, host="elsewhere")
            assert claim()[0] == "claimed"

            # a process whose claim was taken over can write nothing more into the run
            lease = db.claim(run_id, spec.experiment, spec.name, 0, spec.to_dict(), heartbeat_s=0)
            set_claim(sleeper.pid, time.time())
            with pytest.raises(LeaseLost):
                lease.log_epoch(0, {"accuracy": 0.5})
            with pytest.raises(LeaseLost):
                lease.finish({"final": {}})
            assert db.epochs(run_id) == [] and db.status(run_id) == "running"

        # through the CLI: a fresh live claim is skipped (exit 0), an expired one is trained
        args = ["run", "demo", "--seeds", "1", "--only", "SGD", "--store", str(store)]
        capsys.readouterr()
        assert cli.main(args) == 0
        out = capsys.readouterr().out
        assert "SGD seed 0: skipped, another process is training it" in out and f"pid {sleeper.pid}" in out
        assert raw_run(store, run_id)[:2] == ("running", sleeper.pid)
        with closing(sqlite3.connect(store)) as conn, conn:
            conn.execute("UPDATE runs SET heartbeat = ? WHERE run_id = ?", (time.time() - LEASE_S - 5, run_id))
        assert cli.main(args) == 0
        out = capsys.readouterr().out
        assert "SGD seed 0: accuracy" in out and "skipped" not in out
        assert raw_run(store, run_id)[:2] == ("finished", os.getpid())
    finally:
        sleeper.kill()
        sleeper.wait()


# ------------------------------------------------------------------------------------------------
# 6. raw results as JSON lines
# ------------------------------------------------------------------------------------------------
def _fill(store):
    with ResultsStore(store) as db:
        for seed in range(3):
            spec = {"experiment": "exp", "name": "LA/SGD", "lr": 0.1, "k": 5}
            rid = run_identity(spec, seed)  # an import recomputes it
            db.claim(rid, "exp", "LA/SGD", seed, spec, heartbeat_s=0)
            for epoch in range(3):
                db.log_epoch(rid, epoch, {"accuracy": 0.5 + 0.1 * epoch + seed / 100, "lr": 1e-3, "nested": {"a": 1}})
            if seed < 2:
                db.finish_run(rid, {"final": {"accuracy": 0.7 + seed / 100}, "slow": None, "seconds": 1.5})
        other = run_identity({"x": 1}, 0)
        db.claim(other, "other_exp", "SGD", 0, {"x": 1}, heartbeat_s=0)
        db.log_epoch(other, 0, {"accuracy": 0.1})
        db.finish_run(other, {"final": {}})


def test_export_then_import_gives_the_same_runs_and_importing_twice_adds_nothing(tmp_path):
    src, dst, path = tmp_path / "src.sqlite", tmp_path / "dst.sqlite", tmp_path / "out" / "exp.jsonl"
    _fill(src)
    with ResultsStore(src, readonly=True) as db:
        assert db.export_jsonl("exp", path) == 2  # finished runs of that experiment only
        expected = [(r, db.epochs(r["run_id"])) for r in db.runs("exp", status="finished")]
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["experiment"] == "exp" for line in lines)
    with ResultsStore(dst) as db:
        assert db.import_jsonl(path) == (2, 0)
        got = [(r, db.epochs(r["run_id"])) for r in db.runs("exp", status="finished")]
        drop = ("pid",)
        assert [({k: v for k, v in r.items() if k not in drop}, e) for r, e in got] == \
               [({k: v for k, v in r.items() if k not in drop}, e) for r, e in expected]
        assert db.import_jsonl(path) == (0, 2)  # twice: nothing added
        assert len(db.runs()) == 2 and sum(len(db.epochs(r["run_id"])) for r in db.runs()) == 6
        # the export of the imported store is the same file, byte for byte
        db.export_jsonl("exp", tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_text() == path.read_text()


@pytest.mark.parametrize("bad", ["{not json", json.dumps({"run_id": "x"}), json.dumps([1, 2]),
                                 json.dumps({"run_id": "../../etc", "experiment": "e", "name": "n", "seed": 0,
                                             "spec": {}, "record": {}, "epochs": []})])
def test_import_of_a_malformed_line_names_the_line(tmp_path, bad):
    src, path = tmp_path / "src.sqlite", tmp_path / "exp.jsonl"
    _fill(src)
    with ResultsStore(src, readonly=True) as db:
        db.export_jsonl("exp", path)
    path.write_text(path.read_text() + bad + "\n")
    with ResultsStore(tmp_path / "dst.sqlite") as db:
        with pytest.raises(ValueError, match=rf"{path.name}, line 3\b"):
            db.import_jsonl(path)


# ------------------------------------------------------------------------------------------------
# opening a store never disturbs another connection of the same process
# ------------------------------------------------------------------------------------------------
OTHER_PROCESS = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
if sys.argv[2] == "write":
    conn.execute("INSERT INTO epochs (run_id, epoch, metrics_json) VALUES ('r', 1, '{}')")
    conn.commit()
else:
    print(conn.execute("SELECT count(*) FROM epochs").fetchone()[0])
conn.close()
"""


def test_opening_a_store_keeps_the_locks_of_another_open_connection(tmp_path):
    # closing any descriptor of a database file drops every POSIX lock the process holds on it
    # (sqlite.org/howtocorrupt.html 2.2): a store that read the file's header with open() made the
    # next process that closed the database believe it was the last one and delete the WAL and
    # shared-memory index from under the connection still open here: that connection's later
    # commits went to the deleted WAL, unseen by every other process (and lost if this one is
    # killed), and stores opened here afterwards could read an old snapshot
    path = tmp_path / "results.sqlite"
    held = ResultsStore(path)
    try:
        held.claim("r", "exp", "SGD", 0, {"a": 1}, heartbeat_s=0)
        held.log_epoch("r", 0, {"accuracy": 0.5})
        ResultsStore(path, readonly=True).close()  # e.g. a report, while the sweep's store is open
        ResultsStore(path).close()
        other = [sys.executable, "-c", OTHER_PROCESS, str(path)]
        subprocess.run([*other, "write"], check=True, timeout=60)
        assert Path(f"{path}-wal").exists()  # the other process knew it was not the last one
        with ResultsStore(path, readonly=True) as db:  # and this process sees what it wrote
            assert [e["epoch"] for e in db.epochs("r")] == [0, 1]
        held.log_epoch("r", 2, {"accuracy": 0.7})
        assert subprocess.run([*other, "count"], check=True, capture_output=True, text=True,
                              timeout=60).stdout.strip() == "3"
    finally:
        held.close()
    with ResultsStore(path, readonly=True) as db:
        assert [e["epoch"] for e in db.epochs("r")] == [0, 1, 2]
