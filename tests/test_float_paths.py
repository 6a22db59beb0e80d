"""float_paths: the noise floors of Fashion-MNIST, digits and MNIST are one algorithm through two float paths,
declared with the settings of the reports they stand beside (lr_robustness's Fashion-MNIST rows, demo's, the
MNIST reports') at every scale, and its committed runs give the floors the index states."""
import json
from pathlib import Path

import pytest

from lookahead_fastai.experiments import get_experiment
from lookahead_fastai.experiments import float_paths as fp
from lookahead_fastai.experiments import lr_robustness as lr
from lookahead_fastai.registry.optimizers import optimizer_parts
from lookahead_fastai.results import stats
from lookahead_fastai.results.families import noise_floors
from lookahead_fastai.store import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
EXP = get_experiment("float_paths")
SHARED = ("dataset", "arch", "epochs", "bs", "n_train", "n_valid", "augment", "schedule", "schedule_params",
          "data_path", "loss", "scale", "lr")


@pytest.mark.parametrize("scale", ["smoke", "cpu", "full"])
def test_the_pair_has_lr_robustness_fashion_mnist_settings(scale):
    specs = {s.name: s for s in EXP.specs(scale)}
    ours, theirs = specs[fp.row_name("LA/RAdam (ours)", scale)], specs[fp.row_name("ranger (fastai)", scale)]
    assert len(specs) == 2 * len(fp.DATASETS) and ours.optimizer == "lookahead(radam)" and theirs.optimizer == "fastai_ranger"
    # lr_robustness's Adam row at the same lr (the best lr of its Fashion-MNIST Adam sweeps at cpu)
    adam = next(s for s in lr.EXPERIMENT.specs(scale) if s.name == lr.row_name("Adam", "", fp.LR, "fashion_mnist",
                                                                                  scale))
    la = next(s for s in lr.EXPERIMENT.specs(scale) if s.name == lr.row_name("Adam", "LA k5 α0.5", fp.LR,
                                                                                "fashion_mnist", scale))
    for spec in (ours, theirs):
        assert {f: getattr(spec, f) for f in SHARED} == {f: getattr(adam, f) for f in SHARED}
        assert not spec.eval_slow_weights and spec.slow_bn_batches is None  # both scored the same way
        assert spec.hyper == {**la.hyper, "eps": 1e-5, "beta": 0.0}  # identical settings on both paths
    assert ours.to_dict() | {"name": "", "optimizer": ""} == theirs.to_dict() | {"name": "", "optimizer": ""}
    a, b = optimizer_parts(ours.optimizer, ours.hyper), optimizer_parts(theirs.optimizer, theirs.hyper)
    assert (a.implementation, b.implementation) == ("ours", "fastai")  # two float paths of one algorithm:
    assert a.wrapper_hyper.pop("pullback") == "none"  # ours without a pullback, as fastai's Lookahead
    assert (a.wrapper, a.inner, a.inner_hyper, a.wrapper_hyper) == (b.wrapper, b.inner, b.inner_hyper, b.wrapper_hyper)
    assert EXP.default_seeds[scale] == lr.SEEDS[scale]
    assert (ours.name, theirs.name) in EXP.same_algorithm and (ours.name, theirs.name) in EXP.comparisons


# dataset -> (the experiment, its row) whose model, data, epochs, bs, schedule and lr the pair takes at each scale
REFERENCE_ROWS = {"digits": lambda scale: [("demo", "AdamW")],
                  "mnist": lambda scale: [("optimizer_tour", "Adam · constant")] +
                  ([("optimizers_from_scratch", "Adam · debiased")] if scale != "full" else [])}


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
@pytest.mark.parametrize("scale", ["smoke", "cpu", "full"])
def test_the_pairs_have_their_reports_settings(scale, dataset):
    specs = {s.name: s for s in EXP.specs(scale)}
    ours = specs[fp.row_name("LA/RAdam (ours)", scale, dataset)]
    theirs = specs[fp.row_name("ranger (fastai)", scale, dataset)]
    assert (ours.optimizer, theirs.optimizer) == ("lookahead(radam)", "fastai_ranger")
    for experiment, row in REFERENCE_ROWS[dataset](scale):
        ref = next(s for s in get_experiment(experiment).specs(scale) if s.name == row)
        for spec in (ours, theirs):
            assert {f: getattr(spec, f) for f in SHARED} == {f: getattr(ref, f) for f in SHARED}, (experiment, row)
    for spec in (ours, theirs):
        assert not spec.eval_slow_weights and spec.slow_bn_batches is None
        assert spec.hyper == {**fp.RADAM, **fp.LOOKAHEAD}  # the same settings on every dataset and both paths
    assert ours.to_dict() | {"name": "", "optimizer": ""} == theirs.to_dict() | {"name": "", "optimizer": ""}
    assert (ours.name, theirs.name) in EXP.same_algorithm and (ours.name, theirs.name) in EXP.comparisons


def test_the_fashion_mnist_runs_keep_their_ids():
    """The digits and MNIST pairs were added beside the Fashion-MNIST one: its committed runs stay valid."""
    data = ROOT / "reports" / "data" / "float_paths.jsonl"
    committed = {r["run_id"] for r in map(json.loads, data.read_text().splitlines())}
    fmnist = [s for s in EXP.specs("cpu") if s.dataset == "fashion_mnist"]
    assert len(fmnist) == 2 and {s.run_id(seed) for s in fmnist for seed in range(lr.SEEDS["cpu"])} <= committed


def test_the_committed_runs_give_the_floors(tmp_path):
    data = ROOT / "reports" / "data" / "float_paths.jsonl"
    lines = [json.loads(x) for x in data.read_text().splitlines()]
    acc = {(r["name"], r["seed"]): r["record"]["final"]["accuracy"] for r in lines}
    assert {r["record"]["scale"] for r in lines} == {"cpu"} and len(acc) == 2 * len(fp.DATASETS) * lr.SEEDS["cpu"]
    expected = {}
    for dataset in fp.DATASETS:
        ours, theirs = fp.row_name("LA/RAdam (ours)", "cpu", dataset), fp.row_name("ranger (fastai)", "cpu", dataset)
        expected[dataset] = stats.noise_floor([acc[(ours, s)] - acc[(theirs, s)] for s in range(lr.SEEDS["cpu"])])
    with ResultsStore(tmp_path / "results.sqlite") as store:
        store.import_jsonl(data)
        assert noise_floors(store, "cpu") == expected
    index = (ROOT / "reports" / "README.md").read_text()
    fmnist = [row for row in index.splitlines() if row.startswith("| FMNIST |")]
    assert fmnist and all(row.endswith(f"| {stats_text(expected['fashion_mnist'])} |") for row in fmnist)
    # the table of reports states the floor beside demo's (digits) and the MNIST reports' detectable difference
    for report, dataset in (("demo", "digits"), ("optimizer_tour", "mnist"), ("optimizers_from_scratch", "mnist")):
        row = next(r for r in index.splitlines() if r.startswith(f"| [{report}]({report}.md) | `cpu` |"))
        assert f"| {dataset}: {stats_text(expected[dataset])} |" in row and "not measured" not in row


def stats_text(floor):
    from lookahead_fastai.results.text import noise_floor
    return noise_floor(floor)
