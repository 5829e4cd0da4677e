"""The model comparison: shared features, the chunked online protocol, the table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.naive_bayes import MultinomialNB

from spamlearn.classifier import Classifier, Label
from spamlearn.comparison import (
    DEFAULT_MODELS,
    compare_models,
    comparison_table,
    drop_empty_columns,
    load_corpus_features,
    plain_text,
    plain_word_counts,
    run_chunked,
)
from spamlearn.counts import BayesCounts
from spamlearn.errors import ConfigError
from spamlearn.evaluate import read_index, run_online
from spamlearn.message import parse_message
from spamlearn.model import ChiSquareNB

N_FEATURES = 2**16


@pytest.fixture
def corpus_index(tmp_path, spam_messages, ham_messages, sample_spam, sample_ham):
    """A TREC index over the hand-written messages, interleaved, plus one missing file."""
    data = tmp_path / "data"
    data.mkdir()
    spam = spam_messages + [sample_spam]
    ham = ham_messages + [sample_ham]
    lines = []
    for i in range(len(spam)):
        for label, raw in (("spam", spam[i]), ("ham", ham[i])):
            name = f"{label}{i}.eml"
            (data / name).write_bytes(raw)
            lines.append(f"{label} ../data/{name}")
    lines.insert(3, "ham ../data/gone.eml")
    index = tmp_path / "full" / "index"
    index.parent.mkdir()
    index.write_text("\n".join(lines) + "\n")
    return index


def test_corpus_features_are_the_classifiers_own_features(corpus_index):
    entries = read_index(corpus_index)
    corpus = load_corpus_features(entries, n_features=N_FEATURES)
    classifier = Classifier(n_features=N_FEATURES)
    rows = corpus.rows()
    assert corpus.readable.tolist() == [e.path.exists() for e in entries]
    assert rows[3] is None and corpus.texts[3] == ""
    for entry, row in zip(entries, rows):
        if row is not None:
            indices, text = classifier.features(entry.path.read_bytes())
            np.testing.assert_array_equal(row[0], indices)
            np.testing.assert_array_equal(row[1], text)
            assert row[1].any() and not row[1].all()        # words of the text, and the rest
    assert corpus.gold.tolist() == [int(e.gold is Label.SPAM) for e in entries]
    assert "subject:cheap" in corpus.vocabulary
    assert corpus.texts[0].startswith("Cheap pills online\n")


@pytest.mark.timeout(60)
def test_corpus_features_never_read_what_is_not_a_regular_file(corpus_index):
    """A FIFO in the index blocked for ever, as run_online never does."""
    import os

    os.mkfifo(corpus_index.parent.parent / "data" / "fifo")
    corpus_index.write_text(corpus_index.read_text() + "ham ../data/fifo\n")
    corpus = load_corpus_features(read_index(corpus_index), n_features=N_FEATURES)
    assert not corpus.readable[-1] and corpus.readable[0]


def test_run_online_on_cached_features_equals_reading_the_files(corpus_index):
    entries = read_index(corpus_index)
    corpus = load_corpus_features(entries, n_features=N_FEATURES)
    read = run_online(entries, Classifier(n_features=N_FEATURES))
    cached = run_online(entries, Classifier(n_features=N_FEATURES), features=corpus.rows())
    np.testing.assert_array_equal(cached.decisions, read.decisions)
    assert cached.verdicts == read.verdicts
    assert (cached.unreadable, cached.trained) == (read.unreadable, read.trained) == (1, 10)


def test_chunks_of_one_message_are_the_trec_online_run(corpus_index):
    """run_chunked with chunk_size=1 is immediate feedback: exactly run_online
    (without the family weighting, which a presence matrix cannot carry)."""
    entries = read_index(corpus_index)
    corpus = load_corpus_features(entries, n_features=N_FEATURES)
    unweighted = Classifier(BayesCounts(family_balance=0).init_empty(N_FEATURES))
    online = run_online(entries, unweighted, features=corpus.rows())
    chunked = run_chunked(ChiSquareNB(), corpus.tokens, corpus.gold, readable=corpus.readable, chunk_size=1)
    np.testing.assert_allclose(chunked.decisions, online.decisions)
    assert chunked.verdicts == online.verdicts
    assert chunked.unreadable == 1 and chunked.trained == 10


def test_a_chunk_is_scored_before_it_is_learned(corpus_index):
    entries = read_index(corpus_index)
    corpus = load_corpus_features(entries, n_features=N_FEATURES)
    result = run_chunked(MultinomialNB(), corpus.tokens, corpus.gold, readable=corpus.readable, chunk_size=4)
    assert (result.decisions[:4] == 0).all() and all(v is Label.UNSURE for v in result.verdicts[:4])
    assert (result.decisions[4:] != 0).any()
    with pytest.raises(ConfigError, match="chunk_size"):
        run_chunked(MultinomialNB(), corpus.tokens, corpus.gold, chunk_size=0)


def test_dropping_empty_columns_changes_nothing_for_chisquare_nb(corpus_index):
    entries = read_index(corpus_index)
    corpus = load_corpus_features(entries, n_features=N_FEATURES)
    narrow = drop_empty_columns(corpus.tokens)
    assert narrow.shape[1] == len(np.unique(corpus.tokens.indices)) < N_FEATURES
    assert narrow.nnz == corpus.tokens.nnz
    wide = run_chunked(ChiSquareNB(), corpus.tokens, corpus.gold, readable=corpus.readable, chunk_size=3)
    small = run_chunked(ChiSquareNB(), narrow, corpus.gold, readable=corpus.readable, chunk_size=3)
    np.testing.assert_allclose(small.decisions, wide.decisions)


def test_compare_models_runs_every_model_on_every_feature_set(corpus_index):
    entries = read_index(corpus_index)
    corpus = load_corpus_features(entries, n_features=N_FEATURES)
    words = plain_word_counts(corpus.texts, n_features=2**12)
    rows = compare_models({"tokens": corpus.tokens, "words": words}, corpus.gold, readable=corpus.readable,
                          chunk_size=2)
    assert ([(r.features, r.model) for r in rows]
            == [(f, m) for f in ("tokens", "words") for m in DEFAULT_MODELS])
    for row in rows:
        assert math.isfinite(row.figures.roca_pct) and 0 <= row.figures.roca_pct <= 100
        assert row.figures.messages == len(entries)
    table = comparison_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    assert table[0].startswith("| features | model | (1-ROCA)% |")
    assert table[2].startswith("| tokens | ChiSquareNB (spamlearn) | ")


def test_plain_text_is_the_subject_and_the_text_parts_as_they_are():
    raw = (b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\nMIME-Version: 1.0\n"
           b"Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nhello\n"
           b"--b\nContent-Type: text/html\n\n<p>hi <b>there</b></p>\n"
           b"--b\nContent-Type: image/png\n\nxx\n--b--\n")
    text = plain_text(parse_message(raw))
    assert text.splitlines()[0] == "Grüße"
    assert "hello" in text and "<b>there</b>" in text and "xx" not in text
    counts = plain_word_counts([text], n_features=2**10)
    assert counts.sum() == 4  # grüße, hello, hi, there: one-letter tag names are not words
