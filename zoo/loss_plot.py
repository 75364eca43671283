"""A run's loss curve as a PNG (`loss.png`), drawn with matplotlib's Agg canvas so that training on a
machine without a display, or inside a notebook, never touches pyplot's global backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zoo.io import atomic_write_with


def plot_losses(records: list[dict[str, Any]], path: Path) -> None:
    """Draw the loss curve (raw and a moving average) into a PNG without touching pyplot's backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = np.array([record["step"] for record in records])
    losses = np.array([record["loss"] for record in records])
    window = max(1, len(losses) // 50)
    smoothed = np.convolve(losses, np.ones(window) / window, mode="valid")
    figure = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="loss")
    axes.plot(steps[window - 1 :], smoothed, color="tab:blue", label=f"mean of {window}")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    plot_validation(records, axes)
    figure.tight_layout()
    atomic_write_with(path, lambda tmp: figure.savefig(tmp, format="png"))


def plot_validation(records: list[dict[str, Any]], axes: Any) -> None:
    """The records' validation scores (a `val_*` log, as `zoo finetune --validation` writes),
    if any, on a second y axis of the loss plot."""
    scored = [(record["step"], key, value) for record in records for key, value in record.items()
              if key.startswith("val_")]
    if not scored:
        return
    key = scored[0][1]
    right = axes.twinx()
    right.plot([step for step, _, _ in scored], [value for _, _, value in scored], color="tab:orange",
               marker="." if len(scored) < 50 else None, label=key)
    right.set_ylabel(key)
    right.legend(loc="upper right")

