"""Stages declared in the experiment (``Experiment.stages``): tuning seeds make the choices, confirmation
seeds measure them; a confirmation seed that was used in tuning is refused (one line, at declaration and in
the CLI), and each run's record keeps its stage."""
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
