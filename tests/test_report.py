"""Reports: tables over seeds, paired intervals, stale specs left out, the index."""
import pytest

from lookahead_fastai import experiments
from lookahead_fastai.experiments import Experiment
from lookahead_fastai.experiments.spec import grid
from lookahead_fastai.report import paired_differences, summary_table, write_index, write_report
from lookahead_fastai.runner import fit_and_record
from lookahead_fastai.store import ResultsStore

EPOCHS = {"value": 1}


def build(scale):
    common = dict(dataset="digits", arch="mlp", epochs=EPOCHS["value"], bs=32, n_train=160, n_valid=80,
                  schedule="constant")
    return grid("tiny", scale, [dict(name="SGD", optimizer="sgd", lr=0.05, hyper={"mom": 0.9}),
                                dict(name="LA/SGD", optimizer="lookahead(sgd)", lr=0.05, hyper={"mom": 0.9})],
                **common)


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    exp = Experiment("tiny", "a tiny comparison", "SGD", build, protocol={"smoke": "digits, 160 / 80"})
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", exp)
    monkeypatch.setitem(EPOCHS, "value", 1)
    store = tmp_path / "r.sqlite"
    for seed in range(3):
        for spec in exp.specs("smoke"):
            fit_and_record(spec, seed, store=store)
    return store


def test_tables_intervals_and_report_file(tiny, tmp_path):
    with ResultsStore(tiny) as db:
        table = summary_table(db, "tiny", "smoke")
        pairs = paired_differences(db, "tiny", "smoke")
    assert list(table["optimizer"]) == ["SGD", "LA/SGD"] and list(table["seeds"]) == [3, 3]
    assert table.loc[1, "slow-weights accuracy"] != "n/a" and table.loc[0, "slow-weights accuracy"] == "n/a"
    row = pairs.iloc[0]
    assert (row["optimizer"], row["vs"], row["paired seeds"]) == ("LA/SGD", "SGD", 3)
    low, high = (float(v) for v in row["95% interval"].strip("[] p").split(", "))
    mean = float(row["mean difference"].split()[0])
    assert low <= mean <= high
    assert row["conclusion"] == ("better" if low > 0 else "worse" if high < 0 else "no difference shown")

    path = write_report(tiny, "tiny", out_dir=tmp_path / "reports")
    text = path.read_text()
    for needle in ("## Scale `smoke`", "**Seeds**: 3 (0, 1, 2)", "digits (160 train / 80 valid images)",
                   "**not** a reproduction", "Generated 20", "| LA/SGD | SGD | 3 |"):
        assert needle in text, needle
    assert (tmp_path / "reports" / "tiny_smoke.png").exists()


def test_runs_of_an_older_spec_are_left_out(tiny, monkeypatch):
    monkeypatch.setitem(EPOCHS, "value", 2)  # the experiment now declares 2 epochs: old runs are stale
    exp = experiments.EXPERIMENTS["tiny"]
    fit_and_record(exp.specs("smoke")[0], 0, store=tiny)
    with ResultsStore(tiny) as db:
        table = summary_table(db, "tiny", "smoke")
        assert len(db.runs("tiny")) == 7  # kept in the store
    assert list(table["optimizer"]) == ["SGD"] and list(table["seeds"]) == [1]


def test_index_lists_reports_and_conclusions(tiny, tmp_path):
    path = write_index(tiny, out_dir=tmp_path, scale="smoke")
    text = path.read_text()
    assert "| [tiny](tiny.md) | `smoke` | digits (160 / 80) | 3 |" in text
    assert "LA/SGD vs SGD" in text and "Does Lookahead help?" in text
