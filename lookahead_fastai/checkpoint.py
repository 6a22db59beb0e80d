"""Run checkpoints as data: tensors and plain values only, written atomically, read with
``torch.load(..., weights_only=True)``, so a checkpoint can never run code.

A checkpoint holds everything that decides the rest of a run (see ``runner.RunCheckpoint``): model,
optimizer (Lookahead's slow weights and counters included), every RNG that training draws from
(torch, CUDA, numpy, Python's ``random``, each fastai DataLoader's own ``rng``), the GradScaler, the
epoch reached and the per-epoch metrics so far. fastai's schedules are functions of the epoch, so
the epoch is their position.

A checkpoint that cannot be read (truncated, garbage, or a pickle that would need code to load) is
moved aside as ``last.pth.unreadable-<time>`` with a one-line warning, and the run starts over.
"""
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["CHECKPOINT_NAME", "to_plain", "save_checkpoint", "read_checkpoint", "rng_state", "set_rng_state"]

CHECKPOINT_NAME = "last.pth"


def to_plain(value):
    """``value`` as tensors, numbers, strings, None and (nested) lists, tuples and dicts: what
    ``weights_only=True`` loads. fastcore's ``L`` becomes a list, numpy arrays tensors, numpy
    scalars Python numbers; anything else raises TypeError (it would have to be pickled as code)."""
    if isinstance(value, np.generic):  # before float: numpy.float64 is a float, but pickles as numpy
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor, torch.dtype, torch.device)):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, dict):
        return {to_plain(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(to_plain(v) for v in value)
    if isinstance(value, list) or type(value).__name__ == "L":
        return [to_plain(v) for v in value]
    raise TypeError(f"a checkpoint holds only tensors and plain values, not {type(value).__name__}")


def rng_state(loaders=(), cuda=False):
    """The state of every RNG training draws from: torch (and CUDA), numpy, Python's ``random``,
    and each DataLoader's own ``rng`` (fastai shuffles with it)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": list(torch.cuda.get_rng_state_all()) if cuda else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached": float(cached)},
            "python": random.getstate(),
            "loaders": [dl.rng.getstate() for dl in loaders]}


def set_rng_state(state, loaders=()):
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(_tuples(state["python"]))
    if len(state["loaders"]) != len(loaders):
        raise ValueError(f"checkpoint has {len(state['loaders'])} DataLoader RNG states, the run has {len(loaders)}")
    for dl, s in zip(loaders, state["loaders"]):
        dl.rng.setstate(_tuples(s))


def _tuples(value):
    """``random.setstate`` wants tuples where the state had them."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_checkpoint(directory, state):
    """Write ``state`` (made plain) to ``directory/last.pth`` atomically: a kill leaves the old one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{CHECKPOINT_NAME}.{os.getpid()}.tmp"
    torch.save(to_plain(state), tmp)
    os.replace(tmp, directory / CHECKPOINT_NAME)


def read_checkpoint(directory, move_aside=True):
    """The checkpoint in ``directory`` as plain data, or None when there is none or it cannot be
    read; an unreadable one is moved aside (``move_aside``) with a one-line warning."""
    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        with warnings.catch_warnings():  # torch's notes on the pickle protocol: not the user's business
            warnings.simplefilter("ignore")
            state = torch.load(path, weights_only=True, map_location="cpu")
        if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
            raise ValueError("not a run checkpoint")
        return state
    except Exception as e:  # truncated, garbage, or a pickle that needs code: never executed
        reason = _why_unreadable(e)
        if move_aside:
            aside = path.with_name(f"{CHECKPOINT_NAME}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
            os.replace(path, aside)
            warnings.warn(f"unreadable checkpoint {path} moved to {aside.name}; the run starts over ({reason})",
                          CheckpointWarning, stacklevel=2)
        return None


def _why_unreadable(error):
    """Why ``torch.load(weights_only=True)`` refused a file, in a few words (torch's own messages
    are paragraphs of advice, some of it to load the file with ``weights_only=False``)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if any("Weights only load failed" in line for line in lines):
        detail = next((line for line in lines if line.startswith(("Trying to load", "Unsupported"))), "")
        return "not plain data, refused by torch.load(weights_only=True)" + (f": {detail}" if detail else "")
    first = lines[0].split(". ")[0] if lines else ""
    return (f"{type(error).__name__}: {first}" if first else type(error).__name__)[:200]


class CheckpointWarning(UserWarning):
    """A checkpoint could not be read and was moved aside."""
