"""Tokens to column indices in a fixed-size hashed feature space.

Hashing instead of a vocabulary: the model's size is fixed and known in
advance (two count arrays of ``n_features``), learning never grows a
dictionary, and the mapping is stable across processes and versions, because
it is BLAKE2b from the standard library (the first 8 bytes of the digest of
the token's UTF-8 bytes), never Python's per-process randomised ``hash()``.
BLAKE2b rather than scikit-learn's MurmurHash3: importing scikit-learn costs
1.4 s, which every ``spamlearn filter`` call would pay; hashing costs more
per token (2 us against 0.4 us) but each token is hashed once per process
and cached.  Collisions are the price.  Measured
2026-11-28 on the SpamAssassin public corpus (152,004 distinct tokens with
the default TokenizerOptions): 13.5% of tokens share a bucket with another
at 2**20 buckets, 7.0% at 2**21, 3.5% at 2**22.  The online figures
(roca / lam / hm, scripts/ablation.py with the default model) barely move:
2**20 0.1119 / 0.976 / 0.024, 2**21 0.1084 / 1.037 / 0.024, 2**22
0.1065 / 1.016 / 0.024 -- within noise of each other, so the default
stays 2**21 (16 MB of counts in memory; a model file holds only the
~150,000 non-zero buckets).
"""

from __future__ import annotations

from collections.abc import Iterable

from hashlib import blake2b

import numpy as np

__all__ = ["TokenHasher", "MessageVectorizer", "DEFAULT_N_FEATURES"]

DEFAULT_N_FEATURES = 2**21

#: Token -> bucket memo.  Hashing a token costs ~0.4 us in Python, a dict
#: hit ~0.05 us; most tokens of a message were seen before.  Bounded, and
#: keyed by token only (the bucket is hash % n_features, computed after).
_HASH_CACHE: dict[str, int] = {}
_HASH_CACHE_MAX = 1_000_000


def token_hash(token: str) -> int:
    value = _HASH_CACHE.get(token)
    if value is None:
        if len(_HASH_CACHE) >= _HASH_CACHE_MAX:
            _HASH_CACHE.clear()
        value = int.from_bytes(blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                               "little")
        _HASH_CACHE[token] = value
    return value


class TokenHasher:
    """Maps tokens to sorted, unique bucket indices.

    Parameters
    ----------
    n_features : int, default=2**21
        Number of buckets; a power of two.
    """

    def __init__(self, n_features: int = DEFAULT_N_FEATURES):
        if n_features <= 0 or n_features & (n_features - 1):
            raise ValueError(f"n_features must be a power of two, got {n_features}")
        self.n_features = n_features
        self._mask = n_features - 1
        #: token -> bucket for this width: one dict lookup per token on the
        #: hot path instead of a function call, a lookup and a mask
        #: (scripts/bench_pipeline.py).
        self._buckets: dict[str, int] = {}

    def _bucket(self, token: str) -> int:
        buckets = self._buckets
        if len(buckets) >= _HASH_CACHE_MAX:
            buckets.clear()
        value = buckets[token] = token_hash(token) & self._mask
        return value

    def index(self, token: str) -> int:
        return token_hash(token) & self._mask

    def indices(self, tokens: Iterable[str]) -> np.ndarray:
        """Unique bucket indices of ``tokens`` (presence, not counts).

        A token counts once per message, as in SpamBayes and bogofilter:
        a word repeated fifty times in one spam is one piece of evidence.
        """
        buckets = self._buckets
        get = buckets.get
        if not isinstance(tokens, (list, tuple)):
            tokens = list(tokens)
        # map() instead of a comprehension, and the misses hashed here in
        # one loop (no per-token call into _bucket/token_hash, and no second
        # copy in the module-wide _HASH_CACHE): the same BLAKE2b buckets.
        # measured 2026-11-28, ``PYTHONPATH=. python scripts/bench_pipeline.py
        # .corpora/spamassassin-public/full/index``: hash 1.73 -> 1.55 s CPU
        # (6,046 msgs; the 1.73 was taken with another job on the 2 cores,
        # so read it as an upper bound), same tokens and indices for every
        # message.  Both changes together, hasher.indices alone over the
        # corpus's token lists, fresh process, 3 runs each (2026-11-28):
        # cold 1.34-1.37 -> 1.02-1.15 s CPU, warm 0.58-0.72 -> 0.50-0.57 s.
        # Then no set(tokens) first: the lookups go over the list and the
        # set of buckets drops the repeats (1.42 M lookups instead of a
        # set build plus ~1.2 M): warm indices() over the corpus's token
        # lists 0.70 -> 0.55 s CPU, cold 1.20 -> 1.03 s (/tmp timing of
        # hasher.indices alone, 2026-11-28), same indices for every message.
        found = set(map(get, tokens))
        if None in found:
            found.discard(None)
            missing = {t for t in tokens if t not in buckets}
            if len(buckets) + len(missing) > _HASH_CACHE_MAX:
                buckets.clear()
            mask = self._mask
            from_bytes = int.from_bytes
            for t in missing:
                b = from_bytes(blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                               "little") & mask
                buckets[t] = b
                found.add(b)
        out = np.fromiter(found, dtype=np.int64, count=len(found))
        out.sort()
        return out


def __getattr__(name: str):
    # The scikit-learn transformer lives apart so that scoring never pays
    # for importing scikit-learn; ``spamlearn.features.MessageVectorizer``
    # still works.
    if name == "MessageVectorizer":
        from .vectorizer import MessageVectorizer

        return MessageVectorizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
