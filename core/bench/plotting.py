"""Plot accuracy against mean tokens per question, one point per entry named in the legend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from core.bench.scoring import EntrySummary

PLOT_FILE_NAME = "accuracy_vs_tokens.png"
FIGURE_SIZE_INCHES = (7.0, 4.5)
FIGURE_DPI = 120
# Strategies can differ in cost by one to two orders of magnitude. Past this ratio of the largest
# to the smallest mean, the x axis is logarithmic so that the cheap strategies stay apart.
LOG_SCALE_RATIO = 10.0
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_accuracy_vs_tokens(path: Path, summaries: Sequence[EntrySummary], *, title: str) -> None:
    """Save a PNG scatter of accuracy (%) against mean tokens per question.

    The figure is drawn on an Agg canvas of its own, so no pyplot state or display is involved.
    """
    figure = Figure(figsize=FIGURE_SIZE_INCHES, dpi=FIGURE_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    tokens = [summary.mean_tokens for summary in summaries]
    accuracy = [100 * summary.accuracy for summary in summaries]
    # Each point gets its own colour and marker and a legend entry, because text labels next to
    # the points overlap when strategies have similar cost and accuracy.
    for index, summary in enumerate(summaries):
        axes.scatter(
            tokens[index],
            accuracy[index],
            s=60,
            color=f"C{index % 10}",
            marker=MARKERS[index % len(MARKERS)],
            label=f"{summary.strategy} ({accuracy[index]:.0f}%, {tokens[index]:.0f} tokens)",
            zorder=3,
        )

    if min(tokens) > 0 and max(tokens) / min(tokens) > LOG_SCALE_RATIO:
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(ScalarFormatter())
        axes.xaxis.set_minor_formatter(NullFormatter())
    axes.margins(x=0.1)
    axes.set_ylim(-5, 105)
    axes.set_xlabel("mean tokens per question (prompt + completion)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="best", framealpha=0.9)
    figure.tight_layout()
    figure.savefig(path, format="png")
