"""The evaluation pictures: what each one draws, checked on the figure's own data."""

from __future__ import annotations

import os
import stat

import matplotlib.image
import numpy as np
import pytest

from spamlearn.classifier import Classifier, Clue, Label
from spamlearn.clues import strongest_clues
from spamlearn.errors import ConfigError
from spamlearn.evaluate import OnlineResult, learning_curve, roc_points
from spamlearn.plots import (
    clues_figure,
    error_rates_at,
    learning_curve_figure,
    roc_figure,
    save_figure,
    save_roc_plot,
    score_histogram_figure,
    write_atomically,
)
from spamlearn.regularfile import NotRegularFileError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_result(gold, scores, verdicts=None) -> OnlineResult:
    gold = np.asarray(gold, dtype=np.int8)
    scores = np.asarray(scores, dtype=np.float64)
    with np.errstate(divide="ignore"):
        decisions = np.log(scores) - np.log1p(-scores)
    if verdicts is None:
        verdicts = [Label.SPAM if s >= 0.9 else Label.HAM if s < 0.2 else Label.UNSURE for s in scores]
    return OnlineResult([f"m{i}" for i in range(len(gold))], gold, scores, decisions, verdicts, 1.0,
                        len(gold))


@pytest.fixture
def result() -> OnlineResult:
    rng = np.random.default_rng(2002)
    gold = rng.integers(0, 2, 400)
    # Mostly right, some unsure, a few confidently wrong: every picture has something to show.
    scores = np.where(gold == 1, rng.beta(8, 1, 400), rng.beta(1, 8, 400))
    scores[:5] = 1 - scores[:5]
    return make_result(gold, np.clip(scores, 1e-6, 1 - 1e-6))


def test_error_rates_at_a_cutoff_count_each_class_against_its_own_size():
    r = make_result([0, 0, 0, 0, 1, 1], [0.1, 0.5, 0.95, 0.05, 0.95, 0.3])
    assert error_rates_at(r.gold, r.scores, 0.9) == pytest.approx((1 / 4, 1 / 2))
    assert error_rates_at(r.gold, r.scores, 0.2) == pytest.approx((2 / 4, 0.0))


def test_roc_figure_draws_the_roc_points_on_logit_axes_with_the_cutoffs_marked(result):
    fig = roc_figure(result, ham_cutoff=0.2, spam_cutoff=0.9)
    ax = fig.axes[0]
    assert ax.get_xscale() == "logit" and ax.get_yscale() == "logit"
    curve, ham_mark, spam_mark = ax.get_lines()
    fpr, tpr, _ = roc_points(result.gold, result.scores)
    floor_x = 0.5 / (result.gold == 0).sum()
    floor_y = 0.5 / (result.gold == 1).sum()
    np.testing.assert_allclose(curve.get_xdata(), np.clip(fpr, floor_x, 1 - floor_x))
    np.testing.assert_allclose(curve.get_ydata(), np.clip(1 - tpr, floor_y, 1 - floor_y))
    for mark, cutoff in ((ham_mark, 0.2), (spam_mark, 0.9)):
        hm, sm = error_rates_at(result.gold, result.scores, cutoff)
        assert mark.get_xdata()[0] == pytest.approx(max(hm, floor_x))
        assert mark.get_ydata()[0] == pytest.approx(max(sm, floor_y))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("spamlearn: (1-ROCA)% = ")
    # Tick labels are percentages, as TREC labels them: 0.01 reads "1".
    assert ax.xaxis.get_major_formatter()(0.01, 0) == "1"


def test_roc_figure_draws_one_curve_per_run_and_no_marks_without_cutoffs(result):
    other = make_result(result.gold, np.clip(result.scores[::-1], 1e-6, 1 - 1e-6))
    fig = roc_figure(result, ham_cutoff=None, spam_cutoff=None, others={"reversed": other})
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 2
    assert [t.get_text().split(":")[0] for t in ax.get_legend().get_texts()] == ["spamlearn", "reversed"]


def test_score_histogram_counts_every_message_once_per_class_and_draws_both_cutoffs(result):
    fig = score_histogram_figure(result, ham_cutoff=0.25, spam_cutoff=0.8)
    ax = fig.axes[0]
    ham_bars = [p for p in ax.patches if p.get_label() != "unsure band"]
    heights = sum(p.get_height() for p in ham_bars)
    assert heights == pytest.approx(len(result.gold))
    assert sorted(line.get_xdata()[0] for line in ax.get_lines()) == [0.25, 0.8]
    assert ax.get_yscale() == "log"


def test_learning_curve_is_the_trailing_window_rate():
    # wrong: gold spam scored ham (0), ham scored spam (3); unsure: 0 and 1.
    r = make_result([1, 0, 1, 0, 1, 0], [0.4, 0.5, 0.99, 0.01, 0.99, 0.01],
                    verdicts=[Label.UNSURE, Label.UNSURE, Label.SPAM, Label.HAM, Label.SPAM, Label.HAM])
    r.scores[3] = 0.993  # a ham scored as spam
    curve = learning_curve(r, window=2)
    np.testing.assert_allclose(curve.misclassified, [1, 0.5, 0, 0.5, 0.5, 0])
    np.testing.assert_allclose(curve.unsure, [1, 1, 0.5, 0, 0, 0])
    assert curve.window == 2
    with pytest.raises(ConfigError, match="window"):
        learning_curve(r, window=0)


def test_learning_curve_figure_plots_the_curve(result):
    fig = learning_curve_figure(result, window=100)
    ax = fig.axes[0]
    wrong, unsure = ax.get_lines()
    curve = learning_curve(result, window=100)
    np.testing.assert_allclose(wrong.get_xdata(), curve.position)
    np.testing.assert_allclose(wrong.get_ydata(), np.clip(curve.misclassified, 0.005, 0.995))
    assert ax.get_yscale() == "logit"


def test_strongest_clues_names_the_one_sided_tokens(spam_messages, ham_messages):
    classifier = Classifier(n_features=2**18)
    for raw in spam_messages:
        classifier.learn(raw, "spam")
    for raw in ham_messages:
        classifier.learn(raw, "ham")
    tokens = {t for raw in spam_messages + ham_messages for t in classifier.tokens(raw)}
    spam_clues, ham_clues = strongest_clues(classifier, sorted(tokens) + ["never-seen-token"], n=5)
    assert len(spam_clues) == 5 and len(ham_clues) == 5
    assert all(c.spam_prob > 0.5 and c.ham_count == 0 for c in spam_clues)
    assert all(c.spam_prob < 0.5 and c.spam_count == 0 for c in ham_clues)
    assert [c.spam_prob for c in spam_clues] == sorted((c.spam_prob for c in spam_clues), reverse=True)
    assert "never-seen-token" not in {c.token for c in spam_clues + ham_clues}
    # "money" is in three of the four spams and in no ham: nothing is stronger.
    assert spam_clues[0].token == "money" and spam_clues[0].spam_count == 3


def test_strongest_clues_names_every_token_of_a_shared_bucket(spam_messages, ham_messages):
    # Two buckets, three names: two of them must share one (and a spam-only
    # model makes every used bucket a spam clue).
    classifier = Classifier(n_features=2)
    classifier.learn(spam_messages[0], "spam")
    spam_clues, ham_clues = strongest_clues(classifier, ["alpha", "beta", "gamma"], n=5)
    names = sorted(name for clue in spam_clues for name in clue.token.split(" | "))
    assert names == ["alpha", "beta", "gamma"] and len(spam_clues) < 3
    assert ham_clues == []
    assert strongest_clues(classifier, [], n=5) == ([], [])


def test_clues_figure_draws_the_share_of_each_class():
    spam = [Clue("money", 0.99, 50, 0), Clue("click", 0.98, 25, 1)]
    ham = [Clue("wrote:", 0.01, 0, 100)]
    fig = clues_figure(spam, ham, n_spam=100, n_ham=200)
    left, right = fig.axes
    widths = sorted(p.get_width() for p in left.patches)
    assert widths == pytest.approx([0.0, 0.5, 25.0, 50.0])
    assert sorted(p.get_width() for p in right.patches) == pytest.approx([0.0, 50.0])
    # Strongest on top.
    by_height = sorted(zip(left.get_yticks(), (t.get_text() for t in left.get_yticklabels())))
    assert [label.split()[0] for _, label in by_height] == ["click", "money"]


def test_save_figure_writes_a_readable_png_atomically(tmp_path, result):
    path = save_roc_plot(result, tmp_path / "roc.png", title="test")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    height, width, _ = matplotlib.image.imread(path).shape
    assert (width, height) == (640, 520)
    assert [p.name for p in tmp_path.iterdir()] == ["roc.png"]  # no temporary file left


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640)])
def test_pictures_and_pages_get_the_mode_open_would_give(tmp_path, umask, mode):
    """A report shows the clues of the users' mail: an admin's umask 077
    must keep it private (a fixed 0644 made it world-readable)."""
    old = os.umask(umask)
    try:
        path = write_atomically(tmp_path / "index.html", b"<html></html>")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode


def test_save_figure_into_a_missing_folder_fails_and_leaves_nothing(tmp_path, result):
    with pytest.raises(FileNotFoundError):
        save_figure(roc_figure(result), tmp_path / "missing" / "roc.png")
    assert list(tmp_path.iterdir()) == []


def test_write_atomically_never_replaces_what_is_not_a_regular_file(tmp_path):
    """os.replace puts the file in place of whatever has the name: ``eval
    --plot /dev/full`` run as root replaced the device (a FIFO and a link to
    it stand in for it here)."""
    fifo = tmp_path / "roc.png"
    os.mkfifo(fifo)
    (tmp_path / "link.png").symlink_to(fifo)
    for path in (fifo, tmp_path / "link.png"):
        with pytest.raises(NotRegularFileError, match="a FIFO, not a regular file"):
            write_atomically(path, b"png")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.png", "roc.png"]
