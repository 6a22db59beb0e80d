"""float_paths: the Fashion-MNIST noise floor is one algorithm through two float paths, declared with
lr_robustness's Fashion-MNIST settings at every scale, and its committed runs give the floor the index states."""
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
    assert len(specs) == 2 and ours.optimizer == "lookahead(radam)" and theirs.optimizer == "fastai_ranger"
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


def test_the_committed_runs_give_the_fashion_mnist_floor(tmp_path):
    data = ROOT / "reports" / "data" / "float_paths.jsonl"
    lines = [json.loads(x) for x in data.read_text().splitlines()]
    acc = {(r["name"], r["seed"]): r["record"]["final"]["accuracy"] for r in lines}
    assert {r["record"]["scale"] for r in lines} == {"cpu"} and len(acc) == 2 * lr.SEEDS["cpu"]
    ours, theirs = fp.row_name("LA/RAdam (ours)"), fp.row_name("ranger (fastai)")
    expected = stats.noise_floor([acc[(ours, s)] - acc[(theirs, s)] for s in range(lr.SEEDS["cpu"])])
    with ResultsStore(tmp_path / "results.sqlite") as store:
        store.import_jsonl(data)
        assert noise_floors(store, "cpu") == {"fashion_mnist": expected}
    index = (ROOT / "reports" / "README.md").read_text()
    fmnist = [row for row in index.splitlines() if row.startswith("| FMNIST |")]
    assert fmnist and all(row.endswith(f"| {stats_text(expected)} |") for row in fmnist)


def stats_text(floor):
    from lookahead_fastai.results.text import noise_floor
    return noise_floor(floor)
