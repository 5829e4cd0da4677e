"""Tests proving that the Dovecot test server (tests/integration/dovecot.py) really works."""

import hashlib
import socket

import dovecot as dovecot_module
import imapclient
import pytest
from dovecot import DeliverySieve, DovecotServer, ImapsieveRule, SieveSetup
from imapclient.exceptions import LoginError

USERS = {"alice": "alice-pw"}  # for the tests' own servers

MESSAGE = (
    b"From: Sender <sender@example.org>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: cheap watches\r\n"
    b"Message-ID: <fixture-test-1@example.org>\r\n"
    b"\r\n"
    b"Buy now!\r\n"
)


def test_login_and_capabilities(dovecot):
    client = dovecot.connect("alice")
    try:
        caps = set(client.capabilities())
        assert {b"MOVE", b"UIDPLUS", b"CONDSTORE", b"QRESYNC", b"SPECIAL-USE", b"IDLE"} <= caps
        # CONDSTORE/QRESYNC are usable, not only advertised
        assert client.enable("CONDSTORE", "QRESYNC") == [b"CONDSTORE", b"QRESYNC"]
    finally:
        client.logout()
    assert dovecot.host == "127.0.0.1" and isinstance(dovecot.port, int)


def test_wrong_password_raises_login_error(dovecot):
    client = imapclient.IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10)
    try:
        with pytest.raises(LoginError):
            client.login("alice", dovecot.users["alice"] + "x")
    finally:
        client.shutdown()


def test_append_and_select(clean_mailboxes):
    server = clean_mailboxes
    client = server.connect("alice")
    try:
        client.append("INBOX", MESSAGE, flags=[b"$Test"])
        info = client.select_folder("INBOX")
        assert info[b"EXISTS"] == 1
        (uid,) = client.search("ALL")
        data = client.fetch([uid], [b"RFC822", b"FLAGS"])[uid]
        assert data[b"RFC822"] == MESSAGE
        assert b"$Test" in data[b"FLAGS"]
    finally:
        client.logout()
    # stored on disk in alice's Maildir, and bob does not see it
    assert len(list((server.maildir("alice") / "new").iterdir())) + len(
        list((server.maildir("alice") / "cur").iterdir())
    ) == 1
    bob = server.connect("bob")
    try:
        assert bob.select_folder("INBOX")[b"EXISTS"] == 0
    finally:
        bob.logout()
    assert server.errors() == []


def test_special_use_folders_exist_and_are_subscribed(clean_mailboxes):
    client = clean_mailboxes.connect("bob")
    try:
        flags = {name: set(f) for f, _sep, name in client.list_folders()}
        subscribed = {name for _f, _sep, name in client.list_sub_folders()}
    finally:
        client.logout()
    assert b"\\Junk" in flags["Junk"]
    assert b"\\Trash" in flags["Trash"]
    assert b"\\Archive" in flags["Archive"]
    assert {"Junk", "Trash", "Archive"} <= subscribed


def test_reset_user_empties_mailboxes_keeps_uidvalidity(dovecot):
    client = dovecot.connect("alice")
    try:
        client.append("INBOX", MESSAGE)
        client.append("Junk", MESSAGE)
        client.create_folder("Projects/2024")
        before = client.folder_status("INBOX", [b"UIDVALIDITY", b"UIDNEXT"])
    finally:
        client.logout()

    dovecot.reset_user("alice")

    client = dovecot.connect("alice")
    try:
        names = {name for _f, _s, name in client.list_folders()}
        assert names == {"INBOX", "Junk", "Archive", "Trash"}
        for name in names:
            assert client.folder_status(name, [b"MESSAGES"])[b"MESSAGES"] == 0
        after = client.folder_status("INBOX", [b"UIDVALIDITY", b"UIDNEXT"])
    finally:
        client.logout()
    # like a real server: same UIDVALIDITY, UIDs are never reused
    assert after[b"UIDVALIDITY"] == before[b"UIDVALIDITY"]
    assert after[b"UIDNEXT"] >= before[b"UIDNEXT"]


def test_add_user_while_running(dovecot):
    dovecot.add_user("carol", "first-pw")  # a new user can log in at once
    dovecot.connect("carol").logout()
    dovecot.add_user("carol", "second-pw")  # a changed password is seen by the next login
    client = dovecot.connect("carol")
    try:
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    finally:
        client.logout()


def test_master_users_log_in_as_any_user_and_only_so():
    """``alice*spamlearn`` with spamlearn's password is alice's session; the
    master cannot log in as itself, nor as a user who does not exist; the
    session server (no ``master_users``) has no separator at all."""
    with DovecotServer(users=USERS, master_users={"spamlearn": "master-pw"}) as srv:
        client = srv.connect("alice")
        client.append("Junk", MESSAGE)
        client.logout()
        client = srv.connect("alice*spamlearn", password="master-pw")
        try:
            assert client.select_folder("Junk")[b"EXISTS"] == 1
        finally:
            client.logout()
        for login, password, code in [("alice*spamlearn", "alice-pw", "AUTHENTICATIONFAILED"),
                                      ("spamlearn", "master-pw", "AUTHENTICATIONFAILED"),
                                      ("carol*spamlearn", "master-pw", "AUTHORIZATIONFAILED")]:
            with pytest.raises(LoginError, match=code):
                srv.connect(login, password=password)
        assert "Login: user=<alice>" in srv.log_text() and srv.errors() == []
    assert not srv.dir.exists()


def test_the_session_server_has_no_master_users(dovecot):
    assert "master" not in dovecot.config_path.read_text()
    with pytest.raises(LoginError):
        dovecot.connect("alice*bob", password=dovecot.users["bob"])


def test_kill_and_restart_keep_mail():
    with DovecotServer(users=USERS) as server:
        client = server.connect("alice")
        client.append("INBOX", MESSAGE)
        uidvalidity = client.select_folder("INBOX")[b"UIDVALIDITY"]
        client.logout()
        port, master = server.port, server.master_pid

        server.kill()
        assert not dovecot_module._process_group_alive(master)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, port), timeout=2).close()

        server.restart()
        assert server.port == port
        client = server.connect("alice")
        try:
            info = client.select_folder("INBOX")
            assert info[b"EXISTS"] == 1
            assert info[b"UIDVALIDITY"] == uidvalidity
            (uid,) = client.search("ALL")
            assert client.fetch([uid], [b"RFC822"])[uid][b"RFC822"] == MESSAGE
        finally:
            client.logout()
        assert server.errors() == []
    assert not server.dir.exists()


REPORT_SPAM = b"""\
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "variables"];
pipe :copy "report.sh" ["spam"];
"""

REPORT_HAM = b"""\
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "variables"];
if environment :matches "imap.mailbox" "*" { set "mailbox" "${1}"; }
if string "${mailbox}" "Trash" { stop; }
pipe :copy "report.sh" ["ham"];
"""


def test_imapsieve_pipes_moved_messages(tmp_path):
    # tmp_path is fine for the caller's files: the server copies them into its own folder
    (tmp_path / "spam.sieve").write_bytes(REPORT_SPAM)
    (tmp_path / "ham.sieve").write_bytes(REPORT_HAM)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    server = DovecotServer(users=USERS)
    pipe_log = server.shared_dir / "pipe.log"  # shared_dir is writable by the mail user
    (bin_dir / "report.sh").write_text(
        "#!/bin/sh\n"
        "hash=$(/usr/bin/sha256sum | /usr/bin/cut -d' ' -f1)\n"
        f'echo "$1 $hash" >> {pipe_log}\n'
        f'/usr/bin/env | /usr/bin/sort > {server.shared_dir}/env-"$1"\n'
        f'echo "uid=$(/usr/bin/id -u) cwd=$(/bin/pwd)" >> {server.shared_dir}/env-"$1"\n'
    )
    server.sieve = SieveSetup(
        pipe_bin_dir=bin_dir,
        rules=[
            ImapsieveRule(name="Junk", causes="COPY", before=tmp_path / "spam.sieve"),
            ImapsieveRule(name="*", from_="Junk", causes="COPY", before=tmp_path / "ham.sieve"),
        ],
        pipe_env={"SPAMLEARN_TEST": "it's set"},
    )
    with server:
        sha = hashlib.sha256(MESSAGE).hexdigest()  # piped bytes are CRLF, as appended
        client = server.connect("alice")
        try:
            client.append("INBOX", MESSAGE)
            client.select_folder("INBOX")
            client.move(client.search("ALL"), "Junk")
            # the pipe runs synchronously: the line is there when MOVE returns
            assert pipe_log.read_text().splitlines() == [f"spam {sha}"]

            client.select_folder("Junk")
            client.move(client.search("ALL"), "INBOX")
            assert pipe_log.read_text().splitlines() == [f"spam {sha}", f"ham {sha}"]

            # Junk -> Trash is excluded by the ham script; APPEND to Junk is no COPY
            client.select_folder("INBOX")
            client.move(client.search("ALL"), "Junk")
            client.select_folder("Junk")
            client.move(client.search("ALL"), "Trash")
            client.append("Junk", MESSAGE)
            assert pipe_log.read_text().splitlines() == [
                f"spam {sha}", f"ham {sha}", f"spam {sha}"
            ]
            assert client.folder_status("Trash", [b"MESSAGES"])[b"MESSAGES"] == 1
        finally:
            client.logout()

        env = (server.shared_dir / "env-spam").read_text().splitlines()
        assert "SPAMLEARN_TEST=it's set" in env  # from pipe_env, via the wrapper
        assert "USER=alice" in env
        assert f"HOME={server.home('alice')}" in env
        assert not any(line.startswith("PATH=") for line in env)  # Dovecot sets no PATH
        assert f"uid={server.mail_uid} cwd={server.home('alice')}" in env
        assert server.errors() == []


def test_missing_dovecot_fails_loudly(monkeypatch):
    monkeypatch.setattr(dovecot_module, "DOVECOT_BIN", "/nonexistent/sbin/dovecot")
    server = DovecotServer(users=USERS)
    with pytest.raises(RuntimeError, match="Dovecot is not installed: apt-get install"):
        with server:
            pass
    assert not server.dir.exists()


def test_missing_sievec_fails_loudly(monkeypatch, tmp_path):
    monkeypatch.setattr(dovecot_module, "SIEVEC_BIN", "/nonexistent/bin/sievec")
    server = DovecotServer(users=USERS, sieve=SieveSetup(pipe_bin_dir=tmp_path))
    with pytest.raises(RuntimeError, match="dovecot-sieve"):
        with server:
            pass
    assert not server.dir.exists()


def test_missing_dovecot_lda_fails_loudly(monkeypatch):
    monkeypatch.setattr(dovecot_module, "LDA_BIN", "/nonexistent/lib/dovecot-lda")
    server = DovecotServer(users=USERS, delivery=DeliverySieve())
    with pytest.raises(RuntimeError, match="Dovecot is not installed: apt-get install"):
        with server:
            pass
    assert not server.dir.exists()
