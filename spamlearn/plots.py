"""Pictures of an evaluation: the ROC curve as TREC plots it."""

from __future__ import annotations

from pathlib import Path

from .evaluate import OnlineResult, compute_figures, roc_points

__all__ = ["save_roc_plot"]


def save_roc_plot(result: OnlineResult, path: Path, title: str = "spamlearn") -> None:
    """ROC curve with a logit-free log-scaled false-positive axis, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr, _ = roc_points(result.gold, result.decisions)
    figures = compute_figures(result)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    floor = 0.5 / max(figures.n_ham, 1)
    ax.step(100 * (fpr + floor), 100 * (1 - tpr), where="post", color="#1f5fa8",
            label=f"spamlearn, (1-ROCA)% = {figures.roca_pct:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("% ham misclassified (log)")
    ax.set_ylabel("% spam misclassified (log)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
