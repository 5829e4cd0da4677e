"""The message digest the ledger keys on: what counts as the same message."""

from __future__ import annotations

import ast
import hashlib
import itertools
import os
import random
import re

import pytest

from spamlearn.errors import MessageError
from spamlearn.message import bare_head_digests, legacy_message_digest, message_digest, quoted_envelope_digest

MESSAGE = b"From: a@example.org\nSubject: hi\n\nbody line\n"


DELIVERY_HEADERS = (b"received", b"delivered-to", b"x-original-to", b"return-path", b"x-envelope-to",
                    b"envelope-to", b"x-delivered-to")


def reference_digest(raw: bytes, legacy: bool = False, bare_head_as_is: bool = False,
                     quoted_as_is: bool = False) -> str:
    """The definition, written the straightforward way (copies and all);
    ``bare_head_as_is``, or ``legacy``: a message without a blank line as
    it was hashed until 2026-11-29, its trailing newlines counted;
    ``quoted_as_is``, or ``legacy``: the ``>From `` lines after an
    envelope line as they came, not unquoted (until 2026-11-29)."""
    data = re.sub(rb"\r\n", b"\n", raw)
    if data.startswith(b"From "):
        data = data.partition(b"\n")[2]
        if not (legacy or quoted_as_is):
            data = re.sub(rb"\n>(>*From )", rb"\n\1", data)
    head, sep, body = data.partition(b"\n\n")
    if not sep and not (legacy or bare_head_as_is):
        head, sep = head.rstrip(b"\n"), b"\n\n"       # headers only: an empty body
    lines, skipping = [], False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                lines.append(line)
            continue
        name = line.partition(b":")[0].rstrip(b" \t").lower() if b":" in line else None
        skipping = line.lower().startswith(b"x-spam-") or (not legacy and name in DELIVERY_HEADERS)
        if not skipping:
            lines.append(line)
    return hashlib.sha256(b"\n".join(lines) + sep + body.rstrip(b"\n")).hexdigest()


def reference_has_body(raw: bytes) -> bool:
    data = re.sub(rb"\r\n", b"\n", raw)
    if data.startswith(b"From "):
        data = data.partition(b"\n")[2]
    return data.partition(b"\n\n")[2].strip(b"\n") != b""


def reference_has_blank_line(raw: bytes) -> bool:
    data = re.sub(rb"\r\n", b"\n", raw)
    if data.startswith(b"From "):
        data = data.partition(b"\n")[2]
    return b"\n\n" in data


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
              b"\n" * 70_000, b"Subject: s\n", b"Received: from x\n", b"Delivered-To: u\n",
              b"RETURN-PATH : <a>\n", b"X-Original-To:u\n", b"Received-SPF: pass\n", b"Envelope-To: u\n",
              b">From a\n", b">>From b\n", b"\n>From ", b">", b"\r\n>>>From "]
    cases = [b"", b"\n", b"\n\n", b"From ", b"From x", b"From x\n", b"a\n\n", b"a\n\n\n\n", b"From x\n\n",
             b"From x\r\n\r\n", b"From x\r\n\n", b"a\r\r\n", b"a\n\r\r\n", b"a\r\n\n"]
    cases += [b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(2_000)]
    for raw in cases:
        assert message_digest(raw) == reference_digest(raw), raw[:80]
        # Ledgers written by 0.2.0 and earlier key on this one: not a bit of it may move.
        assert legacy_message_digest(raw) == reference_digest(raw, legacy=True), raw[:80]
        # Nor of the one a message without a blank line had until 2026-11-29.
        yesterday = reference_digest(raw, bare_head_as_is=True, quoted_as_is=True)
        if reference_has_blank_line(raw):
            assert yesterday == reference_digest(raw, quoted_as_is=True)     # it did not move
        else:
            assert yesterday in bare_head_digests(raw), raw[:80]
        if reference_has_body(raw):
            assert bare_head_digests(raw) == (), raw[:80]
        # Nor of the one a message with an envelope line and quoted lines had until then.
        quoted = reference_digest(raw, quoted_as_is=True)
        assert quoted_envelope_digest(raw) == (quoted if quoted != reference_digest(raw) else None), raw[:80]


@pytest.mark.parametrize("head", [
    b"a: b\n" * 400_000,                                  # no blank line: all of it header
    b"Received: x\nTo: y\n X-Spam-Flag: NO\n" * 60_000,     # fields left out, and continued ones kept
    b"Subject: s\n" + b" folded\n" * 250_000,
], ids=["unfolded", "skipped", "folded"])
def test_digests_of_a_huge_header_block_cost_memory_in_proportion(head):
    """The header block was split into a list of its lines to be hashed:
    a 10 MB message without a blank line (all header) took 360 MB to
    learn, for the five digests a message is looked up by."""
    import tracemalloc

    for raw in (head, head + b"\nbody\n"):
        tracemalloc.start()
        try:
            digests = (message_digest(raw), legacy_message_digest(raw), bare_head_digests(raw))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 3 * len(raw), peak
        assert digests[:2] == (reference_digest(raw), reference_digest(raw, legacy=True))
        assert digests[2] == (() if raw.endswith(b"body\n") else
                              (reference_digest(raw.rstrip(b"\n"), bare_head_as_is=True),
                               reference_digest(raw, bare_head_as_is=True)))


def test_an_mbox_entry_is_the_message_an_mbox_file_holds_whichever_way_it_comes():
    """A file with an envelope line and a ``>From `` line: `learn FILE` reads
    it as an mbox (its quoting undone), stdin and HTTP take the bytes as
    they are; the two were two messages, learned as spam and ham at once
    (a helper's review: 58 files of the SpamAssassin corpus)."""
    from spamlearn.mailsource import messages_in_file

    body = b"Dear friend,\n>From the desk of the director\n>>From a quote\n"
    entry = b"From bounce@example.net Sat Nov 28 10:00:00 2026\n" + MESSAGE + body
    (read,) = messages_in_file("x.mbox", entry)
    assert read.raw == MESSAGE + body.replace(b"\n>From", b"\nFrom").replace(b"\n>>From", b"\n>From")
    assert message_digest(entry) == message_digest(read.raw) == message_digest(entry.replace(b"\n", b"\r\n"))
    # The digest it had before, so that a ledger row keyed on it is found.
    before = reference_digest(entry, quoted_as_is=True)
    assert quoted_envelope_digest(entry) == before != message_digest(entry)
    assert quoted_envelope_digest(read.raw) is None and quoted_envelope_digest(MESSAGE) is None


def delivered(to: bytes, raw: bytes = MESSAGE) -> bytes:
    """``raw`` as Postfix and Dovecot's LMTP deliver it to ``to``."""
    return (b"Return-Path: <bounce@example.net>\nDelivered-To: " + to + b"\nReceived: from mx.example.org\n"
            b"\tby mail.example.org (Dovecot) with LMTP\n"
            b"\tfor <" + to + b">; Sat, 28 Nov 2026 10:00:00 +0000\n"
            b"X-Original-To: " + to + b"\nReceived: from relay.example.net by mx.example.org\n" + raw)


def test_the_copies_of_one_delivery_to_several_users_are_one_message():
    alice, bob = delivered(b"alice@example.org"), delivered(b"bob@example.org")
    assert message_digest(alice) == message_digest(bob) == message_digest(MESSAGE)
    # ...which is what the legacy digest got wrong,
    assert legacy_message_digest(alice) != legacy_message_digest(bob)
    # and headers that only start like a delivery header still count.
    assert message_digest(b"Received-SPF: pass\n" + MESSAGE) != message_digest(MESSAGE)
    assert message_digest(delivered(b"alice@example.org", MESSAGE.replace(b"hi", b"ho"))) != \
        message_digest(alice)


@pytest.mark.parametrize("trailing", [0, 1, 65_535, 65_536, 200_000])
def test_long_runs_of_trailing_newlines(trailing):
    raw = MESSAGE.rstrip(b"\n") + b"\n" * trailing
    assert message_digest(raw) == reference_digest(raw) == message_digest(MESSAGE)


@pytest.mark.parametrize("digest", [message_digest, legacy_message_digest])
def test_a_digest_takes_every_form_of_a_message_classifier_takes(digest):
    """A helper's review: message_digest("Subject: a\\n\\nb") raised TypeError."""
    forms = [MESSAGE, bytearray(MESSAGE), memoryview(MESSAGE), MESSAGE.decode()]
    assert len({digest(raw) for raw in forms}) == 1
    latin1 = b"Subject: caf\xe9\n\nbody"
    assert digest(latin1.decode("utf-8", "surrogateescape")) == digest(latin1)
    for other in (None, 12, ["Subject: a"]):
        with pytest.raises(MessageError, match="must be bytes or str"):
            digest(other)


def test_trailing_newlines_do_not_count_without_a_blank_line_either():
    """A helper's review: "Subject: a" with no newline, one or two was three
    messages; headers only are headers and an empty body."""
    head = b"From: a@example.org\nSubject: a"
    same = [head, head + b"\n", head + b"\n\n", head + b"\r\n\r\n\r\n", b"From x\n" + head + b"\n"]
    assert len({message_digest(raw) for raw in same}) == 1
    # Only where there was no blank line did the digest move; its two forms
    # of then are looked up from every form of today (a second review: a
    # "Subject: a" learned yesterday and "Subject: a\n" today were two rows).
    then = {reference_digest(form, bare_head_as_is=True) for form in (head, head + b"\n")}
    assert len(then) == 2 and not then & {message_digest(head)}
    for raw in same:
        assert set(bare_head_digests(raw)) == then, raw
    assert bare_head_digests(head + b"\n\nbody") == ()


#: Digests the line-by-line code of 0.2.0 (before the runs by regex) gave:
#: a field named like a left-out one but longer (``X-Delivered-To-Alias``)
#: right after a left-out field.
PINNED_DIGESTS = [
    (b"Received: from mx.example.org\nX-Delivered-To-Alias: u@example.org\nSubject: s\n\nbody\n",
     "02d7cab8e169f9f263a2c2824302044cc95a89ab8414aebf9b2d4bcc83234add",
     "ee5ee5f2f7cfa4b87ea2deea2ff7fb81183874fc9f31f0b923f598d021f75fa7", ()),
    (b"Received:\nX-Delivered-To",
     "8a7d39afa269fe8330e3ed2cb18064b4394deffa3b9255645ee4f858b89d77ce",
     "48f10f77da10673dafd11f514c264c86f91ee7297f25cae09b209feaca70175e",
     ("b134e7b711d43aa42a42951f2c52d70050649d7db0603ea381ea7dde7674d8fd",
      "609ee98ed036b38a47c35e9e7914efd0ef5a2dbc6c69dc343375937d964317dd")),
]


@pytest.mark.parametrize("raw, digest, legacy, bare_head", PINNED_DIGESTS)
def test_a_field_named_like_a_left_out_one_keeps_its_digest(raw, digest, legacy, bare_head):
    """A review: on Python 3.11.0-3.11.4 (Debian 12's python3) the runs of
    left-out fields took ``X-Delivered-To`` of the next line with them
    (CPython gh-106052), another key in the ledger for the same message."""
    assert message_digest(raw) == digest
    assert legacy_message_digest(raw) == legacy
    assert bare_head_digests(raw) == bare_head


def _python_311_before_the_possessive_fix() -> str | None:
    """A python3.11 on this machine older than 3.11.5 (Debian 12's is 3.11.2)."""
    import shutil
    import subprocess

    for name in ("/usr/bin/python3.11", shutil.which("python3.11"), "/usr/bin/python3"):
        if name and os.path.exists(name):
            version = subprocess.run([name, "-c", "import sys; print(*sys.version_info[:3])"],
                                     capture_output=True, text=True, check=False).stdout.split()
            if len(version) == 3 and (3, 11, 0) <= tuple(map(int, version)) < (3, 11, 5):
                return name
    return None


def test_the_runs_of_left_out_fields_are_the_same_on_python_3_11_before_3_11_5():
    """The regexes ``_digest_normalised`` cuts the header block with, run by
    an older 3.11 where the machine has one: the same runs as this Python's
    (a review: ``Received: x`` then ``X-Delivered-To-Alias: y`` ran into the
    second line there, CPython gh-106052)."""
    import subprocess

    from spamlearn.message import _NOT_THE_MESSAGE_RE, _SKIPPED_FIELDS, _VERDICT_HEADER_RE

    python = _python_311_before_the_possessive_fix()
    if python is None:
        pytest.skip("no python3.11 older than 3.11.5 here")
    lines = [b"Received: x", b"X-Delivered-To-Alias: y", b"X-Delivered-To", b"x-spam-a: 1", b" cont",
             b"Envelope-Tox", b"Return-Path <a>", b"Subject: s", b"received :x", b"x-spam"]
    texts = [b"\n".join(combo) + tail for combo in itertools.product(lines, repeat=3)
             for tail in (b"", b"\n")]
    patterns = [(regex.pattern, regex.flags) for skipped in (_NOT_THE_MESSAGE_RE, _VERDICT_HEADER_RE)
                for regex in _SKIPPED_FIELDS[skipped]]
    script = ("import ast, re, sys\n"
              "patterns, texts = ast.literal_eval(sys.stdin.read())\n"
              "print([[[m.span() for m in re.compile(*p).finditer(t)] for p in patterns] for t in texts])")
    here = [[[m.span() for m in re.compile(*p).finditer(t)] for p in patterns] for t in texts]
    there = subprocess.run([python, "-c", script], input=repr((patterns, texts)), capture_output=True,
                           text=True, check=True).stdout
    assert ast.literal_eval(there) == here
