"""lookahead_fastai.results: statistics on numbers, words, plots -- without the training stack."""
import json
import math
import re
import subprocess
import sys

import pytest

from lookahead_fastai import grid_rules
from lookahead_fastai.results import stats, text


PURE = ("stats", "text", "plots", "questions", "selection")  # numbers and words only: no store, no experiment
READERS = ("runs", "compare", "lr_grid", "families", "wording", "lr_report", "report", "index")  # read the store


def _loaded_after(modules):
    """The modules a fresh interpreter has loaded after importing ``lookahead_fastai.results.<m>`` for each m."""
    code = ("import json, sys; " + "; ".join(f"import lookahead_fastai.results.{m}" for m in modules)
            + "; print(json.dumps(sorted(sys.modules)))")
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                     check=True).stdout)


def test_results_imports_no_training_code():
    """In a fresh interpreter, importing the numbers-and-words modules of results/ loads no sweep, runner,
    fastai, torch, store or experiment module."""
    banned = ("fastai", "torch", "lookahead_fastai.sweep", "lookahead_fastai.runner", "lookahead_fastai.store",
              "lookahead_fastai.experiments", "lookahead_fastai.registry", "lookahead_fastai.results.runs")
    assert [m for m in _loaded_after(PURE) if m.startswith(banned)] == []


def test_the_report_modules_import_no_sweep_or_runner():
    """Every module of results/, the report and the index included, imports without the training loop
    (sweep, runner, executors); the experiments they read bring torch and fastai through the registry."""
    loaded = _loaded_after(PURE + READERS)
    assert "lookahead_fastai.results.index" in loaded and "lookahead_fastai.report" not in loaded
    banned = ("lookahead_fastai.sweep", "lookahead_fastai.runner", "lookahead_fastai.executors",
              "lookahead_fastai.distributed", "lookahead_fastai.data")
    assert [m for m in loaded if m.startswith(banned)] == []


def test_results_sources_name_no_experiment_and_import_no_training_stack():
    """No module of results/ names a built-in experiment (an experiment declares its sweeps, budget and
    questions as fields), and nothing of the training stack is imported (the lr_find file's path comes from the stdlib-only
    ``store.paths``)."""
    import ast
    from pathlib import Path

    from lookahead_fastai import results
    from lookahead_fastai.experiments import EXPERIMENTS
    folder = Path(results.__file__).parent
    assert sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__") == sorted(PURE + READERS)
    stack = []
    for path in sorted(folder.glob("*.py")):
        source = path.read_text()
        strings = [n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)
                   and isinstance(n.value, str)]
        named = [name for name in EXPERIMENTS for s in strings if re.search(rf"(?<!\w){name}(?!\w)", s)]
        assert named == [], path.name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                target = ("." * node.level) + (node.module or "")
                if target.lstrip(".").split(".")[0] in ("sweep", "runner", "fastai", "torch", "executors"):
                    stack.append((path.name, target, tuple(a.name for a in node.names)))
            elif isinstance(node, ast.Import):
                stack += [(path.name, a.name, ()) for a in node.names if a.name.split(".")[0] in ("fastai", "torch")]
    assert stack == []


def test_a_collapsed_run_is_diverged_at_chance_loss_or_non_finite():
    ln10 = math.log(10)
    assert grid_rules.diverged({"accuracy": 0.1, "train_loss": 2.305}, n_classes=10)           # above ln 10
    assert grid_rules.diverged({"accuracy": 0.1, "train_loss": ln10}, n_classes=10)            # at it
    assert not grid_rules.diverged({"accuracy": 0.5, "train_loss": 2.30}, n_classes=10)        # below it: trained
    assert grid_rules.diverged({"accuracy": 0.5, "train_loss": float("nan")}, n_classes=10)    # non-finite
    assert grid_rules.diverged({"accuracy": 0.5}, {"valid_loss": float("inf")})                # slow weights too
    assert not grid_rules.diverged({"accuracy": 0.1, "train_loss": 2.305})                     # C unknown: only non-finite


def test_collapse_rates_are_compared_with_fishers_exact_test():
    assert stats.collapse_test(5, 5, 0, 5) == pytest.approx(2 / 252)  # 1 / C(10, 5), two-sided
    assert stats.collapse_test(0, 5, 0, 5) == 1.0 and stats.collapse_test(5, 5, 5, 5) == 1.0
    assert math.isnan(stats.collapse_test(0, 0, 1, 5))


def test_the_noise_floor_of_a_synthetic_pair():
    ours, theirs = [0.50, 0.52, 0.48, 0.51], [0.51, 0.50, 0.49, 0.51]
    floor = stats.noise_floor([a - b for a, b in zip(ours, theirs)])
    diffs = [-0.01, 0.02, -0.01, 0.0]
    assert floor.n == 4 and floor.sd == pytest.approx(float(__import__("numpy").std(diffs, ddof=1)))
    assert (floor.smallest, floor.largest) == pytest.approx((-0.01, 0.02))
    assert text.noise_floor(floor).startswith(f"{floor.sd * 100:.2f} pp per seed")
    assert stats.noise_floor([0.01]) is None and text.noise_floor(None) == "not measured"


def test_family_effects_holm_adjust_members_only_and_widen_their_intervals():
    diffs = {"a": [0.03, 0.04, 0.05, 0.035], "b": [0.01, -0.02, 0.015, 0.0], "edge": [0.2, 0.21, 0.19, 0.2]}
    effects = {e.key: e for e in stats.family_effects(diffs, in_family={"edge": False})}
    raw = {k: stats.Paired.of(v) for k, v in diffs.items()}
    assert effects["a"].p_holm == pytest.approx(stats.holm([raw["a"].p, raw["b"].p])[0])
    assert math.isnan(effects["edge"].p_holm)  # flagged: not in the adjustment, raw interval kept
    assert (effects["edge"].low, effects["edge"].high) == (raw["edge"].low, raw["edge"].high)
    wide = stats.Paired.of(diffs["a"], alpha=0.05 / 2)  # Bonferroni over the 2 members
    assert (effects["a"].low, effects["a"].high) == pytest.approx((wide.low, wide.high))
    assert effects["a"].low < raw["a"].low


# --- the rules on the committed results (reports/data/*.jsonl imported into a temporary store) -----------
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    from lookahead_fastai.store import ResultsStore
    path = tmp_path_factory.mktemp("committed") / "results.sqlite"
    with ResultsStore(path) as store:
        for name in ("lr_robustness", "imagenette_leaderboard"):
            store.import_jsonl(ROOT / "reports" / "data" / f"{name}.jsonl")
    return path


def _fm(label, lr):
    from lookahead_fastai.experiments import lr_robustness as study
    inner, variant = (label.split(" / ")[::-1] + [""])[:2]
    return study.row_name(inner, variant, lr, "fashion_mnist", "cpu")


def test_a_collapsed_run_is_counted_and_left_out_of_the_interval(monkeypatch):
    """Plain SGD at lr 1 ends at chance loss (ln 10) in 5 of 5 seeds, Lookahead at lr 1 in 4 of 5 (as the
    first Fashion-MNIST study's did): they are counted as diverged, never averaged; the comparison at that lr
    is answered by the collapse rates."""
    from lookahead_fastai import experiments
    from lookahead_fastai.results.compare import compare, summarize
    exp, _ = _grid_experiment()
    monkeypatch.setitem(experiments.EXPERIMENTS, "my_grid", exp)
    specs = {s.name: s for s in exp.specs("smoke")}
    chance = math.log(10) + 1e-3
    final = {("r2", seed): (0.1, chance) for seed in range(5)}                    # SGD lr 1: 5 of 5 collapsed
    final.update({("r5", seed): (0.1, chance) for seed in range(1, 5)})          # LA lr 1: 4 of 5
    final[("r5", 0)] = (0.42, 1.6)
    final.update({("r1", seed): (0.80 + seed / 100, 0.5) for seed in range(5)})  # SGD lr 0.1 and LA lr 0.1
    final.update({("r4", seed): (0.81 + seed / 100 + (seed % 2) / 200, 0.5) for seed in range(5)})
    runs = [{"run_id": specs[row].run_id(seed), "name": row, "seed": seed, "record": {
        "scale": "smoke", "dataset": "digits", "final": {"accuracy": acc, "train_loss": loss}}}
        for (row, seed), (acc, loss) in final.items()]
    rows = {r.row: r for r in summarize(_Store(runs), "my_grid", "smoke")}
    comps = {(c.row, c.versus): c for c in compare(_Store(runs), "my_grid", "smoke")}
    assert (rows["r2"].seeds, rows["r2"].diverged) == (0, 5) and math.isnan(rows["r2"].final_accuracy.mean)
    assert (rows["r5"].seeds, rows["r5"].diverged) == (1, 4) and rows["r5"].final_accuracy.mean == pytest.approx(0.42)
    c = comps[("r5", "r2")]
    assert c.seeds == () and c.verdict == "no paired seeds" and math.isnan(c.low)  # no interval from collapsed runs
    assert c.collapsed == (4, 5, 5, 5) and c.p_collapse == pytest.approx(1.0)
    assert comps[("r4", "r1")].collapsed == (0, 5, 0, 5) and len(comps[("r4", "r1")].seeds) == 5
    from scipy.stats import fisher_exact
    assert stats.collapse_test(0, 5, 5, 5) == pytest.approx(fisher_exact([[0, 5], [5, 0]]).pvalue) == pytest.approx(2 / 252)


def test_the_index_answers_the_question_with_a_forest_plot_and_no_vote_count(committed, tmp_path):
    import re
    from lookahead_fastai.results.index import write_index
    text = write_index(committed, out_dir=tmp_path, scale="cpu").read_text()
    first = text.split("\n## ")[1]  # the first section after the preamble is the question's
    assert first.startswith("Lookahead against its inner optimizer")
    plot = "(question_lookahead_vs_inner_cpu.png)"
    assert plot in first and first.index(plot) < first.index("| dataset | comparison |")
    assert (tmp_path / "question_lookahead_vs_inner_cpu.png").read_bytes()[:4] == b"\x89PNG"
    table = [line for line in first.splitlines() if line.startswith(("| C10-5k |", "| FMNIST |"))]
    assert len(table) == 2 * 2 * 2  # dataset x inner optimizer x variant, each once
    # the study's grids bracket every family's chosen lr (one extended): none flagged, all 8 in the family
    assert not any("flagged" in line for line in table) and "Holm-adjusted over the 8" in first
    assert all(line.split(" | ")[4] == "10" for line in table)  # paired over the 10 confirmation seeds
    assert "slow weights with BatchNorm statistics recomputed" in first
    assert "lr_robustness: each family's lr was chosen on its tuning seeds (0, 1, 2) by validation accuracy" in first
    assert "fresh confirmation seeds (100, 101, 102, 103, 104, 105, 106, 107, 108, 109), none used in tuning, on " \
           "the test split" in first
    assert "0.69 pp per seed" in first  # the noise floor beside CIFAR-10's lines (the fixture has no float_paths)
    # no vote count anywhere; "no difference shown", never "no difference"
    assert not re.search(r"(better|worse)( in)? \d+", text) and "Counted:" not in text
    assert re.findall(r"(?<!there is )(?<!same as )no difference(?! shown)", text) == []  # "not that there is no difference"


def test_the_noise_floor_comes_from_the_declared_pair_of_float_paths(committed):
    from lookahead_fastai.results.families import noise_floors
    from lookahead_fastai.store import ResultsStore
    lines = [json.loads(x) for x in (ROOT / "reports" / "data" / "imagenette_leaderboard.jsonl").read_text().splitlines()]
    acc = {(r["name"], r["seed"]): r["record"]["final"]["accuracy"] for r in lines}
    ours, theirs = ("LA/RAdam (ours) · CIFAR-10 substitute · 5 ep", "ranger (fastai) · CIFAR-10 substitute · 5 ep")
    expected = stats.noise_floor([acc[(ours, s)] - acc[(theirs, s)] for s in range(5)])
    with ResultsStore(committed, readonly=True) as db:
        assert noise_floors(db, "cpu") == {"cifar10": expected}
    assert expected.sd == pytest.approx(0.0069, abs=5e-4)


def test_a_best_at_an_edge_of_its_grid_is_flagged():
    from lookahead_fastai.grid_rules import at_grid_edge
    assert at_grid_edge(1e-2, [1e-3, 1e-2]) and at_grid_edge(1e-3, [1e-2, 1e-3, 3e-3])
    assert not at_grid_edge(3e-3, [1e-3, 3e-3, 1e-2])
    assert at_grid_edge(0.1, [0.1])  # one point brackets nothing


def test_the_forest_plot_draws_each_line_and_tolerates_an_empty_one(tmp_path):
    from lookahead_fastai.results import plots
    nan = float("nan")
    path = plots.forest_plot([("a", 1.0, -0.5, 2.5, True), ("flagged", 2.0, 0.5, 3.5, False),
                              ("constant", 0.3, nan, nan, True), ("no seeds", nan, nan, nan, True)],
                             tmp_path / "f.png", "title", "pp")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_a_lookahead_line_scored_another_way_or_at_an_edge_is_flagged_out_of_the_family():
    from lookahead_fastai.results.families import QuestionLine
    from lookahead_fastai.results.index import reading
    line = QuestionLine("e", "D", "cifar10", "LA / SGD", "SGD", "LA", "SGD", 0.1, 0.1, (0.01, 0.02, 0.03), (),
                        True, (0, 3, 0, 3), 1.0)
    effect = next(iter(stats.family_effects({0: line.differences})))
    assert line.in_family and reading(line, effect) in ("no difference shown", "**Lookahead better**")
    fast = line.__class__(**{**line.__dict__, "scored_slow": False})  # validated on fast weights
    edge = line.__class__(**{**line.__dict__, "edges": (("LA / SGD", 0.1, "top"),)})
    assert not fast.in_family and "not scored on slow weights" in reading(fast, effect)
    assert not edge.in_family and "grid edge (LA / SGD at 0.1, the top)" in reading(edge, effect)


# --- an lr grid declared as data: selection and its report, for an experiment the code does not know ----------
def _grid_experiment():
    """A user's lr grid whose row names say nothing ("r0".."r5"): every value the report shows must come
    from the declared SweepCells (data, inner, variant, label, lr), never from a name."""
    from lookahead_fastai.experiments import Experiment
    from lookahead_fastai.experiments.spec import SweepCell, grid
    cells = [SweepCell(f"r{i}", "D", "SGD", variant, f"{variant} / SGD" if variant else "SGD", lr)
             for i, (variant, lr) in enumerate((v, lr) for v in ("", "LA") for lr in (0.01, 0.1, 1.0))]

    def build(scale):
        return grid("my_grid", scale, [dict(name=c.row, optimizer="lookahead(sgd)" if c.variant else "sgd", lr=c.lr,
                                            hyper={"mom": 0.9}) for c in cells],
                    dataset="digits", arch="mlp", epochs=1, bs=32, n_train=160, n_valid=80)

    return Experiment("my_grid", "a grid of my own", "r1", build, scales=("smoke",),
                      comparisons=tuple((cells[3 + i].row, cells[i].row) for i in range(3)),
                      lr_sweep=lambda scale: cells), cells


class _Store:
    """The two methods a report reads, over records made up here (no training, no database); ``epochs``:
    rows of the epochs frame (run_id, name, seed, epoch, accuracy)."""
    def __init__(self, runs, epochs=()):
        self._runs, self._epochs = runs, list(epochs)

    def runs(self, experiment=None, status=None):
        return self._runs

    def epochs_frame(self, experiment, status="finished"):
        import pandas as pd
        return pd.DataFrame(self._epochs)


def test_epochs_to_target_and_the_sign_test():
    assert stats.epochs_to_target([0.2, 0.5, 0.9], 0.5) == 2
    assert stats.epochs_to_target([0.2, float("nan"), 0.4], 0.5) is None  # never: counted, not dropped
    assert stats.sign_test(5, 0) == pytest.approx(2 / 32) and stats.sign_test(1, 1) == 1.0
    assert math.isnan(stats.sign_test(0, 0))
    t = stats.TimeToTarget(0.5, {0: 2, 1: None, 2: 3, 3: None}, {0: 3, 1: 4, 2: 3, 3: None})
    assert (t.a_first, t.same, t.b_first) == (1, 1, 1)  # seed 1: b alone got there; seed 3: neither (left out)
    assert t.never == (2, 4, 1, 4) and t.p == 1.0


def test_time_to_target_pairs_each_family_at_its_best_lr_and_counts_the_runs_that_never_got_there(monkeypatch):
    """The target is target_share of the tuned inner optimizer's mean final accuracy (over its runs that
    trained); a diverged Lookahead run is kept, as never reaching it."""
    from lookahead_fastai import experiments
    from lookahead_fastai.results.lr_grid import times_to_target
    exp, _ = _grid_experiment()
    monkeypatch.setitem(experiments.EXPERIMENTS, "my_grid", exp)
    specs = {s.name: s for s in exp.specs("smoke")}
    curves = {("r1", 0): [0.5, 0.7, 0.8], ("r1", 1): [0.6, 0.8, 0.8],        # SGD at its best lr: final 0.8
              ("r5", 0): [0.78, 0.8, 0.8], ("r5", 1): [0.1, float("nan"), float("nan")]}  # LA: seed 1 diverged
    runs, epochs = [], []
    for (row, seed), curve in curves.items():
        run_id = specs[row].run_id(seed)
        loss = float("nan") if math.isnan(curve[-1]) else 0.5
        runs.append({"run_id": run_id, "name": row, "seed": seed, "record": {
            "scale": "smoke", "dataset": "digits", "final": {"accuracy": curve[-1], "train_loss": loss}}})
        epochs += [{"run_id": run_id, "name": row, "seed": seed, "epoch": e, "accuracy": a} for e, a in enumerate(curve)]
    times = times_to_target(_Store(runs, epochs), "my_grid", "smoke", {("r5", "r1")})
    t = times[("r5", "r1")]
    assert t.target == pytest.approx(0.95 * 0.8)
    assert t.a == {0: 1, 1: None} and t.b == {0: 3, 1: 2}
    assert (t.a_first, t.same, t.b_first) == (1, 0, 1) and t.never == (1, 2, 0, 2)
    import dataclasses
    monkeypatch.setitem(experiments.EXPERIMENTS, "my_grid", dataclasses.replace(exp, target_share=0.5))
    assert times_to_target(_Store(runs, epochs), "my_grid", "smoke", {("r5", "r1")})[("r5", "r1")].b == {0: 1, 1: 1}
    assert times_to_target(_Store(runs), "my_grid", "smoke", {("r5", "r1")}) == {}  # no epoch records: nothing told


def test_selection_picks_each_familys_best_lr_and_pairs_the_families_from_the_cells():
    from lookahead_fastai.results import selection
    _, cells = _grid_experiment()
    finals = {"r0": [0.5, 0.6], "r1": [0.8, 0.8], "r2": [0.1], "r3": [0.4], "r4": [0.7], "r5": [0.75, 0.77]}
    assert selection.family_pairs(cells) == [("D", "LA / SGD", "SGD")]
    assert selection.best_rows(cells, finals) == {("D", "SGD"): "r1", ("D", "LA / SGD"): "r5"}
    assert selection.best_lr_pairs(cells, finals) == ([("r5", "r1")], {"r1", "r5"})
    assert selection.best_lr_pairs(cells, {"r0": [0.5]}) == ([], set())  # no Lookahead run: nothing to pair
    assert selection.grid_edge(1.0, [0.01, 0.1, 1.0]) == "top" and selection.grid_edge(0.01, [0.01, 0.1]) == "bottom"
    assert selection.grid_edge(0.1, [0.01, 0.1, 1.0]) is None


def test_an_lr_grid_report_reads_its_labels_from_the_declared_cells(monkeypatch, tmp_path):
    """An experiment the results code has never heard of gets the lr-grid sections because it declares an
    lr_sweep; the comparisons are labelled by family and lr from the cells; no budget declared, none stated."""
    from lookahead_fastai import experiments
    from lookahead_fastai.results.lr_report import budget_text, lr_grid_sections
    from lookahead_fastai.results.plots import FigureLink
    exp, cells = _grid_experiment()
    monkeypatch.setitem(experiments.EXPERIMENTS, "my_grid", exp)
    specs = {s.name: s for s in exp.specs("smoke")}
    acc = {"r0": 0.50, "r1": 0.80, "r2": 0.30, "r3": 0.55, "r4": 0.78, "r5": 0.70}
    runs = [{"run_id": specs[row].run_id(seed), "name": row, "seed": seed,
             "record": {"scale": "smoke", "dataset": "digits", "seconds": 1.0,
                        "final": {"accuracy": a + 0.01 * seed * (1 + i % 2), "train_loss": 0.5}}}
            for i, (row, a) in enumerate(acc.items()) for seed in range(3)]
    parts = lr_grid_sections(_Store(runs), "my_grid", "smoke", tmp_path)
    text = "\n".join(parts)
    assert "### D" in text and "| optimizer | lr 0.01 | lr 0.1 | lr 1 |" in text
    assert "| LA / SGD − SGD, both at lr 0.01 |" in text and "| LA / SGD − SGD, both at lr 1 |" in text
    assert "| tuned: LA / SGD at its best lr 0.1 − SGD at its best lr 0.1 |" not in text  # same lr: like-for-like
    assert "LA / SGD − SGD, both at lr 0.1 (also each one's best lr: the tuned comparison)" in text
    assert "LA/SGD at lr 0.01" in text  # the closing paragraph names the Lookahead side by its variant
    assert not any(f"r{i}" in line for line in text.splitlines() for i in range(6) if line.startswith("| "))
    assert (tmp_path / "my_grid_smoke_D.png").exists()
    assert budget_text(runs, "my_grid", "smoke") == ""
    # the figure travels as data beside its markdown link: the notebook shows the file, reads no link back
    figures = [p for p in parts if isinstance(p, FigureLink)]
    assert [f.name for f in figures] == ["my_grid_smoke_D.png"] and figures[0] == "\n![accuracy against lr, D](my_grid_smoke_D.png)\n"
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    from lookahead_fastai.notebook import _show_markdown_with_figures
    _show_markdown_with_figures(parts, tmp_path)
    images = [d for d in shown if type(d).__name__ == "Image"]
    assert len(images) == 1 and len(shown) == sum(bool(p.strip()) for p in parts)
    assert not any("![" in d.data for d in shown if type(d).__name__ == "Markdown")


def test_epoch_curves_average_the_runs_that_trained_in_the_declared_order(monkeypatch):
    import pandas as pd

    from lookahead_fastai import experiments
    from lookahead_fastai.results.runs import epoch_curves
    exp, _ = _grid_experiment()
    monkeypatch.setitem(experiments.EXPERIMENTS, "my_grid", exp)
    specs = {s.name: s for s in exp.specs("smoke")}
    runs = [{"run_id": specs[row].run_id(seed), "name": row, "seed": seed,
             "record": {"scale": "smoke", "dataset": "digits",
                        "final": {"accuracy": 0.5, "train_loss": float("nan") if seed == 2 else 0.5}}}
            for row in ("r0", "r1") for seed in range(3)]
    epochs = pd.DataFrame([{"run_id": r["run_id"], "name": r["name"], "seed": r["seed"], "epoch": e,
                            "accuracy": 0.1 * (e + 1) + 0.01 * r["seed"]} for r in runs for e in range(2)])

    class Store(_Store):
        def epochs_frame(self, experiment, status="finished"):
            return epochs

    curves = epoch_curves(Store(runs), "my_grid", "smoke")
    assert list(curves) == ["r1", "r0"]  # the baseline first, then the declared order
    steps, mean, std = curves["r0"]["accuracy"]
    assert list(steps) == [1, 2] and "train_loss" not in curves["r0"]
    assert list(mean) == pytest.approx([0.105, 0.205])  # seeds 0 and 1: seed 2 diverged (a NaN loss)
    assert list(std) == pytest.approx([0.01 / 2 ** 0.5] * 2)


def test_only_text_turns_a_number_into_a_string():
    """No module of results/ but text.py carries a format spec (``{x:.2f}``, ``{lr:g}``, ``{t:%Y}``): the
    report modules compose sentences from text's formatters, so a number is written one way everywhere."""
    import ast
    from pathlib import Path

    from lookahead_fastai import results
    found = []
    for path in sorted(Path(results.__file__).parent.glob("*.py")):
        if path.name != "text.py":
            found += [(path.name, node.lineno) for node in ast.walk(ast.parse(path.read_text()))
                      if isinstance(node, ast.FormattedValue) and node.format_spec is not None]
    assert found == []
    assert (text.short(1e-05), text.fixed(2.875), text.points(0.12345), text.percent(0.05)) == \
        ("1e-05", "2.88", "12.35", "5%")


def test_the_best_lr_is_chosen_on_validation_even_where_test_would_choose_another(monkeypatch):
    """Three splits: a synthetic store whose validation accuracy (record["final"]["accuracy"]) makes lr 0.1
    best for both families while its test accuracy would make lr 0.01 best: every choice reads validation."""
    from lookahead_fastai import experiments
    from lookahead_fastai.results import selection
    from lookahead_fastai.results.compare import lr_sweep_pairs
    from lookahead_fastai.results.lr_grid import lr_grid_cells, robustness_rows
    exp, cells = _grid_experiment()
    monkeypatch.setitem(experiments.EXPERIMENTS, "my_grid", exp)
    specs = {s.name: s for s in exp.specs("smoke")}
    valid = {"r0": 0.60, "r1": 0.80, "r2": 0.30, "r3": 0.55, "r4": 0.78, "r5": 0.40}
    test = {"r0": 0.90, "r1": 0.50, "r2": 0.20, "r3": 0.95, "r4": 0.45, "r5": 0.30}
    runs = [{"run_id": specs[row].run_id(seed), "name": row, "seed": seed,
             "record": {"scale": "smoke", "dataset": "digits", "seconds": 1.0, "n_test": 80,
                        "holdout": {"size": 144, "seed": 20261206, "of": 1438},
                        "final": {"accuracy": valid[row] + 0.01 * seed, "valid_loss": 1.0, "train_loss": 0.5,
                                  "test_accuracy": test[row] + 0.01 * seed, "test_loss": 1.0}}}
            for row in valid for seed in range(2)]
    store = _Store(runs)
    on_test = selection.best_lr_pairs(cells, {row: [acc] for row, acc in test.items()})[0]
    assert on_test == [("r3", "r0")]  # what a choice on test images would pick
    assert lr_sweep_pairs(store, "my_grid", "smoke") == ([("r4", "r1")], {"r1", "r4"})
    best = {row["label"]: row["best_lr"] for row in robustness_rows(lr_grid_cells(store, "my_grid", "smoke"))}
    assert best == {"SGD": 0.1, "LA / SGD": 0.1}
    assert selection.validation_finals(runs, lambda record: 10)["r1"] == [0.80, 0.81]
    with pytest.raises(ValueError, match="validation only"):
        selection.validation_finals(runs, lambda record: 10, "test_accuracy")


def test_a_report_of_three_splits_labels_validation_and_test_and_states_the_split(monkeypatch):
    from lookahead_fastai import experiments
    from lookahead_fastai.results.compare import summarize
    from lookahead_fastai.results.report import _data_text, summary_frame
    exp, _ = _grid_experiment()
    monkeypatch.setitem(experiments.EXPERIMENTS, "my_grid", exp)
    specs = {s.name: s for s in exp.specs("smoke")}
    runs = [{"run_id": specs[row].run_id(seed), "name": row, "seed": seed,
             "record": {"scale": "smoke", "dataset": "digits", "seconds": 1.0, "best_accuracy": 0.7,
                        "final": {"accuracy": 0.7, "valid_loss": 1.0, "train_loss": 0.5,
                                  **({"test_accuracy": 0.6, "test_loss": 1.1} if row == "r0" else {})}}}
            for row in ("r0", "r1") for seed in range(2)]
    table = summary_frame(summarize(_Store(runs), "my_grid", "smoke"))
    assert list(table.columns[:4]) == ["optimizer", "seeds", "final accuracy (validation)", "test accuracy"]
    assert dict(zip(table["optimizer"], table["test accuracy"])) == {"r0": "60.00 ± 0.00%", "r1": "—"}
    two = summary_frame(summarize(_Store([r for r in runs if r["name"] == "r1"]), "my_grid", "smoke"))
    assert "final accuracy" in two.columns and "test accuracy" not in two.columns  # two splits: as before
    record = {"dataset": "digits", "n_train": 160, "n_valid": 144, "n_test": 80, "data": "sklearn",
              "holdout": {"size": 144, "seed": 20261206, "of": 1438}}
    text = _data_text(record)
    assert "144 validation, held out of the 1438 training images" in text and "seed 20261206" in text
    assert "80 test images" in text and "never used to choose" in text


def test_a_comparison_outside_the_headline_says_where_it_departs_from_the_headlines_rules():
    """The seed experiments' verdicts go through the headline's rules: each Lookahead comparison scored on
    fast weights (or slow weights without BatchNorm recomputed), or tuned on its own seeds and test split,
    says so; one scored as the headline is, says nothing."""
    import dataclasses

    from lookahead_fastai.experiments.spec import RunSpec
    from lookahead_fastai.results.compare import Comparison
    from lookahead_fastai.results.index import rules_note
    base = dict(experiment="x", dataset="digits", arch="mlp", lr=0.1, epochs=1, bs=32, scale="smoke")
    specs = {"LA": RunSpec(name="LA", optimizer="lookahead(sgd)", **base), "SGD": RunSpec(name="SGD", optimizer="sgd", **base),
             "LA slow": RunSpec(name="LA slow", optimizer="lookahead(sgd)", eval_slow_weights=True, **base),
             "LA bn": RunSpec(name="LA bn", optimizer="lookahead(sgd)", eval_slow_weights=True, slow_bn_batches=10, **base)}
    c = Comparison("LA", "SGD", "like-for-like", ("wrapper",), 1, (0, 1), (0.01, 0.02), 0.015, 0.0, 0.03, 0.1, 0.2,
                   "no difference shown")
    assert rules_note(c, specs, False) == " [Lookahead scored on its fast weights: not as the headline is scored]"
    assert "without BatchNorm recomputed" in rules_note(dataclasses.replace(c, row="LA slow"), specs, False)
    assert rules_note(dataclasses.replace(c, row="LA bn"), specs, False) == ""
    reverse = dataclasses.replace(c, row="SGD", versus="LA", lookahead_vs_inner=-1)
    assert "fast weights" in rules_note(reverse, specs, False)
    tuned = dataclasses.replace(c, row="LA bn", kind="tuned")
    assert "picked on these same seeds, on the test split" in rules_note(tuned, specs, False)
    assert rules_note(tuned, specs, True) == ""  # with stages: chosen on tuning seeds, judged on fresh ones


def test_an_lr_where_every_run_diverged_still_bounds_the_grid():
    """The robustness rows' grid is every lr that ran, as the sweep's edge rule reads it: a best just below
    a top lr where every run diverged is interior, not at the grid's edge."""
    from lookahead_fastai.results.lr_grid import LrCell, robustness_rows
    from lookahead_fastai.results.lr_report import edge_text

    def cell(lr, values, diverged=0):
        return LrCell(f"SGD {lr}", "D", "SGD", "", "SGD", lr, stats.Stat.of(values), dict(enumerate(values)), {},
                      diverged)

    (row,) = robustness_rows([cell(0.01, [0.5, 0.52]), cell(0.1, [0.8, 0.82]), cell(1.0, [], diverged=2)])
    assert (row["best_lr"], row["lowest_lr"], row["highest_lr"], row["lrs"]) == (0.1, 0.01, 1.0, 2)
    assert edge_text([row]) == ""
