"""The TREC Spam Track online protocol and its figures.

From an empty model, each message of a corpus is classified in order, then
its gold label is learned (``mode="all"``: train on everything) or learned
only when the verdict was wrong or unsure (``mode="error"``: train on error).
The figures are those TREC reports:

* (1-ROCA)%: the area above the ROC curve, in percent; ties between a ham
  and a spam score count half.
* lam%: the logistic average of the ham and spam misclassification rates of
  the binary judgement (score > 0.5 is spam; exactly 0.5, no evidence
  either way, is ham): logit^-1((logit(hm) + logit(sm)) / 2).

Every figure is computed from the spam probabilities exactly as ``--results``
writes them, so that anyone (and TREC's tools) gets the same figures from
that file.  They were computed from the log-odds until 2026-11-29, which
rank further where a probability has rounded to 1.0 (474 spam of the
corpus) and decide the side of 0.5 for a few saturated messages whose
probability is exactly 0.5; on the corpus's index order (1-ROCA)% 0.04846
-> 0.04845 and lam% 0.693 -> 0.701, figures nobody could recompute from
the file (a helper's review).
* at the default cutoffs: ham called spam, spam called ham, and unsure, each
  as a percentage of its class (unsure of all messages).
* hm% at sm% = 0.1: ham misclassification at the threshold where 0.1% of
  spam is missed.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .classifier import Classifier, Label
from .errors import ConfigError, CorpusIndexError, InputMissingError, MessageError
from .regularfile import irregular_kind, read_regular

__all__ = ["IndexEntry", "read_index", "features_for", "write_trec_results", "result_id", "OnlineResult",
           "run_online", "EvalFigures", "compute_figures", "roc_points", "LearningCurve", "learning_curve"]


@dataclasses.dataclass(frozen=True, slots=True)
class IndexEntry:
    gold: Label
    path: Path
    id: str


def read_index(index_path: Path) -> list[IndexEntry]:
    """Read a TREC index (``spam ../data/inmail.1`` per line)."""
    index_path = Path(index_path)
    try:
        # A device is refused unread: --index /dev/zero was read until the
        # memory ran out (MemoryError, "internal error (a bug)", exit 70).
        # A FIFO is read as it comes: --index <(grep ...) is one.
        if irregular_kind(index_path.stat().st_mode) == "a device":
            raise InputMissingError(f"cannot read index {index_path}: a device, not a file")
        # surrogateescape: a file name that is not UTF-8 (Latin-1 from an
        # old archive) must name the very file, not one with U+FFFD in it.
        # utf-8-sig: an index saved by a Windows editor starts with a byte
        # order mark, which made line 1 "expected 'spam PATH'".
        lines = index_path.read_text(encoding="utf-8-sig", errors="surrogateescape").splitlines()
    except OSError as exc:
        raise InputMissingError(f"cannot read index {index_path}: {exc.strerror}") from exc
    base = index_path.parent
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split(None, 1)
        if len(fields) != 2 or fields[0].lower() not in ("spam", "ham"):
            raise CorpusIndexError(
                f"{index_path}:{number}: expected 'spam PATH' or 'ham PATH', got {line[:60]!r}")
        rel = fields[1].strip()
        if "\0" in rel:
            # No file name holds a NUL: open() would raise ValueError mid-run
            # (an internal error, exit 70) on what is a broken index.
            raise CorpusIndexError(f"{index_path}:{number}: a NUL byte in the path {rel[:60]!r}")
        entries.append(IndexEntry(Label(fields[0].lower()), base / rel, rel))
    if not entries:
        raise CorpusIndexError(f"index {index_path} lists no messages")
    return entries


@dataclasses.dataclass
class OnlineResult:
    ids: list[str]
    gold: np.ndarray          # 1 = spam
    scores: np.ndarray        # spam probability: what the figures are computed from
    decisions: np.ndarray     # log-odds (finer where a probability rounds to 0 or 1)
    verdicts: list[Label]
    seconds: float
    trained: int
    unreadable: int = 0
    #: (id, why) of each message that could not be read or parsed.
    failures: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: How many of the ``unreadable`` could not be read at all (the rest
    #: were read but are not messages): exit 66 against 65, as ``score``.
    missing: int = 0


#: Buckets per message of the corpus for ``features_for``.
BUCKETS_PER_MESSAGE = 64


def features_for(n_messages: int, configured: int, largest: int) -> int:
    """The model size for an online run over ``n_messages``: ``configured``,
    or a larger power of two (at most ``largest``) if the corpus would crowd it.

    An online run starts from an empty model and learns every message, with
    nobody to act on ``info``'s warning that buckets are filling up.  The
    SpamAssassin corpus's vocabulary grew as about messages**0.65 (184,734
    distinct tokens after 6,046 messages, 0.56-0.74 between the marks at
    500...6,046), so the 75,000 messages of a TREC corpus would fill about a
    third of 2**21 buckets, where this corpus scores 17% worse ((1-ROCA)%
    0.060 against 0.051 at 30% in use: ``scripts/bench_fill.py``).  64
    buckets a message keep such a run near 10%; for this corpus it asks for
    2**19, so the default 2**21 stands.
    """
    wanted = 1 << max(BUCKETS_PER_MESSAGE * n_messages - 1, 1).bit_length()
    return max(configured, min(wanted, largest))


def run_online(entries: list[IndexEntry], classifier: Classifier, *, mode: str = "all",
               progress: Callable[[int], None] | None = None,
               features: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None) -> OnlineResult:
    """Classify then learn each message in order.

    Messages that cannot be read are scored 0.5 (unsure), and counted.
    ``features``, if given, holds each entry's ``Classifier.features`` (its
    bucket indices and text mask) computed beforehand with ``classifier``'s
    tokenizer and hasher (None: unreadable), so that several runs over one
    corpus tokenize it once (the notebook does).
    """
    if mode not in ("all", "error"):
        raise ConfigError(f"mode must be 'all' or 'error', got {mode!r}")
    n = len(entries)
    gold = np.zeros(n, dtype=np.int8)
    scores = np.zeros(n)
    decisions = np.zeros(n)
    verdicts: list[Label] = []
    trained = unreadable = missing = 0
    failures: list[tuple[str, str]] = []
    start = time.perf_counter()
    for i, entry in enumerate(entries):
        gold[i] = entry.gold is Label.SPAM
        if features is not None:
            found, why, read = features[i], "could not be read", False
        else:
            found, why, read = _read_features(entry, classifier)
        if found is None:
            unreadable += 1
            missing += not read
            failures.append((entry.id, why))
            scores[i], decisions[i] = 0.5, 0.0
            verdicts.append(Label.UNSURE)
            if progress is not None:
                progress(i + 1)  # a progress bar must reach the end past unreadable files too
            continue
        indices, text = found
        if classifier.model.n_learned_:
            verdict = classifier.score_indices(indices, text)
            scores[i], decisions[i] = verdict.spam_prob, verdict.decision
            verdicts.append(verdict.label)
        else:
            scores[i], decisions[i] = 0.5, 0.0
            verdicts.append(Label.UNSURE)
        if mode == "all" or verdicts[-1] is not entry.gold:
            classifier.learn_indices(indices, entry.gold)
            trained += 1
        if progress is not None:
            progress(i + 1)
    return OnlineResult([e.id for e in entries], gold, scores, decisions, verdicts,
                        time.perf_counter() - start, trained, unreadable, failures, missing)


def _read_features(entry: IndexEntry, classifier: Classifier
                   ) -> tuple[tuple[np.ndarray, np.ndarray] | None, str, bool]:
    """The message's ``Classifier.features`` (or None and why it cannot be
    read or parsed), and whether the file could be read."""
    try:
        raw = read_regular(entry.path)
    except OSError as exc:
        return None, exc.strerror or str(exc), False
    try:
        return classifier.features(raw), "", True
    except MessageError as exc:
        return None, str(exc), True


def roc_points(gold: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve: false-positive rate (ham called spam), true-positive rate, thresholds.

    One point per distinct score, highest first, starting at (0, 0).
    """
    order = np.argsort(-scores, kind="mergesort")
    d = scores[order]
    g = gold[order].astype(bool)
    distinct = np.r_[np.flatnonzero(np.diff(d)), len(d) - 1]
    tp = np.cumsum(g)[distinct]
    fp = np.cumsum(~g)[distinct]
    n_spam, n_ham = max(g.sum(), 1), max((~g).sum(), 1)
    return np.r_[0.0, fp / n_ham], np.r_[0.0, tp / n_spam], np.r_[np.inf, d[distinct]]


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _lam(hm: float, sm: float, n_ham: int, n_spam: int) -> float:
    # TREC's lam: rates of exactly 0 or 1 are nudged by half a message.
    hm = min(max(hm, 0.5 / max(n_ham, 1)), 1 - 0.5 / max(n_ham, 1))
    sm = min(max(sm, 0.5 / max(n_spam, 1)), 1 - 0.5 / max(n_spam, 1))
    mean = (_logit(hm) + _logit(sm)) / 2
    return 1 / (1 + math.exp(-mean))


@dataclasses.dataclass(frozen=True)
class EvalFigures:
    messages: int
    n_spam: int
    n_ham: int
    roca_pct: float
    lam_pct: float
    ham_misclassified_pct: float
    spam_misclassified_pct: float
    unsure_pct: float
    hm_at_sm_01_pct: float
    messages_per_second: float
    trained: int
    unreadable: int

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v)
                for k, v in dataclasses.asdict(self).items()}


def compute_figures(result: OnlineResult, *, by: str = "scores") -> EvalFigures:
    """The figures of an online run.

    ``by="scores"`` (the default, what ``eval`` reports): from the spam
    probabilities as ``--results`` writes them.  ``by="decisions"``: ranking
    and the side of 0.5 from the log-odds, for comparing models whose
    probabilities round to 0 or 1 in the thousands (scikit-learn's naive
    Bayes: ranked by its rounded probabilities, MultinomialNB(alpha=0.01)
    scored 0.417 instead of 0.256; a helper's review).
    """
    if by not in ("scores", "decisions"):
        raise ConfigError(f"by must be 'scores' or 'decisions', got {by!r}")
    ranked = result.scores if by == "scores" else result.decisions
    middle = 0.5 if by == "scores" else 0.0
    gold = result.gold.astype(bool)
    n_spam, n_ham = int(gold.sum()), int((~gold).sum())
    if n_spam == 0 or n_ham == 0:
        raise CorpusIndexError("the corpus needs both ham and spam for ROC figures")
    # Area above the ROC curve, ties counted half: the Mann-Whitney U.
    ranks = _average_ranks(ranked)
    auc = (ranks[gold].sum() - n_spam * (n_spam + 1) / 2) / (n_spam * n_ham)
    binary_spam = ranked > middle
    hm_binary = float((binary_spam & ~gold).sum()) / n_ham
    sm_binary = float((~binary_spam & gold).sum()) / n_spam
    verdicts = np.array([v.value for v in result.verdicts])
    ham_as_spam = float(((verdicts == "spam") & ~gold).sum()) / n_ham
    spam_as_ham = float(((verdicts == "ham") & gold).sum()) / n_spam
    unsure = float((verdicts == "unsure").sum()) / len(verdicts)
    # hm at sm = 0.1%: the highest threshold that misses at most 0.1% spam.
    fpr, tpr, _ = roc_points(result.gold, ranked)
    ok = tpr >= 0.999
    hm_at = float(fpr[ok].min()) if ok.any() else 1.0
    return EvalFigures(
        messages=len(gold), n_spam=n_spam, n_ham=n_ham,
        roca_pct=100 * (1 - auc),
        lam_pct=100 * _lam(hm_binary, sm_binary, n_ham, n_spam),
        ham_misclassified_pct=100 * ham_as_spam,
        spam_misclassified_pct=100 * spam_as_ham,
        unsure_pct=100 * unsure,
        hm_at_sm_01_pct=100 * hm_at,
        messages_per_second=len(gold) / result.seconds if result.seconds > 0 else float("inf"),
        trained=result.trained, unreadable=result.unreadable,
    )


@dataclasses.dataclass(frozen=True)
class LearningCurve:
    """Error rates along the message stream, over a trailing window.

    ``position[i]`` is the number of messages seen; the rates at it are
    over the ``window`` messages ending there (fewer at the start).
    """

    position: np.ndarray
    misclassified: np.ndarray
    unsure: np.ndarray
    window: int


def learning_curve(result: OnlineResult, *, window: int = 500) -> LearningCurve:
    """Misclassification (TREC's binary judgement, score > 0.5 is spam) and
    unsure rates of an online run, over a moving window of messages."""
    if window < 1:
        raise ConfigError(f"window must be at least 1 message, got {window}")
    n = len(result.gold)
    window = min(window, n) if n else window
    wrong = ((result.scores > 0.5) != result.gold.astype(bool)).astype(np.int64)
    unsure = np.array([v is Label.UNSURE for v in result.verdicts], dtype=np.int64)
    position = np.arange(1, n + 1)
    seen = np.minimum(position, window)

    def trailing_mean(flags: np.ndarray) -> np.ndarray:
        total = np.cumsum(flags)
        before = np.r_[np.zeros(window, dtype=np.int64), total][:n]
        return (total - before) / seen

    return LearningCurve(position, trailing_mean(wrong), trailing_mean(unsure), window)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values))
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def write_results(result: OnlineResult, path: Path) -> None:
    """TREC-style result file: ``id gold score verdict`` per message, in order.

    Scores are written in full (the shortest text that reads back as the
    same float), so the ROC computed from the file is the one reported:
    with six decimals, 3,600 scores of the corpus run became 0.000000 and
    1,082 became 1.000000, and TREC's tools would have counted those ties
    (measured 2026-11-28: (1-ROCA)% 0.0782 reported, 0.0999 from a
    six-decimal file, 0.0782 from this one).  An id with white space in it
    is escaped (``result_id``).
    """
    with Path(path).open("w", encoding="utf-8") as fh:
        for mid, g, score, verdict in zip(result.ids, result.gold, result.scores, result.verdicts):
            fh.write(f"{result_id(mid)} {'spam' if g else 'ham'} {float(score)!r} {verdict.value}\n")


#: What would split or end a result line's id field: white space, and the
#: escape character itself; and the bytes of a file name that are not
#: UTF-8 (``read_index`` keeps them as lone surrogates), which a UTF-8
#: result file cannot hold.
_ID_UNSAFE_RE = re.compile(r"[%\s\udc80-\udcff]")


def result_id(mid: str) -> str:
    """``mid`` as one whitespace-free field: white space and ``%`` written
    as their UTF-8 bytes in %XX (URL) escapes, so that ``a b.eml`` reads
    back as one id (``urllib.parse.unquote``) and not two fields; the ids
    of a TREC corpus (``../data/inmail.1``) are written as they are."""
    return _ID_UNSAFE_RE.sub(
        lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "surrogateescape")), mid)


def write_trec_results(result: OnlineResult, path: Path) -> None:
    """The same run as the TREC spam filter jig's raw result file, for TREC's
    own evaluation tools: ``file=ID judge=GOLD class=CLASS score=SCORE``.

    The jig's class is binary: spam when the score is above 0.5, as for
    lam% here; unsure has no place in it (the three-way verdict is in
    ``write_results``).  Ids are escaped as there (``result_id``).  The score
    is the probability, as there, so that
    the tools compute the (1-ROCA)% and lam% ``eval`` reports (their ham
    and spam misclassification come from the binary class, ``eval``'s from
    the three-way verdict).
    """
    with Path(path).open("w", encoding="utf-8") as fh:
        for mid, g, score in zip(result.ids, result.gold, result.scores):
            fh.write(f"file={result_id(mid)} judge={'spam' if g else 'ham'} "
                     f"class={'spam' if score > 0.5 else 'ham'} "
                     f"score={float(score)!r}\n")
