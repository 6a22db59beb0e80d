"""The index, ``reports/README.md``: first the answer to each declared question (a forest plot of one
family's effects, then the numbers; never a count of verdicts), then one line per experiment report and
every comparison by verdict. The numbers come from :mod:`.families` and :mod:`.compare`."""
import math
from pathlib import Path

from ..experiments import EXPERIMENTS
from ..experiments.index_text import INDEX_PREAMBLE, index_context
from ..grid_rules import SELECTION_RULE
from ..store import ResultsStore
from . import plots, text as words
from .compare import BETTER, NO_SEEDS, NOT_SHOWN, ONE_SEED, WORSE, compare, detectable_over, n_tested, verdict_metric
from .families import noise_floors, question_lines
from .questions import LOOKAHEAD_VS_INNER
from .runs import completeness, current_specs, finished_runs
from .stats import ALPHA, family_effects
from .wording import (DETECTABLE_TEXT, completeness_text, datasets_text, detectable_text, interval_text,
                      run_environments)

__all__ = ["reading", "rules_note", "selection_text", "question_section", "write_index"]

_pp, _p, _join, _short = words.pp, words.p_value, words.join, words.short


def reading(line, effect, alpha=ALPHA):
    if not line.scored_slow:
        return "flagged: Lookahead not scored on slow weights with BatchNorm recomputed; not in the family"
    if line.edges:
        return ("flagged: best lr at a grid edge (" + _join(f"{label} at {_short(lr)}, the {side}"
                                                           for label, lr, side in line.edges) + "); not in the family")
    if effect.paired.n < 2:
        return "cannot tell (fewer than 2 paired seeds)"
    if math.isnan(effect.p_holm):
        return "the same difference in every seed (no spread, no test)"
    if effect.p_holm <= alpha:
        return "**Lookahead better**" if effect.paired.mean > 0 else "**Lookahead worse**"
    return "no difference shown"


def rules_note(c, specs, staged):
    """What a comparison outside the headline lacks of the headline's rules, in brackets ("" for none):
    Lookahead scored on its fast weights (or without BatchNorm recomputed for its slow ones), and a
    setting picked on the same seeds and on the test split (a tuned comparison without stages)."""
    notes = []
    if c.lookahead_vs_inner:
        spec = specs.get(c.row if c.lookahead_vs_inner > 0 else c.versus)
        if spec is not None and not spec.eval_slow_weights:
            notes.append("Lookahead scored on its fast weights")
        elif spec is not None and not spec.slow_bn_batches:
            notes.append("Lookahead scored on its slow weights without BatchNorm recomputed")
    if c.kind == "tuned" and not staged:
        notes.append("settings picked on these same seeds, on the test split")
    return f" [{'; '.join(notes)}: not as the headline is scored]" if notes else ""


def selection_text(lines, scale):
    """How the lines' best lrs were chosen and on which runs their differences stand, per experiment."""
    parts = []
    for name in dict.fromkeys(line.experiment for line in lines):
        stages = next(line.stages for line in lines if line.experiment == name)
        if not stages:
            parts.append(f"{name}: the best lr is picked on the same seeds the differences use, and on the "
                         "validation images, which are the dataset's test split: the selection flatters every best lr.")
            continue
        held_out = verdict_metric(name, scale) == "test_accuracy"
        parts.append(
            f"{name}: each family's lr was chosen on its tuning seeds ({_join(map(str, stages.tuning))}) by "
            + ("validation accuracy on a split held out of the training images" if held_out else
               "accuracy on the validation images (the dataset's test split: no holdout)")
            + f", ranked by {SELECTION_RULE}; the differences are from fresh confirmation seeds "
            f"({_join(map(str, stages.confirmation))}), none used in tuning, "
            + ("on the test split, which no choice read." if held_out else "on those same images."))
    return " ".join(parts)


def question_section(store, scale, out_dir, question=LOOKAHEAD_VS_INNER, floors=None):
    """The index's first section for ``question``: its family as a forest plot, then the numbers,
    how Lookahead is scored, what is flagged and left out, and the noise floor beside it."""
    lines = question_lines(store, scale, question.key)
    head = [f"## {question.title} (scale `{scale}`)", ""]
    if not lines:
        return head + ["_No finished runs of an experiment that declares this question at this scale._", ""]
    effects = family_effects({i: line.differences for i, line in enumerate(lines)},
                             in_family={i: line.in_family for i, line in enumerate(lines)})
    m = sum(e.in_family and not math.isnan(e.paired.p) for e in effects)
    png = plots.forest_plot(
        [(f"{line.data} · {line.label} − {line.inner}" + ("" if line.in_family else " (flagged)"),
          e.paired.mean * 100, e.low * 100, e.high * 100, line.in_family) for line, e in zip(lines, effects)],
        Path(out_dir) / f"question_{question.key}_{scale}.png",
        f"{question.short} (scale {scale})\nblack: the family (Holm, Bonferroni-level intervals); grey: flagged, raw 95%",
        ("test accuracy of the confirmation seeds" if all(line.stages and verdict_metric(line.experiment, scale)
                                                           == "test_accuracy" for line in lines) else "final accuracy")
        + ", Lookahead − inner optimizer (pp)")
    floors = floors or {}
    studies = []
    for n in dict.fromkeys(line.experiment for line in lines):
        grid = completeness(n, scale, finished_runs(store, n, scale))
        studies.append(f"[{n}]({n}.md)" + ("" if grid.complete else f" (**incomplete**: {completeness_text(grid)} runs finished)"))
    studies = _join(studies)
    head += [f"![{question.title}: effects]({png.name})", "",
             f"One line per dataset × inner optimizer × Lookahead variant, from {studies}: Lookahead at the best lr of "
             "its own sweep minus its inner optimizer at the best lr of its own sweep, final accuracy paired by seed "
             "(each comparison once; the runs of an inner optimizer at its best lr serve both of its Lookahead "
             f"variants). {question.scoring} The family is the {m} comparisons not flagged: their "
             f"p-values are Holm-adjusted over the {m}, and their intervals are at the Bonferroni level "
             f"(1 − 0.05/{m}: Holm's step-down has no interval of its own and this one contains each step's). "
             "A comparison whose best lr sits at an edge of its grid is flagged (the sweep may have stopped short "
             "of that family's optimum) and is drawn grey with its raw 95% interval, outside the family. "
             "Runs that diverged (a loss NaN or infinite, or a final train loss at or above chance, ln C) are left "
             "out of the differences and counted; their rates are compared with Fisher's exact test. "
             + selection_text(lines, scale) + " \"No difference shown\" means these seeds cannot tell, not that there is no "
             "difference.",
             "", "| dataset | comparison | Lookahead lr | inner lr | paired seeds | diverged (Lookahead / inner) | "
             "mean (pp) | interval (pp) | p (Holm) | reading | noise floor of the dataset |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for line, e in zip(lines, effects):
        a, n_a, b, n_b = line.collapsed
        collapse = f"{a}/{n_a} / {b}/{n_b}" + (f" (Fisher p {_p(line.p_collapse)})" if a or b else "")
        kind = "Bonferroni" if line.in_family else "raw 95%"
        interval = "—" if math.isnan(e.low) else f"{words.interval(e.low, e.high)} ({kind})"
        head.append(f"| {line.data} | {line.label} − {line.inner} | {_short(line.lr)} | {_short(line.versus_lr)} | "
                    f"{e.paired.n} | "
                    f"{collapse} | {'—' if math.isnan(e.paired.mean) else _pp(e.paired.mean)} | {interval} | "
                    f"{_p(e.p_holm)} | {reading(line, e)} | {words.noise_floor(floors.get(line.dataset))} |")
    head += ["", "*Noise floor*: fastai's `ranger` and ours (Lookahead over fastai's RAdam, the same settings) are one "
             "algorithm through two float paths; how far apart they end, seed by seed, is the floor (declared by "
             "the experiments as `same_algorithm`). A difference below it cannot be put on the algorithm.", ""]
    return head


def write_index(store_path, out_dir="reports", scale="cpu"):
    """``out_dir/README.md``: first the answer to each declared question (:func:`question_section`: a
    forest plot of one family's effects, then the numbers; never a count of verdicts), then one line
    per experiment report (scale, data, seeds, smallest detectable difference beside the noise floor of
    its data, date, where the runs ran) and every comparison by verdict."""
    out_dir = Path(out_dir)
    rows, shown, not_shown, constant, collapses = [], [], [], [], []
    with ResultsStore(store_path, readonly=True) as store:
        floors = noise_floors(store, scale)
        question = question_section(store, scale, out_dir, floors=floors)
        for name in EXPERIMENTS:
            runs = finished_runs(store, name, scale)
            if not runs:
                continue
            seeds = sorted({r["seed"] for r in runs})
            dates = sorted(r["finished_at"] for r in runs if r.get("finished_at"))
            comparisons = compare(store, name, scale)
            specs, staged = current_specs(store, name, scale), bool(EXPERIMENTS[name].stages.get(scale))
            det = detectable_over(comparisons, n_tested(comparisons))
            grid = completeness(name, scale, runs)
            runs_text = f"{grid.done} of {grid.planned}" + ("" if grid.complete else " (**incomplete**)")
            floor = "; ".join(f"{d}: {words.noise_floor(floors[d])}" for d in
                              dict.fromkeys(r["record"]["dataset"] for r in runs) if d in floors) or "not measured"
            rows.append(f"| [{name}]({name}.md) | `{scale}` | {datasets_text(runs)} | {len(seeds)} | {runs_text} | "
                        f"{detectable_text(det)} | {floor} | {dates[-1][:10] if dates else '?'} | "
                        f"{' / '.join(run_environments(runs))} |")
            for c in comparisons:
                if c.collapsed[0] or c.collapsed[2]:
                    a, n_a, b, n_b = c.collapsed
                    collapses.append(f"- **{name}**: {c.row} vs {c.versus}: {a} of {n_a} runs diverged against {b} of "
                                     f"{n_b}, Fisher's exact p {_p(c.p_collapse)} (raw, for that comparison alone)")
                if c.verdict in (ONE_SEED, NO_SEEDS):
                    continue
                line = (f"- **{name}**: {c.row} vs {c.versus} ({c.kind}): {_pp(c.mean)} pp, "
                        + (f"raw 95% interval {interval_text(c)}, Holm p {_p(c.p_holm)} over {len(c.seeds)} seeds"
                           if c.verdict in (BETTER, WORSE, NOT_SHOWN) else f"in each of {len(c.seeds)} seeds")
                        + rules_note(c, specs, staged))
                target = shown if c.verdict in (BETTER, WORSE) else not_shown if c.verdict == NOT_SHOWN else constant
                target.append(line + (f" — **{c.verdict}**" if c.verdict in (BETTER, WORSE) else f" — {c.verdict}"))
    context = index_context(scale)
    text = [INDEX_PREAMBLE, *question, context, "", "## Reports", "", DETECTABLE_TEXT, "",
            "| report | scale | data (train / valid) | seeds | runs finished of planned | smallest detectable difference "
            "| noise floor of its data | date | ran on |",
            "|---|---|---|---|---|---|---|---|---|", *rows, "",
            "## Every comparison of every report (Holm-adjusted within each report, not across them)", "",
            "Every comparison below follows the headline's rule for runs that diverged (counted, left out of the "
            "differences, rates compared with Fisher's exact test). None of them is in the headline's family: a "
            "Lookahead comparison scored otherwise than the headline's (on its slow weights with BatchNorm "
            "recomputed), or whose settings were picked on its own seeds and test images, says so in brackets.", "",
            "### What these seeds show", "", *(shown or ["- nothing"]), "",
            "### What they cannot tell (no difference shown, which is not the same as no difference)", "",
            *(not_shown or ["- nothing"]), "",
            "### Differences that are the same in every seed (no spread: no interval, no test)", "",
            *(constant or ["- none"]), "",
            "### Runs that diverged (left out of every number above; their rates compared here)", "",
            *(collapses or ["- none"]), ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "README.md"
    path.write_text("\n".join(text))
    return path
