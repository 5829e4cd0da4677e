"""The README's recipe for a login that is not the user's name, against a real Dovecot 2.3.

``user = "alice"`` on an account that logs in as a Dovecot master user
(``alice*spamlearn`` with the master's password, none of alice's) or as
``alice@example.org`` where Dovecot has ``auth_username_format = %n``: that
name, not the login, picks the model the account trains and says whose
verdicts the sieve and the HTTP service gave (the rescue rule).  The
session's Dovecot has neither a master passdb nor that format, so each
recipe gets a server of its own here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import USERS
from dovecot import DovecotServer
from test_imap_trainer import account_of, make_message, model_counts, move, train_cli, upload, write_config
from test_imap_verdicts import LONG_AGO, _spam_through_the_service, _spam_through_the_sieve
from typer.testing import CliRunner

from spamlearn.cli import app
from spamlearn.config import load_settings
from spamlearn.defaults import choose_model_path

pytestmark = pytest.mark.integration

MASTER_PASSWORD = "spamlearn-Master-3"


@pytest.fixture(scope="module")
def master_dovecot():
    """alice and bob, and the master user spamlearn (``alice*spamlearn``)."""
    server = DovecotServer(users=USERS, master_users={"spamlearn": MASTER_PASSWORD})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def domain_dovecot():
    """alice and bob, who may log in as alice@example.org: the domain is dropped."""
    server = DovecotServer(users=USERS, extra_config="auth_username_format = %n\n")
    server.start()
    try:
        yield server
    finally:
        server.stop()


# (fixture, login, its password): the two logins the README names for alice
LOGINS = {
    "master": ("master_dovecot", "alice*spamlearn", MASTER_PASSWORD),
    "domain": ("domain_dovecot", "alice@example.org", USERS["alice"]),
}


@pytest.fixture(params=sorted(LOGINS))
def login(request):
    """(server with empty mailboxes, login, password) for each recipe; the
    server's log must show no error by the end."""
    fixture, username, password = LOGINS[request.param]
    server = request.getfixturevalue(fixture)
    for user in USERS:
        server.reset_user(user)
    yield server, username, password
    assert server.errors() == []


def alices_account(username: str, password: str, **more) -> dict:
    return {"name": "alice", "username": username, "password": password, "user": "alice", **more}


def test_the_login_reads_alices_mail_and_trains_her_own_model(login, tmp_path):
    server, username, password = login
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(2)])
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(3)])
    upload(server, "bob", "Junk", [make_message("spam", 9, "bob")])   # not read: bob's
    config = write_config(tmp_path, server, [alices_account(username, password, own_model=True)])

    code, data, stderr = train_cli(config)

    assert code == 0, stderr
    own = tmp_path / "users" / "alice.joblib"
    alice = account_of(data, "alice")
    assert alice["model"] == str(own)
    assert (alice["learned_spam"], alice["learned_ham"]) == (2, 3)
    assert model_counts(config, username) == (2, 3)
    assert not (tmp_path / "users" / f"{username}.joblib").exists()
    assert not (tmp_path / "model.joblib").exists()                  # the shared model
    assert choose_model_path(load_settings(config), "alice") == own  # what scores her
    assert account_of(train_cli(config)[1], "alice")["already_known"] == 0   # nothing read twice

    status = CliRunner().invoke(app, ["--config", str(config), "status", "--json"])
    assert status.exit_code == 0
    (row,) = json.loads(status.stdout)
    assert (row["user"], row["model"], row["model_counts"]) == ("alice", str(own), {"spam": 2, "ham": 3})
    folders = {f["folder"]: f for f in row["folders"]}
    assert folders["Junk"]["learned_spam"] == 2 and folders["INBOX"]["learned_ham"] == 3
    text = CliRunner().invoke(app, ["--config", str(config), "status"]).stdout
    assert text.startswith(f"alice (user alice): model {own} (2 spam, 3 ham)\n")


@pytest.mark.parametrize("own_model", [True, False])
@pytest.mark.parametrize("through", ["service", "sieve"])
def test_a_spam_verdict_alice_gave_under_her_name_is_rescued_at_once(login, tmp_path, through,
                                                                   own_model):
    """Alice junked a message through the sieve hook or the HTTP service,
    which name her as Dovecot does (``sieve:alice``), then moved it back
    to her INBOX: the account that logs in under another name takes it for
    her own rescue (learned as ham at once), not for young ham to wait."""
    server, username, password = login
    raw = make_message("spam", 1, "reported")
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(2)], when=LONG_AGO)
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(2, 4)])
    upload(server, "alice", "INBOX", [raw])
    config = write_config(tmp_path, server, [
        alices_account(username, password, own_model=own_model, ham_min_age_days=3)])
    settings = load_settings(config)
    if through == "service":
        _spam_through_the_service(settings, raw, "alice")
    else:
        _spam_through_the_sieve(settings, raw, "alice", tmp_path)

    code, data, _ = train_cli(config)

    alice = account_of(data, "alice")
    assert code == 0
    assert (alice["relabelled"], alice["deferred"]) == (1, 0)
    assert model_counts(config, username) == (2, 3)
    # the verdict went where the account trains, whichever model that is
    assert alice["model"] == str(choose_model_path(settings, "alice"))


def test_a_move_out_of_junk_seen_by_the_login_is_a_rescue(login, tmp_path):
    """The account's own verdicts (``imap:alice/Junk``) are its own, whatever the login."""
    server, username, password = login
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(2)], when=LONG_AGO)
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(2)])
    config = write_config(tmp_path, server, [
        alices_account(username, password, own_model=True, ham_min_age_days=3)])
    assert train_cli(config)[0] == 0
    move(server, "alice", "Junk", "INBOX")
    code, data, _ = train_cli(config)
    assert (code, account_of(data, "alice")["relabelled"]) == (0, 1)
    assert model_counts(config, username) == (1, 3)


def test_a_wrong_password_is_one_line_exit_77_and_never_shown(login, tmp_path):
    server, username, password = login
    upload(server, "alice", "Junk", [make_message("spam", 1)])
    wrong = "not-the-Password-77"
    config = write_config(tmp_path, server, [alices_account(username, wrong, own_model=True)])

    result = subprocess.run([sys.executable, "-m", "spamlearn", "-vv", "--config", str(config), "train"],
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 77, result.stderr[-2000:]
    assert "LOGIN" in result.stderr                      # the debug log is there...
    errors = [line for line in result.stderr.splitlines() if line.startswith("spamlearn: error:")]
    assert errors == [f"spamlearn: error: account alice (127.0.0.1:{server.port}): the server refused "
                      f"the login of {username} (wrong password?): [AUTHENTICATIONFAILED] "
                      f"Authentication failed."]
    assert "Traceback" not in result.stderr
    for secret in (wrong, password):                     # ...without a password
        assert secret not in result.stdout + result.stderr
        assert secret not in server.log_text()
    assert not (tmp_path / "users" / "alice.joblib").exists()


def test_the_right_password_never_appears_in_debug_output(login, tmp_path):
    server, username, password = login
    upload(server, "alice", "Junk", [make_message("spam", 1)])
    config = write_config(tmp_path, server, [alices_account(username, password, own_model=True)])
    result = subprocess.run([sys.executable, "-m", "spamlearn", "-vv", "--config", str(config), "train"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "LOGIN" in result.stderr and f"as {username}" in result.stderr
    assert password not in result.stdout + result.stderr + server.log_text()


def test_a_master_login_for_a_user_the_server_does_not_know_is_not_a_wrong_password(
        master_dovecot, tmp_path):
    """``alcie*spamlearn``: Dovecot takes the master's password, then finds
    no alcie and answers [AUTHORIZATIONFAILED] (RFC 5530: the credentials
    were right, the user they ask for is refused).  "(wrong password?)"
    sent the admin to a password that was right."""
    config = write_config(tmp_path, master_dovecot, [
        alices_account("alcie*spamlearn", MASTER_PASSWORD, own_model=True)])
    code, data, stderr = train_cli(config)
    assert code == 77
    error = account_of(data, "alice")["error"]
    assert error == (f"account alice (127.0.0.1:{master_dovecot.port}): the server refused the login "
                     f"of alcie*spamlearn: its password was right, but not the user it names (no such "
                     f"user, or one this login may not act as?): [AUTHORIZATIONFAILED] Authorization "
                     f"failed")
    assert "wrong password" not in stderr and MASTER_PASSWORD not in stderr
    assert master_dovecot.errors() == []
