"""The prepared GPU check (benchmarks/gpu/) on the CPU, so it cannot rot between lent GPUs.

``run.sh --smoke --simulate-machine`` runs gpu_check.py's every section at tiny sizes with the
imports limited to what the GPU machine has plus the carried wheels (machine_sim.py), and the
files it writes are read back. The wheel folder itself (``make gpu-wheels``) is checked only
where it was downloaded.
"""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the prepared GPU script end to end: `make test` runs it, `make check` does not

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "benchmarks" / "gpu"
SECTIONS = ["correctness", "optimizer_step", "epoch_time", "real_data", "projection", "loader", "tests"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("gpu_out")
    no_wheels = tmp_path_factory.mktemp("no_wheels")  # the venv has the packages; machine_sim limits them
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_WHEELS=str(no_wheels), OMP_NUM_THREADS="1")
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(GPU / "run.sh"), "--smoke", "--simulate-machine",
                           f"--data-dir={shared_data}", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"stdout": proc.stdout, "json": json.loads((out / "gpu.json").read_text()),
            "md": (out / "gpu.md").read_text()}


def test_every_section_ran_ok(smoke):
    report = smoke["json"]
    assert report["meta"]["mode"] == "smoke" and report["meta"]["device"] == "cpu"
    assert list(report["sections"]) == SECTIONS
    failed = {name: s.get("error") for name, s in report["sections"].items() if s["status"] != "ok"}
    assert not failed
    assert "no wheels in" in smoke["stdout"]  # run.sh skipped the install step
    md = smoke["md"]
    assert "SMOKE RUN" in md and "not measurements" in md
    for i in range(1, 8):
        assert f"\n## {i}. " in md


def test_correctness_against_reference(smoke):
    r = smoke["json"]["sections"]["correctness"]["result"]
    rows = r["rows"]
    assert {(x["inner"], x["pullback"]) for x in rows} == {
        (i, m) for i in ("sgd", "adam") for m in ("none", "reset", "pullback")}
    for row in rows:
        assert row["ok"] and row["device_vs_reference"] <= 1e-4 and row["cpu_vs_reference"] <= 1e-4
        assert row["max_abs_param"] > 0.01  # the weights moved; a zero difference of nothing proves little
    assert r["all_ok"]
    bf16 = r["bf16"]
    assert bf16["autocast_output_dtype"] == "torch.bfloat16"
    assert bf16["trains"] and bf16["last5_loss"] < 0.5 * bf16["first5_loss"]
    assert re.search(r"\| adam \| pullback \| [0-9.e+-]+ \|", smoke["md"])


def test_optimizer_step_ratios(smoke):
    r = smoke["json"]["sections"]["optimizer_step"]["result"]
    names = [row["name"] for row in r["rows"]]
    assert names[0] == "bare SGD" and any("ours" in n for n in names)
    assert any("timm" in n for n in names) and any("pytorch_optimizer" in n for n in names)
    assert r["rows"][0]["ratio"] == pytest.approx(1.0)
    assert all(row["median_ms"] > 0 and row["ratio"] > 0 for row in r["rows"])
    assert r["rounds"] >= 3
    assert "| bare SGD |" in smoke["md"]


def test_epoch_time_both_paths(smoke):
    r = smoke["json"]["sections"]["epoch_time"]["result"]
    assert r["data"].startswith("SYNTHETIC")
    assert {(row["path"], row["optimizer"]) for row in r["rows"]} == {
        (p, o) for p in ("fastai Learner", "minimal loop") for o in ("SGD", "Lookahead(SGD)")}
    for row in r["rows"]:
        assert 0 < row["valid_s"] < row["epoch_s"] and row["train_s"] > 0
    assert all(v is not None and v > 0 for v in r["ratios"].values())
    assert "SYNTHETIC" in smoke["md"]


def test_real_data_through_fit_and_record(smoke):
    r = smoke["json"]["sections"]["real_data"]["result"]
    assert [run["name"] for run in r["runs"]] == ["LA/SGD", "SGD"]
    for run in r["runs"]:
        assert run["epochs"] == 2
        assert 0 <= run["final_accuracy"] <= 1 and run["final_valid_loss"] > 0
        assert run["n_train"] == 256 and run["n_valid"] == 128
    assert r["runs"][0]["slow_accuracy"] is not None  # Lookahead runs also validate on the slow weights


def test_projection_covers_every_full_experiment(smoke):
    from lookahead_fastai.experiments import EXPERIMENTS
    r = smoke["json"]["sections"]["projection"]["result"]
    by_name = {e["experiment"]: e for e in r["experiments"]}
    assert set(by_name) == set(EXPERIMENTS)
    for name, exp in EXPERIMENTS.items():
        specs = exp.specs("full")
        assert by_name[name]["runs"] == len(specs)
        assert by_name[name]["epochs_total"] == sum(
            (getattr(s, "total_epochs", None) or s.epochs) for s in specs) * by_name[name]["seeds"]
        assert by_name[name]["hours_from_section3"] > 0
    assert r["total_hours_from_section3"] == pytest.approx(sum(e["hours_from_section3"] for e in r["experiments"]))
    statuses = [c["status"] for c in r["configs"].values()]
    assert statuses.count("ok") == 2 and all(s == "ok" or s.startswith("not measured") for s in statuses)
    assert "How: (a) from section 3" in smoke["md"]


def test_loader_section_against_the_model(smoke):
    """The loader section times the PIL path with the machine's default worker count (here: the
    smoke run's CPU) for the full specs' (dataset, size, augmentation), and sets each row's loader
    speed beside its model speed from the projection section."""
    from lookahead_fastai.data import default_workers
    r = smoke["json"]["sections"]["loader"]["result"]
    assert r["workers"] == default_workers()
    ok = {label: c for label, c in r["configs"].items() if c["status"] == "ok"}
    assert len(ok) == 2 and all(s == "ok" or s.startswith("not measured") for s in
                                (c["status"] for c in r["configs"].values()))
    for c in ok.values():
        assert c["dataset"] == c["config"]["dataset"] and c["augment"] == c["config"]["augment"]
        assert c["workers"] == default_workers()
        assert c["train_images_per_s"] > 0 and c["valid_images_per_s"] > 0 and c["train_images"] >= 48
        assert c["pin_memory"] is False  # the CPU: nothing to pin for
    folder = [c for c in ok.values() if not c["dataset"].startswith("cifar")]
    assert folder and all(c["data"].startswith("SYNTHETIC stand-in") for c in folder)
    assert r["rows"] and {row["loader"] for row in r["rows"]} == set(ok)
    assert any(row["limited_by"] for row in r["rows"])  # configs with a measured model come first
    for row in r["rows"]:
        assert row["rows"] and row["bs"] > 0
        assert row["limited_by"] in ("loader", "model", None)
        if row["model_train_images_per_s"] is not None:
            faster_loader = row["loader_train_images_per_s"] >= row["model_train_images_per_s"]
            assert row["limited_by"] == ("model" if faster_loader else "loader")
    assert "## 6. PIL data path: loader images/s" in smoke["md"] and "| limited by |" in smoke["md"]


def test_tests_section_collects_the_optimizer_tests(smoke):
    r = smoke["json"]["sections"]["tests"]["result"]
    assert r["returncode"] == 0 and re.search(r"\d+ tests? collected", r["summary"])


def test_machine_sim_blocks_what_the_gpu_machine_lacks():
    """The smoke run proves the wheel list only if the stand-in really blocks: wandb and IPython are
    not on the GPU machine nor carried; fastai is carried; numpy is there."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import machine_sim; machine_sim.install()\n"
            "for name in ('wandb', 'IPython'):\n"
            "    try:\n        __import__(name)\n    except ModuleNotFoundError as e:\n"
            "        assert 'GPU machine' in str(e), e\n    else:\n        raise SystemExit(name + ' imported')\n"
            "import numpy, fastcore, plum\nprint('ok')")
    proc = subprocess.run([sys.executable, "-c", code, str(GPU)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def _pins(path):
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_wheel_list_matches_the_venv_pins():
    """wheels.txt pins what pyproject.toml pins, and for the rest the versions installed here."""
    from importlib.metadata import version
    pins = _pins(GPU / "wheels.txt")
    assert "wandb" not in pins and {"fastai", "fastcore", "fastprogress", "plum-dispatch"} <= set(pins)
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name, pinned in pins.items():
        assert version(name) == pinned, name
        declared = re.search(rf'"{re.escape(name)}==([^"]+)"', pyproject, re.IGNORECASE)
        if declared:
            assert declared.group(1) == pinned, name


@pytest.mark.skipif(not any((ROOT / ".whl").glob("*.whl")), reason="no .whl/: `make gpu-wheels` not run here")
def test_downloaded_wheels_install_for_python_312(tmp_path):
    """What `make gpu-wheels` left in .whl/ is the list in wheels.txt, installs as one set for the GPU
    machine's Python 3.12, and travels within the device's 64 MiB with the data."""
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    found = {re.sub(r"[-_.]+", "-", w.name.split("-")[0]).lower(): w.name.split("-")[1] for w in wheels}
    assert found == _pins(GPU / "wheels.txt")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                           "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                           "--platform", "manylinux2014_x86_64", "--target", str(tmp_path / "site"),
                           *map(str, wheels)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "site" / "fastai" / "__init__.py").is_file()
    proc = subprocess.run([sys.executable, str(GPU / "travel_size.py"), ".whl", ".gpu-data"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "total travelling" in proc.stdout, proc.stdout + proc.stderr


def test_a_failing_or_overrunning_section_leaves_the_others(tmp_path, monkeypatch):
    """Each section runs in its own box: an exception is recorded as an error, a section that does
    not stop by itself is stopped (timeout), and the next section still runs; the files are there."""
    sys.path.insert(0, str(GPU))
    import gpu_check
    monkeypatch.setattr(gpu_check, "HARD_GRACE_S", 0.5)

    def broken(res, deadline):
        res["partial"] = 1
        raise ValueError("broken on purpose")

    def endless(res, deadline):
        res["started"] = True
        while True:
            time.sleep(0.02)

    def fine(res, deadline):
        res.update(rows=[], box=deadline.seconds)

    report = {"meta": {"mode": "smoke", "device": "cpu", "device_name": "test", "versions": "-", "date": "-",
                       "total_s": 60.0, "command": "-", "git": "-"}, "sections": {}}
    start = time.perf_counter()
    gpu_check.run_sections(report, {"correctness": broken, "optimizer_step": endless, "epoch_time": fine},
                           {"correctness": 5, "optimizer_step": 1, "epoch_time": 5}, gpu_check.Deadline(60), tmp_path)
    assert time.perf_counter() - start < 10
    sections = json.loads((tmp_path / "gpu.json").read_text())["sections"]
    assert sections["correctness"]["status"] == "error" and "broken on purpose" in sections["correctness"]["error"]
    assert sections["correctness"]["result"] == {"partial": 1}
    assert sections["optimizer_step"]["status"] == "timeout" and sections["optimizer_step"]["result"]["started"]
    assert sections["epoch_time"]["status"] == "ok" and sections["epoch_time"]["result"]["box"] == 5
    md = (tmp_path / "gpu.md").read_text()
    assert "status: **error**" in md and "status: **timeout**" in md and "status: **ok**" in md


def test_full_mode_without_cuda_says_so(tmp_path):
    """Without a GPU the full run stops at once with its reason in both files (and exit 1)."""
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the full run would start")
    sys.path.insert(0, str(GPU))
    import gpu_check
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["meta"]["mode"] == "full" and report["sections"] == {}
    assert "torch.cuda.is_available() is False" in report["meta"]["error"]
    assert "unavailable" in (tmp_path / "gpu.md").read_text()


def test_each_timing_names_its_configuration_as_planning_keys_it(smoke, tmp_path):
    """What each projection and loader entry measured is data (its ``config`` dict), keyed as
    planning keys the full specs' rows (config_key, loader_key): `lookahead-fastai plan` reads
    these fields, never the human labels; and an uncapped measurement is read back as such."""
    from lookahead_fastai.experiments import EXPERIMENTS
    from lookahead_fastai.planning import (CONFIG_FIELDS, LOADER_FIELDS, config_key, load_measurements,
                                           loader_key, on_pil_path)
    specs = [s for exp in EXPERIMENTS.values() for s in exp.specs("full")]
    sections = smoke["json"]["sections"]
    for section, fields, keys in (("projection", CONFIG_FIELDS, {config_key(s) for s in specs}),
                                  ("loader", LOADER_FIELDS, {loader_key(s) for s in specs if on_pil_path(s)})):
        configs = sections[section]["result"]["configs"]
        assert configs and all(tuple(c["config"]) == fields for c in configs.values())
        assert {tuple(c["config"][f] for f in fields) for c in configs.values()} == keys
    report = json.loads(json.dumps(smoke["json"]))
    report["meta"]["mode"] = "full"  # read as a measurement: uncapped entries count, capped ones do not
    ok = [c for c in report["sections"]["projection"]["result"]["configs"].values() if c["status"] == "ok"]
    for c in ok:
        c["size"], c["bs"] = c["config"]["size"], c["config"]["bs"]
    (tmp_path / "gpu.json").write_text(json.dumps(report))
    assert set(load_measurements(tmp_path)) == {tuple(c["config"][f] for f in CONFIG_FIELDS) for c in ok}
