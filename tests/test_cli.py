"""The console script: end-to-end smoke run, rerun skip, a sweep killed with SIGKILL, bad input."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lookahead_fastai.cli import main

CLI = [sys.executable, "-m", "lookahead_fastai.cli"]


def run_cli(*args, cwd, timeout=300):
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def finished_runs(store):
    with sqlite3.connect(store) as conn:
        return conn.execute("SELECT run_id, status FROM runs").fetchall()


@pytest.mark.slow
def test_smoke_run_report_and_rerun_skip(tmp_path):
    first = run_cli("run", "demo", "--scale", "smoke", "--seeds", "2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "8 runs (4 rows x 2 seeds), 0 already finished" in first.stdout
    rows = finished_runs(tmp_path / "runs" / "results.sqlite")
    assert len(rows) == 8 and {s for _, s in rows} == {"finished"}

    again = run_cli("run", "demo", "--scale", "smoke", "--seeds", "2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "8 already finished" in again.stdout and again.stdout.count("(already finished)") == 8

    report = run_cli("report", "demo", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "reports" / "demo.md").read_text()
    for needle in ("Scale `smoke`", "Seeds**: 2 (0, 1)", "| LA/SGD | 2 |", "LA/AdamW | AdamW | 2",
                   "not** a reproduction", "digits (256 train / 128 valid images)"):
        assert needle in text, needle
    assert (tmp_path / "reports" / "demo_smoke.png").stat().st_size > 10_000


@pytest.mark.slow
def test_sweep_killed_mid_run_ends_with_every_run_once(tmp_path):
    # demo at cpu scale, 1 seed: seconds per run on digits, so a SIGKILL 0.3 s after the first run's
    # line lands inside the second run; the test only needs it to land before the 4th run ends
    store = tmp_path / "runs" / "results.sqlite"
    args = ["run", "demo", "--scale", "cpu", "--seeds", "1"]
    proc = subprocess.Popen([*CLI, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:  # kill in the middle of the 2nd run
        if "[1/4]" in line:
            time.sleep(0.3)
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = finished_runs(store)
    assert 1 <= sum(s == "finished" for _, s in before) < 4
    rerun = run_cli(*args, cwd=tmp_path, timeout=900)
    assert rerun.returncode == 0, rerun.stderr
    after = finished_runs(store)
    assert len(after) == 4 and len({r for r, _ in after}) == 4
    assert {s for _, s in after} == {"finished"}
    with sqlite3.connect(store) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        epochs = conn.execute("SELECT run_id, COUNT(*) FROM epochs GROUP BY run_id").fetchall()
    assert sorted(n for _, n in epochs) == [8] * 4  # every run has each of its 8 epochs exactly once


@pytest.mark.parametrize("args,message", [
    (["run", "nope"], "unknown experiment 'nope'"),
    (["run", "demo", "--scale", "huge"], "argument --scale: invalid choice: 'huge' (choose from 'smoke', 'cpu', 'full')"),
    (["run", "demo", "--seeds", "0"], "argument --seeds: must be from 1 to 1000, got 0"),
    (["run", "demo", "--seeds", "two"], "argument --seeds: must be a whole number, got 'two'"),
    (["run", "demo", "--only", "Adagrad"], "--only: Adagrad not in demo"),
    (["run", "demo", "--wandb", "sometimes"], "argument --wandb: invalid choice: 'sometimes' (choose from 'offline', 'online', 'disabled')"),
    (["run", "demo", "--data-dir", "/no/such/folder"], "--data-dir /no/such/folder: no such folder"),
    (["run", "demo", "--device", "tpu"], "argument --device: invalid choice: 'tpu' (choose from 'cpu', 'cuda')"),
    (["report", "nope", "--store", "STORE"], "unknown experiment 'nope'"),
    (["report", "demo", "--store", "MISSING"], "no results database"),
    (["run", "demo", "--store", "GARBAGE"], "is not an SQLite database"),
    (["frobnicate"], "invalid choice"),
    ([], "required: command"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, args, message):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_text("this is not a database\n" * 10)
    store = tmp_path / "store.sqlite"
    sqlite3.connect(store).close()
    args = [{"STORE": str(store), "MISSING": str(tmp_path / "missing.sqlite"), "GARBAGE": str(garbage)}.get(a, a)
            for a in args]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert "Traceback" not in err
    assert garbage.read_text().startswith("this is not a database")  # never overwritten


@pytest.mark.slow
def test_missing_dataset_is_one_line_through_the_real_console_script(tmp_path):
    from lookahead_fastai.experiments import EXPERIMENTS, Experiment, RunSpec  # noqa: F401
    empty = tmp_path / "empty"
    empty.mkdir()
    script = ("import sys; from lookahead_fastai.cli import main; "
              "from lookahead_fastai.experiments import EXPERIMENTS, Experiment, RunSpec; "
              "EXPERIMENTS['c10'] = Experiment('c10', 'cifar', 'SGD', lambda scale: [RunSpec("
              "experiment='c10', name='SGD', dataset='cifar10', arch='small_cnn', optimizer='sgd', lr=0.1, "
              "epochs=1, bs=32, scale=scale)]); sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", script, "run", "c10", "--data-dir", str(empty)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cifar10" in lines[0] and str(empty) in lines[0] and "--data-dir" in lines[0]


def test_list_names_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("demo", "digits", "imagewoof", "cifar_resnet18", "lookahead(NAME)", "ranger", "warmup_cosine"):
        assert name in out


@pytest.mark.slow
def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "lookahead-fastai"
    assert exe.exists()
    proc = subprocess.run([str(exe), "list"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "experiments:" in proc.stdout
