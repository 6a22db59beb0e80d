"""``lookahead-fastai list | run EXP | plan EXP | store export|import | report EXP``.

EXP is a built-in experiment's name or a TOML file declaring your own (experiments/yours.py).

Bad input gives one line on stderr and exit code 2, never a traceback; a run that finished is in
the store before the next one starts, so an error or Ctrl-C never loses it.
"""
import argparse
import math
import os
import re
import sqlite3
import sys
import warnings
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_RUNS_FAILED = 1  # some runs of the grid failed (executor ray); the others finished
MAX_SEEDS = 1000
SCALES = ("smoke", "cpu", "full")        # experiments.SCALES, without importing torch for --help
STAGES = ("tuning", "confirmation")      # sweep.STAGES, likewise
WANDB_MODES = ("offline", "online", "disabled")
DEVICES = ("cpu", "cuda")
EXECUTORS = ("local", "ray")


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CliError(f"{self.prog}: {message}")


def _whole_number(text):
    """A whole number in ASCII digits (``int`` would also read other scripts' digits, e.g. '٣')."""
    if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", text):
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}"
                                         + ("" if text.isascii() else " (digits 0-9)"))
    return int(text)


def _seeds(text):
    """--seeds: an int from 1 to MAX_SEEDS (a grid is seeds x rows runs, each kept in the store)."""
    n = _whole_number(text)
    if not 1 <= n <= MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_SEEDS}, got {n}")
    return n


def _finite(text):
    """A finite number (float() also reads 'nan' and 'inf')."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _workers(text):
    """--workers: loader worker processes, a whole number from 0 up."""
    try:
        n = _whole_number(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 up, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 up, got {n}")
    return n


def _parser():
    p = _Parser(prog="lookahead-fastai", description="Compare Lookahead and other optimizers with fastai.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="experiments, datasets, architectures, optimizers, schedules")
    run = sub.add_parser("run", help="run an experiment's pending runs (finished ones are skipped)")
    run.add_argument("experiment", metavar="EXP", help="an experiment's name, or a TOML file of your own")
    run.add_argument("--scale", default=None, choices=SCALES, help="smoke | cpu | full (default: smoke; a TOML "
                     "file: its first declared scale, or its one scale)")
    run.add_argument("--seeds", type=_seeds, default=None,
                     help=f"number of seeds, 1 to {MAX_SEEDS}: seeds 0..N-1 (default: per experiment)")
    run.add_argument("--only", nargs="+", metavar="NAME", help="only these optimizer rows")
    run.add_argument("--stage", default=None, choices=STAGES,
                     help="an experiment with stages: only its tuning runs, or only the confirmation runs of "
                          "the settings its finished tuning chose (default: both, as far as tuning has decided)")
    run.add_argument("--data-dir", type=Path, default=None, help="folder holding the datasets (offline copies)")
    run.add_argument("--store", type=Path, default=None, help="results database (default: runs/results.sqlite)")
    run.add_argument("--wandb", default="disabled", choices=WANDB_MODES,
                     help="offline | online | disabled (default: disabled)")
    run.add_argument("--device", default=None, choices=DEVICES, help="cpu | cuda (default: cuda when available)")
    run.add_argument("--progress", action="store_true", help="show fastai's per-epoch progress bars")
    run.add_argument("--workers", type=_workers, default=None, metavar="N",
                     help="loader worker processes for image-folder data (PIL path), 0 for none (default: one "
                          "per core available, at most 16, as fastai); results do not depend on it")
    # --- scaling out (executors.py, distributed.py) ---
    run.add_argument("--executor", default="local", choices=EXECUTORS, help="local | ray: where the runs train (default: local, "
                     "one after another in this process; ray: one Ray task per run)")
    run.add_argument("--address", default=None, help="with --executor ray: the Ray cluster to use, e.g. auto or "
                     "ray://HEAD:10001 (default: start a local Ray instance)")
    run.add_argument("--gpus-per-run", type=_finite, default=None,
                     help="with --executor ray: GPUs per run (default: 0)")
    run.add_argument("--cpus-per-run", type=_finite, default=None,
                     help="with --executor ray: CPUs per run (default: 1)")
    run.add_argument("--distributed", action="store_true", help="train each run with DDP on every process of a "
                     "torchrun / accelerate launch (only rank 0 writes)")
    # --- end scaling out ---
    plan = sub.add_parser("plan", help="what an experiment's grid costs: runs, epochs, total epochs, and "
                                       "device-hours where benchmarks/results/ holds a measured time per epoch")
    plan.add_argument("experiment", metavar="EXP", help="an experiment's name, or a TOML file of your own")
    plan.add_argument("--scale", default=None, choices=SCALES, help="default: full (a TOML file without it: "
                      "its first scale)")
    plan.add_argument("--seeds", type=_seeds, default=None,
                      help=f"seeds per row, 1 to {MAX_SEEDS} (default: per experiment)")
    st = sub.add_parser("store", help="raw results as JSON lines: export an experiment's finished runs "
                                      "(to commit beside its report), or import them into a store")
    st.add_argument("action", choices=("export", "import"))
    st.add_argument("target", metavar="EXP|FILE", help="export: the experiment (a name or a TOML file); "
                    "import: the .jsonl file")
    st.add_argument("--store", type=Path, default=None, help="results database (default: runs/results.sqlite)")
    st.add_argument("--out", type=Path, default=None, help="export: the file (default: reports/data/EXP.jsonl)")
    rep = sub.add_parser("report", help="write reports/EXP.md and plots from the store ('all': every "
                                        "experiment and reports/README.md)")
    rep.add_argument("experiment", metavar="EXP", help="an experiment's name, a TOML file of your own, or all")
    rep.add_argument("--store", type=Path, default=None)
    rep.add_argument("--out", type=Path, default=Path("reports"))
    rep.add_argument("--scale", action="append", choices=SCALES, help="only this scale (repeatable)")
    return p


def _cmd_list(args):
    from .experiments import EXPERIMENTS
    from .registry.architectures import ARCHITECTURES
    from .registry.datasets import DATASETS
    from .registry.optimizers import describe_optimizers
    from .registry.schedules import SCHEDULES
    print("experiments:")
    for e in EXPERIMENTS.values():
        print(f"  {e.name:24s} {e.description}")
    print("datasets:")
    for d in DATASETS.values():
        print(f"  {d.name:24s} {d.description}")
    print("architectures:")
    for a in ARCHITECTURES.values():
        print(f"  {a.name:24s} {a.description}")
    print("optimizers:")
    for name, text in describe_optimizers():
        print(f"  {name:24s} {text}")
    print("schedules:")
    for s in SCHEDULES.values():
        print(f"  {s.name:24s} {s.description}")
    return 0


def _experiment_and_scale(name_or_file, scale=None, default_scale=None):
    """EXP (a built-in's name, or a TOML file whose experiment is then findable by its name) -> the
    experiment's name and the scale: ``scale`` checked against the experiment's scales, or
    ``default_scale`` when it has it, else its first."""
    from .experiments import EXPERIMENTS, SpecError, get_experiment, use_experiment
    from .experiments.yours import is_experiment_file, load_experiment
    try:
        if name_or_file not in EXPERIMENTS and is_experiment_file(name_or_file):
            name = use_experiment(load_experiment(name_or_file))
        else:
            name = name_or_file
        experiment = get_experiment(name)
    except SpecError as e:
        raise CliError(str(e)) from None
    if scale is None:
        scale = default_scale if default_scale in experiment.scales else experiment.scales[0]
    elif scale not in experiment.scales:
        raise CliError(f"--scale {scale}: {name_or_file} declares the scale{'s' * (len(experiment.scales) > 1)} "
                       f"{', '.join(experiment.scales)}")
    return name, scale


def _check_store_path(path):
    try:
        if path.is_dir():
            raise CliError(f"--store {path}: is a directory, expected a database file")
    except OSError as e:
        raise CliError(f"--store {path}: {_os_reason(e)}") from None


def _check_data_dir(path):
    try:
        if not path.is_dir():
            raise CliError(f"--data-dir {path}: no such folder")
        next(os.scandir(path), None)  # can it be listed?
    except OSError as e:
        raise CliError(f"--data-dir {path}: cannot read it: {_os_reason(e)}") from None


def _os_reason(e):
    return f"{e.strerror or type(e).__name__}" + (f" ({e.filename})" if getattr(e, "filename", None) else "")


def _cmd_run(args):
    from .experiments import SpecError
    from .store.paths import DEFAULT_STORE
    from .sweep import plan, run_experiment

    if args.data_dir is not None:
        _check_data_dir(args.data_dir)
    _check_scale_out(args)  # --executor, --address, --gpus-per-run, --cpus-per-run, --distributed
    if args.device == "cuda" and args.executor != "ray":  # ray: the GPUs are the workers'
        import torch
        if not torch.cuda.is_available():
            raise CliError("--device cuda: no CUDA device is available here")
    store = args.store or DEFAULT_STORE
    _check_store_path(store)
    args.experiment, args.scale = _experiment_and_scale(args.experiment, args.scale, "smoke")
    try:
        jobs = plan(args.experiment, args.scale, args.seeds, args.only, store, stage=args.stage)
    except SpecError as e:
        raise CliError(str(e)) from None
    from fastai.torch_core import rank_distrib

    from .executors import RunsFailed
    lines = _RunLines(args, store, jobs, talk=rank_distrib() == 0)  # in a distributed run only rank 0 reports
    try:
        run_experiment(args.experiment, args.scale, args.seeds, args.only, store, data_dir=args.data_dir,
                       device=args.device, wandb=args.wandb, progress=args.progress, on_record=lines.record,
                       executor=args.executor, address=args.address, gpus_per_run=args.gpus_per_run,
                       cpus_per_run=args.cpus_per_run, distributed=args.distributed, on_error=lines.error,
                       on_skip=lines.skip, num_workers=args.workers, stage=args.stage)
    except RunsFailed as e:
        print(f"lookahead-fastai: {' '.join(str(e).split())}; they are marked failed in the store, "
              f"a rerun retries them", file=sys.stderr)
        return EXIT_RUNS_FAILED
    if lines.skipped and lines.talk:
        print(f"{len(lines.skipped)} runs were being trained by another process sharing the store; they are theirs "
              f"to finish", flush=True)
    return 0


def _grid_text(jobs):
    """"N runs (R rows x S seeds)", or with stages the runs of each stage planned so far."""
    if any(j.stage for j in jobs):
        per = {st: sum(j.stage == st for j in jobs) for st in STAGES}
        return f"{len(jobs)} runs planned so far ({', '.join(f'{st} {n}' for st, n in per.items())})"
    rows = len({j.spec.name for j in jobs})
    return f"{len(jobs)} runs ({rows} rows x {len(jobs) // rows if rows else 0} seeds)"


class _RunLines:
    """What ``run`` prints while its sweep goes (``talk``: this process reports): the grid first,
    then one numbered line per run (trained, failed, skipped) and, on a terminal, a bar."""

    def __init__(self, args, store, jobs, talk):
        self.args, self.store, self.jobs, self.talk = args, store, jobs, talk
        self.done = 0  # runs reported so far (with ray they finish in any order)
        self.skipped = []
        if self.talk:
            print(f"{self.args.experiment} at scale {self.args.scale}: {_grid_text(jobs)}, "
                  f"{sum(j.finished for j in jobs)} already finished"
                  f"{_imported_text(jobs)}; store {self.store}"
                  f"{'; executor ray' if self.args.executor == 'ray' else ''}", flush=True)
            if jobs.to_come:  # families whose tuning has not chosen yet
                print("confirmation runs follow once the tuning stage has chosen (its runs all finished)", flush=True)
        from fastprogress.fastprogress import progress_bar
        # the grid's bar only on a terminal: piped or logged output gets the lines alone, no glyphs
        bar = progress_bar(range(len(jobs))) if self.talk and sys.stdout.isatty() and not self.args.progress else ()
        self._bar = iter(bar)
        next(self._bar, None)

    def _line(self, job, text):
        self.done += 1
        if self.talk:
            count = f"{self.done}/{len(self.jobs)}" if self.done <= len(self.jobs) else \
                f"{self.done}, a confirmation run" if job.stage == "confirmation" else \
                f"{self.done}, a grid point added"  # lr_extension: a point the finished runs called for
            print(f"[{count}] {job.spec.name} seed {job.seed}: {text}", flush=True)
            next(self._bar, None)

    def record(self, i, job, record):
        final = record["final"]
        slow = f", slow weights {record['slow']['accuracy']:.4f}" if record.get("slow") else ""
        test = f", test accuracy {final['test_accuracy']:.4f}" if "test_accuracy" in final else ""
        which = " (validation)" if test else ""
        self._line(job, f"accuracy{which} {final.get('accuracy', float('nan')):.4f}{slow}{test}, "
                        f"{record['seconds']:.1f}s{_finished_text(job)}")

    def error(self, i, job, error):
        self._line(job, f"FAILED ({error})")

    def skip(self, i, job, held):  # held: a RunHeld, who holds the run in its fields
        self.skipped.append(job)
        self._line(job, f"skipped, another process is training it ({held.holder})")


def _imported_text(jobs):
    n = sum(j.imported for j in jobs)
    return f" ({n} of them imported by `store import`, not trained in this store)" if n else ""


def _finished_text(job):
    return (" (already finished, imported)" if job.imported else " (already finished)") if job.finished else ""


def _check_scale_out(args):
    """--executor / --address / --gpus-per-run / --cpus-per-run / --distributed."""
    from .executors import ExecutorUnavailable, import_ray
    ray_only = [f for f, v in (("--address", args.address), ("--gpus-per-run", args.gpus_per_run),
                               ("--cpus-per-run", args.cpus_per_run)) if v is not None]
    if ray_only and args.executor != "ray":
        raise CliError(f"{', '.join(ray_only)}: only with --executor ray")
    if args.gpus_per_run is not None and args.gpus_per_run < 0:
        raise CliError(f"--gpus-per-run must be at least 0, got {args.gpus_per_run:g}")
    if args.cpus_per_run is not None and args.cpus_per_run <= 0:
        raise CliError(f"--cpus-per-run must be more than 0, got {args.cpus_per_run:g}")
    if args.executor == "ray":
        if args.distributed:
            raise CliError("--distributed and --executor ray do not go together: launch a distributed run "
                           "with torchrun or accelerate launch")
        if args.device == "cuda" and not args.gpus_per_run:
            raise CliError("--device cuda with --executor ray needs --gpus-per-run (GPUs for each run)")
        try:
            import_ray()
        except ExecutorUnavailable as e:
            raise CliError(str(e)) from None
    if args.distributed:
        from fastai.torch_core import num_distrib

        from .distributed import require_accelerate
        try:
            require_accelerate()
        except ValueError as e:
            raise CliError(str(e)) from None
        if not num_distrib():
            raise CliError("--distributed: start the run with a launcher, e.g. torchrun --nproc_per_node 2 "
                           "-m lookahead_fastai.cli run EXP --distributed")


def _cmd_plan(args):
    from .experiments import get_experiment
    from .planning import cost_plan, format_plan
    from .registry.user import check_user_code
    name, scale = _experiment_and_scale(args.experiment, args.scale, "full")
    plan = cost_plan(name, scale, args.seeds)  # SpecError: one line, exit 2
    check_user_code(get_experiment(name).specs(scale), call=False)  # a user's modules and names exist
    print(format_plan(plan))
    return 0


def _cmd_store(args):
    from .store import DEFAULT_STORE, ResultsStore
    store_path = args.store or DEFAULT_STORE
    _check_store_path(store_path)
    if args.action == "export":
        args.target, _ = _experiment_and_scale(args.target)  # a TOML file is read, its code never imported
        if not store_path.exists():
            raise CliError(f"--store {store_path}: no results database")
        out = args.out or Path("reports") / "data" / f"{args.target}.jsonl"
        with ResultsStore(store_path, readonly=True) as db:
            n = db.export_jsonl(args.target, out)
        print(f"wrote {out}: {n} finished runs of {args.target}")
        return 0
    if not Path(args.target).is_file():
        raise CliError(f"{args.target}: no such file")
    with ResultsStore(store_path) as db:
        added, present = db.import_jsonl(args.target)
    print(f"imported {args.target} into {store_path}: {added} runs added, {present} already there")
    return 0


def _cmd_report(args):
    from .experiments import EXPERIMENTS
    from .experiments.spec import SpecError
    from .experiments.yours import is_experiment_file
    from .results.index import write_index
    from .results.report import write_report
    from .store.paths import DEFAULT_STORE
    store_path = args.store or DEFAULT_STORE
    _check_store_path(store_path)
    if not store_path.exists():
        raise CliError(f"--store {store_path}: no results database; run `lookahead-fastai run {args.experiment}` first")
    if args.experiment != "all" and args.experiment not in EXPERIMENTS:
        if not is_experiment_file(args.experiment):
            raise CliError(f"unknown experiment {args.experiment!r}; choose one of all, {', '.join(EXPERIMENTS)} "
                           f"(or give a .toml file)")
        args.experiment, _ = _experiment_and_scale(args.experiment)
    names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    try:
        for name in names:
            print(f"wrote {write_report(store_path, name, out_dir=args.out, scales=args.scale)}")
    except SpecError as e:
        raise CliError(str(e)) from None
    if args.experiment == "all":
        print(f"wrote {write_index(store_path, out_dir=args.out)}")
    return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """A warning while a command runs (e.g. an unreadable checkpoint moved aside) as one line."""
    print(f"lookahead-fastai: {category.__name__}: {' '.join(str(message).split())}", file=file or sys.stderr)


def main(argv=None):
    with warnings.catch_warnings():  # restores showwarning when main() is called from Python
        warnings.showwarning = _one_line_warning
        return _main(argv)


def _main(argv=None):
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        args = _parser().parse_args(argv)
        return {"list": _cmd_list, "run": _cmd_run, "plan": _cmd_plan, "store": _cmd_store,
                "report": _cmd_report}[args.command](args)
    except CliError as e:  # argparse's own messages already name the program ("lookahead-fastai run: ...")
        message = str(e)
        print(message if message.startswith("lookahead-fastai") else f"lookahead-fastai: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("lookahead-fastai: interrupted; finished runs are kept in the store", file=sys.stderr)
        return 130
    except OSError as e:  # permissions, read-only filesystem, over-long names, full disk, ...
        if os.environ.get("LOOKAHEAD_FASTAI_DEBUG"):
            raise
        print(f"lookahead-fastai: {_os_reason(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, TypeError, sqlite3.Error) as e:
        # DatasetUnavailable, SpecError, bad store file, ...: their messages are written for users;
        # LOOKAHEAD_FASTAI_DEBUG=1 shows the traceback instead
        if os.environ.get("LOOKAHEAD_FASTAI_DEBUG"):
            raise
        print(f"lookahead-fastai: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
