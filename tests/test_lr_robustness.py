"""lr_robustness: the grid at every scale, a smoke run through the sweep with its report, and the
report regenerated from exported raw results (store export / import through the CLI)."""
import hashlib
import math
import re

import numpy as np
import pytest

from lookahead_fastai import grid_rules
from lookahead_fastai.cli import main
from lookahead_fastai.experiments import get_experiment
from lookahead_fastai.experiments import lr_robustness as lr
from lookahead_fastai.registry.optimizers import optimizer_parts
from lookahead_fastai.results.compare import comparison_kind, compare
from lookahead_fastai.results.report import write_report
from lookahead_fastai.store import ResultsStore
from lookahead_fastai.sweep import run_experiment

EXP = get_experiment("lr_robustness")
# a few rows of the smoke grid: two lrs of SGD and of LA k5 α0.5 / SGD on Fashion-MNIST, SGD and
# LA k10 α0.8 / SGD at one lr on the CIFAR-10 subset; two seeds, so the paired comparisons have intervals
ROWS = [lr.row_name(inner, variant, rate, "fashion_mnist", "smoke") for inner, variant, rate in
        (("SGD", "", 0.1), ("SGD", "", 0.3), ("SGD", "LA k5 α0.5", 0.1), ("SGD", "LA k5 α0.5", 0.3))] + \
       [lr.row_name("SGD", v, 0.1, "cifar10", "smoke") for v in ("", "LA k10 α0.8")]


def _fm(variant, rate):
    return lr.row_name("SGD", variant, rate, "fashion_mnist", "smoke")


@pytest.mark.parametrize("scale", ["smoke", "cpu", "full"])
def test_specs_cover_the_grid(scale):
    specs = EXP.specs(scale)  # RunSpec validates every field on construction
    assert len({s.name for s in specs}) == len(specs) == 2 * 2 * 3 * 6
    assert {s.dataset for s in specs} == {"cifar10", "fashion_mnist"}
    for dataset in ("cifar10", "fashion_mnist"):
        rows = [s for s in specs if s.dataset == dataset]
        # same schedule, epochs, batch size, model and data for every row of a dataset
        for field in ("schedule", "schedule_params", "epochs", "bs", "arch", "n_train", "n_valid", "augment", "holdout"):
            assert len({repr(getattr(s, field)) for s in rows}) == 1, (scale, dataset, field)
        families = {}
        for s in rows:
            parts = optimizer_parts(s.optimizer, s.hyper)
            families.setdefault((parts.inner, tuple(sorted(parts.wrapper_hyper.items()))), []).append(s)
        assert {inner for inner, _ in families} == {"sgd", "adam"}
        assert {dict(w).get("k") for _, w in families} == {None, 5, 10}
        for (inner, wrapper), family in families.items():
            lrs = sorted(s.lr for s in family)
            assert len(lrs) >= 6 and lrs[-1] / lrs[0] >= 100, (inner, lrs)  # the grid, before extension
            usual = {"sgd": 0.1, "adam": 1e-3}[inner]
            assert lrs[0] < usual < lrs[-1]
            if wrapper:
                assert dict(wrapper) in ({"k": 5, "alpha": 0.5, "pullback": "none"},
                                         {"k": 10, "alpha": 0.8, "pullback": "none"})
                assert all(s.eval_slow_weights for s in family)
            # the same inner settings in every family of this inner optimizer
            assert len({repr(optimizer_parts(s.optimizer, s.hyper).inner_hyper) for s in family}) == 1
    names = {s.name: s for s in specs}
    # every declared comparison of this scale is Lookahead minus its inner optimizer at the same lr
    declared = [(a, b) for a, b in EXP.comparisons if a in names and b in names]
    assert len(declared) == 2 * 2 * 2 * 6
    for a, b in declared:
        assert names[a].lr == names[b].lr
        assert comparison_kind(names[a], names[b]) == ("like-for-like", ("wrapper",))
    # the declared sweeps: each family over its lr grid
    sweeps = grid_rules.sweeps(lr.sweep_cells(scale))
    assert len(sweeps) == 12 and all(len(rows) == 6 for rows in sweeps.values())
    assert all(s.holdout for s in specs)  # three splits at every scale: validation chooses, test is scored once
    assert {n for rows in sweeps.values() for n in rows} == set(names)


def test_seeds_and_the_cpu_scale_use_the_real_offline_data():
    for scale in ("cpu", "full"):  # two stages: 3 tuning seeds, >= 8 fresh confirmation seeds (the protocol)
        stages = EXP.stages[scale]
        assert len(stages.tuning) == 3 and len(stages.confirmation) >= 8
        assert not set(stages.tuning) & set(stages.confirmation)
    assert EXP.lr_extension is not None and EXP.lr_extension.max_steps == lr.EXTENSION_STEPS >= 1
    for s in EXP.specs("cpu"):
        assert s.n_train is None and s.n_valid is None  # all of the offline CIFAR-10 subset / Fashion-MNIST
    # the measured runs are the declared ones, and the whole cpu study fits the 3-hour budget
    for dataset, measured in lr.MEASURED.items():
        assert {s.epochs for s in EXP.specs("cpu") if s.dataset == dataset} == {measured["epochs"]}
        assert measured["plain"] > 0 and measured["lookahead"] > 0
    hours = lr.projected_hours("cpu")
    assert 0 < hours <= lr.BUDGET_HOURS == 3.0
    assert f"{hours:.2f} hours" in lr.MEASURED_NOTE


def test_the_cpu_report_states_the_measured_compute_against_the_budget():
    """Every cpu run's recorded seconds, summed and spread over the study's single-threaded sweeps the
    way projected_hours spreads the measured ones; a partial study also says what the whole would take."""
    from lookahead_fastai.results.lr_report import budget_text
    stages = EXP.stages["cpu"]
    runs = [{"name": s.name, "seed": seed, "run_id": s.run_id(seed), "record": {"seconds": 60.0, "scale": "cpu", "dataset": s.dataset,
                                                                   "final": {"accuracy": 0.6 if s.lr in (0.03, 1e-3) else 0.5,  # interior bests:
                                                                             "train_loss": 1.0}}}  # no extension
            for s in EXP.specs("cpu") for seed in stages.tuning]
    assert len(runs) == 216  # the tuning stage: 72 rows x 3 seeds; then 12 chosen rows x 10 confirmation seeds
    whole = budget_text(runs, "lr_robustness", "cpu")
    machine = 216 * 60 / 3600 / lr.WORKERS + lr.PROCESS_START_S / 3600
    assert "the training times of the 216 finished runs sum to 3.60 h of one core" in whole
    assert f"that is **{machine:.2f} h of the 2 cores** for 216 of 336 runs (all 336 at their mean: about " \
           f"{336 * 60 / 3600 / 2 + lr.PROCESS_START_S / 3600:.2f} h), against {lr.projected_hours('cpu'):.2f} h " \
           "projected" in whole
    part = budget_text(runs[::2], "lr_robustness", "cpu")
    assert f"**{108 * 60 / 3600 / 2 + lr.PROCESS_START_S / 3600:.2f} h of the 2 cores** for 108 of 336 runs " in part
    assert budget_text(runs, "lr_robustness", "smoke") == "" and budget_text([], "lr_robustness", "cpu") == ""


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory, shared_data):
    import torch
    store = tmp_path_factory.mktemp("lr_robustness") / "results.sqlite"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only adds OpenMP overhead (4x the CPU time under load)
    try:
        records = run_experiment("lr_robustness", "smoke", seeds=2, only=ROWS, store=store, data_dir=shared_data,
                                 device="cpu")
    finally:
        torch.set_num_threads(threads)
    assert len(records) == 2 * len(ROWS) and all(r["epochs"] == 2 for r in records)
    return store


def _best(store, rows):
    with ResultsStore(store, readonly=True) as db:
        runs = [r for r in db.runs("lr_robustness", status="finished") if r["name"] in rows]
    means = {n: np.mean([r["record"]["final"]["accuracy"] for r in runs if r["name"] == n]) for n in rows}
    return max(rows, key=lambda n: means[n]), means


def test_a_study_stopped_part_way_says_so_and_counts_what_it_cannot_test(smoke_store, tmp_path):
    """A partial export (seed 1 missing for both Lookahead FMNIST rows): the report is marked
    Incomplete, and its closing paragraph counts the untestable comparisons once, by reason."""
    import sqlite3
    from contextlib import closing
    store = tmp_path / "partial.sqlite"
    with closing(sqlite3.connect(smoke_store)) as src, closing(sqlite3.connect(store)) as dst:
        src.backup(dst)
    with closing(sqlite3.connect(store)) as conn, conn:
        conn.executemany("DELETE FROM runs WHERE name = ? AND seed = 1",
                         [(_fm("LA k5 α0.5", 0.1),), (_fm("LA k5 α0.5", 0.3),)])
    text = write_report(store, "lr_robustness", out_dir=tmp_path / "reports").read_text()
    exp = get_experiment("lr_robustness")
    rows, seeds = len(exp.specs("smoke")), max(2, exp.default_seeds["smoke"])
    assert f"> **Incomplete**: 10 of {rows * seeds} planned ({rows} rows × {seeds} seeds) runs have finished." in text
    # named by reason (no vote count); at lr 0.3 the 2-epoch smoke runs may end at chance loss: diverged, no paired seeds
    assert re.search(r"no difference shown at the other lrs, except where a side has no paired seeds or no spread "
                     r"\([^)]*cannot tell \(1 seed\)", text)


def test_smoke_run_and_report(smoke_store, tmp_path):
    fm = [n for n in ROWS if n.endswith("FMNIST")]
    best_plain, means = _best(smoke_store, [n for n in fm if n.startswith("SGD")])
    best_la, _ = _best(smoke_store, [n for n in fm if n.startswith("LA")])
    with ResultsStore(smoke_store, readonly=True) as db:
        comparisons = compare(db, "lr_robustness", "smoke")
    pairs = {(c.row, c.versus): c for c in comparisons}
    # like-for-like at each lr, plus tuned vs tuned at each family's best lr (picked from the runs)
    for rate in (0.1, 0.3):
        c = pairs[(_fm("LA k5 α0.5", rate), _fm("", rate))]
        assert c.kind == "like-for-like" and c.collapsed[1] == c.collapsed[3] == 2
        # a seed pairs only where both runs trained (at lr 0.3 the 2-epoch smoke runs may end at chance loss)
        assert len(c.seeds) <= 2 - max(c.collapsed[0], c.collapsed[2])
    c = pairs[(_fm("LA k5 α0.5", 0.1), _fm("", 0.1))]
    assert len(c.seeds) == 2 and not math.isnan(c.low)
    tuned = pairs[(best_la, best_plain)]
    same_lr = best_la.split(" · ")[1] == best_plain.split(" · ")[1]
    assert tuned.kind == ("like-for-like" if same_lr else "tuned")
    # 2 FMNIST lrs and 1 C10 lr; the tuned FMNIST pair unless its best lrs coincide (then it is one of
    # those); C10's sweeps have one lr each here, so its tuned pair is its like-for-like one
    assert len(comparisons) == 3 + (0 if same_lr else 1)
    assert all(math.isclose(v, p) or p >= v for c in comparisons for v, p in [(c.p_raw, c.p_holm)] if not math.isnan(v))

    out = tmp_path / "reports"
    report = write_report(smoke_store, "lr_robustness", out_dir=out)
    text = report.read_text()
    for heading in ("### FMNIST", "### C10-5k", "Final accuracy against the inner optimizer's lr",
                    "Robustness over the lr grid", "Seed std at each lr", "Accuracy after the first epochs",
                    "Paired differences: Lookahead − its inner optimizer",
                    "What these seeds support, and what they do not",
                    "The smallest difference these seeds could detect", "What they do not support", "tuned"):
        assert heading in text, heading
    assert not re.search(r"no difference(?! shown| is shown| was shown)", text.lower())
    # the table holds the store's numbers
    row = _fm("", 0.1)
    assert f"{means[row] * 100:.2f}" in text
    c = pairs[(_fm("LA k5 α0.5", 0.1), _fm("", 0.1))]
    assert f"| {(c.high - c.low) / 2 * 100:.2f} |" in text
    # what the runs cost, summed from their records (no budget paragraph: the budget is scale cpu's)
    with ResultsStore(smoke_store, readonly=True) as db:
        seconds = [r["record"]["seconds"] for r in db.runs("lr_robustness", status="finished")]
    assert f"- **Compute**: {sum(seconds) / 3600:.2f} h of training summed over {len(seconds)} runs" in text
    assert "Compute against the budget" not in text
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["lr_robustness_smoke_C10-5k.png", "lr_robustness_smoke_FMNIST.png"]
    for name in pngs:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert f"]({name})" in text


def test_the_index_answers_from_the_study(smoke_store, tmp_path):
    """The index opens with the question the study declares: one line per dataset x inner optimizer x
    variant present, Lookahead at its sweep's best lr against its inner optimizer at its own."""
    from lookahead_fastai.results.index import write_index
    index = write_index(smoke_store, out_dir=tmp_path, scale="smoke").read_text()
    head = index.split("\n## ")[1]
    assert head.startswith("Lookahead against its inner optimizer") and "[lr_robustness](lr_robustness.md)" in head
    assert "![" in head and (tmp_path / "question_lookahead_vs_inner_smoke.png").exists()
    assert "(**incomplete**: " in head  # the smoke store holds a few rows of the grid
    lines = [line for line in head.splitlines() if line.startswith(("| FMNIST |", "| C10-5k |"))]
    assert sorted(line.split(" | ")[1] for line in lines) == ["LA k10 α0.8 / SGD − SGD", "LA k5 α0.5 / SGD − SGD"]
    # 2 of 5 lrs ran on FMNIST and 1 on C10-5k: every best is at an edge of what ran, so flagged, out of the family
    assert all("flagged: best lr at a grid edge" in line for line in lines) and "the 0 comparisons not flagged" in head


def test_where_in_the_grid_places_each_verdict_against_the_plain_best_lr():
    from types import SimpleNamespace as NS
    from lookahead_fastai.results.compare import BETTER, NOT_SHOWN, WORSE
    from lookahead_fastai.results.lr_report import grid_position_text
    cells = [NS(row=f"{v}{lr}", inner="SGD", lr=lr) for v in ("", "LA") for lr in (0.01, 0.1, 1.0)]
    robust = [dict(inner="SGD", variant="", best_lr=0.1), dict(inner="SGD", variant="LA", best_lr=1.0)]

    def comp(lr, verdict):
        return NS(row=f"LA{lr}", versus=f"{lr}", lookahead_verdict=verdict)

    shifted = grid_position_text([comp(0.01, WORSE), comp(0.1, NOT_SHOWN), comp(1.0, BETTER)], cells, robust)
    assert "best lr, SGD 0.1): Lookahead better 1 (1 above), worse 1 (1 below)." in shifted
    assert "Every better verdict is above" in shifted and "not a test" in shifted
    mixed = grid_position_text([comp(0.01, BETTER), comp(1.0, BETTER), comp(0.1, WORSE)], cells, robust)
    assert "Lookahead better 2 (1 below, 1 above), worse 1 (1 at)." in mixed and "Every better" not in mixed
    assert grid_position_text([comp(0.1, NOT_SHOWN)], cells, robust) == ""


def test_a_best_lr_at_the_edge_of_its_grid_is_flagged():
    from lookahead_fastai.results.lr_report import edge_text

    def row(label, best_lr):  # a robustness_rows row over the grid 1e-3, 1e-2, 1e-1
        return dict(label=label, lrs=3, lowest_lr=1e-3, highest_lr=1e-1, best_lr=best_lr)

    assert edge_text([row("Adam", 1e-2), row("LA / Adam", 1e-2)]) == ""
    text = edge_text([row("Adam", 1e-3), row("LA / Adam", 1e-1)])
    assert "Adam (lr 0.001, the grid's bottom), LA / Adam (lr 0.1, the grid's top)" in text


def test_the_committed_notebook_shows_the_committed_study():
    """notebooks/lr_robustness.ipynb is committed with its outputs from the study's runs: the run table
    lists every run of reports/data/lr_robustness.jsonl, and its closing paragraphs and two figures are
    the committed report's."""
    import json
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    nb = json.loads((root / "notebooks" / "lr_robustness.ipynb").read_text())
    outs = [o.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    runs = len((root / "reports" / "data" / "lr_robustness.jsonl").read_text().splitlines())
    stages = EXP.stages["cpu"]
    assert runs >= 72 * len(stages.tuning) + 12 * len(stages.confirmation)  # both stages, lr_extension's points too
    assert any("".join(d.get("text/html", "")).count("<tr") == runs + 1 for d in outs)
    markdown = "\n".join("".join(d.get("text/markdown", "")) for d in outs)
    report = (root / "reports" / "lr_robustness.md").read_text()
    closing = [p for p in report.split("\n\n")
               if p.startswith((f"**What {len(stages.confirmation)} confirmation seeds on", "**Robustness to the lr**"))]
    assert len(closing) == 4 and all(p.strip() in markdown for p in closing)
    assert sum("image/png" in d for d in outs) == 2


def _tables(text):
    """The report without its 'Generated ... from <store>' line."""
    return [line for line in text.splitlines() if not line.startswith("Generated ")]


def test_export_import_round_trip_gives_the_same_report(smoke_store, tmp_path, capsys):
    exported = tmp_path / "data" / "lr_robustness.jsonl"
    other = tmp_path / "other.sqlite"
    assert main(["store", "export", "lr_robustness", "--store", str(smoke_store), "--out", str(exported)]) == 0
    assert len(exported.read_text().splitlines()) == 2 * len(ROWS)
    assert main(["store", "import", str(exported), "--store", str(other)]) == 0
    assert main(["report", "lr_robustness", "--store", str(smoke_store), "--out", str(tmp_path / "a")]) == 0
    assert main(["report", "lr_robustness", "--store", str(other), "--out", str(tmp_path / "b")]) == 0
    a = (tmp_path / "a" / "lr_robustness.md").read_text()
    b = (tmp_path / "b" / "lr_robustness.md").read_text()
    imported = [line for line in _tables(b) if line.startswith("- **Imported**")]
    assert imported == [f"- **Imported**: {2 * len(ROWS)} of these {2 * len(ROWS)} runs were added by "
                        f"`lookahead-fastai store import`, not trained in this store (from lr_robustness.jsonl "
                        f"sha256:{hashlib.sha256(exported.read_bytes()).hexdigest()[:16]})"]
    assert "Paired differences" in a and _tables(a) == [line for line in _tables(b) if line not in imported]
    pngs = [sorted(p.name for p in (tmp_path / d).glob("*.png")) for d in ("a", "b")]
    assert pngs[0] == pngs[1] and len(pngs[0]) == 2
    capsys.readouterr()
