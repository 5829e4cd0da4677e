"""Side by side: our model and scikit-learn's naive Bayes, on our tokens and on plain words.

The question is what each part of spamlearn is worth: the tokenizer
(headers, URLs, HTML evidence, MIME structure, all as prefixed tokens) and
the model (``ChiSquareNB``: presence counts, Robinson's smoothing, Fisher's
chi-squared combining).  So every model runs on every feature set:

* features: spamlearn's tokens (``MessageVectorizer``'s binary CSR matrix,
  the very buckets the classifier uses), and plain word counts
  (scikit-learn's ``HashingVectorizer`` over the decoded Subject and text
  parts: no other headers, HTML markup left as it is, as a first attempt
  with scikit-learn would do it);
* models: ``ChiSquareNB``, ``MultinomialNB`` and ``ComplementNB``, all with
  their default parameters.  A presence matrix does not say which columns
  are words of the text, so ``ChiSquareNB`` here weighs every clue alike:
  its rows are the model without ``family_balance``; spamlearn's own run
  (``run_online``) has it.  Every row's figures rank by the log-odds
  (``compute_figures(by="decisions")``): scikit-learn's probabilities round
  to 0 or 1 for thousands of messages, and ranked by those it would lose on
  rounding, not on what it knows.

Protocol.  All runs use the same *chunked* online protocol: the corpus is
taken in its index order in chunks of ``chunk_size`` messages; each chunk is
scored by the model trained on every earlier chunk, then learned with
``partial_fit``.  That is TREC's online protocol with delayed feedback (the
gold label arrives up to one chunk late, as when a user sorts the Junk
folder once a day), and it is the same for every model, so the comparison is
fair.  It is not a batch train/test split, because a mail filter learns as
mail arrives, and the early messages -- when a model knows little -- count.
``run_online`` (immediate feedback, one message at a time) stays the
reference figure for spamlearn itself; with chunks of 100 its figures are
close but not equal.

The corpus is read and tokenized once (``load_corpus_features``) and every
run reuses the matrices: on two cores the tokenizer costs far more than all
six model runs together.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.naive_bayes import ComplementNB, MultinomialNB

from .classifier import Label
from .errors import ConfigError, MessageError
from .evaluate import EvalFigures, IndexEntry, OnlineResult, compute_figures
from .features import DEFAULT_N_FEATURES, MessageVectorizer, TokenHasher
from .message import ParsedMessage, parse_message
from .model import ChiSquareNB
from .regularfile import read_regular
from .tokenizer import Tokenizer, TokenizerOptions

__all__ = ["CorpusFeatures", "load_corpus_features", "plain_text", "plain_word_counts",
           "drop_empty_columns", "run_chunked", "ComparisonRow", "compare_models", "DEFAULT_MODELS",
           "comparison_table"]

#: The models compared, each a factory for a fresh, empty estimator.
DEFAULT_MODELS: dict[str, Callable[[], object]] = {
    "ChiSquareNB (spamlearn)": ChiSquareNB,
    "MultinomialNB": MultinomialNB,
    "ComplementNB": ComplementNB,
}


def plain_text(parsed: ParsedMessage) -> str:
    """The decoded Subject and text parts: what a plain bag of words sees."""
    pieces = [parsed.header("subject") or ""]
    pieces += [part.text for part in parsed.parts if part.text]
    return "\n".join(pieces)


@dataclasses.dataclass
class CorpusFeatures:
    """A corpus read and tokenized once, for many model runs.

    Attributes
    ----------
    ids : list of str
    gold : ndarray of shape (n_messages,)
        1 for spam, 0 for ham.
    tokens : csr_matrix of shape (n_messages, n_features)
        spamlearn's tokens, hashed and binary (``MessageVectorizer``).
    texts : list of str
        ``plain_text`` of each message ("" if unreadable).
    vocabulary : set of str
        Every distinct token seen: names for the model's clues.
    readable : ndarray of bool
        False for messages that could not be read or parsed.
    seconds : float
        Time spent reading, parsing and tokenizing.
    """

    ids: list[str]
    gold: np.ndarray
    tokens: sp.csr_matrix
    texts: list[str]
    vocabulary: set[str]
    readable: np.ndarray
    seconds: float
    #: Per message, the mask of its buckets (the row's columns, in order)
    #: that hold words of its text (``TokenHasher.indices_split``).
    text_masks: list[np.ndarray]

    def rows(self) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """Per-message (indices, text mask) for ``run_online(features=...)``."""
        X = self.tokens
        return [(X.indices[X.indptr[i]:X.indptr[i + 1]].astype(np.int64), mask) if ok else None
                for i, (ok, mask) in enumerate(zip(self.readable, self.text_masks))]


def load_corpus_features(entries: Sequence[IndexEntry], *, n_features: int = DEFAULT_N_FEATURES,
                         tokenizer_options: TokenizerOptions | None = None, scan_limit: int = 512_000,
                         progress: Callable[[int], None] | None = None) -> CorpusFeatures:
    """Read, parse and tokenize every message of ``entries`` once.

    Parameters
    ----------
    entries : sequence of IndexEntry
        From ``read_index``.
    n_features, tokenizer_options, scan_limit
        As the ``Classifier`` that will use the rows.
    progress : callable, optional
        Called with the number of messages done so far.
    """
    options = tokenizer_options or TokenizerOptions()
    tokenizer = Tokenizer(options)
    vectorizer = MessageVectorizer(n_features=n_features, word_pairs=options.word_pairs,
                                   scan_limit=scan_limit)
    start = time.perf_counter()
    token_lists: list[list[str]] = []
    text_masks: list[np.ndarray] = []
    hasher = TokenHasher(n_features)
    texts: list[str] = []
    readable = np.ones(len(entries), dtype=bool)
    vocabulary: set[str] = set()
    for i, entry in enumerate(entries):
        try:
            # read_regular, as run_online reads them: a FIFO in the index
            # would block here for ever, /dev/zero fill the memory.
            parsed = parse_message(read_regular(entry.path), scan_limit)
        except (OSError, MessageError):
            readable[i] = False
            token_lists.append([])
            text_masks.append(np.zeros(0, dtype=bool))
            texts.append("")
            continue
        tokens, n_text = tokenizer.tokenize_split(parsed)
        text_masks.append(hasher.indices_split(tokens, n_text)[1])
        vocabulary.update(tokens)
        token_lists.append(tokens)
        texts.append(plain_text(parsed))
        if progress is not None:
            progress(i + 1)
    # MessageVectorizer takes token lists as they are: the same buckets the
    # classifier's TokenHasher gives.
    matrix = vectorizer.transform(token_lists)
    gold = np.array([entry.gold is Label.SPAM for entry in entries], dtype=np.int8)
    return CorpusFeatures([e.id for e in entries], gold, matrix, texts, vocabulary, readable,
                          time.perf_counter() - start, text_masks)


def plain_word_counts(texts: Iterable[str], n_features: int = 2**20) -> sp.csr_matrix:
    """Word counts of plain text, as scikit-learn's text tutorial makes them.

    ``alternate_sign=False`` and no normalisation: naive Bayes wants
    non-negative counts.
    """
    vectorizer = HashingVectorizer(n_features=n_features, alternate_sign=False, norm=None)
    return vectorizer.transform(texts)


def _decisions(model, X) -> np.ndarray:
    """Spam log-odds (or any score that ranks like it) for each row."""
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(X), dtype=np.float64)
    joint = model.predict_joint_log_proba(X)
    return joint[:, 1] - joint[:, 0]


def _verdict(decision: float, ham_cutoff: float, spam_cutoff: float) -> Label:
    with np.errstate(over="ignore"):
        prob = 1.0 / (1.0 + np.exp(-decision))
    if prob >= spam_cutoff:
        return Label.SPAM
    if prob < ham_cutoff:
        return Label.HAM
    return Label.UNSURE


def run_chunked(model, X: sp.spmatrix, gold: np.ndarray, *, ids: Sequence[str] | None = None,
                readable: np.ndarray | None = None, chunk_size: int = 100,
                ham_cutoff: float = 0.20, spam_cutoff: float = 0.90) -> OnlineResult:
    """The chunked online protocol (see the module docstring) for any
    scikit-learn classifier with ``partial_fit``.

    Scores before the first learned chunk, and of unreadable messages, are
    0.5 (unsure); unreadable messages are not learned.  Verdicts apply the
    cutoffs to ``1 / (1 + exp(-decision))``, which is the spam probability
    for the naive Bayes models here.

    Returns
    -------
    OnlineResult
        ``seconds`` is the time spent in the model (scoring and learning).
    """
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be at least 1, got {chunk_size}")
    X = sp.csr_matrix(X)
    n = X.shape[0]
    gold = np.asarray(gold).astype(np.int8)
    readable = np.ones(n, dtype=bool) if readable is None else np.asarray(readable, dtype=bool)
    decisions = np.zeros(n)
    fitted = False
    start = time.perf_counter()
    for first in range(0, n, chunk_size):
        chunk = slice(first, min(first + chunk_size, n))
        ok = np.flatnonzero(readable[chunk]) + first
        if fitted and len(ok):
            decisions[ok] = _decisions(model, X[ok])
        if len(ok):
            model.partial_fit(X[ok], gold[ok], classes=np.array([0, 1]))
            fitted = True
    seconds = time.perf_counter() - start
    with np.errstate(over="ignore"):
        scores = 1.0 / (1.0 + np.exp(-decisions))
    verdicts = [_verdict(d, ham_cutoff, spam_cutoff) for d in decisions]
    return OnlineResult(list(ids) if ids is not None else [str(i) for i in range(n)], gold, scores,
                        decisions, verdicts, seconds, int(readable.sum()), int((~readable).sum()))


@dataclasses.dataclass(frozen=True)
class ComparisonRow:
    """One model on one feature set."""

    features: str
    model: str
    figures: EvalFigures
    result: OnlineResult

    def as_dict(self) -> dict:
        f = self.figures
        return {"features": self.features, "model": self.model, "roca_pct": f.roca_pct, "lam_pct": f.lam_pct,
                "ham_misclassified_pct": f.ham_misclassified_pct,
                "spam_misclassified_pct": f.spam_misclassified_pct, "unsure_pct": f.unsure_pct,
                "hm_at_sm_01_pct": f.hm_at_sm_01_pct, "model_seconds": self.result.seconds}


def drop_empty_columns(X: sp.spmatrix) -> sp.csr_matrix:
    """``X`` without the columns no row uses.

    A hashed matrix has 2**21 columns, of which a corpus uses ~150,000.
    ``MultinomialNB`` and ``ComplementNB`` smooth every column with
    ``alpha``, so two million empty ones would drown the evidence of the real
    tokens (measured here: (1-ROCA)% 2.03 instead of 0.75 with the default
    alpha); dropped, they see the columns a vocabulary-based
    ``CountVectorizer`` would give them.  ``ChiSquareNB`` scores each
    feature from its own counts only, so it is unaffected.
    """
    X = sp.csc_matrix(X)
    used = np.flatnonzero(np.diff(X.indptr))
    return sp.csr_matrix(X[:, used])


def compare_models(feature_sets: Mapping[str, sp.spmatrix], gold: np.ndarray, *,
                   models: Mapping[str, Callable[[], object]] | None = None,
                   readable: np.ndarray | None = None, ids: Sequence[str] | None = None,
                   chunk_size: int = 100, ham_cutoff: float = 0.20,
                   spam_cutoff: float = 0.90) -> list[ComparisonRow]:
    """Every model of ``models`` (default ``DEFAULT_MODELS``) on every feature set,
    each from empty, with ``run_chunked``, on the used columns only
    (``drop_empty_columns``)."""
    rows = []
    for features_name, X in feature_sets.items():
        X = drop_empty_columns(X)
        for model_name, make in (models or DEFAULT_MODELS).items():
            result = run_chunked(make(), X, gold, ids=ids, readable=readable, chunk_size=chunk_size,
                                 ham_cutoff=ham_cutoff, spam_cutoff=spam_cutoff)
            rows.append(ComparisonRow(features_name, model_name, compute_figures(result, by="decisions"),
                                      result))
    return rows


_COLUMNS = [("features", "features", "{}"), ("model", "model", "{}"), ("roca_pct", "(1-ROCA)%", "{:.3f}"),
            ("lam_pct", "lam%", "{:.2f}"), ("ham_misclassified_pct", "ham→spam %", "{:.2f}"),
            ("spam_misclassified_pct", "spam→ham %", "{:.2f}"), ("unsure_pct", "unsure %", "{:.2f}"),
            ("hm_at_sm_01_pct", "hm% at sm=0.1%", "{:.1f}"), ("model_seconds", "model s", "{:.1f}")]


def comparison_table(rows: Iterable[ComparisonRow | Mapping]) -> str:
    """A Markdown table of ``rows`` (lower is better in every figure column)."""
    lines = ["| " + " | ".join(title for _, title, _ in _COLUMNS) + " |",
             "|" + "|".join(" --- " if i < 2 else " ---: " for i in range(len(_COLUMNS))) + "|"]
    for row in rows:
        values = row.as_dict() if isinstance(row, ComparisonRow) else row
        lines.append("| " + " | ".join(fmt.format(values[key]) for key, _, fmt in _COLUMNS) + " |")
    return "\n".join(lines)
