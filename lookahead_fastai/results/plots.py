"""Figures (matplotlib, Agg): nothing here reads a store or names an experiment."""
import math
from pathlib import Path

import numpy as np

from .text import scientific


class FigureLink(str):
    """A report part that is a figure: the string is its markdown link (``![alt](name)``), and the file's
    name travels beside it as data (``.name``), so a notebook shows the image without reading the link back."""

    def __new__(cls, alt, name):
        link = super().__new__(cls, f"\n![{alt}]({name})\n")
        link.name = name
        return link


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


def plot_curves(curves, path, title):
    """Valid accuracy (left) and train loss (right, log axis) per epoch, mean ± 1 std band over seeds:
    ``curves`` maps each row, in order, to {"accuracy" / "train_loss": (epochs, mean, std)}."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, by_metric in curves.items():
        for ax, col in zip(axes, ("accuracy", "train_loss")):
            if col not in by_metric:
                continue
            epochs, mean, std = by_metric[col]
            ax.plot(epochs, mean, label=name)
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
    axes[0].set(title="valid accuracy (mean ± std over seeds)", xlabel="epoch", ylabel="accuracy")
    axes[1].set(title="train loss, epoch mean (mean ± std)", xlabel="epoch", ylabel="loss", yscale="log")
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_lr_find(curve, path):
    """fastai's lr_find curve (``curve``: lrs, losses, valley, row) with its valley suggestion."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(curve["lrs"], curve["losses"])
    ax.axvline(curve["valley"], color="red", linestyle="--", label=f"valley {scientific(curve['valley'])}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed train loss", title=f"lr_find: {curve['row']}")
    ax.legend()
    return save_figure(fig, path)


def plot_lr_robustness(cells, path, title):
    """Final accuracy against lr (log axis), mean ± 1 std over seeds (the band clipped to 0-100%): one
    panel per inner optimizer, plain and Lookahead families on it. ``cells``: objects with inner, label,
    lr and final (a :class:`~.stats.Stat`), in the grid's order."""
    plt = _pyplot()
    inners = list(dict.fromkeys(c.inner for c in cells))
    fig, axes = plt.subplots(1, max(len(inners), 1), figsize=(5.5 * max(len(inners), 1), 4), squeeze=False)
    for ax, inner in zip(axes[0], inners):
        mine = [c for c in cells if c.inner == inner]
        for label in dict.fromkeys(c.label for c in mine):
            group = [c for c in mine if c.label == label]
            lrs = np.array([c.lr for c in group])
            mean = np.array([c.final.mean for c in group]) * 100
            std = np.nan_to_num(np.array([c.final.std for c in group]) * 100)
            ax.plot(lrs, mean, marker="o", label=f"{label} (n={max(c.final.n for c in group)})")
            ax.fill_between(lrs, np.clip(mean - std, 0, 100), np.clip(mean + std, 0, 100), alpha=0.2)
        ax.set(xscale="log", xlabel=f"{inner}: inner learning rate (peak)", ylabel="final accuracy (%)",
               title=f"{inner}: mean ± std over seeds (band clipped to 0-100%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)
