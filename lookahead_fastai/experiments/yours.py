"""Your own experiment, from a TOML file or from Python, as the same :class:`Experiment` the built-in
ones are: same runs, store, resume, executors and reports.

A file (``lookahead-fastai run my_experiment.toml``)::

    name = "my_cifar"                 # the experiment's name in the store and in reports
    dataset = "mypkg.data:load"       # a registry name, or "module:callable"
    arch = "mypkg.models:net"         # a registry name, or "module:callable"
    epochs = 3
    bs = 64
    seeds = 3
    schedule = "one_cycle"
    [[rows]]
    name = "Adam"
    optimizer = "adam"
    lr = 1e-3
    [[rows]]
    name = "LA/Adam"
    optimizer = "lookahead(adam)"
    lr = 1e-3
    hyper = { k = 5, alpha = 0.5 }
    [[compare]]
    rows = ["LA/Adam", "Adam"]

Top-level keys other than ``name``, ``description``, ``seeds``, ``rows``, ``compare``, ``baseline``
and ``scales`` are settings every row shares (any ``RunSpec`` field); a row may set any of them for
itself (its ``hyper`` is merged over the shared one). Without ``[scales]`` the experiment has one
scale, ``full``: its own settings. ``[scales.smoke]`` (``cpu``, ``full``) tables declare scales, each
overriding settings (and ``seeds``); the first declared is the default.

From Python, :func:`your_experiment` takes the same keys, and callables (functions or classes defined
at the top level of a module or notebook) wherever a file takes ``"module:callable"``.
"""
from dataclasses import fields
from pathlib import Path

from ..registry.user import UserCodeError, import_path_of
from .spec import SCALES, Experiment, RunSpec, SpecError, Stages
from .your_sweep import lr_sweep_of

__all__ = ["load_experiment", "experiment_from_dict", "your_experiment", "is_experiment_file"]

_OWN_KEYS = ("name", "description", "seeds", "rows", "compare", "baseline", "scales", "stages", "lr_grid",
             "lr_extension")
_SPEC_FIELDS = tuple(f.name for f in fields(RunSpec))
_SHARED_KEYS = tuple(k for k in _SPEC_FIELDS if k not in ("experiment", "name", "scale"))
_ROW_KEYS = tuple(k for k in _SPEC_FIELDS if k not in ("experiment", "scale"))
DEFAULT_SCALE = "full"
DEFAULT_SEEDS = 3


def is_experiment_file(text):
    """Whether the CLI's EXP argument names a file rather than an experiment."""
    return str(text).endswith(".toml") or Path(text).is_file()


def load_experiment(path):
    """The :class:`Experiment` a TOML file declares (SpecError, one line, when it cannot)."""
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # Python 3.10: the same parser, packaged as tomli
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise SpecError(f"{path}: reading TOML needs Python 3.11 or later, or `pip install tomli`") from None
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a folder, not a TOML file") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a TOML file (not UTF-8 text)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not a TOML file: {e}") from None
    return experiment_from_dict(data, source=str(path))


def _unknown(keys, known, where):
    unknown = sorted(set(keys) - set(known))
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r}; known keys are {', '.join(sorted(known))}")


def _seeds(value, where):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{where}: seeds must be a positive int, got {value!r}")
    return value


def experiment_from_dict(data, source="your experiment"):
    """The :class:`Experiment` of a mapping with a TOML file's keys; every row of every scale is
    built (and so checked) here, before anything runs. Callables are named by their import path."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a table of keys, got {type(data).__name__}")
    _unknown(data, (*_OWN_KEYS, *_SHARED_KEYS), source)
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "/\\") or name.startswith("."):
        raise SpecError(f"{source}: name must be a non-empty string without '/' (it names the report file), "
                        f"got {name!r}")
    try:  # callables -> their import paths
        shared = _named({k: v for k, v in data.items() if k in _SHARED_KEYS})
        rows = _rows(data.get("rows"), source)
        scales = _scales(data.get("scales"), source)
    except UserCodeError as e:
        raise SpecError(f"{source}: {e}") from None
    names = [row["name"] for row in rows]
    comparisons = _comparisons(data.get("compare", []), names, source)  # none: each row vs the first
    baseline = data.get("baseline", comparisons[0][1] if comparisons else names[0])
    if baseline not in names:
        raise SpecError(f"{source}: baseline {baseline!r} is not a row; rows are {', '.join(names)}")
    seeds = _seeds(data.get("seeds", DEFAULT_SEEDS), source)

    def make(scale, row):
        overrides = {k: v for k, v in scales[scale].items() if k != "seeds"}
        settings = {**shared, **row, **overrides}
        settings["hyper"] = {**shared.get("hyper", {}), **row.get("hyper", {}), **overrides.get("hyper", {})}
        missing = [k for k in ("dataset", "arch", "optimizer", "lr", "epochs", "bs") if k not in settings]
        if missing:
            raise SpecError(f"{source}, row {row['name']!r}: {missing[0]!r} is missing (set it at the top "
                            f"or in the row)")
        try:
            return RunSpec(experiment=name, scale=scale, **settings)
        except SpecError as e:
            raise SpecError(f"{source}, row {row['name']!r}: {e}") from None

    sweep = lr_sweep_of(data, rows, shared, source, make) if "lr_grid" in data else None
    if sweep is not None:  # each row a family over the grid: the rows, comparisons and baseline per lr
        rows, comparisons, baseline = sweep.rows, sweep.comparisons(comparisons), sweep.first_of(baseline)
    elif "lr_extension" in data:
        raise SpecError(f"{source}: lr_extension extends an lr_grid; declare lr_grid = [lr, lr, ...] too")

    def build(scale):
        return [make(scale, row) for row in rows]

    built = {scale: build(scale) for scale in scales}  # every bad value found now, not half-way through a sweep
    stages = _stages(data.get("stages"), source)
    return Experiment(
        name=name, description=data.get("description") or f"your experiment from {source}",
        baseline=baseline, build=build, scales=tuple(scales), comparisons=tuple(comparisons),
        default_seeds={s: _seeds(o.get("seeds", seeds), f"{source}, scales.{s}") for s, o in scales.items()},
        protocol={s: _protocol(specs[0]) for s, specs in built.items()},
        stages={s: stages for s in scales} if stages else {},
        **(dict(lr_sweep=sweep.cells, lr_extension=sweep.extension, questions={"lookahead_vs_inner": "tuned"})
           if sweep is not None else {}))


def _stages(stages, source):
    """A file's ``stages = {tuning = [...], confirmation = [...]}`` (the same at every scale of the file)
    as :class:`Stages`; None when not declared."""
    if stages is None:
        return None
    if not isinstance(stages, dict):
        raise SpecError(f"{source}: stages must be a table with tuning and confirmation, got {stages!r}")
    _unknown(stages, ("tuning", "confirmation"), f"{source}, stages")
    missing = [k for k in ("tuning", "confirmation") if k not in stages]
    if missing:
        raise SpecError(f"{source}, stages: {missing[0]!r} is missing")
    try:
        return Stages(**stages)
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None


def _named(settings):
    """``dataset`` / ``arch`` / ``optimizer`` given as callables -> their import paths."""
    out = dict(settings)
    for key in ("dataset", "arch"):
        if key in out and not isinstance(out[key], str):
            out[key] = import_path_of(out[key], key)
    if "optimizer" in out and not isinstance(out["optimizer"], str):
        out["optimizer"] = import_path_of(out["optimizer"], "optimizer")
    if "hyper" in out and not isinstance(out["hyper"], dict):
        raise UserCodeError(f"hyper must be a table of hyper-parameters (k = 5, ...), got {out['hyper']!r}")
    return out


def _rows(rows, source):
    if not isinstance(rows, list) or not rows:
        raise SpecError(f"{source}: no rows; declare at least one [[rows]] with name, optimizer and lr")
    out, seen = [], set()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise SpecError(f"{source}: rows[{i}] must be a table, got {type(row).__name__}")
        _unknown(row, _ROW_KEYS, f"{source}, rows[{i}]")
        name = row.get("name")
        if not isinstance(name, str) or not name:
            raise SpecError(f"{source}: rows[{i}] has no name")
        if name in seen:
            raise SpecError(f"{source}: row name {name!r} is declared twice")
        seen.add(name)
        out.append(_named(row))
    return out


def _comparisons(compare, names, source):
    if not isinstance(compare, list):
        raise SpecError(f"{source}: compare must be a list of [[compare]] tables, got {type(compare).__name__}")
    pairs = []
    for i, table in enumerate(compare):
        where = f"{source}, compare[{i}]"
        if not isinstance(table, dict):
            raise SpecError(f"{where}: must be a table with rows = [ROW, VERSUS]")
        _unknown(table, ("rows",), where)
        pair = table.get("rows")
        if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(r, str) for r in pair):
            raise SpecError(f"{where}: rows must be two row names [ROW, VERSUS], got {pair!r}")
        for row in pair:
            if row not in names:
                raise SpecError(f"{where}: {row!r} names no row; rows are {', '.join(names)}")
        if pair[0] == pair[1]:
            raise SpecError(f"{where}: compares {pair[0]!r} with itself")
        pairs.append(tuple(pair))
    return pairs


def _scales(scales, source):
    if scales is None:
        return {DEFAULT_SCALE: {}}
    if not isinstance(scales, dict) or not scales:
        raise SpecError(f"{source}: scales must be tables [scales.smoke], [scales.cpu] or [scales.full]")
    for scale, overrides in scales.items():
        if scale not in SCALES:
            raise SpecError(f"{source}: unknown scale {scale!r}; scales are {', '.join(SCALES)}")
        if not isinstance(overrides, dict):
            raise SpecError(f"{source}: scales.{scale} must be a table of settings")
        _unknown(overrides, ("seeds", *_SHARED_KEYS), f"{source}, scales.{scale}")
    return {scale: _named(overrides) for scale, overrides in scales.items()}


def _protocol(spec):
    subset = "".join(f", {n} {what} items" for n, what in ((spec.n_train, "train"), (spec.n_valid, "valid")) if n)
    return (f"dataset {spec.dataset}{subset}, model {spec.arch}, {spec.epochs} epochs, batch size {spec.bs}, "
            f"schedule {spec.schedule}")


def your_experiment(name, dataset, arch, rows, compare=(), seeds=DEFAULT_SEEDS, **settings):
    """Your experiment from Python: ``rows`` a list of dicts (``name``, ``optimizer``, ``lr``, optional
    ``hyper`` and any other setting), ``compare`` a list of ``(row, versus)`` pairs, ``settings`` any
    other key of the TOML file (``epochs``, ``bs``, ``schedule``, ``description``, ...). ``dataset``,
    ``arch`` and a row's ``optimizer`` may be callables defined at the top level of a module or
    notebook (named by their import path: ``"__main__:digits"`` for a notebook's own)."""
    data = {"name": name, "dataset": dataset, "arch": arch, "rows": [dict(r) for r in rows], "seeds": seeds,
            "compare": [{"rows": list(pair)} for pair in compare], **settings}
    return experiment_from_dict(data, source=f"experiment {name!r}")
