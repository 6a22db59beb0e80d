"""Sources as data: where each setting of a ``full`` protocol comes from, and where each reference
number is printed.

A :class:`Source` names the settings it sets (keys of :func:`run_settings`, with the values the
``full`` specs have), what the source says, and where: a paper section or table, or a public
repository file, lines and commit. ``when`` restricts it to the rows whose settings have those
values (e.g. ``{"optimizer": "sgd"}``). A :class:`ReferenceNumber` is a published number, the row
of ours it is put beside (``""``: none) and where it is printed.

:func:`run_settings` derives a run's settings from its spec (every ``RunSpec`` field, the
optimizer's effective hyper-parameters and the schedule's, through the registry) plus the few that
the suite decides outside the spec (precision, normalisation, what weight decay applies to,
evaluation, runs per row). :func:`unaccounted` lists the (row, setting) pairs that neither a source
with the same value nor a deviation accounts for: a new setting, or a changed value, shows up there.
"""
import inspect
import json
import re
from dataclasses import dataclass, field

from ..registry.datasets import DATASETS
from .deviations import CUDA_PRECISION
from ..registry.optimizers import FASTAI_RANGER, INNER_OPTIMIZERS, optimizer_parts, parse_optimizer_name
from ..registry.schedules import SCHEDULES

__all__ = ["Source", "ReferenceNumber", "run_settings", "unaccounted", "unused_sources", "unsourced_numbers",
           "sources_markdown", "reference_markdown", "PRECISION"]

BOOKKEEPING = ("experiment", "name", "scale", "note")  # name a run; decide nothing about its training
# the runner's rule (runner.mixed_precision_mode): every CUDA run is trained in mixed precision
PRECISION = CUDA_PRECISION + "; fp32 on CPU"


def _checked_text(owner, name, value):
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{owner}.{name} must be a non-empty string")


@dataclass(frozen=True)
class Source:
    what: str                                 # the aspect, e.g. "SGD momentum and Nesterov"
    settings: dict                            # run_settings key -> the value the full specs have
    says: str                                 # what the source says, in its own terms
    where: str                                # paper section / table, or repository file:lines @ commit
    when: dict = field(default_factory=dict)  # only the rows whose settings have these values ({}: all)

    def __post_init__(self):
        for name in ("what", "says", "where"):
            _checked_text("Source", name, getattr(self, name))
        if not isinstance(self.settings, dict) or not self.settings:
            raise ValueError("Source.settings must name at least one setting")

    def accounts_for(self, key, settings):
        return (key in self.settings and _same(self.settings[key], settings.get(key))
                and _matches(self.when, settings))


@dataclass(frozen=True)
class ReferenceNumber:
    label: str    # what the number is, e.g. "CIFAR-10 · SGD"
    value: str    # as printed, e.g. "95.23 ± .19" or "84.71%"
    beside: str   # the full-scale row of ours it stands beside ("": none)
    where: str    # the table cell, or the file, commit and line it is printed on

    def __post_init__(self):
        for name in ("label", "value", "where"):
            _checked_text("ReferenceNumber", name, getattr(self, name))


def _plain(value):
    return json.loads(json.dumps(value))  # tuples -> lists, so specs and sources compare as data


def _same(a, b):
    return _plain(a) == _plain(b)


def _matches(when, settings):
    return all(key in settings and _same(value, settings[key]) for key, value in when.items())


def _schedule_params(spec):
    """The schedule's effective parameters: its function's defaults under the declared ones."""
    function = SCHEDULES[spec.schedule].lr_function
    defaults = {}
    if function is not None:
        defaults = {name: p.default for name, p in inspect.signature(function).parameters.items()
                    if name != "lr" and p.default is not inspect.Parameter.empty}
    return {**defaults, **spec.schedule_params}


def _weight_decay_applies_to(spec):
    _, inner = parse_optimizer_name(spec.optimizer)
    inner = "radam" if inner in ("ranger", FASTAI_RANGER) else inner
    if isinstance(INNER_OPTIMIZERS[inner].cls, type):  # a torch optimizer: fastai's do_wd never reaches it
        return "every parameter (BatchNorm and bias too)"
    return "all but BatchNorm and bias (fastai Learner, wd_bn_bias=False)"


def _normalisation(spec):
    info = DATASETS[spec.dataset]
    if info.small and spec.data_path != "pil":  # the tensor path (data.py): statistics of the training images
        return "per-channel mean and std of the training images"
    mean, std = info.stats
    return f"per-channel mean {list(mean)}, std {list(std)}"


def run_settings(spec, runs=None):
    """Every setting that decides the run of ``spec``: ``{key: value}``. Keys are the RunSpec fields
    (but its labels), ``hyper.<name>`` for each effective hyper-parameter of the optimizer (declared
    or the constructor's default), ``schedule_params.<name>`` likewise, and the settings the suite
    decides outside the spec: precision, normalisation, weight decay's reach, evaluation, runs."""
    settings = {k: v for k, v in spec.to_dict().items() if k not in (*BOOKKEEPING, "hyper", "schedule_params")}
    parts = optimizer_parts(spec.optimizer, spec.hyper)
    settings.update({f"hyper.{k}": v for k, v in {**parts.inner_hyper, **parts.wrapper_hyper}.items()})
    settings.update({f"schedule_params.{k}": v for k, v in _schedule_params(spec).items()})
    settings["weight decay applies to"] = _weight_decay_applies_to(spec)
    settings["normalisation"] = _normalisation(spec)
    settings["precision"] = PRECISION
    settings["evaluation"] = f"accuracy after the last epoch, on the '{DATASETS[spec.dataset].valid_folder}' split"
    settings["runs"] = runs
    return _plain(settings)


def _settings_by_row(experiment, scale):
    return [(spec, run_settings(spec, experiment.default_seeds.get(scale))) for spec in experiment.specs(scale)]


def unaccounted(experiment, scale="full"):
    """(row, setting, value) for each setting of a ``scale`` spec that no source (with that value)
    and no deviation of ``experiment`` accounts for."""
    missing = []
    for spec, settings in _settings_by_row(experiment, scale):
        for key, value in settings.items():
            if any(s.accounts_for(key, settings) for s in experiment.sources):
                continue
            if any(key in d.settings and _matches(d.when, settings) for d in experiment.deviations):
                continue
            missing.append((spec.name, key, value))
    return missing


def unused_sources(experiment, scale="full"):
    """Sources that set nothing of any ``scale`` spec (a value that no longer matches, a key that
    is not a setting): stale rows a reader would take for the protocol."""
    rows = _settings_by_row(experiment, scale)
    return [s for s in experiment.sources
            if not all(any(s.accounts_for(key, settings) for _, settings in rows) for key in s.settings)]


_DECIMAL = re.compile(r"\d*\.\d+")


def unsourced_numbers(experiment):
    """Decimal numbers in ``experiment.reference`` that no declared ReferenceNumber prints (numbers of
    its labels and citations, e.g. an arXiv id, are not results)."""
    allowed = {token for n in experiment.reference_numbers for text in (n.value, n.label, n.where)
               for token in _DECIMAL.findall(text)}
    return [token for token in _DECIMAL.findall(experiment.reference) if token not in allowed]


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def _value(value):
    return json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)


def _rows_text(source, rows):
    """Which rows a source sets: "all", its ``when``, or the optimizers of the rows it accounts for."""
    matched = [settings for settings in rows if any(source.accounts_for(key, settings) for key in source.settings)]
    if len(matched) == len(rows):
        return "all"
    if source.when:
        return ", ".join(f"`{k}={_value(v)}`" for k, v in source.when.items())
    return "`optimizer` " + ", ".join(dict.fromkeys(f"`{s['optimizer']}`" for s in matched))


def sources_markdown(experiment, scale="full"):
    """A markdown table of ``experiment.sources``: each setting of ours at ``scale``, the rows it is
    set for, what the source says, and where."""
    rows = [settings for _, settings in _settings_by_row(experiment, scale)]
    lines = ["| what | ours (`full` spec) | rows | the source says | where |", "|---|---|---|---|---|"]
    for s in experiment.sources:
        ours = ", ".join(f"`{k}={_value(v)}`" for k, v in s.settings.items())
        lines.append(f"| {_cell(s.what)} | {_cell(ours)} | {_cell(_rows_text(s, rows))} | {_cell(s.says)} | "
                     f"{_cell(s.where)} |")
    return "\n".join(lines) + "\n"


def reference_markdown(numbers):
    """A markdown table of published numbers, the row each stands beside, and where each is printed."""
    lines = ["| published number | value | beside our row (`full`) | where it is printed |", "|---|---|---|---|"]
    lines += [f"| {_cell(n.label)} | {_cell(n.value)} | {_cell(n.beside or '— (quoted only)')} | {_cell(n.where)} |"
              for n in numbers]
    return "\n".join(lines) + "\n"
