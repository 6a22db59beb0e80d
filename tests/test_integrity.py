"""Data integrity at every entrance (issue 21): what comes into a store from outside a run is checked
first and refused with one line (exit 2), leaving the store as it was.

* ``store import``: the break-it list of the issue, each line refused naming its line number and
  field, all lines or none; conflicts with the store (a finished run, a live claim) refused; imported
  runs keep their provenance and a report says how many there are;
* checkpoints bound to their run and store (deleted database, another run's checkpoint, forged ones);
* non-finite metrics counted as diverged in reports, never averaged;
* a foreign database with runs/epochs tables, a full disk, and small CLI inputs.

The imports use the committed raw results of ``demo`` (real runs, 12 lines); the checkpoint tests
train the smallest demo rows (smoke scale, two epochs) in this process.
"""
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import torch

from lookahead_fastai.checkpoint import CHECKPOINT_NAME, CheckpointWarning, file_digest
from lookahead_fastai.experiments import get_experiment
from lookahead_fastai.results.compare import compare, summarize
from lookahead_fastai.store import ResultsStore, store_files_dir
from test_cli_errors import one_line, run_main
from test_lifecycle import killed_after_epoch_0

DEMO = Path(__file__).resolve().parents[1] / "reports" / "data" / "demo.jsonl"


def snapshot(path):
    """Everything the store holds, row by row."""
    with closing(sqlite3.connect(path)) as conn:
        return (conn.execute("SELECT * FROM runs ORDER BY run_id").fetchall(),
                conn.execute("SELECT * FROM epochs ORDER BY run_id, epoch").fetchall())


@pytest.fixture(scope="module")
def demo_lines():
    return [json.loads(line) for line in DEMO.read_text().splitlines()]


def write_lines(path, runs):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in runs))
    return path


# ------------------------------------------------------------------------------------------------
# store import: every line checked first, naming its line and field
# ------------------------------------------------------------------------------------------------
def _set(path, value):
    """A mutation of one run: set the dotted ``path`` (list items as [i]) to ``value``."""
    def mutate(run):
        keys = path.replace("[", ".[").split(".")
        obj = run
        for key in keys[:-1]:
            obj = obj[int(key[1:-1])] if key.startswith("[") else obj[key]
        last = keys[-1]
        obj[int(last[1:-1]) if last.startswith("[") else last] = value
        return run
    return mutate


def _deep(depth):
    def mutate(run):
        nested = 0
        for _ in range(depth):
            nested = {"a": nested}
        run["record"]["final"]["extra"] = nested
        return run
    return mutate


def _drop_first_epochs(run):  # the record says 8 epochs, the rows are 3..7
    run["epochs"] = run["epochs"][3:]
    return run


BAD_LINES = [  # (id, mutation of line 2, the field named, words of the reason)
    ("record-null", _set("record", None), "record", "must be an object, got null"),
    ("record-string", _set("record", "x"), "record", "must be an object, got a string"),
    ("nan-accuracy", _set("record.final.accuracy", float("nan")), "record.final.accuracy", "finite"),
    ("inf-epoch-accuracy", _set("epochs[0].accuracy", float("inf")), "epochs[0].accuracy", "finite"),
    ("overflowing-seconds", _set("record.seconds", 1e400), "record.seconds", "finite"),
    ("accuracy-above-1", _set("record.final.accuracy", 1.5), "record.final.accuracy", "from 0 to 1"),
    ("seed-1.7", _set("seed", 1.7), "seed", "whole number"),
    ("seed-negative", _set("seed", -1), "seed", "from 0 to"),
    ("seed-1e30", _set("seed", 1e30), "seed", "whole number"),
    ("seed-huge-int", _set("seed", 10 ** 30), "seed", "64 bits"),
    ("epoch-1e30", _set("epochs[0].epoch", 1e30), "epochs[0].epoch", "whole number"),
    ("epoch-negative", _set("epochs[0].epoch", -3), "epochs[0].epoch", "from 0 to"),
    ("epochs-disagree", _drop_first_epochs, "epochs[0].epoch", "row 0 is epoch 3"),
    ("spec-not-its-id", _set("spec.lr", 0.5), "run_id", "is not the id of this spec and seed"),
    ("record-of-another-run", _set("record.seed", 7), "record.seed", "differs from the line's"),
    ("record-missing-scale", lambda r: (r["record"].pop("scale"), r)[1], "record.scale", "missing"),
    ("nested-too-deep", _deep(20), "record.final.extra" + ".a" * 14, "nested more than 16 levels"),
    ("unknown-field", _set("pid", 1), "pid", "unknown field"),
    ("run-id-dotdot", _set("run_id", ".."), "run_id", "is not a run id"),
    ("run-id-a-path", _set("run_id", "../x"), "run_id", "is not a run id"),
    ("run-id-65-chars", _set("run_id", "a" * 65), "run_id", "is not a run id"),
]


@pytest.mark.parametrize("mutate,field,reason", [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES])
def test_import_refuses_a_bad_line_naming_line_and_field_and_writes_nothing(tmp_path, capsys, demo_lines, mutate,
                                                                          field, reason):
    store = tmp_path / "results.sqlite"
    ResultsStore(store).close()
    before = snapshot(store)
    bad = mutate(json.loads(json.dumps(demo_lines[1])))
    path = write_lines(tmp_path / "runs.jsonl", [demo_lines[0], bad, demo_lines[2]])
    code, out, err = run_main(capsys, "store", "import", path, "--store", store)
    line = one_line(err)
    assert code == 2 and out == ""
    assert f"runs.jsonl, line 2: field '{field}'" in line and reason in line, line
    assert snapshot(store) == before  # line 1 was good: not kept either (one transaction or none)


def test_import_refuses_json_nested_beyond_the_interpreter_and_overlong_lines(tmp_path, capsys, demo_lines):
    store = tmp_path / "results.sqlite"
    deep = '{"a":' * 100_000 + "0" + "}" * 100_000  # a RecursionError in json.loads
    path = write_lines(tmp_path / "deep.jsonl", [demo_lines[0], deep])
    code, _, err = run_main(capsys, "store", "import", path, "--store", store)
    assert code == 2 and "deep.jsonl, line 2: the JSON is nested more than 16 levels deep" in one_line(err)
    path = write_lines(tmp_path / "long.jsonl", ['"' + "x" * (4 * 1024 * 1024) + '"'])
    code, _, err = run_main(capsys, "store", "import", path, "--store", store)
    assert code == 2 and "long.jsonl, line 1: the line is longer than" in one_line(err)
    assert snapshot(store) == ([], [])


def test_two_lines_of_one_run_with_different_records_are_refused(tmp_path, capsys, demo_lines):
    store = tmp_path / "results.sqlite"
    other = json.loads(json.dumps(demo_lines[0]))
    other["record"]["final"]["accuracy"] = 0.99
    path = write_lines(tmp_path / "dup.jsonl", [demo_lines[0], demo_lines[1], other])
    code, _, err = run_main(capsys, "store", "import", path, "--store", store)
    assert code == 2
    assert f"dup.jsonl, line 3: field 'run_id': run {other['run_id']} is also on line 1, with different contents" \
        in one_line(err)
    assert snapshot(store) == ([], [])
    path = write_lines(tmp_path / "same.jsonl", [demo_lines[0], demo_lines[0]])  # the same line twice: one run
    code, out, _ = run_main(capsys, "store", "import", path, "--store", store)
    assert code == 0 and "1 runs added, 0 already there" in out


def test_import_never_replaces_a_finished_run_with_another_record(tmp_path, capsys, demo_lines):
    store = tmp_path / "results.sqlite"
    code, out, _ = run_main(capsys, "store", "import", DEMO, "--store", store)
    assert code == 0 and "12 runs added, 0 already there" in out
    before = snapshot(store)
    code, out, _ = run_main(capsys, "store", "import", DEMO, "--store", store)  # the same file: nothing to do
    assert code == 0 and "0 runs added, 12 already there" in out
    for field, value in (("record.final.accuracy", 0.9), ("epochs[7].accuracy", 0.9)):
        fake = _set(field, value)(json.loads(json.dumps(demo_lines[4])))
        path = write_lines(tmp_path / "fake.jsonl", [fake])
        code, _, err = run_main(capsys, "store", "import", path, "--store", store)
        line = one_line(err)
        assert code == 2 and f"line 1: run {fake['run_id']} (demo/LA/AdamW, seed 1)" in line
        assert f"field '{field.split('.')[0].split('[')[0]}'" in line and "holds the run finished with a different" in line
    assert snapshot(store) == before


def test_import_refuses_a_run_that_a_live_process_is_training(tmp_path, capsys, demo_lines):
    store = tmp_path / "results.sqlite"
    run = demo_lines[0]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with ResultsStore(store) as db:
            lease = db.claim(run["run_id"], run["experiment"], run["name"], run["seed"], run["spec"], heartbeat_s=0)
            lease.release()
        with closing(sqlite3.connect(store)) as conn, conn:  # the claim is the sleeper's: alive, fresh heartbeat
            conn.execute("UPDATE runs SET pid = ? WHERE run_id = ?", (sleeper.pid, run["run_id"]))
        before = snapshot(store)
        code, _, err = run_main(capsys, "store", "import", DEMO, "--store", store)
        assert code == 2
        assert f"line 1: run {run['run_id']} (demo/AdamW, seed 0): a process is training it (pid {sleeper.pid}" \
            in one_line(err)
        assert snapshot(store) == before
    finally:
        sleeper.kill()
        sleeper.wait()
    code, out, _ = run_main(capsys, "store", "import", DEMO, "--store", store)  # its process is gone: a stale claim
    assert code == 0 and "12 runs added" in out


def test_reports_say_how_many_runs_were_imported_and_count_diverged_runs(tmp_path, capsys, demo_lines):
    store, out_dir = tmp_path / "results.sqlite", tmp_path / "reports"
    runs = json.loads(json.dumps(demo_lines))
    for run in runs:  # AdamW seeds 1 and 2 diverged: their losses became NaN / inf (what an export of them holds)
        if run["name"] == "AdamW" and run["seed"] > 0:
            run["record"]["final"].update(train_loss=float("nan"), valid_loss=float("inf"))
            run["epochs"][-1].update(train_loss=float("nan"), valid_loss=float("inf"))
    path = write_lines(tmp_path / "demo.jsonl", runs)
    code, out, _ = run_main(capsys, "store", "import", path, "--store", store)
    assert code == 0 and "12 runs added" in out
    with ResultsStore(store) as db:
        digest = file_digest(path)[:16]
        assert set(db.imported("demo").values()) == {f"demo.jsonl sha256:{digest}"}
        # a run written with an infinite accuracy (not through import, which refuses it) diverged too
        rid = next(r["run_id"] for r in runs if r["name"] == "LA/SGD" and r["seed"] == 0)
        record = db.record(rid)
        record["final"]["accuracy"] = float("inf")
        with closing(sqlite3.connect(store)) as conn, conn:
            conn.execute("UPDATE runs SET record_json = ? WHERE run_id = ?", (json.dumps(record), rid))
    with ResultsStore(store, readonly=True) as db:
        rows = {s.row: s for s in summarize(db, "demo", "cpu")}
        assert (rows["AdamW"].seeds, rows["AdamW"].diverged) == (1, 2)
        assert rows["AdamW"].final_accuracy.n == 1 and rows["AdamW"].valid_loss.n == 1
        assert (rows["LA/SGD"].seeds, rows["LA/SGD"].diverged) == (2, 1)
        by_pair = {(c.row, c.versus): c for c in compare(db, "demo", "cpu")}
    adamw = next(c for (row, versus), c in by_pair.items() if "AdamW" in (row, versus) and "SGD" in (row, versus))
    assert len(adamw.seeds) == 1 and adamw.verdict == "cannot tell (1 seed)"  # not "[+nan, +nan] pp"
    code, out, err = run_main(capsys, "run", "demo", "--scale", "cpu", "--only", "SGD", "--store", store)
    assert code == 0, err  # nothing to train: the run says the seeds it skips were imported
    assert "3 already finished (3 of them imported by `store import`, not trained in this store)" in out
    assert out.count("(already finished, imported)") == 3
    code, _, err = run_main(capsys, "report", "demo", "--store", store, "--out", out_dir)
    assert code == 0, err
    text = (out_dir / "demo.md").read_text()
    assert (f"- **Imported**: 12 of these 12 runs were added by `lookahead-fastai store import`, not trained in this "
            f"store (from demo.jsonl sha256:{digest})") in text
    assert ("- **Diverged** (a final metric NaN or infinite, or the final train loss at or above chance, ln C for C "
            "classes): 3 of 12 runs (AdamW 2, LA/SGD 1)") in text
    assert "| AdamW | 1 | 2 |" in text  # seeds used, diverged
    numbers = "\n".join(line for line in text.splitlines() if not line.startswith("- **Diverged**"))
    assert not re.search(r"\b(nan|inf)\b", numbers, re.IGNORECASE), numbers  # no "inf%", no "[+nan, +nan]"


# ------------------------------------------------------------------------------------------------
# checkpoints belong to their run and their store
# ------------------------------------------------------------------------------------------------
def smoke(name):
    return next(s for s in get_experiment("demo").specs("smoke") if s.name == name)


def test_a_new_database_beside_an_old_files_folder_does_not_resume_its_checkpoint(tmp_path, capsys):
    store, spec = tmp_path / "results.sqlite", smoke("SGD")
    _, ckpt = killed_after_epoch_0(store, spec)
    assert ckpt.exists()
    for p in tmp_path.glob("results.sqlite*"):  # the database deleted, its files folder kept
        p.unlink()
    code, out, err = run_main(capsys, "run", "demo", "--only", "SGD", "--seeds", "1", "--store", store)
    assert code == 0, err
    line = one_line(err)
    assert "CheckpointWarning: unusable checkpoint" in line and "this store did not write it" in line
    assert "the run starts over" in line
    with ResultsStore(store, readonly=True) as db:
        assert [e["epoch"] for e in db.epochs(spec.run_id(0))] == [0, 1]  # trained from the start
        assert db.record(spec.run_id(0))["epochs"] == 2


def test_another_runs_checkpoint_is_moved_aside_and_the_own_one_resumed(tmp_path, capsys):
    store, sgd, la = tmp_path / "results.sqlite", smoke("SGD"), smoke("LA/SGD")
    la_rows, la_ckpt = killed_after_epoch_0(store, la)
    sgd_dir = store_files_dir(store) / "checkpoints" / sgd.run_id(0)
    sgd_dir.mkdir(parents=True)
    shutil.copy(la_ckpt, sgd_dir / CHECKPOINT_NAME)  # LA/SGD's checkpoint in SGD's folder
    code, out, err = run_main(capsys, "run", "demo", "--only", "SGD", "LA/SGD", "--seeds", "1", "--store", store)
    assert code == 0, err
    line = one_line(err)  # SGD's folder only: LA/SGD resumed its own without a word
    assert str(sgd_dir / CHECKPOINT_NAME) in line and "the run starts over" in line
    assert [p.name.split("-")[0] for p in sgd_dir.iterdir()] == [f"{CHECKPOINT_NAME}.unusable"]
    with ResultsStore(store, readonly=True) as db:
        assert [e["epoch"] for e in db.epochs(sgd.run_id(0))] == [0, 1]
        assert db.epochs(la.run_id(0))[0] == la_rows[0]  # epoch 0 kept as first written (its time too): resumed


def _state(binding, epoch=0):
    return {"binding": binding, "epoch": epoch, "history": [{"epoch": e} for e in range(epoch + 1)], "model": {},
            "opt": {}, "scaler": None, "callbacks": {}, "rng": {}, "seconds": 0.0}


FORGED = [  # a checkpoint whose digest the store did record (forged with its help), still refused
    ("keys-missing", lambda b: {"epoch": 0}, "it lacks the keys binding, history"),
    ("epoch-negative", lambda b: {**_state(b), "epoch": -3}, "its epoch -3 is outside this run's epochs 0 to 1"),
    ("epoch-beyond", lambda b: {**_state(b), "epoch": 10 ** 6}, "its epoch 1000000 is outside"),
    ("history-short", lambda b: {**_state(b, 1), "history": [{"epoch": 1}]}, "history does not hold exactly"),
    ("another-store", lambda b: _state({**b, "store": "0" * 32}), "written for another store"),
    ("another-run", lambda b: _state({**b, "run_id": "0123456789abcdef"}), "written for another run"),
    ("another-spec", lambda b: _state({**b, "spec": "0" * 16}), "written for another spec"),
]


@pytest.mark.parametrize("make,reason", [c[1:] for c in FORGED], ids=[c[0] for c in FORGED])
def test_a_checkpoint_not_of_this_run_is_moved_aside_even_with_its_digest_recorded(tmp_path, make, reason):
    with ResultsStore(tmp_path / "results.sqlite") as db:
        lease = db.claim("r1", "exp", "SGD", 0, {"epochs": 2}, heartbeat_s=0)
        lease.log_epoch(0, {"accuracy": 0.5})
        lease.checkpoint_dir.mkdir(parents=True)
        ckpt = lease.checkpoint_dir / CHECKPOINT_NAME
        torch.save(_state(lease.checkpoint_binding), ckpt)  # the control: all checks pass
        lease.record_checkpoint(file_digest(ckpt))
        assert lease.resume_point(epochs=2)["epoch"] == 0
        torch.save(make(lease.checkpoint_binding), ckpt)
        lease.record_checkpoint(file_digest(ckpt))
        with pytest.warns(CheckpointWarning, match=reason):
            assert lease.resume_point(epochs=2) is None
        assert not ckpt.exists() and db.epochs("r1") == []  # moved aside; the run starts over
        lease.release()


# ------------------------------------------------------------------------------------------------
# a foreign database, a full disk, small CLI inputs
# ------------------------------------------------------------------------------------------------
def test_foreign_database_with_runs_and_epochs_tables_is_left_untouched(tmp_path, capsys):
    foreign = tmp_path / "app.sqlite"
    with closing(sqlite3.connect(foreign)) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, who TEXT)")
        conn.execute("CREATE TABLE epochs (id INTEGER PRIMARY KEY, lap REAL)")
        conn.execute("INSERT INTO runs (who) VALUES ('mine')")
        conn.execute("PRAGMA user_version = 2")
        conn.commit()
    before = foreign.read_bytes()
    for args in (["run", "demo"], ["report", "demo"], ["store", "export", "demo"], ["store", "import", DEMO]):
        code, _, err = run_main(capsys, *args, "--store", foreign)
        assert code == 2, (args, err)
        assert "not a results store (its table runs has no columns" in one_line(err), (args, err)
    assert foreign.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.sqlite"]  # no -wal / -shm / .files
    with closing(sqlite3.connect(foreign)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_full_disk_marks_the_run_failed_and_leaves_no_partial_checkpoint(tmp_path, capsys):
    store = tmp_path / "results.sqlite"
    files = store_files_dir(store)
    files.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(files)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs at {files} ({mounted.stderr.strip()}): the full-disk test needs root "
                    "(CI runs it as root)")
    try:  # the checkpoint folder's filesystem holds 64 KiB: the first checkpoint does not fit
        code, _, err = run_main(capsys, "run", "demo", "--only", "SGD", "--seeds", "1", "--store", store)
        assert code == 2 and "No space left on device" in one_line(err)
        assert not list(files.rglob("*.tmp"))
    finally:
        if subprocess.run(["umount", str(files)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(files)], capture_output=True)
    with ResultsStore(store, readonly=True) as db:
        (run,) = db.runs()
        assert run["status"] == "failed" and "No space left on device" in run["error"]


@pytest.mark.parametrize("args,message", [
    (["run", "demo", "--executor", "ray", "--cpus-per-run", "nan"], "argument --cpus-per-run: must be a finite number"),
    (["run", "demo", "--executor", "ray", "--gpus-per-run", "inf"], "argument --gpus-per-run: must be a finite number"),
    (["run", "demo", "--seeds", "٣"], "argument --seeds: must be a whole number, got '٣' (digits 0-9)"),
    (["plan", "demo", "--seeds", "３"], "argument --seeds: must be a whole number"),
])
def test_cli_numbers_name_their_option(args, message, capsys):
    code, _, err = run_main(capsys, *args)
    assert code == 2 and message in one_line(err)


def test_a_store_of_schema_2_gets_its_identity_on_the_first_writable_open(tmp_path):
    path = tmp_path / "old.sqlite"
    with closing(sqlite3.connect(path)) as conn:  # what schema 2 created
        conn.executescript("""
            CREATE TABLE runs (run_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, name TEXT NOT NULL,
                seed INTEGER NOT NULL, spec_json TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL,
                finished_at TEXT, error TEXT, record_json TEXT, pid INTEGER, host TEXT, owner TEXT, heartbeat REAL);
            CREATE TABLE epochs (run_id TEXT NOT NULL, epoch INTEGER NOT NULL, metrics_json TEXT NOT NULL,
                PRIMARY KEY (run_id, epoch));
            INSERT INTO runs VALUES ('r1', 'exp', 'SGD', 0, '{}', 'finished', 't', 't', NULL, '{"final": {}}',
                                     1, 'h', NULL, NULL);
            PRAGMA user_version = 2;""")
    with ResultsStore(path, readonly=True) as db:  # read-only: nothing written, nothing new to read
        assert db.store_id is None and db.imported() == {} and db.record("r1") == {"final": {}}
    with ResultsStore(path) as db:
        store_id = db.store_id
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == 3
        assert len(store_id) == 32 and int(store_id, 16) >= 0
        assert db.record("r1") == {"final": {}} and db.checkpoint_digests("r1") == []
    with ResultsStore(path) as db:
        assert db.store_id == store_id  # written once
    with ResultsStore(tmp_path / "new.sqlite") as db:
        assert len(db.store_id) == 32 and db.store_id != store_id


def test_a_run_of_a_dataset_registered_elsewhere_imports_under_the_id_its_spec_gives(tmp_path, capsys, demo_lines):
    from lookahead_fastai.experiments.spec import RunSpec
    from lookahead_fastai.store import run_identity
    run = json.loads(json.dumps(demo_lines[0]))
    run["spec"]["dataset"] = run["record"]["dataset"] = "my_own_images"  # not registered in this process
    run["run_id"] = run["record"]["run_id"] = run_identity(RunSpec.identity_of(run["spec"]), run["seed"])
    store = tmp_path / "results.sqlite"
    code, out, err = run_main(capsys, "store", "import", write_lines(tmp_path / "mine.jsonl", [run]), "--store", store)
    assert code == 0 and "1 runs added" in out, err
    with ResultsStore(store, readonly=True) as db:
        assert db.record(run["run_id"])["dataset"] == "my_own_images"
