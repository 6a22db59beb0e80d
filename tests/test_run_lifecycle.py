"""lookahead_fastai.lifecycle: the answer to a claim, a failure recorded, the W&B session -- the one
lifecycle fit_and_record and the Ray executor share (no training here: a stand-in spec)."""
import os
import pickle
import socket
import time

import pytest

from lookahead_fastai.lifecycle import RunHeld, claimed_run, recording_failure, wandb_session
from lookahead_fastai.store import LeaseLost, ResultsStore, run_identity


class Spec:
    """What the lifecycle reads of a RunSpec."""
    experiment, name = "exp", "SGD"

    def to_dict(self):
        return {"experiment": self.experiment, "name": self.name, "lr": 0.1}

    def run_id(self, seed):
        return run_identity(self.to_dict(), seed)


@pytest.fixture
def db(tmp_path):
    with ResultsStore(tmp_path / "results.sqlite") as store:
        yield store


def test_a_new_run_is_claimed_and_released_at_the_end(db):
    states = []
    with claimed_run(db, Spec(), 0, on_claim=states.append) as lease:
        assert lease.state == "claimed" and lease.writes and db.status(Spec().run_id(0)) == "running"
        assert lease._thread is not None and lease._thread.is_alive()  # the heartbeat
    assert states == ["claimed"] and not lease._thread.is_alive()


def test_a_finished_run_answers_with_its_record(db):
    with claimed_run(db, Spec(), 0) as lease:
        lease.finish({"final": {"accuracy": 0.5}})
    states = []
    with claimed_run(db, Spec(), 0, on_claim=states.append) as again:
        assert again.state == "finished" and again.record == {"final": {"accuracy": 0.5}}
    assert states == ["finished"]


def test_a_run_held_by_a_live_process_raises_run_held_with_its_fields(db):
    spec, run_id = Spec(), Spec().run_id(0)
    with claimed_run(db, spec, 0):
        pass
    # another live process on this host holds it: its pid is our parent's, its heartbeat fresh
    with db._tx() as c:
        c.execute("UPDATE runs SET pid = ?, heartbeat = ? WHERE run_id = ?", (os.getppid(), time.time(), run_id))
    states = []
    with pytest.raises(RunHeld) as caught:
        with claimed_run(db, spec, 0, on_claim=states.append):
            pytest.fail("a held run is not this process's")
    held = caught.value
    assert states == ["held"]
    assert (held.run_id, held.experiment, held.name, held.seed) == (run_id, "exp", "SGD", 0)
    assert (held.pid, held.host) == (os.getppid(), socket.gethostname())
    assert held.holder == f"pid {os.getppid()} on {socket.gethostname()}"
    assert str(held) == f"exp/SGD seed 0 is being trained by {held.holder}"
    copy = pickle.loads(pickle.dumps(held))  # e.g. from a Ray worker
    assert (copy.run_id, copy.pid, copy.host, str(copy)) == (held.run_id, held.pid, held.host, str(held))


def test_an_observer_claims_nothing(db):
    with claimed_run(db, Spec(), 0, writer=False) as lease:
        assert lease.state == "observed" and not lease.writes
    assert db.status(Spec().run_id(0)) is None


def test_an_error_marks_the_run_failed_then_goes_on(db):
    with pytest.raises(ZeroDivisionError):
        with claimed_run(db, Spec(), 0) as lease, recording_failure(lease):
            1 / 0
    (run,) = db.runs()
    assert run["status"] == "failed" and run["error"] == "ZeroDivisionError: division by zero"


def test_a_lost_lease_is_not_marked_failed(db):
    with pytest.raises(LeaseLost):
        with claimed_run(db, Spec(), 0) as lease, recording_failure(lease):
            raise LeaseLost("taken over")
    assert db.runs()[0]["status"] == "running"


def test_a_disabled_wandb_session_has_no_run():
    with wandb_session("disabled", Spec(), 0, "unused") as wb:
        assert wb.run is None
        wb.record = {"final": {}}


class FakeRun:
    def __init__(self):
        self.finished = []

    def finish(self, record=None):
        self.finished.append(record)


def test_a_wandb_session_finishes_with_the_record_or_as_failed(monkeypatch):
    pytest.importorskip("wandb")
    from lookahead_fastai.callbacks import wandb as wandb_module
    runs = []
    monkeypatch.setattr(wandb_module, "open_wandb_run", lambda *a: runs.append(FakeRun()) or runs[-1])
    with wandb_session("offline", Spec(), 0, "here") as wb:
        assert wb.run is runs[0]
        wb.record = {"final": {"accuracy": 1.0}}
    with pytest.raises(KeyError):
        with wandb_session("offline", Spec(), 0, "here"):
            raise KeyError("boom")
    assert [r.finished for r in runs] == [[{"final": {"accuracy": 1.0}}], [None]]


def test_the_store_and_the_run_lifecycle_stay_small():
    """No class over 300 lines; no function over 60 lines without a ``# long:`` comment saying why."""
    import ast
    from pathlib import Path

    import lookahead_fastai
    package = Path(lookahead_fastai.__file__).parent
    files = [*sorted((package / "store").glob("*.py"))] + [
        package / f"{name}.py" for name in ("lifecycle", "runner", "executors", "sweep", "cli")]
    too_long = []
    for path in files:
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            size = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.ClassDef) and size > 300:
                too_long.append(f"{path.name}: class {node.name}, {size} lines")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and size > 60:
                if not any("# long:" in line for line in lines[node.lineno - 1:node.end_lineno]):
                    too_long.append(f"{path.name}: {node.name}, {size} lines")
    assert too_long == []


def test_a_sweep_opens_its_store_once_and_imports_no_runner(tmp_path, monkeypatch):
    """run_experiment opens the store once, for its plan and its executor (one open store handed to
    it); and sweep itself does not import the runner (DEFAULT_STORE comes from store.paths)."""
    import json
    import subprocess
    import sys

    code = "import json, sys, lookahead_fastai.sweep; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert "lookahead_fastai.runner" not in loaded and "lookahead_fastai.executors" not in loaded

    from lookahead_fastai import store as store_module
    from lookahead_fastai.sweep import run_experiment
    opens = []
    real_init = store_module.ResultsStore.__init__

    def counting_init(self, *args, **kwargs):
        opens.append(args[0])
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(store_module.ResultsStore, "__init__", counting_init)

    class Executor:
        name = "fake"

        def run(self, jobs, store, **options):
            assert isinstance(store, store_module.ResultsStore) and repr(store).endswith("open)")
            self.store = store
            return [None] * len(jobs)

    executor = Executor()
    records = run_experiment("demo", "smoke", 1, store=tmp_path / "results.sqlite", executor=executor)
    assert records == [None] * len(records) and len(records) > 0
    assert opens == [tmp_path / "results.sqlite"] and repr(executor.store).endswith("closed)")
