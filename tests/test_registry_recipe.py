"""The registry entries fastai's Imagenette recipe needs: fastai's own ranger against ours
lookahead(radam), the flat-cos schedule, xresnet50 + Mish, label smoothing, augmentations, and the
effective hyper-parameters comparisons are judged by."""
import numpy as np
import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.torch_core import set_seed

from lookahead_fastai.data import BatchAugment, TensorDataLoader
from lookahead_fastai.registry.architectures import ARCHITECTURES, build_learner, small_cnn
from lookahead_fastai.registry.augmentations import check_augment, folder_transforms
from lookahead_fastai.registry.losses import make_loss
from lookahead_fastai.registry.optimizers import make_opt_func, optimizer_parts
from lookahead_fastai.registry.schedules import fit_with_schedule, lr_schedule_function

RECIPE = {"mom": 0.9, "sqr_mom": 0.99, "eps": 1e-6, "wd": 1e-2, "beta": 0.0}


def _learner(opt_func, seed=0, n=64, bs=8):
    set_seed(seed, reproducible=True)
    g = torch.Generator().manual_seed(123)
    x = torch.randint(0, 255, (n, 3, 16, 16), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    dl = TensorDataLoader(x, y, BatchAugment([0.5] * 3, [0.25] * 3), bs=bs, shuffle=False, drop_last=True)
    set_seed(seed, reproducible=True)
    return Learner(DataLoaders(dl, dl), small_cnn(3, 4), loss_func=CrossEntropyLossFlat(), opt_func=opt_func)


def _train(learn, epochs=2, schedule="flat_cos"):
    with learn.no_bar(), learn.no_logging():
        fit_with_schedule(learn, epochs, 3e-3, schedule)
    return torch.cat([p.detach().flatten() for p in learn.model.parameters()])


def test_ours_lookahead_radam_follows_fastais_ranger():
    """Same seed, data and settings: fastai's ranger (its Lookahead over its RAdam) and ours
    lookahead(radam) take the same steps (16 steps: two syncs at k=6 and the steps after), with
    weight decay skipped on BatchNorm and bias in both (fastai's default)."""
    fastai_ranger = _learner(make_opt_func("fastai_ranger", **RECIPE))
    ours = _learner(make_opt_func("lookahead(radam)", **RECIPE, k=6, alpha=0.5))
    a, b = _train(fastai_ranger), _train(ours)
    start = torch.cat([p.detach().flatten() for p in _learner(make_opt_func("radam", **RECIPE)).model.parameters()])
    assert not torch.allclose(a, start)  # it trained
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), (a - b).abs().max()
    plain = _train(_learner(make_opt_func("radam", **RECIPE)))
    assert not torch.allclose(a, plain, atol=1e-4)  # and Lookahead made a difference


def test_schedules_reach_fastais_ranger():
    learn = _learner(make_opt_func("fastai_ranger", **RECIPE))
    with learn.no_bar(), learn.no_logging():
        fit_with_schedule(learn, 2, 3e-3, "flat_cos")
    lrs = np.array(learn.recorder.lrs)
    assert lrs[0] == pytest.approx(3e-3) and lrs[-1] < 3e-3 / 5
    assert learn.opt.opt.hypers[0]["lr"] == pytest.approx(lrs[-1])  # the RAdam inside got it


def test_flat_cos_is_fastais_fit_flat_cos():
    f = lr_schedule_function("flat_cos", 0.01)
    assert [f(p) for p in (0.0, 0.5, 0.75)] == pytest.approx([0.01] * 3)
    assert f(1.0) == pytest.approx(0.01 / 1e5) and 0.0001 < f(0.9) < 0.01
    a, b = _learner(make_opt_func("sgd", mom=0.9)), _learner(make_opt_func("sgd", mom=0.9))
    with a.no_bar(), a.no_logging():
        a.fit_flat_cos(2, 3e-3)
    _train(b)
    assert np.allclose(a.recorder.lrs, b.recorder.lrs)


def test_xresnet50_mish_is_the_recipes_model():
    from fastai.vision.models.xresnet import XResNet
    x = torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8)
    dl = TensorDataLoader(x, torch.arange(4) % 2, BatchAugment([0.5] * 3, [0.25] * 3), bs=2)
    learn = build_learner("xresnet50_mish", DataLoaders(dl, dl), n_in=3, n_out=10, size=32,
                          loss_func=make_loss("label_smoothing"))
    assert isinstance(learn.model, XResNet) and "xresnet50_mish" in ARCHITECTURES
    assert any(isinstance(m, torch.nn.Mish) for m in learn.model.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in learn.model.modules())
    assert learn.model[-1].out_features == 10
    assert len(learn.splitter(learn.model)) == sum(1 for p in learn.model.parameters() if p.requires_grad)


def test_xse_resnext50_is_the_2020_01_leaderboard_model():
    """--arch xse_resnext50 --sa 1 --pool MaxPool with the script's Mish: squeeze-excitation ResNeXt
    blocks, one self-attention layer, max-pooling on the strided shortcuts, one parameter group."""
    from fastai.layers import SimpleSelfAttention
    from fastai.vision.models.xresnet import XResNet
    x = torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8)
    dl = TensorDataLoader(x, torch.arange(4) % 2, BatchAugment([0.5] * 3, [0.25] * 3), bs=2)
    learn = build_learner("xse_resnext50_mish_sa_maxpool", DataLoaders(dl, dl), n_in=3, n_out=10, size=32,
                          loss_func=make_loss("label_smoothing"))
    modules = list(learn.model.modules())
    assert isinstance(learn.model, XResNet) and learn.model[-1].out_features == 10
    assert sum(isinstance(m, SimpleSelfAttention) for m in modules) == 1
    assert any(type(m).__name__ == "ProdLayer" for m in modules)  # squeeze-excitation: x * sigmoid(gate(x))
    shortcuts = [m for block in modules if hasattr(block, "idpath") for m in block.idpath.modules()]
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in shortcuts)
    assert not any(isinstance(m, torch.nn.AvgPool2d) for m in shortcuts)
    assert any(isinstance(m, torch.nn.Mish) for m in modules) and not any(isinstance(m, torch.nn.ReLU) for m in modules)
    assert len(learn.splitter(learn.model)) == sum(1 for p in learn.model.parameters() if p.requires_grad)
    assert learn.model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_label_smoothing_loss():
    loss = make_loss("label_smoothing")
    logits, target = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    logp = torch.log_softmax(logits, -1)
    expected = (0.9 * torch.nn.functional.nll_loss(logp, target) + 0.1 * (-logp.mean(-1)).mean())
    assert float(loss(logits, target)) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("hinge")


def test_augmentations():
    items, batch = folder_transforms("rrc_flip", 128)
    assert [type(t).__name__ for t in items] == ["RandomResizedCrop", "FlipItem"] and batch == []
    assert items[0].min_scale == 0.35
    assert [type(t).__name__ for t in folder_transforms("none", 224)[0]] == ["Resize"]
    check_augment("rrc_flip", small_dataset=False, data_path="auto")
    check_augment("rrc_flip", small_dataset=True, data_path="pil")
    with pytest.raises(ValueError, match="PIL path"):
        check_augment("rrc_flip", small_dataset=True, data_path="auto")


def test_effective_hyper_parameters():
    """What a comparison holds equal: declared values over the constructors' defaults."""
    assert optimizer_parts("adamw", {}).inner_hyper["wd"] == 0.01  # torch AdamW's default
    assert optimizer_parts("adamw", {}) == optimizer_parts("adamw", {"wd": 0.01})
    ranger, ours = optimizer_parts("fastai_ranger", RECIPE), optimizer_parts("lookahead(radam)", {**RECIPE, "k": 6})
    assert (ranger.wrapper, ranger.implementation, ranger.inner) == ("lookahead", "fastai", "radam")
    assert ranger.inner_hyper == ours.inner_hyper
    assert ranger.wrapper_hyper == {"k": 6, "alpha": 0.5}
    assert ours.wrapper_hyper == {"k": 6, "alpha": 0.5, "pullback": "none"}
    with pytest.raises(ValueError, match="does not take"):
        make_opt_func("fastai_ranger", pullback="reset")


def test_fastai_optimizers_through_our_wrapper_skip_batchnorm_and_bias_decay_as_fastai_does():
    """A Learner marks BatchNorm and bias do_wd=False; through our OptimWrapper the fastai optimizer
    reads the marks (as natively), and clear_state keeps them (as fastai's Optimizer does)."""
    from functools import partial

    from fastai.optimizer import SGD
    native = _learner(partial(SGD, mom=0.9, wd=0.1))
    ours = _learner(make_opt_func("fastai_sgd", mom=0.9, wd=0.1))
    assert torch.allclose(_train(native, schedule="constant"), _train(ours, schedule="constant"), atol=1e-6)
    bn_weight = ours.model[1].weight
    assert ours.opt.state[bn_weight]["do_wd"] is False
    ours.opt.clear_state()
    assert ours.opt.state[bn_weight] == {"do_wd": False, "force_train": True}
    assert "grad_avg" not in ours.opt.state[ours.model[0].weight]
