"""lookahead-fastai: a correct, schedule-aware Lookahead for PyTorch and fastai, and an experiment
suite that compares optimizers over seeds."""
import warnings

# fastai 2.8.12 calls torch.jit.script at import (fastai/layers.py), which torch 2.14 deprecates;
# the notice is not actionable for our users and would break the CLI's one-line errors.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

from .optim import Lookahead, NestedLookahead  # noqa: E402
from .opt_funcs import lookahead_opt_func, nested_lookahead_opt_func, torch_opt_func  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Lookahead", "NestedLookahead", "lookahead_opt_func", "nested_lookahead_opt_func", "torch_opt_func"]
