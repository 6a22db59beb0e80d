"""fastai's composable optimizer (stats + steppers, seed 004): an Adam without debiasing, to set
beside fastai's own Adam (which debiases) in the optimizers_from_scratch experiment."""
from functools import partial

from fastai.optimizer import Optimizer, average_grad, average_sqr_grad, l2_reg, step_stat, weight_decay

__all__ = ["adam_no_debias_step", "AdamNoDebias"]


def adam_no_debias_step(p, lr, grad_avg, sqr_avg, eps, **kwargs):
    """p <- p - lr * m / (sqrt(v) + eps), with the raw (biased) moving averages."""
    p.data.addcdiv_(grad_avg, sqr_avg.sqrt() + eps, value=-lr)
    return p


adam_no_debias_step._defaults = dict(eps=1e-5)


def AdamNoDebias(params, lr, mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.01, decouple_wd=True):
    """fastai's Adam recipe with the debiasing stepper swapped for ``adam_no_debias_step``: early
    steps are smaller by 1 - mom**t (the first moment starts at 0)."""
    cbs = [weight_decay] if decouple_wd else [l2_reg]
    cbs += [partial(average_grad, dampening=True), average_sqr_grad, step_stat, adam_no_debias_step]
    return Optimizer(params, cbs, lr=lr, mom=mom, sqr_mom=sqr_mom, eps=eps, wd=wd)
