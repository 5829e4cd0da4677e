"""The TREC figures, checked against values worked out by hand."""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from spamlearn.classifier import Classifier, Label
from spamlearn.counts import BayesCounts
from spamlearn.errors import ConfigError, CorpusIndexError, InputMissingError
from spamlearn.evaluate import (
    OnlineResult,
    compute_figures,
    read_index,
    roc_points,
    run_online,
    write_results,
    write_trec_results,
)


def result(gold, decisions, verdicts=None):
    gold = np.asarray(gold, dtype=np.int8)
    decisions = np.asarray(decisions, dtype=float)
    if verdicts is None:
        verdicts = [Label.SPAM if d > 0 else Label.HAM for d in decisions]
    scores = 1 / (1 + np.exp(-decisions))
    return OnlineResult([str(i) for i in range(len(gold))], gold, scores, decisions, verdicts, 1.0, len(gold))


def test_perfect_ranking_has_zero_area_above_the_curve():
    figures = compute_figures(result([1, 1, 0, 0], [3.0, 2.0, -1.0, -2.0]))
    assert figures.roca_pct == 0.0
    assert figures.ham_misclassified_pct == 0.0 and figures.spam_misclassified_pct == 0.0


def test_reversed_ranking_has_full_area():
    assert compute_figures(result([1, 1, 0, 0], [-3.0, -2.0, 1.0, 2.0])).roca_pct == pytest.approx(100.0)


def test_ties_between_ham_and_spam_count_half():
    # one spam tied with one ham, the other pair ranked right: 3 right pairs + 1 half of 4
    figures = compute_figures(result([1, 1, 0, 0], [5.0, 1.0, 1.0, -5.0]))
    assert figures.roca_pct == pytest.approx(100 * (1 - 3.5 / 4))


def test_lam_is_the_logistic_average():
    # 1 of 4 ham called spam, 1 of 2 spam called ham
    figures = compute_figures(result([0, 0, 0, 0, 1, 1], [1.0, -1.0, -1.0, -1.0, 1.0, -1.0]))
    expected = 1 / (1 + math.exp(-(math.log(0.25 / 0.75) + math.log(0.5 / 0.5)) / 2))
    assert figures.lam_pct == pytest.approx(100 * expected)


def test_unsure_is_reported_apart_from_errors():
    verdicts = [Label.UNSURE, Label.HAM, Label.SPAM, Label.UNSURE]
    figures = compute_figures(result([0, 0, 1, 1], [0.1, -2, 2, 0.1], verdicts))
    assert figures.unsure_pct == 50.0
    assert figures.ham_misclassified_pct == 0.0 and figures.spam_misclassified_pct == 0.0


def test_roc_points_start_at_origin_and_end_at_one():
    fpr, tpr, _ = roc_points(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.3, 0.1]))
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()


def test_read_index_resolves_paths_relative_to_the_index(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "index").write_text("spam ../data/a\nham ../data/b\n")
    entries = read_index(tmp_path / "full" / "index")
    assert [e.gold for e in entries] == [Label.SPAM, Label.HAM]
    assert entries[0].path == tmp_path / "full" / ".." / "data" / "a"


def test_read_index_takes_a_byte_order_mark(tmp_path):
    (tmp_path / "index").write_bytes(b"\xef\xbb\xbfspam ../a\nham ../b\n")
    entries = read_index(tmp_path / "index")
    assert [(e.gold.value, e.id) for e in entries] == [("spam", "../a"), ("ham", "../b")]


def test_read_index_rejects_bad_lines(tmp_path):
    index = tmp_path / "index"
    index.write_text("spam ../a\nmaybe ../b\n")
    with pytest.raises(CorpusIndexError, match="index:2"):
        read_index(index)
    # A NUL is no file name: it must not reach open() (ValueError, exit 70).
    index.write_bytes(b"spam ../a\nham ../b\x00c\n")
    with pytest.raises(CorpusIndexError, match="index:2: a NUL byte"):
        read_index(index)
    with pytest.raises(InputMissingError, match="cannot read index"):
        read_index(tmp_path / "nowhere")
    with pytest.raises(InputMissingError, match="cannot read index"):
        read_index(tmp_path)
    # /dev/zero was read until the memory ran out: MemoryError, an internal
    # error (70).  /dev/null, which would not fill the memory without the fix:
    with pytest.raises(InputMissingError, match="cannot read index /dev/null: a device"):
        read_index(Path(os.devnull))


def test_read_index_reads_a_fifo_as_it_comes(tmp_path):
    """``--index <(grep ...)`` is a pipe: read, not refused as /dev/zero is."""
    os.mkfifo(tmp_path / "index")
    writer = threading.Thread(target=(tmp_path / "index").write_text, args=("spam a\nham b\n",))
    writer.start()
    try:
        assert [e.id for e in read_index(tmp_path / "index")] == ["a", "b"]
    finally:
        writer.join()


def test_online_protocol_scores_before_learning(tmp_path, spam_messages, ham_messages):
    (tmp_path / "d").mkdir()
    lines = []
    for i, raw in enumerate(spam_messages + ham_messages):
        (tmp_path / "d" / str(i)).write_bytes(raw)
        lines.append(f"{'spam' if i < len(spam_messages) else 'ham'} d/{i}")
    (tmp_path / "index").write_text("\n".join(lines))
    entries = read_index(tmp_path / "index")
    classifier = Classifier(n_features=2**14)
    out = run_online(entries, classifier, mode="all")
    assert out.verdicts[0] is Label.UNSURE and out.scores[0] == 0.5, "the first message meets an empty model"
    assert classifier.n_spam == len(spam_messages) and classifier.n_ham == len(ham_messages)
    # Eight messages are far below the confidence warm-up, and no clue is
    # seen more than four times, so every score is unsure (an error to
    # train on): turn both off to see right answers left unlearned.
    errors_only = Classifier(BayesCounts(confidence_warmup=0, support_sightings=0).init_empty(2**14))
    out = run_online(entries, errors_only, mode="error")
    assert out.trained == errors_only.n_spam + errors_only.n_ham
    assert out.trained < len(entries)


def test_results_file_keeps_the_ranking_it_reports(tmp_path):
    """A ROC computed from the results file equals the reported one, even
    for scores that differ only past the sixth decimal."""
    decisions = [30.0, 20.0, -20.0, -25.0, -30.0, 25.0]
    res = result([1, 0, 1, 0, 0, 1], decisions)
    write_results(res, tmp_path / "results")
    rows = [line.split() for line in (tmp_path / "results").read_text().splitlines()]
    assert [r[1] for r in rows] == ["spam", "ham", "spam", "ham", "ham", "spam"]
    scores = np.array([float(r[2]) for r in rows])
    from_file = compute_figures(OnlineResult(res.ids, res.gold, scores, np.log(scores) - np.log1p(-scores),
                                             res.verdicts, 1.0, len(rows)))
    assert from_file.roca_pct == pytest.approx(compute_figures(res).roca_pct)
    assert len(set(scores)) == len(scores)


def test_result_files_keep_an_id_with_white_space_one_field(tmp_path):
    """A message file named with spaces (a Maildir someone copied from a
    desktop) must not split its line: TREC's tools read fields by spaces."""
    from urllib.parse import unquote

    res = result([1, 0, 1], [3.0, -2.0, 1.0])
    res.ids = ["../data/inmail.1", "Junk/a b\tc.eml", "100% sure\u3000.eml"]
    write_results(res, tmp_path / "results")
    write_trec_results(res, tmp_path / "trec")
    rows = [line.split(" ") for line in (tmp_path / "results").read_text(encoding="utf-8").splitlines()]
    assert [len(r) for r in rows] == [4, 4, 4]
    assert rows[0][0] == "../data/inmail.1"                  # a TREC corpus's ids as they are
    assert [unquote(r[0]) for r in rows] == res.ids
    lines = (tmp_path / "trec").read_text().splitlines()
    jig = [dict(f.split("=", 1) for f in line.split()) for line in lines]
    assert [unquote(j["file"]) for j in jig] == res.ids
    assert [j["judge"] for j in jig] == ["spam", "ham", "spam"]


def test_figures_by_the_log_odds_rank_where_probabilities_rounded():
    gold = np.array([1, 1, 0, 0], dtype=np.int8)
    decisions = np.array([50.0, 48.0, 45.0, -3.0])        # every spam above every ham
    scores = np.array([1.0, 1.0, 1.0, 0.047])             # rounded: the ham at 45 ties both spam
    result = OnlineResult(["a", "b", "c", "d"], gold, scores, decisions, [Label.SPAM] * 4, 1.0, 4)
    assert compute_figures(result).roca_pct == pytest.approx(100 * (0.5 + 0.5) / 4)
    assert compute_figures(result, by="decisions").roca_pct == 0.0
    with pytest.raises(ConfigError):
        compute_figures(result, by="nonsense")
