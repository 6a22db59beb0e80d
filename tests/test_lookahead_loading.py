"""Lookahead and NestedLookahead: state dicts that never half-load, plain inner checkpoints, group
values checked when added and at every step, and parameters frozen between syncs (issue 10)."""
import copy
import pickle

import pytest
import torch

from lookahead_fastai import Lookahead, NestedLookahead
from reference import PaperLookahead
from test_lookahead import batches, loss_of, make_model


def train(model, opt, data):
    for batch in data:
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.step()


def snapshot(model, opt):
    """Everything a load could change, as plain copies."""
    params = list(model.parameters())
    return {
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
        "group_params": [list(g["params"]) for g in opt.param_groups],
        "state": {i: {n: (v.clone() if torch.is_tensor(v) else v) for n, v in opt.state[p].items()}
                  for i, p in enumerate(params) if p in opt.state},
        "slow": {name: {i: opt._copies[name][p].clone() for i, p in enumerate(params) if p in opt._copies[name]}
                 for name in opt._copies},
        "cache": {i: {n: t.clone() for n, t in opt._cached_state[p].items()}
                  for i, p in enumerate(params) if p in opt._cached_state},
        "counters": copy.deepcopy(opt._group_counters),
        "pullback": opt.pullback,
        "weights": [p.detach().clone() for p in params],
    }


def assert_same_snapshot(a, b):
    assert a.keys() == b.keys()
    assert a["pullback"] == b["pullback"]
    assert all(x is y for ga, gb in zip(a["group_params"], b["group_params"]) for x, y in zip(ga, gb))
    for key in a.keys() - {"pullback", "group_params"}:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=lambda m: f"{key}: {m}")


def two_group_setup(cls=Lookahead, **kw):
    """A model with two param groups, trained 4 steps with Adam (state, cache and slow weights all
    populated, mid-cycle for k=3)."""
    model = make_model()
    inner = torch.optim.Adam([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.02}],
                             lr=0.01)
    opt = cls(inner, k=3, alpha=0.5, pullback="pullback", **kw)
    train(model, opt, batches(4))
    return model, opt


# ---- a bad lookahead entry is refused before anything changes ---------------------------------------
def _corrupt(name):
    def extra_index(sd):
        sd["lookahead"]["copies"]["slow"][4] = torch.zeros(3, dtype=torch.float64)  # 4 params: 0..3

    def missing_key(sd):
        del sd["lookahead"]["cached_state"]

    def unexpected_key(sd):
        sd["lookahead"]["slow"] = {}

    def wrong_shape(sd):
        sd["lookahead"]["copies"]["slow"][0] = torch.zeros(6, 5, dtype=torch.float64)  # param 0 is 5x6

    def no_groups(sd):
        sd["lookahead"]["groups"] = []

    def bad_counter(sd):
        sd["lookahead"]["groups"][1] = {"steps": -1, "syncs": 0}

    def missing_counter(sd):
        sd["lookahead"]["groups"][0] = {"syncs": 0}

    def bad_pullback(sd):
        sd["lookahead"]["pullback"] = "sometimes"

    def cache_index(sd):
        sd["lookahead"]["cached_state"][7] = {}

    def cache_shape(sd):
        sd["lookahead"]["cached_state"][1]["exp_avg"] = torch.zeros(2, dtype=torch.float64)

    def not_a_tensor(sd):
        sd["lookahead"]["copies"]["slow"][1] = [0.0] * 5

    def group_count(sd):
        sd["param_groups"] = sd["param_groups"][:1]

    def group_size(sd):
        sd["param_groups"][0]["params"] = sd["param_groups"][0]["params"][:1]

    def group_la_k(sd):
        sd["param_groups"][1]["la_k"] = 0

    def group_la_alpha(sd):
        sd["param_groups"][0]["la_alpha"] = float("nan")

    def state_index(sd):
        sd["state"][9] = {}

    def copies_names(sd):
        sd["lookahead"]["copies"] = {}

    def missing_copy(sd):  # timm's and pytorch_optimizer's tests expect a ValueError here too (issue 21)
        del sd["lookahead"]["copies"]["slow"][2]

    cases = {f.__name__: f for f in (extra_index, missing_key, unexpected_key, wrong_shape, no_groups, bad_counter,
                                     missing_counter, bad_pullback, cache_index, cache_shape, not_a_tensor,
                                     group_count, group_size, group_la_k, group_la_alpha, state_index,
                                     copies_names, missing_copy)}
    return cases[name]


BAD_ENTRIES = [
    ("extra_index", r"\['copies'\]\['slow'\]: parameter index 4"),
    ("missing_key", r"\['lookahead'\] has keys .*missing \['cached_state'\]"),
    ("unexpected_key", r"unexpected \['slow'\]"),
    ("wrong_shape", r"\['copies'\]\['slow'\]\[0\] has shape \(6, 5\), its parameter has \(5, 6\)"),
    ("no_groups", r"\['lookahead'\]\['groups'\] must have one entry per param group \(2\), got 0"),
    ("bad_counter", r"\['groups'\]\[1\]\['steps'\]"),
    ("missing_counter", r"\['groups'\]\[0\] must be a dict with keys 'steps' and 'syncs'"),
    ("bad_pullback", r"\['pullback'\]: pullback must be one of"),
    ("cache_index", r"\['cached_state'\]: parameter index 7"),
    ("cache_shape", r"\['cached_state'\]\[1\]\['exp_avg'\] has shape \(2,\)"),
    ("not_a_tensor", r"\['copies'\]\['slow'\]\[1\] must be a floating point tensor"),
    ("group_count", r"state_dict\['param_groups'\] has 1 groups, this optimizer has 2"),
    ("group_size", r"state_dict\['param_groups'\]\[0\]\['params'\] has 1 parameters"),
    ("group_la_k", r"state_dict\['param_groups'\]\[1\]: la_k must be a positive int"),
    ("group_la_alpha", r"state_dict\['param_groups'\]\[0\]: la_alpha must be in \(0, 1\]"),
    ("state_index", r"state_dict\['state'\] has an entry for parameter 9"),
    ("copies_names", r"\['copies'\] must hold \['slow'\]"),
    ("missing_copy", r"\['copies'\]\['slow'\] has no copy of parameter 2, though its group 1 has taken"),
]


@pytest.mark.parametrize("case,match", BAD_ENTRIES, ids=[c for c, _ in BAD_ENTRIES])
def test_bad_state_dict_raises_value_error_and_changes_nothing(case, match):
    model, opt = two_group_setup()
    good = opt.state_dict()
    bad = copy.deepcopy(good)
    bad["param_groups"][0]["lr"] = 0.5  # a partial load would be visible here
    bad["param_groups"][1]["lr"] = 0.5
    for st in bad["state"].values():
        st["exp_avg"].add_(1.0)
    _corrupt(case)(bad)
    before = snapshot(model, opt)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(bad)
    assert_same_snapshot(snapshot(model, opt), before)
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[1]["lr"] == 0.02

    # and it trains on exactly as a twin that never saw the bad dict
    twin_model, twin = two_group_setup()
    train(model, opt, batches(5, seed=3))
    train(twin_model, twin, batches(5, seed=3))
    for p, q in zip(model.parameters(), twin_model.parameters()):
        assert torch.equal(p, q)


def test_nested_bad_state_dict_is_refused_and_good_one_round_trips():
    model, opt = two_group_setup(NestedLookahead, s=2, h=0.5)
    sd = copy.deepcopy(opt.state_dict())
    before = snapshot(model, opt)
    missing_outer = copy.deepcopy(sd)
    del missing_outer["lookahead"]["copies"]["outer_slow"]
    with pytest.raises(ValueError, match=r"\['copies'\] must hold \['slow', 'outer_slow'\]"):
        opt.load_state_dict(missing_outer)
    bad_outer = copy.deepcopy(sd)
    bad_outer["lookahead"]["copies"]["outer_slow"][3] = torch.zeros(4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\['outer_slow'\]\[3\] has shape \(4,\), its parameter has \(3,\)"):
        opt.load_state_dict(bad_outer)
    bad_h = copy.deepcopy(sd)
    bad_h["param_groups"][1]["nla_h"] = 0
    with pytest.raises(ValueError, match=r"state_dict\['param_groups'\]\[1\]: nla_h must be in \(0, 1\]"):
        opt.load_state_dict(bad_h)
    bad_s = copy.deepcopy(sd)
    bad_s["param_groups"][0]["nla_s"] = 1.5
    with pytest.raises(ValueError, match=r"state_dict\['param_groups'\]\[0\]: nla_s must be an int >= 0"):
        opt.load_state_dict(bad_s)
    other = make_model()
    plain_la = Lookahead(torch.optim.Adam([{"params": other[0].parameters()}, {"params": other[2].parameters()}]), k=3)
    with pytest.raises(ValueError, match=r"must hold \['slow'\] for Lookahead, got \['outer_slow', 'slow'\]"):
        plain_la.load_state_dict(copy.deepcopy(sd))  # a nested checkpoint is not a plain Lookahead's
    assert_same_snapshot(snapshot(model, opt), before)
    opt.load_state_dict(sd)
    assert_same_snapshot(snapshot(model, opt), before)


# ---- a plain inner optimizer's checkpoint loads into Lookahead ---------------------------------------
@pytest.mark.parametrize("model_first", [True, False], ids=["model_then_opt", "opt_then_model"])
@pytest.mark.parametrize("cls", [Lookahead, NestedLookahead])
def test_plain_inner_state_dict_resumes_with_fresh_slow_weights(cls, model_first):
    # a plain Adam run, checkpointed after 4 steps
    model = make_model()
    plain = torch.optim.Adam(model.parameters(), lr=0.02)
    train(model, plain, batches(4))
    ckpt = copy.deepcopy({"model": model.state_dict(), "opt": plain.state_dict()})

    # resumed under Lookahead (built with another lr and fresh weights)
    resumed = make_model(seed=7)
    extra = dict(s=2, h=0.5) if cls is NestedLookahead else {}
    opt = cls(torch.optim.Adam(resumed.parameters(), lr=0.001), k=3, alpha=0.5, pullback="pullback", **extra)
    train(resumed, opt, batches(2, seed=9))  # counters, cache and slow weights that must go away
    if model_first:
        resumed.load_state_dict(ckpt["model"])
    opt.load_state_dict(copy.deepcopy(ckpt["opt"]))  # torch's load keeps the dict's state tensors (aliases)
    if not model_first:
        resumed.load_state_dict(ckpt["model"])
    assert "la_k" not in ckpt["opt"]["param_groups"][0]  # the caller's dict is not changed
    group = opt.param_groups[0]
    assert group["lr"] == 0.02 and group["la_k"] == 3 and group["la_alpha"] == 0.5
    assert opt._group_counters == [{"steps": 0, "syncs": 0}]
    assert opt._cached_state == {}
    for p, q in zip(resumed.parameters(), model.parameters()):
        torch.testing.assert_close(opt.state[p]["exp_avg"], plain.state[q]["exp_avg"], rtol=0, atol=0)
        assert opt.slow_weights(p) is not None and torch.equal(opt.slow_weights(p), q.detach())

    # from there it follows the paper's equations, started on the plain run's weights and state
    ref_model = make_model(seed=3)
    ref_model.load_state_dict(ckpt["model"])
    ref_inner = torch.optim.Adam(ref_model.parameters(), lr=0.5)
    ref_inner.load_state_dict(copy.deepcopy(ckpt["opt"]))
    ref = PaperLookahead(ref_model.parameters(), ref_inner, ref_inner.state, 3, 0.5, "pullback", **extra)
    for batch in batches(7, seed=11):
        for m, o in ((resumed, opt), (ref_model, ref)):
            m.zero_grad()
            loss_of(m, batch).backward()
            o.step()
        for p, q in zip(resumed.parameters(), ref_model.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", [Lookahead, NestedLookahead])
def test_loading_into_the_inner_optimizer_keeps_the_group_values(cls):
    model = make_model()
    plain = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=0.05)
    plain_sd = copy.deepcopy(plain.state_dict())
    extra = dict(s=2, h=0.25) if cls is NestedLookahead else {}
    opt = cls(torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=0.1),
              k=5, alpha=0.5, **extra)
    opt.param_groups[1]["la_k"] = 2  # changed by hand (or a schedule) after construction
    opt.param_groups[1]["la_alpha"] = 0.8
    opt.optimizer.load_state_dict(plain_sd)  # a plain checkpoint loaded straight into the inner optimizer
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.05]
    assert [(g["la_k"], g["la_alpha"]) for g in opt.param_groups] == [(5, 0.5), (2, 0.8)]
    if cls is NestedLookahead:
        assert [(g["nla_s"], g["nla_h"]) for g in opt.param_groups] == [(2, 0.25), (2, 0.25)]
    assert all("la_k" not in g for g in plain_sd["param_groups"])
    synced = []
    opt.register_sync_hook(lambda o, i, fast, slow: synced.append(i))
    train(model, opt, batches(4))  # used to raise KeyError: 'la_k'
    assert synced == [1, 1]


def test_keys_dropped_by_hand_take_the_defaults_at_the_step():
    model = make_model()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2, alpha=0.5)
    opt.optimizer.param_groups[0] = {k: v for k, v in opt.param_groups[0].items() if not k.startswith("la_")}
    train(model, opt, batches(2))
    assert opt.param_groups[0]["la_k"] == 2 and opt._group_counters[0]["syncs"] == 1


def test_a_group_added_to_the_inner_optimizer_directly_is_counted():
    model = make_model()
    extra = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2, alpha=0.5)
    train(model, opt, batches(1))
    opt.optimizer.add_param_group({"params": [extra], "lr": 0.5})
    start = extra.detach().clone()
    for batch in batches(2, seed=5):
        opt.zero_grad()
        (loss_of(model, batch) + (extra ** 2).sum()).backward()
        opt.step()
    assert len(opt._group_counters) == 2 and opt._group_counters[1] == {"steps": 0, "syncs": 1}
    torch.testing.assert_close(opt.slow_weights(extra), start + 0.5 * (start * 0.0 - start))  # fast: x -> 0 -> 0


def test_state_dict_survives_pickle_and_deepcopy_with_the_inner_hook():
    model, opt = two_group_setup()
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        clone.optimizer.load_state_dict(torch.optim.Adam(
            [{"params": clone.param_groups[0]["params"]}, {"params": clone.param_groups[1]["params"]}]).state_dict())
        assert clone.param_groups[1]["la_k"] == 3
        assert opt.param_groups[0]["lr"] == 0.01  # the original is untouched
        clone.step()  # no KeyError


# ---- group values: checked when added and at every step ---------------------------------------------
@pytest.mark.parametrize("cls,values,error,match", [
    (Lookahead, {"la_k": 0}, ValueError, "param_group: la_k must be a positive int"),
    (Lookahead, {"la_k": 2.5}, TypeError, "param_group: la_k must be a positive int"),
    (Lookahead, {"la_alpha": float("nan")}, ValueError, r"param_group: la_alpha must be in \(0, 1\]"),
    (Lookahead, {"la_alpha": 0.0}, ValueError, r"param_group: la_alpha must be in \(0, 1\]"),
    (NestedLookahead, {"nla_s": -1}, ValueError, "param_group: nla_s must be an int >= 0"),
    (NestedLookahead, {"nla_h": 1.5}, ValueError, r"param_group: nla_h must be in \(0, 1\]"),
])
def test_add_param_group_checks_before_adding(cls, values, error, match):
    model = make_model()
    extra = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = cls(torch.optim.SGD(model.parameters(), lr=0.1), k=2)
    with pytest.raises(error, match=match):
        opt.add_param_group({"params": [extra], **values})
    assert len(opt.param_groups) == 1 and len(opt.optimizer.param_groups) == 1 and len(opt._group_counters) == 1
    train(model, opt, batches(2))  # nothing half-added: steps work
    opt.add_param_group({"params": [extra]})  # and the parameter is free to join now
    assert opt.param_groups[1]["la_k"] == 2


@pytest.mark.parametrize("cls,key,value,error,match", [
    (Lookahead, "la_k", 0, ValueError, "param group 1: la_k must be a positive int"),
    (Lookahead, "la_k", 2.0, TypeError, "param group 1: la_k must be a positive int"),
    (Lookahead, "la_k", None, TypeError, "param group 1: la_k must be a positive int"),
    (Lookahead, "la_alpha", float("nan"), ValueError, r"param group 1: la_alpha must be in \(0, 1\], got nan"),
    (Lookahead, "la_alpha", 1.5, ValueError, r"param group 1: la_alpha must be in \(0, 1\]"),
    (NestedLookahead, "nla_s", -2, ValueError, "param group 1: nla_s must be an int >= 0"),
    (NestedLookahead, "nla_h", float("nan"), ValueError, r"param group 1: nla_h must be in \(0, 1\]"),
])
def test_group_values_changed_later_are_checked_at_the_step(cls, key, value, error, match):
    model = make_model()
    opt = cls(torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=0.1), k=2)
    train(model, opt, batches(1))
    opt.param_groups[1][key] = value
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    loss_of(model, batches(1, seed=4)[0]).backward()
    with pytest.raises(error, match=match):
        opt.step()
    for p, b in zip(model.parameters(), before):  # refused before the inner optimizer moved anything
        assert torch.equal(p, b)


# ---- a parameter frozen between two syncs -------------------------------------------------------------
@pytest.mark.parametrize("how", ["requires_grad", "grad_none"])
def test_parameter_frozen_between_syncs_moves_at_the_next_sync_as_the_paper_says(how):
    k, alpha = 4, 0.5
    model, ref_model = make_model(), make_model()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), k=k, alpha=alpha)
    ref_inner = torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9)
    ref = PaperLookahead(ref_model.parameters(), ref_inner, ref_inner.state, k, alpha, "none")
    frozen, ref_frozen = model[0].weight, ref_model[0].weight
    phi0 = frozen.detach().clone()
    for t, batch in enumerate(batches(12), start=1):
        for m, o, w in ((model, opt, frozen), (ref_model, ref, ref_frozen)):
            if t == 3 and how == "requires_grad":  # frozen after inner step 2, mid-cycle
                w.requires_grad_(False)
            m.zero_grad(set_to_none=True)
            loss_of(m, batch).backward()
            if t >= 3 and how == "grad_none":
                w.grad = None
            o.step()
        if t == 2:
            theta2 = frozen.detach().clone()
            assert not torch.equal(theta2, phi0)
        if t == 3:
            assert torch.equal(frozen, theta2)  # no inner step moves it (SGD skips grad None, momentum too)
        if t == k:  # the sync moved it: phi <- phi + alpha (theta - phi), theta <- phi
            torch.testing.assert_close(frozen.detach(), phi0 + alpha * (theta2 - phi0), rtol=0, atol=1e-15)
            assert torch.equal(opt.slow_weights(frozen), frozen.detach())
            synced = frozen.detach().clone()
        if t > k:  # then theta = phi and later syncs leave it where it is
            assert torch.equal(frozen, synced)
        for p, q in zip(model.parameters(), ref_model.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-12)
