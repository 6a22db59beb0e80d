"""Optimizer-step time of Lookahead implementations, relative to bare SGD.

What is timed
    Only ``optimizer.step()``. Every contender owns its own ``copy.deepcopy`` of a torchvision
    ``resnet18(num_classes=10)`` (random init, not pretrained) whose ``.grad`` fields are set once to
    the same fixed random gradients; there is no forward or backward pass and no ``zero_grad``.

Contenders (all wrap ``torch.optim.SGD(lr=0.1, momentum=0.9)``, k=5, alpha=0.5)
    bare SGD, ours with ``pullback="none"``, ours with ``pullback="pullback"``,
    ``timm.optim.Lookahead`` and ``pytorch_optimizer.Lookahead(pullback_momentum="none")``.

Method
    1. Warm-up: every contender takes some steps first (creates momentum buffers and slow weights,
       warms caches and the allocator).
    2. Interleaved rounds: in each round every contender times ``--steps`` consecutive steps with
       ``time.perf_counter``; the order of the contenders is rotated from round to round so that no
       one always runs first or last. Interleaving means slow drifts of the machine (thermal, other
       processes) hit all contenders alike instead of whichever ran during the disturbance.
    3. ``--steps`` and the warm-up are multiples of k, so every timed block holds the same number of
       Lookahead syncs (one per k steps) for every contender.
    4. Statistics: the median over rounds of the per-step time for each contender (robust to the odd
       slow round), and ``ratio = median / median of bare SGD``. The table also gives the median of
       the per-round ratios (each round's contender time over the same round's SGD time), which
       cancels drift between rounds. A wide IQR means the machine was busy during some rounds
       (two torch threads on two cores slow down many times over when another process competes).
    5. Rounds stop early, after at least three, once warm-up and rounds have used ``--budget``
       seconds, so a busy machine does not make the run drag on; the report says so.

Ratios are only meaningful side by side within one run on one machine; compare runs by their
ratios, not their milliseconds. This is a benchmark for humans to read: it is never used as a timed
assertion in the test suite, and it exits 0 whether or not the targets hold.

Usage::

    .venv/bin/python benchmarks/bench_optimizer_step.py            # full run (make bench)
    .venv/bin/python benchmarks/bench_optimizer_step.py --quick    # smoke check, a few seconds

A full run writes ``benchmarks/results/optimizer_step.md`` and, beside it, ``optimizer_step.json``
(the same numbers as data: ``lookahead_fastai/regenerate.py`` builds the README's table from it);
``--quick`` only prints, unless ``--output`` is given.
"""
import argparse
import copy
import datetime
import gc
import json
import os
import platform
import shlex
import statistics
import sys
import time
from importlib.metadata import version as package_version
from pathlib import Path

import torch
import torchvision

import pytorch_optimizer
import timm
import timm.optim

from lookahead_fastai.optim import Lookahead

K = 5
ALPHA = 0.5
LR = 0.1
MOMENTUM = 0.9
TARGET_RATIO = 1.15  # ours (k=5, pullback="none") against bare SGD
MIN_ROUNDS = 3  # rounds always run, whatever --budget says

BASELINE = "bare SGD"
OURS = "ours (pullback=none)"
TIMM = "timm Lookahead"
PTOPT = "pytorch_optimizer Lookahead"

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "optimizer_step.md"


def make_sgd(model):
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)


# name -> factory(model) -> optimizer; the order is the order of the table.
CONTENDERS = {
    BASELINE: make_sgd,
    OURS: lambda m: Lookahead(make_sgd(m), k=K, alpha=ALPHA, pullback="none"),
    "ours (pullback=pullback)": lambda m: Lookahead(make_sgd(m), k=K, alpha=ALPHA, pullback="pullback"),
    TIMM: lambda m: timm.optim.Lookahead(make_sgd(m), alpha=ALPHA, k=K),
    PTOPT: lambda m: pytorch_optimizer.Lookahead(make_sgd(m), k=K, alpha=ALPHA, pullback_momentum="none"),
}


def build_contenders():
    """One (model, optimizer) per contender, each on its own copy of the same model and gradients."""
    torch.manual_seed(0)
    base = torchvision.models.resnet18(num_classes=10)
    # small, fixed gradients: the weights drift slowly and stay far from denormals
    grads = [torch.randn_like(p) * 1e-3 for p in base.parameters()]
    contenders = {}
    for name, factory in CONTENDERS.items():
        model = copy.deepcopy(base)
        for p, g in zip(model.parameters(), grads):
            p.grad = g.clone()  # each contender's own copy, set once and never cleared
        contenders[name] = (model, factory(model))
    return contenders


def run_steps(optimizer, steps):
    for _ in range(steps):
        optimizer.step()


def time_block(optimizer, steps):
    """Seconds per step over ``steps`` consecutive steps."""
    start = time.perf_counter()
    run_steps(optimizer, steps)
    return (time.perf_counter() - start) / steps


def measure(contenders, rounds, steps, warmup, budget_s):
    """Per-step times, ``{name: [seconds per step, one per round]}``. Stops early, after at least
    ``MIN_ROUNDS`` rounds, once warm-up and rounds have taken ``budget_s`` seconds: on a busy
    machine a step can take 10x longer, and the run should still end in reasonable time."""
    start = time.perf_counter()
    names = list(contenders)
    for name in names:
        run_steps(contenders[name][1], warmup)
    times = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:  # rotate who goes first
                times[name].append(time_block(contenders[name][1], steps))
            if r + 1 >= MIN_ROUNDS and time.perf_counter() - start > budget_s:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def summarize(times):
    base = times[BASELINE]
    rows = []
    for name, ts in times.items():
        q1, _, q3 = statistics.quantiles(ts, n=4) if len(ts) > 1 else (ts[0], None, ts[0])
        median = statistics.median(ts)
        rows.append({
            "name": name,
            "median_ms": 1e3 * median,
            "q1_ms": 1e3 * q1,
            "q3_ms": 1e3 * q3,
            "ratio": median / statistics.median(base),
            "paired_ratio": statistics.median(t / b for t, b in zip(ts, base)),
        })
    return rows


def format_table(rows):
    lines = [
        "| contender | median ms/step | IQR ms/step | ratio vs bare SGD | median per-round ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['median_ms']:.2f} | {r['q1_ms']:.2f}-{r['q3_ms']:.2f} "
                     f"| {r['ratio']:.3f} | {r['paired_ratio']:.3f} |")
    return "\n".join(lines)


def check_targets(rows):
    by_name = {r["name"]: r for r in rows}
    ours = by_name[OURS]
    checks = [
        (f"ours (k={K}, none) <= {TARGET_RATIO:.2f}x bare SGD "
         f"(measured {ours['ratio']:.3f}x)", ours["ratio"] <= TARGET_RATIO),
    ]
    for other in (TIMM, PTOPT):
        checks.append((f"ours (k={K}, none) faster than {other} "
                       f"({ours['median_ms']:.2f} vs {by_name[other]['median_ms']:.2f} ms/step)",
                       ours["median_ms"] < by_name[other]["median_ms"]))
    return [f"- [{'x' if ok else ' '}] {'PASS' if ok else 'MISS'}: {text}" for text, ok in checks]


def cpu_name():
    name = platform.processor()
    if not name or name == platform.machine():
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
    return name or "unknown"


def machine():
    """(what the machine is, {package: version}): the ``meta`` of the JSON and the markdown's lines."""
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    versions = {"python": platform.python_version(),
                **{dist: package_version(dist) for dist in ("torch", "torchvision", "timm", "pytorch_optimizer")}}
    return (f"{cpu_name()}, {platform.machine()}, nproc={nproc}, torch threads={torch.get_num_threads()}, "
            f"{platform.system()} {platform.release()}"), versions


def machine_lines(described=None):
    what, versions = described or machine()
    return [f"- machine: {what}", "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())]


def command_line():
    python = sys.executable
    try:
        python = os.path.relpath(python)
    except ValueError:
        pass
    return shlex.join([python] + sys.argv)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--steps", type=int, default=50,
                        help=f"steps timed per contender per round, a multiple of k={K} (default 50)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps per contender first (default: --steps)")
    parser.add_argument("--budget", type=float, default=75.0,
                        help="seconds (from the warm-up on) after which no new round starts (at least "
                             f"{MIN_ROUNDS} rounds run; default 75)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check with tiny numbers (seconds); prints only unless --output")
    parser.add_argument("--output", type=Path, default=None,
                        help="markdown file to write (default benchmarks/results/optimizer_step.md; "
                             "none with --quick)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps = 3, K
    if args.warmup is None:
        args.warmup = args.steps
    if args.rounds < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--rounds and --steps must be >= 1, --warmup >= 0")
    for flag in ("steps", "warmup"):
        if getattr(args, flag) % K:
            parser.error(f"--{flag} must be a multiple of k={K}, so every timed block holds "
                         "the same number of syncs")
    if args.output is None and not args.quick:
        args.output = DEFAULT_OUTPUT
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(2)

    started = datetime.datetime.now(datetime.timezone.utc)
    contenders = build_contenders()
    n_params = sum(p.numel() for p in next(iter(contenders.values()))[0].parameters())
    n_tensors = len(list(next(iter(contenders.values()))[0].parameters()))
    print(f"resnet18(num_classes=10): {n_params / 1e6:.2f}M parameters in {n_tensors} tensors; "
          f"{len(contenders)} contenders, warm-up {args.warmup} steps, "
          f"{args.rounds} rounds x {args.steps} steps", flush=True)

    with torch.no_grad():
        times = measure(contenders, args.rounds, args.steps, args.warmup, args.budget)
    rounds_done = len(times[BASELINE])
    rounds_note = (f"{rounds_done} interleaved rounds" if rounds_done == args.rounds else
                   f"{rounds_done} of {args.rounds} interleaved rounds (stopped by --budget "
                   f"{args.budget:g} s: the machine was slow or busy)")
    elapsed = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()

    rows = summarize(times)
    table = format_table(rows)
    targets = check_targets(rows)

    described = machine()
    report = "\n".join([
        "# Optimizer step time: Lookahead vs bare SGD",
        "",
        f"- date (UTC): {started:%Y-%m-%d %H:%M:%S}",
        *machine_lines(described),
        f"- command: `{command_line()}`",
        f"- setup: resnet18(num_classes=10) ({n_params / 1e6:.2f}M params, {n_tensors} tensors), "
        f"fixed random .grad, SGD(lr={LR}, momentum={MOMENTUM}), k={K}, alpha={ALPHA}; "
        f"warm-up {args.warmup} steps, {rounds_note} x {args.steps} steps, "
        f"median over rounds; run took {elapsed:.0f} s",
        "",
        table,
        "",
        "Targets:",
        "",
        *targets,
        "",
        "Ratios compare contenders measured side by side in this run; "
        "see the module docstring of benchmarks/bench_optimizer_step.py for the method.",
        "",
    ])
    print()
    print(report)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
        data = {"meta": {"date": f"{started:%Y-%m-%d %H:%M:%S}", "machine": described[0], "versions": described[1],
                         "command": command_line(), "rounds": rounds_done, "steps": args.steps, "elapsed_s": elapsed},
                "k": K, "baseline": BASELINE, "ours": OURS, "target_ratio": TARGET_RATIO, "rows": rows}
        args.output.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")  # what regenerate reads
        print(f"written to {args.output} and {args.output.with_suffix('.json')}")


if __name__ == "__main__":
    main()
