"""Cost before you start: what an experiment's grid at a scale asks for -- runs, epochs, and, where a
measurement exists, device-hours.

:func:`cost_plan` counts, per row, the seeds (the experiment's default or ``seeds``), the epochs of
one run (sessions summed) and their product; :func:`format_plan` prints it. Hours come only from
measurements: the ``projection`` section of ``benchmarks/results/*.json`` written by
``benchmarks/gpu/gpu_check.py`` (seconds per training and per validation image, per architecture,
dataset, image size and batch size, timed through a Learner built as the runner builds it, on
synthetic tensors). Smoke-mode files are not measurements and are ignored. A row whose
configuration was not measured has no hours, and the total says how many rows it covers. Folder
datasets (Imagenette, Imagewoof) decode images with PIL on the CPU, which those timings leave out:
their hours are lower bounds.

``lookahead-fastai plan EXP --scale full`` prints the plan.
"""
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .experiments import SCALES, SpecError, get_experiment, use_experiment

__all__ = ["RowCost", "Plan", "Measurement", "cost_plan", "format_plan", "load_measurements",
           "DEFAULT_RESULTS_DIR", "FULL_SIZES"]

DEFAULT_RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
# official (train, valid) sizes, for specs that take the whole dataset (n_train / n_valid None);
# digits: the package's fixed 80/20 split of scikit-learn's 1,797 images
FULL_SIZES = {"digits": (1438, 359), "mnist": (60000, 10000), "cifar10": (50000, 10000), "cifar100": (50000, 10000),
              "imagenette": (9469, 3925), "imagewoof": (9025, 3929), "imagenette_320": (9469, 3925),
              "imagewoof_320": (9025, 3929)}
_LABEL = re.compile(r"^(?P<arch>.+?) · (?P<dataset>.+?) · (?P<size>\d+)px · bs (?P<bs>\d+)$")


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
class RowCost:
    row: str
    runs: int                    # seeds
    epochs: int                  # of one run
    n_train: int | None
    n_valid: int | None
    seconds_per_epoch: float | None
    measurement: Measurement | None
    lower_bound: bool            # PIL decoding not in the measurement

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


def load_measurements(results_dir=None):
    """Per-configuration timings from ``results_dir/*.json`` (gpu_check's projection section); a
    later file's measurement of the same configuration replaces an earlier one's."""
    results_dir = Path(results_dir or DEFAULT_RESULTS_DIR)
    found = {}
    for path in sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []:
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        meta = report.get("meta", {}) if isinstance(report, dict) else {}
        if meta.get("mode") == "smoke":  # tiny sizes on a CPU: no measurement
            continue
        projection = (report.get("sections", {}).get("projection", {}) or {}).get("result", {}) or {}
        for label, entry in (projection.get("configs") or {}).items():
            m = _LABEL.match(label)
            if not m or not isinstance(entry, dict) or entry.get("status") != "ok":
                continue
            if entry.get("bs", int(m["bs"])) != int(m["bs"]) or entry.get("size", int(m["size"])) != int(m["size"]):
                continue  # measured at a capped batch or image size: not this configuration
            key = (m["arch"], m["dataset"], int(m["size"]), int(m["bs"]))
            found[key] = Measurement(*key, float(entry["train_s_per_image"]), float(entry["valid_s_per_image"]),
                                     str(meta.get("device_name") or meta.get("device") or "?"), path.name,
                                     str(meta.get("date", "")))
    return found


def _sizes(spec):
    full_train, full_valid = FULL_SIZES.get(spec.dataset, (None, None))

    def pick(n, full):
        if n is None:
            return full
        return min(n, full) if full is not None else n
    return pick(spec.n_train, full_train), pick(spec.n_valid, full_valid)


def _row_cost(spec, runs, measurements):
    from .registry.datasets import dataset_info
    from .registry.user import is_import_path
    if is_import_path(spec.dataset):  # a user's own data: sizes as declared, no measured timing
        return RowCost(spec.name, runs, spec.total_epochs, spec.n_train, spec.n_valid, None, None, False)
    info = dataset_info(spec.dataset)
    n_train, n_valid = _sizes(spec)
    key = (spec.arch, spec.dataset, spec.size or info.image_size, spec.bs)
    m = measurements.get(key)
    per_epoch = None
    if m is not None and n_train is not None and n_valid is not None:
        per_epoch = m.train_s_per_image * n_train + m.valid_s_per_image * n_valid
    lower = not info.small or spec.data_path == "pil"
    return RowCost(spec.name, runs, spec.total_epochs, n_train, n_valid, per_epoch, m if per_epoch else None,
                   lower and per_epoch is not None)


def cost_plan(experiment, scale="full", seeds=None, results_dir=None):
    """The :class:`Plan` of ``experiment`` (a name or an :class:`Experiment`) at ``scale`` with
    ``seeds`` per row (default: the experiment's own for that scale)."""
    if scale not in SCALES:
        raise SpecError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    experiment = use_experiment(experiment)
    exp = get_experiment(experiment)
    n_seeds = seeds or exp.default_seeds.get(scale, 1)
    if n_seeds < 1:
        raise SpecError(f"seeds must be at least 1, got {n_seeds}")
    measurements = load_measurements(results_dir)
    rows = tuple(_row_cost(spec, n_seeds, measurements) for spec in exp.specs(scale))
    return Plan(experiment, scale, n_seeds, rows)


def _hours(value):
    return "—" if value is None else f"{value:.2f}"


def format_plan(plan):
    """The plan as text: one line per row, then the totals."""
    width = max([len("row")] + [len(r.row) for r in plan.rows])
    lines = [f"{plan.experiment} at scale {plan.scale}: {len(plan.rows)} rows x {plan.seeds} seeds = {plan.runs} runs, "
             f"{plan.total_epochs} epochs in all", "",
             f"{'row':<{width}}  {'epochs/run':>10}  {'runs':>4}  {'epochs':>7}  {'s/epoch':>8}  {'hours':>7}"]
    for r in plan.rows:
        mark = " (lower bound: PIL decoding not timed)" if r.lower_bound else ""
        spe = "—" if r.seconds_per_epoch is None else f"{r.seconds_per_epoch:.1f}"
        lines.append(f"{r.row:<{width}}  {r.epochs:>10}  {r.runs:>4}  {r.total_epochs:>7}  {spe:>8}  "
                     f"{_hours(r.hours):>7}{mark}")
    lines.append(f"{'total':<{width}}  {'':>10}  {plan.runs:>4}  {plan.total_epochs:>7}  {'':>8}  {_hours(plan.hours):>7}")
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
    return "\n".join(lines)
