"""The strongest clues a trained model holds, by name.

A model stores counts per hashed bucket, not per token, so naming its clues
needs tokens to hash: those of the corpus it learned from (the notebook keeps
them all), or of a sample of it (``spamlearn eval --report`` reads up to a
thousand messages spread over the corpus; the strongest clues are frequent
tokens, so a sample finds them).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .classifier import Classifier, Clue

__all__ = ["strongest_clues"]


def strongest_clues(classifier: Classifier, tokens: Iterable[str],
                    n: int = 20) -> tuple[list[Clue], list[Clue]]:
    """The ``n`` strongest spam clues and ``n`` strongest ham clues among ``tokens``.

    Strength is the model's own smoothed token probability f(w): Robinson's
    smoothing already discounts rare tokens, so the top of the list is
    tokens both one-sided and frequent.  Tokens sharing a bucket are named
    together (``a | b``), as ``Classifier.explain`` does.

    Parameters
    ----------
    classifier : Classifier
        A trained classifier.
    tokens : iterable of str
        Candidate token names (duplicates are ignored).
    n : int, default=20

    Returns
    -------
    (spam_clues, ham_clues) : tuple of two lists of Clue
        Strongest first.
    """
    names: dict[int, list[str]] = {}
    for token in dict.fromkeys(tokens):
        names.setdefault(classifier.hasher.index(token), []).append(token)
    if not names:
        return [], []
    model = classifier.model
    buckets = np.fromiter(names, dtype=np.int64, count=len(names))
    spam_count = model.spam_count_[buckets].astype(np.int64)
    ham_count = model.ham_count_[buckets].astype(np.int64)
    seen = (spam_count + ham_count) > 0
    buckets, spam_count, ham_count = buckets[seen], spam_count[seen], ham_count[seen]
    probs = model.feature_probs(buckets)

    def top(order: np.ndarray) -> list[Clue]:
        return [Clue(" | ".join(sorted(names[int(buckets[i])])), float(probs[i]),
                     int(spam_count[i]), int(ham_count[i])) for i in order[:n]]

    # lexsort: last key first; ties in probability go to the better-attested token.
    spam_order = np.lexsort((-spam_count, -probs))
    ham_order = np.lexsort((-ham_count, probs))
    return top(spam_order[probs[spam_order] > 0.5]), top(ham_order[probs[ham_order] < 0.5])
