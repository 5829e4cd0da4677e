"""ChiSquareNB: properties a naive Bayes estimator must have."""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from spamlearn import ChiSquareNB, Classifier, Label, MessageVectorizer, NotFittedError
from spamlearn.counts import BayesCounts
from spamlearn.errors import ModelError

X_TOY = np.array([
    [1, 1, 0, 0, 0, 1],
    [1, 0, 1, 0, 0, 0],
    [1, 1, 1, 0, 0, 0],
    [0, 0, 0, 1, 1, 0],
    [0, 0, 0, 1, 0, 1],
    [0, 0, 1, 1, 1, 0],
])
Y_TOY = np.array(["spam", "spam", "spam", "ham", "ham", "ham"])


@pytest.fixture
def rng():
    return np.random.default_rng(2002)


def test_fit_predicts_training_classes():
    model = ChiSquareNB().fit(X_TOY, Y_TOY)
    assert list(model.classes_) == ["ham", "spam"]
    assert list(model.predict(X_TOY)) == list(Y_TOY)


def test_probabilities_sum_to_one_and_match_log(rng):
    X = (rng.random((40, 30)) < 0.3).astype(int)
    y = np.where(rng.random(40) < 0.5, "spam", "ham")
    y[:2] = ["spam", "ham"]
    model = ChiSquareNB().fit(X, y)
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert ((proba >= 0) & (proba <= 1)).all()
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(model.predict_log_proba(X), np.log(proba))


def test_partial_fit_in_chunks_equals_fit(rng):
    X = (rng.random((60, 25)) < 0.25).astype(int)
    y = np.where(rng.random(60) < 0.4, "spam", "ham")
    y[:2] = ["spam", "ham"]
    whole = ChiSquareNB().fit(X, y)
    chunked = ChiSquareNB()
    for start in range(0, 60, 7):
        chunked.partial_fit(X[start:start + 7], y[start:start + 7], classes=["ham", "spam"])
    np.testing.assert_array_equal(whole.spam_count_, chunked.spam_count_)
    np.testing.assert_array_equal(whole.ham_count_, chunked.ham_count_)
    np.testing.assert_allclose(whole.decision_function(X), chunked.decision_function(X))


def test_partial_fit_refuses_other_classes_on_a_later_call():
    """They were silently ignored; scikit-learn's naive Bayes raises."""
    model = ChiSquareNB().partial_fit(X_TOY, Y_TOY, classes=["ham", "spam"])
    model.partial_fit(X_TOY, Y_TOY, classes=["spam", "ham"])     # the same two, in any order
    with pytest.raises(ValueError, match="not the same as on the first call"):
        model.partial_fit(X_TOY[3:], Y_TOY[3:], classes=["ham", "junk"])       # ham rows only
    assert model.n_learned_ == 2 * len(Y_TOY)


def test_counts_are_presence_not_frequency():
    model = ChiSquareNB().fit(X_TOY * 7, Y_TOY)
    reference = ChiSquareNB().fit(X_TOY, Y_TOY)
    np.testing.assert_array_equal(model.spam_count_, reference.spam_count_)


def test_sparse_and_dense_agree():
    dense = ChiSquareNB().fit(X_TOY, Y_TOY)
    sparse = ChiSquareNB().fit(sp.csr_matrix(X_TOY), Y_TOY)
    np.testing.assert_allclose(dense.decision_function(X_TOY), sparse.decision_function(sp.csr_matrix(X_TOY)))


def test_learn_then_unlearn_restores_exactly():
    model = ChiSquareNB().fit(X_TOY, Y_TOY)
    before = (model.spam_count_.copy(), model.ham_count_.copy(), model.n_spam_, model.n_ham_)
    indices = np.array([0, 3, 5])
    model.learn_indices(indices, True)
    assert model.n_spam_ == before[2] + 1
    model.unlearn_indices(indices, True)
    np.testing.assert_array_equal(model.spam_count_, before[0])
    np.testing.assert_array_equal(model.ham_count_, before[1])
    assert (model.n_spam_, model.n_ham_) == before[2:]


def test_unlearn_refuses_to_go_negative():
    model = ChiSquareNB().init_empty(8)
    with pytest.raises(ModelError, match="not learned"):
        model.unlearn_indices(np.array([1, 2]), True)


def test_pickle_round_trip_predicts_the_same():
    model = ChiSquareNB().fit(X_TOY, Y_TOY)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(model.decision_function(X_TOY), again.decision_function(X_TOY))


def test_get_set_params_and_clone():
    model = ChiSquareNB(max_discriminators=20)
    assert model.get_params()["max_discriminators"] == 20
    model.set_params(unknown_word_strength=1.0)
    assert clone(model).unknown_word_strength == 1.0


def test_set_params_on_a_fitted_model_scores_as_the_saved_file_does(tmp_path, rng):
    """A helper's review: set_params reached the estimator's attributes (and
    so the saved file) but not its counts, so the model reloaded scored
    differently from the one in memory."""
    from spamlearn.store import load_classifier, save_classifier

    X = (rng.random((60, 64)) < 0.3).astype(int)      # Classifier hashes into a power of two
    y = np.where(rng.random(60) < 0.5, "spam", "ham")
    y[:2] = ["spam", "ham"]
    params = {"max_discriminators": 3, "min_prob_strength": 0.1, "unknown_word_prob": 0.4}
    model = ChiSquareNB().fit(X[:50], y[:50])
    model.set_params(max_discriminators=3, min_prob_strength=0.1)
    model.partial_fit(X[50:], y[50:])
    model.counts_.freeze_scoring()        # a table made with the old x must go too
    model.set_params(unknown_word_prob=0.4)
    expected = ChiSquareNB(**params).fit(X, y).decision_function(X)
    np.testing.assert_array_equal(model.decision_function(X), expected)
    save_classifier(Classifier(model), tmp_path / "model.joblib")
    again = load_classifier(tmp_path / "model.joblib").model
    rows = [np.flatnonzero(row) for row in X]
    assert [again.score_indices(r).decision for r in rows] == list(expected)


def test_set_params_on_a_fitted_model_refuses_bad_values_and_changes_nothing():
    model = ChiSquareNB().fit(X_TOY, Y_TOY)
    before = model.decision_function(X_TOY)
    with pytest.raises(ValueError, match="min_prob_strength"):
        model.set_params(max_discriminators=3, min_prob_strength=0.7)
    assert model.get_params()["max_discriminators"] == 200 and model.counts_.max_discriminators == 200
    np.testing.assert_array_equal(model.decision_function(X_TOY), before)


@pytest.mark.parametrize("params, message", [
    ({"unknown_word_strength": 0}, "unknown_word_strength"),
    ({"unknown_word_prob": 1.5}, "unknown_word_prob"),
    ({"min_prob_strength": 0.7}, "min_prob_strength"),
    ({"max_discriminators": 0}, "max_discriminators"),
])
def test_invalid_parameters_rejected_at_fit(params, message):
    with pytest.raises(ValueError, match=message):
        ChiSquareNB(**params).fit(X_TOY, Y_TOY)


@pytest.mark.parametrize("X, y, params", [
    (X_TOY, Y_TOY[:5], {}),                          # 6 rows, 5 labels
    (X_TOY, Y_TOY, {"unknown_word_prob": 1.5}),      # a parameter out of range
])
def test_a_failed_fit_keeps_the_fitted_model(X, y, params):
    """A helper's review: a fit with 4 rows and 3 labels raised, and left the
    model empty (n_learned_ 0, every message ham, no NotFittedError)."""
    model = ChiSquareNB().fit(X_TOY, Y_TOY)
    before = model.decision_function(X_TOY)
    for name, value in params.items():
        setattr(model, name, value)
    with pytest.raises(ValueError):
        model.fit(X, y)
    assert model.n_learned_ == len(Y_TOY)
    np.testing.assert_array_equal(model.decision_function(X_TOY), before)


def test_a_failed_first_partial_fit_leaves_the_model_unfitted():
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError

    model = ChiSquareNB()
    with pytest.raises(ValueError, match="rows"):
        model.partial_fit(X_TOY, Y_TOY[:5], classes=["ham", "spam"])
    with pytest.raises(SklearnNotFittedError):
        model.predict(X_TOY)
    model.partial_fit(X_TOY, Y_TOY, classes=["ham", "spam"])   # still the first call
    assert model.n_learned_ == len(Y_TOY)


def test_rejects_negative_and_one_class_input():
    with pytest.raises(ValueError, match="Negative"):
        ChiSquareNB().fit(-X_TOY, Y_TOY)
    with pytest.raises(ValueError, match="needs both classes"):
        ChiSquareNB().fit(X_TOY, ["spam"] * 6)


def test_works_in_pipeline_and_grid_search(spam_messages, ham_messages):
    messages = spam_messages + ham_messages
    labels = ["spam"] * len(spam_messages) + ["ham"] * len(ham_messages)
    pipeline = Pipeline([("tokens", MessageVectorizer(n_features=2**12)), ("nb", ChiSquareNB())])
    pipeline.fit(messages, labels)
    assert list(pipeline.predict(messages)) == labels
    search = GridSearchCV(pipeline, {"nb__max_discriminators": [5, 150]}, cv=2)
    search.fit(messages, labels)
    assert search.best_params_["nb__max_discriminators"] in (5, 150)


def test_unknown_words_are_unsure():
    model = ChiSquareNB().fit(X_TOY, Y_TOY)
    never_seen = np.zeros((1, 6))
    assert model.predict_proba(never_seen)[0, 1] == pytest.approx(0.5)


def test_useful_after_a_few_messages(spam_messages, ham_messages):
    """Two messages of each class already separate clear cases; the rest is unsure."""
    clf = Classifier(n_features=2**16)
    for raw in spam_messages[:2]:
        clf.learn(raw, "spam")
    for raw in ham_messages[:2]:
        clf.learn(raw, "ham")
    assert clf.score(spam_messages[0]).label is Label.SPAM
    assert clf.score(ham_messages[0]).label is Label.HAM
    assert clf.score(b"Subject: hello\n\nsomething entirely different").label is Label.UNSURE


def test_one_class_learned_is_unsure_not_confident(sample_spam, sample_ham):
    """With only ham known, every known token looks like ham: no clues yet."""
    clf = Classifier(n_features=2**16)
    clf.learn(sample_ham, "ham")
    verdict = clf.score(sample_spam, explain=True)
    assert verdict.label is Label.UNSURE and verdict.spam_prob == pytest.approx(0.5)
    assert verdict.clues == ()
    clf.learn(sample_spam, "spam")
    assert clf.score(sample_spam).label is Label.SPAM


@pytest.mark.parametrize("arguments, message", [
    ({"scan_limit": None}, "scan_limit"),
    ({"scan_limit": -1}, "scan_limit"),
    ({"scan_limit": 0}, "scan_limit"),
    ({"scan_limit": 1000.5}, "scan_limit"),
    ({"ham_cutoff": 0.95, "spam_cutoff": 0.1}, "ham_cutoff <= spam_cutoff"),
    ({"spam_cutoff": float("nan")}, "spam_cutoff must be a finite number"),
    ({"ham_cutoff": None}, "ham_cutoff must be a finite number"),
    ({"spam_cutoff": 1.5}, "<= 1"),
    ({"ham_cutoff": -0.1}, "0 <= ham_cutoff"),
])
def test_classifier_refuses_arguments_it_cannot_score_with(arguments, message):
    """A helper's review: scan_limit=None made every score a MessageError,
    -1 dropped each message's last byte, a nan spam_cutoff scored p = 1.0
    "unsure", and crossed cutoffs were taken."""
    with pytest.raises(ValueError, match=message):
        Classifier(n_features=2**10, **arguments)


def test_classifier_takes_cutoffs_at_the_ends_and_a_numpy_scan_limit():
    clf = Classifier(n_features=2**10, ham_cutoff=0, spam_cutoff=1, scan_limit=np.int64(4096))
    assert (clf.ham_cutoff, clf.spam_cutoff, clf.scan_limit) == (0, 1, 4096)
    Classifier(n_features=2**10, ham_cutoff=0.5, spam_cutoff=0.5)


def test_classifier_learn_unlearn_is_exact_inverse(sample_spam, sample_ham):
    clf = Classifier(n_features=2**16)
    clf.learn(sample_ham, "ham")
    spam_before = clf.model.spam_count_.copy()
    clf.learn(sample_spam, "spam")
    clf.unlearn(sample_spam, "spam")
    np.testing.assert_array_equal(clf.model.spam_count_, spam_before)
    assert clf.n_spam == 0 and clf.n_ham == 1


def test_explain_returns_clues_with_counts(sample_spam, sample_ham):
    clf = Classifier(n_features=2**16)
    clf.learn(sample_spam, "spam")
    clf.learn(sample_ham, "ham")
    clues = clf.explain(sample_spam)
    assert clues, "a learned message must have clues"
    assert all(c.spam_count >= 1 for c in clues if c.spam_prob > 0.5)
    strengths = [abs(c.spam_prob - 0.5) for c in clues]
    assert strengths == sorted(strengths, reverse=True)
    assert any(c.token.startswith("subject:") for c in clues)


def test_score_many_gives_each_message_the_verdict_score_gives(spam_messages, ham_messages, sample_spam):
    """score_many works stage by stage over batches of messages: each
    message still gets score's verdict, bit for bit, in its place, and one
    that score refuses its MessageError there, the others going on."""
    from spamlearn.classifier import _STAGE_BATCH
    from spamlearn.errors import MessageError

    clf = Classifier(n_features=2**16)
    for spam, ham in zip(spam_messages, ham_messages):
        clf.learn(spam, "spam")
        clf.learn(ham, "ham")
    raws = [*spam_messages, b"", *ham_messages, sample_spam, b" \n\t", "Subject: a str\n\nis UTF-8"]
    raws = raws * (2 * _STAGE_BATCH // len(raws) + 1)       # across more than two batches
    for frozen in (False, True):
        if frozen:
            clf.model.freeze_scoring()
        many = clf.score_many(raws)
        assert len(many) == len(raws)
        for raw, verdict in zip(raws, many):
            if isinstance(verdict, MessageError):
                with pytest.raises(MessageError, match=re.escape(str(verdict))):
                    clf.score(raw)
            else:
                assert verdict == clf.score(raw)
        assert sum(isinstance(v, MessageError) for v in many) == 2 * raws.count(b"")
    assert clf.score_many([]) == []
    with pytest.raises(NotFittedError):
        Classifier(n_features=2**10).score_many([sample_spam])


def test_scoring_an_empty_model_raises(sample_spam):
    with pytest.raises(NotFittedError):
        Classifier(n_features=2**10).score(sample_spam)


def test_hashing_is_stable_across_processes():
    import subprocess
    import sys

    code = "from spamlearn.features import TokenHasher; print(TokenHasher(2**21).index('subject:viagra'))"
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout
               for seed in ("1", "2")}
    assert len(outputs) == 1 and outputs.pop().strip().isdigit()


@pytest.mark.parametrize("k", [1, 2, 7, 50, 60, 150, 2000])
@pytest.mark.parametrize("x", [1e-6, 0.01, 0.5, 3.0, 40.0, 59.5, 60.0, 149.0, 400.0, 5000.0])
def test_chi2_tails_match_scipy(k, x):
    from scipy.special import gammainc, gammaincc

    from spamlearn.counts import chi2_log_tails

    log_q, log_p = chi2_log_tails(k, x)
    for mine, reference in ((log_q, gammaincc(k, x)), (log_p, gammainc(k, x))):
        if reference > 1e-300:
            assert mine == pytest.approx(np.log(reference), rel=1e-9, abs=1e-9)
        else:
            assert mine < -690, "tails that underflow in scipy stay finite and tiny here"


@pytest.mark.parametrize("decision", [1e-17, 3e-200, -1e-17, -3e-200, 0.0, 1e-3, -1e-3])
def test_a_probability_keeps_the_side_of_its_log_odds(decision):
    """Clues that all but cancel give a log-odds within a rounding error of
    0; its probability must not round to 0.5 ("not spam") when it says spam."""
    from spamlearn.counts import Scored

    prob = Scored(decision, np.zeros(0, dtype=np.int64), np.zeros(0)).spam_prob
    assert (prob > 0.5) == (decision > 0) and (prob < 0.5) == (decision < 0)
    assert prob == pytest.approx(1 / (1 + math.exp(-decision)), abs=1e-15)


def _cancelling_clues_model() -> ChiSquareNB:
    """Seven spam-only and seven ham-only features whose chi-squared votes
    all but cancel: the log-odds of all fourteen present is 8.5e-17 (found
    by a search over the two counts), which 1 / (1 + exp(-d)) rounds to 0.5."""
    model = ChiSquareNB().init_empty(14)
    counts = model.counts_
    counts.n_spam_ = counts.n_ham_ = 1000
    counts.spam_count_[:7] = 270
    counts.ham_count_[7:] = 330
    counts.counts_changed()
    return model


def test_predict_proba_keeps_the_side_of_predict():
    """A helper's review: predict said spam and predict_proba [0.5, 0.5] (ham by argmax)."""
    model = _cancelling_clues_model()
    X = np.ones((1, 14))
    decision = model.decision_function(X)[0]
    assert 0 < decision < 1e-16 and 1 / (1 + math.exp(-decision)) == 0.5, "the test's premise"
    predicted = model.predict(X)
    assert list(predicted) == ["spam"]
    assert list(model.classes_[model.predict_proba(X).argmax(axis=1)]) == list(predicted)
    assert list(model.classes_[model.predict_log_proba(X).argmax(axis=1)]) == list(predicted)


def test_scoring_needs_neither_scikit_learn_nor_scipy():
    import subprocess
    import sys

    code = ("import sys, spamlearn.cli; from spamlearn import Classifier; "
            "c = Classifier(n_features=2**10); c.learn(b'Subject: a\\n\\nbuy pills', 'spam'); "
            "c.learn(b'Subject: b\\n\\nsee you', 'ham'); c.score(b'Subject: c\\n\\npills'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _expected_failures(estimator):
    # Presence counts cannot take the negative features this check's
    # blobs have; every other scikit-learn estimator check passes.
    return {"check_decision_proba_consistency": "X is token presence; negative values are refused"}


@parametrize_with_checks([ChiSquareNB()], expected_failed_checks=_expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_frozen_scoring_gives_the_same_scores_until_the_model_learns(rng):
    from spamlearn.counts import BayesCounts

    model = BayesCounts().init_empty(2**12)
    messages = [np.unique(rng.integers(0, 2**12, size=40)) for _ in range(60)]
    for i, indices in enumerate(messages[:40]):
        model.learn_indices(indices, is_spam=i % 3 == 0)
    before = [(s.decision, s.clue_indices.tolist()) for s in map(model.score_indices, messages)]
    model.freeze_scoring()
    assert [(s.decision, s.clue_indices.tolist()) for s in map(model.score_indices, messages)] == before
    model.learn_indices(messages[50], is_spam=True)   # drops the table
    fresh = BayesCounts().init_empty(2**12)
    for i, indices in enumerate(messages[:40]):
        fresh.learn_indices(indices, is_spam=i % 3 == 0)
    fresh.learn_indices(messages[50], is_spam=True)
    assert [s.decision for s in map(model.score_indices, messages)] == \
        [s.decision for s in map(fresh.score_indices, messages)]


@pytest.mark.parametrize("params", [
    {},
    {"min_prob_strength": 0.0, "max_discriminators": 7},     # every bucket a clue
    {"unknown_word_prob": 0.95},                             # the seen-never ones clues, not bucket 0
    {"support_sightings": 0, "family_balance": 0.0},
    {"support_sightings": 300, "max_discriminators": 3},     # sightings past a byte
])
def test_frozen_clue_and_sightings_tables_give_the_scores_of_the_counts(rng, params):
    """freeze_scoring also keeps which buckets are clues and their sightings
    capped: the same decisions and clues, bit for bit, as from the counts,
    and a parameter changed afterwards, even by hand, is not scored with
    tables made for the old value."""
    from spamlearn.counts import BayesCounts

    model = BayesCounts(**params).init_empty(2**12)
    messages = [np.unique(rng.integers(0, 2**12, size=60)) for _ in range(80)]
    messages[0] = np.union1d(messages[0], [0])
    for i, indices in enumerate(messages[:60]):
        for _ in range(1 + i % 4):
            model.learn_indices(indices, is_spam=i % 3 == 0)
    texts = [rng.random(len(indices)) < 0.5 for indices in messages]

    def scores():
        return [(s.decision, s.clue_indices.tolist()) for s in map(model.score_indices, messages, texts)]

    before = scores()
    model.freeze_scoring()
    assert scores() == before
    model.min_prob_strength = 0.3           # by hand, not set_params: the tables stay
    model.support_sightings = 2
    by_hand = scores()
    model._frozen = None
    assert by_hand == scores()


@pytest.mark.parametrize("tokens", [["a", "b", "a"], ["x\0y", "x", "y"], ["caf\udce9", "\ud83d", "é"], []])
def test_hasher_indices_are_the_sorted_unique_buckets_of_index(tokens):
    # indices() hashes the joined tokens split apart again (and token by
    # token when one holds the separator); index() hashes one token.
    from spamlearn.features import TokenHasher, token_hash

    hasher = TokenHasher(2**16)
    assert hasher.indices(tokens).tolist() == sorted({hasher.index(t) for t in tokens})
    # What the ledger keeps, and the buckets it gives back at any size.
    assert hasher.hashes(tokens).tolist() == sorted({token_hash(t) for t in tokens})
    assert hasher.fold(hasher.hashes(tokens)).tolist() == hasher.indices(tokens).tolist()
    assert (TokenHasher(2**20).fold(hasher.hashes(tokens)).tolist()
            == TokenHasher(2**20).indices(tokens).tolist())


def _learned(spam: list[bytes], ham: list[bytes], **params) -> Classifier:
    """A classifier over a ``BayesCounts(**params)`` that learned ``spam`` and ``ham``."""
    from spamlearn.counts import BayesCounts

    clf = Classifier(BayesCounts(**params).init_empty(2**16))
    for raw in spam:
        clf.learn(raw, "spam")
    for raw in ham:
        clf.learn(raw, "ham")
    return clf


def test_confidence_warmup_shrinks_thin_data_scores(spam_messages, ham_messages):
    """With fewer than ``confidence_warmup`` messages of a class, the log-odds
    is scaled by the share learned; past it, scores are left alone."""
    from spamlearn.counts import BayesCounts

    def trained(warmup: int) -> Classifier:
        return _learned(spam_messages[:2], ham_messages[:3], confidence_warmup=warmup, support_sightings=0)

    raw = spam_messages[0]
    full = trained(0).score(raw).decision
    assert full > 5
    assert trained(10).score(raw).decision == pytest.approx(full * 2 / 10)
    assert trained(2).score(raw).decision == pytest.approx(full)
    with pytest.raises(ValueError, match="confidence_warmup"):
        BayesCounts(confidence_warmup=-1).init_empty(16)


def test_clues_seen_rarely_shrink_the_score_toward_unsure(spam_messages, ham_messages):
    """The log-odds is scaled by sqrt(mean(min(n(w), N)) / N) over the clues,
    n(w) the messages a clue was seen in; past the warm-up, the smaller of
    the two factors applies, and well-seen clues keep their full strength."""
    from spamlearn.counts import BayesCounts

    def trained(support: int, warmup: int = 0) -> Classifier:
        return _learned(spam_messages[:3], ham_messages[:3], confidence_warmup=warmup,
                        support_sightings=support)

    raw = spam_messages[0]
    plain = trained(0).score(raw, explain=True)
    assert plain.decision > 5
    seen = [c.spam_count + c.ham_count for c in plain.clues]
    assert max(seen) <= 6
    for full in (2, 4, 50):
        expected = min(1.0, math.sqrt(sum(min(n, full) for n in seen) / len(seen) / full))
        assert trained(full).score(raw).decision == pytest.approx(plain.decision * expected)
    assert trained(50).score(raw).decision < plain.decision / 2
    # Both the warm-up (3 of 10 messages) and the support apply: the smaller wins.
    both = trained(50, warmup=10).score(raw).decision
    assert both == pytest.approx(plain.decision
                                 * min(0.3, math.sqrt(sum(min(n, 50) for n in seen) / len(seen) / 50)))
    with pytest.raises(ValueError, match="support_sightings"):
        BayesCounts(support_sightings=-1).init_empty(16)


def test_the_text_and_the_rest_weigh_as_two_families(spam_messages, ham_messages):
    """Each family's clues weigh n_family ** -family_balance, scaled to add up
    to the number of clues: a long text's many words no longer outvote the
    headers one by one, nor the headers a short text."""
    from spamlearn.counts import BayesCounts, _family_weights

    weights = _family_weights(np.array([True] * 30 + [False] * 6), 36, 0.5)
    assert weights.sum() == pytest.approx(36)
    assert weights[0] * math.sqrt(30) == pytest.approx(weights[-1] * math.sqrt(6))
    assert _family_weights(np.array([True] * 5), 5, 0.5) is None       # one family: plain sums
    assert np.allclose(_family_weights(np.array([True, False, False]), 3, 0.0), 1.0)

    weighted = _learned(spam_messages, ham_messages, confidence_warmup=0, support_sightings=0)
    plain = _learned(spam_messages, ham_messages, confidence_warmup=0, support_sightings=0,
                     family_balance=0)
    # A spammer's headers over a text of every ham's words: 7 spammy header
    # clues against 30 hammy words, which outvote them one by one.
    body = b" ".join(raw.split(b"\n\n", 1)[1].strip() for raw in ham_messages)
    raw = b"From: deals@pharma.example\nTo: alice@example.org\nSubject: Cheap pills online\n\n" + body
    indices, text = weighted.features(raw)
    assert text.any() and not text.all()
    # The classifier passes the mask; without it (a presence matrix) every clue weighs alike.
    assert weighted.score(raw).decision == weighted.score_indices(indices, text).decision
    assert weighted.score_indices(indices).decision == plain.score(raw).decision
    assert plain.score(raw).decision < -5 < weighted.score(raw).decision < 0
    with pytest.raises(ValueError, match="family_balance"):
        BayesCounts(family_balance=2).init_empty(16)


def test_api_misuse_is_refused_with_a_clear_error(spam_messages, ham_messages):
    from spamlearn.counts import BayesCounts

    for n in (2**40, -1, 1000):
        with pytest.raises(ValueError, match="power of two"):
            Classifier(n_features=n)
    # Fitted on other labels, ChiSquareNB's positive class is not spam.
    vectorizer = MessageVectorizer(n_features=2**10)
    X = vectorizer.transform(spam_messages + ham_messages)
    odd = ChiSquareNB().fit(X, ["junk"] * len(spam_messages) + ["ok"] * len(ham_messages))
    with pytest.raises(ValueError, match="positive"):
        Classifier(odd)
    fitted = ChiSquareNB().fit(X, ["spam"] * len(spam_messages) + ["ham"] * len(ham_messages))
    assert fitted.counts_.buckets_used_ratio() > 0
    before = fitted.counts_.buckets_used_ratio()
    fitted.partial_fit(vectorizer.transform([b"Subject: new words\n\nzebra quokka axolotl"]), ["ham"])
    assert fitted.counts_.buckets_used_ratio() > before          # no stale cache
    assert isinstance(BayesCounts().init_empty(2**10), BayesCounts)


def test_an_unfitted_estimator_is_refused_by_the_classifier_with_not_fitted():
    with pytest.raises(NotFittedError, match="not fitted"):
        Classifier(ChiSquareNB())


def test_a_table_frozen_while_another_thread_learns_is_never_taken_for_current():
    """freeze_scoring reads the counts while a learner (another thread of an
    embedding filter) changes them: the table it leaves must either match
    the counts or be ignored.  The learner's turn is forced into the middle
    of the table's computation, where a thread switch put it (a helper's
    review: 16 of 600 races left a table older than the counts in use)."""
    rng = np.random.default_rng(5)
    model = BayesCounts().init_empty(2**12)
    for _ in range(50):
        model.learn_indices(np.unique(rng.integers(0, 2**12, 40)), bool(rng.integers(2)))
    learned = np.unique(rng.integers(0, 2**12, 60))
    probs = model._probs
    turns = []

    def probs_with_a_learner_between(spam, ham):
        out = probs(spam, ham)
        if not turns:                       # the other thread's turn, once
            turns.append(model.learn_indices(learned, True))
        return out

    model._probs = probs_with_a_learner_between
    model.freeze_scoring()
    del model._probs
    assert turns, "the learner ran during freeze_scoring"
    fresh = model._probs(model.spam_count_[learned], model.ham_count_[learned])
    assert np.array_equal(model.feature_probs(learned), fresh)
