"""Shared pytest fixtures."""
from pathlib import Path

import pytest

SHARED_DATA = (Path(__file__).resolve().parents[2] / "shared" / "data").resolve()  # ../shared may be a link


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline data folder (``../shared/data`` from the repo root): cifar10_subset/, mnist_subset/.

    Always present where the tests run; a missing folder is a setup error, not a skip.
    """
    assert SHARED_DATA.is_dir(), f"offline data folder {SHARED_DATA} is missing (see its README.md)"
    return SHARED_DATA


def pytest_configure(config):
    """Every test (and subprocess it starts) is offline, writes W&B runs offline and keeps its
    caches out of the user's home."""
    import os
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="lookahead-fastai-tests-"))
    os.environ["LOOKAHEAD_FASTAI_OFFLINE"] = "1"
    os.environ.setdefault("LOOKAHEAD_FASTAI_CACHE", str(base / "cache"))
    os.environ.setdefault("FASTAI_HOME", str(base / "fastai_home"))
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    os.environ.setdefault("WANDB_DIR", str(base / "wandb"))
    # One thread per process: `make test` runs two pytest workers on two cores, and the models here
    # are tiny, where a second OpenMP thread only adds overhead (4x the CPU time under load, measured
    # in experiments/lr_robustness.py). Subprocesses (the CLI, notebook kernels) inherit it. The
    # workers inherit the variables set here, so their dataset cache and fastai home are shared.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


# Test files that take longest (each file's summed wall time under `make test`, measured for issue 20:
# notebooks 176 s, lifecycle 140, experiments_full 165 before its loads moved in-process, about 95
# after, workers 79, cli 74, ray 71 (its cluster's CPU is not this process's), jupyter 69 without
# its browser, yours 61, cli_errors 50, ddp 46, lookahead 33, gpu_script 31), started first so that
# the two workers of `pytest -n 2 --dist loadfile` end together instead of one waiting on the
# other's last long file. Order only: a file missing here runs after these, as collected.
LONGEST_FIRST = ["test_notebooks.py", "test_lifecycle.py", "test_experiments_full.py", "test_jupyter.py",
                 "test_workers.py", "test_cli.py", "test_ray.py", "test_yours.py", "test_cli_errors.py",
                 "test_ddp.py", "test_lookahead.py", "test_gpu_script.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order
