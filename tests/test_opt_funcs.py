"""fastai glue: the opt_funcs under a real Learner, schedules, freeze/unfreeze, save/load."""
import warnings

import pytest
import torch
import fastai.callback.schedule  # noqa: F401  (patches Learner.fit_one_cycle)
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from fastai.optimizer import SGD as FastaiSGD
from fastai.optimizer import Adam as FastaiAdam
from fastai.optimizer import Lamb as FastaiLamb
from fastai.optimizer import OptimWrapper
from fastai.optimizer import RAdam as FastaiRAdam

from lookahead_fastai import Lookahead, NestedLookahead, lookahead_opt_func, nested_lookahead_opt_func
from lookahead_fastai.opt_funcs import FastaiOptimizerAdapter


class XY(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, generator=g)
        self.y = (self.x[:, 0] > 0).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def make_learner(opt_func, seed=0):
    torch.manual_seed(seed)
    dls = DataLoaders(DataLoader(XY(96, 1), bs=16, shuffle=True), DataLoader(XY(32, 2), bs=16))
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))

    def two_groups(m):
        return [list(m[0].parameters()), list(m[2].parameters())]

    return Learner(dls, model, loss_func=torch.nn.CrossEntropyLoss(), opt_func=opt_func, splitter=two_groups)


class InnerHypers(Callback):
    """Reads what the INNER torch-level optimizer really uses after every batch."""
    order = 100

    def before_fit(self):
        self.lrs, self.momenta = [], []

    def after_batch(self):
        if not self.training:
            return
        inner = self.learn.opt.opt.optimizer
        group = inner.param_groups[-1]
        self.lrs.append(group["lr"])
        if "betas" in group:
            self.momenta.append(group["betas"][0])
        else:
            self.momenta.append(group.get("momentum", group.get("mom")))


TORCH_INNERS = [
    (torch.optim.SGD, dict(momentum=0.9)),
    (torch.optim.Adam, {}),
    (torch.optim.AdamW, dict(weight_decay=0.01)),
    (torch.optim.RMSprop, dict(momentum=0.9)),
]
FASTAI_INNERS = [(FastaiSGD, dict(mom=0.9)), (FastaiAdam, {}), (FastaiRAdam, {}), (FastaiLamb, {})]


@pytest.mark.parametrize("inner,kwargs", TORCH_INNERS + FASTAI_INNERS,
                         ids=lambda v: getattr(v, "__name__", "") + getattr(v, "__module__", "")[:6])
@pytest.mark.parametrize("factory", [lookahead_opt_func, nested_lookahead_opt_func])
def test_fit_one_cycle_drives_the_inner_lr_and_momentum(factory, inner, kwargs):
    learn = make_learner(factory(inner, k=3, alpha=0.5, pullback="pullback", **kwargs))
    probe = InnerHypers()
    learn.fit_one_cycle(2, 0.05, cbs=probe)
    assert isinstance(learn.opt, OptimWrapper)
    assert isinstance(learn.opt.opt, NestedLookahead if factory is nested_lookahead_opt_func else Lookahead)
    lrs = probe.lrs
    assert len(lrs) == 12
    assert max(lrs) == pytest.approx(0.05, rel=0.1) and lrs[0] < 0.01 and lrs[-1] < max(lrs) / 10
    assert len(set(round(m, 6) for m in probe.momenta)) > 3  # momentum / beta1 is scheduled too
    hypers = learn.opt.hypers[0]
    assert hypers["la_k"] == 3 and hypers["la_alpha"] == 0.5  # visible to Recorder / W&B
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())


def test_fastai_own_lookahead_leaves_lr_stuck_and_ours_does_not():
    """The REFERENCE section 2 measurement, kept as a regression guard of why this package exists."""
    from fastai.optimizer import Lookahead as FastaiLookahead

    def fastai_style(params, **kw):
        return FastaiLookahead(OptimWrapper(params, opt=torch.optim.SGD, **kw))

    stuck, ours = InnerHypers(), InnerHypers()
    learn = make_learner(fastai_style)
    stuck.after_batch = lambda: stuck.lrs.append(learn.opt.opt.opt.param_groups[0]["lr"]) if learn.training else None
    learn.fit_one_cycle(1, 0.1, cbs=stuck)
    make_learner(lookahead_opt_func(torch.optim.SGD, momentum=0.9)).fit_one_cycle(1, 0.1, cbs=ours)
    assert len(set(stuck.lrs)) == 1  # fastai's set_hyper writes into a dict rebuilt on each read
    assert len(set(ours.lrs)) == len(ours.lrs)


def test_discriminative_lr_reaches_each_group():
    learn = make_learner(lookahead_opt_func(torch.optim.SGD, momentum=0.9))
    learn.fit(1, slice(1e-3, 1e-1))
    inner = learn.opt.opt.optimizer
    assert [g["lr"] for g in inner.param_groups] == pytest.approx([1e-3, 1e-1])


@pytest.mark.parametrize("inner,kwargs", [(torch.optim.SGD, dict(momentum=0.9)), (FastaiAdam, {})],
                         ids=["torch_sgd", "fastai_adam"])
def test_freeze_unfreeze_keeps_training_and_slow_weights(inner, kwargs):
    learn = make_learner(lookahead_opt_func(inner, k=4, **kwargs))
    learn.fit(1, 0.01)  # 6 batches: 1 sync, 2 steps into the next cycle
    la = learn.opt.opt
    slow = [la.slow_weights(p).clone() for p in learn.model.parameters()]
    learn.freeze()  # calls OptimWrapper.clear_state()
    assert all(set(s) <= {"do_wd", "force_train"} for s in la.state.values())  # fastai keeps only these
    for p, s in zip(learn.model.parameters(), slow):
        assert torch.equal(la.slow_weights(p), s)
    frozen = [p.detach().clone() for p in learn.model[0].parameters()]
    learn.fit(1, 0.01)
    # the frozen group has no gradients, so only the syncs move it (towards its slow weights)
    assert not learn.model[0].weight.requires_grad
    learn.unfreeze()
    learn.fit(1, 0.01)
    assert learn.model[0].weight.requires_grad
    assert not torch.equal(learn.model[0].weight.detach(), frozen[0])


@pytest.mark.parametrize("inner,kwargs", [(torch.optim.AdamW, {}), (FastaiAdam, {})], ids=["torch_adamw", "fastai_adam"])
def test_learner_save_load_with_opt_restores_slow_weights_exactly(tmp_path, inner, kwargs):
    opt_func = nested_lookahead_opt_func(inner, k=4, s=2, pullback="pullback", **kwargs)
    learn = make_learner(opt_func)
    learn.path = tmp_path
    learn.fit(1, 0.01)
    la = learn.opt.opt
    learn.save("ckpt", with_opt=True)
    slow = [la.slow_weights(p).clone() for p in learn.model.parameters()]
    outer = [la.outer_slow_weights(p).clone() for p in learn.model.parameters()]
    counters = [dict(c) for c in la._group_counters]

    other = make_learner(opt_func, seed=1)
    other.path = tmp_path
    other.create_opt()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        other.load("ckpt", with_opt=True)
    # fastai only *warns* when the optimizer state fails to load
    assert not [w for w in caught if "optimizer state" in str(w.message)]
    la2 = other.opt.opt
    for p, s, o in zip(other.model.parameters(), slow, outer):
        assert torch.equal(la2.slow_weights(p), s)
        assert torch.equal(la2.outer_slow_weights(p), o)
    assert la2._group_counters == counters


def test_fastai_adapter_is_torch_optimizer_with_real_groups():
    model = torch.nn.Linear(3, 2)
    fastai_opt = FastaiAdam(list(model.parameters()), lr=0.01)
    adapter = FastaiOptimizerAdapter(fastai_opt)
    assert isinstance(adapter, torch.optim.Optimizer)
    adapter.param_groups[0]["lr"] = 0.5
    assert fastai_opt.hypers[0]["lr"] == 0.5  # the same dict
    assert adapter.state is fastai_opt.state
    with pytest.raises(TypeError, match="fastai_opt must be a fastai.optimizer.Optimizer"):
        FastaiOptimizerAdapter(torch.optim.SGD(model.parameters(), lr=0.1))


@pytest.mark.parametrize("kwargs,error", [(dict(k=0), ValueError), (dict(alpha=2.0), ValueError),
                                          (dict(pullback="x"), ValueError)])
def test_opt_func_factories_validate_eagerly(kwargs, error):
    with pytest.raises(error):
        lookahead_opt_func(torch.optim.SGD, **kwargs)
    with pytest.raises(error):
        nested_lookahead_opt_func(torch.optim.SGD, **kwargs)
    with pytest.raises(ValueError, match="s must be"):
        nested_lookahead_opt_func(torch.optim.SGD, s=-1)
    with pytest.raises(TypeError, match="inner must be"):
        lookahead_opt_func("sgd")
