"""Grids bracket the optimum (experiments/extension.py): a family whose best lr is at an edge of its
grid gets the next point that way, up to the experiment's declared limit, worked out from finished runs
(so a sweep started again plans the same runs); the reports read the added rows, and a best still at
the limit is flagged and kept out of the headline family."""
import pytest

from lookahead_fastai import experiments
from lookahead_fastai.experiments import Experiment, SpecError
from lookahead_fastai.experiments.extension import LrExtension, extension_steps
from lookahead_fastai.experiments.spec import SweepCell, grid

NAME = "my_bracket"
COMMON = dict(dataset="digits", arch="mlp", epochs=2, bs=32, n_train=640, n_valid=160)


def _row(cell_or_family, lr):
    data, label, inner, variant = cell_or_family
    return dict(name=f"{label} @ {lr:g}", optimizer="lookahead(adam)" if variant else "adam", lr=lr)


def _cell(family, lr):
    data, label, inner, variant = family
    return SweepCell(f"{label} @ {lr:g}", data, inner, variant, label, lr)


FAMILIES = [("D", "Adam", "Adam", ""), ("D", "LA / Adam", "Adam", "LA")]
LRS = (1e-5, 1e-4)  # far below Adam's usual 1e-3: the best is at the top edge


def _experiment(max_steps=1, lrs=LRS):
    cells = [_cell(f, lr) for f in FAMILIES for lr in lrs]

    def build(scale):
        return grid(NAME, scale, [_row(f, lr) for f in FAMILIES for lr in lrs], **COMMON)

    def extend(scale, cell, lr):
        family = (cell.data, cell.label, cell.inner, cell.variant)
        return _cell(family, lr), grid(NAME, scale, [_row(family, lr)], **COMMON)[0]

    return Experiment(NAME, "an lr grid that stops short of the optimum", cells[0].row, build, scales=("smoke",),
                      default_seeds={"smoke": 2}, questions={"lookahead_vs_inner": "tuned"},
                      lr_sweep=lambda scale: cells, lr_extension=LrExtension(10.0, max_steps, extend))


def test_the_extension_is_declared_as_data_and_checked():
    with pytest.raises(SpecError, match="factor"):
        LrExtension(1.0, 2, None)
    with pytest.raises(SpecError, match="max_steps"):
        LrExtension(3.0, 0, None)


def test_an_edge_best_gets_the_next_point_that_way_up_to_the_limit():
    """Selection over made-up finals (no training): top edge -> lr x factor, bottom -> lr / factor, interior
    or pending -> nothing; never more than max_steps each way."""
    exp = _experiment(max_steps=2)
    acc = {}  # row -> final accuracies; a row missing: its runs are not all finished

    def finals_of(spec):
        return acc.get(spec.name)

    assert extension_steps(exp, "smoke", finals_of) == []  # nothing finished: nothing decided
    acc.update({"Adam @ 1e-05": [0.1, 0.1], "Adam @ 0.0001": [0.5, 0.6],  # Adam: best at the top
                "LA / Adam @ 1e-05": [0.7, 0.7], "LA / Adam @ 0.0001": [0.3, 0.2]})  # LA: best at the bottom
    steps = extension_steps(exp, "smoke", finals_of)
    assert [(c.label, c.lr) for c, _ in steps] == [("Adam", pytest.approx(1e-3)), ("LA / Adam", pytest.approx(1e-6))]
    assert all(c.row == s.name and s.lr == c.lr for c, s in steps)
    acc.update({"Adam @ 0.001": [0.9, 0.9], "LA / Adam @ 1e-06": [0.5, 0.5]})  # Adam: still at the top; LA: interior
    steps = extension_steps(exp, "smoke", finals_of)
    assert [(c.label, c.lr) for c, _ in steps] == [("Adam", pytest.approx(1e-3)), ("Adam", pytest.approx(1e-2)),
                                                   ("LA / Adam", pytest.approx(1e-6))]
    acc.update({"Adam @ 0.01": [0.95, 0.95]})  # at the limit (2 steps up): no third
    assert len(extension_steps(exp, "smoke", finals_of)) == 3
    assert extension_steps(_experiment(max_steps=1), "smoke", finals_of)[0][0].lr == pytest.approx(1e-3)
    assert len(extension_steps(_experiment(max_steps=1), "smoke", finals_of)) == 2
    no_ext = Experiment(NAME, "x", "r", exp.build, scales=("smoke",), lr_sweep=exp.lr_sweep)
    assert extension_steps(no_ext, "smoke", finals_of) == []


@pytest.fixture
def bracket(monkeypatch):
    exp = _experiment(max_steps=1)
    monkeypatch.setitem(experiments.EXPERIMENTS, NAME, exp)  # findable by the reports (question_lines reads these)
    return exp


def test_a_smoke_sweep_runs_the_added_point_and_the_reports_read_it_and_flag_a_best_at_the_limit(
        bracket, tmp_path, shared_data):
    import torch

    from lookahead_fastai.results.families import question_lines
    from lookahead_fastai.results.lr_grid import lr_grid_cells
    from lookahead_fastai.store import ResultsStore
    from lookahead_fastai.sweep import plan, run_experiment
    store = tmp_path / "results.sqlite"
    assert [j.spec.name for j in plan(NAME, store=store)] == [c.row for c in bracket.lr_sweep("smoke")] * 2  # declared
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        records = run_experiment(NAME, store=store, data_dir=shared_data, device="cpu")
    finally:
        torch.set_num_threads(threads)
    rows = [c.row for c in bracket.lr_sweep("smoke")]
    finals = {}
    db = ResultsStore(store)
    for r in db.runs(NAME, status="finished"):
        finals.setdefault(r["name"], []).append(r["record"]["final"]["accuracy"])
    added = [name for name in finals if name not in rows]
    assert added == ["Adam @ 0.001", "LA / Adam @ 0.001"], finals  # each family's best was at the top: one step up
    assert len(records) == 2 * 6 and all(r is not None for r in records)
    from lookahead_fastai.results.runs import completeness, finished_runs
    done = completeness(NAME, "smoke", finished_runs(db, NAME, "smoke"))  # the added points are in the grid
    assert (done.done, done.planned, done.rows) == (12, 12, 6) and done.complete
    again = plan(NAME, store=store)  # started again: the same runs, all finished, nothing more to run
    assert len(again) == 12 and all(j.finished for j in again)
    assert {j.spec.name for j in again[8:]} == set(added)
    cells = lr_grid_cells(db, NAME, "smoke")
    assert [(c.label, c.lr) for c in cells][-2:] == [("Adam", pytest.approx(1e-3)), ("LA / Adam", pytest.approx(1e-3))]
    (line,) = question_lines(db, "smoke")
    # the reports pick each family's best where the sweep did: at the added point, the limit (1 step up)
    assert (line.lr, line.versus_lr) == (pytest.approx(1e-3), pytest.approx(1e-3))
    assert set(line.edges) == {("LA / Adam", line.lr, "top"), ("Adam", line.versus_lr, "top")}  # still at the limit: flagged
    assert not line.in_family  # and kept out of the headline family
    from lookahead_fastai.results.lr_report import lr_grid_sections
    text = "\n".join(lr_grid_sections(db, NAME, "smoke", tmp_path))
    assert "| optimizer | lr 1e-05 | lr 0.0001 | lr 0.001 |" in text  # the report's grid has the added column


def test_the_cli_runs_the_added_points_and_numbers_them_apart(bracket, tmp_path, shared_data, capsys):
    from lookahead_fastai import cli
    store = str(tmp_path / "results.sqlite")
    assert cli.main(["run", NAME, "--scale", "smoke", "--store", store, "--data-dir", str(shared_data),
                     "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "[8/8] LA / Adam @ 0.0001 seed 1" in out
    assert "[9, a grid point added] Adam @ 0.001 seed 0" in out and "[12, a grid point added]" in out
    assert cli.main(["run", NAME, "--scale", "smoke", "--store", store, "--data-dir", str(shared_data)]) == 0
    assert "12 runs (6 rows x 2 seeds), 12 already finished" in capsys.readouterr().out  # started again: the same runs


def test_a_failure_in_an_added_batch_names_its_position_in_the_whole_sweep(monkeypatch, tmp_path):
    """The runs of a later batch (a grid point added after the declared grid) are numbered after the
    grid's, in the callbacks and in RunsFailed's failures alike (no training: a stand-in executor)."""
    from lookahead_fastai import sweep
    from lookahead_fastai.executors import Failure, RunsFailed
    grid_jobs = sweep.plan("demo", "smoke", 1, store=tmp_path / "s.sqlite")
    added = [sweep.Job(grid_jobs[0].spec, 7, False, False)]
    plans = iter([grid_jobs, grid_jobs + added])  # the store's state calls for one more run after the grid's
    monkeypatch.setattr(sweep, "_planned", lambda db, grid, stage=None: next(plans, grid_jobs + added))

    class StandIn:
        calls = []

        def run(self, jobs, db, on_error=None, **options):
            self.calls.append(len(jobs))
            if len(self.calls) == 1:
                return [{"i": i} for i in range(len(jobs))]
            on_error(0, jobs[0], "RuntimeError: boom")
            raise RunsFailed([Failure(0, jobs[0], "RuntimeError: boom")], [None])

    errors = []
    with pytest.raises(RunsFailed) as failed:
        sweep.run_experiment("demo", "smoke", 1, store=tmp_path / "s.sqlite", executor=StandIn(),
                             on_error=lambda i, job, error: errors.append(i))
    n = len(grid_jobs)
    assert StandIn.calls == [n, 1] and errors == [n]
    assert [f.index for f in failed.value.failures] == [n] and len(failed.value.records) == n + 1
