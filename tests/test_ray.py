"""The Ray executor on a local Ray instance (2 CPUs): same records as the local executor, a worker
killed mid-run is retried and its run stored once, a failing run is marked failed while the rest of
the grid finishes; the CLI's options and messages."""
import logging
import os
import signal
import sqlite3
import sys
from functools import partial

import pytest
import ray
import torch
from fastai.callback.core import Callback

from lookahead_fastai import cli
from lookahead_fastai.executors import RunsFailed
from lookahead_fastai.store import ResultsStore
from lookahead_fastai.sweep import plan, run_experiment

pytestmark = pytest.mark.slow  # a Ray cluster: `make test` runs it, `make check` does not

# the callbacks below travel to the Ray workers by value: this module is not importable there
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance for the module; the executor uses it and leaves it running."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def _without_time(metrics):
    return {k: v for k, v in metrics.items() if k != "time"}  # wall time differs, everything else must not


def _rows(store):
    with sqlite3.connect(store) as conn:
        return conn.execute("SELECT run_id, name, status, error FROM runs ORDER BY name").fetchall()


def _epoch_counts(store):
    with sqlite3.connect(store) as conn:
        return dict(conn.execute("SELECT run_id, COUNT(*) FROM epochs GROUP BY run_id").fetchall())


def test_ray_gives_the_records_of_the_local_executor(ray_session, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the workers (cpus_per_run=1), so the arithmetic is the same
    try:
        local = run_experiment("demo", "smoke", seeds=1, store=tmp_path / "local.sqlite")
    finally:
        torch.set_num_threads(threads)
    remote = run_experiment("demo", "smoke", seeds=1, store=tmp_path / "ray.sqlite", executor="ray")
    assert [r["run_id"] for r in remote] == [r["run_id"] for r in local]  # grid order, same identities
    for a, b in zip(local, remote):
        assert _without_time(b["final"]) == pytest.approx(_without_time(a["final"]), rel=1e-5, abs=1e-6), a["name"]
        assert (a["slow"] is None) == (b["slow"] is None)
        if a["slow"]:
            assert b["slow"] == pytest.approx(a["slow"], rel=1e-5, abs=1e-6)
    with ResultsStore(tmp_path / "local.sqlite") as db_local, ResultsStore(tmp_path / "ray.sqlite") as db_ray:
        runs = db_ray.runs("demo")
        assert sorted(r["run_id"] for r in runs) == sorted(r["run_id"] for r in db_local.runs("demo"))
        assert {r["status"] for r in runs} == {"finished"} and len(runs) == 4
        for r in runs:
            ours, theirs = db_ray.epochs(r["run_id"]), db_local.epochs(r["run_id"])
            assert [e["epoch"] for e in ours] == [e["epoch"] for e in theirs] == [0, 1]
            for e_ray, e_local in zip(ours, theirs):
                assert _without_time(e_ray) == pytest.approx(_without_time(e_local), rel=1e-5, abs=1e-6)
    # the driver skips what is finished, as the local executor does
    assert all(job.finished for job in plan("demo", "smoke", 1, store=tmp_path / "ray.sqlite"))


class KillOnFirstAttempt(Callback):
    """SIGKILLs its own process (the Ray worker) after the first epoch, on the first attempt only."""

    def __init__(self, marker):
        self.marker = marker

    def after_epoch(self):
        if not os.path.exists(self.marker):
            with open(self.marker, "w") as fh:
                fh.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


class Boom(Callback):
    def before_fit(self):
        raise RuntimeError("boom")


def _kill_la_sgd(marker, spec, seed):
    return [KillOnFirstAttempt(marker)] if spec.name == "LA/SGD" else []


def _boom_la_sgd(spec, seed):
    return [Boom()] if spec.name == "LA/SGD" else []


def test_worker_killed_mid_run_is_retried_and_stored_once(ray_session, tmp_path):
    store, marker = tmp_path / "results.sqlite", tmp_path / "killed"
    records = run_experiment("demo", "smoke", seeds=1, only=["SGD", "LA/SGD"], store=store, executor="ray",
                             extra_cbs=partial(_kill_la_sgd, str(marker)))
    assert marker.exists()  # the first attempt was killed after its first epoch
    assert int(marker.read_text()) != os.getpid()
    assert [r["name"] for r in records] == ["SGD", "LA/SGD"] and all(r["epochs"] == 2 for r in records)
    rows = _rows(store)
    assert len(rows) == 2 and len({r[0] for r in rows}) == 2
    assert {r[2] for r in rows} == {"finished"}
    assert sorted(_epoch_counts(store).values()) == [2, 2]
    with sqlite3.connect(store) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_failing_run_is_marked_failed_and_the_rest_finishes(ray_session, tmp_path):
    store = tmp_path / "results.sqlite"
    errors = []
    with pytest.raises(RunsFailed) as info:
        run_experiment("demo", "smoke", seeds=1, only=["SGD", "LA/SGD"], store=store, executor="ray",
                       extra_cbs=_boom_la_sgd, on_error=lambda i, job, error: errors.append((job.spec.name, error)))
    # fastai wraps a callback's exception: "RuntimeError: Exception occured in `Boom` ...: boom"
    assert str(info.value).startswith("1 of 2 runs failed: LA/SGD seed 0 (RuntimeError: ")
    assert str(info.value).endswith("boom)") and "\n" not in str(info.value)
    [(name, error)] = errors
    assert name == "LA/SGD" and error.startswith("RuntimeError: ") and error.endswith("boom")
    assert info.value.records[0]["name"] == "SGD" and info.value.records[1] is None
    by_name = {name: (status, error) for _, name, status, error in _rows(store)}
    assert by_name == {"SGD": ("finished", None), "LA/SGD": ("failed", error)}
    # a rerun redoes the failed run only, and every run ends up stored once
    jobs = plan("demo", "smoke", 1, only=["SGD", "LA/SGD"], store=store)
    assert [j.finished for j in jobs] == [True, False]
    run_experiment("demo", "smoke", seeds=1, only=["SGD", "LA/SGD"], store=store, executor="ray")
    rows = _rows(store)
    assert len(rows) == 2 and {r[2] for r in rows} == {"finished"} and {r[3] for r in rows} == {None}
    assert sorted(_epoch_counts(store).values()) == [2, 2]


def test_cli_run_with_ray(ray_session, tmp_path, capsys):
    store = tmp_path / "results.sqlite"
    args = ["run", "demo", "--seeds", "1", "--only", "SGD", "AdamW", "--store", str(store), "--executor", "ray",
            "--cpus-per-run", "1"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "2 runs (2 rows x 1 seeds), 0 already finished" in out and "executor ray" in out
    assert "[1/2]" in out and "[2/2]" in out
    assert {r[2] for r in _rows(store)} == {"finished"}
    assert cli.main(args) == 0
    assert capsys.readouterr().out.count("(already finished)") == 2


def test_cli_reports_failed_runs_in_one_line(monkeypatch, tmp_path, capsys):
    from lookahead_fastai import sweep
    from lookahead_fastai.executors import Failure

    def fake_run_experiment(*args, on_record=None, on_error=None, **kwargs):
        jobs = plan("demo", "smoke", 1, store=tmp_path / "results.sqlite")
        on_error(1, jobs[1], "RuntimeError: boom")
        raise RunsFailed([Failure(1, jobs[1], "RuntimeError: boom")], [None] * len(jobs))

    monkeypatch.setattr(sweep, "run_experiment", fake_run_experiment)
    code = cli.main(["run", "demo", "--seeds", "1", "--store", str(tmp_path / "results.sqlite"), "--executor", "ray"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_RUNS_FAILED != 0
    assert "FAILED (RuntimeError: boom)" in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "1 of 4 runs failed: LA/SGD seed 0 (RuntimeError: boom)" in lines[0]


def test_cli_without_ray_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = cli.main(["run", "demo", "--executor", "ray", "--store", str(tmp_path / "results.sqlite")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "pip install 'lookahead-fastai[ray]'" in err
    assert not (tmp_path / "results.sqlite").exists()


@pytest.mark.parametrize("args,message", [
    (["--executor", "dask"], "argument --executor: invalid choice: 'dask' (choose from 'local', 'ray')"),
    (["--address", "auto"], "--address: only with --executor ray"),
    (["--gpus-per-run", "1"], "--gpus-per-run: only with --executor ray"),
    (["--executor", "ray", "--cpus-per-run", "0"], "--cpus-per-run must be more than 0"),
    (["--executor", "ray", "--gpus-per-run", "-1"], "--gpus-per-run must be at least 0"),
    (["--executor", "ray", "--device", "cuda"], "--device cuda with --executor ray needs --gpus-per-run"),
    (["--executor", "ray", "--distributed"], "--distributed and --executor ray do not go together"),
    (["--distributed"], "--distributed: start the run with a launcher"),
])
def test_cli_scale_out_options_bad_input(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code = cli.main(["run", "demo", "--store", str(tmp_path / "results.sqlite"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_a_worker_that_cannot_import_your_module_fails_that_run_with_the_import_error(ray_session, tmp_path,
                                                                                       monkeypatch):
    """The driver finds the user's module in its current directory (and checks it there); the Ray
    workers, started elsewhere, cannot import it: each run fails with the import error, nothing else."""
    from lookahead_fastai.experiments.yours import your_experiment
    (tmp_path / "rayless_t22.py").write_text("from torch import nn\n\n\ndef net(n_out):\n"
                                             "    return nn.Sequential(nn.Flatten(), nn.Linear(64, n_out))\n")
    monkeypatch.chdir(tmp_path)
    experiment = your_experiment("yours_ray_t22", dataset="digits", arch="rayless_t22:net", epochs=1, bs=32,
                                 n_train=128, n_valid=64, seeds=1,
                                 rows=[{"name": "SGD", "optimizer": "sgd", "lr": 0.1}])
    store = tmp_path / "results.sqlite"
    with pytest.raises(RunsFailed) as info:
        run_experiment(experiment, store=store, executor="ray")
    assert str(info.value).startswith("1 of 1 runs failed: SGD seed 0 (UserCodeError: spec field 'arch': "
                                      "rayless_t22:net: no module named 'rayless_t22' in the current directory")
    [(_, name, status, error)] = _rows(store)
    assert (name, status) == ("SGD", "failed") and "no module named 'rayless_t22'" in error
