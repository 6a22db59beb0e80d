"""Run checkpoints as data: tensors and plain values only, written atomically, read with
``torch.load(..., weights_only=True)``, so a checkpoint can never run code.

A checkpoint holds everything that decides the rest of a run (see ``runner.RunCheckpoint``): model,
optimizer (Lookahead's slow weights and counters included), every RNG that training draws from
(torch, CUDA, numpy, Python's ``random``, each fastai DataLoader's own ``rng``), the GradScaler, the
epoch reached and the per-epoch metrics so far. fastai's schedules are functions of the epoch, so
the epoch is their position.

A checkpoint is bound to its run and store: it carries the store's id, the run id and a digest of
the run's spec (``binding``), and the store records the sha256 digest of each checkpoint before the
file replaces the last one. A checkpoint that cannot be read (truncated, garbage, or a pickle that would
need code to load), whose digest the store did not record (another store's, another run's, planted or
forged), whose binding is not this run's, that lacks keys or whose epoch is outside the run is moved
aside as ``last.pth.unusable-<time>`` with a one-line warning, and the run starts over.
"""
import hashlib
import io
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["CHECKPOINT_NAME", "REQUIRED_KEYS", "to_plain", "save_checkpoint", "read_checkpoint", "file_digest",
           "rng_state", "set_rng_state"]

CHECKPOINT_NAME = "last.pth"
# what ``callbacks.record.RunCheckpoint`` writes and reads back (``scaler`` may be None)
REQUIRED_KEYS = ("binding", "epoch", "history", "model", "opt", "scaler", "callbacks", "rng", "seconds")


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


def save_checkpoint(directory, state, before_replace=None):
    """Write ``state`` (made plain) to ``directory/last.pth`` atomically: a kill leaves the old one.
    ``before_replace(digest)`` is called with the new file's sha256 before it replaces the old one
    (the store records it). On any error (a full disk) the temporary file is removed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # serialized first: torch.save into a file on a full disk raises RuntimeError
    torch.save(to_plain(state), buffer)
    data = buffer.getbuffer()
    tmp = directory / f"{CHECKPOINT_NAME}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as fh:  # a full disk: OSError (No space left on device)
            fh.write(data)
        if before_replace is not None:
            before_replace(hashlib.sha256(data).hexdigest())
        os.replace(tmp, directory / CHECKPOINT_NAME)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_digest(path):
    """The sha256 of a file, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Unusable(ValueError):
    """A checkpoint that loads but is not this run's (or not whole): the reason is the message."""


def read_checkpoint(directory, move_aside=True, *, digests=None, binding=None, epochs=None):
    """The checkpoint in ``directory`` as plain data, or None when there is none or it cannot be
    used; an unusable one is moved aside (``move_aside``) with a one-line warning.

    ``digests``: the digests the store recorded for the run's checkpoints (checked before the file is
    loaded); ``binding``: what the checkpoint must carry (store, run id, spec digest), and then every
    key of :data:`REQUIRED_KEYS`; ``epochs``: the run's epochs (the checkpoint's epoch must be one of
    them, and its history must hold exactly the epochs up to it). None skips a check."""
    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        if digests is not None and file_digest(path) not in digests:
            raise Unusable("this store did not write it for this run (its digest is not one the store recorded)")
        with warnings.catch_warnings():  # torch's notes on the pickle protocol: not the user's business
            warnings.simplefilter("ignore")
            state = torch.load(path, weights_only=True, map_location="cpu")
        if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
            raise ValueError("not a run checkpoint")
        if binding is not None:
            _check_bound(state, binding)
        if epochs is not None:
            _check_epochs(state, epochs)
        return state
    except Exception as e:  # truncated, garbage, a pickle that needs code (never executed), not this run's
        reason = str(e) if isinstance(e, Unusable) else _why_unreadable(e)
        if move_aside:
            aside = path.with_name(f"{CHECKPOINT_NAME}.unusable-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
            os.replace(path, aside)
            warnings.warn(f"unusable checkpoint {path} moved to {aside.name}; the run starts over ({reason})",
                          CheckpointWarning, stacklevel=2)
        return None


def _check_bound(state, binding):
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise Unusable(f"it lacks the keys {', '.join(missing)}")
    bound = state["binding"] if isinstance(state["binding"], dict) else {}
    for key, what in (("store", "another store"), ("run_id", "another run"), ("spec", "another spec")):
        if bound.get(key) != binding[key]:
            raise Unusable(f"it was written for {what} ({key} {bound.get(key)!r}, this run's is {binding[key]!r})")


def _check_epochs(state, epochs):
    epoch = state["epoch"]
    if not 0 <= epoch < epochs:
        raise Unusable(f"its epoch {epoch} is outside this run's epochs 0 to {epochs - 1}")
    history = state.get("history")
    seen = [row.get("epoch") for row in history] if isinstance(history, list) and \
        all(isinstance(row, dict) for row in history) else None
    if seen != list(range(epoch + 1)):
        raise Unusable(f"its history does not hold exactly the epochs 0 to {epoch}")


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
    """A checkpoint could not be used and was moved aside."""
