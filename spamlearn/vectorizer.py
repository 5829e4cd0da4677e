"""``MessageVectorizer``: spamlearn's tokens as a scikit-learn transformer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from .errors import MessageError
from .features import DEFAULT_N_FEATURES, TokenHasher
from .message import parse_message
from .tokenizer import Tokenizer, TokenizerOptions

__all__ = ["MessageVectorizer"]


class MessageVectorizer(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: raw messages to a binary CSR matrix.

    Lets spamlearn's tokenizer feed any scikit-learn model, and lets
    ``ChiSquareNB`` sit in a ``Pipeline`` or ``GridSearchCV``.

    Parameters
    ----------
    n_features : int, default=2**21
    word_pairs : bool, default=False
        See ``TokenizerOptions.word_pairs``.
    scan_limit : int, default=512000
        Bytes of each message read.

    Examples
    --------
    >>> X = MessageVectorizer(n_features=2**10).transform([b"Subject: hi\\n\\nhello"])
    >>> X.shape
    (1, 1024)
    """

    def __init__(self, *, n_features: int = DEFAULT_N_FEATURES, word_pairs: bool = False,
                 scan_limit: int = 512_000):
        self.n_features = n_features
        self.word_pairs = word_pairs
        self.scan_limit = scan_limit

    def fit(self, X, y=None):
        """Check ``n_features``; there is nothing to learn (tokens are hashed). Returns self."""
        TokenHasher(self.n_features)  # validates n_features
        return self

    def tokens(self, message: bytes | Sequence[str]) -> list[str]:
        """A raw message's tokens (bytes, or str as ``parse_message`` takes
        it), or a list of tokens as it is; anything else is a MessageError."""
        if isinstance(message, (bytes, bytearray, memoryview, str)):
            tokenizer = Tokenizer(TokenizerOptions(word_pairs=self.word_pairs))
            return tokenizer.tokenize(parse_message(message, self.scan_limit))
        if isinstance(message, (list, tuple)) and all(isinstance(t, str) for t in message):
            return list(message)
        raise MessageError(f"a message must be bytes (or a list of tokens), not {type(message).__name__}")

    def transform(self, X) -> sp.csr_matrix:
        """A list of messages (or token lists) as token presence: one row a
        message, ``n_features`` columns, 1.0 where a token's bucket is present."""
        if isinstance(X, (bytes, bytearray, str)):
            raise ValueError("X must be a list of messages, not one message")
        hasher = TokenHasher(self.n_features)
        rows = [hasher.indices(self.tokens(message)) for message in X]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=indptr[1:])
        indices = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        data = np.ones(len(indices), dtype=np.float64)
        return sp.csr_matrix((data, indices, indptr), shape=(len(rows), self.n_features))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = False
        return tags
