"""Callbacks that act on a Lookahead under fastai's OptimWrapper: optimizer-state reset and
evaluation on the slow weights."""
from contextlib import ExitStack

from fastai.callback.core import Callback

from ..optim import Lookahead
from ..optim._validate import check_positive_int

__all__ = ["lookahead_of", "StateResetCallback", "SlowWeightEvalCallback"]


def lookahead_of(learn):
    """The Lookahead inside ``learn.opt`` (an OptimWrapper), or None."""
    opt = getattr(learn, "opt", None)
    inner = getattr(opt, "opt", None)
    return inner if isinstance(inner, Lookahead) else None


class StateResetCallback(Callback):
    """Reset the inner optimizer's state after every training epoch, through fastai's
    ``clear_state`` (a fresh state, as a newly built optimizer would have; Lookahead's slow weights
    are kept). A reset at every Lookahead sync is not this callback's: it is the Lookahead's own
    ``pullback="reset"`` (moments zeroed and step counters set to 0)."""
    order = 55  # after Recorder (50) has read this epoch's hyper-parameters

    def after_train(self):
        self.learn.opt.clear_state()


class SlowWeightEvalCallback(Callback):
    """Validate on the Lookahead slow weights, then put the fast weights back for training (what
    the paper's authors recommend). A no-op for other optimizers.

    BatchNorm running statistics: with ``bn_batches=None`` (the default) they are the ones gathered
    by the fast weights during training. With ``bn_batches=N`` (an int >= 1) they are recomputed for
    the slow weights before each validation, over the first N batches of ``learn.dls.train`` (a plain
    average, BatchNorm layers in train mode, the rest in eval mode, no gradients), and the fast
    weights' statistics (``running_mean``, ``running_var``, ``num_batches_tracked``) come back bit
    for bit afterwards. The pass saves and restores every random generator it could draw from
    (torch CPU/CUDA, Python, NumPy, the DataLoader's own ``rng``), so the shuffles, augmentations and
    dropout masks of the training that follows, and so its weights, are the same as without it.
    It costs N forward passes per validation.
    """
    order = 0

    def __init__(self, bn_batches=None):
        if bn_batches is not None:
            check_positive_int("bn_batches", bn_batches)
        self.bn_batches = bn_batches

    def before_validate(self):
        self._stack = ExitStack()
        la = lookahead_of(self.learn)
        if la is None:
            return
        if self.bn_batches is None:
            self._stack.enter_context(la.use_slow_weights())
        else:
            self._stack.enter_context(la.use_slow_weights(model=self.learn.model, bn_loader=self.learn.dls.train,
                                                          bn_batches=self.bn_batches))

    def after_validate(self):
        self._stack.close()

    def after_fit(self):
        if hasattr(self, "_stack"):
            self._stack.close()
