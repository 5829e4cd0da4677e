"""``ChiSquareNB``: the scikit-learn estimator face of spamlearn's model.

The counting and the chi-squared scoring live in ``spamlearn.counts``
(numpy only, so the command line starts fast); this class adds what
scikit-learn expects -- ``fit``, ``partial_fit``, ``predict``,
``predict_proba``, ``decision_function``, ``get_params``/``set_params`` --
so the same model works in a ``Pipeline`` or ``GridSearchCV`` behind
``spamlearn.features.MessageVectorizer``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from .counts import BayesCounts, Scored, spam_prob_of

__all__ = ["ChiSquareNB", "Scored"]


class ChiSquareNB(ClassifierMixin, BaseEstimator):
    """Binary naive Bayes over feature presence with chi-squared combining.

    Parameters are those of ``spamlearn.counts.BayesCounts`` (see there for
    the formulas and the measurements behind the defaults).

    Parameters
    ----------
    unknown_word_strength : float, default=0.1
    unknown_word_prob : float, default=0.55
    min_prob_strength : float, default=0.4
    max_discriminators : int, default=200
    confidence_warmup : int, default=10
    support_sightings : int, default=50
    family_balance : float, default=0.5
        (Applies only where the message's text words are known: scoring
        through ``Classifier``.  A presence matrix does not say which
        columns are words of the text, so ``predict`` and
        ``decision_function`` weigh every clue alike.)

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The labels, sorted; the last is the positive one, read as spam:
        ham/spam, 0/1 and False/True do that (a ``Classifier`` refuses a
        model whose last class is anything else).
    counts_ : BayesCounts
    spam_count_, ham_count_ : ndarray of shape (n_features,), uint32
    n_spam_, n_ham_, n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]])
    >>> y = np.array(["spam", "spam", "ham", "ham"])
    >>> model = ChiSquareNB().fit(X, y)
    >>> str(model.predict(np.array([[1, 1, 0, 0]]))[0])
    'spam'
    """

    def __init__(self, *, unknown_word_strength: float = 0.1, unknown_word_prob: float = 0.55,
                 min_prob_strength: float = 0.4, max_discriminators: int = 200,
                 confidence_warmup: int = 10, support_sightings: int = 50,
                 family_balance: float = 0.5):
        self.unknown_word_strength = unknown_word_strength
        self.unknown_word_prob = unknown_word_prob
        self.min_prob_strength = min_prob_strength
        self.max_discriminators = max_discriminators
        self.confidence_warmup = confidence_warmup
        self.support_sightings = support_sightings
        self.family_balance = family_balance

    # -- state ----------------------------------------------------------------
    def _new_counts(self, n_features: int, classes) -> None:
        params = {name: getattr(self, name) for name in BayesCounts.PARAMS}
        self.counts_ = BayesCounts(**params).init_empty(n_features)
        self.n_features_in_ = int(n_features)
        self.classes_ = np.asarray(classes)

    def init_empty(self, n_features: int, classes=("ham", "spam")) -> ChiSquareNB:
        """Start an empty model over ``n_features`` (for online learning)."""
        self._new_counts(n_features, classes)
        return self

    def set_params(self, **params) -> ChiSquareNB:
        """Set parameters (scikit-learn's API); a fitted model scores and
        learns with them from now on.

        On a fitted model they are checked first (ValueError; nothing
        changes) and passed to ``counts_``, which scores: they used to
        reach only the estimator's attributes, which is what a saved model
        file carries, so the model reloaded scored differently from the one
        in memory (a helper's review).  An unfitted model checks them at
        ``fit``, as scikit-learn's estimators do.
        """
        counts = getattr(self, "counts_", None)
        if counts is not None:
            counts.set_params(**{**self.get_params(), **params})
        return super().set_params(**params)

    spam_count_ = property(lambda self: self.counts_.spam_count_)
    ham_count_ = property(lambda self: self.counts_.ham_count_)
    n_spam_ = property(lambda self: self.counts_.n_spam_)
    n_ham_ = property(lambda self: self.counts_.n_ham_)
    n_learned_ = property(lambda self: self.counts_.n_learned_)

    def learn_indices(self, indices: np.ndarray, is_spam: bool) -> None:
        """Count one message given by its unique feature indices."""
        self.counts_.learn_indices(indices, is_spam)

    def unlearn_indices(self, indices: np.ndarray, is_spam: bool) -> None:
        """Exact inverse of ``learn_indices``; ``ModelError`` where a count would go below zero."""
        self.counts_.unlearn_indices(indices, is_spam)

    def score_indices(self, indices: np.ndarray, text: np.ndarray | None = None) -> Scored:
        """Score one message given by its unique feature indices (and, for
        ``family_balance``, the mask of those that are words of its text)."""
        return self.counts_.score_indices(indices, text)

    def feature_probs(self, indices: np.ndarray) -> np.ndarray:
        """Robinson's f(w), the smoothed spam probability, of each feature index."""
        return self.counts_.feature_probs(indices)

    # -- scikit-learn API ------------------------------------------------------
    def _rows(self, X, *, reset: bool):
        if not reset:
            check_is_fitted(self, "classes_")
        X = check_array(X, accept_sparse="csr", dtype=None)
        if X.dtype.kind not in "biuf":
            X = check_array(X, accept_sparse="csr", dtype=np.float64)
        X = sp.csr_matrix(X)
        X.eliminate_zeros()
        if (X.data < 0).any():
            raise ValueError("Negative values in data passed to ChiSquareNB (X is token presence)")
        if not reset:
            if X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but ChiSquareNB is expecting "
                                 f"{self.n_features_in_} features as input")
        return X

    def fit(self, X, y):
        """Learn from scratch: reset the counts, then count every row."""
        if y is None:
            raise ValueError("ChiSquareNB requires y to be passed, but the target y is None")
        y = column_or_1d(y, warn=True)
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("Input y contains NaN or infinity.")
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind not in ("binary", "unknown") and len(np.unique(y)) > 2:
            raise ValueError(f"Only binary classification is supported. The type of the target is {kind}.")
        X = self._rows(X, reset=True)
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"ChiSquareNB is a binary classifier and needs both classes; "
                             f"got {len(classes)} class(es)")
        # Everything is checked before the counts are replaced: a fit that
        # fails must leave the model it was called on as it was (a
        # helper's review: 4 rows and 3 labels left it empty, calling
        # every message ham).
        _check_lengths(X, y)
        BayesCounts(**self.get_params()).validate_params()
        self._new_counts(X.shape[1], classes)
        return self._count(X, y)

    def partial_fit(self, X, y, classes=None):
        """Learn more messages; ``classes`` is required on the first call, and
        if given again must be the same (ValueError otherwise)."""
        first = not hasattr(self, "classes_")
        X = self._rows(X, reset=first)
        y = np.asarray(y).ravel()
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            classes = np.unique(np.asarray(classes))
            if len(classes) != 2:
                raise ValueError("ChiSquareNB needs exactly two classes")
            _check_lengths(X, y)     # before: a failed first call must leave it unfitted
            self._new_counts(X.shape[1], classes)
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            # As scikit-learn's naive Bayes does: other classes cannot be
            # taken up by a model that has counted these (they were ignored).
            raise ValueError(f"classes={list(classes)!r} is not the same as on the first call to "
                             f"partial_fit, which was {self.classes_.tolist()!r}")
        unknown = set(np.unique(y).tolist()) - set(self.classes_.tolist())
        if unknown:
            raise ValueError(f"labels {sorted(unknown)} not in classes {self.classes_.tolist()}")
        return self._count(X, y)

    def _count(self, X, y):
        _check_lengths(X, y)
        positive = np.asarray(y) == self.classes_[-1]
        presence = X.astype(bool).astype(np.uint32)
        counts = self.counts_
        counts.spam_count_ += np.asarray(presence[positive].sum(axis=0), dtype=np.uint32).ravel()
        counts.ham_count_ += np.asarray(presence[~positive].sum(axis=0), dtype=np.uint32).ravel()
        counts.n_spam_ += int(positive.sum())
        counts.n_ham_ += int((~positive).sum())
        counts.counts_changed()
        return self

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of spam for each row (positive: spam)."""
        X = self._rows(X, reset=False)
        score = self.counts_.score_indices
        return np.array([score(X.indices[X.indptr[i]:X.indptr[i + 1]]).decision
                         for i in range(X.shape[0])])

    def predict_proba(self, X) -> np.ndarray:
        """Probability of each class for each row, columns in ``classes_`` order.

        The spam column is on the side of 0.5 that ``predict`` chose
        (``spam_prob_of``), so its argmax is ``predict``'s class.
        """
        spam = np.array([spam_prob_of(d) for d in self.decision_function(X)], dtype=np.float64)
        return np.column_stack([1.0 - spam, spam])

    def predict_log_proba(self, X) -> np.ndarray:
        """Log of ``predict_proba`` (-inf where a probability is 0)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """The class of each row: the positive (last) class where the log-odds is > 0."""
        decision = self.decision_function(X)  # checks fitted before classes_ is read
        return self.classes_[(decision > 0).astype(int)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = True
        tags.classifier_tags.multi_class = False
        tags.classifier_tags.poor_score = True
        return tags


def _check_lengths(X, y) -> None:
    if X.shape[0] != len(y):
        raise ValueError(f"X has {X.shape[0]} rows but y has {len(y)} labels")
