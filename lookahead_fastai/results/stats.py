"""Statistics on numbers only: nothing here formats, reads a store or names an experiment.

A metric may later come as ``{"valid": ..., "test": ...}`` per run (a validation split for choices,
a test split for the report): every function here takes plain numbers, so the caller picks which.
"""
import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # nan with fewer than 2 values
    n: int

    @classmethod
    def of(cls, values):
        values = [float(v) for v in values if v is not None and math.isfinite(v)]  # never an inf or NaN mean
        if not values:
            return cls(math.nan, math.nan, 0)
        arr = np.asarray(values)
        return cls(float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else math.nan, len(arr))


def t_quantile(df, level=0.975):
    from scipy.stats import t
    return float(t.ppf(level, df))


def t_p_value(mean, sd, n):
    """Two-sided one-sample t-test of ``mean`` (sd over n values) against 0."""
    from scipy.stats import t
    return float(2 * t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))


def holm(p_values):
    """Holm's step-down adjustment: adjusted p-values in the input order (nan stays nan and is not
    counted in the family)."""
    p = np.asarray(p_values, dtype=float)
    idx = [i for i in np.argsort(p) if not math.isnan(p[i])]
    m = len(idx)
    out = np.full(len(p), math.nan)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def std_bounds(n, alpha=ALPHA):
    """(low, high, ratio): the 95% interval of a standard deviation from ``n`` values, as multiples
    of the estimate (chi-square), and the ratio two such stds must exceed for a two-sided F-test."""
    from scipy.stats import chi2, f
    df = n - 1
    low, high = math.sqrt(df / chi2.ppf(1 - alpha / 2, df)), math.sqrt(df / chi2.ppf(alpha / 2, df))
    return low, high, math.sqrt(f.ppf(1 - alpha / 2, df, df))


def detectable(differences, n_family, alpha=ALPHA):
    """What the seeds could see, from the per-seed differences of each tested comparison: the median
    and range of the raw 95% t-intervals' half-widths, and the difference Holm's first step (over a
    family of ``n_family`` tests) needed at the median spread; None when nothing was tested."""
    from scipy.stats import t
    tested = [Paired.of(d) for d in differences]
    tested = [p for p in tested if not math.isnan(p.low)]
    if not tested:
        return None
    halves = [(p.high - p.low) / 2 for p in tested]
    n = int(np.median([p.n for p in tested]))
    holm_first = float(t.ppf(1 - alpha / (2 * max(n_family, 1)), n - 1)) * float(np.median([p.sd for p in tested])) \
        / math.sqrt(n)
    return dict(median=float(np.median(halves)), low=min(halves), high=max(halves), seeds=n, holm_first=holm_first)


# --- divergence --------------------------------------------------------------------------------------
# the rule itself is grid_rules' (a sweep's choices and the reports count the same runs as diverged)


def collapse_test(bad_a, n_a, bad_b, n_b):
    """Two-sided Fisher exact test of two collapse rates (``bad_a`` of ``n_a`` runs against ``bad_b``
    of ``n_b``); nan when either side has no runs."""
    if not n_a or not n_b:
        return math.nan
    if bad_a + bad_b in (0, n_a + n_b):
        return 1.0
    from scipy.stats import fisher_exact
    return float(fisher_exact([[bad_a, n_a - bad_a], [bad_b, n_b - bad_b]]).pvalue)


# --- paired differences ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Paired:
    """A paired difference over seeds: mean, sd and the raw 95% t-interval and p-value (nan where
    undefined: fewer than 2 values or no spread)."""
    n: int
    mean: float
    sd: float
    low: float
    high: float
    p: float

    @classmethod
    def of(cls, differences, alpha=ALPHA):
        """The paired difference of ``differences`` with its two-sided ``1 - alpha`` t-interval."""
        d = [float(x) for x in differences]
        n = len(d)
        mean = float(np.mean(d)) if d else math.nan
        sd = float(np.std(d, ddof=1)) if n > 1 else math.nan
        if n < 2 or sd == 0.0:
            return cls(n, mean, sd, math.nan, math.nan, math.nan)
        half = t_quantile(n - 1, 1 - alpha / 2) * sd / math.sqrt(n)
        return cls(n, mean, sd, mean - half, mean + half, t_p_value(mean, sd, n))


@dataclass(frozen=True)
class Effect:
    """One comparison of a declared family: the paired difference, its Holm-adjusted p-value over
    the family and its interval at the Bonferroni level (``1 - alpha / m``; Holm's step-down has no
    interval of its own, and this one contains every step's). ``in_family`` False: flagged (say, a
    best lr at a grid edge), shown with its raw interval and left out of the adjustment."""
    key: tuple
    paired: Paired
    in_family: bool
    p_holm: float
    low: float
    high: float


def family_effects(differences, in_family=None, alpha=ALPHA):
    """:class:`Effect` per entry of ``differences`` (key -> per-seed differences). Holm's adjustment
    and the Bonferroni-level intervals run over the entries in the family (``in_family``: key ->
    bool, default all) that have an interval."""
    in_family = in_family or {}
    paired = {k: Paired.of(v) for k, v in differences.items()}
    members = [k for k in paired if in_family.get(k, True) and not math.isnan(paired[k].p)]
    adjusted = dict(zip(members, holm([paired[k].p for k in members])))
    m = max(len(members), 1)
    out = []
    for key, pr in paired.items():
        member = in_family.get(key, True)
        low, high = pr.low, pr.high
        if member and key in adjusted:
            wide = Paired.of(differences[key], alpha=alpha / m)
            low, high = wide.low, wide.high
        out.append(Effect(key, pr, member, adjusted.get(key, math.nan), low, high))
    return out


# --- the implementation-noise floor --------------------------------------------------------------------
@dataclass(frozen=True)
class NoiseFloor:
    """The same algorithm through two float paths, seed by seed: how far apart they end. ``sd`` is
    the per-seed standard deviation of the difference (the floor), ``smallest``/``largest`` its range."""
    n: int
    mean: float
    sd: float
    smallest: float
    largest: float


def noise_floor(differences):
    """:class:`NoiseFloor` of per-seed differences between two implementations of one algorithm
    (pooled over pairs when several are given as one list); None with fewer than 2."""
    d = [float(x) for x in differences if x is not None and math.isfinite(x)]
    if len(d) < 2:
        return None
    return NoiseFloor(len(d), float(np.mean(d)), float(np.std(d, ddof=1)), min(d), max(d))


# --- time to target (AlgoPerf's time-to-result; the paper's "faster early progress") ----------------------
def epochs_to_target(curve, target):
    """How many epochs ``curve`` (the validation accuracy after each epoch, in order) took to first reach
    ``target``; None if it never did (a diverged run's NaN never reaches it)."""
    return next((i + 1 for i, v in enumerate(curve) if v is not None and math.isfinite(v) and v >= target), None)


def sign_test(wins, losses):
    """Exact two-sided sign test of ``wins`` against ``losses`` (ties already left out); NaN with none."""
    n = wins + losses
    if n == 0:
        return math.nan
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class TimeToTarget:
    """Epochs to a target accuracy, side ``a`` against side ``b``, paired by seed: ``a``/``b`` map each
    seed to its epochs (None: never reached, counted, never dropped)."""
    target: float
    a: dict
    b: dict

    @property
    def seeds(self):
        return sorted(set(self.a) & set(self.b))

    def _first(self, x, y):
        """+1 where x got there first (or alone), -1 where y did, 0 for the same epoch, None where neither did."""
        if x is None and y is None:
            return None
        return 1 if y is None or (x is not None and x < y) else -1 if x is None or y < x else 0

    @property
    def a_first(self):
        return sum(self._first(self.a[s], self.b[s]) == 1 for s in self.seeds)

    @property
    def b_first(self):
        return sum(self._first(self.a[s], self.b[s]) == -1 for s in self.seeds)

    @property
    def same(self):
        return sum(self._first(self.a[s], self.b[s]) == 0 for s in self.seeds)

    @property
    def never(self):
        """``(a never reached, a runs, b never reached, b runs)``."""
        return (sum(v is None for v in self.a.values()), len(self.a),
                sum(v is None for v in self.b.values()), len(self.b))

    @property
    def p(self):
        """Exact two-sided sign test over the paired seeds where one side got there first (raw)."""
        return sign_test(self.a_first, self.b_first)
