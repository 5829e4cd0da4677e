"""A verdict on SpamAssassin's scale of points, for tools written for it.

Exim's ``spam =`` condition, spamass-milter's reject level, Thunderbird's
"trust SpamAssassin headers" and many sieve scripts read a score against a
required score of 5.0; an admin's ``$spam_score_int > 50`` means "spam".
spamlearn's own number is a probability, cut at ``spam_cutoff`` (0.90 by
default), so it is given on that scale as::

    points = 5.0 + 2.5 * log10(odds / cutoff_odds)

where ``odds`` is the message's spam odds (from the log-odds, exact even
where the probability has rounded to 1) and ``cutoff_odds`` those of
``spam_cutoff``: the cutoff is 5.0, each tenfold in the odds 2.5 points.
With the default cutoffs ham below 0.20 is below 1.1, a probability of
0.99 is 7.6, 0.9999 is 12.6; sure ham goes below 0 as SpamAssassin's does.
Not "10 x the probability, required 9.0": an Exim rule written for
SpamAssassin (score above 5) then took every unsure message from 0.5 on
for spam, and a reject level of 10 or 15 was never reached.
"""

from __future__ import annotations

import math

__all__ = ["REQUIRED", "spamassassin_points"]

#: SpamAssassin's default ``required_score``: what ``spam_cutoff`` maps to.
REQUIRED = 5.0
_POINTS_PER_DECADE = 2.5
#: Points are clipped here: a log-odds of 700 would otherwise say 760.
_LIMIT = 50.0


def spamassassin_points(decision: float, spam_cutoff: float, is_spam: bool) -> tuple[str, str]:
    """The score and the required score, one decimal each, as spamd writes them.

    Rounding alone could contradict the verdict (a hair below the cutoff
    reads "5.0"), and Exim takes ``score >= required`` for spam whatever
    else is said: a spam's score is at least the required one, any other
    verdict's at least a tenth below it.
    """
    cutoff = min(max(spam_cutoff, 1e-9), 1 - 1e-9)
    cutoff_log_odds = math.log(cutoff / (1 - cutoff))
    points = REQUIRED + _POINTS_PER_DECADE * (decision - cutoff_log_odds) / math.log(10)
    tenths = round(min(max(points, -_LIMIT), _LIMIT) * 10)
    required = round(REQUIRED * 10)
    if is_spam:
        tenths = max(tenths, required)
    elif tenths >= required:
        tenths = required - 1
    return _in_tenths(tenths), _in_tenths(required)


def _in_tenths(value: int) -> str:
    return f"{'-' if value < 0 else ''}{abs(value) // 10}.{abs(value) % 10}"
