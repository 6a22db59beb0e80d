"""lookahead-fastai: a correct, schedule-aware Lookahead for PyTorch and fastai, and an experiment
suite that compares optimizers over seeds."""
from .optim import Lookahead, NestedLookahead
from .opt_funcs import lookahead_opt_func, nested_lookahead_opt_func, torch_opt_func

__version__ = "0.1.0"
__all__ = ["Lookahead", "NestedLookahead", "lookahead_opt_func", "nested_lookahead_opt_func", "torch_opt_func"]
