"""Stages declared in the experiment (``Experiment.stages``): tuning seeds make the choices, confirmation
seeds measure them; a confirmation seed that was used in tuning is refused (one line, at declaration and in
the CLI), and each run's record keeps its stage."""
import re

import pytest

from lookahead_fastai import cli
from lookahead_fastai.experiments import Experiment, SpecError, Stages
from lookahead_fastai.experiments.spec import grid

TOML = """
name = "staged_digits"
dataset = "digits"
arch = "mlp"
epochs = 1
bs = 32
n_train = 160
n_valid = 80
stages = {{tuning = {tuning}, confirmation = {confirmation}}}

[[rows]]
name = "SGD"
optimizer = "sgd"
lr = 0.1
"""


def test_a_confirmation_seed_used_in_tuning_is_refused_at_declaration():
    with pytest.raises(SpecError, match=r"^stages: confirmation seed 2 used in tuning; a confirmation seed must be new$"):
        Stages((0, 1, 2), (2, 3))
    with pytest.raises(SpecError, match="confirmation seeds 0, 1 used in tuning"):
        Experiment("x", "x", "SGD", lambda scale: [], scales=("smoke",),
                   stages={"smoke": {"tuning": [0, 1], "confirmation": [0, 1, 5]}})
    with pytest.raises(SpecError, match="not one of the experiment's"):
        Experiment("x", "x", "SGD", lambda scale: [], scales=("smoke",), stages={"cpu": Stages((0,), (1,))})
    with pytest.raises(SpecError, match="tuning must be a non-empty list"):
        Stages((), (1,))
    s = Stages([0, 1], [2])
    assert (s.tuning, s.seeds, s.stage_of(1), s.stage_of(2), s.stage_of(7)) == ((0, 1), (0, 1, 2), "tuning",
                                                                                "confirmation", None)


def test_the_cli_refuses_a_file_whose_confirmation_seed_was_used_in_tuning(tmp_path, capsys):
    bad = tmp_path / "staged.toml"
    bad.write_text(TOML.format(tuning="[0, 1]", confirmation="[1, 2]"))
    assert cli.main(["plan", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "confirmation seed 1 used in tuning" in err and len(err.splitlines()) == 1, err


def test_plan_tells_the_stages_apart_when_they_have_as_many_seeds(tmp_path, capsys):
    path = tmp_path / "staged.toml"
    path.write_text(TOML.format(tuning="[0, 1, 2]", confirmation="[3, 4, 5]"))
    assert cli.main(["plan", str(path)]) == 0
    assert "1 rows x 3 tuning seeds, then 1 chosen rows x 3 confirmation seeds" in capsys.readouterr().out


def test_each_run_keeps_its_stage_in_its_record(tmp_path, monkeypatch, shared_data):
    from lookahead_fastai import experiments
    from lookahead_fastai.store import ResultsStore
    from lookahead_fastai.sweep import plan, run_experiment

    def build(scale):
        return grid("staged", scale, [dict(name="SGD", optimizer="sgd", lr=0.1)], dataset="digits", arch="mlp",
                    epochs=1, bs=32, n_train=160, n_valid=80)

    exp = Experiment("staged", "tuning then confirmation", "SGD", build, scales=("smoke",),
                     stages={"smoke": Stages((0,), (1, 2))})
    monkeypatch.setitem(experiments.EXPERIMENTS, "staged", exp)
    store = tmp_path / "s.sqlite"
    assert [j.seed for j in plan("staged", store=store)] == [0, 1, 2]  # every seed of both stages
    records = run_experiment("staged", store=store, data_dir=shared_data, device="cpu")
    assert [r["stage"] for r in records] == ["tuning", "confirmation", "confirmation"]
    stored = {r["seed"]: r["record"]["stage"] for r in ResultsStore(store).runs("staged", status="finished")}
    assert stored == {0: "tuning", 1: "confirmation", 2: "confirmation"}
    import dataclasses
    monkeypatch.setitem(experiments.EXPERIMENTS, "staged", dataclasses.replace(exp, stages={}))
    (plain,) = run_experiment("staged", store=tmp_path / "plain.sqlite", data_dir=shared_data, device="cpu")
    assert "stage" not in plain  # no stages declared: the record as before


# --- the two stages in a sweep: tuning chooses, confirmation reruns the choice on fresh seeds ----------
FAMILIES = [("D", "Adam", "Adam", ""), ("D", "LA / Adam", "Adam", "LA")]
COMMON = dict(dataset="digits", arch="mlp", epochs=2, bs=32, n_train=480, n_valid=160, holdout=160)


def _staged_grid(lrs=(1e-4, 1e-3, 1e-2)):
    from lookahead_fastai.experiments.extension import LrExtension
    from lookahead_fastai.experiments.spec import SweepCell

    def row(family, lr):
        return dict(name=f"{family[1]} @ {lr:g}", optimizer="lookahead(adam)" if family[3] else "adam", lr=lr)

    def cell(family, lr):
        return SweepCell(f"{family[1]} @ {lr:g}", family[0], family[2], family[3], family[1], lr)

    def extend(scale, c, lr):
        family = (c.data, c.label, c.inner, c.variant)
        return cell(family, lr), grid("two_stage", scale, [row(family, lr)], **COMMON)[0]

    cells = [cell(f, lr) for f in FAMILIES for lr in lrs]
    return Experiment("two_stage", "tuning then confirmation", cells[0].row,
                      lambda scale: grid("two_stage", scale, [row(f, lr) for f in FAMILIES for lr in lrs], **COMMON),
                      scales=("smoke",), questions={"lookahead_vs_inner": "tuned"}, lr_sweep=lambda scale: cells,
                      lr_extension=LrExtension(10.0, 1, extend), stages={"smoke": Stages((0, 1), (7, 8, 9))})


def test_confirmation_reruns_each_familys_choice_on_fresh_seeds_and_a_resumed_plan_is_the_same(
        tmp_path, monkeypatch, shared_data):
    import torch

    from lookahead_fastai import experiments, grid_rules
    from lookahead_fastai.registry.datasets import record_classes
    from lookahead_fastai.results.runs import finished_runs
    from lookahead_fastai.store import ResultsStore
    from lookahead_fastai.sweep import plan, run_experiment
    monkeypatch.setitem(experiments.EXPERIMENTS, "two_stage", _staged_grid())
    store = tmp_path / "s.sqlite"
    first = plan("two_stage", store=store)
    assert {(j.stage, j.seed) for j in first} == {("tuning", 0), ("tuning", 1)} and len(first) == 12
    assert plan("two_stage", store=store, stage="confirmation") == []  # nothing chosen before tuning ran
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tuned = run_experiment("two_stage", store=store, data_dir=shared_data, device="cpu", stage="tuning")
        assert {r["stage"] for r in tuned} == {"tuning"}  # the tuning stage alone: no confirmation run yet
        db = ResultsStore(store)
        tuning = finished_runs(db, "two_stage", "smoke", stage="tuning")
        finals = grid_rules.validation_finals(tuning, record_classes)
        chosen = grid_rules.best_rows(_staged_grid().lr_sweep("smoke") + [
            c for c in _added_cells(tuning)], finals)
        pending = plan("two_stage", store=store, stage="confirmation")
        assert {j.spec.name for j in pending} == set(chosen.values())  # each family's choice, from tuning seeds only
        assert sorted({j.seed for j in pending}) == [7, 8, 9] and len(pending) == 3 * len(chosen)
        # between the stages the reports name the sweep's choices, and the index waits for the confirmation
        from lookahead_fastai.results.families import question_lines
        from lookahead_fastai.results.runs import chosen_rows
        assert chosen_rows("two_stage", "smoke", finished_runs(db, "two_stage", "smoke")) == chosen
        assert question_lines(db, "smoke") == []  # chosen, nothing confirmed yet: no line (and no KeyError)
        confirmed = run_experiment("two_stage", store=store, data_dir=shared_data, device="cpu")
    finally:
        torch.set_num_threads(threads)
    new = [r for r in confirmed if r["stage"] == "confirmation"]  # the tuning runs come back as they were stored
    assert len(new) == 3 * len(chosen) and len(confirmed) == len(tuned) + len(new)
    again = plan("two_stage", store=store)  # resumed: the same runs, all finished
    assert all(j.finished for j in again) and len(again) == len(confirmed)
    runs = finished_runs(db, "two_stage", "smoke", stage="confirmation")
    assert {r["seed"] for r in runs} == {7, 8, 9} and {r["name"] for r in runs} == set(chosen.values())
    assert all("test_accuracy" in r["record"]["final"] for r in runs)  # three splits: test scored, apart
    # the verdicts stand on the confirmation runs' test accuracy; the tuning runs give the curves and the choice
    from lookahead_fastai.results.compare import compare
    from lookahead_fastai.results.families import question_lines
    from lookahead_fastai.results.lr_report import lr_grid_sections
    (c,) = compare(db, "two_stage", "smoke")
    test = {(r["name"], r["seed"]): r["record"]["final"]["test_accuracy"] for r in runs}
    assert c.seeds == (7, 8, 9) and c.differences == tuple(test[(c.row, s)] - test[(c.versus, s)] for s in c.seeds)
    (line,) = question_lines(db, "smoke")
    assert line.differences == c.differences and line.stages.confirmation == (7, 8, 9)
    text = "\n".join(str(part) for part in lr_grid_sections(db, "two_stage", "smoke", tmp_path))
    assert "**Tuning stage**: " in text and "#### The lr each family takes to confirmation" in text
    for row in chosen.values():  # each family's chosen lr, as the sweep confirmed it
        assert re.search(rf"\| {re.escape(row.split(' @ ')[0])} \| {re.escape(row.split(' @ ')[1])} \| \d", text), row
    assert "#### Confirmation stage: each chosen lr on fresh seeds" in text and "Seeds 7, 8, 9, none used" in text
    assert "(confirmation seeds, test accuracy)" in text and "3 confirmation seeds on D support" in text
    from lookahead_fastai.results.index import question_section
    section = "\n".join(question_section(db, "smoke", tmp_path))
    assert "two_stage: each family's lr was chosen on its tuning seeds (0, 1) by validation accuracy" in section
    assert "fresh confirmation seeds (7, 8, 9), none used in tuning, on the test split" in section


def _added_cells(runs):
    """SweepCells of the rows lr_extension added, read back from the runs' names (test helper)."""
    from lookahead_fastai.experiments.spec import SweepCell
    declared = {c.row for c in _staged_grid().lr_sweep("smoke")}
    out = {}
    for r in runs:
        if r["name"] not in declared:
            label, lr = r["name"].split(" @ ")
            family = next(f for f in FAMILIES if f[1] == label)
            out[r["name"]] = SweepCell(r["name"], family[0], family[2], family[3], label, float(lr))
    return list(out.values())


def test_stages_refuse_a_seed_count_and_an_unknown_stage(monkeypatch, tmp_path):
    from lookahead_fastai import experiments
    from lookahead_fastai.sweep import plan
    monkeypatch.setitem(experiments.EXPERIMENTS, "two_stage", _staged_grid())
    with pytest.raises(SpecError, match="declares its seeds at scale smoke.*--stage, not --seeds"):
        plan("two_stage", seeds=3, store=tmp_path / "s.sqlite")
    with pytest.raises(SpecError, match="stage must be one of tuning, confirmation"):
        plan("two_stage", store=tmp_path / "s.sqlite", stage="final")


def test_selection_ranks_a_row_with_a_diverged_run_below_one_that_always_trained():
    from lookahead_fastai import grid_rules
    from lookahead_fastai.experiments.spec import SweepCell
    cells = [SweepCell(f"r{i}", "D", "SGD", "", "SGD", lr) for i, lr in enumerate((0.1, 1.0, 3.0))]
    # r1 has the best mean over the runs that trained, but one of its three runs diverged (None)
    finals = {"r0": [0.80, 0.81, 0.79], "r1": [0.90, None, 0.91], "r2": [None, None, None]}
    assert grid_rules.best_rows(cells, finals) == {("D", "SGD"): "r0"}
    assert grid_rules.best_rows(cells, {"r1": [0.9, None], "r2": [None, None]}) == {("D", "SGD"): "r1"}
    assert grid_rules.best_rows(cells, {"r2": [None, None]}) == {}  # every run diverged: nothing to choose
    runs = [dict(name="r0", record=dict(dataset="digits", final={"accuracy": 0.1, "train_loss": 2.31}))]
    assert grid_rules.validation_finals(runs, lambda record: 10) == {"r0": [None]}  # at chance loss: diverged


TOML_SWEEP = """
name = "my_sweep"
dataset = "digits"
arch = "mlp"
epochs = 2
bs = 32
n_train = 480
n_valid = 160
holdout = 160
lr_grid = [1e-4, 1e-3]
lr_extension = { factor = 10.0, max_steps = 1 }
stages = { tuning = [0, 1], confirmation = [5, 6, 7] }
%s
[[rows]]
name = "Adam"
optimizer = "adam"
%s
[[rows]]
name = "LA/Adam"
optimizer = "lookahead(adam)"
hyper = { k = 5, alpha = 0.5 }
"""


def test_your_own_model_gets_the_protocol_from_a_file_with_an_lr_grid(tmp_path, capsys, shared_data):
    """A TOML file's lr_grid makes each row a family over the grid: the CLI tunes it on the tuning seeds,
    extends an edge best, confirms each family's choice on the fresh seeds and reports the verdicts."""
    path = tmp_path / "my_sweep.toml"
    path.write_text(TOML_SWEEP % ("", ""))
    store, out = tmp_path / "s.sqlite", tmp_path / "reports"
    assert cli.main(["plan", str(path)]) == 0
    assert "4 rows x 2 tuning seeds, then 2 chosen rows x 3 confirmation seeds" in capsys.readouterr().out
    assert cli.main(["run", str(path), "--store", str(store), "--data-dir", str(shared_data), "--stage",
                     "confirmation"]) == 0  # nothing chosen yet: said, nothing run
    assert "confirmation runs follow once the tuning stage has chosen" in capsys.readouterr().out
    assert cli.main(["run", str(path), "--store", str(store), "--data-dir", str(shared_data)]) == 0
    lines = capsys.readouterr().out
    assert "[1/8] Adam · lr 0.0001 seed 0: accuracy (validation)" in lines and ", a confirmation run] " in lines
    assert cli.main(["report", str(path), "--store", str(store), "--out", str(out)]) == 0
    text = (out / "my_sweep.md").read_text()
    assert "#### The verdicts: Lookahead − its inner optimizer, each at its chosen lr" in text
    assert re.search(r"\| LA/Adam \| [0-9.e-]+ \| \d+\.\d+ ± \d+\.\d+% \(2\) \|", text)  # its chosen lr
    assert "**What 3 confirmation seeds on digits support.**" in text


@pytest.mark.parametrize("top, row, message", [
    ("lr = 0.1", "", "with lr_grid every row runs at each lr of the grid; remove lr from the top level"),
    ("", "lr = 0.1", "remove lr from row 'Adam'"),
    ("", "[[rows]]\nname = 'Adam 2'\noptimizer = 'adam'", "rows 'Adam' and 'Adam 2' are both plain adam"),
])
def test_a_bad_lr_grid_file_gets_one_line(tmp_path, capsys, top, row, message):
    path = tmp_path / "bad.toml"
    path.write_text(TOML_SWEEP % (top, row))
    assert cli.main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    path.write_text(TOML_SWEEP.replace("lr_grid = [1e-4, 1e-3]", "lr_grid = [1e-4]") % ("", ""))
    assert cli.main(["plan", str(path)]) == 2
    assert "lr_grid must be a list of at least 2 distinct positive lrs" in capsys.readouterr().err
    path.write_text(TOML_SWEEP.replace("lr_grid = [1e-4, 1e-3]", "lr = 0.01") % ("", ""))
    assert cli.main(["plan", str(path)]) == 2
    assert "lr_extension extends an lr_grid; declare lr_grid" in capsys.readouterr().err


def test_a_progress_bar_counts_the_confirmation_runs_tuning_has_not_named_yet(tmp_path, monkeypatch):
    from lookahead_fastai import experiments
    from lookahead_fastai.sweep import plan
    monkeypatch.setitem(experiments.EXPERIMENTS, "two_stage", _staged_grid())
    store = tmp_path / "s.sqlite"
    jobs = plan("two_stage", store=store)
    assert len(jobs) == 12 and jobs.to_come == 2 * 3  # 2 families x 3 fresh seeds
    assert plan("two_stage", store=store, stage="tuning").to_come == 0  # the tuning stage alone: none to come
    assert plan("two_stage", store=store, stage="confirmation") == [] and \
        plan("two_stage", store=store, stage="confirmation").to_come == 6
    assert plan("two_stage", store=store, only=["Adam @ 0.0001"]).to_come == 0
    assert plan("demo", "smoke", 1, store=tmp_path / "d.sqlite").to_come == 0  # no stages
