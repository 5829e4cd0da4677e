"""A verdict on SpamAssassin's scale: required 5.0 at spam_cutoff, 2.5 points a tenfold in the odds."""

import math

import pytest

from spamlearn.points import spamassassin_points


def log_odds(p):
    return math.log(p / (1 - p))


@pytest.mark.parametrize("decision, cutoff, is_spam, expected", [
    (log_odds(0.99), 0.90, True, ("7.6", "5.0")),
    (log_odds(0.90), 0.90, True, ("5.0", "5.0")),
    (log_odds(0.9999), 0.90, True, ("12.6", "5.0")),
    (log_odds(0.20), 0.90, False, ("1.1", "5.0")),      # the default ham cutoff
    (0.0, 0.90, False, ("2.6", "5.0")),                 # a probability of 0.5: unsure
    (log_odds(1e-6), 0.90, False, ("-12.4", "5.0")),    # sure ham goes below 0, as SpamAssassin's
    # Rounding would say 5.0, which Exim takes for spam: a tenth below.
    (log_odds(0.8999), 0.90, False, ("4.9", "5.0")),
    (log_odds(0.95), 0.95, True, ("5.0", "5.0")),       # the cutoff is 5.0 whatever it is
    (700.0, 0.90, True, ("50.0", "5.0")),               # clipped
    (-700.0, 0.90, False, ("-50.0", "5.0")),
    (700.0, 1.0, True, ("50.0", "5.0")),                # a cutoff of 1 (nothing is spam but 1.0)
    (-1.0, 0.0, False, ("4.9", "5.0")),                 # a cutoff of 0, and a verdict it did not give
])
def test_points_never_contradict_the_verdict(decision, cutoff, is_spam, expected):
    score, required = spamassassin_points(decision, cutoff, is_spam)
    assert (score, required) == expected
    assert (float(score) >= float(required)) is is_spam


@pytest.mark.parametrize("decision, label, level", [
    (log_odds(0.99), "spam", b"X-Spam-Level: *******\n"),      # 7.6: seven stars
    (log_odds(0.90), "spam", b"X-Spam-Level: *****\n"),        # 5.0: five, the usual recipe's "*****"
    (log_odds(0.8999), "unsure", b"X-Spam-Level: ****\n"),     # 4.9: four
    (log_odds(0.2), "ham", b"X-Spam-Level: *\n"),              # 1.1
    (log_odds(0.01), "ham", None),                             # below 1: none, as SpamAssassin's is empty
])
def test_the_level_is_a_star_a_whole_point(decision, label, level):
    from spamlearn.classifier import Label, Verdict
    from spamlearn.headers import add_verdict_headers

    verdict = Verdict(1 / (1 + math.exp(-decision)), Label(label), decision)
    out = add_verdict_headers(b"Subject: s\n\nbody\n", verdict)
    if level is None:
        assert b"X-Spam-Level" not in out
    else:
        assert level in out
