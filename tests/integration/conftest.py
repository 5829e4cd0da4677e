"""Fixtures for integration tests against a real, throw-away Dovecot IMAP server."""

import os
import sys

import pytest

# Make the helper module importable as ``dovecot`` whatever pytest's import mode is.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from dovecot import DovecotServer  # noqa: E402

ALICE_PASSWORD = "alice-Secret-1"
BOB_PASSWORD = "bob-Secret-2"
USERS = {"alice": ALICE_PASSWORD, "bob": BOB_PASSWORD}


@pytest.fixture(scope="session")
def dovecot():
    """One started DovecotServer per test session (per xdist worker) with alice and bob."""
    server = DovecotServer(users=USERS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clean_mailboxes(dovecot):
    """The session server, with alice's and bob's mailboxes emptied before the test."""
    for user in USERS:
        dovecot.reset_user(user)
    return dovecot


@pytest.fixture
def server(clean_mailboxes):
    """The Dovecot with empty mailboxes, whose log must show no error by the end."""
    yield clean_mailboxes
    assert clean_mailboxes.errors() == []


@pytest.fixture(scope="session")
def spamassassin_index(tmp_path_factory):
    """The SpamAssassin corpus unpacked once per session into a temporary folder
    (never the work tree's ``.corpora``, which other runs may be unpacking);
    returns the path of its TREC index."""
    from corpus import corpus_index  # scripts/corpus.py, put on sys.path by tests/conftest.py

    return corpus_index(tmp_path_factory.mktemp("corpora"))
