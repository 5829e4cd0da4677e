"""The message digest the ledger keys on: what counts as the same message."""

from __future__ import annotations

import hashlib
import random
import re

import pytest

from spamlearn.message import message_digest

MESSAGE = b"From: a@example.org\nSubject: hi\n\nbody line\n"


def reference_digest(raw: bytes) -> str:
    """The definition, written the straightforward way (copies and all)."""
    data = re.sub(rb"\r\n", b"\n", raw)
    if data.startswith(b"From "):
        data = data.partition(b"\n")[2]
    head, sep, body = data.partition(b"\n\n")
    lines, skipping = [], False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                lines.append(line)
            continue
        skipping = line.lower().startswith(b"x-spam-")
        if not skipping:
            lines.append(line)
    return hashlib.sha256(b"\n".join(lines) + sep + body.rstrip(b"\n")).hexdigest()


def test_the_same_message_by_crlf_envelope_verdict_headers_and_trailing_newlines():
    same = [
        MESSAGE,
        MESSAGE.replace(b"\n", b"\r\n"),
        b"From sender@example.org Sat Nov 28 10:00:00 2026\n" + MESSAGE,
        b"X-Spam-Flag: YES\nX-Spam-Score: 0.99\n  folded\n" + MESSAGE,
        MESSAGE + b"\n\n\n",
    ]
    assert len({message_digest(raw) for raw in same}) == 1
    assert message_digest(MESSAGE.replace(b"body", b"Body")) != message_digest(MESSAGE)


def test_digest_matches_the_reference_definition():
    """Digests are ledger keys: the in-place hashing must not change one bit."""
    rng = random.Random(2026)
    pieces = [b"From x\n", b"From: a\n", b"X-Spam-Flag: YES\n", b"x-spam-level: **\n", b" cont\n",
              b"\tcont\n", b"\n", b"\n\n", b"\r\n", b"\r\n\r\n", b"body", b"\r", b"From ", b"x" * 70_000,
              b"\n" * 70_000, b"Subject: s\n"]
    cases = [b"", b"\n", b"\n\n", b"From ", b"From x", b"From x\n", b"a\n\n", b"a\n\n\n\n"]
    cases += [b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(2_000)]
    for raw in cases:
        assert message_digest(raw) == reference_digest(raw), raw[:80]


@pytest.mark.parametrize("trailing", [0, 1, 65_535, 65_536, 200_000])
def test_long_runs_of_trailing_newlines(trailing):
    raw = MESSAGE.rstrip(b"\n") + b"\n" * trailing
    assert message_digest(raw) == reference_digest(raw) == message_digest(MESSAGE)
