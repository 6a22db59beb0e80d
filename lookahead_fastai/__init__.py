"""lookahead-fastai: a correct, schedule-aware Lookahead for PyTorch and fastai, and an experiment
suite that compares optimizers over seeds.

The names below are imported on first use, so ``import lookahead_fastai.cli`` (the console script)
starts without torch or fastai: ``--help`` is quick, and Ctrl-C while they load is the CLI's to answer.
"""
import warnings
from importlib import import_module

# fastai 2.8.12 calls torch.jit.script at import (fastai/layers.py), which torch 2.14 deprecates;
# the notice is not actionable for our users and would break the CLI's one-line errors.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

__version__ = "0.1.0"
_EXPORTS = {"Lookahead": ".optim", "NestedLookahead": ".optim", "lookahead_opt_func": ".opt_funcs",
            "nested_lookahead_opt_func": ".opt_funcs", "torch_opt_func": ".opt_funcs",
            "your_experiment": ".experiments.yours", "run_experiment": ".sweep", "write_report": ".results.report"}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
