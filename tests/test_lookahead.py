"""Lookahead and NestedLookahead against the paper's equations (tests/reference.py), and the
properties a torch optimizer must have."""
import copy
import subprocess
import sys
import textwrap
from collections import defaultdict

import pytest
import torch
from fastai.optimizer import Adam as FastaiAdam
from fastai.optimizer import SGD as FastaiSGD

from lookahead_fastai import Lookahead, NestedLookahead
from lookahead_fastai.opt_funcs import FastaiOptimizerAdapter
from reference import PaperLookahead

STEPS = 23  # several syncs for every k below, and a partial cycle at the end


def make_model(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).to(dtype)


def batches(n=STEPS, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 6, generator=g, dtype=dtype), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def loss_of(model, batch):
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


# name -> (make optimizer under test, make reference inner and its state)
def _torch(cls, **kw):
    def build(params):
        opt = cls(params, **kw)
        return opt, opt.state
    return build


def _fastai(fn, **kw):
    def build(params):
        opt = fn(list(params), **kw)
        return opt, lambda: opt.state
    return build


INNER = {
    "sgd": (_torch(torch.optim.SGD, lr=0.1), lambda ps: torch.optim.SGD(ps, lr=0.1)),
    "sgd_momentum": (_torch(torch.optim.SGD, lr=0.05, momentum=0.9, weight_decay=1e-3),
                     lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3)),
    "adam": (_torch(torch.optim.Adam, lr=0.01), lambda ps: torch.optim.Adam(ps, lr=0.01)),
    "adamw": (_torch(torch.optim.AdamW, lr=0.01, weight_decay=0.1),
              lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1)),
    "rmsprop": (_torch(torch.optim.RMSprop, lr=0.01, momentum=0.5, centered=True),
                lambda ps: torch.optim.RMSprop(ps, lr=0.01, momentum=0.5, centered=True)),
    "fastai_adam": (_fastai(FastaiAdam, lr=0.01, wd=0.01),
                    lambda ps: FastaiOptimizerAdapter(FastaiAdam(list(ps), lr=0.01, wd=0.01))),
}
MODES = ["none", "reset", "pullback"]
K_ALPHA = [(1, 0.5), (3, 0.8), (5, 0.5), (4, 1.0)]


def run_ours(make_opt, k, alpha, mode, steps=STEPS, nested=None, data=None):
    model = make_model()
    inner = make_opt(model.parameters())
    opt = (NestedLookahead(inner, k=k, alpha=alpha, pullback=mode, **nested) if nested
           else Lookahead(inner, k=k, alpha=alpha, pullback=mode))
    trajectory = []
    for batch in (data or batches(steps)):
        model.zero_grad(set_to_none=True)
        loss_of(model, batch).backward()
        opt.step()
        trajectory.append([p.detach().clone() for p in model.parameters()])
    return model, opt, trajectory


def run_reference(build_ref, k, alpha, mode, steps=STEPS, s=0, h=0.5):
    model = make_model()
    inner, state = build_ref(model.parameters())
    ref = PaperLookahead(model.parameters(), inner, state, k, alpha, mode, s=s, h=h)
    trajectory = []
    for batch in batches(steps):
        model.zero_grad(set_to_none=True)
        loss_of(model, batch).backward()
        ref.step()
        trajectory.append([p.detach().clone() for p in model.parameters()])
    return model, ref, trajectory


def assert_same_trajectory(ours, ref, atol=1e-12):
    assert len(ours) == len(ref)
    for t, (a, b) in enumerate(zip(ours, ref)):
        for pa, pb in zip(a, b):
            torch.testing.assert_close(pa, pb, rtol=0, atol=atol, msg=lambda m: f"step {t + 1}: {m}")


@pytest.mark.parametrize("k,alpha", K_ALPHA)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("inner", list(INNER))
def test_trajectory_matches_paper(inner, mode, k, alpha):
    build_ref, make_opt = INNER[inner]
    _, _, ours = run_ours(make_opt, k, alpha, mode)
    _, _, ref = run_reference(build_ref, k, alpha, mode)
    assert_same_trajectory(ours, ref)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("inner", ["sgd_momentum", "adam", "fastai_adam"])
def test_nested_matches_paper(inner, mode):
    build_ref, make_opt = INNER[inner]
    _, _, ours = run_ours(make_opt, 3, 0.5, mode, nested=dict(s=2, h=0.6), steps=20)
    _, _, ref = run_reference(build_ref, 3, 0.5, mode, s=2, h=0.6, steps=20)
    assert_same_trajectory(ours, ref)


def test_sync_happens_after_steps_k_2k_and_slow_weights_start_at_theta0():
    model = make_model()
    theta0 = [p.detach().clone() for p in model.parameters()]
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=3, alpha=0.5)
    synced_at = []
    opt.register_sync_hook(lambda o, i, fast, slow: synced_at.append(opt._group_counters[i]["syncs"]))
    for t, batch in enumerate(batches(7), start=1):
        model.zero_grad()
        loss_of(model, batch).backward()
        if t == 1:
            for p, p0 in zip(model.parameters(), theta0):
                assert torch.equal(opt.slow_weights(p), p0)  # created before the first inner step
        opt.step()
    assert synced_at == [1, 2]  # after inner steps 3 and 6 only


def test_pullback_cache_is_a_copy_not_an_alias():
    model = make_model()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), k=2, pullback="pullback")
    for batch in batches(2):
        model.zero_grad()
        loss_of(model, batch).backward()
        opt.step()
    for p in model.parameters():
        live = opt.state[p]["momentum_buffer"]
        cached = opt._cached_state[p]["momentum_buffer"]
        assert cached.data_ptr() != live.data_ptr()
        assert torch.equal(cached, live)
        live.add_(1.0)  # changing the live buffer must not change the copy
        assert not torch.equal(cached, live)


@pytest.mark.parametrize("block_bytes", [4 << 20, 64])  # 64: many blocks, as for a large model
@pytest.mark.parametrize("mode", MODES)
def test_foreach_sync_equals_per_tensor_loop(mode, block_bytes, monkeypatch):
    import lookahead_fastai.optim.lookahead as la_module
    monkeypatch.setattr(la_module, "_CPU_BLOCK_BYTES", block_bytes)
    results = []
    for foreach in (True, False):
        model = make_model()
        opt = Lookahead(torch.optim.Adam(model.parameters(), lr=0.01), k=3, alpha=0.7, pullback=mode, foreach=foreach)
        for batch in batches(10):
            model.zero_grad()
            loss_of(model, batch).backward()
            opt.step()
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_is_a_real_torch_optimizer_sharing_param_groups():
    model = make_model()
    inner = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt = Lookahead(inner, k=5, alpha=0.5)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups is inner.param_groups
    assert opt.state is inner.state
    assert opt.defaults["lr"] == 0.1 and opt.defaults["la_k"] == 5 and opt.defaults["la_alpha"] == 0.5
    assert "alpha" not in opt.param_groups[0]  # fastai would map it to sqr_mom
    calls = []
    opt.register_step_pre_hook(lambda o, a, kw: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, kw: calls.append("post"))
    model(torch.randn(2, 6, dtype=torch.float64)).sum().backward()
    opt.step()
    assert calls == ["pre", "post"]
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_torch_lr_scheduler_drives_inner_lr():
    model = make_model()
    inner = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt = Lookahead(inner)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10)
    lrs = []
    for batch in batches(5):
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.step()
        sched.step()
        lrs.append(inner.param_groups[0]["lr"])
    assert len(set(lrs)) == 5 and max(lrs) > 0.5
    assert inner.param_groups[0]["momentum"] != 0.9  # OneCycleLR cycles momentum too


def test_k_and_alpha_are_per_group_and_schedulable():
    model = make_model()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=5)
    opt.param_groups[0]["la_k"] = 2
    synced = []
    opt.register_sync_hook(lambda *a: synced.append(True))
    for batch in batches(4):
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.step()
    assert len(synced) == 2


@pytest.mark.parametrize("make_inner", [
    lambda ps: torch.optim.SGD(ps, lr=0.1),
    lambda ps: FastaiOptimizerAdapter(FastaiSGD(list(ps), lr=0.1)),  # fastai's own optimizers refuse closures
], ids=["torch_sgd", "fastai_sgd"])
def test_closure_is_called_and_loss_returned(make_inner):
    model = make_model()
    opt = Lookahead(make_inner(model.parameters()), k=2)
    batch = batches(1)[0]

    def closure():
        opt.zero_grad()
        loss = loss_of(model, batch)
        loss.backward()
        return loss

    losses = [opt.step(closure) for _ in range(3)]
    assert all(torch.is_tensor(loss) for loss in losses)
    assert losses[2] < losses[0]


def test_gradscaler_skipped_steps_do_not_count():
    model = make_model(dtype=torch.float32)
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 4)
    synced = []
    opt.register_sync_hook(lambda *a: synced.append(True))
    for t, batch in enumerate(batches(3, dtype=torch.float32)):
        opt.zero_grad()
        scaler.scale(loss_of(model, batch)).backward()
        if t == 1:  # an overflow: GradScaler skips this step
            next(model.parameters()).grad[0, 0] = float("inf")
        scaler.step(opt)
        scaler.update()
        if t == 1:
            assert opt._group_counters[0]["steps"] == 1 and not synced
    assert synced == [True]  # the two good steps make one cycle


def test_add_param_group_gets_its_own_slow_weights():
    model = make_model()
    extra = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2, alpha=0.5)
    for batch in batches(1):
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.step()
    opt.add_param_group({"params": [extra], "lr": 0.5})
    assert opt.param_groups[1]["la_k"] == 2 and opt.param_groups[1]["la_alpha"] == 0.5
    start = extra.detach().clone()
    for batch in batches(2, seed=5):
        opt.zero_grad()
        (loss_of(model, batch) + (extra ** 2).sum()).backward()
        opt.step()
    # the new group synced after ITS second step: slow = start + 0.5 * (fast_2 - start)
    fast = start.clone()
    for _ in range(2):
        fast = fast - 0.5 * 2 * fast
    expected = start + 0.5 * (fast - start)
    torch.testing.assert_close(extra.detach(), expected)
    torch.testing.assert_close(opt.slow_weights(extra), expected)


def test_clear_state_keeps_slow_weights():
    model = make_model()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), k=4)
    for batch in batches(2):
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.step()
    slow_before = [opt.slow_weights(p).clone() for p in model.parameters()]
    opt.state = defaultdict(dict)  # what fastai's OptimWrapper.clear_state does
    assert opt.optimizer.state == {}
    for p, s in zip(model.parameters(), slow_before):
        assert torch.equal(opt.slow_weights(p), s)


def test_slow_weights_follow_parameter_dtype():
    model = make_model(dtype=torch.float32)
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2)
    for batch in batches(1, dtype=torch.float32):
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.step()
    model.double()
    for batch in batches(1, dtype=torch.float64):
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.step()
    for p in model.parameters():
        assert opt.slow_weights(p).dtype == torch.float64
        assert torch.equal(opt.slow_weights(p), p.detach())


def test_use_slow_weights_swaps_and_restores():
    model = make_model()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=5)
    for batch in batches(3):
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.step()
    fast = [p.detach().clone() for p in model.parameters()]
    with opt.use_slow_weights():
        for p in model.parameters():
            assert torch.equal(p, opt.slow_weights(p))
    for p, f in zip(model.parameters(), fast):
        assert torch.equal(p, f)
    with pytest.raises(RuntimeError):
        with opt.use_slow_weights():
            raise RuntimeError("evaluation failed")
    for p, f in zip(model.parameters(), fast):
        assert torch.equal(p, f)


RESUME_SCRIPT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_lookahead import make_model, batches, loss_of, build_resumable
    model, opt = build_resumable()
    ckpt = torch.load({path!r}, weights_only=True)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    for batch in batches({steps}, dtype=torch.float32)[{start}:]:
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.step()
    torch.save({{"params": [p.detach() for p in model.parameters()],
                "slow": [opt.slow_weights(p) for p in model.parameters()],
                "outer": [opt.outer_slow_weights(p) for p in model.parameters()]}}, {out!r})
""")


def build_resumable():
    model = make_model(dtype=torch.float32)
    opt = NestedLookahead(torch.optim.Adam(model.parameters(), lr=0.01), k=3, alpha=0.5, s=2, h=0.5,
                          pullback="pullback")
    return model, opt


@pytest.mark.slow
def test_checkpoint_mid_cycle_resumes_bit_identically_in_a_fresh_process(tmp_path):
    steps, start = 17, 7  # 7 = mid-cycle for k=3
    data = batches(steps, dtype=torch.float32)
    model, opt = build_resumable()
    for t, batch in enumerate(data, start=1):
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.step()
        if t == start:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.pt")
    script = RESUME_SCRIPT.format(tests=str(__import__("pathlib").Path(__file__).parent), path=str(tmp_path / "ckpt.pt"),
                                  steps=steps, start=start, out=str(tmp_path / "out.pt"))
    subprocess.run([sys.executable, "-c", script], check=True)
    resumed = torch.load(tmp_path / "out.pt", weights_only=True)
    for p, q in zip(model.parameters(), resumed["params"]):
        assert torch.equal(p.detach(), q)
    for p, q in zip(model.parameters(), resumed["slow"]):
        assert torch.equal(opt.slow_weights(p), q)
    for p, q in zip(model.parameters(), resumed["outer"]):
        assert torch.equal(opt.outer_slow_weights(p), q)


def test_state_dict_round_trip_restores_counters_and_cache():
    model, opt = build_resumable()
    for batch in batches(4, dtype=torch.float32):
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.step()
    sd = copy.deepcopy(opt.state_dict())
    model2, opt2 = build_resumable()
    model2.load_state_dict(model.state_dict())
    opt2.load_state_dict(sd)
    assert opt2._group_counters == opt._group_counters
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(opt._cached_state[p]["exp_avg"], opt2._cached_state[q]["exp_avg"])
    with pytest.raises(ValueError, match="lookahead"):  # a broken lookahead entry is refused (issue 10)
        opt2.load_state_dict({**sd, "lookahead": {**sd["lookahead"], "groups": []}})
    # a plain inner optimizer's state dict loads (issue 10): counters start again
    opt2.load_state_dict(torch.optim.Adam(model2.parameters()).state_dict())
    assert opt2._group_counters == [{"steps": 0, "syncs": 0}]


def test_nested_outer_update_fires_once_per_s_syncs():
    model = make_model()
    opt = NestedLookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2, alpha=0.5, s=3, h=0.5)
    p0 = next(model.parameters())
    outer_changes = []
    previous = opt.outer_slow_weights(p0).clone()
    for t, batch in enumerate(batches(12), start=1):
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.step()
        now = opt.outer_slow_weights(p0)
        if not torch.equal(now, previous):
            outer_changes.append(t)
            assert torch.equal(opt.slow_weights(p0), now) and torch.equal(p0.detach(), now)
        previous = now.clone()
    assert outer_changes == [6, 12]  # after syncs 3 and 6 (inner steps 6 and 12), once each


def test_nested_with_s_zero_is_plain_lookahead():
    build_ref, make_opt = INNER["adam"]
    _, _, nested = run_ours(make_opt, 3, 0.5, "pullback", nested=dict(s=0, h=0.5))
    _, _, plain = run_ours(make_opt, 3, 0.5, "pullback")
    assert_same_trajectory(nested, plain, atol=0)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(k=0), ValueError, "k must be a positive int"),
    (dict(k=2.5), TypeError, "k must be a positive int"),
    (dict(k=True), TypeError, "k must be a positive int"),
    (dict(alpha=0.0), ValueError, r"alpha must be in \(0, 1\]"),
    (dict(alpha=1.5), ValueError, r"alpha must be in \(0, 1\]"),
    (dict(alpha="half"), TypeError, "alpha must be a real number"),
    (dict(pullback="sometimes"), ValueError, "pullback must be one of 'none', 'reset', 'pullback'"),
])
def test_invalid_arguments(kwargs, error, match):
    model = make_model()
    with pytest.raises(error, match=match):
        Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)
    with pytest.raises(error, match=match):
        NestedLookahead(torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(h=0), ValueError, r"h must be in \(0, 1\]"),
    (dict(h=1.01), ValueError, r"h must be in \(0, 1\]"),
    (dict(s=-1), ValueError, "s must be an int >= 0"),
    (dict(s=1.5), TypeError, "s must be an int >= 0"),
])
def test_invalid_nested_arguments(kwargs, error, match):
    model = make_model()
    with pytest.raises(error, match=match):
        NestedLookahead(torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)


def test_non_optimizer_is_rejected():
    model = make_model()
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        Lookahead(list(model.parameters()))
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        NestedLookahead(torch.optim.SGD)


def test_public_weight_copies_and_counters():
    """What distributed.py keeps equal across ranks, through public methods: every weight copy
    (slow; outer slow too for NestedLookahead), created on first use, and each group's counters."""
    for cls, n_copies in ((Lookahead, 1), (NestedLookahead, 2)):
        w = torch.nn.Parameter(torch.ones(3))
        opt = cls(torch.optim.SGD([w], lr=0.1), k=2)
        copies = opt.weight_copies()
        assert len(copies) == n_copies and all(torch.equal(c, w.detach()) for c in copies)
        w.grad = torch.ones(3)
        opt.step()
        assert opt.counters() == [[1, 0]]
        opt.set_counters([[5, 2]])
        assert opt.counters() == [[5, 2]] and opt._group_counters[0] == {"steps": 5, "syncs": 2}
        copies[0].fill_(7.0)  # the tensors themselves: a broadcast into them sets the slow weights
        assert torch.equal(opt.slow_weights(w), torch.full((3,), 7.0))
        with pytest.raises(ValueError, match="param groups"):
            opt.set_counters([[1, 0], [1, 0]])
