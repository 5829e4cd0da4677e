"""Add spamlearn's verdict headers to a message, as ``bogofilter -p`` does.

Incoming ``X-Spam-*`` headers are removed first: a sender must not be able
to pre-label their own message ``X-Spam-Flag: NO`` past a sieve rule.
"""

from __future__ import annotations

import re

from . import __version__
from .classifier import Label, Verdict

__all__ = ["add_verdict_headers", "marked_pieces", "unmarked_pieces", "verdict_headers"]

# The blank line that ends the header block; "\r\r" only in a message
# without any LF, whose lines all end in a bare CR (old Mac mail; a helper's
# review: read as one header line starting "X-Spam-", such a message was
# dropped whole).  Anywhere else "\r\r" is inside a line: taken as the end
# of the headers, it hid the forged X-Spam lines after it (a later review).
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_BARE_CR_HEADER_END = re.compile(rb"\r\r")
_LINE_END = re.compile(rb"(\r\n|\n|\r)")
_LF_END = re.compile(rb"(\r?\n)")


def verdict_headers(verdict: Verdict) -> list[tuple[str, str]]:
    return [
        ("X-Spam-Flag", "YES" if verdict.label is Label.SPAM else "NO"),
        ("X-Spam-Verdict", verdict.label.value),
        ("X-Spam-Probability", f"{verdict.spam_prob:.4f}"),
        ("X-Spam-Checker-Version", f"spamlearn {__version__}"),
    ]


def add_verdict_headers(raw: bytes, verdict: Verdict) -> bytes:
    """``raw`` with its ``X-Spam-*`` headers replaced by ours, line ends kept."""
    return b"".join(marked_pieces(raw, verdict))


def marked_pieces(raw: bytes, verdict: Verdict) -> tuple[bytes, bytes | memoryview]:
    """``add_verdict_headers`` in two pieces to write one after the other: the
    new header block, and the rest of ``raw`` as a view, not a copy (a 50 MB
    message went through ``filter`` at four times its size in memory)."""
    return _rebuilt(raw, [f"{name}: {value}".encode("ascii") for name, value in verdict_headers(verdict)])


def unmarked_pieces(raw: bytes) -> tuple[bytes, bytes | memoryview]:
    """``raw`` without its ``X-Spam-*`` headers, as ``marked_pieces`` gives it:
    what ``filter`` passes on when it cannot score, so that a sender's
    ``X-Spam-Flag: NO`` never reaches a sieve rule looking like ours."""
    return _rebuilt(raw, [])


def _rebuilt(raw: bytes, ours: list[bytes]) -> tuple[bytes, bytes | memoryview]:
    match = (_HEADER_END if b"\n" in raw else _BARE_CR_HEADER_END).search(raw)
    head = raw[: match.start()] if match else raw
    lines = _header_lines(head)
    # Our lines end as the message's header lines do.  Read from the header
    # lines themselves: one CR at the end of a body line (a sender can put
    # it there) made a whole LF header block one "line", which was then
    # dropped if it began with X-Spam-, or kept a forged X-Spam-Flag (a
    # helper's review, 2026-11-29).
    newline = next((end for _, end in lines if end in (b"\n", b"\r\n")), b"")
    if not newline:
        # One line, or bare CRs only: LF, which every reader of the result
        # (Dovecot, message_digest) takes for a line end.
        newline = b"\r\n" if match and match.group().startswith(b"\r\n") else b"\n"
    envelope = []
    if lines and lines[0][0].startswith(b"From "):
        envelope = [lines.pop(0)]
    kept = []
    skipping = False
    for line in lines:
        if line[0][:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line[0][:7].lower() == b"x-spam-"
        if not skipping:
            kept.append(line)
    # A first line that is a continuation (white space in front) stays
    # first: after our headers it would be folded into the last of them.
    leading = 0
    while leading < len(kept) and kept[leading][0][:1] in (b" ", b"\t"):
        leading += 1
    block = envelope + kept[:leading] + [(line, newline) for line in ours] + kept[leading:]
    if not block:
        # Only X-Spam-* headers, all gone: what followed them stays as it
        # was, separator included (as message_digest reads the original).
        return b"", memoryview(raw)[match.start():] if match else b""
    # Every line ends as it did but the block's last, which ends where the
    # separator (or a headers-only message) takes over.  Nothing added but
    # our lines: a headers-only message stays as it came, so the filtered
    # copy is the same message to the ledger (message_digest leaves X-Spam-*
    # out).
    out = b"".join(content + (end or newline) for content, end in block[:-1])
    out += block[-1][0]
    rest = memoryview(raw)[match.start():] if match else b""
    return out, rest


def _header_lines(head: bytes) -> list[tuple[bytes, bytes]]:
    """(content, line end) of each line of a header block; the last has no end.

    A bare CR ends a line only in a block without any LF (a message whose
    lines all end in CR): elsewhere it is part of its line, as for Dovecot
    and ``message_digest``, so that a filtered copy stays the same message.
    """
    if b"\n" in head:
        pieces = _LF_END.split(head)
    else:
        pieces = _LINE_END.split(head) if head else []
    return [(pieces[i], pieces[i + 1] if i + 1 < len(pieces) else b"") for i in range(0, len(pieces), 2)]
