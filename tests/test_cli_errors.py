"""Every input and environment error of the CLI is one line on stderr and exit code 2 (issue 9):
bounded --seeds, permissions (run as an unprivileged user with ``setpriv``), over-long names,
read-only filesystems (a tmpfs remounted read-only: needs root, as CI has), a foreign SQLite file left
exactly as it was, reports from a read-only store, a read-only current folder, Ctrl-C at several
moments, no progress glyphs in piped output."""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from lookahead_fastai.cli import MAX_SEEDS, main

CLI = [sys.executable, "-m", "lookahead_fastai.cli"]
NOBODY = 65534
SHARED_DATA = (Path(__file__).resolve().parents[2] / "shared" / "data").resolve()  # ../shared may be a link


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("lookahead-fastai"), err  # every error line names the program that wrote it
    return lines[0]


def run_main(capsys, *args):
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@contextmanager
def read_only_mount(path, files=()):
    """A small tmpfs at ``path`` holding copies of ``files``, remounted read-only."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs at {path} ({mounted.stderr.strip()}): the read-only filesystem tests "
                    "need root (CI runs them as root)")
    try:
        for f in files:
            shutil.copy2(f, path / Path(f).name)
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    """A store with finished demo runs (smoke, 2 seeds, two rows), its WAL checkpointed into the file."""
    path = tmp_path_factory.mktemp("demo_store") / "results.sqlite"
    assert main(["run", "demo", "--seeds", "2", "--only", "SGD", "LA/SGD", "--store", str(path)]) == 0
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


# ------------------------------------------------------------------------------------------------
# input
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["run", "plan"])
def test_seeds_are_bounded_and_the_bound_is_in_help(command, capsys):
    started = time.perf_counter()
    code, _, err = run_main(capsys, command, "demo", "--seeds", "1000000000")
    assert code == 2 and time.perf_counter() - started < 5  # at once: no grid of a billion runs built
    assert f"argument --seeds: must be from 1 to {MAX_SEEDS}, got 1000000000" in one_line(err)
    code, _, err = run_main(capsys, command, "demo", "--seeds", str(MAX_SEEDS + 1))
    assert code == 2 and "must be from 1 to 1000" in one_line(err)
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"1 to {MAX_SEEDS}" in " ".join(capsys.readouterr().out.split())


def test_report_scale_is_checked_and_the_report_is_kept(demo_store, tmp_path, capsys):
    out = tmp_path / "reports"
    out.mkdir()
    (out / "demo.md").write_text("the report written before\n")
    code, _, err = run_main(capsys, "report", "demo", "--store", demo_store, "--scale", "bogus", "--out", out)
    assert code == 2 and "argument --scale: invalid choice: 'bogus'" in one_line(err)
    assert (out / "demo.md").read_text() == "the report written before\n"


def test_over_long_store_name_is_one_line(tmp_path, capsys):
    long_store = tmp_path / ("x" * 300 + ".sqlite")
    for args in (["run", "demo"], ["report", "demo"], ["store", "export", "demo"]):
        code, _, err = run_main(capsys, *args, "--store", long_store)
        assert code == 2, (args, err)
        assert "File name too long" in one_line(err), (args, err)
    assert not any(tmp_path.iterdir())


def test_foreign_sqlite_file_is_refused_and_left_exactly_as_it_was(tmp_path, capsys):
    foreign = tmp_path / "app.sqlite"
    with closing(sqlite3.connect(foreign)) as conn:
        assert conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes (text) VALUES ('mine')")
        conn.commit()
    before = foreign.read_bytes()
    for args in (["run", "demo"], ["report", "demo"], ["store", "export", "demo"], ["store", "import", foreign]):
        code, _, err = run_main(capsys, *args, "--store", foreign)
        assert code == 2, (args, err)
        assert "not a results store" in one_line(err), (args, err)
    assert foreign.read_bytes() == before  # byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.sqlite"]  # no -wal / -shm / .files
    with closing(sqlite3.connect(foreign)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL


# ------------------------------------------------------------------------------------------------
# read-only filesystems (root: a tmpfs remounted read-only)
# ------------------------------------------------------------------------------------------------
def test_store_on_a_read_only_filesystem_reports_and_refuses_writes(demo_store, tmp_path, capsys):
    with read_only_mount(tmp_path / "ro", [demo_store]) as ro:
        store = ro / demo_store.name
        before = store.read_bytes()
        code, out, err = run_main(capsys, "report", "demo", "--store", store, "--out", tmp_path / "reports")
        assert code == 0, err
        text = (tmp_path / "reports" / "demo.md").read_text()
        assert "| LA/SGD | 2 |" in text and "No finished runs" not in text
        code, out, err = run_main(capsys, "store", "export", "demo", "--store", store, "--out", tmp_path / "demo.jsonl")
        assert code == 0 and len((tmp_path / "demo.jsonl").read_text().splitlines()) == 4, err

        for args in (["run", "demo", "--seeds", "1", "--store", store],              # the store itself
                     ["run", "demo", "--seeds", "1", "--store", ro / "new" / "results.sqlite"],
                     ["run", "demo", "--seeds", "1", "--store", ro / "results2.sqlite"],
                     ["report", "demo", "--store", demo_store, "--out", ro / "reports"],
                     ["store", "export", "demo", "--store", demo_store, "--out", ro / "demo.jsonl"],
                     ["store", "import", tmp_path / "demo.jsonl", "--store", store]):
            code, _, err = run_main(capsys, *args)
            assert code == 2, (args, err)
            line = one_line(err)
            assert "read-only" in line.lower() or "readonly" in line.lower(), (args, line)
        assert store.read_bytes() == before
        assert sorted(p.name for p in ro.iterdir()) == [demo_store.name]


def test_read_only_current_folder_keeps_lr_find_under_the_store(tmp_path, capsys, monkeypatch):
    store = tmp_path / "store" / "results.sqlite"
    with read_only_mount(tmp_path / "cwd") as cwd:
        monkeypatch.chdir(cwd)
        code, out, err = run_main(capsys, "run", "optimizers_from_scratch", "--scale", "smoke", "--seeds", "1",
                                  "--only", "Adam · debiased", "--store", store, "--data-dir", SHARED_DATA)
        assert code == 0, err
        assert not any(cwd.iterdir())
    curve = json.loads((store.parent / "results.files" / "lr_find" / "optimizers_from_scratch_smoke.json").read_text())
    assert curve["row"] == "Adam · debiased" and len(curve["lrs"]) == len(curve["losses"]) > 10


# ------------------------------------------------------------------------------------------------
# permissions (an unprivileged user, through setpriv)
# ------------------------------------------------------------------------------------------------
DRIVER = """
import contextlib, io, json, os, sys
from lookahead_fastai.cli import main
results = []
for case in json.loads(sys.argv[1]):
    os.chdir(case["cwd"])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(case["args"])
    results.append({"args": case["args"], "code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


@pytest.mark.slow
def test_permission_errors_are_one_line(demo_store, tmp_path):
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run the CLI as an unprivileged user")
    base = Path(tempfile.mkdtemp(prefix="lookahead-fastai-perm-"))  # outside pytest's 0700 tmp folders
    try:
        base.chmod(0o755)
        home, locked, secret, stores = (base / n for n in ("home", "locked", "secret", "stores"))
        for d in (home, locked, secret, stores):
            d.mkdir()
        os.chown(home, NOBODY, NOBODY)
        locked.chmod(0o755)  # root's: the user can read it, not write in it
        secret.chmod(0o000)
        store = stores / "results.sqlite"
        shutil.copy2(demo_store, store)
        store.chmod(0o644)
        cases = [
            (["run", "demo", "--store", locked / "results.sqlite"], ("Permission denied", "unable to open")),
            (["run", "demo", "--store", locked / "sub" / "results.sqlite"], ("Permission denied",)),
            (["run", "demo", "--store", store], ("readonly", "read-only")),
            (["run", "demo", "--data-dir", secret, "--store", home / "results.sqlite"], ("Permission denied",)),
            (["report", "demo", "--store", store, "--out", locked / "reports"], ("Permission denied",)),
            (["store", "export", "demo", "--store", store, "--out", locked / "demo.jsonl"], ("Permission denied",)),
        ]
        payload = [{"args": [str(a) for a in args], "cwd": str(home)} for args, _ in cases]
        payload.append({"args": ["report", "demo", "--store", str(store), "--out", str(home / "reports")],
                        "cwd": str(home)})
        env = dict(os.environ, HOME=str(home), FASTAI_HOME=str(home / "fastai"), MPLCONFIGDIR=str(home / "mpl"),
                   LOOKAHEAD_FASTAI_CACHE=str(home / "cache"), WANDB_DIR=str(home / "wandb"),
                   OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                               sys.executable, "-c", DRIVER, json.dumps(payload)], cwd=home, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = json.loads(proc.stdout.strip().splitlines()[-1])
        for (args, reasons), result in zip(cases, results):
            assert result["code"] == 2, result
            line = one_line(result["err"])
            assert any(r in line for r in reasons), (args, line)
        report = results[-1]
        assert report["code"] == 0, report  # a store the user cannot write is still reported
        assert "| LA/SGD | 2 |" in (home / "reports" / "demo.md").read_text()
        assert not (locked / "results.sqlite").exists() and not any(locked.iterdir())
    finally:
        (base / "secret").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# Ctrl-C, and piped output
# ------------------------------------------------------------------------------------------------
def _maps_torch(pid):
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _has_epoch_row(store):
    if not store.exists():
        return False
    try:
        with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)) as conn:
            return conn.execute("SELECT count(*) FROM epochs").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def _sigint_as_in_a_terminal():
    """SIGINT's default action in the child, as a terminal gives it: a test suite started in the
    background of a non-interactive shell (`make test &`) has SIGINT ignored, every child inherits
    that, and Python then installs no KeyboardInterrupt handler at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["importing torch", "training"])
def test_ctrl_c_gives_one_line_and_130(moment, tmp_path):
    store = tmp_path / "results.sqlite"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([*CLI, "run", "demo", "--scale", "cpu", "--seeds", "1", "--only", "SGD", "--store",
                             str(store)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_sigint_as_in_a_terminal)
    try:
        ready = (lambda: _maps_torch(proc.pid)) if moment == "importing torch" else (lambda: _has_epoch_row(store))
        deadline = time.monotonic() + 300
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"never reached {moment}"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in one_line(err)
    assert "█" not in out + err and "\r" not in out  # piped: no progress bars
    if moment == "training":  # the run can be resumed: its claim is released, its checkpoint kept
        rerun = subprocess.run([*CLI, "run", "demo", "--scale", "cpu", "--seeds", "1", "--only", "SGD", "--store",
                                str(store)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0 and "skipped" not in rerun.stdout, rerun.stdout + rerun.stderr
        assert "█" not in rerun.stdout + rerun.stderr
        with closing(sqlite3.connect(store)) as conn:
            assert conn.execute("SELECT status FROM runs").fetchall() == [("finished",)]
            assert [e for (e,) in conn.execute("SELECT epoch FROM epochs ORDER BY epoch")] == list(range(8))
