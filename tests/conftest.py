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
