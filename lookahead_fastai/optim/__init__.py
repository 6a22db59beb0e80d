"""Pure-PyTorch optimizers (no fastai import)."""
from .lookahead import Lookahead
from .nested import NestedLookahead

__all__ = ["Lookahead", "NestedLookahead"]
