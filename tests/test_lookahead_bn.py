"""Slow-weight evaluation with BatchNorm statistics recomputed for the slow weights (issue 10):
``Lookahead.use_slow_weights(model=, bn_loader=, bn_batches=)`` and
``SlowWeightEvalCallback(bn_batches=N)``. The fast weights' statistics come back bit for bit, and
the training after the pass is the one without it."""
import copy
import random

import numpy as np
import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader as FastaiDataLoader
from fastai.learner import Learner

from lookahead_fastai import Lookahead
from lookahead_fastai.callbacks.lookahead import SlowWeightEvalCallback
from lookahead_fastai.optim.batchnorm import preserved_rng


def bn_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                               torch.nn.Dropout(0.3), torch.nn.Linear(8, 3)).double()


class NoisyXY(torch.utils.data.Dataset):
    """Items drawn with noise from torch, Python and NumPy generators, as augmentations do."""

    def __init__(self, n, seed, dtype=torch.float64, noisy=True):
        self.noisy = noisy
        g = torch.Generator().manual_seed(seed)
        self.x = (torch.randn(n, 6, generator=g, dtype=torch.float64) * 2 + 1).to(dtype)
        self.y = (self.x[:, 0] > 1).long() + (self.x[:, 1] > 1).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if not self.noisy:
            return self.x[i], self.y[i]
        noise = 0.01 * (torch.randn(6, dtype=self.x.dtype) + random.gauss(0, 1) + float(np.random.randn()))
        return self.x[i] + noise, self.y[i]


def fixed_batches(n=3, seed=5):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 6, generator=g, dtype=torch.float64) * 3 - 1, torch.randint(0, 3, (16,), generator=g))
            for _ in range(n)]


def bn_buffers(model):
    return {name: b.clone() for name, b in model.named_buffers()}


def train(model, opt, loader):
    model.train()
    for x, y in loader:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def trained(steps=7):
    """A BN model trained mid-cycle (k=5, 7 steps): slow and fast weights differ."""
    model = bn_model()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), k=5, alpha=0.5)
    train(model, opt, fixed_batches(steps, seed=1))
    return model, opt


def test_slow_weights_get_their_own_bn_statistics_and_the_fast_ones_come_back():
    model, opt = trained()
    model.eval()
    fast_stats = bn_buffers(model)
    fast_weights = [p.detach().clone() for p in model.parameters()]
    bn = model[1]
    momentum = bn.momentum
    data = fixed_batches(3)
    x_eval = fixed_batches(1, seed=9)[0][0]
    with opt.use_slow_weights():
        out_fast_stats = model(x_eval)

    with opt.use_slow_weights(model=model, bn_loader=data, bn_batches=3):
        # the statistics of the slow weights' pre-BN activations, averaged over the 3 batches
        w, b = opt.slow_weights(model[0].weight), opt.slow_weights(model[0].bias)
        acts = [x @ w.T + b for x, _ in data]
        torch.testing.assert_close(bn.running_mean, torch.stack([a.mean(0) for a in acts]).mean(0), rtol=0, atol=1e-12)
        torch.testing.assert_close(bn.running_var, torch.stack([a.var(0) for a in acts]).mean(0), rtol=0, atol=1e-12)
        assert bn.num_batches_tracked.item() == 3
        # what torch.optim.swa_utils.update_bn gives for the slow weights
        ref = copy.deepcopy(model)
        torch.optim.swa_utils.update_bn([x for x, _ in data], ref)
        torch.testing.assert_close(bn_buffers(model), bn_buffers(ref), rtol=0, atol=1e-12)
        assert not torch.allclose(bn.running_mean, fast_stats["1.running_mean"])
        assert not torch.allclose(bn.running_var, fast_stats["1.running_var"])
        assert not model.training and not bn.training and bn.momentum == momentum  # modes as before the pass
        out_slow_stats = model(x_eval)
    assert not torch.allclose(out_slow_stats, out_fast_stats)

    after = bn_buffers(model)
    for name, value in fast_stats.items():
        assert torch.equal(after[name], value), name
    assert bn.momentum == momentum and not model.training
    for p, f in zip(model.parameters(), fast_weights):
        assert torch.equal(p, f)


def test_bn_batches_limits_the_pass_and_none_uses_the_whole_loader():
    model, opt = trained()
    data = fixed_batches(3)
    with opt.use_slow_weights(model=model, bn_loader=data, bn_batches=2):
        two = bn_buffers(model)
    with opt.use_slow_weights(model=model, bn_loader=data[:2]):
        whole_of_two = bn_buffers(model)
    with opt.use_slow_weights(model=model, bn_loader=data):
        assert model[1].num_batches_tracked.item() == 3
    assert two["1.num_batches_tracked"].item() == 2
    for name in two:
        assert torch.equal(two[name], whole_of_two[name]), name


def test_stats_and_weights_come_back_when_the_block_raises_or_the_loader_is_empty():
    model, opt = trained()
    fast_stats = bn_buffers(model)
    fast_weights = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="evaluation failed"):
        with opt.use_slow_weights(model=model, bn_loader=fixed_batches(2)):
            raise RuntimeError("evaluation failed")
    with pytest.raises(ValueError, match="the loader gave no batch"):
        with opt.use_slow_weights(model=model, bn_loader=[]):
            pass
    for name, value in bn_buffers(model).items():
        assert torch.equal(value, fast_stats[name]), name
    for p, f in zip(model.parameters(), fast_weights):
        assert torch.equal(p, f)


def test_arguments_are_checked_and_a_model_without_bn_skips_the_pass():
    model, opt = trained()
    with pytest.raises(ValueError, match="needs both model= and bn_loader="):
        with opt.use_slow_weights(bn_loader=fixed_batches(1)):
            pass
    with pytest.raises(ValueError, match="needs both model= and bn_loader="):
        with opt.use_slow_weights(model=model):
            pass
    with pytest.raises(ValueError, match="bn_batches must be a positive int"):
        with opt.use_slow_weights(model=model, bn_loader=fixed_batches(1), bn_batches=0):
            pass
    with pytest.raises(ValueError, match="bn_batches must be a positive int"):
        SlowWeightEvalCallback(bn_batches=0)

    class Untouchable:
        def __iter__(self):
            raise AssertionError("a model without BatchNorm must not read the loader")

    plain = torch.nn.Sequential(torch.nn.Linear(6, 3)).double()
    plain_opt = Lookahead(torch.optim.SGD(plain.parameters(), lr=0.1), k=5)
    with plain_opt.use_slow_weights(model=plain, bn_loader=Untouchable()):
        pass


@pytest.mark.parametrize("with_generator", [False, True], ids=["global_rng", "loader_generator"])
def test_training_after_the_bn_pass_is_the_training_without_it(with_generator):
    def run(bn_pass):
        torch.manual_seed(0)
        random.seed(0)
        np.random.seed(0)
        model = bn_model()
        opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), k=3, alpha=0.5)
        generator = torch.Generator().manual_seed(3) if with_generator else None
        loader = torch.utils.data.DataLoader(NoisyXY(64, 1), batch_size=16, shuffle=True, generator=generator)
        train(model, opt, loader)
        model.eval()
        states = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy(),
                  None if generator is None else generator.get_state())
        with opt.use_slow_weights(model=model, bn_loader=loader, bn_batches=2) if bn_pass else opt.use_slow_weights():
            pass
        after = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy(),
                 None if generator is None else generator.get_state())
        assert torch.equal(states[0], after[0]) and states[1] == after[1] and np.array_equal(states[2], after[2])
        assert states[3] is None or torch.equal(states[3], after[3])
        train(model, opt, loader)  # reshuffles, redraws noise and dropout masks
        return [t.detach().clone() for t in (*model.parameters(), *model.buffers())]

    for a, b in zip(run(bn_pass=True), run(bn_pass=False)):
        assert torch.equal(a, b)


def test_preserved_rng_gives_back_an_attribute_replaced_inside():
    class Holder:
        rng = random.Random(1)

    holder = Holder()
    original = holder.rng
    expected = random.Random(1).random()
    with preserved_rng(holder):
        holder.rng.random()
        holder.rng = random.Random(2)  # what fastai's DataLoader.randomize does
    assert holder.rng is original and holder.rng.random() == expected


# ---- through a fastai Learner ------------------------------------------------------------------------
def make_learner(bn_batches):
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    dls = DataLoaders(FastaiDataLoader(NoisyXY(96, 1, torch.float32), bs=16, shuffle=True),
                      FastaiDataLoader(NoisyXY(32, 2, torch.float32, noisy=False), bs=16))
    model = bn_model().float()  # fastai's Recorder smooths float32 losses

    def opt_func(params, **kwargs):
        from fastai.optimizer import OptimWrapper
        return OptimWrapper(opt=Lookahead(torch.optim.SGD(params, **kwargs), k=4, alpha=0.5))

    return Learner(dls, model, loss_func=torch.nn.CrossEntropyLoss(), opt_func=opt_func, lr=0.05,
                   cbs=[SlowWeightEvalCallback(bn_batches=bn_batches)])


def test_callback_validates_with_recomputed_bn_and_leaves_training_unchanged():
    runs = {}
    for bn_batches in (None, 2):
        learn = make_learner(bn_batches)
        with learn.no_logging():
            learn.fit(2)
        runs[bn_batches] = learn
    fast, recomputed = runs[None], runs[2]
    # the same training: every weight and the fast BN statistics, bit for bit
    for a, b in zip(fast.model.state_dict().values(), recomputed.model.state_dict().values()):
        assert torch.equal(a, b)
    # but another validation: the slow weights with their own statistics
    fast_losses = [v[1] for v in fast.recorder.values]
    slow_losses = [v[1] for v in recomputed.recorder.values]
    assert all(a != b for a, b in zip(fast_losses, slow_losses))

    # what the callback validates on is the slow weights with statistics recomputed over 2 train batches
    learn = recomputed
    la = learn.opt.opt
    stats_before = bn_buffers(learn.model)
    with preserved_rng(learn.dls.valid), la.use_slow_weights(model=learn.model, bn_loader=learn.dls.train,
                                                             bn_batches=2):
        learn.model.eval()  # the callback's pass below then starts from the same generators as this one
        with torch.no_grad():
            manual = torch.stack([torch.nn.functional.cross_entropy(learn.model(x), y, reduction="sum")
                                  for x, y in learn.dls.valid]).sum() / len(learn.dls.valid.dataset)
    with learn.no_logging():
        validated = learn.validate()[0]
    assert abs(validated - manual.item()) < 1e-6
    for name, value in bn_buffers(learn.model).items():
        assert torch.equal(value, stats_before[name]), name
