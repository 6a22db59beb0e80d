"""What the notebooks show: the report's tables and plots for one experiment and scale, read from
the store (no logic lives in the notebooks themselves)."""
import json
from pathlib import Path

from .experiments import get_experiment
from .report import paired_differences, plot_curves, plot_lr_find, summary_table
from .store import ResultsStore

__all__ = ["show_results"]


def show_results(experiment, scale, store, figures_dir=None):
    """Display (in Jupyter) the summary table, the paired differences, the learning curves and, where
    the experiment has one, the lr_find plot. Returns the two tables."""
    from IPython.display import Image, Markdown, display

    exp = get_experiment(experiment)
    figures_dir = Path(figures_dir or Path(store).parent / "figures")
    figures_dir.mkdir(parents=True, exist_ok=True)
    with ResultsStore(store) as db:
        table = summary_table(db, experiment, scale)
        pairs = paired_differences(db, experiment, scale)
        display(Markdown(f"### {experiment} at scale `{scale}`: {exp.protocol.get(scale, '')}"))
        display(table)
        display(Markdown("Paired differences in final accuracy (95% Student-t interval over seeds):"))
        display(pairs)
        display(Image(filename=str(plot_curves(db, experiment, scale, figures_dir / f"{experiment}_{scale}.png"))))
    curve_file = Path(store).parent / "lr_find" / f"{experiment}_{scale}.json"
    if exp.lr_find_row and curve_file.exists():
        curve = json.loads(curve_file.read_text())
        display(Image(filename=str(plot_lr_find(curve, figures_dir / f"{experiment}_{scale}_lr_find.png"))))
    if exp.reference:
        display(Markdown("#### Reference numbers from the original work\n" + exp.reference))
    return table, pairs
