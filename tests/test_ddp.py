"""Lookahead and NestedLookahead under DistributedDataParallel (2 CPU processes, gloo), and the
rank-0 guard: only rank 0 writes the results store.

* pure PyTorch (``torch.multiprocessing.spawn``): ranks seed their models differently and build the
  optimizer before wrapping the model; after training on rank-different data the weights, slow
  weights, outer slow weights and counters are identical on every rank;
* fastai (``torchrun`` + ``fit_and_record(distributed=True)``, fastai's DistributedTrainer):
  the same, and the store holds each run once, written by rank 0;
* the guard: a non-zero rank trains but writes nothing.
"""
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from lookahead_fastai import Lookahead, NestedLookahead
from lookahead_fastai.distributed import broadcast_lookahead_state
from lookahead_fastai.experiments import get_experiment
from lookahead_fastai.runner import fit_and_record
from lookahead_fastai.store import ResultsStore, store_files_dir

pytestmark = pytest.mark.slow  # several processes in a process group: `make test` runs it, `make check` does not

WORLD = 2


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


# name -> (optimizer factory, create the slow weights before wrapping?, then broadcast them?)
CASES = {
    "lookahead": (lambda ps: Lookahead(_sgd(ps), k=3, alpha=0.5), False, False),
    "lookahead_adam_pullback": (lambda ps: Lookahead(torch.optim.Adam(ps, lr=1e-2), k=2, alpha=0.5,
                                                     pullback="pullback"), False, False),
    "nested": (lambda ps: NestedLookahead(_sgd(ps), k=2, alpha=0.5, s=2, h=0.5), False, False),
    # slow weights created before the wrap (from rank-local weights): wrong until broadcast
    "early_copies": (lambda ps: NestedLookahead(_sgd(ps), k=2, alpha=0.5, s=2, h=0.5), True, False),
    "early_copies_broadcast": (lambda ps: NestedLookahead(_sgd(ps), k=2, alpha=0.5, s=2, h=0.5), True, True),
}
STEPS = 11  # k=2: 5 syncs (2 outer), k=3: 3 syncs, and a few steps past the last one


def _ddp_worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        results = {}
        for name, (make, early, broadcast) in CASES.items():
            torch.manual_seed(100 + rank)  # every rank starts from other weights
            model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
            initial = [p.detach().clone() for p in model.parameters()]
            opt = make(model.parameters())  # built before the model is wrapped
            params = list(model.parameters())
            if early:
                for p in params:
                    opt.slow_weights(p)
            ddp = DDP(model)  # broadcasts rank 0's weights into the same tensors
            if broadcast:
                broadcast_lookahead_state(opt)
            data = torch.Generator().manual_seed(1000 + rank)  # and sees other data
            for _ in range(STEPS):
                x, y = torch.randn(16, 6, generator=data), torch.randint(0, 3, (16,), generator=data)
                opt.zero_grad()
                F.cross_entropy(ddp(x), y).backward()
                opt.step()
            results[name] = {
                "initial": initial,
                "params": [p.detach().clone() for p in params],
                "slow": [opt.slow_weights(p).clone() for p in params],
                "outer": [opt.outer_slow_weights(p).clone() for p in params] if isinstance(opt, NestedLookahead) else [],
                "counters": [dict(c) for c in opt._group_counters],
            }
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_lookahead_state_is_identical_on_every_rank_under_ddp(tmp_path):
    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD))
    for name in CASES:
        a, b = r0[name], r1[name]
        assert not _same(a["initial"], b["initial"]), name  # the ranks did start apart
        assert not _same(a["params"], a["initial"]), name  # and they trained
        assert a["counters"] == b["counters"] and a["counters"][0]["syncs"] >= 3, name
        if name == "early_copies":  # slow weights from each rank's own weights: the ranks drift apart
            assert not _same(a["slow"], b["slow"]) and not _same(a["params"], b["params"])
            continue
        assert _same(a["params"], b["params"]), name
        assert _same(a["slow"], b["slow"]), name
        assert _same(a["outer"], b["outer"]), name
    assert r0["nested"]["outer"] and r0["early_copies_broadcast"]["outer"]


# -------------------------------------------------------------------------------------------------
# fastai: torchrun, DistributedTrainer, fit_and_record(distributed=True)
# -------------------------------------------------------------------------------------------------
SCRIPT = textwrap.dedent('''
    import os, sys
    from pathlib import Path
    import torch
    from fastai.callback.core import Callback
    from lookahead_fastai.callbacks.lookahead import lookahead_of
    from lookahead_fastai.experiments import RunSpec
    from lookahead_fastai.optim import NestedLookahead
    from lookahead_fastai.runner import fit_and_record

    out, rank = Path(sys.argv[1]), int(os.environ["RANK"])
    torch.set_num_threads(1)

    class StartApart(Callback):
        """Before DDP wraps the model (DistributedTrainer's order is 11): other weights per rank."""
        order = 5
        def before_fit(self):
            with torch.no_grad():
                for p in self.learn.model.parameters():
                    p.add_(0.05 * rank)

    class Dump(Callback):
        order = 100
        def __init__(self, name):
            self.run_name = name
        def after_fit(self):
            la = lookahead_of(self.learn)
            params = list(self.learn.model.parameters())
            torch.save({"wrapped": self.wrapped, "params": [p.detach().clone() for p in params],
                        "slow": [la.slow_weights(p).clone() for p in params],
                        "outer": [la.outer_slow_weights(p).clone() for p in params]
                                 if isinstance(la, NestedLookahead) else [],
                        "syncs": la._group_counters[0]["syncs"], "pid": os.getpid()},
                       out / f"{self.run_name}_rank{rank}.pt")
        def after_batch(self):
            self.wrapped = type(self.learn.model).__name__

    for name, optimizer, hyper in [("LA", "lookahead(sgd)", {"mom": 0.9, "k": 3, "alpha": 0.5}),
                                   ("NLA", "nested(sgd)", {"mom": 0.9, "k": 2, "alpha": 0.5, "s": 2, "h": 0.5})]:
        spec = RunSpec(experiment="ddp", name=name, dataset="digits", arch="mlp", optimizer=optimizer, lr=0.05,
                       hyper=hyper, epochs=2, bs=16, scale="smoke", n_train=256, n_valid=64)
        fit_and_record(spec, 0, store=out / "results.sqlite", device="cpu", wandb="offline", distributed=True,
                       extra_cbs=[StartApart(), Dump(name)])
''')


def test_fastai_distributed_run_keeps_ranks_in_step_and_rank0_writes(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
                           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(script), str(tmp_path)],
                          capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pids = set()
    for name in ("LA", "NLA"):
        a, b = (torch.load(tmp_path / f"{name}_rank{r}.pt") for r in range(WORLD))
        assert a["wrapped"] == b["wrapped"] == "DistributedDataParallel"
        assert _same(a["params"], b["params"]), name
        assert _same(a["slow"], b["slow"]), name
        assert _same(a["outer"], b["outer"]), name
        assert a["syncs"] == b["syncs"] >= 4
        pids.add(a["pid"])
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:
        runs = conn.execute("SELECT name, status, pid FROM runs ORDER BY name").fetchall()
        epochs = conn.execute("SELECT run_id, COUNT(*) FROM epochs GROUP BY run_id").fetchall()
    assert [(n, s) for n, s, _ in runs] == [("LA", "finished"), ("NLA", "finished")]
    assert {p for _, _, p in runs} == pids  # written by rank 0
    assert sorted(n for _, n in epochs) == [2, 2]
    checkpoints = store_files_dir(tmp_path / "results.sqlite") / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())
    wandb_runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2  # one per run, from rank 0


# -------------------------------------------------------------------------------------------------
# the rank-0 guard
# -------------------------------------------------------------------------------------------------
def _demo_spec(name="SGD"):
    return next(s for s in get_experiment("demo").specs("smoke") if s.name == name)


def test_non_zero_rank_trains_but_writes_nothing(tmp_path, monkeypatch):
    store = tmp_path / "results.sqlite"
    monkeypatch.setenv("RANK", "1")  # what torchrun sets; fastai's rank_distrib() reads it
    record = fit_and_record(_demo_spec(), 0, store=store, wandb="offline")
    assert record["epochs"] == 2 and record["final"]["accuracy"] > 0
    with ResultsStore(store) as db:
        assert db.runs() == [] and db.epochs(record["run_id"]) == []
    assert not store_files_dir(store).exists() and not (tmp_path / "wandb").exists()

    monkeypatch.setenv("RANK", "0")
    again = fit_and_record(_demo_spec(), 0, store=store)
    with ResultsStore(store) as db:
        assert [r["status"] for r in db.runs()] == ["finished"] and len(db.epochs(record["run_id"])) == 2
    assert again["final"] == pytest.approx(record["final"] | {"time": again["final"]["time"]})

    monkeypatch.setenv("RANK", "1")  # a finished run is skipped on every rank, read from the store
    assert fit_and_record(_demo_spec(), 0, store=store)["seconds"] == again["seconds"]


def test_observed_run_reads_and_never_writes(tmp_path):
    # what a non-zero rank gets: ResultsStore.observe, a lease that reads and writes nothing
    path = tmp_path / "results.sqlite"
    with ResultsStore(path) as db:
        db.claim("r1", "demo", "SGD", 0, {"a": 1}, heartbeat_s=0)
        db.log_epoch("r1", 0, {"accuracy": 0.5})
        ro = db.observe("r1")
        assert ro.state == "observed" and not ro.writes
        ro.log_epoch(1, {"accuracy": 0.6})
        ro.finish({"final": {}})
        ro.fail("boom")
        assert ro.resume_point() is None and ro.resume_point(resumable=False) is None
        assert db.observe("r2").state == "observed"
        assert db.status("r1") == "running" and db.status("r2") is None and not db.is_finished("r1")
        assert db.epochs("r1") == [{"accuracy": 0.5, "epoch": 0}]
        assert ro.checkpoint_dir == store_files_dir(path) / "checkpoints" / "r1"
        assert not ro.checkpoint_dir.exists() and not store_files_dir(path).exists()
        assert [r["run_id"] for r in db.runs()] == ["r1"]
        # an unreadable checkpoint is neither moved aside nor dropped by an observer
        ro.checkpoint_dir.mkdir(parents=True)
        (ro.checkpoint_dir / "last.pth").write_bytes(b"garbage")
        assert ro.resume_point() is None
        assert [p.name for p in ro.checkpoint_dir.iterdir()] == ["last.pth"]
        assert db.epochs("r1") == [{"accuracy": 0.5, "epoch": 0}]
        db.finish_run("r1", {"final": {"accuracy": 0.7}})
        done = db.observe("r1")
        assert done.state == "finished" and done.record == {"final": {"accuracy": 0.7}}


def test_cli_on_a_non_zero_rank_prints_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from lookahead_fastai import cli
    monkeypatch.setenv("RANK", "1")
    store = tmp_path / "results.sqlite"
    assert cli.main(["run", "demo", "--seeds", "1", "--only", "SGD", "--store", str(store)]) == 0
    assert capsys.readouterr().out == ""
    with ResultsStore(store) as db:
        assert db.runs() == []
