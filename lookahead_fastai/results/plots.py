"""Figures (matplotlib, Agg): nothing here reads a store or names an experiment."""
import math
from pathlib import Path


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path):
    """Lay out, write (creating the folder) and close a figure; returns its path."""
    plt = _pyplot()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def forest_plot(lines, path, title, xlabel):
    """One horizontal line per effect, top to bottom: ``lines`` holds (label, mean, low, high,
    in_family) in percentage points; a line out of the family is drawn grey with a hollow marker.
    A vertical line marks 0; an undefined interval draws the point alone."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(len(lines), 1) + 1.6))
    for i, (label, mean, low, high, member) in enumerate(lines):
        y = len(lines) - 1 - i
        color = "black" if member else "0.6"
        if math.isnan(mean):  # no paired seeds: the label alone
            continue
        if not (math.isnan(low) or math.isnan(high)):
            ax.plot([low, high], [y, y], color=color, lw=2)
        ax.plot([mean], [y], "o", color=color, mfc=color if member else "white")
    ax.axvline(0.0, color="red", lw=1, ls="--")
    ax.set_yticks(range(len(lines)))
    ax.set_yticklabels([line[0] for line in reversed(lines)], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)
