"""End-to-end training benchmarks, each a ratio of two things measured side by side in one run.

1. training step (forward + backward + optimizer) with Lookahead(SGD) vs bare SGD, same model and
   batch; interleaved rounds, medians (target: <= 1.01x);
2. epoch throughput of our fastai path (``fit_and_record``'s Learner + in-memory tensor DataLoader)
   vs a minimal hand-written PyTorch loop over the same tensors, model, augmentation and optimizer
   (target: >= 0.90);
3. epoch time of the in-memory tensor data path vs fastai's PIL-per-item path on the CIFAR-10 subset;
4. ``make demo`` wall time with the venv present (``lookahead-fastai run demo --scale cpu`` + report,
   fresh store; target: <= 60 s on 2 cores).

Never used as timed assertions in tests. Run: ``make bench`` or
``python benchmarks/bench_training.py [--quick] [--data-dir ../shared/data]``. A full run writes
``benchmarks/results/training.md`` and, beside it, ``training.json`` (the same numbers as data, which
``lookahead_fastai/regenerate.py`` builds the README's table from).
"""
import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
STEP_RATIO_MAX, THROUGHPUT_RATIO_MIN, DEMO_MAX_S = 1.01, 0.90, 60  # the targets
sys.path.insert(0, str(ROOT))

from lookahead_fastai import Lookahead  # noqa: E402
from lookahead_fastai.data import build_dataloaders  # noqa: E402
from lookahead_fastai.experiments import RunSpec  # noqa: E402
from lookahead_fastai.registry.architectures import small_cnn  # noqa: E402
from lookahead_fastai.runner import build_learner_for  # noqa: E402


def interleaved(contenders, rounds, steps):
    """Median seconds per step of each contender, timed in alternating rounds."""
    times = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up
        for _ in range(3):
            fn()
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_training_step(data, rounds, steps):
    x = data.x_train[:128].float().div(255)
    y = data.y_train[:128]
    results = {}
    models = {}
    for name in ("bare SGD", "Lookahead(SGD)"):
        torch.manual_seed(0)
        model = small_cnn(3, 10)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        if name != "bare SGD":
            opt = Lookahead(opt, k=5, alpha=0.5)
        models[name] = (model, opt)

    def step_fn(model, opt):
        def step():
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return step

    results = interleaved({n: step_fn(*mo) for n, mo in models.items()}, rounds, steps)
    return results, results["Lookahead(SGD)"] / results["bare SGD"]


def _minimal_loop_epoch(dls, model, opt):
    """The hand-written baseline: the same DataLoader tensors and augmentation, no fastai Learner."""
    train = dls.train
    n = len(train.x) // train.bs * train.bs
    perm = torch.randperm(len(train.x))[:n]
    model.train()
    start = time.perf_counter()
    for i in range(0, n, train.bs):
        idx = perm[i:i + train.bs]
        xb, yb = train.augment((train.x[idx], train.y[idx]))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    return time.perf_counter() - start, n


def bench_epoch_throughput(data_dir, epochs):
    spec = RunSpec(experiment="bench", name="SGD", dataset="cifar10", arch="small_cnn", optimizer="sgd", lr=0.01,
                   hyper={"mom": 0.9}, epochs=1, bs=128, scale="cpu")
    ours, minimal = [], []
    for _ in range(epochs):
        learn, bundle = build_learner_for(spec, 0, data_dir=data_dir, device="cpu")
        with learn.no_bar(), learn.no_logging():
            start = time.perf_counter()
            learn.fit(1, 0.01, cbs=[])
        # the Learner's epoch includes validation: time the training part alone for a fair ratio
        total = time.perf_counter() - start
        valid_start = time.perf_counter()
        with learn.no_bar(), learn.no_logging():
            learn.validate()
        valid = time.perf_counter() - valid_start
        n = len(bundle.dls.train) * bundle.dls.train.bs
        ours.append(n / (total - valid))
        torch.manual_seed(0)
        model = small_cnn(3, 10)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        seconds, n_minimal = _minimal_loop_epoch(bundle.dls, model, opt)
        minimal.append(n_minimal / seconds)
    ours_ips, minimal_ips = statistics.median(ours), statistics.median(minimal)
    return ours_ips, minimal_ips, ours_ips / minimal_ips


def bench_data_paths(data_dir, epochs):
    out = {}
    for path in ("pil", "tensor"):
        spec = RunSpec(experiment="bench", name=path, dataset="cifar10", arch="small_cnn", optimizer="sgd", lr=0.01,
                       hyper={"mom": 0.9}, epochs=1, bs=128, scale="cpu", data_path=path)
        learn, _ = build_learner_for(spec, 0, data_dir=data_dir, device="cpu")
        times = []
        with learn.no_bar(), learn.no_logging():
            for _ in range(epochs):
                start = time.perf_counter()
                learn.fit(1, 0.01)
                times.append(time.perf_counter() - start)
        out[path] = statistics.median(times)
    return out


def bench_demo_wall():
    exe = Path(sys.executable).parent / "lookahead-fastai"
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([str(exe), "run", "demo", "--scale", "cpu", "--store", f"{tmp}/r.sqlite"], check=True,
                       capture_output=True)
        subprocess.run([str(exe), "report", "demo", "--store", f"{tmp}/r.sqlite", "--out", f"{tmp}/reports"],
                       check=True, capture_output=True)
        return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--quick", action="store_true", help="tiny numbers: a smoke check of the script")
    p.add_argument("--skip-demo", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    rounds, steps, epochs = (2, 2, 1) if args.quick else (15, 10, 3)

    from lookahead_fastai.registry.datasets import load_arrays
    data = load_arrays("cifar10", data_dir=args.data_dir)
    meta = {"date": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M}",
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                       f"{torch.get_num_threads()} threads", "device": "cpu",
            "command": f"python benchmarks/bench_training.py{' --quick' if args.quick else ''}",
            "data": "CIFAR-10 subset (5,085 train images, 32x32), small CNN, bs 128"}
    lines = [f"# Training benchmarks ({meta['date']} UTC)", "",
             f"- machine: {meta['machine']}; device {meta['device']}", f"- command: `{meta['command']}`",
             f"- data: {meta['data']}", "", "| measurement | value | ratio | target |", "|---|---|---|---|"]
    step_times, ratio = bench_training_step(data, rounds, steps)
    result = {"meta": meta, "training_step": {"lookahead_ms": step_times["Lookahead(SGD)"] * 1e3,
                                              "sgd_ms": step_times["bare SGD"] * 1e3, "ratio": ratio,
                                              "target_max": STEP_RATIO_MAX}}
    lines.append(f"| training step: Lookahead(SGD) vs bare SGD | {step_times['Lookahead(SGD)'] * 1e3:.1f} vs "
                 f"{step_times['bare SGD'] * 1e3:.1f} ms | {ratio:.3f}x | <= {STEP_RATIO_MAX:.2f}x |")
    ours, minimal, tp_ratio = bench_epoch_throughput(args.data_dir, epochs)
    result["epoch_throughput"] = {"fastai_images_per_s": ours, "minimal_images_per_s": minimal, "ratio": tp_ratio,
                                  "target_min": THROUGHPUT_RATIO_MIN}
    lines.append(f"| epoch throughput: fastai Learner vs minimal PyTorch loop | {ours:.0f} vs {minimal:.0f} img/s | "
                 f"{tp_ratio:.3f} | >= {THROUGHPUT_RATIO_MIN:.2f} |")
    paths = bench_data_paths(args.data_dir, epochs)
    result["data_paths"] = {"tensor_s": paths["tensor"], "pil_s": paths["pil"],
                            "pil_over_tensor": paths["pil"] / paths["tensor"]}
    lines.append(f"| epoch time: tensor path vs PIL path | {paths['tensor']:.1f} vs {paths['pil']:.1f} s | "
                 f"{paths['pil'] / paths['tensor']:.2f}x faster | — |")
    if not args.skip_demo:
        result["demo"] = {"wall_s": bench_demo_wall(), "target_max_s": DEMO_MAX_S}
        lines.append(f"| `make demo` wall time (venv present) | {result['demo']['wall_s']:.1f} s | — | "
                     f"<= {DEMO_MAX_S:g} s |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        out = ROOT / "benchmarks" / "results" / "training.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")  # what regenerate reads


if __name__ == "__main__":
    main()
