"""Where a results store and its files live: stdlib only, so anything (the CLI's ``--help``, a
report, a notebook's first cell) may import it without torch or fastai.

A store is one SQLite file; what else it owns lives in ``<dir>/<stem>.files/`` beside it
(``runs/results.sqlite`` -> ``runs/results.files/``), so two stores in one folder never share a
checkpoint or an lr_find curve. W&B writes its runs under ``<dir>/wandb/`` (:func:`wandb_dir`), one
folder per run that wandb names itself, so stores of one folder share that folder but no run's files.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["DEFAULT_STORE", "store_files_dir", "checkpoint_path", "lr_find_path", "is_safe_run_id", "safe_run_id",
           "wandb_dir"]

DEFAULT_STORE = Path("runs") / "results.sqlite"

_SAFE_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def store_files_dir(path: str | os.PathLike) -> Path:
    """The folder of artefacts that belongs to the store at ``path``: ``<dir>/<stem>.files/``."""
    path = Path(path)
    return path.parent / f"{path.stem}.files"


def is_safe_run_id(run_id: str) -> bool:
    """Whether ``run_id`` is safe as a directory name: letters, digits, '_', '.', '-', not '.' or '..'."""
    return bool(_SAFE_RUN_ID.match(run_id)) and run_id not in (".", "..")


def safe_run_id(run_id: str) -> str:
    """``run_id`` itself when it is safe as a directory name, else ValueError."""
    if not is_safe_run_id(run_id):
        raise ValueError(f"run_id {run_id!r} is not safe as a directory name")
    return run_id


def checkpoint_path(store: str | os.PathLike, run_id: str) -> Path:
    """Where the run's checkpoint lives: ``<store's files>/checkpoints/<run_id>/`` (not created)."""
    return store_files_dir(store) / "checkpoints" / safe_run_id(run_id)


def lr_find_path(store: str | os.PathLike, experiment: str, scale: str) -> Path:
    """Where a sweep keeps the lr_find curve of an experiment: in its store's own folder."""
    return store_files_dir(store) / "lr_find" / f"{experiment}_{scale}.json"


def wandb_dir(store: str | os.PathLike) -> Path:
    """The folder W&B writes a store's runs under (its ``wandb/`` subfolder): the store's own folder."""
    return Path(store).parent
