"""An evaluation report for people without Jupyter: PNG figures and one HTML page.

``write_report`` writes into a folder::

    roc.png             ROC curve, logit axes, TREC style
    scores.png          score histogram for ham and spam, cutoffs drawn in
    learning-curve.png  misclassification along the message stream
    clues.png           strongest spam and ham clues (when token names are known)
    index.html          the figures table and the pictures, each with one
                        sentence saying what to read from it

The page is self-contained (inline CSS, no remote fonts or scripts, images by
relative path), so the folder can be copied anywhere or served as it is.  A
few lines of inline script mark on ``<body>`` how many pictures loaded
(``data-images-loaded``) and how many failed (``data-images-failed``), so a
headless browser can check the page without a human looking at it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import Path

from .classifier import Classifier
from .clues import strongest_clues
from .errors import MessageError
from .evaluate import EvalFigures, IndexEntry, OnlineResult, compute_figures
from .plots import (
    clues_figure,
    learning_curve_figure,
    roc_figure,
    save_figure,
    score_histogram_figure,
    write_atomically,
)
from .regularfile import read_regular

__all__ = ["write_report", "sample_tokens", "FIGURE_FILES", "CAPTIONS"]

FIGURE_FILES = {"roc": "roc.png", "scores": "scores.png", "learning": "learning-curve.png",
                "clues": "clues.png"}

#: One sentence per picture: what to read from it.
CAPTIONS = {
    "roc": "Each point is a threshold: the share of ham a filter would put in Junk (across) against the "
           "share of spam it would leave in the Inbox (up); the closer the curve hugs the lower left "
           "corner the better, and the two marks show where the ham and spam cutoffs put you.",
    "scores": "Ham (blue) should pile up at 0 and spam (red) at 1; whatever lands in the yellow band "
              "between the cutoffs is 'unsure', and the red bars left of the ham cutoff and blue bars "
              "right of the spam cutoff are the mistakes.",
    "learning": "Starting from an empty model, the error rate over the last messages falls as the filter "
                "learns; where the curve flattens is how much mail a new user must train before the "
                "filter is as good as it gets.",
    "clues": "The tokens that weigh most for spam (left) and for ham (right), with the share of each "
             "class that contains them: one-sided, frequent tokens are what the filter relies on.",
}

_FIGURE_ROWS = [
    ("messages", "messages", "{}"), ("n_spam", "spam", "{}"), ("n_ham", "ham", "{}"),
    ("roca_pct", "(1-ROCA)%: area above the ROC curve", "{:.4f}"),
    ("lam_pct", "lam%: logistic average misclassification (score > 0.5 is spam)", "{:.3f}"),
    ("ham_misclassified_pct", "ham called spam at the cutoffs, %", "{:.3f}"),
    ("spam_misclassified_pct", "spam called ham at the cutoffs, %", "{:.3f}"),
    ("unsure_pct", "unsure, % of all messages", "{:.2f}"),
    ("hm_at_sm_01_pct", "ham misclassified when 0.1% of spam is missed, %", "{:.2f}"),
    ("messages_per_second", "messages per second (classify + learn)", "{:.0f}"),
    ("trained", "messages learned", "{}"), ("unreadable", "unreadable messages", "{}"),
]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0 2em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { max-width: 60em; color: #444; }
"""

# Counts the pictures that loaded and failed, once the page has finished
# loading, and writes both on <body> for automated checks.
_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  document.body.setAttribute("data-images-loaded", String(loaded.length));
  document.body.setAttribute("data-images-failed", String(images.length - loaded.length));
});
"""


def sample_tokens(entries: Sequence[IndexEntry], classifier: Classifier, limit: int = 1000) -> set[str]:
    """Distinct tokens of up to ``limit`` messages spread evenly over ``entries``.

    Names for ``strongest_clues``; unreadable messages are skipped.
    """
    step = max(1, len(entries) // max(limit, 1))
    tokens: set[str] = set()
    for entry in entries[::step][:limit]:
        try:
            # read_regular, as the run reads them: a FIFO in the index hung
            # the report for ever (the run had named it and gone on).
            tokens.update(classifier.tokens(read_regular(entry.path)))
        except (OSError, MessageError):
            continue
    return tokens


def _figures_table(figures: EvalFigures, extra: Iterable[tuple[str, str]]) -> str:
    values = figures.as_dict()
    rows = [(title, fmt.format(values[key])) for key, title, fmt in _FIGURE_ROWS]
    rows += list(extra)
    body = "\n".join(f"<tr><th>{html.escape(title)}</th><td class=\"number\">{html.escape(value)}</td></tr>"
                     for title, value in rows)
    return f"<table>\n{body}\n</table>"


def write_report(result: OnlineResult, directory: Path, classifier: Classifier, *,
                 entries: Sequence[IndexEntry] | None = None, clue_tokens: Iterable[str] | None = None,
                 title: str = "spamlearn evaluation", mode: str = "all", window: int = 500) -> Path:
    """Write the report's pictures and ``index.html`` into ``directory``.

    Parameters
    ----------
    result : OnlineResult
        The online run (``run_online``).
    directory : Path
        Created if missing; files of an earlier report are replaced.
    classifier : Classifier
        The classifier after the run: its cutoffs are drawn, its clues shown.
    entries : sequence of IndexEntry, optional
        The corpus, to name the clues from a sample of it (``sample_tokens``).
    clue_tokens : iterable of str, optional
        Token names for the clues instead of sampling ``entries``.  Without
        either, there is no clue picture.
    title : str
    mode : str
        The training mode of the run, shown in the table.
    window : int, default=500
        Messages per point of the learning curve.

    Returns
    -------
    Path
        The ``index.html`` written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures = compute_figures(result)
    ham_cutoff, spam_cutoff = classifier.ham_cutoff, classifier.spam_cutoff
    pictures = {
        "roc": roc_figure(result, title=f"ROC: {title}", ham_cutoff=ham_cutoff, spam_cutoff=spam_cutoff),
        "scores": score_histogram_figure(result, ham_cutoff=ham_cutoff, spam_cutoff=spam_cutoff),
        "learning": learning_curve_figure(result, window=window),
    }
    if clue_tokens is None and entries is not None:
        clue_tokens = sample_tokens(entries, classifier)
    if clue_tokens is not None:
        spam_clues, ham_clues = strongest_clues(classifier, clue_tokens, n=20)
        if spam_clues or ham_clues:
            pictures["clues"] = clues_figure(spam_clues, ham_clues, n_spam=classifier.n_spam,
                                             n_ham=classifier.n_ham)
    for name, fig in pictures.items():
        save_figure(fig, directory / FIGURE_FILES[name])
    extra = [("training mode", mode), ("ham cutoff", f"{ham_cutoff:g}"), ("spam cutoff", f"{spam_cutoff:g}")]
    sections = "\n".join(
        f'<figure id="{name}"><img src="{FIGURE_FILES[name]}" alt="{html.escape(name)}">'
        f"<figcaption>{html.escape(CAPTIONS[name])}</figcaption></figure>"
        for name in pictures)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{html.escape(title)}</title>
<style>{_STYLE}</style>
<script>{_SCRIPT}</script>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>The TREC Spam Track online protocol: from an empty model, each message is classified, then
{"its label is learned" if mode == "all" else "its label is learned if it was misclassified or unsure"}.
Lower is better for every rate.</p>
{_figures_table(figures, extra)}
{sections}
</body>
</html>
"""
    index = directory / "index.html"
    write_atomically(index, page.encode("utf-8"))
    return index
