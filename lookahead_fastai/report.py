"""Reports from the store: per-optimizer tables over seeds, paired differences against the
experiment's baseline with 95% intervals, and learning curves with bands.

Everything here reads finished runs from the SQLite store; nothing trains.
"""
import datetime as dt
import math
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from .experiments import get_experiment
from .store import ResultsStore

__all__ = ["summary_table", "paired_differences", "plot_curves", "write_report", "machine_description"]


def _t_quantile(df):
    from scipy.stats import t
    return float(t.ppf(0.975, df))


def _mean_std(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return float("nan"), float("nan"), 0
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else float("nan"), len(arr)


def _fmt(mean, std, pct=False, digits=4):
    if math.isnan(mean):
        return "—"
    scale, unit = (100.0, "%") if pct else (1.0, "")
    text = f"{mean * scale:.{2 if pct else digits}f}"
    if not math.isnan(std):
        text += f" ± {std * scale:.{2 if pct else digits}f}"
    return text + unit


def _runs(store, experiment, scale=None):
    """Finished runs of ``experiment`` (at ``scale``) whose spec is the one the experiment declares
    now: runs of an older version of a row (say, fewer epochs) stay in the store but not in reports."""
    runs = [r for r in store.runs(experiment, status="finished") if r["record"]]
    if scale is not None:
        runs = [r for r in runs if r["record"].get("scale") == scale]
    exp = get_experiment(experiment)
    specs = {s: exp.specs(s) for s in {r["record"].get("scale") for r in runs}}
    current = {spec.run_id(r["seed"]) for r in runs for spec in specs.get(r["record"].get("scale"), [])
               if spec.name == r["name"]}
    return [r for r in runs if r["run_id"] in current]


def _order(experiment, names):
    """Rows in the experiment's declared order (baseline first)."""
    declared = []
    for scale in ("smoke", "cpu", "full"):
        for spec in experiment.specs(scale):
            if spec.name not in declared:
                declared.append(spec.name)
    ordered = [n for n in declared if n in names] + sorted(n for n in names if n not in declared)
    if experiment.baseline in ordered:
        ordered.remove(experiment.baseline)
        ordered.insert(0, experiment.baseline)
    return ordered


def summary_table(store, experiment_name, scale):
    """One row per optimizer: mean ± std over seeds of the final and best accuracy, losses, time."""
    experiment = get_experiment(experiment_name)
    runs = _runs(store, experiment_name, scale)
    by_name = {}
    for r in runs:
        by_name.setdefault(r["name"], []).append(r["record"])
    rows = []
    for name in _order(experiment, by_name):
        recs = by_name[name]
        row = {"optimizer": name, "seeds": len(recs)}
        row["final accuracy"] = _fmt(*_mean_std([r["final"].get("accuracy") for r in recs])[:2], pct=True)
        row["best accuracy"] = _fmt(*_mean_std([r.get("best_accuracy") for r in recs])[:2], pct=True)
        if any("top5" in r["final"] for r in recs):
            row["top-5"] = _fmt(*_mean_std([r["final"].get("top5") for r in recs])[:2], pct=True)
        row["valid loss"] = _fmt(*_mean_std([r["final"].get("valid_loss") for r in recs])[:2])
        row["train loss"] = _fmt(*_mean_std([r["final"].get("train_loss") for r in recs])[:2])
        slow = [r["slow"]["accuracy"] for r in recs if r.get("slow")]
        row["slow-weights accuracy"] = _fmt(*_mean_std(slow)[:2], pct=True) if slow else "n/a"
        row["seconds"] = _fmt(*_mean_std([r.get("seconds") for r in recs])[:2], digits=1)
        rows.append(row)
    return pd.DataFrame(rows)


def _comparisons(experiment, names):
    if experiment.comparisons:
        return [(a, b) for a, b in experiment.comparisons if a in names and b in names]
    return [(n, experiment.baseline) for n in names if n != experiment.baseline and experiment.baseline in names]


def paired_differences(store, experiment_name, scale, metric="accuracy"):
    """Final ``metric`` of each row minus the row it is compared with (the experiment's
    ``comparisons``, else its baseline), paired by seed: mean, 95% t-interval, and whether the
    interval excludes 0."""
    experiment = get_experiment(experiment_name)
    runs = _runs(store, experiment_name, scale)
    table = {}
    for r in runs:
        table.setdefault(r["name"], {})[r["seed"]] = r["record"]["final"].get(metric)
    rows = []
    for name, versus in _comparisons(experiment, _order(experiment, table)):
        seeds = sorted(set(table[versus]) & set(table[name]))
        diffs = np.array([table[name][s] - table[versus][s] for s in seeds], dtype=float)
        row = {"optimizer": name, "vs": versus, "paired seeds": len(seeds)}
        if len(diffs) >= 2:
            mean, sd = diffs.mean(), diffs.std(ddof=1)
            half = _t_quantile(len(diffs) - 1) * sd / math.sqrt(len(diffs))
            row.update({"mean difference": f"{mean * 100:+.2f} pp",
                        "95% interval": f"[{(mean - half) * 100:+.2f}, {(mean + half) * 100:+.2f}] pp",
                        "conclusion": ("better" if mean - half > 0 else "worse" if mean + half < 0
                                       else "no difference shown")})
        elif len(diffs) == 1:
            row.update({"mean difference": f"{diffs[0] * 100:+.2f} pp", "95% interval": "needs ≥ 2 seeds",
                        "conclusion": "cannot tell (1 seed)"})
        else:
            row.update({"mean difference": "—", "95% interval": "—", "conclusion": "no paired seeds"})
        rows.append(row)
    return pd.DataFrame(rows)


def plot_curves(store, experiment_name, scale, path):
    """Valid accuracy and train loss per epoch: mean over seeds with a ±1 std band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experiment = get_experiment(experiment_name)
    frame = store.epochs_frame(experiment_name)
    runs = {r["run_id"] for r in _runs(store, experiment_name, scale)}
    frame = frame[frame["run_id"].isin(runs)] if len(frame) else frame
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if len(frame):
        for name in _order(experiment, set(frame["name"])):
            sub = frame[frame["name"] == name]
            for ax, col in zip(axes, ("accuracy", "train_loss")):
                if col not in sub:
                    continue
                stats = sub.groupby("epoch")[col].agg(["mean", "std"]).fillna(0.0)
                epochs = stats.index.to_numpy() + 1
                ax.plot(epochs, stats["mean"], label=name)
                ax.fill_between(epochs, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.2)
    axes[0].set(title="valid accuracy (mean ± std over seeds)", xlabel="epoch", ylabel="accuracy")
    axes[1].set(title="train loss, epoch mean (mean ± std)", xlabel="epoch", ylabel="loss", yscale="log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{experiment_name} — scale {scale}")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _data_source(path):
    if "site-packages" in str(path):
        return "the copy embedded in scikit-learn"
    return f"`{path}`"


def plot_lr_find(curve, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(curve["lrs"], curve["losses"])
    ax.axvline(curve["valley"], color="red", linestyle="--", label=f"valley {curve['valley']:.2e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed train loss", title=f"lr_find: {curve['row']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def machine_description():
    import torch
    cpu = platform.processor() or platform.machine()
    import os
    return f"{platform.system()} {cpu}, {os.cpu_count()} CPU cores, torch {torch.__version__}"


def _markdown(frame):
    if frame is None or not len(frame):
        return "_no finished runs_\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_report(store_path, experiment_name, out_dir="reports", scales=None):
    """Write ``out_dir/EXP.md`` (+ ``EXP_<scale>.png``) from the finished runs in the store."""
    experiment = get_experiment(experiment_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ResultsStore(store_path) as store:
        runs = _runs(store, experiment_name)
        present = sorted({r["record"]["scale"] for r in runs}, key=("smoke", "cpu", "full").index)
        scales = [s for s in (scales or present) if s in present]
        parts = [f"# {experiment_name}: {experiment.description}\n",
                 f"Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by "
                 f"`lookahead-fastai report {experiment_name}` from `{store_path}`.\n"]
        if not scales:
            parts.append("_No finished runs in the store for this experiment yet: run "
                         f"`lookahead-fastai run {experiment_name}` first._\n")
        for scale in scales:
            scale_runs = [r for r in runs if r["record"]["scale"] == scale]
            seeds = sorted({r["seed"] for r in scale_runs})
            rec = scale_runs[0]["record"]
            devices = sorted({r["record"].get("device", "?") for r in scale_runs})
            dates = sorted(r["finished_at"] for r in scale_runs if r.get("finished_at"))
            parts.append(f"## Scale `{scale}`\n")
            parts.append(
                f"- **Data**: {rec['dataset']} ({rec['n_train']} train / {rec['n_valid']} valid images), "
                f"from {_data_source(rec['data'])}\n"
                f"- **Protocol**: {experiment.protocol.get(scale, '')}\n"
                f"- **Seeds**: {len(seeds)} ({', '.join(map(str, seeds))})\n"
                f"- **Runs finished**: {dates[0][:16] if dates else '?'} to {dates[-1][:16] if dates else '?'} UTC "
                f"on {', '.join(devices)}; machine: {machine_description()}\n")
            if scale != "full":
                parts.append(f"> Scale `{scale}` is a small-budget run on offline data. These numbers are **not** "
                             "a reproduction of the original GPU results; compare optimizers within this table "
                             "only.\n")
            parts.append("### Final metrics (mean ± std over seeds)\n")
            parts.append(_markdown(summary_table(store, experiment_name, scale)))
            parts.append("\n### Paired differences in final accuracy\n")
            parts.append("Differences are per seed (same seed = same initialisation and data order), with a "
                         "95% Student-t interval over seeds. An interval that contains 0 means these seeds do "
                         "not show a difference.\n\n")
            parts.append(_markdown(paired_differences(store, experiment_name, scale)))
            png = plot_curves(store, experiment_name, scale, out_dir / f"{experiment_name}_{scale}.png")
            parts.append(f"\n![curves]({png.name})\n")
            curve_file = Path(store_path).parent / "lr_find" / f"{experiment_name}_{scale}.json"
            if experiment.lr_find_row and curve_file.exists():
                import json
                curve = json.loads(curve_file.read_text())
                lr_png = plot_lr_find(curve, out_dir / f"{experiment_name}_{scale}_lr_find.png")
                parts.append(f"\nfastai `lr_find` on `{curve['row']}` (seed 0): valley suggestion "
                             f"{curve['valley']:.2e}; the row was trained at its protocol lr.\n\n![lr_find]({lr_png.name})\n")
        if experiment.reference:
            parts.append("## Reference numbers from the original work\n")
            parts.append(experiment.reference.strip() + "\n")
    report = out_dir / f"{experiment_name}.md"
    report.write_text("\n".join(parts))
    return report


INDEX_PREAMBLE = """# Reports

Generated by `lookahead-fastai report all` from the results store. Every table states its scale, data,
seeds and date. `cpu`-scale numbers come from small CNNs/MLPs trained for a few epochs on the offline
data (CIFAR-10 subset: 5,085 train / 1,017 test real images; MNIST subset); they compare optimizers
**within** one table and are **not** reproductions of the original GPU results (those are quoted in
each report for context). Where Imagenette/Imagewoof have no offline copy, the CIFAR-10 subset stands
in for them and the rows say "CIFAR-10 substitute". CIFAR-100 has no offline copy: no cpu rows exist.
Per-run seconds were measured on a shared 2-core machine and are only indicative.

Each interval below is a 95% Student-t interval of the per-seed paired difference in final accuracy,
computed separately for each comparison: with this many comparisons, about one in twenty "supported"
lines can be a false positive, and 3 seeds give wide intervals. Read a supported line as "these seeds
show it at this scale", not as a general law.
"""


def write_index(store_path, out_dir="reports", scale="cpu"):
    """``out_dir/README.md``: one line per experiment report (scale, data, seeds, date, machine) and,
    from the paired differences, which conclusions the seeds support and which they cannot."""
    from .experiments import EXPERIMENTS
    out_dir = Path(out_dir)
    rows, supported, unsupported = [], [], []
    with ResultsStore(store_path) as store:
        for name in EXPERIMENTS:
            runs = _runs(store, name, scale)
            if not runs:
                continue
            rec = runs[0]["record"]
            seeds = sorted({r["seed"] for r in runs})
            dates = sorted(r["finished_at"] for r in runs if r.get("finished_at"))
            rows.append(f"| [{name}]({name}.md) | `{scale}` | {rec['dataset']} ({rec['n_train']} / {rec['n_valid']}) "
                        f"| {len(seeds)} | {dates[-1][:10] if dates else '?'} | {machine_description()} |")
            for _, d in paired_differences(store, name, scale).iterrows():
                if "95% interval" not in d.index or d["95% interval"] in ("—", "needs ≥ 2 seeds"):
                    continue
                line = (f"- **{name}**: {d['optimizer']} vs {d['vs']}: {d['mean difference']}, "
                        f"95% interval {d['95% interval']} over {d['paired seeds']} seeds")
                (supported if d["conclusion"] in ("better", "worse") else unsupported).append(
                    line + (f" — **{d['conclusion']}**" if d["conclusion"] in ("better", "worse") else ""))
    lookahead = [line for line in supported + unsupported
                 if any(f"{tag}/" in line.split(" vs ")[0] for tag in ("LA", "NLA"))
                 and not any(f"{tag}/" in line.split(" vs ")[1] for tag in ("LA", "NLA"))]
    counts = {c: sum(c in line for line in lookahead) for c in ("**better**", "**worse**")}
    headline = (f"## Does Lookahead help? (scale `{scale}`)\n\nOver the {len(lookahead)} paired comparisons of a "
                f"Lookahead or Nested Lookahead row against its plain inner optimizer, these seeds show it "
                f"better in {counts['**better**']}, worse in {counts['**worse**']}, and no difference in the "
                f"other {len(lookahead) - sum(counts.values())}. These are short runs of small models on small "
                "data; they say nothing about the paper's 200-epoch ResNet setting, which is the `full` scale.\n")
    text = [INDEX_PREAMBLE, headline, "| report | scale | data (train / valid) | seeds | date | machine |",
            "|---|---|---|---|---|---|", *rows, "",
            "## What these seeds support (the 95% interval of the paired difference excludes 0)", "",
            *(supported or ["- nothing"]), "",
            "## What they cannot tell (the interval contains 0: no difference shown, which is not the same as "
            "no difference)", "", *(unsupported or ["- nothing"]), ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "README.md"
    path.write_text("\n".join(text))
    return path
