"""Shared pytest fixtures."""
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline data folder (``../shared/data`` from the repo root): cifar10_subset/, mnist_subset/.

    Always present where the tests run; a missing folder is a setup error, not a skip.
    """
    assert SHARED_DATA.is_dir(), f"offline data folder {SHARED_DATA} is missing (see its README.md)"
    return SHARED_DATA
