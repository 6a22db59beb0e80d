"""What one line of an exported results file (``lookahead-fastai store export``) must be before
``ResultsStore.import_jsonl`` lets it in: the line schema, checked field by field (stdlib only).

A line is one finished run: ``run_id``, ``experiment``, ``name``, ``seed``, ``spec``, ``started_at``,
``finished_at``, ``record`` and ``epochs`` (its per-epoch rows). Checked here:

* sizes: a line is at most :data:`MAX_LINE_CHARS` characters and nests at most :data:`MAX_DEPTH` deep
  (deeper JSON is refused, never a ``RecursionError``); integers fit 64 bits;
* types and ranges: the seed a whole number from 0 to 2**32 - 1 (what NumPy can seed; 1.7 and 1e30
  are refused, not rounded), epochs numbered 0, 1, ... n-1 and as many as the record says,
  accuracies between 0 and 1, times and counts not negative;
* numbers finite, except losses: a run whose loss became NaN or infinite diverged, and an export of it
  says so (reports count such runs as diverged, never average them);
* identity: the run id is recomputed from the spec and the seed (a spec with ``RunSpec``'s fields
  is named as ``RunSpec.identity`` names it, fields at their defaults left out; it is not built, so a
  dataset or optimizer registered elsewhere keeps its id), and the record, the spec and the line
  agree on experiment, row, seed, scale and dataset.

A bad line raises :class:`BadLine` naming the field; the store adds the file and line number.
"""
from __future__ import annotations

import datetime as _dt
import json
import math

from .paths import is_safe_run_id

__all__ = ["BadLine", "parse_line", "MAX_LINE_CHARS", "MAX_DEPTH", "MAX_SEED", "MAX_EPOCHS"]

MAX_LINE_CHARS = 4 * 1024 * 1024  # the longest committed line is under 4 KB
MAX_DEPTH = 16                    # committed lines nest 5 deep
MAX_SEED = 2 ** 32 - 1            # numpy.random.seed's range (fastai's set_seed seeds it)
MAX_EPOCHS = 100_000
MAX_INT = 2 ** 63 - 1
MAX_TEXT = 200                    # experiment and row names, timestamps

FIELDS = ("run_id", "experiment", "name", "seed", "spec", "started_at", "finished_at", "record", "epochs")
MAX_RUN_ID = 64                   # a run id's length at most (its characters: paths.is_safe_run_id)
_FRACTIONS = ("accuracy", "top5", "best_accuracy", "test_accuracy", "test_top5")
# what a report reads from the record of a run of a declared experiment
_REPORTED = ("scale", "dataset", "n_train", "n_valid", "data", "final")


class BadLine(ValueError):
    """One line of an import refused: ``field`` (dotted path, or None for the whole line) and why."""

    def __init__(self, field, reason):
        self.field, self.reason = field, reason
        super().__init__(f"field {field!r}: {reason}" if field else reason)


def _constant(name):
    return float(name)  # NaN, Infinity, -Infinity: kept, then allowed only where a loss may diverge


def parse_line(text):
    """The run of one exported line as a dict (the fields of :data:`FIELDS`), checked; BadLine if not."""
    if len(text) > MAX_LINE_CHARS:
        raise BadLine(None, f"the line is longer than {MAX_LINE_CHARS} characters")
    try:
        run = json.loads(text, parse_constant=_constant)
    except RecursionError:
        raise BadLine(None, f"the JSON is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:
        raise BadLine(None, f"not JSON ({exc})") from None
    if not isinstance(run, dict):
        raise BadLine(None, f"an exported run is a JSON object, not {_kind(run)}")
    _check_values(run, "", 0)
    missing = [f for f in FIELDS if f not in run]
    if missing:
        raise BadLine(missing[0], "missing")
    unknown = sorted(set(run) - set(FIELDS))
    if unknown:
        raise BadLine(unknown[0], f"unknown field; an exported run has {', '.join(FIELDS)}")
    if not isinstance(run["run_id"], str) or len(run["run_id"]) > MAX_RUN_ID or not is_safe_run_id(run["run_id"]):
        raise BadLine("run_id", f"{_short(run['run_id'])} is not a run id (letters, digits, '_', '.', '-')")
    for field in ("experiment", "name"):
        _text(run, field)
    _whole(run, "seed", MAX_SEED)
    for field in ("started_at", "finished_at"):
        if run[field] is not None:
            _time(run, field)
    for field in ("spec", "record"):
        if not isinstance(run[field], dict):
            raise BadLine(field, f"must be an object, got {_kind(run[field])}")
    _check_epochs(run)
    _check_record(run)
    _check_identity(run)
    return run


# --- the parts --------------------------------------------------------------------------------------
def _check_values(value, field, depth):
    """Depth, integer range and finiteness of every value (non-finite numbers only in losses)."""
    if depth > MAX_DEPTH:
        raise BadLine(field or None, f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_values(item, f"{field}.{key}" if field else key, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_values(item, f"{field}[{i}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        if not field.rsplit(".", 1)[-1].endswith("loss"):
            raise BadLine(field, f"must be a finite number, got {value}")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise BadLine(field, "an integer out of range (more than 64 bits)")


def _check_epochs(run):
    rows = run["epochs"]
    if not isinstance(rows, list):
        raise BadLine("epochs", f"must be a list of epoch rows, got {_kind(rows)}")
    if len(rows) > MAX_EPOCHS:
        raise BadLine("epochs", f"more than {MAX_EPOCHS} rows")
    for i, row in enumerate(rows):
        field = f"epochs[{i}]"
        if not isinstance(row, dict):
            raise BadLine(field, f"must be an object, got {_kind(row)}")
        if "epoch" not in row:
            raise BadLine(f"{field}.epoch", "missing")
        _whole(row, "epoch", MAX_EPOCHS, f"{field}.epoch")
        if row["epoch"] != i:
            raise BadLine(f"{field}.epoch", f"the epochs of a finished run are 0, 1, 2, ...: row {i} is epoch "
                                            f"{row['epoch']}")
        _metrics(row, field)


def _check_record(run):
    record = run["record"]
    for field in ("run_id", "experiment", "name", "seed"):
        if field in record and record[field] != run[field]:
            raise BadLine(f"record.{field}", f"{_short(record[field])} differs from the line's {_short(run[field])}")
    if not isinstance(record.get("final"), dict):
        raise BadLine("record.final", "missing" if "final" not in record else
                      f"must be an object of metrics, got {_kind(record['final'])}")
    _metrics(record["final"], "record.final")
    if record.get("slow") is not None:
        if not isinstance(record["slow"], dict):
            raise BadLine("record.slow", f"must be an object of metrics or null, got {_kind(record['slow'])}")
        _metrics(record["slow"], "record.slow")
    if "epochs" in record:
        _whole(record, "epochs", MAX_EPOCHS, "record.epochs")
        if record["epochs"] != len(run["epochs"]):
            raise BadLine("record.epochs", f"says {record['epochs']} epochs, the line has {len(run['epochs'])} "
                                           "epoch rows")
    for field in ("n_train", "n_valid"):
        if field in record:
            _whole(record, field, MAX_INT, f"record.{field}")
    for field in ("seconds", "best_accuracy"):
        if record.get(field) is not None:
            _number(record, field, f"record.{field}", low=0.0, high=1.0 if field == "best_accuracy" else None)


def _check_identity(run):
    """The run id is the one the spec and the seed give; a spec of the suite's form (``RunSpec``'s
    fields) agrees with the line and the record, and the record holds what reports read."""
    from ..experiments.spec import RunSpec
    from .codec import run_identity
    spec = run["spec"]
    identity = RunSpec.identity_of(spec)
    expected = run_identity(spec if identity is None else identity, run["seed"])
    if run["run_id"] != expected:
        raise BadLine("run_id", f"{run['run_id']} is not the id of this spec and seed ({expected})")
    if identity is None:
        return  # a store-level spec (not one of the suite's): its id is checked, the rest is its own
    record = run["record"]
    for field in ("experiment", "name"):
        if run[field] != spec[field]:  # required fields of RunSpec: present
            raise BadLine(field, f"{_short(run[field])} differs from the spec's {_short(spec[field])}")
    for field in _REPORTED:
        if field not in record:
            raise BadLine(f"record.{field}", "missing")
    for field in ("scale", "dataset"):
        if record[field] != spec[field]:  # experiment, name, scale, dataset: RunSpec's required fields
            raise BadLine(f"record.{field}", f"{_short(record[field])} differs from the spec's {_short(spec[field])}")
    for field in ("dataset", "data"):
        _text(record, field, f"record.{field}")


def _metrics(metrics, field):
    for key, value in metrics.items():
        if key in _FRACTIONS and value is not None:
            _number(metrics, key, f"{field}.{key}", low=0.0, high=1.0)


# --- values -------------------------------------------------------------------------------------------
def _whole(obj, key, high, field=None):
    value, field = obj[key], field or key
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadLine(field, f"must be a whole number from 0 to {high}, got {_short(value)}")
    if not 0 <= value <= high:
        raise BadLine(field, f"must be from 0 to {high}, got {_short(value)}")


def _number(obj, key, field, low=None, high=None):
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadLine(field, f"must be a finite number, got {_short(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise BadLine(field, f"must be from {low:g} to {high:g}, got {value}" if high is not None else
                      f"must be at least {low:g}, got {value}")


def _text(obj, key, field=None):
    value, field = obj[key], field or key
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise BadLine(field, f"must be a non-empty string of at most {MAX_TEXT} characters, got {_short(value)}")


def _time(obj, key):
    _text(obj, key)
    try:
        _dt.datetime.fromisoformat(obj[key])
    except ValueError:
        raise BadLine(key, f"not an ISO date and time: {_short(obj[key])}") from None


def _kind(value):
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _short(value):
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
