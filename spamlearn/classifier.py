"""The facade other filters embed: raw bytes in, a ``Verdict`` out.

``Classifier`` ties the parser, the tokenizer, the feature hasher and the
``BayesCounts`` model (the numbers behind ``ChiSquareNB``) together and
applies the ham/unsure/spam cutoffs.  It holds no file or lock: saving,
loading and the learned-message ledger live in ``spamlearn.store`` and
``spamlearn.modelstore``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import numbers
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .counts import BayesCounts
from .errors import MessageError, NotFittedError
from .features import DEFAULT_N_FEATURES, TokenHasher
from .message import RawMessage, parse_message
from .tokenizer import Tokenizer, TokenizerOptions

if TYPE_CHECKING:
    from .model import ChiSquareNB  # scikit-learn: imported by who makes one

__all__ = ["Label", "Verdict", "Clue", "Classifier"]

#: Messages ``Classifier.score_many`` takes through each stage together.
_STAGE_BATCH = 16


class Label(str, enum.Enum):
    """A verdict (ham, unsure, spam); learning takes only ham or spam."""

    HAM = "ham"
    UNSURE = "unsure"
    SPAM = "spam"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def learnable(cls, value: str | Label) -> Label:
        """``value`` as a Label that can be learned; ValueError for unsure."""
        label = cls(value)
        if label is cls.UNSURE:
            raise ValueError("only ham or spam can be learned")
        return label


@dataclasses.dataclass(frozen=True, slots=True)
class Clue:
    """One piece of evidence behind a score."""

    token: str
    spam_prob: float
    spam_count: int
    ham_count: int


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """The answer for one message.

    ``spam_prob`` is in [0, 1]; ``decision`` is the same score as a log-odds
    (finer when the probability has rounded to 0 or 1).
    """

    spam_prob: float
    label: Label
    decision: float
    clues: tuple[Clue, ...] = ()

    def as_dict(self) -> dict:
        """The verdict as JSON takes it: label, score (6 places), clues if any."""
        out = {"verdict": self.label.value, "score": round(self.spam_prob, 6)}
        if self.clues:
            out["clues"] = [dataclasses.asdict(c) for c in self.clues]
        return out


class Classifier:
    """Score, learn and unlearn raw messages.

    Parameters
    ----------
    model : BayesCounts (or ChiSquareNB), optional
        A fitted model; a new, empty one is made if omitted.
    n_features : int, default=2**21
        Size of the hashed feature space of a new model.
    tokenizer_options : TokenizerOptions, optional
    ham_cutoff, spam_cutoff : float, default=0.20, 0.90
        Scores below ``ham_cutoff`` are ham, at or above ``spam_cutoff``
        spam; 0 <= ham_cutoff <= spam_cutoff <= 1 (ValueError otherwise).
    scan_limit : int, default=512000
        Bytes of a message read at most (>= 1; ValueError otherwise).

    Examples
    --------
    >>> clf = Classifier(n_features=2**16)
    >>> clf.learn(b"Subject: cheap pills\\n\\nbuy cheap pills now", "spam")
    >>> clf.learn(b"Subject: lunch\\n\\nsee you at lunch tomorrow", "ham")
    >>> clf.score(b"Subject: pills\\n\\ncheap pills").label   # one of each: too little to say
    <Label.UNSURE: 'unsure'>
    >>> for i in range(10):
    ...     clf.learn(b"Subject: cheap pills %d\\n\\nbuy cheap pills now" % i, "spam")
    ...     clf.learn(b"Subject: lunch %d\\n\\nsee you at lunch tomorrow" % i, "ham")
    >>> clf.score(b"Subject: pills\\n\\ncheap pills").label
    <Label.SPAM: 'spam'>
    """

    def __init__(self, model: BayesCounts | ChiSquareNB | None = None, *,
                 n_features: int = DEFAULT_N_FEATURES,
                 tokenizer_options: TokenizerOptions | None = None, ham_cutoff: float = 0.20,
                 spam_cutoff: float = 0.90, scan_limit: int = 512_000):
        # Checked here, not where they are used (a helper's review): a nan
        # cutoff made p = 1.0 "unsure", crossed cutoffs were taken, and a
        # scan_limit of None made every message a MessageError.
        _check_cutoffs(ham_cutoff, spam_cutoff)
        _check_scan_limit(scan_limit)
        if model is None:
            TokenHasher(n_features)     # a power of two: refused before any allocation
            model = BayesCounts().init_empty(n_features)
        classes = getattr(model, "classes_", None)
        if classes is not None and len(classes) and not _means_spam(classes[-1]):
            # ChiSquareNB takes its last class as the positive one: fitted on
            # "junk"/"ok", that is "ok", and spam would be scored as ham.
            raise ValueError(f"the model's positive (last) class must be spam, 1 or True; "
                             f"its classes are {list(classes)}")
        if not hasattr(model, "n_features_in_"):
            # An estimator not fitted yet (ChiSquareNB()): it has no counts to
            # score with nor a size to hash into.
            raise NotFittedError(f"{type(model).__name__} is not fitted yet: fit it first, or give "
                                 f"Classifier no model to start an empty one")
        self.model = model
        self.hasher = TokenHasher(model.n_features_in_)
        self.tokenizer = Tokenizer(tokenizer_options)
        self.ham_cutoff = ham_cutoff
        self.spam_cutoff = spam_cutoff
        self.scan_limit = scan_limit
        #: Bumped by every saved change; set by the store.
        self.revision = 0
        #: When the model last learned something (epoch seconds), or None.
        self.trained_at: float | None = None

    # -- features --------------------------------------------------------------
    def tokens(self, raw: RawMessage) -> list[str]:
        """The tokens of a message (raises ``MessageError`` on empty input)."""
        return self.tokenizer.tokenize(parse_message(raw, self.scan_limit))

    def indices(self, raw: RawMessage) -> np.ndarray:
        """The message's feature bucket indices, sorted and unique (what the model counts)."""
        return self.hasher.indices(self.tokens(raw))

    def features(self, raw: RawMessage) -> tuple[np.ndarray, np.ndarray]:
        """The message's bucket indices, and the mask of those holding words
        of its text (what ``score_indices`` weighs against the rest)."""
        return self.hasher.indices_split(*self.tokenizer.tokenize_split(parse_message(raw, self.scan_limit)))

    def hashes(self, raw: RawMessage) -> np.ndarray:
        """The message's token hashes (``hasher.fold`` gives its indices)."""
        return self.hasher.hashes(self.tokens(raw))

    @property
    def n_spam(self) -> int:
        """Spam messages the model has learned."""
        return self.model.n_spam_

    @property
    def n_ham(self) -> int:
        """Ham messages the model has learned."""
        return self.model.n_ham_

    # -- scoring ---------------------------------------------------------------
    def verdict_for(self, spam_prob: float) -> Label:
        """The label of a spam probability: spam at or above ``spam_cutoff``,
        ham below ``ham_cutoff``, unsure between."""
        if spam_prob >= self.spam_cutoff:
            return Label.SPAM
        if spam_prob < self.ham_cutoff:
            return Label.HAM
        return Label.UNSURE

    def score(self, raw: RawMessage, *, explain: bool = False) -> Verdict:
        """Score a raw message.

        ``raw`` is bytes, bytearray, memoryview or str (``message_bytes``).

        Raises
        ------
        MessageError
            The input is empty or white space only, of another type, text
            that is not UTF-8, or a message the parser cannot read.
        NotFittedError
            The model has learned nothing (it could only say "unsure").
        """
        if self.model.n_learned_ == 0:
            raise NotFittedError("the model has not learned any message yet")
        tokens, n_text = self.tokenizer.tokenize_split(parse_message(raw, self.scan_limit))
        scored = self.model.score_indices(*self.hasher.indices_split(tokens, n_text))
        clues: tuple[Clue, ...] = ()
        if explain:
            clues = self._clues(tokens, scored.clue_indices)
        return Verdict(scored.spam_prob, self.verdict_for(scored.spam_prob), scored.decision, clues)

    def score_many(self, raws: Sequence[RawMessage]) -> list[Verdict | MessageError]:
        """``score`` of each message (no clues), in order; for a message
        that ``score`` refuses, its ``MessageError`` in its place.

        The same verdicts, bit for bit, worked out stage by stage over
        ``_STAGE_BATCH`` messages at a time (parse them, tokenize them,
        hash them, score them) instead of message by message: each stage's
        code and data (the regex engine, the tokenizer's memos, numpy's
        calls into the model's tables) stay in the processor's caches
        across the batch, where one message's whole pipeline pushed the
        others' out.  measured 2026-11-30, the corpus's 6,046 files, CPU s
        (user + sys), medians of rounds interleaved with the code before:
        the scoring loop alone 2.69 -> 2.51 (eight rounds; batches of 8 or
        32 about the same as 16, of 64 2.60: their data no longer fit);
        ``score --json`` with two workers 3.48 -> 3.19 (six rounds), with
        one process 3.60 -> 3.09 (four); the same output, byte for byte.

        Raises
        ------
        NotFittedError
            The model has learned nothing (as ``score``).
        """
        if self.model.n_learned_ == 0:
            raise NotFittedError("the model has not learned any message yet")
        tokenize, hash_split = self.tokenizer.tokenize_split, self.hasher.indices_split
        out: list[Verdict | MessageError] = []
        for start in range(0, len(raws), _STAGE_BATCH):
            stage: list = []
            for raw in raws[start:start + _STAGE_BATCH]:
                try:
                    stage.append(parse_message(raw, self.scan_limit))
                except MessageError as exc:
                    stage.append(exc)
            stage = [item if isinstance(item, MessageError) else tokenize(item) for item in stage]
            stage = [item if isinstance(item, MessageError) else hash_split(*item) for item in stage]
            out += [item if isinstance(item, MessageError) else self.score_indices(*item) for item in stage]
        return out

    def score_indices(self, indices: np.ndarray, text: np.ndarray | None = None) -> Verdict:
        """Score given ``features()``: indices and, for the family weighting, the text mask."""
        scored = self.model.score_indices(indices, text)
        return Verdict(scored.spam_prob, self.verdict_for(scored.spam_prob), scored.decision)

    def explain(self, raw: RawMessage) -> list[Clue]:
        """The clues behind a message's score, strongest first."""
        return list(self.score(raw, explain=True).clues)

    def _clues(self, tokens: list[str], clue_indices: np.ndarray) -> tuple[Clue, ...]:
        wanted = set(int(i) for i in clue_indices)
        names: dict[int, list[str]] = {}
        for token in dict.fromkeys(tokens):
            index = self.hasher.index(token)
            if index in wanted:
                names.setdefault(index, []).append(token)
        probs = self.model.feature_probs(np.asarray(sorted(wanted), dtype=np.int64))
        out = []
        for index, prob in zip(sorted(wanted), probs):
            out.append(Clue(" | ".join(names.get(index, ["?"])), float(prob),
                            int(self.model.spam_count_[index]), int(self.model.ham_count_[index])))
        out.sort(key=lambda c: abs(c.spam_prob - 0.5), reverse=True)
        return tuple(out)

    # -- learning ---------------------------------------------------------------
    def learn(self, raw: RawMessage, label: str | Label) -> None:
        """Count a message as ``label`` (ham or spam).

        In memory only, and with no ledger: the message cannot be told
        from one never learned.  To learn into a model file, and into the
        one the command line and the trainers learn into above all, use
        ``spamlearn.modelstore.ModelStore`` (``save_classifier`` refuses
        a model file that has a ledger).

        Raises
        ------
        MessageError
            As ``score``.
        ValueError
            ``label`` is not ham or spam (``Label.learnable``).
        """
        self.learn_indices(self.indices(raw), label)

    def unlearn(self, raw: RawMessage, label: str | Label) -> None:
        """Exact inverse of ``learn(raw, label)``, for a message learned so.

        The counts cannot tell which messages were learned: ``ModelError``
        is raised only where a count would go below zero, and unlearning a
        message that was never learned, but whose tokens all were, takes
        other messages' counts.  Learn and forget through
        ``spamlearn.modelstore.ModelStore``, whose ledger knows.

        Raises
        ------
        MessageError
            As ``score``.
        ModelError
            A count would go below zero.
        ValueError
            ``label`` is not ham or spam.
        """
        self.unlearn_indices(self.indices(raw), label)

    def learn_indices(self, indices: np.ndarray, label: str | Label) -> None:
        """Count a message given by its ``indices()`` as ``label`` (ham or spam)."""
        self.model.learn_indices(indices, Label.learnable(label) is Label.SPAM)
        self.trained_at = time.time()

    def unlearn_indices(self, indices: np.ndarray, label: str | Label) -> None:
        """Exact inverse of ``learn_indices`` (``ModelError`` where a count would go below zero)."""
        self.model.unlearn_indices(indices, Label.learnable(label) is Label.SPAM)
        self.trained_at = time.time()


def _check_cutoffs(ham_cutoff: float, spam_cutoff: float) -> None:
    """ValueError unless 0 <= ham_cutoff <= spam_cutoff <= 1 (as ``Settings`` requires)."""
    for name, value in (("ham_cutoff", ham_cutoff), ("spam_cutoff", spam_cutoff)):
        # nan compares false with everything, so it passes a range check.
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not 0 <= ham_cutoff <= spam_cutoff <= 1:
        raise ValueError(f"cutoffs must satisfy 0 <= ham_cutoff <= spam_cutoff <= 1, "
                         f"got ham_cutoff={ham_cutoff} spam_cutoff={spam_cutoff}")


def _check_scan_limit(scan_limit: int) -> None:
    # -1 is not "no limit": as a slice bound it dropped the message's last byte.
    if isinstance(scan_limit, bool) or not isinstance(scan_limit, numbers.Integral) or scan_limit < 1:
        raise ValueError(f"scan_limit must be a whole number of bytes >= 1, got {scan_limit!r}")


def _means_spam(label: object) -> bool:
    return str(label).lower() in ("spam", "1", "true")
