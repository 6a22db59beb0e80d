"""The report of a declared lr grid (``Experiment.lr_sweep``), per dataset: accuracy against the
inner optimizer's lr (tables and a figure), robustness over the grid, seed std, early progress, the
paired comparisons and a closing paragraph written from those numbers. The numbers come from
:mod:`.lr_grid` and :mod:`.compare`; every label and lr from the sweep's cells, never from a row name."""
import math
from collections import Counter
from pathlib import Path

import numpy as np

from ..experiments import get_experiment
from . import text as words
from .compare import BETTER, NOT_SHOWN, WORSE, detectable_over, verdict_metric
from .lr_grid import (NEAR_BEST_PP, by_label, lr_grid_cells, plain_at_same_lr, robustness_rows, study_by_dataset,
                      times_to_target)
from .plots import FigureLink, plot_lr_robustness
from .runs import chosen_rows, completeness, finished_runs, run_seconds
from ..grid_rules import SELECTION_RULE
from .selection import grid_edge
from .stats import ALPHA, std_bounds
from .wording import collapse_columns, interval_text, split_text, stats_text, verdict_measure

__all__ = ["lr_grid_sections", "budget_text", "closing_parts", "support_text", "tuned_text", "edge_text",
           "grid_position_text", "detectable_text", "robustness_text", "variance_text", "early_text"]

_fmt, _pp, _p, _pct, _join = words.stat, words.pp, words.p_value, words.pct, words.join
_short, _fixed, _points = words.short, words.fixed, words.points


def _lr_table(cells, lrs, value):
    """Markdown: one line per optimizer family, one column per lr; ``value(cell)`` gives the text."""
    lines = ["| optimizer | " + " | ".join(f"lr {_short(lr)}" for lr in lrs) + " |", "|---|" + "---|" * len(lrs)]
    for label, group in by_label(cells).items():
        at = {c.lr: c for c in group}
        lines.append(f"| {label} | " + " | ".join(value(at[lr]) if lr in at else "—" for lr in lrs) + " |")
    return "\n".join(lines) + "\n"


def _lr_tables(cells, value):
    """One :func:`_lr_table` per inner optimizer (its families against its own lr grid)."""
    tables = []
    for inner in dict.fromkeys(c.inner for c in cells):
        icells = [c for c in cells if c.inner == inner]
        tables.append(_lr_table(icells, sorted({c.lr for c in icells}), value))
    return tables


def _diverged_text(diverged):
    """"lr 1: 5/5, ..." for (lr, diverged, runs) triples; "none" when there are none."""
    return _join((f"lr {_short(lr)}: {k}/{n}" for lr, k, n in diverged))


def _comparison_label(c, cell_of, picked=()):
    """A comparison of two cells of the grid (``cell_of``: row -> its cell), by family label and lr."""
    row, versus = cell_of[c.row], cell_of[c.versus]
    if row.lr == versus.lr:
        also = " (also each one's best lr: the tuned comparison)" if (c.row, c.versus) in picked else ""
        return f"{row.label} − {versus.label}, both at lr {_short(row.lr)}{also}"
    return f"tuned: {row.label} at its best lr {_short(row.lr)} − {versus.label} at its best lr {_short(versus.lr)}"


def edge_text(robust):
    """The families whose best lr is the smallest or largest of their grid (rows of
    :func:`.lr_grid.robustness_rows`): their sweep may have stopped short of their best, so a tuned comparison
    involving them can misstate the gap."""
    edge = []
    for r in robust:
        side = r["lrs"] > 1 and grid_edge(r["best_lr"], (r["lowest_lr"], r["highest_lr"]))  # grid_rules' rule
        if side:
            edge.append(f"{r['label']} (lr {_short(r['best_lr'])}, the grid's {side})")
    if not edge:
        return ""
    return (f" Best lr at an edge of its grid: {_join(edge)}; the sweep may have stopped short of that family's "
            "best, so a tuned comparison involving it can misstate the gap.")


def grid_position_text(at_lr, cells, robust):
    """Where the like-for-like better/worse verdicts sit on the lr grid: below, at or above the plain
    inner optimizer's best lr (its best mean over seeds), with the reading the pattern suggests."""
    inner_of = {c.row: c.inner for c in cells}
    best_lr = {r["inner"]: r["best_lr"] for r in robust if not r["variant"]}
    lr_of = {c.row: c.lr for c in cells}

    def position(c):
        best = best_lr.get(inner_of[c.versus])
        if best is None:
            return None
        return "below" if lr_of[c.row] < best else "above" if lr_of[c.row] > best else "at"

    counts = {v: Counter(position(c) for c in at_lr if c.lookahead_verdict == v) for v in (BETTER, WORSE)}
    if not any(counts.values()):
        return ""
    places = ("below", "at", "above")

    def spread(counter):
        return ", ".join(f"{counter[p]} {p}" for p in places if counter[p]) or "none"

    text = (f"**Where in the lr grid** (each like-for-like verdict's lr against the plain optimizer's best lr, "
            f"{_join(f'{inner} {_short(lr)}' for inner, lr in best_lr.items())}): Lookahead better "
            f"{sum(counts[BETTER].values())} ({spread(counts[BETTER])}), worse {sum(counts[WORSE].values())} "
            f"({spread(counts[WORSE])}).")
    if counts[BETTER] and set(counts[BETTER]) <= {"above"} and counts[WORSE] and set(counts[WORSE]) <= {"below"}:
        text += (" Every better verdict is above the plain optimizer's best lr and every worse one below it: "
                 "the pattern of a wrapper that shrinks the effective step (the slow weights move α of the way "
                 "to the fast ones every k steps), so Lookahead gains where the plain lr is too large and loses "
                 "where it is too small. That reading is a description of where the verdicts fall, not a test.")
    return text


def _grid_labels(cells):
    """``(lr_of, label_of, short_of)``: each row's lr, family label, and short name (a Lookahead family
    by its variant alone) in the cells of the grid."""
    return ({c.row: c.lr for c in cells}, {c.row: c.label for c in cells},
            {c.row: c.variant or c.label for c in cells})


def support_text(data, cells, at_lr, seed_text, n_family, alpha=ALPHA):
    """What the like-for-like verdicts (``at_lr``: the comparisons at one lr) support: where Lookahead was
    better, worse, or not shown to differ, and the runs that diverged."""
    lr_of, label_of, short_of = _grid_labels(cells)

    def where(cs):
        return _join(f"{short_of[c.row]}/{label_of[c.versus]} at lr {_short(lr_of[c.row])} "
                     f"({_pp(c.mean)} pp)" for c in cs)
    better = [c for c in at_lr if c.lookahead_verdict == BETTER]
    worse = [c for c in at_lr if c.lookahead_verdict == WORSE]
    other = [c for c in at_lr if c.verdict not in (BETTER, WORSE, NOT_SHOWN)]
    collapsed = [c for c in at_lr if c.collapsed[0] or c.collapsed[2]]
    return (
        f"**What {seed_text} seeds on {data} support.** Like-for-like, at each lr (only the wrapper differs; "
        f"Holm-adjusted over the {n_family} comparisons of this scale, family-wise error ≤ {words.percent(alpha)}): Lookahead "
        f"better at {where(better)}; worse at {where(worse)}; no difference shown at the other lrs"
        + (", except where a side has no paired seeds or no spread ("
           + _join(f"{n} {v}" for v, n in Counter(c.verdict for c in other).items()) + ")" if other else "") + ". These are the per-lr effects of the table above, not a score: the lrs of a grid "
        "are neither independent nor equally relevant."
        + (" Runs that diverged, Lookahead against its inner optimizer at the same lr: " + "; ".join(
            f"{short_of[c.row]}/{label_of[c.versus]} at lr {_short(lr_of[c.row])}: {c.collapsed[0]}/"
            f"{c.collapsed[1]} against {c.collapsed[2]}/{c.collapsed[3]} (Fisher p {_p(c.p_collapse)}, raw)"
            for c in collapsed) + "." if collapsed else ""))


def _pair_text(c, cells):
    """One tuned comparison in words: each side's family at its lr, the mean difference ("—" without paired
    seeds), its interval and verdict."""
    lr_of, label_of, _ = _grid_labels(cells)
    return (f"{label_of[c.row]} at lr {_short(lr_of[c.row])} vs {label_of[c.versus]} at lr {_short(lr_of[c.versus])}: "
            f"{'—' if math.isnan(c.mean) else _pp(c.mean)} pp, {interval_text(c)}, {c.verdict}")


def confirmed_text(data, cells, tuned, robust, seed_text, n_family, measure, alpha=ALPHA):
    """With stages: what the confirmation seeds support on ``data``: each Lookahead family at its chosen
    lr against its inner optimizer at its own, in ``measure`` (:func:`.wording.verdict_measure`), with the
    families at a grid edge."""
    parts = [_pair_text(c, cells) for c in tuned]
    return (f"**What {seed_text} confirmation seeds on {data} support.** Each family at the lr its tuning chose "
            f"(on other seeds and on the validation split), {measure} paired by seed, Holm-adjusted over the "
            f"{n_family} comparisons of this scale (family-wise error ≤ {words.percent(alpha)}): "
            + ("; ".join(parts) if parts else "no comparison has finished runs on both sides") + "."
            + edge_text(robust) + " The like-for-like differences at each lr of the tuning table are "
            "descriptive: with the tuning seeds alone they are not tested.")


def tuned_text(cells, tuned, robust):
    """Each family at its own best lr against its inner optimizer at its own (``tuned``), with the
    families whose best lr is at an edge of the grid; None without tuned comparisons."""
    parts = [_pair_text(c, cells) for c in tuned]
    if not parts:
        return None
    return ("Each family at its own best lr (tuned against tuned; "
            + ("like-for-like where the best lrs coincide; " if any(c.kind == "like-for-like" for c in tuned) else "")
            + "the best lr was picked from these same seeds, which flatters every family's best by a "
              "similar selection effect): " + "; ".join(parts) + "."
            + edge_text(robust))


def detectable_text(comparisons, n_family):
    """The smallest difference these seeds could detect (:func:`.compare.detectable_over`), raw and
    after Holm's adjustment; None when there is nothing to measure it from."""
    det = detectable_over(comparisons, n_family)
    if not det:
        return None
    return (
        f"**The smallest difference these seeds could detect**: the raw 95% intervals' half-width is "
        f"{_points(det['median'])} pp at the median ({_points(det['low'])}–{_points(det['high'])} pp): a "
        "true difference smaller than that would most likely read \"no difference shown\". After Holm's "
        f"adjustment the bar is higher: its first (strictest) step needed about {_points(det['holm_first'])} pp "
        "at the median spread. \"No difference shown\" means these seeds cannot tell, not that Lookahead and "
        "its inner optimizer perform the same.")


def robustness_text(robust, staged=False):
    """Each Lookahead family's range and worst case over the grid against its plain inner optimizer's
    (rows of :func:`.lr_grid.robustness_rows`; descriptive); None without such a pair."""
    plain = {r["inner"]: r for r in robust if not r["variant"]}
    rob = []
    for r in robust:
        if r["variant"] and r["inner"] in plain:
            p = plain[r["inner"]]
            rob.append(f"{r['label']}: range {_points(r['range'])} pp, worst {_pct(r['worst'])}%"
                       + (f", diverged {_diverged_text(r['diverged'])}" if r["diverged"] else "")
                       + f" (plain {r['inner']}: {_points(p['range'])} pp, worst {_pct(p['worst'])}%"
                       + (f", diverged {_diverged_text(p['diverged'])}" if p["diverged"] else "") + ")")
    if not rob:
        return None
    narrower = sum(r["range"] < plain[r["inner"]]["range"] for r in robust if r["variant"] and r["inner"] in plain)
    return (
        "**Robustness to the lr** (range and worst case of the mean over the grid; descriptive, not "
        "tested; over the runs that trained, with the runs that diverged named): "
        f"{'; '.join(rob)}. Lookahead's range was narrower in {narrower} of {len(rob)} families. "
        + ("Whether a narrower range is more than seed noise is not tested here: the tuning stage's per-lr "
           "differences are descriptive, and only each family's chosen lr was confirmed." if staged else
           "Whether a narrower range is more than seed noise rests on the per-lr comparisons above: a "
           "robustness claim is supported only where Lookahead is *better* at the grid's poor lrs."))


def variance_text(cells):
    """Lookahead's seed std against its inner optimizer's at the same lr, cell by cell, with how far
    a std is known from these seeds (F-test on the ratio); None without such a pair."""
    pairs = []
    for la in (c for c in cells if c.variant):
        base = plain_at_same_lr(cells, la)
        if base is not None and not math.isnan(la.final.std) and not math.isnan(base.final.std):
            pairs.append((la, base))
    if not pairs:
        return None
    n = min(min(la.final.n, b.final.n) for la, b in pairs)
    low, high, f_ratio = std_bounds(n) if n > 1 else (math.nan,) * 3
    lower = sum(la.final.std < b.final.std for la, b in pairs)
    beyond = [la for la, b in pairs if b.final.std > 0 and la.final.std > 0 and
              max(la.final.std / b.final.std, b.final.std / la.final.std) > f_ratio]
    return (
        f"**Seed variance**: Lookahead's std over seeds was lower than its inner optimizer's at "
        f"{lower} of {len(pairs)} (family, lr) cells. With {n} seeds a std is known only within ×{_fixed(low)} to "
        f"×{_fixed(high)} of its estimate (95%), and two stds differ at 5% (two-sided F-test, one cell alone, "
        f"treating the two rows as independent) only "
        f"when their ratio exceeds ×{_fixed(f_ratio)}: {len(beyond)} cell(s) did"
        + (f" ({_join(f'{c.label} at lr {_short(c.lr)}' for c in beyond)})" if beyond else "")
        + ". So the variance claim is "
        + ("not supported either way by these seeds." if not beyond else
           "open to the cells listed, uncorrected for the many cells looked at."))


def early_text(cells):
    """Accuracy after epoch 1, Lookahead minus its inner optimizer at the same lr (descriptive); None
    without epoch records for such a pair."""
    early = []
    for la in (c for c in cells if c.variant and 0 in c.by_epoch):
        base = plain_at_same_lr(cells, la)
        if base is not None and 0 in base.by_epoch:
            early.append(la.by_epoch[0].mean - base.by_epoch[0].mean)
    if not early:
        return None
    return (
        f"**Early progress** (accuracy after epoch 1, Lookahead minus its inner optimizer at the same lr, "
        f"means over seeds; descriptive, not tested): ahead in {sum(d > 0 for d in early)} of {len(early)} "
        f"cells, median {_pp(np.median(early))} pp (from {_pp(min(early))} to "
        f"{_pp(max(early))} pp).")


NOT_SUPPORTED_TEXT = (
    "**What they do not support**: anything beyond this dataset, model, schedule and number of epochs "
    "(the paper's setting is 200 epochs of ResNet-18 on the full CIFAR); a claim of *no* difference where "
    "the verdict is \"no difference shown\"; and the untested descriptive figures (range, worst case, "
    "std, early accuracy) read as established.")


def closing_parts(data, cells, comparisons, tuned, robust, n_family, alpha=ALPHA, measure=None):
    """The closing paragraphs for one dataset, from the numbers (what these seeds support, what not),
    by name: "support", "tuned", "where", "detectable", "robustness", "variance", "early", "not supported";
    a paragraph with nothing to say is left out."""
    lr_of = {c.row: c.lr for c in cells}
    at_lr = [c for c in comparisons if lr_of[c.row] == lr_of[c.versus]]
    seed_text = "/".join(map(str, sorted({len(c.seeds) for c in comparisons if c.seeds}))) or "0"
    staged = measure is not None  # with stages: the verdicts' measure on the confirmation seeds
    text = {"support": confirmed_text(data, cells, tuned, robust, seed_text, n_family, measure, alpha) if staged else
            support_text(data, cells, at_lr, seed_text, n_family, alpha),
            "tuned": None if staged else tuned_text(cells, tuned, robust),
            "where": None if staged else grid_position_text(at_lr, cells, robust) or None,
            "detectable": detectable_text(comparisons, n_family),
            "robustness": robustness_text(robust, staged),
            "variance": variance_text(cells),
            "early": early_text(cells),
            "not supported": NOT_SUPPORTED_TEXT}
    return {name: paragraph for name, paragraph in text.items() if paragraph is not None}


def budget_text(runs, experiment_name, scale):
    """The study's measured compute against the budget it declares (``Experiment.budget``: say, 3 hours
    of the 2 cores at scale cpu, run as single-threaded sweeps sharing one store), from the runs' recorded
    times; "" for an experiment without a budget at ``scale``."""
    budget = get_experiment(experiment_name).budget
    if budget is None or scale != budget.scale:
        return ""
    seconds = run_seconds(runs)
    if not seconds:
        return ""
    planned = completeness(experiment_name, scale, runs).planned
    hours = sum(seconds) / 3600
    machine = budget.machine_hours(sum(seconds))
    text = (f"**Compute against the budget** (the whole study in at most {_short(budget.hours)} hours of the "
            f"{budget.workers} cores): the training times of the {len(seconds)} finished runs sum to {_fixed(hours)} h "
            f"of one core; as {budget.workers} single-threaded sweeps sharing one store, that is **{_fixed(machine)} h "
            f"of the {budget.workers} cores**")
    if len(seconds) < planned:
        whole = budget.machine_hours(np.mean(seconds) * planned)
        text += f" for {len(seconds)} of {planned} runs (all {planned} at their mean: about {_fixed(whole)} h)"
    span = _wall_span(runs)
    return (text + f", against {_fixed(budget.projected_hours(scale))} h projected from single runs (the module's "
            "MEASURED), each sweep's process start included. The times are wall times of runs on a machine at times "
            "shared with other jobs, so they include that contention; the time before each fit (loading the data, "
            "building the Learner) is not in them."
            + (f" From the first run's start to the last one's finish the study took **{_fixed(span / 3600)} h** of "
               "wall-clock time, everything included." if span else "") + "\n")


def _wall_span(runs):
    """Seconds from the earliest ``started_at`` to the latest ``finished_at`` of ``runs`` (None without them)."""
    import datetime as dt
    starts = [r["started_at"] for r in runs if r.get("started_at")]
    ends = [r["finished_at"] for r in runs if r.get("finished_at")]
    if not starts or not ends:
        return None
    return (dt.datetime.fromisoformat(max(ends)) - dt.datetime.fromisoformat(min(starts))).total_seconds()


def _accuracy_section(data, cells, experiment_name, scale, out_dir, measure=None):
    """A dataset's heading, rows and seeds, its final accuracy against lr (tables) and the figure;
    ``measure``: with stages, what the verdicts compare (:func:`.wording.verdict_measure`)."""
    seeds = sorted({s for c in cells for s in c.by_seed})
    split = ("the validation split held out of the training images" if measure == "test accuracy" else
             "the validation images (the dataset's test split: no holdout)")
    parts = [f"### {data}\n",
             (f"**Tuning stage**: {len(cells)} rows × the tuning seeds ({', '.join(map(str, seeds))}), on "
              f"{split}. These runs choose each family's lr and give the "
              "sensitivity curves below; the verdicts come from the confirmation stage further down.\n" if measure else
              f"{len(cells)} rows × up to {len(seeds)} seeds ({', '.join(map(str, seeds))}).\n"),
             "#### Final accuracy against the inner optimizer's lr (%, mean ± std over seeds, n)\n"]
    parts += _lr_tables(cells, lambda c: f"{_fmt(c.final, pct=True)} ({c.final.n}"
                        + (f"; {c.diverged} diverged, left out" if c.diverged else "") + ")")
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in data)
    png = plot_lr_robustness(cells, Path(out_dir) / f"{experiment_name}_{scale}_{safe}.png",
                             f"{experiment_name} · {data} · scale {scale}")
    parts.append(FigureLink(f"accuracy against lr, {data}", png.name))
    return parts


def _selection_section(cells, chosen):
    """With stages: each family's lr as the tuning stage chose it (grid_rules' rule, validation only),
    with its tuning numbers and whether it sits at an edge of what ran."""
    lines = ["| optimizer | chosen lr | validation accuracy, tuning seeds (%) | diverged (tuning) | lrs tried | "
             "at a grid edge |", "|---|---|---|---|---|---|"]
    for label, group in by_label(cells).items():
        pick = next((c for c in group if c.row in chosen), None)
        if pick is None:
            lines.append(f"| {label} | — (not settled, or every run diverged) | — | — | {len(group)} | — |")
            continue
        edge = grid_edge(pick.lr, [c.lr for c in group])
        lines.append(f"| {label} | {_short(pick.lr)} | {_fmt(pick.final, pct=True)} ({pick.final.n}) | "
                     f"{pick.diverged} | {_join(_short(c.lr) for c in group)} | {edge or 'no'} |")
    return ["#### The lr each family takes to confirmation\n",
            f"Chosen on the tuning seeds by validation accuracy alone: {SELECTION_RULE}. A family whose best "
            "sat at an edge of its grid got the next point that way (the experiment's lr_extension, up to its "
            "limit); one still at an edge is flagged and kept out of the headline.\n", "\n".join(lines) + "\n"]


def _confirmation_section(conf_cells, confirmation, measure):
    """With stages: each chosen row on the fresh confirmation seeds: validation and test accuracy, over
    the runs that trained, and the runs that diverged; ``measure``: what the verdicts compare."""
    lines = ["| optimizer | lr | runs | diverged | validation accuracy (%) | test accuracy (%) |",
             "|---|---|---|---|---|---|"]
    for c in conf_cells:
        lines.append(f"| {c.label} | {_short(c.lr)} | {c.final.n + c.diverged} | {c.diverged} | "
                     f"{_fmt(c.final, pct=True)} | {_fmt(c.test, pct=True)} |")
    return ["#### Confirmation stage: each chosen lr on fresh seeds\n",
            f"Seeds {_join(map(str, confirmation))}, none used in tuning. Mean ± std over the runs that trained. "
            + (split_text(measure) + "\n"), "\n".join(lines) + "\n"]


def _robustness_section(cells):
    """Robustness over the lr grid (:func:`.lr_grid.robustness_rows`) as a table, with how to read it."""
    near = _short(NEAR_BEST_PP)
    lines = ["| optimizer | lrs | best lr (acc %) | worst lr (acc %) | range (pp) | grid mean (%) | "
             f"lrs within {near} pp of best | worst run (%) | per-seed range (pp) | diverged runs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in robustness_rows(cells):
        sr = r["seed_range"]
        lines.append(f"| {r['label']} | {r['lrs']} | {_short(r['best_lr'])} ({_pct(r['best'])}) | "
                     f"{_short(r['worst_lr'])} ({_pct(r['worst'])}) | {_points(r['range'])} | "
                     f"{_pct(r['grid_mean'])} | {_join(_short(v) for v in r['near'])} | {_pct(r['worst_run'])} | "
                     f"{_pct(sr.mean)} ± {_pct(sr.std)} | {_diverged_text(r['diverged'])} |")
    return ["#### Robustness over the lr grid\n",
            f"From the means over seeds: the best and worst lr, the range between them, the mean over the "
            f"grid, the lrs within {near} pp of the best; the worst single run; and the range over the "
            "grid seed by seed (mean ± std over seeds). Descriptive: none of these is tested. All of them "
            "are over the runs that trained: a diverged run is left out and counted in the last column (an "
            "lr where every run diverged has no mean and is not among the lrs).\n",
            "\n".join(lines) + "\n"]


def _std_and_early_sections(cells):
    """The seed std at each lr (with how far a std is known from these seeds) and the accuracy after
    the first two epochs, when the runs recorded them."""
    parts = ["#### Seed std at each lr (pp; the variance claim)\n"]
    parts += _lr_tables(cells, lambda c: _pct(c.final.std))
    n = min((c.final.n for c in cells), default=0)
    if n > 1:
        low, high, f_ratio = std_bounds(n)
        parts.append(f"With {n} seeds a std's 95% interval is ×{_fixed(low)} to ×{_fixed(high)} of the estimate; "
                     f"two stds differ at 5% (F-test) only when their ratio exceeds ×{_fixed(f_ratio)}.\n")
    epochs = sorted({e for c in cells for e in c.by_epoch})[:2]
    if epochs:
        parts.append("#### Accuracy after the first epochs (%, mean over seeds; the speed claim)\n")
        parts.append(" / ".join(f"epoch {e + 1}" for e in epochs) + " in each cell.\n")
        parts += _lr_tables(cells, lambda c: " / ".join(
            _pct(c.by_epoch[e].mean) if e in c.by_epoch else "—" for e in epochs))
    return parts


def _comparisons_section(cells, comparisons, n_family, picked, measure=None):
    """The paired comparisons of a dataset (like-for-like at each lr, tuned at each family's best lr; with
    stages, tuned only, in ``measure`` on the confirmation seeds) as a table, with the collapse rates when
    some run diverged."""
    cell_of = {c.row: c for c in cells}
    collapses = any(c.collapsed[0] or c.collapsed[2] for c in comparisons)
    extra = " diverged (Lookahead / inner) | collapse p (Fisher) |" if collapses else ""
    lines = ["| comparison | kind | seeds | mean (pp) | raw 95% interval | half-width (pp) | p | p (Holm) | "
             "conclusion |" + extra, "|---|---|---|---|---|---|---|---|---|" + "---|" * (2 * collapses)]
    for c in comparisons:
        half = "—" if math.isnan(c.low) else _points((c.high - c.low) / 2)
        lines.append(f"| {_comparison_label(c, cell_of, picked)} | {c.kind} | {len(c.seeds)} | "
                     f"{'—' if math.isnan(c.mean) else _pp(c.mean)} | {interval_text(c)} | {half} | "
                     f"{_p(c.p_raw)} | {_p(c.p_holm)} | {c.verdict} |"
                     + (" " + " | ".join(collapse_columns(c).values()) + " |" if collapses else ""))
    if collapses:
        lines.append("\nA paired seed needs both runs to have trained: a comparison where every run of one side "
                     "diverged has no paired seeds and is answered by the collapse rates, compared with Fisher's "
                     "exact test (two-sided, raw: for that comparison alone).")
    if measure is not None:
        return ["#### The verdicts: Lookahead − its inner optimizer, each at its chosen lr (confirmation seeds, "
                f"{measure})\n",
                f"Tuned against tuned, on the confirmation seeds only, paired by seed. Holm-adjusted over all "
                f"{n_family} comparisons of this scale (both datasets). " + stats_text(n_family) + "\n",
                "\n".join(lines) + "\n"]
    return ["#### Paired differences: Lookahead − its inner optimizer (final accuracy)\n",
            f"Like-for-like at each lr, and tuned against tuned at each family's best lr. Holm-adjusted "
            f"over all {n_family} comparisons of this scale (both datasets). " + stats_text(n_family) + "\n",
            "\n".join(lines) + "\n"]


def _time_to_target_section(cells, times, share):
    """Epochs to the target, each Lookahead family at its best lr against its inner optimizer at that one's
    best, paired by seed, the runs that never got there counted (AlgoPerf's time-to-result)."""
    cell_of = {c.row: c for c in cells}
    order = list(cell_of)  # the declared order of the grid's rows
    pairs = sorted(((row, versus, t) for (row, versus), t in times.items() if row in cell_of and versus in cell_of),
                   key=lambda p: order.index(p[0]))
    if not pairs:
        return []
    lines = ["| comparison | target (%) | epochs, Lookahead (by seed) | epochs, inner (by seed) | "
             "Lookahead first / same / inner first | never reached (Lookahead / inner) | sign test p (raw) |",
             "|---|---|---|---|---|---|---|"]
    for row, versus, t in pairs:
        a_never, a_n, b_never, b_n = t.never
        lines.append(f"| {cell_of[row].label} at lr {_short(cell_of[row].lr)} − {cell_of[versus].label} at lr "
                     f"{_short(cell_of[versus].lr)} | {_pct(t.target)} | {words.epochs_list(t.a[s] for s in sorted(t.a))} | "
                     f"{words.epochs_list(t.b[s] for s in sorted(t.b))} | {t.a_first} / {t.same} / {t.b_first} | "
                     f"{a_never}/{a_n} / {b_never}/{b_n} | {_p(t.p)} |")
    return ["#### Time to target: epochs until the validation accuracy first reaches it\n",
            f"The target is {words.percent(share)} of the inner optimizer's mean final accuracy at its best lr "
            "(over its runs that trained); each family at its own best lr, paired by seed (AlgoPerf's "
            "time-to-result; the paper's \"faster early progress\"). A run that never reaches the target is "
            "counted as such, never dropped. Descriptive, with an exact two-sided sign test over the seeds where "
            "one side got there first (raw: for that comparison alone; ties and seeds where neither did left out).\n",
            "\n".join(lines) + "\n"]


def lr_grid_sections(store, experiment_name, scale, out_dir):
    """The body of an lr-grid report (``Experiment.lr_sweep``) for one scale: per dataset, accuracy
    against lr (table and figure), robustness over the grid, seed std at each lr, accuracy after the
    first epochs, the paired comparisons (like-for-like at each lr, tuned at each family's best lr; Holm-adjusted over
    the scale) and a closing paragraph written from those numbers."""
    datasets, n_family, picked = study_by_dataset(store, experiment_name, scale)
    times = times_to_target(store, experiment_name, scale, picked)
    parts = [t for t in [budget_text(finished_runs(store, experiment_name, scale), experiment_name, scale)] if t]
    stages = get_experiment(experiment_name).stages.get(scale)
    confirmed = lr_grid_cells(store, experiment_name, scale, verdicts=True) if stages else []
    chosen = chosen_rows(experiment_name, scale, finished_runs(store, experiment_name, scale)) if stages else {}
    measure = verdict_measure(verdict_metric(experiment_name, scale)) if stages else None
    for data, dcells, dcomp, tuned in datasets:
        parts += _accuracy_section(data, dcells, experiment_name, scale, out_dir, measure)
        if stages:
            parts += _selection_section(dcells, set(chosen.values()))
        parts += _robustness_section(dcells)
        parts += _std_and_early_sections(dcells)
        if stages:
            parts += _confirmation_section([c for c in confirmed if c.data == data], stages.confirmation, measure)
        parts += _comparisons_section(dcells, dcomp, n_family, picked, measure)
        parts += _time_to_target_section(dcells, times, get_experiment(experiment_name).target_share)
        parts.append("#### What these seeds support, and what they do not\n")
        parts.append("\n\n".join(closing_parts(data, dcells, dcomp, tuned, robustness_rows(dcells),
                                                 n_family, measure=measure).values()) + "\n")
    if not datasets:
        parts.append("_No finished runs of the lr grid at this scale._\n")
    return parts
