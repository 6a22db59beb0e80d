"""Reports: tables over seeds, comparison kinds from the specs, Holm-adjusted verdicts, identical
differences, where the runs ran, deviations, stale specs left out, the index."""
import math

import numpy as np
import pytest

from lookahead_fastai import experiments
from lookahead_fastai.experiments import Experiment, get_experiment
from lookahead_fastai.experiments.deviations import Deviation
from lookahead_fastai.experiments.spec import grid
from lookahead_fastai.results.compare import compare, comparison_kind
from lookahead_fastai.results.index import write_index
from lookahead_fastai.results.report import paired_differences, summary_table, write_report
from lookahead_fastai.results.stats import holm
from lookahead_fastai.results.wording import UNKNOWN_ENV, run_environments
from lookahead_fastai.runner import fit_and_record
from lookahead_fastai.store import ResultsStore

EPOCHS = {"value": 1}
ROWS = [dict(name="SGD", optimizer="sgd", lr=0.05, hyper={"mom": 0.9}),
        dict(name="LA/SGD", optimizer="lookahead(sgd)", lr=0.05, hyper={"mom": 0.9}),
        dict(name="LA/SGD · lr 0.1", optimizer="lookahead(sgd)", lr=0.1, hyper={"mom": 0.9}),
        dict(name="SGD again", optimizer="sgd", lr=0.05, hyper={"mom": 0.9})]


def build(scale, rows=ROWS):
    common = dict(dataset="digits", arch="mlp", epochs=EPOCHS["value"], bs=32, n_train=160, n_valid=80,
                  schedule="constant")
    return grid("tiny", scale, rows, **common)


TINY = Experiment("tiny", "a tiny comparison", "SGD", build, protocol={"smoke": "digits, 160 / 80"},
                  comparisons=(("LA/SGD", "SGD"), ("LA/SGD · lr 0.1", "SGD"), ("SGD again", "SGD")),
                  deviations=(Deviation("data", "a big dataset", "160 digits", "a test must be fast"),))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny experiment's 12 runs, trained once for the module."""
    store = tmp_path_factory.mktemp("report") / "r.sqlite"
    for seed in range(3):
        for spec in TINY.specs("smoke"):
            fit_and_record(spec, seed, store=store)
    return store


@pytest.fixture
def tiny(trained, monkeypatch, tmp_path):
    """A copy of the trained store (tests may add runs), with the experiment registered."""
    import sqlite3
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", TINY)
    monkeypatch.setitem(EPOCHS, "value", 1)
    store = tmp_path / "r.sqlite"
    with sqlite3.connect(trained) as src, sqlite3.connect(store) as dst:
        src.backup(dst)
    return store


def test_tables_intervals_kinds_and_report_file(tiny, tmp_path):
    with ResultsStore(tiny) as db:
        table = summary_table(db, "tiny", "smoke")
        pairs = paired_differences(db, "tiny", "smoke")
        comparisons = compare(db, "tiny", "smoke")
    assert list(table["optimizer"]) == ["SGD", "LA/SGD", "LA/SGD · lr 0.1", "SGD again"]
    assert list(table["seeds"]) == [3, 3, 3, 3]
    assert table.loc[1, "slow-weights accuracy"] != "n/a" and table.loc[0, "slow-weights accuracy"] == "n/a"

    la, la_lr, again = comparisons
    assert (la.kind, la.differs, la.lookahead_vs_inner) == ("like-for-like", ("wrapper",), 1)
    assert (la_lr.kind, set(la_lr.differs)) == ("confounded", {"lr", "wrapper"})
    row = pairs.iloc[0]
    assert (row["optimizer"], row["vs"], row["paired seeds"], row["kind"]) == ("LA/SGD", "SGD", 3, "like-for-like")
    low, high = (float(v) for v in row["95% interval"].strip("[] p").split(", "))
    mean = float(row["mean difference"].split()[0])
    assert low <= mean <= high
    assert math.isclose(low, la.low * 100, abs_tol=0.006) and math.isclose(high, la.high * 100, abs_tol=0.006)
    # the verdict is Holm's, over the comparisons that have a p-value
    tested = [c for c in comparisons if not math.isnan(c.p_raw)]
    assert [c.p_holm for c in tested] == pytest.approx(holm([c.p_raw for c in tested]))
    for c in tested:
        expected = ("better" if c.mean > 0 else "worse") if c.p_holm <= 0.05 else "no difference shown"
        assert c.verdict == expected
    # a rerun of the same spec under another name trains the same runs: identical in every seed
    assert again.kind == "like-for-like" and again.differs == ()
    assert again.differences == (0.0, 0.0, 0.0) and again.verdict == "identical in every seed"
    assert math.isnan(again.p_raw) and math.isnan(again.low)
    assert "no spread, no interval" in pairs.iloc[2]["95% interval"]

    path = write_report(tiny, "tiny", out_dir=tmp_path / "reports")
    text = path.read_text()
    for needle in ("## Scale `smoke`", "**Seeds**: 3 (0, 1, 2)", "digits (160 train / 80 valid images)",
                   "**not** a reproduction", "Generated 20", "| LA/SGD | SGD | 3 | like-for-like | wrapper |",
                   "family-wise error rate", "Holm", "## Deviations from the original",
                   "| data | a big dataset | 160 digits | a test must be fast |", "**Ran on** (from the runs' records)",
                   "like-for-like 2, tuned 0, confounded 1", "**Runs**: 12 of 12 planned (4 rows × 3 seeds)"):
        assert needle in text, needle
    assert "no difference |" not in text.replace("no difference shown", "")  # never a bare "no difference"
    assert (tmp_path / "reports" / "tiny_smoke.png").exists()
    assert "Incomplete" not in text


def test_an_unfinished_grid_is_said_so_in_the_report_and_the_index(tiny, tmp_path, monkeypatch):
    """A row the experiment declares but no run finished: the report and the index say how much of the
    grid finished and which rows are short, instead of reading like a complete study."""
    more = ROWS + [dict(name="LA/SGD k10", optimizer="lookahead(sgd)", lr=0.05, hyper={"mom": 0.9, "k": 10})]
    grown = Experiment("tiny", TINY.description, "SGD", lambda scale: build(scale, more),
                       protocol=TINY.protocol, comparisons=TINY.comparisons, deviations=TINY.deviations,
                       default_seeds={"smoke": 3, "cpu": 3, "full": 3})
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", grown)
    fit_and_record(grown.specs("smoke")[-1], 0, store=tiny)  # one of its three seeds
    text = write_report(tiny, "tiny", out_dir=tmp_path).read_text()
    assert "**Runs**: 13 of 15 planned (5 rows × 3 seeds)" in text
    assert ("> **Incomplete**: 13 of 15 planned (5 rows × 3 seeds) runs have finished. Rows short of 3 seeds "
            "(seeds finished): LA/SGD k10 (1).") in text
    index = write_index(tiny, out_dir=tmp_path, scale="smoke").read_text()
    assert "| 3 | 13 of 15 (**incomplete**) | " in index


def test_runs_of_an_older_spec_are_left_out(tiny, monkeypatch):
    monkeypatch.setitem(EPOCHS, "value", 2)  # the experiment now declares 2 epochs: old runs are stale
    fit_and_record(TINY.specs("smoke")[0], 0, store=tiny)
    with ResultsStore(tiny) as db:
        table = summary_table(db, "tiny", "smoke")
        assert len(db.runs("tiny")) == 13  # kept in the store
    assert list(table["optimizer"]) == ["SGD"] and list(table["seeds"]) == [1]


def test_index_lists_every_comparison_without_a_tally(tiny, tmp_path):
    path = write_index(tiny, out_dir=tmp_path, scale="smoke")
    text = path.read_text()
    assert "| [tiny](tiny.md) | `smoke` | digits (160 / 80) | 3 | 12 of 12 | " in text
    row = next(line for line in text.splitlines() if line.startswith("| [tiny]"))
    with ResultsStore(tiny, readonly=True) as db:  # the smallest detectable difference, from the intervals
        tested = [c for c in compare(db, "tiny", "smoke") if not math.isnan(c.low)]
    median = float(np.median([(c.high - c.low) / 2 for c in tested])) if tested else None
    assert (f"{median * 100:.2f} pp (" in row and ", 3 seeds |" in row) if tested else "| — |" in row
    # the question comes first; tiny declares none, so it has no family: no count of verdicts stands in for one
    assert text.split("\n## ")[1].startswith("Lookahead against its inner optimizer")
    assert "_No finished runs of an experiment that declares this question at this scale._" in text
    assert "Counted:" not in text and "- [tiny](tiny.md): like-for-like" not in text
    assert "LA/SGD · lr 0.1 vs SGD (confounded)" in text  # every comparison is still listed, with its kind
    assert "one in twenty" not in text and "no difference in the" not in text
    assert "family-wise error rate" in text


def test_holm_matches_the_step_down_definition():
    p = [0.01, 0.04, 0.03, float("nan"), 0.005]
    adjusted = holm(p)
    # sorted: 0.005 (x4), 0.01 (x3), 0.03 (x2), 0.04 (x1), running maximum
    assert adjusted[4] == pytest.approx(0.02) and adjusted[0] == pytest.approx(0.03)
    assert adjusted[2] == pytest.approx(0.06) and adjusted[1] == pytest.approx(0.06)
    assert math.isnan(adjusted[3])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_environment_of_each_run_or_unknown():
    runs = [{"record": {"env": {"machine": "Linux x86_64, 16 CPU cores", "device": "cuda: NVIDIA H100",
                                "torch": "2.14.1", "fastai": "2.8.12", "python": "3.11.9"}}},
            {"record": {"env": {"machine": "Linux x86_64, 16 CPU cores", "device": "cuda: NVIDIA H100",
                                "torch": "2.14.1", "fastai": "2.8.12", "python": "3.11.9"}}},
            {"record": {}}]
    envs = run_environments(runs)
    assert envs == ["Linux x86_64, 16 CPU cores; device cuda: NVIDIA H100; torch 2.14.1; fastai 2.8.12; "
                    "python 3.11.9", UNKNOWN_ENV]


def test_kinds_come_from_the_specs_not_the_labels():
    paper = get_experiment("paper_cifar")
    full = {s.name: s for s in paper.specs("full")}
    tuned = paper.tuned["full"]
    # the paper's Lookahead setting against SGD's: each from the paper's sweep -> tuned
    assert comparison_kind(full["LA/SGD · C10"], full["SGD · C10"], tuned)[0] == "tuned"
    assert comparison_kind(full["LA/SGD · SGD's lr · C10"], full["SGD · C10"], tuned) == ("like-for-like", ("wrapper",))
    cpu = {s.name: s for s in paper.specs("cpu")}  # no sweep declared at cpu: the lr differs -> confounded
    assert comparison_kind(cpu["LA/SGD · C10"], cpu["SGD · C10"], paper.tuned.get("cpu", {}))[0] == "confounded"
    start = {s.name: s for s in get_experiment("start_off").specs("cpu")}
    # the original's LA/SGD: momentum 0 and lr 0.1 against SGD's 0.9 and 0.05
    assert comparison_kind(start["LA/SGD · C10"], start["SGD · C10"]) == ("confounded", ("mom", "lr", "wrapper"))
    # a relabelled spec keeps its kind: labels play no part
    import dataclasses
    renamed = dataclasses.replace(start["LA/SGD · C10 · lr 0.05"], name="anything at all")
    assert comparison_kind(renamed, start["SGD · C10"]) == ("like-for-like", ("wrapper",))
    # fastai's ranger against RAdam with the same settings: only the wrapper differs
    board = {s.name: s for s in get_experiment("imagenette_leaderboard").specs("full")}
    assert comparison_kind(board["ranger (fastai) · Imagenette · 5 ep"], board["RAdam · Imagenette · 5 ep"]) == \
        ("like-for-like", ("wrapper",))
    assert comparison_kind(board["LA/RAdam (ours) · Imagenette · 5 ep"], board["RAdam · Imagenette · 5 ep"]) == \
        ("like-for-like", ("wrapper",))


def test_every_experiment_declares_deviations_with_all_fields():
    from lookahead_fastai.experiments import EXPERIMENTS
    for name, exp in EXPERIMENTS.items():
        assert exp.deviations, name
        for d in exp.deviations:
            assert all(getattr(d, f).strip() for f in ("what", "original", "here", "why")), (name, d)
    rows = {d.what for d in get_experiment("start_off").deviations}
    assert "plain rows in the reset tables" in rows
    assert np.all([bool(get_experiment(n).deviations) for n in ("nested_lookahead", "optimizer_state",
                                                               "optimizer_tour", "optimizers_from_scratch",
                                                               "imagenette", "data_paths", "demo")])


def test_seed_counts_in_deviations_are_the_declared_default_seeds():
    """A deviation that says how many seeds a row gets says what `run` does: every "N seeds" (or "N runs
    with seeds") in its `here` text is the cpu or full default, and where those differ it names both."""
    import re
    from lookahead_fastai.experiments import EXPERIMENTS
    stated = 0
    for name, exp in EXPERIMENTS.items():
        cpu, full = exp.default_seeds["cpu"], exp.default_seeds["full"]
        for d in exp.deviations:
            counts = {int(n) for n in re.findall(r"\b(\d+) (?:seeds|runs with seeds)\b", d.here)}
            if not counts:
                continue
            stated += 1
            assert counts <= {cpu, full}, (name, d.here, exp.default_seeds)
            assert counts == {cpu, full}, (name, d.here, "names one count where cpu and full differ")
    assert stated >= 5


def test_lookahead_variants_are_named_and_stay_out_of_the_question(tiny, tmp_path, monkeypatch):
    """Nested Lookahead and a reset or pullback of the inner state at syncs are other algorithms: their
    comparisons with the plain optimizer carry the variant, and no experiment puts them in the question's family."""
    extra = [dict(name="LA/SGD · reset", optimizer="lookahead(sgd)", lr=0.05, hyper={"mom": 0.9, "pullback": "reset"}),
             dict(name="NLA/SGD", optimizer="nested(sgd)", lr=0.05, hyper={"mom": 0.9})]
    grown = Experiment("tiny", TINY.description, "SGD", lambda scale: build(scale, ROWS + extra),
                       protocol=TINY.protocol, deviations=TINY.deviations,
                       comparisons=TINY.comparisons + (("LA/SGD · reset", "SGD"), ("NLA/SGD", "SGD")))
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", grown)
    for seed in range(3):
        for spec in grown.specs("smoke")[-2:]:
            fit_and_record(spec, seed, store=tiny)
    with ResultsStore(tiny, readonly=True) as db:
        variants = {c.row: c.variant for c in compare(db, "tiny", "smoke")}
    assert variants == {"LA/SGD": "", "LA/SGD · lr 0.1": "", "SGD again": "",
                        "LA/SGD · reset": "inner state reset at syncs", "NLA/SGD": "nested"}
    text = write_index(tiny, out_dir=tmp_path, scale="smoke").read_text()
    question = text.split("\n## ")[1]
    assert "LA/SGD · reset" not in question and "NLA/SGD" not in question
    assert "- **tiny**: LA/SGD · reset vs SGD (like-for-like)" in text and "- **tiny**: NLA/SGD vs SGD (like-for-like)" in text


def test_show_results_in_a_notebook_says_an_unfinished_grid_is_incomplete(tiny, tmp_path, monkeypatch):
    """The notebook view of a grid that stopped part-way carries the report's Incomplete note."""
    from IPython.display import Markdown

    from lookahead_fastai import notebook
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.extend(objs))
    notebook.show_results("tiny", "smoke", store=tiny, figures_dir=tmp_path)
    assert not any("Incomplete" in o.data for o in shown if isinstance(o, Markdown))
    import sqlite3
    from contextlib import closing
    with closing(sqlite3.connect(tiny)) as conn, conn:  # one seed of one row gone: 11 of 12
        conn.execute("DELETE FROM runs WHERE name = 'SGD again' AND seed = 2")
    shown.clear()
    notebook.show_results("tiny", "smoke", store=tiny, figures_dir=tmp_path)
    notes = [o.data for o in shown if isinstance(o, Markdown) and "Incomplete" in o.data]
    assert notes == ["> **Incomplete**: 11 of 12 planned (4 rows × 3 seeds) runs have finished. Rows short of 3 "
                     "seeds (seeds finished): SGD again (2). Everything below uses only the finished runs; "
                     "`lookahead-fastai run` with the same store finishes the rest.\n"]


def test_the_notebooks_best_row_comes_from_the_numbers_not_the_formatted_cells():
    """Two rows that print the same ("93.10 ± 0.10%") are told apart by their numbers; the formatted
    table is never parsed back."""
    import pandas as pd

    from lookahead_fastai.notebook import style_summary
    table = pd.DataFrame([{"optimizer": "A", "final accuracy": "93.10 ± 0.10%"},
                          {"optimizer": "B", "final accuracy": "93.10 ± 0.10%"}])
    styled = style_summary(table, scores=[0.93101, 0.93104]).to_html().split("</style>")[0]  # the CSS rules
    assert "row1_col0" in styled and "row0_col0" not in styled and "font-weight: bold" in styled
    assert "font-weight" not in style_summary(table, scores=[math.nan, None]).to_html()


def test_a_three_split_report_shows_validation_and_test_apart(monkeypatch, tmp_path):
    """Runs with a holdout: the summary labels its accuracy validation beside the test accuracy, the Data
    line states the held-out split (size, seed), and the paired differences come again on the test split."""
    def three(scale):
        return grid("tiny3", scale, ROWS[:2], dataset="digits", arch="mlp", epochs=1, bs=32, n_train=160,
                    n_valid=80, holdout=0.1)
    exp = Experiment("tiny3", "three splits", "SGD", three, scales=("smoke",))
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny3", exp)
    store = tmp_path / "t.sqlite"
    for seed in range(2):
        for spec in exp.specs("smoke"):
            fit_and_record(spec, seed, store=store)
    text = write_report(store, "tiny3", out_dir=tmp_path).read_text()
    assert "| final accuracy (validation) | test accuracy |" in text
    assert "144 validation, held out of the 1438 training images (class-stratified, seed 20261206" in text
    assert "80 test images" in text
    assert "### Paired differences in test accuracy" in text
    with ResultsStore(store) as s:
        tests = [r["record"]["final"]["test_accuracy"] for r in s.runs("tiny3") if r["name"] == "LA/SGD"]
        valids = [r["record"]["final"]["accuracy"] for r in s.runs("tiny3") if r["name"] == "LA/SGD"]
    assert f"{100 * np.mean(tests):.2f} ± {100 * np.std(tests, ddof=1):.2f}%" in text
    assert f"{100 * np.mean(valids):.2f} ± {100 * np.std(valids, ddof=1):.2f}%" in text
