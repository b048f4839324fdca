"""Heat-map PNG of pairwise Jaccard similarity of task tile sets, before and after alignment."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stitching.atomic import write_bytes


def plot_jaccard(
    path: Path, names: Sequence[str], before: Sequence[Sequence[float]], after: Sequence[Sequence[float]]
) -> None:
    # A bare Figure on the Agg canvas: no pyplot, so no global figure state and no GUI backend.
    fig = Figure(figsize=(9, 4), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, title, matrix in ((axes[0], "independent masks", before), (axes[1], "aligned masks", after)):
        image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_title(f"tile-set Jaccard, {title}")
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black")
    fig.colorbar(image, ax=axes, shrink=0.8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_bytes(path, buf.getvalue())
