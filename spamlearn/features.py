"""Tokens to column indices in a fixed-size hashed feature space.

Hashing instead of a vocabulary: the model's size is fixed and known in
advance (two count arrays of ``n_features``), learning never grows a
dictionary, and the mapping is stable across processes, platforms and
versions, because it is CRC-32 (``binascii.crc32``, the zlib/PNG/Ethernet
polynomial) of the token's UTF-8 bytes, never Python's per-process
randomised ``hash()``.  The model file records the hash's name
(``HASH_NAME``), so a model written with another hash is refused on load.
Not scikit-learn's MurmurHash3: importing scikit-learn costs 1.4 s, which
every ``spamlearn filter`` call would pay.

Collisions are the price.  Measured 2026-11-28 on the SpamAssassin public
corpus (173,954 distinct tokens with the default TokenizerOptions), the
share of tokens that share a bucket with another: 15.35% at 2**20 buckets,
8.02% at 2**21, 4.06% at 2**22 -- what a uniform hash gives (15.29, 7.96,
4.06%; BLAKE2b, the hash before: 15.21, 7.91, 4.10%).  Earlier, with
BLAKE2b, the online figures (roca / lam / hm, scripts/ablation.py with the
default model) barely moved with the width: 2**20 0.1119 / 0.976 / 0.024,
2**21 0.1084 / 1.037 / 0.024, 2**22 0.1065 / 1.016 / 0.024 -- within noise
of each other, so the default stays 2**21 (16 MB of counts in memory; a
model file holds only the ~170,000 non-zero buckets).

Why CRC-32 and not BLAKE2b (the hash until 2026-11-28).  BLAKE2b costs
~1 us a token in Python (an object, a digest, ``int.from_bytes``), so it
needed a token -> bucket dict in front of it, and then every token of every
message still cost a Python-level dict lookup (~390 ns: hashing the fresh
string, a miss-prone probe in a 170,000-entry dict) plus 3 us for each new
token.  CRC-32 is cheap enough to need no cache at all: the message's
tokens are joined, encoded and split once (C loops), ``map(crc32, ...)``
hashes them, and numpy sorts and de-duplicates the buckets.  measured
2026-11-28, ``hasher.indices`` over the corpus's token lists: 1.0 s CPU
(BLAKE2b, fresh process) -> 0.5 s; ``scripts/bench_pipeline.py`` hash stage
1.35 -> 0.75 s CPU (6,046 msgs).  32 bits are enough for up to 2**32 buckets.
"""

from __future__ import annotations

from binascii import crc32
from collections.abc import Iterable, Sequence

import numpy as np

# MessageVectorizer comes from __getattr__ below, on first use (scikit-learn).
__all__ = ["TokenHasher", "MessageVectorizer", "DEFAULT_N_FEATURES", "HASH_NAME", "MAX_BUCKETS",  # noqa: F822
           "token_hash"]

DEFAULT_N_FEATURES = 2**21

#: Written into every model file; a model whose buckets came from another
#: hash is refused (spamlearn.store).
HASH_NAME = "crc32"

#: The most buckets a model may have: what a model file may describe
#: (``spamlearn.store``; 2**28 buckets are already 2 GB of counts).  The
#: config allows up to 2**25.
MAX_BUCKETS = 2**28


def token_hash(token: str) -> int:
    """The 32-bit hash of one token (its bucket is this modulo ``n_features``)."""
    return crc32(token.encode("utf-8", "surrogatepass"))


class TokenHasher:
    """Maps tokens to sorted, unique bucket indices.

    Parameters
    ----------
    n_features : int, default=2**21
        Number of buckets; a power of two, at most ``MAX_BUCKETS`` (2**28).
    """

    def __init__(self, n_features: int = DEFAULT_N_FEATURES):
        if n_features <= 0 or n_features & (n_features - 1) or n_features > MAX_BUCKETS:
            raise ValueError(f"n_features must be a power of two up to 2**28, got {n_features}")
        self.n_features = n_features
        self._mask = n_features - 1

    def index(self, token: str) -> int:
        return token_hash(token) & self._mask

    def indices(self, tokens: Iterable[str]) -> np.ndarray:
        """Unique bucket indices of ``tokens`` (presence, not counts), sorted, int64.

        A token counts once per message, as in SpamBayes and bogofilter:
        a word repeated fifty times in one spam is one piece of evidence.
        """
        out = _token_hashes(tokens)
        out &= self._mask
        return _sorted_unique(out)

    def indices_split(self, tokens: Sequence[str], n_tail: int) -> tuple[np.ndarray, np.ndarray]:
        """``indices(tokens)``, and a mask over them of the buckets the last
        ``n_tail`` tokens hold (``Tokenizer.tokenize_split``'s words of the
        text; a bucket both parts hold counts as the tail's).

        One sort of bucket * 2 + (1 if in the tail), keeping the last of
        each bucket's run: the cost of ``indices`` and two array operations.
        """
        out = _token_hashes(tokens)
        out &= self._mask
        out <<= 1
        if n_tail:
            out[len(out) - n_tail:] |= 1
        out.sort()
        if len(out) > 1:
            buckets = out >> 1
            last = np.empty(len(out), dtype=bool)
            last[-1] = True
            np.not_equal(buckets[:-1], buckets[1:], out=last[:-1])
            out = out[last]
        tail = (out & 1).astype(bool)
        out >>= 1
        return out, tail

    def hashes(self, tokens: Iterable[str]) -> np.ndarray:
        """Unique 32-bit hashes of ``tokens``, sorted, int64: what the ledger
        keeps of a learned message, so that its buckets can be worked out
        again for another ``n_features`` (``fold``)."""
        return _sorted_unique(_token_hashes(tokens))

    def fold(self, hashes: np.ndarray) -> np.ndarray:
        """The bucket indices of ``hashes`` (``indices`` of the same tokens)."""
        return _sorted_unique(np.asarray(hashes, dtype=np.int64) & self._mask)


def _token_hashes(tokens: Iterable[str]) -> np.ndarray:
    """``token_hash`` of each token, int64, in order."""
    if not isinstance(tokens, (list, tuple)):
        tokens = list(tokens)
    if not tokens:
        return np.zeros(0, dtype=np.int64)
    # One join, one encode and one split instead of an encode per token
    # (join + encode + split: 0.2 s for the corpus's 1.42 M tokens); a
    # token holding the separator itself (one message of 6,046) is
    # encoded token by token.  UTF-8 encodes each character on its own,
    # so each piece is the token's own encoding.
    pieces = "\0".join(tokens).encode("utf-8", "surrogatepass").split(b"\0")
    if len(pieces) != len(tokens):
        pieces = [t.encode("utf-8", "surrogatepass") for t in tokens]
    return np.fromiter(map(crc32, pieces), dtype=np.int64, count=len(pieces))


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``values`` sorted with repeats dropped, in place.

    sort + neighbour test, not np.unique (36 us a call of Python-level
    overhead, 0.2 s over the corpus).
    """
    values.sort()
    if len(values) > 1:
        keep = np.empty(len(values), dtype=bool)
        keep[0] = True
        np.not_equal(values[1:], values[:-1], out=keep[1:])
        values = values[keep]
    return values


def __getattr__(name: str):
    # The scikit-learn transformer lives apart so that scoring never pays
    # for importing scikit-learn; ``spamlearn.features.MessageVectorizer``
    # still works.
    if name == "MessageVectorizer":
        from .vectorizer import MessageVectorizer

        return MessageVectorizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
