"""mbox quoting: undone as mboxrd readers do, and put back for old ledger keys."""

from __future__ import annotations

import random
import re

from spamlearn.mailsource import mbox_quoted, mbox_unquoted

# The definitions, the straightforward way (a regex over every line but the first).
_QUOTED_LINE = re.compile(rb"(?<=\n)>(>*From )")
_FROM_LINE = re.compile(rb"(?<=\n)(>*From )")


def test_quoting_is_undone_and_put_back_as_the_mboxrd_rule_says():
    rng = random.Random(2026)
    pieces = [b"\n", b"From ", b">", b">>", b"x", b"From", b" ", b"\nFrom x", b"\n>From y", b"\n>>From z",
              b"\r\n", b"\n>>>From deep"]
    for _ in range(20_000):
        raw = b"Subject: s\n\n" + b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 15)))
        assert mbox_unquoted(raw) == _QUOTED_LINE.sub(rb"\1", raw), raw
        assert mbox_quoted(raw) == _FROM_LINE.sub(rb">\1", raw), raw
        assert mbox_unquoted(mbox_quoted(raw)) == raw


def test_a_message_without_quoting_is_returned_as_it_is():
    raw = b"From: a@example.org\nSubject: s\n\nno such lines\n"
    assert mbox_unquoted(raw) is raw and mbox_quoted(raw) == raw
