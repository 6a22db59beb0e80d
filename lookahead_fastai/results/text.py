"""Words: the one place in :mod:`lookahead_fastai.results` where numbers become strings."""
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


def diverged_count(bad, total):
    """"k of n diverged" (empty when none did)."""
    return f"{bad} of {total} diverged" if bad else ""


def noise_floor(floor):
    """A :class:`~.stats.NoiseFloor` in words; "not measured" for None."""
    if floor is None:
        return "not measured"
    return (f"{floor.sd * 100:.2f} pp per seed (SD of {floor.n} per-seed differences, from {pp(floor.smallest)} "
            f"to {pp(floor.largest)} pp)")
