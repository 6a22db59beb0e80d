"""Words: the one place in :mod:`lookahead_fastai.results` where a number becomes a string (the report
modules compose sentences from these; none formats a number itself)."""
import math


def stat(s, pct=False, digits=4):
    """``mean ± std`` of a :class:`~.stats.Stat` (percent with ``pct``); "n/a" for None, "—" when empty."""
    if s is None:
        return "n/a"
    if math.isnan(s.mean):
        return "—"
    scale, unit, digits = (100.0, "%", 2) if pct else (1.0, "", digits)
    text = f"{s.mean * scale:.{digits}f}"
    if not math.isnan(s.std):
        text += f" ± {s.std * scale:.{digits}f}"
    return text + unit


def short(value):
    """A number in its shortest form (``:g``): an lr (0.001, 1e-05), a count of points, a budget."""
    return f"{value:g}"


def fixed(value, digits=2):
    """A number with ``digits`` decimals: hours, seconds, a ratio."""
    return f"{value:.{digits}f}"


def percent(fraction, digits=0):
    """A fraction as a percentage with ``digits`` decimals: 0.05 -> "5%"."""
    return f"{fraction:.{digits}%}"


def scientific(value):
    """A number in scientific notation, 3 significant digits: 0.00123 -> "1.23e-03" (an lr_find valley)."""
    return f"{value:.2e}"


def utc_minute(moment):
    """A datetime to the minute, as the reports date themselves: "2026-12-06 17:40"."""
    return f"{moment:%Y-%m-%d %H:%M}"


def points(value):
    """A fraction as unsigned percentage points, 2 decimals (a range, a half-width, a spread)."""
    return f"{value * 100:.2f}"


def pp(value):
    """A fraction as signed percentage points, 2 decimals."""
    return f"{value * 100:+.2f}"


def p_value(value):
    return "—" if math.isnan(value) else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def pct(value):
    return "—" if value is None or not math.isfinite(value) else f"{value * 100:.2f}"


def join(items, empty="none"):
    items = list(items)
    return ", ".join(items) if items else empty


def markdown(frame):
    """A pandas frame as a markdown table ("_no finished runs_" when empty)."""
    if frame is None or not len(frame):
        return "_no finished runs_\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(str(row[c]).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def interval(low, high):
    return "—" if math.isnan(low) else f"[{pp(low)}, {pp(high)}] pp"


def noise_floor(floor):
    """A :class:`~.stats.NoiseFloor` in words; "not measured" for None."""
    if floor is None:
        return "not measured"
    return (f"{floor.sd * 100:.2f} pp per seed (SD of {floor.n} per-seed differences, from {pp(floor.smallest)} "
            f"to {pp(floor.largest)} pp)")


def epochs_list(values):
    """Epochs to a target, seed by seed: "3, 4, never" (None: never reached)."""
    return ", ".join("never" if v is None else str(v) for v in values)
