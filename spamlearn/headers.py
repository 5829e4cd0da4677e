"""Add spamlearn's verdict headers to a message, as ``bogofilter -p`` does.

Incoming ``X-Spam-*`` headers are removed first: a sender must not be able
to pre-label their own message ``X-Spam-Status: No`` past a sieve rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from . import __version__
from .classifier import Label, Verdict
from .points import spamassassin_points

#: ``Classifier``'s default: what the points are counted from when no cutoff is given.
DEFAULT_SPAM_CUTOFF = 0.90

__all__ = ["add_verdict_headers", "marked_headers", "marked_pieces", "unmarked_pieces", "verdict_headers"]

# The blank line that ends the header block; "\r\r" only in a message
# without any LF, whose lines all end in a bare CR (old Mac mail; a helper's
# review: read as one header line starting "X-Spam-", such a message was
# dropped whole).  Anywhere else "\r\r" is inside a line: taken as the end
# of the headers, it hid the forged X-Spam lines after it (a later review).
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_BARE_CR_HEADER_END = re.compile(rb"\r\r")


def verdict_headers(verdict: Verdict, spam_cutoff: float = DEFAULT_SPAM_CUTOFF) -> list[tuple[str, str]]:
    """Our headers, as SpamAssassin writes its own where it has one:
    ``X-Spam-Flag: YES`` on spam only (spamass-milter and sieve rules
    written ``exists "X-Spam-Flag"`` take the header itself for spam: a
    ``NO`` sent all ham to Junk), and ``X-Spam-Status`` with the score on
    its scale of points (``spamlearn.points``) and ``X-Spam-Level``'s stars;
    then ours, on every message."""
    is_spam = verdict.label is Label.SPAM
    score, required = spamassassin_points(verdict.decision, spam_cutoff, is_spam)
    # One star a whole point, as SpamAssassin's X-Spam-Level: the recipe
    # ``header :contains "X-Spam-Level" "*****"`` is spam from 5.0 on.
    stars = "*" * int(max(float(score), 0.0))
    # ``autolearn=no`` after the tests, as SpamAssassin's template writes
    # (spamlearn learns nothing when it scores): Rspamd's spamassassin
    # scanner reads score and tests with a pattern that wants it there.
    # Without it (until the eleventh session) the pattern did not match, the
    # scanner died on "attempt to compare number with nil" in Rspamd's log
    # and every message went without the symbol (tests/integration/test_rspamd.py).
    return [
        *([("X-Spam-Flag", "YES")] if is_spam else []),
        ("X-Spam-Status", f"{'Yes' if is_spam else 'No'}, score={score} required={required} "
                          f"tests=SPAMLEARN_{verdict.label.value.upper()} autolearn=no"),
        *([("X-Spam-Level", stars)] if stars else []),
        ("X-Spam-Verdict", verdict.label.value),
        ("X-Spam-Probability", f"{verdict.spam_prob:.4f}"),
        ("X-Spam-Checker-Version", f"spamlearn {__version__}"),
    ]


def add_verdict_headers(raw: bytes, verdict: Verdict, spam_cutoff: float = DEFAULT_SPAM_CUTOFF) -> bytes:
    """``raw`` with its ``X-Spam-*`` headers replaced by ours, line ends kept."""
    return b"".join(marked_pieces(raw, verdict, spam_cutoff))


def marked_pieces(raw: bytes, verdict: Verdict, spam_cutoff: float = DEFAULT_SPAM_CUTOFF
                  ) -> tuple[bytes, bytes | memoryview]:
    """``add_verdict_headers`` in two pieces to write one after the other: the
    new header block, and the rest of ``raw`` as a view, not a copy (a 50 MB
    message went through ``filter`` at four times its size in memory)."""
    return _rebuilt(raw, [f"{name}: {value}".encode("ascii")
                          for name, value in verdict_headers(verdict, spam_cutoff)])


def marked_headers(raw: bytes, verdict: Verdict, spam_cutoff: float = DEFAULT_SPAM_CUTOFF) -> bytes:
    """``add_verdict_headers`` up to the blank line that ends the header block,
    that line included: what spamd's HEADERS answers (spamc puts the body
    of the message it sent after it).  A message without a blank line
    (all header) is given back whole."""
    head, rest = marked_pieces(raw, verdict, spam_cutoff)
    end = (_HEADER_END if b"\n" in raw else _BARE_CR_HEADER_END).match(rest)
    return head + (bytes(rest[:end.end()]) if end else bytes(rest))


def unmarked_pieces(raw: bytes) -> tuple[bytes, bytes | memoryview]:
    """``raw`` without its ``X-Spam-*`` headers, as ``marked_pieces`` gives it:
    what ``filter`` passes on when it cannot score, so that a sender's
    ``X-Spam-Status: No`` never reaches a sieve rule looking like ours."""
    return _rebuilt(raw, [])


def _rebuilt(raw: bytes, ours: list[bytes]) -> tuple[bytes, bytes | memoryview]:
    match = (_HEADER_END if b"\n" in raw else _BARE_CR_HEADER_END).search(raw)
    head = raw[: match.start()] if match else raw
    # A bare CR ends a line only in a block without any LF (a message whose
    # lines all end in CR): elsewhere it is part of its line, as for Dovecot
    # and ``message_digest``, so that a filtered copy stays the same message.
    lf = b"\n" in head
    # Our lines end as the message's header lines do.  Read from the header
    # lines themselves: one CR at the end of a body line (a sender can put
    # it there) made a whole LF header block one "line", which was then
    # dropped if it began with X-Spam-, or kept a forged X-Spam-Flag (a
    # helper's review, 2026-11-29).
    first = head.find(b"\n")
    if first >= 0:
        newline = b"\r\n" if first and head[first - 1] == 13 else b"\n"
    else:
        # One line, or bare CRs only: LF, which every reader of the result
        # (Dovecot, message_digest) takes for a line end.
        newline = b"\r\n" if match and match.group().startswith(b"\r\n") else b"\n"
    # Every line ends as it did but the block's last, which ends where the
    # separator (or a headers-only message) takes over.  Nothing added but
    # our lines: a headers-only message stays as it came, so the filtered
    # copy is the same message to the ledger (message_digest leaves X-Spam-*
    # out).  Each run is written once the next is known.
    out = bytearray()
    last = None
    for run in _header_runs(head, lf, ours):
        if last is not None:
            out += last[0]
            if not last[1]:
                out += newline
        last = run
    if last is None:
        # Only X-Spam-* headers, all gone: what followed them stays as it
        # was, separator included (as message_digest reads the original).
        return b"", memoryview(raw)[match.start():] if match else b""
    text, has_end = last
    if has_end:                               # its line end goes: LF, CRLF or CR
        text = text[:len(text) - (2 if lf and len(text) > 1 and text[-2] == 13 else 1)]
    out += text
    rest = memoryview(raw)[match.start():] if match else b""
    return bytes(out), rest


def _header_runs(head: bytes, lf: bool, ours: list[bytes]) -> Iterator[tuple[bytes | memoryview, bool]]:
    """The lines of the header block ``head`` to write, and ``ours``, in runs:
    (lines, whether the run's last line has its line end).  Runs of lines,
    not lines: a message of 10 MB without a blank line (all of it header)
    was five million line objects, 1.2 GB to filter (a review, 2026-11-29).
    ``lf``: the block's lines end in LF (CRLF), not in bare CRs."""
    view = memoryview(head)
    brk = 10 if lf else 13
    pos = 0
    if head.startswith(b"From "):              # an mbox envelope line stays first
        end = head.find(b"\n" if lf else b"\r")
        pos = len(head) if end < 0 else end + 1
        yield view[:pos], end >= 0
    # A first line that is a continuation (white space in front) stays
    # first: after our headers it would be folded into the last of them.
    leading = (_LEADING_LF_RE if lf else _LEADING_CR_RE).match(head, pos).end()
    if leading > pos:
        yield view[pos:leading], head[leading - 1] == brk
    for line in ours:
        yield line, False
    # Every X-Spam-* field goes, with its continuation lines.
    kept = leading
    for found in (_X_SPAM_LF_RE if lf else _X_SPAM_CR_RE).finditer(head, leading):
        if found.start() > kept:
            yield view[kept:found.start()], True
        kept = found.end()
    if kept < len(head):
        yield view[kept:], head[-1] == brk
    if head and head[-1] == brk:
        yield b"", False                        # the empty line after the last line end


# Runs of lines by regex, each in the two ways a header block's lines end,
# possessive (``*+``): nothing after them to give anything back to, and
# a plain ``*`` kept a backtracking record of each line it took (500 MB
# for three million continuation lines).  Continuation lines (white space
# in front) from a line's start:
_LEADING_LF_RE = re.compile(rb"(?:[ \t][^\n]*+(?:\n|\Z))*+")
_LEADING_CR_RE = re.compile(rb"(?:[ \t][^\r]*+(?:\r|\Z))*+")
# A field named X-Spam-* (in any case) and its continuation lines:
_X_SPAM_LF_RE = re.compile(rb"(?:\A|(?<=\n))x-spam-[^\n]*+(?:\n|\Z)(?:[ \t][^\n]*+(?:\n|\Z))*+",
                           re.IGNORECASE)
_X_SPAM_CR_RE = re.compile(rb"(?:\A|(?<=\r))x-spam-[^\r]*+(?:\r|\Z)(?:[ \t][^\r]*+(?:\r|\Z))*+",
                           re.IGNORECASE)
