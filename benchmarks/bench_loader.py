"""PIL data path throughput at 0, 1, 2 ... loader workers, measured side by side in one run.

Images per second of ``build_dataloaders(..., path="pil", num_workers=N)``'s training loader (decode,
item transforms, collation, batch normalisation: everything up to the batch a model would get),
for two workloads:

1. ``cifar10 · 32px``: the CIFAR-10 subset's real 32x32 PNGs with CIFAR's augmentation (zero pad 4,
   random crop, flip): data_paths' PIL row;
2. ``imagenette-like · 320px JPEG -> 128px``: JPEGs written from the CIFAR-10 subset's images
   upscaled to 426x320 (imagenette2-320's shape; quality 90) in Imagenette's folder layout,
   loaded as ``imagenette_320`` at size 128 with ``rrc_flip`` (RandomResizedCrop(128, 0.35) + flip):
   the per-image work of imagenette_leaderboard's full rows. The pixels are upscaled CIFAR, not
   photographs, so the decode cost is close to but not exactly Imagenette's.

The worker counts are timed in interleaved rounds (0, 1, 2, 0, 1, 2, ...), each round a full pass
over the training set; medians. The ratio N workers / 0 workers is the result; absolute numbers
depend on the machine and on whatever else runs on it (recorded: the load average before and after).
``benchmarks/gpu/gpu_check.py`` imports :func:`imagenette_like_folder` and :func:`loader_images_per_s`
for its loader section.

Run: ``python benchmarks/bench_loader.py [--data-dir ../shared/data] [--rounds 3] [--workers 0 1 2]``;
writes benchmarks/results/loader.json and loader.md.
"""
import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMAGENETTE_SHAPE = (426, 320)  # imagenette2-320: 320 px shorter side, mostly 4:3


def imagenette_like_folder(cifar_root, out_dir, n_train, n_valid, shape=IMAGENETTE_SHAPE, quality=90, distinct=None):
    """Write ``n_train`` + ``n_valid`` JPEGs of ``shape`` (upscaled CIFAR-10 subset images, 10 classes)
    to ``out_dir/imagenette2-320/{train,val}/<class>/``; returns ``out_dir`` (a data_dir for
    ``build_dataloaders("imagenette_320", ...)``). ``distinct``: write at most that many per split
    and hard-link the others to them (more items without more writing; each is still decoded)."""
    from PIL import Image
    root = Path(out_dir) / "imagenette2-320"
    for split, source, n in (("train", "train", n_train), ("val", "test", n_valid)):
        classes = sorted(p for p in (Path(cifar_root) / source).iterdir() if p.is_dir())
        files = [sorted(c.iterdir()) for c in classes]
        written = []
        for i in range(n):
            cls = i % len(classes)
            dst = root / split / classes[cls].name / f"{i:06d}.JPEG"
            dst.parent.mkdir(parents=True, exist_ok=True)
            if distinct is not None and i >= distinct:
                os.link(written[i % distinct], dst)
                continue
            src = files[cls][(i // len(classes)) % len(files[cls])]
            with Image.open(src) as im:
                im.convert("RGB").resize(shape, Image.BICUBIC).save(dst, quality=quality)
            written.append(dst)
    return Path(out_dir)


def loader_images_per_s(make_loader, worker_counts, rounds, passes=1):
    """Median images/s of each worker count's loader (``make_loader(n)`` -> a fastai DataLoader),
    timed over ``passes`` full passes per round, in interleaved rounds after one warm-up pass each."""
    loaders = {n: make_loader(n) for n in worker_counts}
    times = {n: [] for n in worker_counts}
    images = {}

    def one_pass(dl):
        count = 0
        for x, _ in dl:
            count += len(x)
        return count

    for dl in loaders.values():
        one_pass(dl)
    for _ in range(rounds):
        for n, dl in loaders.items():
            start = time.perf_counter()
            images[n] = sum(one_pass(dl) for _ in range(passes))
            times[n].append(time.perf_counter() - start)
    return {n: {"images_per_s": images[n] / statistics.median(ts), "seconds": ts, "images": images[n]}
            for n, ts in times.items()}


def _workloads(data_dir, scratch, n_jpeg, distinct):
    from lookahead_fastai.data import build_dataloaders
    cifar = Path(data_dir) / "cifar10_subset"
    jpeg_dir = imagenette_like_folder(cifar, scratch, n_jpeg, 64, distinct=distinct)

    def cifar_loader(n):
        return build_dataloaders("cifar10", data_dir=data_dir, bs=64, path="pil", num_workers=n).dls.train

    def jpeg_loader(n):
        return build_dataloaders("imagenette_320", data_dir=jpeg_dir, bs=64, size=128, path="pil",
                                 augment="rrc_flip", num_workers=n).dls.train
    return {"cifar10 · 32px PNG, pad-crop-flip": (cifar_loader, "CIFAR-10 subset, 5,085 real 32x32 PNGs, bs 64"),
            "imagenette-like · 426x320 JPEG -> 128px, rrc_flip": (
                jpeg_loader, f"{n_jpeg:,} JPEGs 426x320 ({min(distinct, n_jpeg)} distinct: upscaled CIFAR-10 subset "
                             "images, quality 90, hard-linked), bs 64, RandomResizedCrop(128, 0.35) + flip")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jpeg-images", type=int, default=2048, help="imagenette-like training images")
    p.add_argument("--jpeg-distinct", type=int, default=512, help="of which distinct (the rest hard links)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--notes", default="", help="conditions of the run, written under the table")
    args = p.parse_args(argv)
    import torch
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = {}
    scratch = Path(tempfile.mkdtemp(prefix="bench-loader-"))
    try:
        for name, (make, data) in _workloads(args.data_dir, scratch, args.jpeg_images, args.jpeg_distinct).items():
            print(f"{name}: workers {args.workers}, {args.rounds} rounds", flush=True)
            measured = loader_images_per_s(make, args.workers, args.rounds)
            base = measured[args.workers[0]]["images_per_s"]
            results[name] = {"data": data, "rows": [
                {"workers": n, **m, "ratio_to_first": m["images_per_s"] / base} for n, m in measured.items()]}
            for row in results[name]["rows"]:
                print(f"  {row['workers']} workers: {row['images_per_s']:.0f} images/s ({row['ratio_to_first']:.2f}x)",
                      flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = {"meta": {"date": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
                       "machine": f"{platform.machine()}, {os.cpu_count()} cores "
                                  f"({len(os.sched_getaffinity(0))} available), torch {torch.__version__}, "
                                  f"{torch.get_num_threads()} torch threads in the training process",
                       "load_average_before": load_before, "load_average_after": os.getloadavg(),
                       "wall_s": time.perf_counter() - started, "rounds": args.rounds,
                       "command": "python benchmarks/bench_loader.py " + " ".join(sys.argv[1:] if argv is None else argv),
                       "target": "2 workers >= 1.7x the images/s of 0 workers"},
              "workloads": results, "notes": args.notes}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loader.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "loader.md").write_text(render(report))
    print(f"wrote {args.out / 'loader.md'} and {args.out / 'loader.json'}")
    return 0


def render(report):
    meta = report["meta"]
    lines = [f"# PIL data path: loader throughput by worker count ({meta['date']})", "",
             f"- machine: {meta['machine']}",
             f"- load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in meta['load_average_before'])}; "
             f"after: {', '.join(f'{v:.2f}' for v in meta['load_average_after'])}",
             f"- command: `{meta['command']}` ({meta['wall_s']:.0f} s)",
             f"- method: training loader of `build_dataloaders(..., path='pil', num_workers=N)`, full passes "
             f"(decode, item transforms, collation, normalisation), worker counts in interleaved rounds, "
             f"{meta['rounds']} rounds, medians; the ratio is to 0 workers (everything in the training process)",
             f"- target: {meta['target']}", "",
             "| workload | workers | images/s | ratio to 0 workers |", "|---|---:|---:|---:|"]
    for name, w in report["workloads"].items():
        for row in w["rows"]:
            lines.append(f"| {name} | {row['workers']} | {row['images_per_s']:.0f} | {row['ratio_to_first']:.2f}x |")
    lines += [""] + [f"- {name}: {w['data']}" for name, w in report["workloads"].items()]
    verdicts = []
    for name, w in report["workloads"].items():
        two = next((row for row in w["rows"] if row["workers"] == 2), None)
        if two is not None and w["rows"][0]["workers"] == 0:
            verdicts.append(f"{name}: 2 workers / 0 workers = **{two['ratio_to_first']:.2f}x** "
                            f"({'at or above' if two['ratio_to_first'] >= 1.7 else 'below'} the 1.7x target, at the load "
                            "stated above)")
    if verdicts:
        lines += ["", "Result: " + "; ".join(verdicts) + "."]
    if report.get("notes"):
        lines += ["", report["notes"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
