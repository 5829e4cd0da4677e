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
from test_imap_trainer import (
    account_of,
    folder_state,
    make_message,
    model_counts,
    train_cli,
    upload,
    write_config,
)

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


def said_of(caplog, uid: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"UID {uid} " in r.getMessage()]


@pytest.mark.parametrize("batch_size", [200, 2])
def test_a_message_the_server_cannot_read_is_an_error_on_three_passes_then_passed_by(
        server, tmp_path, caplog, batch_size):
    """The rest is learned at once; the message is fetched again on the next
    passes (passed by at once, it was lost for good whatever made the server
    fail it; a helper's review), and passed by after 3 passes that gave
    other bodies."""
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(6)])
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(2)])
    uid, path = unreadable(server, "alice", "Junk", 2)
    # retries = 0: the batch is narrowed within the pass, not retried whole
    config = write_config(tmp_path, server, [{"username": "alice", "batch_size": batch_size,
                                              "retries": 0}])
    try:
        for number in (1, 2, 3):
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="spamlearn.imap"):
                code, data, _ = train_cli(config)
            alice = account_of(data, "alice")
            assert code == 65 and alice["error"] is None   # an unusable message, not an outage (69)
            assert alice["errors"] == 1 and len(said_of(caplog, uid)) == 1
            assert "folder Junk" in said_of(caplog, uid)[0]
            if number < 3:
                assert "tried again on the next pass" in said_of(caplog, uid)[0]
                assert folder_state(config, "Junk").unreadable == {uid: number}
            upload(server, "alice", "Junk", [make_message("spam", 10 + number)])   # more spam
        assert "passed by and never learned" in said_of(caplog, uid)[0]
        assert folder_state(config, "Junk").unreadable == {}
        assert model_counts(config) == (5 + 2, 2)    # the rest of Junk, and INBOX after it

        os.chmod(path, 0o600)  # readable again: it was passed by, and stays so
        code, data, _ = train_cli(config)
        alice = account_of(data, "alice")
        assert code == 0 and (alice["learned_spam"], alice["errors"]) == (1, 0)
        assert model_counts(config) == (8, 2)
    finally:
        os.chmod(path, 0o600)
    assert all("Permission denied" in line for line in server.errors())


def test_a_message_the_server_can_read_again_is_learned_on_the_next_pass(server, tmp_path, caplog):
    """The admin restores the file: the next pass, in a folder nothing else
    moved in, fetches it again and learns it."""
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(3)])
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(2)])
    uid, path = unreadable(server, "alice", "Junk", 1)
    config = write_config(tmp_path, server, [{"username": "alice", "retries": 0}])
    try:
        code, data, _ = train_cli(config)
        assert code == 65 and account_of(data, "alice")["learned_spam"] == 2
    finally:
        os.chmod(path, 0o600)
    code, data, _ = train_cli(config)
    alice = account_of(data, "alice")
    assert code == 0 and (alice["learned_spam"], alice["errors"]) == (1, 0)
    assert model_counts(config) == (3, 2) and folder_state(config, "Junk").unreadable == {}


def test_an_unreadable_message_expunged_is_dropped_from_the_state(server, tmp_path):
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(3)])
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(2)])
    uid, path = unreadable(server, "alice", "Junk", 1)
    config = write_config(tmp_path, server, [{"username": "alice", "retries": 0}])
    try:
        assert train_cli(config)[0] == 65 and folder_state(config, "Junk").unreadable == {uid: 1}
        client = server.connect("alice")      # the user deletes it
        client.select_folder("Junk")
        client.delete_messages([uid])
        client.expunge()
        client.logout()
    finally:
        if path.exists():
            os.chmod(path, 0o600)
    code, data, _ = train_cli(config)
    assert code == 0 and account_of(data, "alice")["errors"] == 0
    assert folder_state(config, "Junk").unreadable == {} and model_counts(config) == (2, 2)


@pytest.mark.parametrize("positions", [(1, 6), (0, 2, 4), (0, 3, 6), (0, 1, 2), (0, 1, 2, 3)])
def test_bad_messages_in_one_batch_are_each_an_error_not_an_outage(server, tmp_path, positions):
    """Two, or three apart or side by side, in a batch of 8: each its own
    error, the rest learned (three in a batch were three failures in a row,
    taken for an outage on every run, the account never trained; a second
    review)."""
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(8)])
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(2)])
    bad = [unreadable(server, "alice", "Junk", position) for position in positions]
    config = write_config(tmp_path, server, [{"username": "alice", "retries": 0}])
    try:
        code, data, _ = train_cli(config)
    finally:
        for _, path in bad:
            os.chmod(path, 0o600)
    alice = account_of(data, "alice")
    assert code == 65 and alice["error"] is None
    assert (alice["learned_spam"], alice["errors"]) == (8 - len(bad), len(bad))
    assert folder_state(config, "Junk").unreadable == {uid: 1 for uid, _ in bad}
    code, data, _ = train_cli(config)
    assert code == 0 and model_counts(config) == (8, 2)


def test_a_lone_bad_message_in_a_folder_with_nothing_new_is_passed_by_after_three_passes(
        server, tmp_path):
    """No other body given on those passes: the server shows it gives
    another message of the folder, so the passes count (it was an error on
    every run for ever; a second review)."""
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(3)])
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(2)])
    config = write_config(tmp_path, server, [{"username": "alice", "retries": 0}])
    assert train_cli(config)[0] == 0
    upload(server, "alice", "Junk", [make_message("spam", 9)])
    uid, path = unreadable(server, "alice", "Junk", 3)
    try:
        codes = [train_cli(config)[0] for _ in range(3)]
        assert codes == [65, 65, 65] and folder_state(config, "Junk").unreadable == {}
        assert train_cli(config)[0] == 0      # passed by: not fetched again
    finally:
        os.chmod(path, 0o600)
    assert model_counts(config) == (3, 2)


def test_a_folder_the_server_cannot_read_at_all_is_its_error_on_a_handful_of_logins(server, tmp_path):
    """Every message file of Junk unreadable (a restore with the wrong owner):
    3 logins a message, every one passed by, and nothing learned once the
    admin repaired it (a helper's review); then an outage on every run, and
    INBOX after it never trained (a third review).  Now Junk's error,
    nothing given up, and the other folders trained."""
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(40)])
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(2)])
    paths = [unreadable(server, "alice", "Junk", n)[1] for n in range(40)]
    config = write_config(tmp_path, server, [{"username": "alice", "retries": 0}])
    logins = server.log_text().count("Login: user=<alice>")
    try:
        code, data, _ = train_cli(config)
        # Depth first to the first message, then three on their own and a
        # probe of others: about log2(n) + 10 logins, not 3 a message (120).
        assert server.log_text().count("Login: user=<alice>") - logins <= 16
    finally:
        for path in paths:
            os.chmod(path, 0o600)
    alice = account_of(data, "alice")
    junk = next(f for f in alice["folders"] if f["folder"] == "Junk")
    assert code == 76 and alice["error"] is None and "nothing is passed by" in junk["error"]
    assert (alice["learned_spam"], alice["learned_ham"]) == (0, 2)
    assert folder_state(config, "Junk").unreadable == {}
    code, data, _ = train_cli(config)
    assert code == 0 and model_counts(config) == (40, 2)


def test_two_folders_the_server_cannot_read_at_all_are_each_their_error_and_the_rest_trained(
        server, tmp_path):
    """The second such folder was taken for an outage (69) at once: the
    pass ended there, and INBOX, after it and readable, was never trained
    (with retries, each reconnect bought one more folder).  Each is its
    own error, said once, and the exit code the one of a folder's (76)."""
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(4)])
    upload(server, "alice", "Archive", [make_message("ham", 10 + i) for i in range(4)])
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(2)])
    paths = [unreadable(server, "alice", folder, n)[1] for folder in ("Junk", "Archive") for n in range(4)]
    config = write_config(tmp_path, server, [{"username": "alice", "retries": 0,
                                              "ham_folders": ["INBOX", "Archive"]}])
    try:
        code, data, stderr = train_cli(config)
    finally:
        for path in paths:
            os.chmod(path, 0o600)
    alice = account_of(data, "alice")
    errors = {f["folder"]: f["error"] for f in alice["folders"]}
    assert code == 76 and alice["error"] is None
    assert "nothing is passed by" in errors["Junk"] and "nothing is passed by" in errors["Archive"]
    assert errors["INBOX"] is None and (alice["learned_spam"], alice["learned_ham"]) == (0, 2)
    said = [line for line in stderr.splitlines() if line.startswith("spamlearn: error:")]
    assert len(said) == 2 and "'Junk'" in said[0] and "'Archive'" in said[1]
    assert folder_state(config, "Junk").unreadable == folder_state(config, "Archive").unreadable == {}
    code, data, _ = train_cli(config)
    assert code == 0 and model_counts(config) == (4, 6)


def test_a_deferred_ham_the_server_cannot_read_is_an_error_then_learned_once_it_can(server, tmp_path):
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
        assert folder_state(config, "INBOX").unreadable == {uid: 1}
        os.chmod(path, 0o600)
        again = later.train_account(account)
        assert again.exit_code == 0 and again.total("learned") == 1 and again.message_errors == 0
    finally:
        os.chmod(path, 0o600)
    assert model_counts(config) == (2, 3) and folder_state(config, "INBOX").unreadable == {}


def test_dovecots_serverbug_for_one_message_is_that_message_not_an_outage(tmp_path):
    """With ``imap_fetch_failure = no-after`` Dovecot answers the FETCH of a
    message file it cannot open ``NO [SERVERBUG]``: RFC 5530's code, but no
    outage's (taken for one, that message stopped the account every run)."""
    server = DovecotServer(users=USERS, extra_config="protocol imap {\n  imap_fetch_failure = no-after\n}\n")
    server.start()
    try:
        upload(server, "alice", "Junk", [make_message("spam", i) for i in range(4)])
        upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(2)])
        uid, path = unreadable(server, "alice", "Junk", 1)
        config = write_config(tmp_path, server, [{"username": "alice", "retries": 0}])
        code, data, _ = train_cli(config)
        alice = account_of(data, "alice")
        assert code == 65 and alice["error"] is None and (alice["learned_spam"], alice["errors"]) == (3, 1)
        assert folder_state(config, "Junk").unreadable == {uid: 1}
    finally:
        server.stop()
