"""The IMAP trainer and messages the server cannot give (a helper's review).

Dovecot answers a FETCH that takes in a message file it cannot open with an
internal error and BYE for the whole command.  One such message stopped the
account's training on every run (exit 69, the folders after it never
reached); it must be one error, said once, and the rest learned.

These tests make Dovecot log errors on purpose, so they run their own
server, not the session's (whose tests assert a log without errors).
"""

from __future__ import annotations

import logging
import os
import time

import pytest
from dovecot import DovecotServer
from test_imap_trainer import account_of, make_message, model_counts, train_cli, upload, write_config

from spamlearn.config import load_settings
from spamlearn.imap import Trainer, load_accounts

pytestmark = pytest.mark.integration

USERS = {"alice": "alice-Secret-1"}


@pytest.fixture(scope="module")
def own_server():
    server = DovecotServer(users=USERS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(own_server):
    for user in USERS:
        own_server.reset_user(user)
    return own_server


def message_file(server: DovecotServer, user: str, folder: str, uid: int):
    """The Maildir file of ``uid`` in ``folder`` (after Dovecot has listed it)."""
    base = server.maildir(user) if folder == "INBOX" else server.maildir(user) / ("." + folder)
    for line in (base / "dovecot-uidlist").read_text().splitlines()[1:]:
        number, _, rest = line.partition(" ")
        if int(number) == uid:
            name = rest.rsplit(":", 1)[1]
            (path,) = [p for sub in ("cur", "new") for p in (base / sub).iterdir()
                       if p.name.split(":")[0] == name]
            return path
    raise LookupError(uid)


def unreadable(server: DovecotServer, user: str, folder: str, position: int):
    """Make the ``position``-th message of ``folder`` unreadable to Dovecot; (uid, path)."""
    client = server.connect(user)
    try:
        client.select_folder(folder, readonly=True)
        uids = sorted(client.search("ALL"))
        client.fetch(uids, [b"RFC822.SIZE"])  # Dovecot indexes the folder (and its uidlist)
    finally:
        client.logout()
    path = message_file(server, user, folder, uids[position])
    os.chmod(path, 0)
    return uids[position], path


@pytest.mark.parametrize("batch_size", [200, 2])
def test_a_message_the_server_cannot_read_is_one_error_and_the_rest_is_learned(
        server, tmp_path, caplog, batch_size):
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(6)])
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(2)])
    uid, path = unreadable(server, "alice", "Junk", 2)
    # retries = 0: the batch is narrowed within the pass, not retried whole
    config = write_config(tmp_path, server, [{"username": "alice", "batch_size": batch_size,
                                              "retries": 0}])
    try:
        with caplog.at_level(logging.WARNING, logger="spamlearn.imap"):
            code, data, _ = train_cli(config)
        alice = account_of(data, "alice")
        assert code == 65 and alice["error"] is None   # an unusable message, not an outage (69)
        assert (alice["learned_spam"], alice["learned_ham"], alice["errors"]) == (5, 2, 1)
        assert model_counts(config) == (5, 2)         # the rest of Junk, and INBOX after it
        said = [r.getMessage() for r in caplog.records if f"UID {uid} " in r.getMessage()]
        assert len(said) == 1 and "folder Junk" in said[0] and "never learned" in said[0]

        os.chmod(path, 0o600)  # readable again: it was passed by, and stays so
        code, data, _ = train_cli(config)
        alice = account_of(data, "alice")
        assert code == 0 and (alice["learned_spam"], alice["errors"]) == (0, 0)
        assert model_counts(config) == (5, 2)
    finally:
        os.chmod(path, 0o600)
    assert all("Permission denied" in line for line in server.errors())


def test_a_deferred_ham_the_server_cannot_read_is_one_error_then_forgotten(server, tmp_path):
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(2)])
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(3)])
    config = write_config(tmp_path, server, [{"username": "alice", "ham_min_age_days": 3,
                                              "retries": 0}])
    assert train_cli(config)[0] == 0 and model_counts(config) == (2, 0)   # all three ham wait
    uid, path = unreadable(server, "alice", "INBOX", 1)
    settings = load_settings(config)
    (account,) = load_accounts(settings)
    later = Trainer(settings, clock=lambda: time.time() + 4 * 86400)
    try:
        report = later.train_account(account)
        assert report.exit_code == 65 and report.error is None
        assert (report.total("learned", "ham"), report.message_errors, report.total("deferred")) == (2, 1, 0)
        os.chmod(path, 0o600)
        again = later.train_account(account)
        assert again.exit_code == 0 and again.total("learned") == 0 and again.message_errors == 0
    finally:
        os.chmod(path, 0o600)
    assert model_counts(config) == (2, 2)
