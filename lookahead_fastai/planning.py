"""Cost before you start: what an experiment's grid at a scale asks for -- runs, epochs, and, where a
measurement exists, device-hours.

:func:`cost_plan` counts, per row, the seeds (the experiment's default or ``seeds``), the epochs of
one run (sessions summed) and their product; :func:`format_plan` prints it. Hours come only from
measurements: the ``projection`` section of ``benchmarks/results/*.json`` written by
``benchmarks/gpu/gpu_check.py`` (seconds per training and per validation image, per architecture,
dataset, image size and batch size, timed through a Learner built as the runner builds it, on
synthetic tensors; each entry names what it measured in a ``config`` dict of :data:`CONFIG_FIELDS`,
read as data). Smoke-mode files are not measurements and are ignored. A row whose
configuration was not measured has no hours, and the total says how many rows it covers.

Rows on the PIL data path (Imagenette, Imagewoof, CIFAR from its folder) decode and augment images
on the CPU, which those timings leave out. gpu_check's ``loader`` section measures that loader's
seconds per image on the same machine (its worker processes at the machine's core count) per
dataset, image size and augmentation; where both are measured, a row's time per image is the
slower of the two (training overlaps loading with the model's work, so the slower one sets the
pace), and the row is marked loader-bound when the loader is the slower. Without a loader
measurement, such a row's hours are lower bounds.

``lookahead-fastai plan EXP --scale full`` prints the plan.
"""
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .experiments import SCALES, SpecError, get_experiment, use_experiment
from .grid_rules import sweeps
from .registry.datasets import dataset_info, holdout_size
from .registry.user import is_import_path

__all__ = ["RowCost", "Plan", "Measurement", "LoaderMeasurement", "cost_plan", "format_plan",
           "load_measurements", "load_loader_measurements", "DEFAULT_RESULTS_DIR", "spec_sizes", "config_key",
           "loader_key", "entry_key", "on_pil_path", "CONFIG_FIELDS", "LOADER_FIELDS"]

DEFAULT_RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
# what one timing measures, as gpu_check writes it in each entry's "config" (a dict of these fields)
CONFIG_FIELDS = ("arch", "dataset", "size", "bs")      # the projection section: the model's time per image
LOADER_FIELDS = ("dataset", "size", "augment")         # the loader section: the PIL loader's time per image


def spec_sizes(spec):
    """``(n_train, n_valid)`` one epoch of ``spec`` sees: its own, at most the dataset's full sizes
    (``DatasetInfo.full_train`` / ``full_valid``), the full sizes where it takes the whole dataset
    (None); a user's own dataset: as declared. Three splits (``holdout``): the held-out validation split
    is validated every epoch and leaves the training split smaller (the test split, scored once, is
    not counted)."""
    if is_import_path(spec.dataset):
        return spec.n_train, spec.n_valid
    full_train, full_valid = dataset_info(spec.dataset).full_sizes

    def pick(n, full):
        if n is None:
            return full
        return min(n, full) if full is not None else n
    if spec.holdout is not None and full_train is not None:
        held = holdout_size(spec.holdout, full_train)
        return pick(spec.n_train, full_train - held), held
    return pick(spec.n_train, full_train), pick(spec.n_valid, full_valid)


def config_key(spec):
    """``(arch, dataset, image size, bs)`` of ``spec``: the configuration a model timing measures
    (:data:`CONFIG_FIELDS`)."""
    return (spec.arch, spec.dataset, spec.size or dataset_info(spec.dataset).image_size, spec.bs)


def loader_key(spec):
    """``(dataset, image size, augment)`` of ``spec``: what a PIL loader timing measures (:data:`LOADER_FIELDS`)."""
    return (spec.dataset, spec.size or dataset_info(spec.dataset).image_size, spec.augment)


def on_pil_path(spec):
    """Whether ``spec`` loads through the PIL path (a folder dataset, or ``data_path`` ``pil``)."""
    return not dataset_info(spec.dataset).small or spec.data_path == "pil"


def entry_key(entry, fields):
    """The key of a measured entry (gpu_check's JSON) from its ``config`` fields (:data:`CONFIG_FIELDS` or
    :data:`LOADER_FIELDS`); None when it has none of this form."""
    config = entry.get("config") if isinstance(entry, dict) else None
    if not isinstance(config, dict) or any(f not in config for f in fields):
        return None
    try:
        return tuple(int(config[f]) if f in ("size", "bs") else str(config[f]) for f in fields)
    except (TypeError, ValueError):  # a size or bs that is no number ("bs": null): an entry of no known form
        return None


@dataclass(frozen=True)
class Measurement:
    arch: str
    dataset: str
    size: int
    bs: int
    train_s_per_image: float
    valid_s_per_image: float
    device: str
    source: str      # the file it came from
    date: str = ""


@dataclass(frozen=True)
class LoaderMeasurement:
    """Seconds per image of the PIL data path's training and validation loaders (gpu_check's loader
    section), with ``workers`` worker processes."""
    dataset: str
    size: int
    augment: str
    train_s_per_image: float
    valid_s_per_image: float
    workers: int
    device: str
    source: str
    date: str = ""


@dataclass(frozen=True)
class RowCost:
    row: str
    runs: int                    # seeds
    epochs: int                  # of one run
    n_train: int | None
    n_valid: int | None
    seconds_per_epoch: float | None
    measurement: Measurement | None
    lower_bound: bool            # PIL decoding not in the measurement
    loader: LoaderMeasurement | None = None  # the PIL loader's measured time, when there is one
    loader_bound: bool = False   # the loader is slower than the model: it sets the pace
    stage: str | None = None     # with stages: "tuning" (a row on the tuning seeds) or "confirmation" (a family's
                                 # chosen row on the confirmation seeds)

    @property
    def total_epochs(self):
        return self.runs * self.epochs

    @property
    def hours(self):
        return None if self.seconds_per_epoch is None else self.seconds_per_epoch * self.total_epochs / 3600


@dataclass(frozen=True)
class Plan:
    experiment: str
    scale: str
    seeds: int
    rows: tuple = field(default_factory=tuple)
    stages: object = None  # the experiment's Stages at this scale: rows on the tuning seeds, then one confirmation
                           # row per family (its chosen lr) on the confirmation seeds

    @property
    def runs(self):
        return sum(r.runs for r in self.rows)

    @property
    def total_epochs(self):
        return sum(r.total_epochs for r in self.rows)

    @property
    def measured_rows(self):
        return [r for r in self.rows if r.hours is not None]

    @property
    def hours(self):
        """Device-hours of the measured rows (None when none is measured)."""
        measured = self.measured_rows
        return sum(r.hours for r in measured) if measured else None


def _sections(results_dir, section):
    """(file name, meta, the ``section``'s result) of every measured (not smoke) gpu_check file."""
    results_dir = Path(results_dir or DEFAULT_RESULTS_DIR)
    for path in sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []:
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict) or not isinstance(report.get("sections"), dict):
            continue
        meta = report.get("meta", {}) if isinstance(report.get("meta"), dict) else {}
        if meta.get("mode") == "smoke":  # tiny sizes on a CPU: no measurement
            continue
        result = (report["sections"].get(section, {}) or {}).get("result", {}) or {}
        yield path.name, meta, result


def _device(meta):
    return str(meta.get("device_name") or meta.get("device") or "?")


def load_measurements(results_dir=None):
    """Per-configuration timings from ``results_dir/*.json`` (gpu_check's projection section); a
    later file's measurement of the same configuration replaces an earlier one's."""
    found = {}
    for name, meta, projection in _sections(results_dir, "projection"):
        for entry in (projection.get("configs") or {}).values():
            key = entry_key(entry, CONFIG_FIELDS)
            if key is None or entry.get("status") != "ok":
                continue
            if entry.get("bs", key[3]) != key[3] or entry.get("size", key[2]) != key[2]:
                continue  # measured at a capped batch or image size: not this configuration
            found[key] = Measurement(*key, float(entry["train_s_per_image"]), float(entry["valid_s_per_image"]),
                                     _device(meta), name, str(meta.get("date", "")))
    return found


def load_loader_measurements(results_dir=None):
    """PIL loader timings from ``results_dir/*.json`` (gpu_check's loader section), keyed by
    (dataset, image size, augment); a later file's replaces an earlier one's."""
    found = {}
    for name, meta, loader in _sections(results_dir, "loader"):
        for entry in (loader.get("configs") or {}).values():
            key = entry_key(entry, LOADER_FIELDS)
            if key is None or entry.get("status") != "ok":
                continue
            if entry.get("size", key[1]) != key[1]:
                continue  # measured at a capped image size: not this configuration
            found[key] = LoaderMeasurement(*key, 1.0 / float(entry["train_images_per_s"]),
                                           1.0 / float(entry["valid_images_per_s"]), int(entry.get("workers", 0)),
                                           _device(meta), name, str(meta.get("date", "")))
    return found


def _row_cost(spec, runs, measurements, loaders=None):
    if is_import_path(spec.dataset):  # a user's own data: sizes as declared, no measured timing
        return RowCost(spec.name, runs, spec.total_epochs, spec.n_train, spec.n_valid, None, None, False)
    n_train, n_valid = spec_sizes(spec)
    m = measurements.get(config_key(spec))
    pil = on_pil_path(spec)
    loader = (loaders or {}).get(loader_key(spec)) if pil else None
    per_epoch, loader_bound = None, False
    if m is not None and n_train is not None and n_valid is not None:
        train_s, valid_s = m.train_s_per_image, m.valid_s_per_image
        if loader is not None:  # the slower of model and loader sets the pace
            loader_bound = loader.train_s_per_image > train_s
            train_s, valid_s = max(train_s, loader.train_s_per_image), max(valid_s, loader.valid_s_per_image)
        per_epoch = train_s * n_train + valid_s * n_valid
    measured = per_epoch is not None
    return RowCost(spec.name, runs, spec.total_epochs, n_train, n_valid, per_epoch, m if measured else None,
                   pil and loader is None and measured, loader if measured else None, loader_bound and measured)


def cost_plan(experiment, scale="full", seeds=None, results_dir=None):
    """The :class:`Plan` of ``experiment`` (a name or an :class:`Experiment`) at ``scale`` with
    ``seeds`` per row (default: the experiment's own for that scale)."""
    if scale not in SCALES:
        raise SpecError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    experiment = use_experiment(experiment)
    exp = get_experiment(experiment)
    stages = exp.stages.get(scale)
    if stages and seeds:
        raise SpecError(f"{exp.name} declares its seeds at scale {scale} (tuning and confirmation stages), "
                        "not --seeds")
    n_seeds = len(stages.tuning) if stages else seeds or exp.default_seeds.get(scale, 1)
    if n_seeds < 1:
        raise SpecError(f"seeds must be at least 1, got {n_seeds}")
    measurements, loaders = load_measurements(results_dir), load_loader_measurements(results_dir)
    specs = exp.specs(scale)
    rows = tuple(dataclasses.replace(_row_cost(spec, n_seeds, measurements, loaders), stage="tuning" if stages else None)
                 for spec in specs)
    if stages:  # one row per family (of the lr sweep; else every row) on the confirmation seeds, at the lr tuning
        # picks: priced as the family's first row (the lr does not change the cost of a run)
        by_name = {spec.name: spec for spec in specs}
        families = sweeps(exp.lr_sweep(scale)) if exp.lr_sweep else {}
        confirming = [(f"{label} · {data} · confirmation", by_name[names[0]])
                      for (data, label), names in families.items()] \
            or [(f"{spec.name} · confirmation", spec) for spec in specs]
        rows += tuple(dataclasses.replace(_row_cost(spec, len(stages.confirmation), measurements, loaders), row=name,
                                          stage="confirmation") for name, spec in confirming)
    return Plan(experiment, scale, n_seeds, rows, stages)


def _hours(value):
    return "—" if value is None else f"{value:.2f}"


def _count(n):
    return "?" if n is None else str(n)


def format_plan(plan):
    """The plan as text: one line per row (its training and validation images per epoch, epochs,
    runs, seconds per epoch and hours), then the totals."""
    width = max([len("row")] + [len(r.row) for r in plan.rows])
    grid = (f"{sum(r.stage == 'tuning' for r in plan.rows)} rows x {plan.seeds} tuning seeds, then "
            f"{sum(r.stage == 'confirmation' for r in plan.rows)} chosen rows x "
            f"{len(plan.stages.confirmation)} confirmation seeds (before any lr_extension point)"
            if plan.stages else f"{len(plan.rows)} rows x {plan.seeds} seeds")
    lines = [f"{plan.experiment} at scale {plan.scale}: {grid} = {plan.runs} runs, "
             f"{plan.total_epochs} epochs in all", "",
             f"{'row':<{width}}  {'train':>7}  {'valid':>6}  {'epochs/run':>10}  {'runs':>4}  {'epochs':>7}  "
             f"{'s/epoch':>8}  {'hours':>7}"]
    for r in plan.rows:
        mark = (" (lower bound: PIL decoding not timed)" if r.lower_bound
                else f" (loader-bound: PIL loader, {r.loader.workers} workers)" if r.loader_bound else "")
        spe = "—" if r.seconds_per_epoch is None else f"{r.seconds_per_epoch:.1f}"
        lines.append(f"{r.row:<{width}}  {_count(r.n_train):>7}  {_count(r.n_valid):>6}  {r.epochs:>10}  {r.runs:>4}  {r.total_epochs:>7}  {spe:>8}  "
                     f"{_hours(r.hours):>7}{mark}")
    lines.append(f"{'total':<{width}}  {'':>7}  {'':>6}  {'':>10}  {plan.runs:>4}  {plan.total_epochs:>7}  {'':>8}  {_hours(plan.hours):>7}")
    lines.append("")
    measured = plan.measured_rows
    if not measured:
        lines.append("hours: no measured seconds per epoch for these configurations in benchmarks/results/ "
                     "(run benchmarks/gpu/gpu_check.py on the device that will train them)")
    else:
        devices = sorted({f"{r.measurement.device} ({r.measurement.source}"
                          + (f", {r.measurement.date}" if r.measurement.date else "") + ")" for r in measured})
        lines.append(f"hours: device-hours of {len(measured)} of {len(plan.rows)} rows, from timings measured on "
                     f"{'; '.join(devices)}" + ("" if len(measured) == len(plan.rows)
                                                 else "; the other rows are not measured and not in the total"))
        if any(r.lower_bound for r in measured):
            lines.append("rows on folder datasets are lower bounds: image decoding on the CPU is not in the timing")
        if any(r.loader is not None for r in measured):
            lines.append("rows on the PIL path take the slower of the model's and the loader's measured time per "
                         "image" + (f"; {sum(r.loader_bound for r in measured)} are loader-bound"
                                    if any(r.loader_bound for r in measured) else "; none is loader-bound"))
    return "\n".join(lines)
