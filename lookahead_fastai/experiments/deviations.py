"""Deviations as data: where an experiment differs from the original it reproduces, and why.

Every experiment declares a tuple of :class:`Deviation` (``Experiment.deviations``); reports and
notebooks render it as a table, so nothing differs from the original without a row saying so.

A deviation may name the spec ``settings`` it accounts for (the keys of
:func:`lookahead_fastai.experiments.sources.run_settings`, e.g. ``"hyper.nesterov"``), for the rows
whose settings match ``when``: ``experiments/sources.py`` checks with them that every setting of a
``full`` spec has a source or a deviation.
"""
from dataclasses import dataclass, field

__all__ = ["Deviation", "deviations_markdown", "CUDA_PRECISION", "precision_deviation", "seeds_deviation"]

# what the runner does on CUDA (runner.mixed_precision_mode), for the "numeric precision" rows
CUDA_PRECISION = ("mixed precision on CUDA: bf16 autocast where the GPU supports it, else fp16 with loss scaling "
                  "(fastai to_fp16)")


@dataclass(frozen=True)
class Deviation:
    what: str       # the aspect, e.g. "weight decay"
    original: str   # what the original did
    here: str       # what this experiment does (and at which scales)
    why: str        # the reason
    settings: tuple = ()                      # run_settings keys this deviation accounts for
    when: dict = field(default_factory=dict)  # ... in the rows whose settings have these values ({}: all)

    def __post_init__(self):
        for name in ("what", "original", "here", "why"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"Deviation.{name} must be a non-empty string")
        object.__setattr__(self, "settings", tuple(self.settings))

    def as_dict(self):
        return {"what": self.what, "original": self.original, "here": self.here, "why": self.why}


def precision_deviation(original):
    """The "numeric precision" row of an experiment whose original trained in ``original`` (e.g.
    ``"fp32"``): every CUDA run here is in mixed precision (:data:`CUDA_PRECISION`)."""
    return Deviation("numeric precision", original, CUDA_PRECISION, "the runner trains every CUDA run in mixed precision")


def seeds_deviation(original, default_seeds, why, per=""):
    """The "seeds" row of an experiment whose original ran ``original`` (e.g. ``"one run per row"``),
    the seeds here read from the experiment's own ``default_seeds`` (``per``: e.g. ``" per row"``)."""
    return Deviation("seeds", original, f"{default_seeds['cpu']} seeds{per} at scale cpu, "
                                        f"{default_seeds['full']} seeds at full", why)


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def deviations_markdown(deviations):
    """A markdown table of ``deviations`` (Deviation objects or dicts with the same keys)."""
    rows = [d.as_dict() if isinstance(d, Deviation) else dict(d) for d in deviations]
    if not rows:
        return "_No deviations declared: this experiment has no original to reproduce._\n"
    lines = ["| what | original | here | why |", "|---|---|---|---|"]
    lines += [f"| {_cell(r['what'])} | {_cell(r['original'])} | {_cell(r['here'])} | {_cell(r['why'])} |"
              for r in rows]
    return "\n".join(lines) + "\n"
