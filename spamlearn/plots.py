"""Pictures of an online evaluation, drawn as the TREC Spam Track draws them.

* ``roc_figure``: the ROC curve with both error rates on a logit scale
  (TREC's "% ham misclassification" against "% spam misclassification"), so
  that the region that matters to a mail admin -- well under 1% of ham lost
  -- gets as much room as the rest; the default cutoffs are marked on it.
* ``score_histogram_figure``: how ham and spam scores are spread, with the
  ham and spam cutoffs and the unsure band between them.
* ``learning_curve_figure``: the misclassification rate along the message
  stream (a moving window), i.e. how fast a model learning from nothing
  becomes useful.
* ``clues_figure``: the strongest spam and ham clues the model learned.

Figures are built with ``matplotlib.figure.Figure`` directly, never through
``pyplot``: no global backend is switched (the notebook keeps its inline
backend) and no figure is left registered in a global manager.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from .classifier import Clue
from .evaluate import OnlineResult, compute_figures, learning_curve, roc_points
from .regularfile import check_replaceable, new_file_mode

__all__ = ["roc_figure", "score_histogram_figure", "learning_curve_figure", "clues_figure",
           "save_figure", "save_roc_plot", "write_atomically", "error_rates_at", "HAM_COLOR", "SPAM_COLOR"]

HAM_COLOR = "#1f5fa8"
SPAM_COLOR = "#c0392b"
_OTHER_COLORS = ["#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
_PERCENT_TICKS = [0.0001, 0.001, 0.01, 0.1, 0.5, 0.9, 0.99]


def _percent_label(value: float, _pos: object = None) -> str:
    percent = 100 * value
    return f"{percent:g}"


def _logit_axis(ax, which: str, low: float, high: float) -> None:
    """A logit-scaled axis labelled in percent, TREC style (0.01 ... 50)."""
    getattr(ax, f"set_{which}scale")("logit")
    axis = getattr(ax, f"{which}axis")
    axis.set_major_locator(FixedLocator([t for t in _PERCENT_TICKS if low <= t <= high]))
    axis.set_major_formatter(FuncFormatter(_percent_label))
    axis.set_minor_locator(NullLocator())


def error_rates_at(gold: np.ndarray, scores: np.ndarray, prob: float) -> tuple[float, float]:
    """(ham misclassified, spam misclassified) when scores >= ``prob`` are spam."""
    spam = gold.astype(bool)
    called_spam = scores >= prob
    return float(called_spam[~spam].mean()), float((~called_spam[spam]).mean())


def roc_figure(result: OnlineResult, *, title: str = "spamlearn", label: str = "spamlearn",
               ham_cutoff: float | None = 0.20, spam_cutoff: float | None = 0.90,
               others: Mapping[str, OnlineResult] | None = None) -> Figure:
    """The ROC curve of an online run, TREC style.

    Parameters
    ----------
    result : OnlineResult
        The run to draw.
    title, label : str
        Figure title and the run's name in the legend.
    ham_cutoff, spam_cutoff : float or None
        Marked on the curve as operating points (None: not marked).
    others : mapping of str to OnlineResult, optional
        More runs over the same corpus, drawn on the same axes.

    Returns
    -------
    matplotlib.figure.Figure
    """
    n_ham = int((result.gold == 0).sum())
    n_spam = int((result.gold == 1).sum())
    # Rates of exactly 0 have no place on a logit axis: like TREC's lam,
    # nudge them by half a message.
    floor_x, floor_y = 0.5 / max(n_ham, 1), 0.5 / max(n_spam, 1)
    n_others = len(others or {})
    fig = Figure(figsize=(6.4, 5.2 + (0.25 * (n_others + 1) if n_others else 0)), dpi=100)
    ax = fig.add_subplot()
    runs = [(label, result, HAM_COLOR)]
    runs += [(name, run, _OTHER_COLORS[i % len(_OTHER_COLORS)])
             for i, (name, run) in enumerate((others or {}).items())]
    for name, run, color in runs:
        fpr, tpr, _ = roc_points(run.gold, run.scores)
        roca = compute_figures(run).roca_pct
        ax.step(np.clip(fpr, floor_x, 1 - floor_x), np.clip(1 - tpr, floor_y, 1 - floor_y),
                where="post", color=color, linewidth=1.6 if run is result else 1.2,
                label=f"{name}: (1-ROCA)% = {roca:.3f}")
    marks = [(cutoff, name, marker) for cutoff, name, marker in
             ((ham_cutoff, "ham cutoff", "v"), (spam_cutoff, "spam cutoff", "^")) if cutoff is not None]
    for cutoff, name, marker in marks:
        hm, sm = error_rates_at(result.gold, result.scores, cutoff)
        ax.plot([max(hm, floor_x)], [max(sm, floor_y)], marker=marker, color="black", linestyle="none",
                markersize=8, label=f"spam if score >= {cutoff:g} ({name}): ham {100 * hm:.2f}%, "
                                    f"spam {100 * sm:.2f}%")
    _logit_axis(ax, "x", floor_x, 0.5)
    _logit_axis(ax, "y", floor_y, 0.5)
    ax.set_xlim(floor_x * 0.8, 0.6)
    ax.set_ylim(floor_y * 0.8, 0.6)
    ax.set_xlabel("% ham misclassified (logit scale)")
    ax.set_ylabel("% spam misclassified (logit scale)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if n_others:
        # Many curves: the legend goes below the axes, never over a curve.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize="small")
    else:
        ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    return fig


def score_histogram_figure(result: OnlineResult, *, ham_cutoff: float = 0.20, spam_cutoff: float = 0.90,
                           title: str = "Scores of ham and spam", bins: int = 50) -> Figure:
    """Histogram of the spam probability for ham and for spam, cutoffs drawn in.

    The count axis is logarithmic: chi-squared combining pushes almost every
    score to 0 or 1, and the few messages in between are the interesting ones.
    """
    gold = result.gold.astype(bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot()
    ax.axvspan(ham_cutoff, spam_cutoff, color="#f1c40f", alpha=0.15, label="unsure band")
    ax.hist(result.scores[~gold], bins=edges, color=HAM_COLOR, alpha=0.6, label=f"ham ({(~gold).sum()})")
    ax.hist(result.scores[gold], bins=edges, color=SPAM_COLOR, alpha=0.6, label=f"spam ({gold.sum()})")
    for i, cutoff in enumerate((ham_cutoff, spam_cutoff)):
        ax.axvline(cutoff, color="black", linestyle="--", linewidth=1,
                   label=f"cutoffs: ham {ham_cutoff:g}, spam {spam_cutoff:g}" if i == 0 else None)
    ax.set_yscale("log")
    # Headroom above the tallest bar for the legend.
    tallest = max(np.histogram(result.scores, bins=edges)[0].max(initial=1), 1)
    ax.set_ylim(0.7, tallest * 15)
    ax.set_xlim(0, 1)
    ax.set_xlabel("spam probability")
    ax.set_ylabel("messages (log scale)")
    ax.set_title(title)
    ax.legend(loc="upper center", ncols=2, fontsize="small")
    fig.tight_layout()
    return fig


def learning_curve_figure(result: OnlineResult, *, window: int = 500,
                          title: str = "Learning curve") -> Figure:
    """Misclassification and unsure rates along the stream, over a moving window."""
    curve = learning_curve(result, window=window)
    floor = 0.5 / curve.window
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot()
    ax.plot(curve.position, np.clip(curve.misclassified, floor, 1 - floor), color=SPAM_COLOR,
            label="misclassified (score > 0.5 is spam)")
    ax.plot(curve.position, np.clip(curve.unsure, floor, 1 - floor), color="#7f8c8d", linestyle="--",
            label="unsure (between the cutoffs)")
    _logit_axis(ax, "y", floor, 0.9)
    ax.set_ylim(floor * 0.8, 0.6)
    ax.set_xlim(0, len(result.gold))
    ax.set_xlabel("messages seen (classified, then learned)")
    ax.set_ylabel(f"% of the last {curve.window} messages (logit scale)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    return fig


def _short(token: str, width: int = 38) -> str:
    return token if len(token) <= width else token[: width - 1] + "…"


def clues_figure(spam_clues: Sequence[Clue], ham_clues: Sequence[Clue], *, n_spam: int, n_ham: int,
                 title: str = "Strongest clues (token, its spam probability)") -> Figure:
    """For each clue, the share of spam and of ham messages that contain it.

    ``n_spam`` and ``n_ham`` are the numbers of messages the model learned,
    to turn the clues' counts into shares.
    """
    rows = max(len(spam_clues), len(ham_clues), 1)
    fig = Figure(figsize=(11, 0.28 * rows + 1.6), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, clues, name in ((axes[0], spam_clues, "spam clues"), (axes[1], ham_clues, "ham clues")):
        y = np.arange(len(clues))[::-1]
        spam_share = np.array([100 * c.spam_count / max(n_spam, 1) for c in clues])
        ham_share = np.array([100 * c.ham_count / max(n_ham, 1) for c in clues])
        ax.barh(y + 0.2, spam_share, height=0.4, color=SPAM_COLOR, label="% of spam containing it")
        ax.barh(y - 0.2, ham_share, height=0.4, color=HAM_COLOR, label="% of ham containing it")
        ax.set_yticks(y, [f"{_short(c.token)}  ({c.spam_prob:.4f})" for c in clues], fontsize="small")
        ax.set_xlim(0, max([*spam_share, *ham_share, 1.0]) * 1.15)
        ax.set_xlabel("% of messages")
        ax.set_title(name, fontsize="medium")
        ax.legend(loc="lower right", fontsize="x-small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_atomically(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``:
    a reader (a browser reloading the report) never sees half a file.

    Raises ``NotRegularFileError`` if ``path`` is there and is not a regular
    file (``check_replaceable``).
    """
    path = Path(path)
    check_replaceable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp makes 0600; a report is meant to be read (and served) like
        # any file written with open(), so under the umask as open() is: a
        # fixed 0644 showed the clues of the users' mail (addresses, names)
        # to everyone where the admin's umask 077 said not to.
        os.fchmod(fd, new_file_mode(0o666))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG, atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return write_atomically(path, buffer.getvalue())


def save_roc_plot(result: OnlineResult, path: Path, title: str = "spamlearn", *,
                  ham_cutoff: float | None = 0.20, spam_cutoff: float | None = 0.90) -> Path:
    """The ROC curve of ``roc_figure`` as a PNG (``spamlearn eval --plot``)."""
    return save_figure(roc_figure(result, title=title, ham_cutoff=ham_cutoff, spam_cutoff=spam_cutoff), path)
