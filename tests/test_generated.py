"""Generated files stay true: every committed file that a generator writes (notebooks, environment.yml,
the README's generated blocks) is what its generator writes now, and a stale one is named with the
command that fixes it (`make regenerate`, lookahead_fastai/regenerate.py)."""
import json
import shutil

import pytest
import yaml

from lookahead_fastai import regenerate as regen
from lookahead_fastai.experiments import EXPERIMENTS

ROOT = regen.ROOT


def test_committed_files_are_what_their_generators_write():
    messages = regen.stale()
    assert not messages, "\n".join(messages)


def test_everything_generated_is_checked():
    checked = {rel for rel, _, _ in regen.artefacts()}
    assert {p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("*.ipynb")} <= checked
    assert {"environment.yml", "README.md"} <= checked
    assert "regenerate:" in (ROOT / "Makefile").read_text() and "make regenerate" in (ROOT / "README.md").read_text()


def test_readme_experiment_table_is_every_experiment():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- generated: experiments -->", 1)[1].split(regen.END, 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == list(EXPERIMENTS)


def test_environment_yml_holds_every_pin_of_pyproject():
    env = yaml.safe_load(regen.environment_yml())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert regen.pins(pip_section) == regen.pyproject_pins() and "-e ." in pip_section
    assert {"torch", "fastai", "jupyterlab", "pytest", "ray", "accelerate"} <= set(regen.pins(pip_section))


@pytest.fixture
def copy(tmp_path):
    """The generated files and their inputs, copied: the tests below make them stale."""
    for rel in ["README.md", "pyproject.toml", "environment.yml"]:
        shutil.copy(ROOT / rel, tmp_path / rel)
    (tmp_path / "notebooks").mkdir()
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy(nb, tmp_path / "notebooks" / nb.name)
    shutil.copytree(ROOT / "benchmarks" / "results", tmp_path / "benchmarks" / "results")
    return tmp_path


def test_readme_benchmark_table_follows_the_results_files(copy):
    """`make bench` rewrites benchmarks/results/*.json (beside the markdown); the README's summary
    table is read from those fields and is then stale. The markdown is for people: editing it
    changes nothing generated."""
    md = copy / "benchmarks" / "results" / "training.md"
    md.write_text(md.read_text().replace("| 30.2 s |", "| 99.9 s |"))
    assert regen.stale(copy) == []
    training = copy / "benchmarks" / "results" / "training.json"
    data = json.loads(training.read_text())
    data["demo"]["wall_s"] = 41.7
    training.write_text(json.dumps(data))
    (message,) = regen.stale(copy)
    assert message.startswith("README.md differs from what lookahead_fastai/regenerate.py")
    assert "benchmarks/results/*.json" in message and "run `make regenerate`" in message
    assert "+| `make demo` wall time, venv present (12 runs + report) | 41.7 s | <= 60 s |" in message
    regen.regenerate(copy, log=lambda _: None)
    assert "| 41.7 s | <= 60 s |" in (copy / "README.md").read_text() and regen.stale(copy) == []
    del data["demo"]  # `bench_training.py --skip-demo` writes no demo block: the row says so
    training.write_text(json.dumps(data))
    regen.regenerate(copy, log=lambda _: None)
    assert "| not measured (`--skip-demo`) | — |" in (copy / "README.md").read_text()


def test_stale_files_are_named_with_the_command_and_regenerate_fixes_them(copy):
    assert regen.stale(copy) == []
    nb_path = copy / "notebooks" / "start_off.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["cells"][0]["source"] = "# start_off\n\nsmall CNN, 8 epochs"  # text written before the experiment changed
    nb_path.write_text(json.dumps(nb))
    pyproject = (copy / "pyproject.toml").read_text()
    (copy / "pyproject.toml").write_text(pyproject.replace('"pyyaml==6.0.3"', '"pyyaml==6.0.4"'))
    readme = (copy / "README.md").read_text()
    (copy / "README.md").write_text(readme.replace("| `demo` |", "| `demo_old` |"))

    messages = regen.stale(copy)
    assert len(messages) == 3
    first = {m.split(" ", 1)[0]: m for m in messages}
    assert set(first) == {"notebooks/start_off.ipynb", "environment.yml", "README.md"}
    assert first["notebooks/start_off.ipynb"].startswith(
        "notebooks/start_off.ipynb differs from what notebooks/build_notebooks.py writes now; run `make regenerate`")
    assert "pyyaml==6.0.4" in first["environment.yml"] and "demo_old" in first["README.md"]  # the diff

    logged = []
    written = regen.regenerate(copy, log=logged.append)
    assert sorted(p.relative_to(copy).as_posix() for p in written) == [
        "README.md", "environment.yml", "notebooks/start_off.ipynb"]
    assert any("no raw results committed" in line for line in logged)
    assert regen.stale(copy) == []
    assert "pyyaml==6.0.4" in (copy / "environment.yml").read_text()
    assert (copy / "README.md").read_text() == readme  # only the block changed, and back to what it was


def test_outputs_of_unchanged_cells_are_kept(copy):
    nb_path = copy / "notebooks" / "imagenette.ipynb"
    nb = json.loads(nb_path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    shown = {"output_type": "stream", "name": "stdout", "text": "trained\n"}
    code[1]["outputs"], code[1]["execution_count"] = [shown], 1  # source unchanged: kept
    code[2]["outputs"], code[2]["execution_count"] = [shown], 2
    code[2]["source"] = "show_results_of_an_older_api()"  # source changed: its output goes with it
    nb_path.write_text(json.dumps(nb))
    assert [m.split(" ", 1)[0] for m in regen.stale(copy)] == ["notebooks/imagenette.ipynb"]
    regen.regenerate(copy, log=lambda _: None)
    cells = {c["id"]: c for c in json.loads(nb_path.read_text())["cells"]}
    kept = cells[code[1]["id"]]
    assert [("".join(o["text"]), o["name"]) for o in kept["outputs"]] == [("trained\n", "stdout")]
    assert kept["execution_count"] == 1
    assert cells[code[2]["id"]]["outputs"] == [] and cells[code[2]["id"]]["execution_count"] is None
    assert "show_results(" in "".join(cells[code[2]["id"]]["source"])


def test_missing_markers_are_an_error_that_names_them():
    with pytest.raises(ValueError, match="generated: experiments"):
        regen.replace_block("# no markers\n", "experiments", "x")


def test_reports_are_rebuilt_from_committed_raw_results(copy):
    """reports/data/EXP.jsonl (`lookahead-fastai store export EXP`) is all `make regenerate` needs to
    rebuild reports/EXP.md and the index; their code-derived parts are then checked like the rest."""
    from lookahead_fastai.runner import fit_and_record
    from lookahead_fastai.store import ResultsStore
    store = copy / "runs" / "results.sqlite"
    specs = [s for s in EXPERIMENTS["demo"].specs("smoke") if s.name in ("AdamW", "LA/AdamW")]
    for spec in specs:  # two of the demo's smoke runs (seconds)
        fit_and_record(spec, 0, store=store)
    (copy / "reports" / "data").mkdir(parents=True)
    with ResultsStore(store) as db:
        assert db.export_jsonl("demo", copy / "reports" / "data" / "demo.jsonl") == 2
    logged = []
    regen.regenerate(copy, log=logged.append)
    assert {"wrote reports/demo.md", "wrote reports/README.md"} <= set(logged)
    report = (copy / "reports" / "demo.md").read_text()
    assert "## Scale `smoke`" in report and "LA/AdamW" in report and (copy / "reports" / "demo_smoke.png").exists()
    assert "[demo](demo.md)" in (copy / "reports" / "README.md").read_text()
    assert regen.stale(copy) == [] and regen.report_warnings(copy) == []

    deviations = report.split("## Deviations from the original", 1)[1].split("\n## ", 1)[0]
    (copy / "reports" / "demo.md").write_text(report.replace(deviations, "\n\n| what | original | here | why |\n"))
    (messages,) = regen.stale(copy)
    assert messages.startswith("reports/demo.md differs from what lookahead_fastai/results/report.py writes")
    assert "section 'Deviations from the original'" in messages and messages.endswith("run `make regenerate`")
    regen.regenerate(copy, log=lambda _: None)
    assert regen.stale(copy) == []


def test_stale_reports_without_raw_results_say_how_to_get_them(copy):
    (copy / "reports").mkdir()
    (copy / "reports" / "demo.md").write_text(regen.report_from_code("demo").replace(
        "# demo: ", "# demo: an older description; ", 1))
    (warning,) = regen.report_warnings(copy)
    assert warning.startswith("reports/demo.md differs") and "title" in warning
    assert "`lookahead-fastai store export demo`" in warning
    # only a training run or the runs' store can rebuild it; until then a reader must see it is out of date
    (message,) = regen.stale(copy)
    assert message.startswith("reports/demo.md lacks its out-of-date banner")
    logged = []
    regen.regenerate(copy, log=logged.append)
    assert "marked reports/demo.md out of date" in logged
    lines = (copy / "reports" / "demo.md").read_text().splitlines()
    assert lines[0].startswith("# demo: an older description") and lines[2].startswith(regen.STALE_MARK)
    assert "title (the experiment's description)" in lines[2] and "`lookahead-fastai run demo --scale cpu`" in lines[2]
    assert regen.stale(copy) == [] and len(regen.report_warnings(copy)) == 1
    before = (copy / "reports" / "demo.md").read_text()
    regen.regenerate(copy, log=lambda _: None)  # once is enough: the banner is not added twice
    assert (copy / "reports" / "demo.md").read_text() == before
