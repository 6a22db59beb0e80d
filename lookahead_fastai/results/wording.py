"""The sentences of the reports and the index, from numbers: the results' words beside
:mod:`.text` (which formats one number at a time). Nothing here reads a store or names an experiment."""
import numpy as np

from . import text as words
from .compare import CONSTANT, IDENTICAL, KINDS, NO_SEEDS, ONE_SEED
from .runs import diverged, run_seconds

__all__ = ["UNKNOWN_ENV", "KINDS_TEXT", "SOURCES_TEXT", "DETECTABLE_TEXT", "run_environments",
           "compute_text", "completeness_text", "incomplete_note", "interval_text", "collapse_columns",
           "data_source", "stats_text", "kind_counts", "integrity_text", "datasets_text", "detectable_text",
           "verdict_measure", "split_text"]

UNKNOWN_ENV = "unknown (not recorded)"
_pp, _p, _fixed, _points = words.pp, words.p_value, words.fixed, words.points


def run_environments(runs):
    """The distinct environments (machine, device, torch, fastai, python) the runs were trained in,
    from their records; runs recorded before environments were kept count as UNKNOWN_ENV."""
    seen = []
    for r in runs:
        env = (r.get("record") or {}).get("env")
        if env:
            text = (f"{env.get('machine', '?')}; device {env.get('device', '?')}; torch {env.get('torch', '?')}; "
                    f"fastai {env.get('fastai', '?')}; python {env.get('python', '?')}")
        else:
            text = UNKNOWN_ENV
        if text not in seen:
            seen.append(text)
    return seen


def compute_text(runs):
    """What the runs cost, from their records: the training wall times summed, and their mean."""
    seconds = run_seconds(runs)
    if not seconds:
        return "not recorded"
    return (f"{_fixed(sum(seconds) / 3600)} h of training summed over {len(seconds)} runs (each run's wall time from "
            f"the start of its fit to its last validation; mean {_fixed(np.mean(seconds), 1)} s per run)")


def completeness_text(c):
    """A :class:`.runs.Completeness` in words: "k of n planned (r rows × s seeds)"."""
    if c.confirmation_seeds:
        return (f"{c.done} of {c.planned} planned (tuning: {c.rows} rows × {c.seeds} seeds; confirmation: "
                f"{c.confirming} chosen rows × {c.confirmation_seeds} seeds)")
    return (f"{c.done} of {c.planned} planned ({c.rows} rows × {c.seeds} "
            f"seed{'s' if c.seeds != 1 else ''})")


def incomplete_note(c, listed=6):
    """The warning a report of an unfinished grid (``not c.complete``) opens with."""
    rows = [f"{row} ({k})" for row, k in c.short[:listed]]
    more = f", and {len(c.short) - listed} more rows" if len(c.short) > listed else ""
    seeds = "tuning seeds" if c.confirmation_seeds else "seeds"
    short = (f"Rows short of {c.seeds} {seeds} (seeds finished): {', '.join(rows)}{more}." if rows else
             "Every row has its tuning runs; confirmation runs are still to finish.")
    return (f"> **Incomplete**: {completeness_text(c)} runs have finished. {short} Everything below uses only the "
            "finished runs; `lookahead-fastai run` with the same store finishes the rest.\n")


def interval_text(c):
    if c.verdict in (IDENTICAL, CONSTANT):
        return f"— (the same {_pp(c.mean)} pp in all {len(c.seeds)} seeds: no spread, no interval)"
    if c.verdict == ONE_SEED:
        return "needs ≥ 2 seeds"
    if c.verdict == NO_SEEDS:
        return "—"
    return f"[{_pp(c.low)}, {_pp(c.high)}] pp"


def collapse_columns(c):
    """The diverged runs of both sides (k/n) and the exact test of the two collapse rates."""
    a, n_a, b, n_b = c.collapsed
    return {"diverged (row / vs)": f"{a}/{n_a} / {b}/{n_b}", "collapse p (Fisher)": _p(c.p_collapse)}


def data_source(path):
    if "site-packages" in str(path):
        return "the copy embedded in scikit-learn"
    return f"`{path}`"


SOURCES_TEXT = ("Each setting of the `full` specs (keys as in the spec; `hyper.*` are the optimizer's effective "
                "hyper-parameters, declared or its constructor's defaults), the rows it applies to, what the source "
                "says and where. A setting not listed here, or listed with another value, is in the deviations "
                "below (tests/test_sources.py checks this).")
KINDS_TEXT = (
    "Each comparison has a **kind**, derived from the two rows' specs: *like-for-like* (they differ in one "
    "factor only — for a Lookahead row against its plain inner optimizer, only the wrapper), *tuned* (they "
    "differ only in the optimizer's settings, each picked by a sweep the experiment declares) or "
    "*confounded* (anything else: a difference there cannot be put on one factor). \"differs in\" lists the "
    "factors.")


def stats_text(n_tests):
    return (
        "Differences are per seed (same seed = same initialisation and data order). \"95% interval\" is the "
        "raw Student-t interval of the mean difference and \"p\" the raw two-sided paired t-test, each for "
        f"that comparison alone. \"conclusion\" uses Holm's adjustment over the {n_tests} comparisons of this "
        "table that have a p-value (\"p (Holm)\" ≤ 0.05): it keeps the family-wise error rate of this table "
        "— the chance that any of its better/worse verdicts is false where the rows do not differ — at "
        "5% or less. A raw interval that excludes 0 can therefore still read \"no difference shown\". "
        "\"No difference shown\" means these seeds cannot tell, not that the rows are the same. A "
        "difference that is the same in every seed has no spread, so no interval or test: it is reported "
        "as such.")


def kind_counts(comparisons):
    return ", ".join(f"{k} {sum(c.kind == k for c in comparisons)}" for k in KINDS)


def integrity_text(runs, imported):
    """Bullets for runs that diverged (left out of every number) and runs added by ``store import``
    (``imported``: run_id -> source); empty when there are none, as in every committed report."""
    lines = []
    gone = [r for r in runs if diverged(r["record"])]
    if gone:
        names = dict.fromkeys(r["name"] for r in gone)
        rows = ", ".join(f"{name} {sum(r['name'] == name for r in gone)}" for name in names)
        lines.append(f"- **Diverged** (a final metric NaN or infinite, or the final train loss at or above chance, "
                     f"ln C for C classes): {len(gone)} of {len(runs)} runs ({rows}); counted here, left out of every "
                     "mean, interval and paired test and of the seed counts below; collapse rates are compared with "
                     "Fisher's exact test\n")
    mine = sorted({imported[r["run_id"]] for r in runs if r["run_id"] in imported})
    if mine:
        n = sum(r["run_id"] in imported for r in runs)
        lines.append(f"- **Imported**: {n} of these {len(runs)} runs were added by `lookahead-fastai store import`, "
                     f"not trained in this store (from {', '.join(mine)})\n")
    return "".join(lines)


DETECTABLE_TEXT = (
    "*Smallest detectable difference*: the median half-width of the report's raw 95% intervals over seeds (a true "
    "difference smaller than that most likely reads \"no difference shown\"), and in brackets what the strictest "
    "step of Holm's adjustment over the report's comparisons needed at the median spread; \"—\" where no "
    "comparison had a spread to test. *Noise floor of its data*: how far one algorithm ends from itself through two "
    "float paths (fastai's `ranger` against ours), seed by seed, on the report's datasets where it was measured.")


def datasets_text(runs):
    return "; ".join(dict.fromkeys(f"{r['record']['dataset']} ({r['record']['n_train']} / {r['record']['n_valid']})"
                                   for r in runs))


def detectable_text(det):
    if det is None:
        return "—"
    return f"{_points(det['median'])} pp ({_points(det['holm_first'])} pp after Holm), {det['seeds']} seeds"


def verdict_measure(metric):
    """What a staged study's verdicts compare (``compare.verdict_metric``), in words."""
    return "test accuracy" if metric == "test_accuracy" else "final accuracy"


def split_text(measure):
    """Where a staged study's verdicts stand, for :func:`verdict_measure`'s ``measure``."""
    if measure == "test accuracy":
        return ("The test split was scored once, after training, and no choice read it: the verdicts below "
                "compare test accuracy.")
    return ("Without a held-out split the validation images are the dataset's test split, which the tuning "
            "seeds chose on: the verdicts below compare final accuracy on those images, on seeds that chose nothing.")
