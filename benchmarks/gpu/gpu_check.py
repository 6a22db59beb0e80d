"""GPU check: one prepared run that measures the suite on a lent GPU (one H100) in under 8 minutes.

Run it through ``benchmarks/gpu/run.sh`` (which installs the carried wheels first); it writes
``gpu.md`` and ``gpu.json`` to ``--out``. Sections, each in its own time box (a section that fails
or runs out of time is recorded as such and the next one still runs; both files are rewritten
after every section, so whatever finished survives a kill):

1. correctness: our Lookahead on the device against the paper's equations (tests/reference.py, on
   the CPU), SGD and Adam x pullback none/reset/pullback, fp32 (TF32 off), 50 steps, max abs
   difference; then a bf16-autocast + GradScaler run that must train (loss goes down);
2. optimizer step: ours, timm's and pytorch_optimizer's Lookahead against the bare SGD-momentum
   step on ResNet-18's parameters, with benchmarks/bench_optimizer_step.py's interleaved rounds
   and medians (the GPU is synchronised at the end of every timed block);
3. epoch time: the CIFAR ResNet-18 (``cifar_resnet18``) on 50,000 + 10,000 SYNTHETIC uint8 images
   of CIFAR's shape held on the GPU, bs 512, bf16 autocast + channels-last, SGD-momentum with and
   without Lookahead, through fastai's Learner and through a minimal PyTorch loop; interleaved
   rounds, medians;
4. real data: the CIFAR-10 subset (5,085 / 1,017 real images), 10 epochs of LA/SGD (then SGD, if
   time is left) through ``lookahead_fastai.runner.fit_and_record`` on the device, temporary store;
5. projection: GPU-hours of every experiment's ``full`` specs, (a) from section 3's epoch time
   scaled by dataset size, (b) from a short Learner timing of each distinct architecture / input
   size / batch size as ``fit_and_record`` builds it (mixed precision as the runner picks it, deterministic cuDNN);
6. loader: images/s of the PIL data path (``build_dataloaders(..., path="pil")``: decode, item
   transforms, pinned copy to the device, normalisation) with the machine's core count of worker
   processes (the default), for every (dataset, image size, augmentation) a ``full`` spec loads
   through it, against the model's images/s of section 5 for the rows using it: which of the two
   limits a ``full`` run (``lookahead-fastai plan`` takes the slower); folder datasets are stood in
   for by JPEGs of their shape written from the CIFAR-10 subset (no Imagenette here);
7. the package's optimizer tests (tests/test_lookahead.py) under this machine's torch.

``--smoke``: tiny sizes on the CPU, well under a minute; tests/test_gpu_script.py runs it so the
script cannot rot without a GPU. Smoke figures are no measurement.
"""
import sys

if "--simulate-machine" in sys.argv:  # before any third-party import: see machine_sim.py
    sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
    import machine_sim
    machine_sim.install()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import datetime as dt  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
for extra in (ROOT / "tests", ROOT / "benchmarks", ROOT):  # reference.py, bench_optimizer_step.py, the package
    sys.path.insert(0, str(extra))

_TMP = Path(tempfile.mkdtemp(prefix="gpu-check-"))
os.environ.setdefault("LOOKAHEAD_FASTAI_OFFLINE", "1")
os.environ.setdefault("LOOKAHEAD_FASTAI_CACHE", str(_TMP / "cache"))
os.environ.setdefault("FASTAI_HOME", str(_TMP / "fastai_home"))
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402

import lookahead_fastai  # noqa: E402,F401  (silences fastai's torch.jit notice before fastai loads)

from lookahead_fastai.data import CROP_PAD  # noqa: E402
# what a spec costs (full dataset sizes from DatasetInfo, the configuration a timing measures):
# planning's, which reads this script's gpu.json for `lookahead-fastai plan` by the same fields
from lookahead_fastai.planning import (CONFIG_FIELDS, LOADER_FIELDS, config_key, entry_key,  # noqa: E402
                                       loader_key, on_pil_path, spec_sizes)
from lookahead_fastai.registry.datasets import dataset_info  # noqa: E402

K, ALPHA = 5, 0.5


@dataclass
class Config:
    mode: str
    device: str
    total_s: float               # the whole script's time box
    correct_steps: int = 50
    bf16_steps: int = 120
    bf16_size: int = 16
    bf16_bs: int = 128
    step_rounds: int = 15
    step_steps: int = 50
    epoch_n_train: int = dataset_info("cifar10").full_train  # one CIFAR-10-sized epoch
    epoch_n_valid: int = dataset_info("cifar10").full_valid
    epoch_bs: int = 512
    epoch_rounds: int = 3
    epoch_size: int = 32         # image side of the synthetic data (CIFAR's 32)
    width: int = 64              # cifar_resnet18's base width (64 is the real network)
    real_epochs: int = 10
    real_bs: int = 128
    real_arch: str = "cifar_resnet18"
    real_n_train: int | None = None
    real_n_valid: int | None = None
    proj_train_batches: int = 20
    proj_valid_batches: int = 5
    proj_bs_cap: int | None = None   # smoke: tiny batches and images
    proj_size_cap: int | None = None
    proj_max_configs: int | None = None  # smoke: measure only the first few
    loader_distinct: int = 512       # distinct JPEGs written per folder-dataset shape ...
    loader_images: int = 4096        # ... linked to this many training items (validation: a quarter)
    loader_passes: int = 2           # timed full passes per configuration (after one warm-up pass)
    loader_size_cap: int | None = None
    loader_bs_cap: int | None = None
    loader_max_configs: int | None = None
    tests: tuple = ("tests/test_lookahead.py",)
    tests_collect_only: bool = False


# section -> planned seconds (the cooperative budget; a hard stop follows a little after)
BUDGETS_FULL = {"correctness": 25, "optimizer_step": 25, "epoch_time": 110, "real_data": 80, "projection": 75,
                "loader": 40, "tests": 45}
# smoke: the work is fixed and tiny; the boxes only catch a hang (2 shared cores can be many times slower)
BUDGETS_SMOKE = {"correctness": 60, "optimizer_step": 60, "epoch_time": 60, "real_data": 60, "projection": 60,
                 "loader": 60, "tests": 60}
MIN_SECTION_S = 8   # kept in hand for every later section when a section's box is cut to fit the total
HARD_GRACE_S = 10   # a section is stopped at 1.25 x its box + this, if it has not stopped itself


def full_config(device, total_s):
    return Config(mode="full", device=device, total_s=total_s)


def smoke_config(device, total_s):
    return Config(mode="smoke", device=device, total_s=total_s, correct_steps=10, bf16_steps=30, bf16_size=8,
                  bf16_bs=32, step_rounds=3, step_steps=5, epoch_n_train=128, epoch_n_valid=64, epoch_bs=32,
                  epoch_rounds=1, epoch_size=16, width=4, real_epochs=2, real_bs=64, real_arch="small_cnn",
                  real_n_train=256, real_n_valid=128, proj_train_batches=2, proj_valid_batches=1, proj_bs_cap=4,
                  proj_size_cap=16, proj_max_configs=2, loader_distinct=16, loader_images=64, loader_passes=1,
                  loader_size_cap=32, loader_bs_cap=16, loader_max_configs=2, tests_collect_only=True)


# --------------------------------------------------------------------------- time boxes
class SectionTimeout(Exception):
    pass


class Deadline:
    def __init__(self, seconds):
        self.seconds = seconds
        self.start = time.perf_counter()

    def elapsed(self):
        return time.perf_counter() - self.start

    def left(self):
        return self.seconds - self.elapsed()

    def over(self):
        return self.left() <= 0


@contextlib.contextmanager
def hard_stop(seconds):
    """Raise SectionTimeout in the main thread after ``seconds`` (SIGALRM; a no-op where absent)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum, frame):
        raise SectionTimeout(f"stopped by its hard time box after {seconds:.0f} s")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1.0))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def free_memory():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- 1. correctness
def _mlp(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))


def _inner(name, params):
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    return torch.optim.Adam(params, lr=1e-2)


def _batches(n):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(32, 20, generator=g), torch.randint(0, 10, (32,), generator=g)) for _ in range(n)]


def _trajectory_ours(inner, mode, device, batches):
    from lookahead_fastai.optim import Lookahead
    model = _mlp(0).to(device)
    opt = Lookahead(_inner(inner, model.parameters()), k=K, alpha=ALPHA, pullback=mode)
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device)).backward()
        opt.step()
    return [p.detach().to("cpu") for p in model.parameters()]


def _trajectory_reference(inner, mode, batches):
    from reference import PaperLookahead
    model = _mlp(0)
    opt = _inner(inner, model.parameters())
    ref = PaperLookahead(model.parameters(), opt, opt.state, K, ALPHA, mode)
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        ref.step()
    return [p.detach().clone() for p in model.parameters()]


def _max_diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def section_correctness(res, deadline, cfg):
    device = cfg.device
    matmul_tf32, cudnn_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    tol = 1e-4
    res.update(steps=cfg.correct_steps, k=K, alpha=ALPHA, tolerance=tol, device=device, rows=[],
               model="MLP 20-32-10 (tanh), fp32, TF32 off; SGD(lr 0.1, mom 0.9, wd 1e-4) / Adam(lr 1e-2)")
    try:
        batches = _batches(cfg.correct_steps)
        for inner in ("sgd", "adam"):
            for mode in ("none", "reset", "pullback"):
                if deadline.over():
                    res["stopped_early"] = "time box"
                    break
                ref = _trajectory_reference(inner, mode, batches)
                ours_dev = _trajectory_ours(inner, mode, device, batches)
                ours_cpu = _trajectory_ours(inner, mode, "cpu", batches)
                diff_dev, diff_cpu = _max_diff(ours_dev, ref), _max_diff(ours_cpu, ref)
                res["rows"].append({"inner": inner, "pullback": mode, "device_vs_reference": diff_dev,
                                    "cpu_vs_reference": diff_cpu,
                                    "max_abs_param": max(p.abs().max().item() for p in ref),
                                    "ok": bool(diff_dev <= tol and diff_cpu <= tol)})
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul_tf32, cudnn_tf32
    res["all_ok"] = bool(res["rows"]) and all(r["ok"] for r in res["rows"]) and len(res["rows"]) == 6
    res["bf16"] = _bf16_gradscaler_run(cfg)


def _bf16_gradscaler_run(cfg):
    """Lookahead(SGD) under bf16 autocast with a GradScaler on a learnable synthetic task."""
    from lookahead_fastai.optim import Lookahead
    from lookahead_fastai.registry.architectures import small_cnn
    device = cfg.device
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    torch.manual_seed(0)
    n, size = 2048, cfg.bf16_size
    templates = torch.randn(10, 3, size, size)
    y_all = torch.randint(0, 10, (n,))
    x_all = (templates[y_all] + 0.8 * torch.randn(n, 3, size, size)).to(device)
    y_all = y_all.to(device)
    model = small_cnn(3, 10, width=16).to(device)
    if device_type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), k=K, alpha=ALPHA, pullback="pullback")
    scaler = torch.amp.GradScaler(device_type)
    losses, out_dtype = [], None
    g = torch.Generator().manual_seed(2)
    for _ in range(cfg.bf16_steps):
        idx = torch.randint(0, n, (cfg.bf16_bs,), generator=g).to(device)
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = model(x_all[idx])
            loss = torch.nn.functional.cross_entropy(out, y_all[idx])
        out_dtype = str(out.dtype)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    first, last = statistics.mean(losses[:5]), statistics.mean(losses[-5:])
    with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16):
        accuracy = (model(x_all).argmax(1) == y_all).float().mean().item()
    return {"steps": cfg.bf16_steps, "first5_loss": first, "last5_loss": last, "train_accuracy": accuracy,
            "autocast_output_dtype": out_dtype, "grad_scale": float(scaler.get_scale()),
            "trains": bool(math.isfinite(last) and last < 0.5 * first),
            "setup": f"small_cnn(width 16) on 2,048 synthetic {size}x{size} images (class template + noise), "
                     f"bs {cfg.bf16_bs}, Lookahead(SGD lr 0.05 mom 0.9, pullback) under torch.autocast(bf16) + "
                     "torch.amp.GradScaler"}


# --------------------------------------------------------------------------- 2. optimizer step
class _SyncEvery:
    """An optimizer whose step() waits for the GPU every ``n`` steps: bench_optimizer_step.measure
    times blocks of ``n`` steps (warm-up included), so each timed block ends with the GPU idle."""

    def __init__(self, optimizer, n):
        self.optimizer, self.n, self.count = optimizer, n, 0

    def step(self):
        self.optimizer.step()
        self.count += 1
        if self.count % self.n == 0:
            torch.cuda.synchronize()


def section_optimizer_step(res, deadline, cfg):
    import bench_optimizer_step as bos  # imports timm and pytorch_optimizer (carried as a wheel)
    import torchvision
    device = cfg.device
    torch.manual_seed(0)
    base = torchvision.models.resnet18(num_classes=10).to(device)
    grads = [torch.randn_like(p) * 1e-3 for p in base.parameters()]
    contenders = {}
    for name, factory in bos.CONTENDERS.items():  # the CPU benchmark's contenders, on this device
        model = copy.deepcopy(base)
        for p, g in zip(model.parameters(), grads):
            p.grad = g.clone()
        opt = factory(model)
        contenders[name] = (model, _SyncEvery(opt, cfg.step_steps) if device.startswith("cuda") else opt)
    with torch.no_grad():
        times = bos.measure(contenders, cfg.step_rounds, cfg.step_steps, cfg.step_steps, max(deadline.left(), 1))
    rows = bos.summarize(times)
    res.update(device=device, rounds=len(times[bos.BASELINE]), steps_per_round=cfg.step_steps, k=bos.K,
               setup=f"torchvision resnet18(num_classes=10) ({sum(p.numel() for p in base.parameters()) / 1e6:.2f}M "
                     f"params, {len(grads)} tensors) on {device}, fixed random .grad, SGD(lr {bos.LR}, momentum "
                     f"{bos.MOMENTUM}), k={bos.K}, alpha={bos.ALPHA}; warm-up {cfg.step_steps} steps, interleaved "
                     f"rounds of {cfg.step_steps} steps, median over rounds",
               rows=rows, table=bos.format_table(rows))


# --------------------------------------------------------------------------- 3. epoch time
def _synthetic_dls(n_train, n_valid, bs, device, channels=3, size=32, n_classes=10, crop_flip=True, seed=0):
    from fastai.data.core import DataLoaders
    from lookahead_fastai.data import BatchAugment, TensorDataLoader
    g = torch.Generator().manual_seed(seed)
    x_tr = torch.randint(0, 256, (n_train, channels, size, size), dtype=torch.uint8, generator=g).to(device)
    y_tr = torch.randint(0, n_classes, (n_train,), generator=g).to(device)
    x_va = torch.randint(0, 256, (n_valid, channels, size, size), dtype=torch.uint8, generator=g).to(device)
    y_va = torch.randint(0, n_classes, (n_valid,), generator=g).to(device)
    mean, std = dataset_info("cifar10").stats if channels == 3 else ((0.5,), (0.25,))
    pad = CROP_PAD if crop_flip else 0
    train = TensorDataLoader(x_tr, y_tr, BatchAugment(mean, std, pad, crop_flip, train=True), bs=bs, shuffle=True,
                             drop_last=True)
    valid = TensorDataLoader(x_va, y_va, BatchAugment(mean, std), bs=bs * 2, shuffle=False, drop_last=False)
    return DataLoaders(train, valid, device=torch.device(device))



def _timed_epoch(learn, lr, device):
    """(seconds of one ``fit(1, lr)`` epoch, seconds of one ``validate()`` after it), each bracketed by
    device syncs; train time is their difference (the fit validates once too)."""
    with learn.no_bar(), learn.no_logging():
        sync(device)
        start = time.perf_counter()
        learn.fit(1, lr)
        sync(device)
        total = time.perf_counter() - start
        start = time.perf_counter()
        learn.validate()
        sync(device)
        valid = time.perf_counter() - start
    return total, valid

def _learner_runner(dls, cfg, lookahead, lr):
    from fastai.callback.channelslast import ChannelsLast  # noqa: F401  (patches Learner.to_channelslast)
    from fastai.callback.training import ShortEpochCallback
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from lookahead_fastai.registry.architectures import body_and_head, cifar_resnet18
    from lookahead_fastai.registry.optimizers import make_opt_func
    torch.manual_seed(0)
    hyper = {"mom": 0.9, "wd": 5e-4, **({"k": K, "alpha": ALPHA} if lookahead else {})}
    learn = Learner(dls, cifar_resnet18(3, 10, width=cfg.width), loss_func=CrossEntropyLossFlat(),
                    opt_func=make_opt_func("lookahead(sgd)" if lookahead else "sgd", **hyper), metrics=[accuracy],
                    splitter=body_and_head)
    learn.model.to(cfg.device)
    if cfg.device.startswith("cuda"):
        learn.to_channelslast(amp_mode="bf16")  # ChannelsLast + MixedPrecision(bf16)
    # on the CPU (smoke) neither: fastai's AMP callback is CUDA-only, and oneDNN's channels-last 1x1
    # convolution backward hung or crashed ("double free") here with the smoke's tiny widths

    def warmup():
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, lr, cbs=ShortEpochCallback(pct=0.1, short_valid=True))

    def epoch():
        total, valid = _timed_epoch(learn, lr, cfg.device)
        return {"epoch_s": total, "train_s": total - valid, "valid_s": valid}
    return warmup, epoch


def _minimal_runner(dls, cfg, lookahead, lr):
    """A hand-written loop over the same tensors, augmentation, model, AMP and optimizer."""
    from lookahead_fastai.optim import Lookahead
    from lookahead_fastai.registry.architectures import cifar_resnet18
    device = cfg.device
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    use_amp = device_type == "cuda"
    torch.manual_seed(0)
    model = cifar_resnet18(3, 10, width=cfg.width).to(device)
    if use_amp:  # cuda: channels-last as the Learner's ChannelsLast callback (not on the CPU: see above)
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    if lookahead:
        opt = Lookahead(opt, k=K, alpha=ALPHA)
    train, valid = dls.train, dls.valid

    def train_steps(limit=None):
        model.train()
        n = len(train.x) // train.bs * train.bs
        perm = torch.randperm(len(train.x), device=train.x.device)[:n]
        for i, start in enumerate(range(0, n, train.bs)):
            if limit is not None and i >= limit:
                break
            idx = perm[start:start + train.bs]
            xb, yb = train.augment((train.x[idx], train.y[idx]))
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_amp):
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    def eval_pass():
        model.eval()
        correct = torch.zeros((), device=device)
        with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_amp):
            for start in range(0, len(valid.x), valid.bs):
                xb, yb = valid.augment((valid.x[start:start + valid.bs], valid.y[start:start + valid.bs]))
                correct += (model(xb).argmax(1) == yb).sum()
        return correct

    def warmup():
        train_steps(limit=max(2, len(train.x) // train.bs // 10))
        eval_pass()
        sync(device)

    def epoch():
        sync(device)
        start = time.perf_counter()
        train_steps()
        sync(device)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        eval_pass()
        sync(device)
        valid_s = time.perf_counter() - start
        return {"epoch_s": train_s + valid_s, "train_s": train_s, "valid_s": valid_s}
    return warmup, epoch


EPOCH_CONFIGS = [("fastai Learner", "SGD", _learner_runner, False),
                 ("fastai Learner", "Lookahead(SGD)", _learner_runner, True),
                 ("minimal loop", "SGD", _minimal_runner, False),
                 ("minimal loop", "Lookahead(SGD)", _minimal_runner, True)]


def section_epoch_time(res, deadline, cfg):
    cudnn_flags = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False
    lr = 0.01
    res.update(data=f"SYNTHETIC: {cfg.epoch_n_train:,} train + {cfg.epoch_n_valid:,} valid uint8 images of shape "
                    f"3x{cfg.epoch_size}x{cfg.epoch_size} held on {cfg.device} (random pixels and labels: timing only)",
               setup=f"cifar_resnet18 (width {cfg.width}), bs {cfg.epoch_bs} (valid {2 * cfg.epoch_bs}), "
                     f"{'bf16 autocast + channels-last' if cfg.device.startswith('cuda') else 'fp32 (cpu)'}, "
                     f"SGD(lr {lr}, mom 0.9, wd 5e-4), Lookahead k={K} alpha={ALPHA}; pad-4 crop + flip on the "
                     "GPU (the package's BatchAugment); cuDNN benchmark on; one warm-up (a tenth of an epoch) "
                     "per contender, then interleaved rounds of one epoch each, medians",
               device=cfg.device, rows=[], rounds=0)
    if cfg.mode == "full":
        res["target_epoch_s"] = 6.0  # the issue's target: one CIFAR-10-sized epoch on one H100
    try:
        dls = _synthetic_dls(cfg.epoch_n_train, cfg.epoch_n_valid, cfg.epoch_bs, cfg.device, size=cfg.epoch_size)
        runners = {}
        for path, opt_name, build, lookahead in EPOCH_CONFIGS:
            warmup, epoch = build(dls, cfg, lookahead, lr)
            warmup()
            runners[(path, opt_name)] = epoch
        times = {key: [] for key in runners}
        for r in range(cfg.epoch_rounds):
            keys = list(runners)
            keys = keys[r % len(keys):] + keys[:r % len(keys)]
            for key in keys:
                times[key].append(runners[key]())
                _summarize_epochs(res, times)  # after every epoch: a stopped section keeps what it measured
            res["rounds"] = r + 1
            if deadline.elapsed() * (r + 2) / (r + 1) > deadline.seconds:  # no time for another round
                break
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn_flags


def _summarize_epochs(res, times):
    rows = []
    for (path, opt_name), ts in times.items():
        if not ts:
            continue
        rows.append({"path": path, "optimizer": opt_name, "epochs": len(ts),
                     **{k: statistics.median(t[k] for t in ts) for k in ("epoch_s", "train_s", "valid_s")}})
    res["rows"] = rows
    by = {(r["path"], r["optimizer"]): r for r in rows}

    def ratio(a, b, key):
        return by[a][key] / by[b][key] if a in by and b in by else None
    res["ratios"] = {
        "learner_over_minimal_sgd_train": ratio(("fastai Learner", "SGD"), ("minimal loop", "SGD"), "train_s"),
        "learner_over_minimal_lookahead_train": ratio(("fastai Learner", "Lookahead(SGD)"),
                                                      ("minimal loop", "Lookahead(SGD)"), "train_s"),
        "lookahead_over_sgd_learner_train": ratio(("fastai Learner", "Lookahead(SGD)"), ("fastai Learner", "SGD"),
                                                  "train_s"),
        "lookahead_over_sgd_minimal_train": ratio(("minimal loop", "Lookahead(SGD)"), ("minimal loop", "SGD"),
                                                  "train_s"),
    }


# --------------------------------------------------------------------------- 4. real data
def real_data_specs(cfg):
    from lookahead_fastai.experiments.spec import RunSpec
    common = dict(experiment="gpu_check", dataset="cifar10", arch=cfg.real_arch, epochs=cfg.real_epochs,
                  bs=cfg.real_bs, scale="cpu", schedule="step",
                  schedule_params={"milestones": [0.3, 0.6, 0.8], "factor": 0.2},
                  n_train=cfg.real_n_train, n_valid=cfg.real_n_valid)
    # start_off's CIFAR-10 rows (lr, momentum, L2 weight decay, k, alpha)
    return [RunSpec(name="LA/SGD", optimizer="lookahead(sgd)", lr=0.1,
                    hyper={"mom": 0.9, "wd": 5e-4, "k": K, "alpha": ALPHA}, **common),
            RunSpec(name="SGD", optimizer="sgd", lr=0.05, hyper={"mom": 0.9, "wd": 5e-4}, **common)]


def section_real_data(res, deadline, cfg, data_dir):
    from lookahead_fastai.runner import fit_and_record
    res.update(data_dir=str(data_dir), device=cfg.device, runs=[],
               setup=f"CIFAR-10 subset (real images), {cfg.real_arch}, {cfg.real_epochs} epochs, bs {cfg.real_bs}, "
                     "step decay x0.2 at 30/60/80%, start_off's C10 lr/mom/wd; one seed; through "
                     "fit_and_record(spec, seed, store=<temporary>, data_dir, device)")
    with tempfile.TemporaryDirectory(prefix="gpu-check-store-") as tmp:
        for spec in real_data_specs(cfg):
            done = res["runs"]
            if done and deadline.left() < 1.3 * done[0]["wall_s"]:
                res["skipped"] = f"{spec.name}: not enough time left in the box"
                break
            start = time.perf_counter()
            record = fit_and_record(spec, 0, store=str(Path(tmp) / "results.sqlite"), data_dir=str(data_dir),
                                    device=cfg.device)
            wall = time.perf_counter() - start
            record = dict(record) if isinstance(record, dict) else {"record": record}
            final = record.get("final") or {}
            slow = record.get("slow") or {}
            epochs = record.get("epochs") or cfg.real_epochs
            res["runs"].append({"name": spec.name, "wall_s": wall, "epochs": epochs,
                                "final_accuracy": final.get("accuracy"), "best_accuracy": record.get("best_accuracy"),
                                "final_valid_loss": final.get("valid_loss"), "slow_accuracy": slow.get("accuracy"),
                                "seconds": record.get("seconds"), "device": record.get("device"),
                                "n_train": record.get("n_train"), "n_valid": record.get("n_valid"),
                                "record": record})


# --------------------------------------------------------------------------- 5. projection
def _epochs_of(spec):
    return getattr(spec, "total_epochs", None) or spec.epochs


def _label(key):
    """The human label of a (arch, dataset, size, bs) or (dataset, size, augment) key, for gpu.md;
    what was measured is in each entry's ``config`` (planning reads that, never the label)."""
    if len(key) == len(CONFIG_FIELDS):
        return f"{key[0]} · {key[1]} · {key[2]}px · bs {key[3]}"
    return f"{key[0]} · {key[1]}px · {key[2]}"


def _measure_config(key, cfg):
    """Seconds per train image and per valid image of one (arch, dataset, size, bs), through a Learner
    built as fit_and_record builds it, on synthetic tensors on the device."""
    from fastai.callback.fp16 import MixedPrecision  # noqa: F401  (patches Learner.to_fp16)
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.torch_core import set_seed
    from lookahead_fastai.registry.architectures import build_learner
    from lookahead_fastai.registry.optimizers import make_opt_func
    from lookahead_fastai.runner import mixed_precision_mode
    arch, dataset, size, bs = key
    info = dataset_info(dataset)
    if cfg.proj_bs_cap:
        bs = min(bs, cfg.proj_bs_cap)
    if cfg.proj_size_cap:
        size = min(size, cfg.proj_size_cap)
    set_seed(0, reproducible=True)  # as fit_and_record: cuDNN deterministic, no benchmark
    n_train, n_valid = cfg.proj_train_batches * bs, cfg.proj_valid_batches * 2 * bs
    dls = _synthetic_dls(n_train, n_valid, bs, cfg.device, channels=info.channels, size=size,
                         n_classes=info.n_classes, crop_flip=dataset.startswith("cifar"))
    learn = build_learner(arch, dls, info.channels, info.n_classes, size, loss_func=CrossEntropyLossFlat(),
                          opt_func=make_opt_func("lookahead(sgd)", mom=0.9, k=K, alpha=ALPHA), metrics=[accuracy])
    learn.model.to(cfg.device)
    precision = mixed_precision_mode(cfg.device)  # as the runner: bf16 autocast where supported, else fp16
    if precision == "bf16":
        learn.to_bf16()
    elif precision == "fp16":
        learn.to_fp16()
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 0.01)  # warm-up
    total, valid = _timed_epoch(learn, 0.01, cfg.device)
    return {"bs": bs, "size": size, "train_s_per_image": (total - valid) / n_train,
            "valid_s_per_image": valid / n_valid}


def section_projection(res, deadline, cfg, epoch_result):
    from lookahead_fastai.experiments import EXPERIMENTS
    base = None
    if epoch_result:
        rows = {(r["path"], r["optimizer"]): r for r in epoch_result.get("rows", [])}
        base = rows.get(("fastai Learner", "Lookahead(SGD)")) or rows.get(("fastai Learner", "SGD"))
    res.update(method=(
        "(a) from section 3: fastai Learner + Lookahead(SGD) seconds per epoch of the CIFAR ResNet-18 "
        f"({cfg.epoch_n_train:,} train / {cfg.epoch_n_valid:,} valid), scaled per spec by its n_train / "
        f"{cfg.epoch_n_train:,} (train part) and n_valid / {cfg.epoch_n_valid:,} (validation), times epochs x "
        "seeds: ignores that the spec's architecture and image size differ (a ResNet-50 at 128-160 px costs far "
        "more per image; an MLP far less). (b) per distinct (architecture, dataset, image size, bs): seconds per "
        "train and per valid image through a Learner built as fit_and_record builds it (the package's "
        "build_learner, mixed precision as the runner picks it (bf16 autocast where the GPU supports it, else "
        "fp16 + GradScaler), deterministic cuDNN as set_seed(reproducible=True) leaves it, "
        "Lookahead(SGD)) on synthetic tensors held on the GPU, times n_train / n_valid, epochs and seeds. Both "
        "leave out data loading: folder datasets (Imagenette, Imagewoof, data_path 'pil') decode JPEG/PNG with "
        "PIL on the CPU in fastai's DataLoader, which (b) does not time, so their figures are lower bounds "
        "(section 6 times that loader; `lookahead-fastai plan` takes the slower of the two). "
        "Full dataset sizes: official splits."),
        base_epoch=base, experiments=[], configs={})
    keys = {}
    experiments = []
    for name, exp in EXPERIMENTS.items():
        specs = exp.specs("full")
        seeds = exp.default_seeds.get("full", 1) if isinstance(getattr(exp, "default_seeds", None), dict) else 1
        experiments.append((name, specs, seeds))
        for spec in specs:
            keys.setdefault(config_key(spec), 0)
            keys[config_key(spec)] += seeds * _epochs_of(spec)
    # (b): measure the configs that weigh most first, while the box allows
    measured = {}
    for i, key in enumerate(sorted(keys, key=lambda k: -keys[k])):
        label, config = _label(key), dict(zip(CONFIG_FIELDS, key))
        if cfg.proj_max_configs is not None and i >= cfg.proj_max_configs:
            res["configs"][label] = {"status": f"not measured (smoke: first {cfg.proj_max_configs} configs only)",
                                     "config": config}
            continue
        if deadline.left() < 3:
            res["configs"][label] = {"status": "not measured (time box)", "config": config}
            continue
        try:
            measured[key] = _measure_config(key, cfg)
            res["configs"][label] = {"status": "ok", "config": config, **measured[key]}
        except Exception as e:  # one config's failure leaves the others
            res["configs"][label] = {"status": f"error: {type(e).__name__}: {e}", "config": config}
        free_memory()
    total_a = total_b = 0.0
    complete_b = True
    for name, specs, seeds in experiments:
        hours_a = hours_b = 0.0
        ok_a = ok_b = True
        epochs_total = 0
        notes = set()
        for spec in specs:
            n_train, n_valid = spec_sizes(spec)
            epochs = _epochs_of(spec)
            epochs_total += epochs * seeds
            if n_train is None:
                ok_a = ok_b = False
                notes.add(f"size of {spec.dataset} unknown")
                continue
            if on_pil_path(spec):
                notes.add("PIL decoding not included (lower bound)")
            if base:
                hours_a += seeds * epochs * (base["train_s"] * n_train / cfg.epoch_n_train
                                             + base["valid_s"] * n_valid / cfg.epoch_n_valid) / 3600
            else:
                ok_a = False
            m = measured.get(config_key(spec))
            if m:
                hours_b += seeds * epochs * (m["train_s_per_image"] * n_train
                                             + m["valid_s_per_image"] * n_valid) / 3600
            else:
                ok_b = False
        total_a += hours_a if ok_a else 0
        total_b += hours_b if ok_b else 0
        complete_b &= ok_b
        res["experiments"].append({"experiment": name, "runs": len(specs), "seeds": seeds,
                                   "epochs_total": epochs_total,
                                   "hours_from_section3": hours_a if ok_a else None,
                                   "hours_per_config": hours_b if ok_b else None, "notes": sorted(notes)})
    res["total_hours_from_section3"] = total_a if base else None
    res["total_hours_per_config"] = total_b if complete_b else None


# --------------------------------------------------------------------------- 6. loader
def _loader_configs():
    """{(dataset, image size, augment): [(experiment, spec), ...]} of every full spec on the PIL path."""
    from lookahead_fastai.experiments import EXPERIMENTS
    configs = {}
    for name, exp in EXPERIMENTS.items():
        for spec in exp.specs("full"):
            if on_pil_path(spec):  # (the in-memory tensor path has no loader work per image)
                configs.setdefault(loader_key(spec), []).append((name, spec))
    return configs


def _loader_data(dataset, data_dir, scratch, cfg):
    """(data_dir for build_dataloaders, what the images are): CIFAR from the carried subset;
    folder datasets as JPEGs of their shape (long side 4/3 of the short side) written from it,
    ``cfg.loader_distinct`` distinct images hard-linked to ``cfg.loader_images`` items."""
    from bench_loader import imagenette_like_folder
    info = dataset_info(dataset)
    if info.small:
        if dataset != "cifar10":
            raise RuntimeError(f"no {dataset} folder here (only the CIFAR-10 subset is carried)")
        return data_dir, "CIFAR-10 subset (real 32x32 PNGs)"
    shape = (round(info.image_size * 4 / 3), info.image_size)
    base = scratch / f"jpeg_{shape[0]}x{shape[1]}"
    if not base.is_dir():
        imagenette_like_folder(Path(data_dir) / "cifar10_subset", base, cfg.loader_images, cfg.loader_images // 4,
                               shape=shape, distinct=cfg.loader_distinct)
    root = scratch / dataset
    if not root.exists():
        root.mkdir()
        for name in info.folder_names:
            (root / name).symlink_to(base / "imagenette2-320", target_is_directory=True)
    return root, (f"SYNTHETIC stand-in: {cfg.loader_distinct} JPEGs {shape[0]}x{shape[1]} (upscaled CIFAR-10 "
                  f"subset images, quality 90) linked to {cfg.loader_images} training items")


def section_loader(res, deadline, cfg, data_dir, projection_result):
    from bench_loader import loader_images_per_s
    from lookahead_fastai.data import build_dataloaders, default_workers
    workers = default_workers()
    res.update(workers=workers, device=cfg.device, configs={}, rows=[], method=(
        f"training and validation loaders of build_dataloaders(..., path='pil', num_workers={workers}) (the default: "
        f"one per core available, at most 16) on {cfg.device}, pinned memory and non-blocking copies on CUDA; "
        f"one warm-up pass, then {cfg.loader_passes} timed full passes (worker start-up included, as in every "
        "epoch), the device synchronised at the end; compared per row with section 5's model images/s for "
        "its (architecture, dataset, size, bs)"))
    model = {key: c for c in ((projection_result or {}).get("configs") or {}).values()
             if c.get("status") == "ok" and (key := entry_key(c, CONFIG_FIELDS)) is not None}
    scratch = Path(tempfile.mkdtemp(prefix="gpu-check-loader-", dir=_TMP))
    def compared(key, users):  # does section 5 have the model speed of one of its rows?
        return any(config_key(spec) in model for _, spec in users)
    # first the configs that can be set against a measured model, then by how many rows use them
    order = sorted(_loader_configs().items(), key=lambda kv: (not compared(*kv), -len(kv[1])))
    for i, (key, users) in enumerate(order):
        dataset, size, augment = key
        label, config = _label(key), dict(zip(LOADER_FIELDS, key))
        if cfg.loader_max_configs is not None and i >= cfg.loader_max_configs:
            res["configs"][label] = {"status": f"not measured (smoke: first {cfg.loader_max_configs} configs only)",
                                     "config": config}
            continue
        if deadline.left() < 5:
            res["configs"][label] = {"status": "not measured (time box)", "config": config}
            continue
        try:
            root, what = _loader_data(dataset, data_dir, scratch, cfg)
            run_size = min(size, cfg.loader_size_cap) if cfg.loader_size_cap else size
            bs = min(users[0][1].bs, cfg.loader_bs_cap or users[0][1].bs)
            bundle = build_dataloaders(dataset, data_dir=root, bs=bs, size=run_size, path="pil", device=cfg.device,
                                       augment=augment, num_workers=workers,
                                       n_train=cfg.loader_images if dataset == "cifar10" else None,
                                       n_valid=cfg.loader_images // 4 if dataset == "cifar10" else None)

            def synced(dl):
                class Synced:  # the batches reach the device before the clock stops
                    def __iter__(self):
                        for b in dl:
                            yield b
                        sync(cfg.device)
                return Synced()
            speed = {split: loader_images_per_s(lambda n, dl=dl: synced(dl), [workers], 1, cfg.loader_passes)[workers]
                     for split, dl in (("train", bundle.dls.train), ("valid", bundle.dls.valid))}
            res["configs"][label] = {"status": "ok", "config": config, "dataset": dataset, "size": run_size, "augment": augment,
                                     "bs": bs, "workers": workers, "data": what,
                                     "pin_memory": bool(bundle.dls.train.pin_memory),
                                     "train_images_per_s": speed["train"]["images_per_s"],
                                     "valid_images_per_s": speed["valid"]["images_per_s"],
                                     "train_images": speed["train"]["images"]}
        except Exception as e:  # one config's failure leaves the others
            res["configs"][label] = {"status": f"error: {type(e).__name__}: {e}", "config": config}
            continue
        loader_ips = res["configs"][label]["train_images_per_s"]
        groups = {}  # the rows of one experiment with one model configuration share both speeds
        for experiment, spec in users:
            groups.setdefault((experiment, config_key(spec)), []).append(spec.name)
        for (experiment, (arch, _, _, bs)), names in groups.items():
            m = model.get((arch, dataset, size, bs))
            model_ips = 1 / m["train_s_per_image"] if m else None
            res["rows"].append({"experiment": experiment, "rows": names, "loader": label, "arch": arch, "bs": bs,
                                "loader_train_images_per_s": loader_ips, "model_train_images_per_s": model_ips,
                                "limited_by": None if model_ips is None else
                                ("loader" if loader_ips < model_ips else "model")})


# --------------------------------------------------------------------------- 7. tests
def section_tests(res, deadline, cfg):
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *cfg.tests]
    if cfg.tests_collect_only:
        cmd.append("--collect-only")
    res["command"] = shlex.join(["python", *cmd[1:]])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    timeout = max(deadline.left(), 5)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        res["returncode"] = proc.returncode
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        res["returncode"] = None
        output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        res["timed_out_after_s"] = timeout
    lines = [line for line in output.splitlines() if line.strip()]
    res["summary"] = lines[-1] if lines else ""
    res["tail"] = "\n".join(lines[-15:])
    if res["returncode"] not in (0, None):
        raise RuntimeError(f"pytest exited {res['returncode']}: {res['summary']}")


# --------------------------------------------------------------------------- report
def _fmt(x, spec=".3g", none="—"):
    if x is None:
        return none
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return format(x, spec)


def render_markdown(report):
    meta = report["meta"]
    lines = ["# GPU check", ""]
    if meta["mode"] == "smoke":
        lines += ["**SMOKE RUN: tiny sizes on the CPU to test the script; these are not measurements.**", ""]
    lines += [f"- device: {meta['device_name']} ({meta['device']})",
              f"- versions: {meta['versions']}",
              f"- date (UTC): {meta['date']}; total wall time {_fmt(meta.get('wall_s'), '.0f')} s "
              f"(time box {meta['total_s']:.0f} s)",
              f"- command: `{meta['command']}`", f"- git: {meta['git']}", ""]
    sections = report["sections"]
    titles = {"correctness": "1. Lookahead on the device vs the paper's equations",
              "optimizer_step": "2. Optimizer step vs bare SGD-momentum (ResNet-18's parameters)",
              "epoch_time": "3. Seconds per epoch: CIFAR ResNet-18 on synthetic CIFAR-sized data",
              "real_data": "4. Real data: CIFAR-10 subset through fit_and_record",
              "projection": "5. Projected GPU-hours of every full experiment",
              "loader": "6. PIL data path: loader images/s against the model's",
              "tests": "7. The package's optimizer tests on this torch"}
    for name, title in titles.items():
        entry = sections.get(name)
        if entry is None:
            continue
        r = entry.get("result", {})
        lines += [f"## {title}", "",
                  f"status: **{entry['status']}** ({_fmt(entry.get('seconds'), '.1f')} s of a "
                  f"{entry.get('budget_s', 0):.0f} s box)" + (f" — {entry['error']}" if entry.get("error") else ""),
                  ""]
        lines += RENDER[name](r) if r else []
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _md_correctness(r):
    out = [f"{r.get('model', '')}; {r.get('steps')} steps, k={r.get('k')}, alpha={r.get('alpha')}; "
           f"reference: tests/reference.py (per-tensor loops from the paper's equations) on the CPU in fp32.", "",
           f"| inner | pullback | max abs diff, ours on {r.get('device')} vs reference | ours on cpu vs reference "
           f"| max abs param | within {r.get('tolerance')} |", "|---|---|---:|---:|---:|---|"]
    for row in r.get("rows", []):
        out.append(f"| {row['inner']} | {row['pullback']} | {row['device_vs_reference']:.2e} | "
                   f"{row['cpu_vs_reference']:.2e} | {row['max_abs_param']:.3g} | {'yes' if row['ok'] else 'NO'} |")
    b = r.get("bf16")
    if b:
        out += ["", f"bf16 autocast + GradScaler: {b['setup']}; {b['steps']} steps: loss {b['first5_loss']:.3f} "
                    f"(first 5) -> {b['last5_loss']:.3f} (last 5), train accuracy {b['train_accuracy']:.3f}, "
                    f"autocast output {b['autocast_output_dtype']}, grad scale {b['grad_scale']:g}: "
                    f"**{'trains' if b['trains'] else 'DOES NOT TRAIN'}**"]
    return out


def _md_optimizer_step(r):
    return [r.get("setup", ""), f"({r.get('rounds')} rounds)", "", r.get("table", "")]


def _md_epoch_time(r):
    out = [f"data: {r.get('data', '')}", "", f"setup: {r.get('setup', '')}; {r.get('rounds')} round(s)", "",
           "| path | optimizer | epoch s (train + valid) | train s | valid s |", "|---|---|---:|---:|---:|"]
    for row in r.get("rows", []):
        out.append(f"| {row['path']} | {row['optimizer']} | {row['epoch_s']:.2f} | {row['train_s']:.2f} | "
                   f"{row['valid_s']:.2f} |")
    ratios = r.get("ratios", {})
    target = r.get("target_epoch_s")
    learner = next((row for row in r.get("rows", []) if row["path"] == "fastai Learner"
                    and row["optimizer"] == "Lookahead(SGD)"), None)
    if target and learner:
        ok = learner["epoch_s"] <= target
        out += ["", f"Target: one CIFAR-10-sized epoch (train + valid) <= {target:g} s: fastai Learner with "
                    f"Lookahead(SGD) {learner['epoch_s']:.2f} s: **{'PASS' if ok else 'MISS'}**"]
    out += ["", "Ratios of training time (medians): fastai Learner / minimal loop: SGD "
            f"{_fmt(ratios.get('learner_over_minimal_sgd_train'))}, Lookahead "
            f"{_fmt(ratios.get('learner_over_minimal_lookahead_train'))}; Lookahead / SGD: Learner "
            f"{_fmt(ratios.get('lookahead_over_sgd_learner_train'))}, minimal loop "
            f"{_fmt(ratios.get('lookahead_over_sgd_minimal_train'))}."]
    return out


def _md_real_data(r):
    out = [r.get("setup", ""), f"data: {r.get('data_dir')}", "",
           "| run | epochs | final accuracy | best accuracy | slow-weights accuracy | final valid loss | "
           "fit_and_record wall s | s/epoch |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for run in r.get("runs", []):
        per_epoch = run["wall_s"] / run["epochs"] if run.get("epochs") else None
        out.append(f"| {run['name']} | {run['epochs']} | {_fmt(run['final_accuracy'], '.4f')} | "
                   f"{_fmt(run['best_accuracy'], '.4f')} | {_fmt(run['slow_accuracy'], '.4f')} | "
                   f"{_fmt(run['final_valid_loss'], '.4f')} | {run['wall_s']:.1f} | {_fmt(per_epoch, '.2f')} |")
    if r.get("skipped"):
        out += ["", f"skipped: {r['skipped']}"]
    out += ["", "One seed on a 5k-image subset: a check that the suite trains on the GPU, not a comparison."]
    return out


def _md_projection(r):
    out = [f"How: {r.get('method', '')}", "",
           "| experiment | runs | seeds | epochs (all runs) | GPU-h (a) from section 3 | GPU-h (b) per config | notes |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for e in r.get("experiments", []):
        out.append(f"| {e['experiment']} | {e['runs']} | {e['seeds']} | {e['epochs_total']} | "
                   f"{_fmt(e['hours_from_section3'], '.2f')} | {_fmt(e['hours_per_config'], '.2f')} | "
                   f"{'; '.join(e['notes'])} |")
    out.append(f"| **total** | | | | {_fmt(r.get('total_hours_from_section3'), '.2f')} | "
               f"{_fmt(r.get('total_hours_per_config'), '.2f')} | |")
    if r.get("configs"):
        out += ["", "Per-config timings for (b):", "", "| config | status | ms per train image | ms per valid image |",
                "|---|---|---:|---:|"]
        for label, c in r["configs"].items():
            out.append(f"| {label} | {c['status']} | {_fmt(1e3 * c['train_s_per_image'] if 'train_s_per_image' in c else None, '.4f')} | "
                       f"{_fmt(1e3 * c['valid_s_per_image'] if 'valid_s_per_image' in c else None, '.4f')} |")
    return out


def _md_loader(r):
    out = [f"How: {r.get('method', '')}", "",
           "| loader config | status | workers | train images/s | valid images/s | data |", "|---|---|---:|---:|---:|---|"]
    for label, c in r.get("configs", {}).items():
        out.append(f"| {label} | {c['status']} | {c.get('workers', '—')} | {_fmt(c.get('train_images_per_s'), '.0f')} | "
                   f"{_fmt(c.get('valid_images_per_s'), '.0f')} | {c.get('data', '')} |")
    rows = r.get("rows", [])
    if rows:
        out += ["", "| experiment | rows | loader config | architecture · bs | loader train images/s | "
                    "model train images/s | limited by |", "|---|---:|---|---|---:|---:|---|"]
        for row in rows:
            out.append(f"| {row['experiment']} | {len(row['rows'])} | {row['loader']} | {row['arch']} · bs {row['bs']} | "
                       f"{_fmt(row['loader_train_images_per_s'], '.0f')} | {_fmt(row['model_train_images_per_s'], '.0f')} | "
                       f"{row['limited_by'] or '— (model not measured)'} |")
    return out


def _md_tests(r):
    return [f"`{r.get('command', '')}` -> exit {r.get('returncode')}: {r.get('summary', '')}", "", "```",
            r.get("tail", ""), "```"]


RENDER = {"correctness": _md_correctness, "optimizer_step": _md_optimizer_step, "epoch_time": _md_epoch_time,
          "real_data": _md_real_data, "projection": _md_projection, "loader": _md_loader, "tests": _md_tests}


def write_outputs(report, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out_dir / "gpu.md").write_text(render_markdown(report))


# --------------------------------------------------------------------------- main
def _versions():
    from importlib.metadata import PackageNotFoundError, version
    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    for dist in ("torchvision", "fastai", "fastcore", "timm", "pytorch_optimizer", "numpy"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} absent")
    if torch.cuda.is_available():
        parts.append(f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    return ", ".join(parts)


def _device_name(device):
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            if smi.returncode == 0 and smi.stdout.strip():
                name = f"{smi.stdout.strip().splitlines()[0]} (nvidia-smi)"
        except (OSError, subprocess.TimeoutExpired):
            pass
        return name
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def _git():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10)
        if out.returncode == 0:
            return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "unknown (no git here)"


def default_data_dir():
    carried = ROOT / ".gpu-data"
    return carried if (carried / "cifar10_subset").is_dir() else ROOT.parent / "shared" / "data"


def run_sections(report, sections, budgets, total, out_dir):
    """Run ``sections`` (name -> fn(result, deadline)) in order, each in its box: ``budgets[name]``
    seconds (cut so that every later section keeps MIN_SECTION_S of ``total``), then a hard stop a
    little later. A section's failure or overrun is recorded and the next one runs; both files
    are rewritten after each section."""
    names = [n for n in sections if n in budgets]
    for i, name in enumerate(names):
        reserve = MIN_SECTION_S * (len(names) - i - 1)
        budget = max(min(budgets[name], total.left() - reserve), 1.0)
        hard = min(budget * 1.25 + HARD_GRACE_S, max(total.left() - reserve, budget))
        entry = {"status": "running", "budget_s": budget}
        report["sections"][name] = entry
        result = entry["result"] = {}
        print(f"[{total.elapsed():6.1f} s] {name}: box {budget:.0f} s", flush=True)
        start = time.perf_counter()
        try:
            with hard_stop(hard):
                sections[name](result, Deadline(budget))
            entry["status"] = "ok"
        except SectionTimeout as e:
            entry.update(status="timeout", error=str(e))
        except Exception as e:  # recorded; the next section still runs
            entry.update(status="error", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=8))
        entry["seconds"] = time.perf_counter() - start
        print(f"[{total.elapsed():6.1f} s] {name}: {entry['status']}"
              + (f" ({entry['error']})" if entry.get("error") else ""), flush=True)
        free_memory()
        report["meta"]["wall_s"] = total.elapsed()
        write_outputs(report, out_dir)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (tests the script; no measurement)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for gpu.md and gpu.json (default: $OUT, else benchmarks/results)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder holding cifar10_subset/ (default: .gpu-data if present, else ../shared/data)")
    p.add_argument("--device", default=None, help="default: cuda (full), cpu (--smoke)")
    p.add_argument("--total-s", type=float, default=None,
                   help="time box of the whole script in seconds (default 420 full, 360 smoke)")
    p.add_argument("--only", default=None, help="comma-separated sections to run (default: all)")
    p.add_argument("--simulate-machine", action="store_true",
                   help="block imports the GPU machine could not satisfy (machine_sim.py), on this machine")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "benchmarks" / "results"
    args.device = args.device or ("cpu" if args.smoke else "cuda")
    args.total_s = args.total_s or (360.0 if args.smoke else 420.0)
    args.data_dir = args.data_dir or default_data_dir()
    return args


def main(argv=None):
    args = parse_args(argv)
    total = Deadline(args.total_s)
    cfg = (smoke_config if args.smoke else full_config)(args.device, args.total_s)
    budgets = dict(BUDGETS_SMOKE if args.smoke else BUDGETS_FULL)
    if args.only:
        budgets = {k: v for k, v in budgets.items() if k in args.only.split(",")}
    if args.smoke:
        torch.set_num_threads(1)  # 2 shared cores: OpenMP barriers under load can stall for minutes
    report = {"meta": {"mode": cfg.mode, "device": cfg.device, "total_s": cfg.total_s,
                       "date": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S}",
                       "command": shlex.join(["python", os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
                       "git": _git(), "versions": _versions(), "config": asdict(cfg), "data_dir": str(args.data_dir)},
              "sections": {}}
    try:
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("device cuda asked for, but torch.cuda.is_available() is False")
        report["meta"]["device_name"] = _device_name(cfg.device)
    except Exception as e:
        report["meta"]["device_name"] = f"unavailable: {e}"
        report["meta"]["error"] = str(e)
        write_outputs(report, args.out)
        print(f"gpu_check: {e}", file=sys.stderr)
        return 1
    print(f"gpu_check ({cfg.mode}) on {report['meta']['device_name']}; {report['meta']['versions']}", flush=True)

    sections = {"correctness": lambda res, dl: section_correctness(res, dl, cfg),
                "optimizer_step": lambda res, dl: section_optimizer_step(res, dl, cfg),
                "epoch_time": lambda res, dl: section_epoch_time(res, dl, cfg),
                "real_data": lambda res, dl: section_real_data(res, dl, cfg, args.data_dir),
                "projection": lambda res, dl: section_projection(
                    res, dl, cfg, report["sections"].get("epoch_time", {}).get("result")),
                "loader": lambda res, dl: section_loader(
                    res, dl, cfg, args.data_dir, report["sections"].get("projection", {}).get("result")),
                "tests": lambda res, dl: section_tests(res, dl, cfg)}
    run_sections(report, sections, budgets, total, args.out)
    print(f"written {args.out / 'gpu.md'} and {args.out / 'gpu.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
