"""PNG figures: age distribution before/after weighted augmentation, training curves, and
predicted-vs-actual scatter. Written atomically; matplotlib's Agg backend (no display)."""
from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np

from handprep.io import atomic_write_bytes


def _figure(ncols: int = 1, width: float = 6.0, height: float = 4.5):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return plt, fig, axes[0]


def _save(plt, fig, path: Path) -> None:
    buffer = _io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def age_histogram(path: Path, histogram: dict) -> None:
    """Training images per bone-age bin, before and after the weighted augmented copies."""
    plt, fig, (ax,) = _figure()
    edges = histogram["edges"]
    labels = [f"{lo:g}–{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]
    x = np.arange(len(labels))
    ax.bar(x - 0.2, histogram["before"], 0.4, label="images")
    ax.bar(x + 0.2, histogram["after"], 0.4, label="images + weighted augmented copies")
    ax.set_xticks(x, labels, rotation=45, ha="right")
    ax.set_xlabel("bone age (months)")
    ax.set_ylabel("samples per epoch")
    ax.set_title("Training age distribution, before and after weighted augmentation")
    ax.legend(loc="upper right")
    _save(plt, fig, Path(path))


def curves(path: Path, history: list[dict], baseline_mae: float | None = None) -> None:
    """Loss and MAE per epoch (validation MAE of the averaged and of the raw weights)."""
    plt, fig, (left, right) = _figure(2)
    epochs = [r["epoch"] for r in history]
    left.plot(epochs, [r["train_loss"] for r in history], label="training loss (normalised units)")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    right.plot(epochs, [r["train_mae"] for r in history], label="training MAE (augmented, dropout on)")
    right.plot(epochs, [r["val_mae_raw"] for r in history], label="validation MAE, raw weights", alpha=0.7)
    right.plot(epochs, [r["val_mae"] for r in history], label="validation MAE, averaged weights (EMA)", lw=2)
    if baseline_mae is not None:
        right.axhline(baseline_mae, color="grey", ls="--", label=f"no-skill (training mean): {baseline_mae:.1f}")
        right.set_ylim(0, 2.5 * baseline_mae)  # early from-scratch epochs can be far off; keep the scale readable
    right.set_xlabel("epoch")
    right.set_ylabel("MAE (months)")
    right.legend()
    _save(plt, fig, Path(path))


def scatter(path: Path, true, pred, male, title: str, lower=None, upper=None) -> None:
    """Predicted vs actual bone age, by sex, with the identity line (and intervals if given)."""
    plt, fig, (ax,) = _figure(1, 5.5, 5.5)
    true, pred, male = np.asarray(true), np.asarray(pred), np.asarray(male)
    if lower is not None:
        ax.vlines(true, lower, upper, color="lightgrey", lw=0.8, zorder=1)
    for value, name, colour in ((0, "female", "tab:red"), (1, "male", "tab:blue")):
        pick = male == value
        ax.scatter(true[pick], pred[pick], s=12, c=colour, label=name, zorder=2)
    top = float(max(true.max(initial=0), pred.max(initial=0))) * 1.05 + 1
    ax.plot([0, top], [0, top], "k--", lw=1)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("actual bone age (months)")
    ax.set_ylabel("predicted bone age (months)")
    ax.set_title(title)
    ax.legend()
    _save(plt, fig, Path(path))
