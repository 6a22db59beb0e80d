"""The `full` protocols traced to their sources: every setting of every `full` spec of the
experiments that stand beside published numbers has a source (with the same value) or a deviation,
no source row is stale, every reference number names where it is printed, and the report renders
the sources table beside the deviations. The settings come from the specs themselves
(``run_settings``), so a new RunSpec field, a new hyper-parameter or a changed value without a
source fails here."""
import dataclasses
import re

import pytest

from lookahead_fastai.cli import main
from lookahead_fastai.experiments import EXPERIMENTS, RunSpec, get_experiment
from lookahead_fastai.experiments.deviations import Deviation
from lookahead_fastai.experiments.sources import (BOOKKEEPING, ReferenceNumber, Source, run_settings, unaccounted,
                                                  unsourced_numbers, unused_sources)

TRACED = ("paper_cifar", "imagenette_leaderboard")  # the experiments whose full rows stand beside published numbers
COMMIT_OR_PAPER = re.compile(r"@[0-9a-f]{7}|arXiv 1907\.08610|fastai 2\.8\.12")


def test_the_traced_experiments_are_the_ones_with_reference_numbers():
    assert {name for name, e in EXPERIMENTS.items() if e.sources or e.reference_numbers} == set(TRACED)


@pytest.mark.parametrize("name", TRACED)
def test_every_setting_of_every_full_spec_has_a_source_or_a_deviation(name):
    experiment = get_experiment(name)
    assert unaccounted(experiment, "full") == []
    assert unused_sources(experiment, "full") == []
    # the settings are the spec's own: every RunSpec field but its labels, and each hyper-parameter
    spec = experiment.specs("full")[0]
    keys = set(run_settings(spec))
    fields = {f.name for f in dataclasses.fields(RunSpec)} - set(BOOKKEEPING) - {"hyper", "schedule_params"}
    assert fields <= keys
    assert {f"hyper.{k}" for k in spec.hyper} <= keys
    assert {"precision", "normalisation", "weight decay applies to", "evaluation", "runs"} <= keys


@pytest.mark.parametrize("name", TRACED)
def test_every_source_and_reference_number_names_where_it_is(name):
    experiment = get_experiment(name)
    for source in experiment.sources:
        assert COMMIT_OR_PAPER.search(source.where), source.what
    assert experiment.reference_numbers and unsourced_numbers(experiment) == []
    rows = {spec.name for spec in experiment.specs("full")}
    for number in experiment.reference_numbers:
        assert number.value in experiment.reference
        assert COMMIT_OR_PAPER.search(number.where), number.label
        assert number.beside == "" or number.beside in rows, number.beside
    assert any(number.beside for number in experiment.reference_numbers)


def test_a_new_setting_a_changed_value_or_a_stale_source_is_caught():
    paper = get_experiment("paper_cifar")

    def changed(scale):  # the SGD rows lose Nesterov and gain mixup: neither is what the sources say
        return [dataclasses.replace(s, hyper={k: v for k, v in s.hyper.items() if k != "nesterov"}, mixup=0.2)
                if s.optimizer == "sgd" else s for s in paper.specs(scale)]
    missing = {(row, key) for row, key, _ in unaccounted(dataclasses.replace(paper, build=changed))}
    assert missing == {(row, key) for row in ("SGD · C10", "SGD · C100") for key in ("hyper.nesterov", "mixup")}
    # a deviation that names the setting accounts for it, for the rows it is declared for
    declared = Deviation("mixup", "none", "0.2", "a test", settings=("mixup",), when={"dataset": "cifar10"})
    changed_and_declared = dataclasses.replace(paper, build=changed, deviations=(*paper.deviations, declared))
    assert {(row, key) for row, key, _ in unaccounted(changed_and_declared) if key == "mixup"} == {("SGD · C100", "mixup")}
    stale = Source("batch size", {"bs": 256}, "a number nobody printed", "nowhere@0000000")
    assert unused_sources(dataclasses.replace(paper, sources=(*paper.sources, stale))) == [stale]
    quoted = dataclasses.replace(paper, reference=paper.reference + "\nSomewhere else: 87.43%.\n")
    assert unsourced_numbers(quoted) == ["87.43"]
    with pytest.raises(ValueError, match="Source.settings"):
        Source("nothing", {}, "says", "where@0000000")
    with pytest.raises(ValueError, match="ReferenceNumber.where"):
        ReferenceNumber("a number", "1.0%", "", " ")


def test_the_full_specs_follow_their_sources_and_the_cpu_specs_keep_their_run_ids():
    paper = get_experiment("paper_cifar")
    sgd = [s for s in paper.specs("full") if s.optimizer in ("sgd", "lookahead(sgd)")]
    assert sgd and all(s.hyper["nesterov"] is True and s.hyper["mom"] == 0.9 for s in sgd)  # Cutout's SGD
    assert all("nesterov" not in s.hyper for s in paper.specs("cpu"))  # committed cpu runs predate it
    board = get_experiment("imagenette_leaderboard")
    full = board.specs("full")
    assert {s.arch for s in full} == {"xse_resnext50_mish_sa_maxpool"} and {s.lr for s in full} == {8e-3}
    assert {s.hyper["mom"] for s in full} == {0.95} and {s.mixup for s in full} == {0.0}
    assert {s.lr for s in board.specs("cpu")} == {1e-2} and {s.hyper["mom"] for s in board.specs("cpu")} == {0.9}
    assert "87.43" not in board.reference  # a later entry (MaxBlurPool, tuned), not the recipe these rows run
    ranger = {n.beside: n.value for n in board.reference_numbers}
    assert ranger == {"ranger (fastai) · Imagenette · 5 ep": "84.71%", "ranger (fastai) · Imagenette · 20 ep": "91.13%",
                      "ranger (fastai) · Imagewoof · 5 ep": "71.90%", "ranger (fastai) · Imagewoof · 20 ep": "84.83%"}


@pytest.mark.parametrize("optimizer, hyper", [("sgd", {"mom": 0.9, "wd": 1e-3, "nesterov": True}),
                                              ("lookahead(sgd)", {"mom": 0.9, "wd": 1e-3, "k": 5, "alpha": 0.8}),
                                              ("fastai_ranger", {"wd": 1e-2}), ("lookahead(radam)", {"wd": 1e-2})])
def test_weight_decay_reaches_what_the_setting_says(optimizer, hyper):
    """'weight decay applies to' is derived from the optimizer; here is what a Learner really does:
    a torch optimizer decays every parameter (as Cutout's SGD over cnn.parameters()), a fastai one
    all but BatchNorm and bias (fastai's Learner, wd_bn_bias=False, as in train_imagenette.py)."""
    import torch
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.torch_core import norm_bias_params

    from lookahead_fastai.data import BatchAugment, TensorDataLoader
    from lookahead_fastai.registry.architectures import small_cnn
    from lookahead_fastai.registry.optimizers import make_opt_func
    x, y = torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.arange(4) % 2
    dl = TensorDataLoader(x, y, BatchAugment([0.5] * 3, [0.25] * 3), bs=2)
    learn = Learner(DataLoaders(dl, dl), small_cnn(3, 2), loss_func=CrossEntropyLossFlat(),
                    opt_func=make_opt_func(optimizer, **hyper))
    learn.create_opt()
    spec = RunSpec(experiment="t", name="t", dataset="cifar10", arch="small_cnn", optimizer=optimizer, lr=0.1,
                   epochs=1, bs=2, scale="smoke", hyper=hyper)
    reach = run_settings(spec)["weight decay applies to"]
    no_decay = set(norm_bias_params(learn.model, True))
    if reach.startswith("every parameter"):
        groups = learn.opt.opt.param_groups  # the torch optimizer's (our Lookahead shares its inner's)
        decayed = {p for g in groups if g["weight_decay"] == hyper["wd"] for p in g["params"]}
        assert decayed == set(learn.model.parameters())
    else:
        assert reach.startswith("all but BatchNorm and bias")
        assert no_decay and all(learn.opt.state[p].get("do_wd") is False for p in no_decay)
        assert not any(learn.opt.state[p].get("do_wd") is False for p in learn.model.parameters() if p not in no_decay)


@pytest.mark.parametrize("name", TRACED)
def test_the_report_renders_the_sources_beside_the_deviations(name):
    from lookahead_fastai.regenerate import report_from_code
    experiment = get_experiment(name)
    text = report_from_code(name)
    sources = text.index("## Sources of the `full` protocol, setting by setting")
    assert sources < text.index("## Deviations from the original") < text.index("## Reference numbers")
    table = text[sources:text.index("## Deviations from the original")]
    for source in experiment.sources:
        assert " ".join(source.where.split()) in table, source.what
    for deviation in experiment.deviations:
        assert deviation.what in text
    for number in experiment.reference_numbers:
        assert number.value in text and number.where in text


@pytest.mark.parametrize("name, runs", [("paper_cifar", 30), ("imagenette_leaderboard", 100)])
def test_plan_still_prices_the_full_runs(name, runs, capsys):
    assert main(["plan", name, "--scale", "full"]) == 0
    out = capsys.readouterr().out
    assert f"{name} at scale full: " in out and f"= {runs} runs" in out and "total" in out
