"""Experiments as data: a ``RunSpec`` is everything that defines one training run except its seed.

Specs are frozen dataclasses, validated on construction (``RunSpec.from_dict`` too) with errors
that name the bad field. ``Experiment`` groups the specs of one comparison, per scale:
``smoke`` (seconds, for tests), ``cpu`` (real offline data, minutes on 2 cores, for committed
reports) and ``full`` (the original protocol, for a GPU).
"""
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Callable

from ..registry.architectures import ARCHITECTURES
from ..registry.datasets import DATASETS
from ..registry.optimizers import make_opt_func, parse_optimizer_name
from ..registry.schedules import SCHEDULES, lr_schedule_function
from ..registry.user import UserCodeError, check_import_path, is_import_path

__all__ = ["RunSpec", "Experiment", "SweepCell", "ComputeBudget", "Stages", "SCALES", "SpecError", "grid"]

SCALES = ("smoke", "cpu", "full")
STATE_RESETS = ("off", "epoch")
DATA_PATHS = ("auto", "tensor", "pil")


class SpecError(ValueError):
    """A spec field is invalid; the message names the field."""


def _fail(field_name, message):
    raise SpecError(f"spec field '{field_name}': {message}")


def _check_form(import_path, field_name):
    try:
        check_import_path(import_path, field_name)
    except UserCodeError as e:
        raise SpecError(str(e)) from None


@dataclass(frozen=True)
class RunSpec:
    experiment: str
    name: str                      # the row label in reports, e.g. "LA/SGD"
    dataset: str                   # registry name, or a user's own "module:callable" (registry/user.py)
    arch: str                      # registry name, or "module:callable"
    optimizer: str                 # registry name, e.g. "lookahead(sgd)", or "module:callable",
                                   # "lookahead(module:callable)"
    lr: float
    epochs: int
    bs: int
    scale: str
    hyper: dict = field(default_factory=dict)      # mom, wd, k, alpha, pullback, ...
    schedule: str = "constant"
    schedule_params: dict = field(default_factory=dict)
    n_train: int | None = None     # class-stratified subset sizes (None: all)
    n_valid: int | None = None
    size: int | None = None        # image size for folder datasets
    mixup: float = 0.0             # fastai MixUp alpha; 0 = off
    state_reset: str = "off"       # off | epoch (a fresh optimizer state after every epoch); a reset at
                                   # Lookahead syncs is the wrapper's own hyper {"pullback": "reset"}
    eval_slow_weights: bool = False  # validate every epoch on Lookahead's slow weights
    data_path: str = "auto"        # auto | tensor | pil
    sessions: tuple = ()           # optional list of {"epochs", "lr", "schedule", "reset_opt"}
    lr_mult: float = 1.0           # discriminative lr: body gets lr / lr_mult, head gets lr
    note: str = ""
    loss: str = "cross_entropy"    # registry.losses: cross_entropy | label_smoothing
    augment: str = "default"       # registry.augmentations: default | rrc_flip | none
    slow_bn_batches: int | None = None  # slow-weight eval: recompute BatchNorm stats over N train batches
    holdout: int | float | None = None  # three splits: training images held out as validation (a count, or a
                                        # fraction in (0, 1)); fixed and class-stratified per dataset, never the
                                        # run seed. Validation then picks; the test split is scored once, at the end.
                                        # None: two splits (valid = the dataset's test split), as before

    # long: every field's check in one place, in field order, each failing with the field's name (_fail)
    def __post_init__(self):
        for name in ("experiment", "name"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                _fail(name, "must be a non-empty string")
        # a user's own "module:callable" is checked for its form only: a spec never imports code
        # (registry/user.py resolves it when a run is checked or trains)
        for name, registry in (("dataset", DATASETS), ("arch", ARCHITECTURES)):
            value = getattr(self, name)
            if is_import_path(value):
                _check_form(value, name)
            elif value not in registry:
                _fail(name, f"unknown {value!r}; choose one of {', '.join(registry)} or 'module:callable'")
        try:
            if is_import_path(parse_optimizer_name(self.optimizer)[1]):
                if not isinstance(self.hyper, dict) or not all(isinstance(k, str) for k in self.hyper):
                    raise ValueError("hyper must be a mapping of keyword arguments")
            else:
                make_opt_func(self.optimizer, **self.hyper)
        except (ValueError, TypeError) as e:
            _fail("optimizer" if "optimizer" in str(e) and "take" not in str(e) else "hyper", str(e))
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or not self.lr > 0:
            _fail("lr", f"must be a positive number, got {self.lr!r}")
        for name in ("epochs", "bs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                _fail(name, f"must be a positive int, got {value!r}")
        for name in ("n_train", "n_valid", "size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                _fail(name, f"must be a positive int or null, got {value!r}")
        if self.scale not in SCALES:
            _fail("scale", f"must be one of {', '.join(SCALES)}, got {self.scale!r}")
        if self.schedule not in SCHEDULES:
            _fail("schedule", f"unknown {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        try:
            lr_schedule_function(self.schedule, self.lr, **self.schedule_params)
        except (ValueError, TypeError) as e:
            _fail("schedule_params", str(e))
        if isinstance(self.lr_mult, bool) or not isinstance(self.lr_mult, (int, float)) or self.lr_mult < 1:
            _fail("lr_mult", f"must be a number >= 1 (1 = one lr for all layers), got {self.lr_mult!r}")
        if not isinstance(self.mixup, (int, float)) or self.mixup < 0:
            _fail("mixup", f"must be a number >= 0 (0 = off), got {self.mixup!r}")
        if self.state_reset == "sync":
            _fail("state_reset", "a reset at every Lookahead sync is the wrapper's hyper {'pullback': 'reset'}, "
                                 "not a state_reset")
        if self.state_reset not in STATE_RESETS:
            _fail("state_reset", f"must be one of {', '.join(STATE_RESETS)}, got {self.state_reset!r}")
        if self.data_path not in DATA_PATHS:
            _fail("data_path", f"must be one of {', '.join(DATA_PATHS)}, got {self.data_path!r}")
        if is_import_path(self.dataset):  # the user's data comes as it is: no augmentation, path or sizes of ours
            for name, default in (("data_path", "auto"), ("augment", "default"), ("size", None)):
                if getattr(self, name) != default:
                    _fail(name, f"not for a dataset of your own ({self.dataset}): its data comes as it is")
        if is_import_path(self.arch) and self.lr_mult != 1:
            _fail("lr_mult", f"needs a body and a head; a model of your own ({self.arch}) has one parameter group")
        if self.data_path == "tensor" and not DATASETS[self.dataset].small:
            _fail("data_path", f"dataset {self.dataset!r} has no tensor path; use 'pil' or 'auto'")
        from ..registry.augmentations import check_augment
        from ..registry.losses import LOSSES
        if self.loss not in LOSSES:
            _fail("loss", f"unknown {self.loss!r}; choose one of {', '.join(LOSSES)}")
        try:
            if not is_import_path(self.dataset):
                check_augment(self.augment, DATASETS[self.dataset].small, self.data_path)
        except ValueError as e:
            _fail("augment", str(e))
        if self.slow_bn_batches is not None and (isinstance(self.slow_bn_batches, bool) or
                                                 not isinstance(self.slow_bn_batches, int) or self.slow_bn_batches < 1):
            _fail("slow_bn_batches", f"must be a positive int or null, got {self.slow_bn_batches!r}")
        self._check_holdout()
        object.__setattr__(self, "sessions", tuple(dict(s) for s in self.sessions))
        for i, session in enumerate(self.sessions):
            unknown = set(session) - {"epochs", "lr", "schedule", "schedule_params", "reset_opt"}
            if unknown:
                _fail(f"sessions[{i}]", f"unknown keys {sorted(unknown)}")
            if not isinstance(session.get("epochs"), int) or session["epochs"] < 1:
                _fail(f"sessions[{i}].epochs", "must be a positive int")

    def _check_holdout(self):
        value = self.holdout
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not (value >= 1 if isinstance(value, int) else 0 < value < 1):
            _fail("holdout", f"must be a count >= 1, a fraction in (0, 1) or null, got {value!r}")
        if is_import_path(self.dataset):
            _fail("holdout", f"three splits need a built-in dataset; your own ({self.dataset}) "
                             f"brings its own splits")

    @property
    def total_epochs(self):
        """Epochs the run trains: the sum over its sessions, else ``epochs`` (``lookahead-fastai plan``)."""
        return sum(s["epochs"] for s in self.sessions) if self.sessions else self.epochs

    def to_dict(self):
        d = asdict(self)
        d["sessions"] = [dict(s) for s in self.sessions]
        return d

    def identity(self):
        """The spec as it names a run: fields at their default value are left out, so adding a new
        field (with a default) to RunSpec does not change the identity of runs already stored."""
        return self.identity_of(self.to_dict())

    @classmethod
    def identity_of(cls, full):
        """:meth:`identity` of a spec given as its ``to_dict()`` (e.g. read back from an exported
        file), without building it: a spec whose dataset or optimizer is not registered here keeps
        its id. None when ``full`` has fields RunSpec does not or lacks a required one."""
        out = {}
        if not isinstance(full, dict) or not set(full) <= {f.name for f in fields(cls)}:
            return None
        for f in fields(cls):
            default = f.default if f.default is not MISSING else (
                f.default_factory() if f.default_factory is not MISSING else MISSING)
            if f.name not in full:
                if default is MISSING:
                    return None
                continue
            value = full[f.name]
            if default is MISSING or value != (list(default) if isinstance(default, tuple) else default):
                out[f.name] = value
        return out

    def run_id(self, seed):
        """The store's key for this spec run with ``seed``."""
        from ..store import run_identity
        return run_identity(self.identity(), seed)

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise SpecError(f"a spec must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"spec field '{unknown[0]}': unknown field; known fields are {', '.join(sorted(known))}")
        required = [f.name for f in fields(cls)
                    if f.name not in data and f.default is MISSING and f.default_factory is MISSING]
        if required:
            raise SpecError(f"spec field '{required[0]}': missing")
        return cls(**data)


@dataclass(frozen=True)
class SweepCell:
    """One row of a declared lr sweep, with the values its name stands for (a report reads these fields,
    never the row name). One sweep per (``data``, ``label``): its rows over the lr grid."""
    row: str                           # the row's name (RunSpec.name)
    data: str                          # the dataset's label, e.g. "C10-5k"
    inner: str                         # the inner optimizer's label, e.g. "SGD"
    variant: str                       # the Lookahead variant's label, e.g. "LA k5 α0.5"; "" for the plain optimizer
    label: str                         # the row family's label, e.g. "LA k5 α0.5 / SGD"
    lr: float


@dataclass(frozen=True)
class ComputeBudget:
    """What a study may cost at one scale, and how its runs' recorded times turn into hours of the
    machine: ``machine_hours(core_seconds)`` (single-threaded runs spread over ``workers`` sweeps) and
    ``projected_hours(scale)`` (the study projected from measured single runs)."""
    scale: str
    hours: float
    workers: int
    machine_hours: Callable
    projected_hours: Callable


@dataclass(frozen=True)
class Stages:
    """The seeds of each stage of a study at one scale: ``tuning`` seeds make the choices (best lr, ...),
    ``confirmation`` seeds then measure what was chosen. A confirmation seed used in tuning is refused:
    the confirmation would re-measure the noise the choice was made on."""
    tuning: tuple
    confirmation: tuple

    def __post_init__(self):
        for name in ("tuning", "confirmation"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") or not value or \
                    any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value) or \
                    len(set(value)) != len(list(value)):
                raise SpecError(f"stages: {name} must be a non-empty list of distinct seeds (ints >= 0), got {value!r}")
            object.__setattr__(self, name, tuple(value))
        reused = sorted(set(self.tuning) & set(self.confirmation))
        if reused:
            raise SpecError(f"stages: confirmation seed{'s' if len(reused) > 1 else ''} "
                            f"{', '.join(map(str, reused))} used in tuning; a confirmation seed must be new")

    @property
    def seeds(self):
        return self.tuning + self.confirmation

    def stage_of(self, seed):
        """"tuning", "confirmation", or None for a seed of neither."""
        return "tuning" if seed in self.tuning else "confirmation" if seed in self.confirmation else None


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    baseline: str                      # the row the paired differences are taken against
    build: Callable                    # scale -> list[RunSpec]
    default_seeds: dict = field(default_factory=lambda: {"smoke": 1, "cpu": 3, "full": 3})
    reference: str = ""                # markdown: the original's numbers to stand beside ours
    lr_find_row: str = ""              # a row whose lr_find plot goes into the report
    protocol: dict = field(default_factory=dict)  # scale -> one-line description of data/protocol
    comparisons: tuple = ()            # (row, versus row) pairs for paired differences; default: vs baseline
    deviations: tuple = ()             # Deviation(what, original, here, why) rows: how this differs from the original
    tuned: dict = field(default_factory=dict)  # scale -> {row: the declared sweep its lr (and wd) came from}
    sources: tuple = ()                # Source rows: where each setting of the full specs comes from (sources.py)
    reference_numbers: tuple = ()      # ReferenceNumber rows: each number of `reference`, its row and its source
    questions: dict = field(default_factory=dict)  # question id (results.questions) -> the comparisons answering it
                                       # ("tuned": each family at the best lr of its declared sweep)
    same_algorithm: tuple = ()         # (row, row) pairs: one algorithm through two float paths (the noise floor)
    scales: tuple = SCALES             # the scales it declares (a user's experiment: often one, its own settings)
    lr_sweep: Callable | None = None   # scale -> [SweepCell]: every row of a declared lr grid, in order; its report
                                       # shows accuracy against lr per dataset, and each Lookahead family at its
                                       # best lr meets its plain inner optimizer (variant "") at that one's best
    budget: ComputeBudget | None = None  # the compute the study may take, stated in its report
    target_share: float = 0.95         # time to target: a share of the tuned inner optimizer's mean final accuracy
    stages: dict = field(default_factory=dict)  # scale -> Stages (tuning and confirmation seeds); each run's
                                       # record keeps its stage
    lr_extension: object = None        # extension.LrExtension: a family whose best lr is at an edge of its grid gets
                                       # the next point that way, up to a limit (None: the grid as declared)

    def __post_init__(self):
        stages = {}
        for scale, value in dict(self.stages).items():
            if scale not in self.scales:
                raise SpecError(f"stages: scale {scale!r} is not one of the experiment's ({', '.join(self.scales)})")
            stages[scale] = value if isinstance(value, Stages) else Stages(**value) if isinstance(value, dict) \
                else _fail_stages(value)
        object.__setattr__(self, "stages", stages)

    def stage_of(self, scale, seed):
        """The stage of a run of ``seed`` at ``scale`` (None: no stages declared there, or a seed of neither)."""
        stages = self.stages.get(scale)
        return stages.stage_of(seed) if stages else None

    def specs(self, scale):
        if scale not in self.scales:
            raise SpecError(f"scale must be one of {', '.join(self.scales)}, got {scale!r}")
        return list(self.build(scale))


def _fail_stages(value):
    raise SpecError(f"stages: each scale's must be Stages(tuning, confirmation) or a mapping of the two, got {value!r}")


def grid(experiment, scale, rows, **common):
    """RunSpecs for ``rows`` (each a dict with at least name, optimizer, lr) sharing ``common``."""
    return [RunSpec(experiment=experiment, scale=scale, **{**common, **row}) for row in rows]
