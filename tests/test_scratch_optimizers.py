"""The optimizers the tour and the from-scratch experiment build by hand."""
import torch
from fastai.optimizer import SGD as FastaiSGD

from lookahead_fastai.fastai_optimizers import AdamNoDebias
from lookahead_fastai.optim.scratch import ScratchSGD
from lookahead_fastai.opt_funcs import FastaiOptimizerAdapter


def _trajectory(make_opt, steps=15, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    opt = make_opt(model.parameters())
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(steps):
        x = torch.randn(8, 5, generator=g, dtype=torch.float64)
        y = torch.randint(0, 2, (8,), generator=g)
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        out.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    return torch.stack(out)


def test_hand_written_sgd_matches_torch_sgd():
    for kw in (dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, weight_decay=1e-2)):
        ours = _trajectory(lambda ps: ScratchSGD(ps, **kw))
        torch_sgd = _trajectory(lambda ps: torch.optim.SGD(ps, **kw))
        torch.testing.assert_close(ours, torch_sgd, rtol=0, atol=1e-14)


def test_weight_decay_equals_l2_without_momentum_and_differs_with_it():
    def fastai(**kw):
        return lambda ps: FastaiOptimizerAdapter(FastaiSGD(list(ps), lr=0.1, wd=0.05, **kw))
    # plain SGD: p - lr*wd*p - lr*g either way
    torch.testing.assert_close(_trajectory(fastai(decouple_wd=True)), _trajectory(fastai(decouple_wd=False)))
    # with momentum the L2 term goes through the moving average, the decoupled one does not
    assert not torch.allclose(_trajectory(fastai(mom=0.9, decouple_wd=True)),
                              _trajectory(fastai(mom=0.9, decouple_wd=False)))


def test_adam_without_debiasing_takes_the_raw_moments():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    p.grad = torch.tensor([0.5, 0.25], dtype=torch.float64)
    opt = AdamNoDebias([p], lr=0.1, mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.0)
    opt.step()
    m = 0.1 * p.grad  # dampened first moment after one step
    v = 0.01 * p.grad ** 2
    expected = torch.tensor([1.0, -2.0], dtype=torch.float64) - 0.1 * m / (v.sqrt() + 1e-5)
    torch.testing.assert_close(p.detach(), expected)
