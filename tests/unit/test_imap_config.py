"""The IMAP trainer's pure parts: account config, durations, folder choice, folder state."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from spamlearn.cli import app
from spamlearn.config import load_settings
from spamlearn.errors import ConfigError
from spamlearn.imap import FolderState, load_accounts, parse_account, parse_duration, resolve_folders
from spamlearn.imap.config import Mode, Security
from spamlearn.imap.connection import FolderInfo, _Redactor

BASE = {"host": "mail.example.org", "username": "alice", "password_env": "ALICE_PW",
        "spam_folders": ["Junk"], "ham_folders": ["INBOX"]}


def account(**changes):
    table = {**BASE, **changes}
    return parse_account({k: v for k, v in table.items() if v is not None})


def test_defaults_are_tls_on_993_with_a_readable_name():
    acc = account()
    assert (acc.security, acc.port, acc.name, acc.mode) == (Security.TLS, 993, "alice@mail.example.org",
                                                            Mode.ALL)
    assert account(security="starttls").port == 143
    assert acc.ignore_folders == ("\\Trash",)
    assert acc.pass_timeout == 3600.0 and account(pass_timeout=0).pass_timeout == 0.0


@pytest.mark.parametrize("changes,message", [
    ({"password": "x"}, "password in the config file is not accepted"),
    ({"password_env": None}, "exactly one of password_file and password_env"),
    ({"password_file": "/x"}, "exactly one of password_file and password_env"),
    ({"host": None}, "'host' is required"),
    ({"security": "ssl"}, "security must be one of"),
    ({"port": 0}, "port must be >= 1"),
    ({"port": "993"}, "port must be an integer"),
    ({"mode": "sometimes"}, "mode must be one of"),
    ({"spam_folders": [], "ham_folders": []}, "give spam_folders and/or ham_folders"),
    ({"ham_folders": ["Junk"]}, "both spam and ham: Junk"),
    ({"ham_min_age_days": -1}, "ham_min_age_days must be >= 0"),
    ({"pass_timeout": -1}, "pass_timeout must be >= 0"),
    ({"pass_timeout": 1e12}, "pass_timeout must be <= 604800"),
    ({"own_model": "yes"}, "own_model must be true or false"),
    ({"name": "a b"}, "name must be a word"),
    ({"colour": "red"}, "unknown key"),
    ({"user": "alice/x"}, "user: invalid user name"),
    ({"security": "plain"}, "unencrypted to mail.example.org"),
])
def test_bad_accounts_are_refused_with_a_clear_message(changes, message):
    with pytest.raises(ConfigError, match=message):
        account(**changes)


def test_plain_is_allowed_to_loopback_or_when_asked():
    assert account(security="plain", host="127.0.0.1").port == 143
    assert account(security="plain", host="::1").is_loopback
    assert account(security="plain", allow_plaintext=True).security == "plain"


def test_password_comes_from_env_or_file_and_is_never_in_the_repr(tmp_path):
    acc = account()
    assert acc.password({"ALICE_PW": "s3cret"}) == "s3cret"
    with pytest.raises(ConfigError, match="ALICE_PW .* is not set"):
        acc.password({})
    secret = tmp_path / "pw"
    secret.write_text("with space \n")
    secret.chmod(0o644)
    acc = account(password_env=None, password_file=str(secret))
    assert acc.password() == "with space "
    assert not acc.password_file_is_private()
    assert "pw" not in repr(acc) and "with space" not in repr(acc)
    with pytest.raises(ConfigError, match="cannot read password_file"):
        account(password_env=None, password_file=str(tmp_path / "missing")).password()


def test_a_password_file_not_in_utf8_is_a_config_error_that_shows_no_byte_of_it(tmp_path):
    secret = tmp_path / "pw"
    secret.write_bytes(b"p\xe4ss\n")       # Latin-1, as many editors save it
    with pytest.raises(ConfigError, match="password_file .* is not UTF-8") as caught:
        account(password_env=None, password_file=str(secret)).password()
    assert "xe4" not in str(caught.value) and caught.value.__cause__ is None


def test_a_password_env_not_in_utf8_is_a_config_error_naming_the_variable():
    latin1 = b"p\xe4ss".decode("utf-8", "surrogateescape")      # as os.environ holds it
    with pytest.raises(ConfigError, match=r"ALICE_PW \(password_env\) is not UTF-8") as caught:
        account().password({"ALICE_PW": latin1})
    assert "xe4" not in str(caught.value) and caught.value.__cause__ is None


def test_load_accounts_from_a_config_file(tmp_path):
    config = tmp_path / "spamlearn.toml"
    config.write_text('[[accounts]]\nname = "a"\nhost = "h"\nusername = "u"\npassword_file = "pw"\n'
                      'spam_folders = ["Junk"]\nown_model = true\n'
                      '[[accounts]]\nname = "b"\nhost = "h"\nusername = "v"\npassword_env = "V"\n'
                      'ham_folders = ["INBOX"]\n')
    settings = load_settings(config)
    a, b = load_accounts(settings)
    assert a.password_file == tmp_path / "pw"  # relative to the config file
    assert settings.has_own_model("u") and not settings.has_own_model("v")
    assert [x.name for x in load_accounts(settings, ["b"])] == ["b"]
    with pytest.raises(ConfigError, match="no account named c"):
        load_accounts(settings, ["c"])
    config.write_text(config.read_text().replace('name = "b"', 'name = "a"'))
    with pytest.raises(ConfigError, match="two accounts are named 'a'"):
        load_accounts(load_settings(config))
    config.write_text("")
    with pytest.raises(ConfigError, match="no \\[\\[accounts\\]\\]"):
        load_accounts(load_settings(config))


def test_an_account_trains_the_model_of_its_user_not_of_its_login(tmp_path):
    """A Dovecot master-user login (alice*spamlearn: no password of alice's
    needed) is not the name the sieve hook and delivery pass: without
    ``user`` the account trained the shared model while alice's own judged
    her, and the login was no valid own_model name."""
    from spamlearn.imap.trainer import Trainer, store_for

    config = tmp_path / "spamlearn.toml"
    config.write_text('[users]\ndir = "u"\nown_model = ["alice"]\n'
                      '[[accounts]]\nhost = "h"\nusername = "alice*spamlearn"\nuser = "alice"\n'
                      'password_env = "PW"\nspam_folders = ["Junk"]\n'
                      '[[accounts]]\nhost = "h"\nusername = "bob*spamlearn"\nuser = "Bob"\n'
                      'password_env = "PW"\nspam_folders = ["Junk"]\nown_model = true\n'
                      '[[accounts]]\nhost = "h"\nusername = "carol"\npassword_env = "PW"\n'
                      'spam_folders = ["Junk"]\n')
    settings = load_settings(config)
    alice, bob, carol = load_accounts(settings)
    assert (alice.username, alice.model_user, carol.model_user) == ("alice*spamlearn", "alice", "carol")
    own = tmp_path / "u"
    assert store_for(settings, alice).model_path == settings.model_path_for("alice") == own / "alice.joblib"
    assert store_for(settings, bob).model_path == settings.model_path_for("bob") == own / "Bob.joblib"
    assert store_for(settings, carol).model_path == settings.model_path
    # Her moves through the sieve hook are hers: a move back out of Junk is a rescue.
    assert Trainer(settings)._own_verdict(alice, "sieve:alice")
    config.write_text('[[accounts]]\nhost = "h"\nusername = "a*b"\nuser = "a b"\npassword_env = "PW"\n'
                      'spam_folders = ["Junk"]\nown_model = true\n')
    with pytest.raises(ConfigError, match=r"accounts\[0\] user: invalid user name"):
        load_settings(config)


@pytest.mark.parametrize("login,advice", [("alice*spamlearn", 'set user = "alice"'),
                                          ("al ice", 'set user = "<name>"')])
def test_an_own_model_login_that_is_no_user_name_says_to_set_user(tmp_path, login, advice):
    """A master-user login with own_model = true and no ``user`` was refused
    with the letters a user name may have, and not a word of the key that
    answers it."""
    config = tmp_path / "spamlearn.toml"
    config.write_text(f'[[accounts]]\nhost = "h"\nusername = "{login}"\npassword_env = "PW"\n'
                      f'spam_folders = ["Junk"]\nown_model = true\n')
    with pytest.raises(ConfigError, match=r"accounts\[0\] username: invalid user name") as raised:
        load_settings(config)
    assert advice in str(raised.value)
    result = CliRunner().invoke(app, ["--config", str(config), "status"])
    assert result.exit_code == 78 and advice in result.stderr


def test_an_own_model_users_sieve_and_http_verdicts_are_the_accounts_in_any_spelling_of_the_name(tmp_path):
    """The login Bob with own_model = true beside [users] own_model = ["bob"]
    trains bob.joblib, which Dovecot's sieve hook and spamlearnc -u bob also
    train as "bob": those verdicts are the account's own (a rescue out of
    Junk waited ham_min_age_days), another user's are not."""
    from spamlearn.imap.trainer import Trainer

    config = tmp_path / "spamlearn.toml"
    config.write_text('[users]\ndir = "u"\nown_model = ["bob", "carol"]\n'
                      '[[accounts]]\nhost = "h"\nusername = "Bob"\npassword_env = "PW"\n'
                      'spam_folders = ["Junk"]\nown_model = true\n'
                      '[[accounts]]\nhost = "h"\nusername = "Dave"\npassword_env = "PW"\n'
                      'spam_folders = ["Junk"]\n')
    settings = load_settings(config)
    bob, dave = load_accounts(settings)
    trainer = Trainer(settings)
    assert trainer._own_verdict(bob, "sieve:bob") and trainer._own_verdict(bob, "http:bob")
    assert trainer._own_verdict(bob, "sieve:Bob")
    assert not trainer._own_verdict(bob, "sieve:carol")
    assert not trainer._own_verdict(bob, "http") and not trainer._own_verdict(bob, "imap:bob/Junk")
    # The shared model: ignoring case too, as own-model names are; Dovecot
    # lower-cases logins by default, and Dave's rescues waited ham_min_age_days.
    assert trainer._own_verdict(dave, "sieve:Dave") and trainer._own_verdict(dave, "sieve:dave")
    assert trainer._own_verdict(dave, "http:DAVE") and not trainer._own_verdict(dave, "sieve:dave2")


@pytest.mark.parametrize("text,seconds", [("90", 90), ("30s", 30), ("15m", 900), ("2h", 7200),
                                          ("1d", 86400), ("1.5m", 90), ("366d", 366 * 86400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "15x", "0", "-1m"])
def test_parse_duration_refuses_nonsense(text):
    with pytest.raises(ConfigError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["367d", "8785h", "1000000d", pytest.param("9" * 400, id="inf")])
def test_parse_duration_refuses_what_no_wait_could_last(text):
    with pytest.raises(ConfigError, match=r"duration too long: .* \(at most 366d\)"):
        parse_duration(text)


def test_train_every_too_long_is_refused_before_any_pass(tmp_path, monkeypatch):
    """``--every 1000000d`` ran a pass, then overflowed threading.Event.wait (70)."""
    config = tmp_path / "spamlearn.toml"
    config.write_text(f'[model]\npath = "{tmp_path / "m.joblib"}"\n[[accounts]]\nhost = "127.0.0.1"\n'
                      f'security = "plain"\nport = 1\nretries = 0\nusername = "x"\n'
                      f'password_env = "X_PW"\nspam_folders = ["Junk"]\n')
    monkeypatch.setenv("X_PW", "x")
    result = CliRunner().invoke(app, ["--config", str(config), "train", "--every", "1000000d"])
    assert result.exit_code == 78, result.output
    assert "duration too long" in result.stderr and "x@127.0.0.1:" not in result.output  # no pass


def status_config(tmp_path, alice_user='user = "alice"\n'):
    """alice (a master-user login with her own model) and bob (the shared model)."""
    config = tmp_path / "spamlearn.toml"
    config.write_text(f'[model]\npath = "{tmp_path / "model.joblib"}"\n[users]\ndir = "{tmp_path / "u"}"\n'
                      f'[[accounts]]\nname = "alice"\nhost = "h"\nusername = "alice*spamlearn"\n'
                      f'{alice_user}own_model = true\npassword_env = "PW"\nspam_folders = ["Junk"]\n'
                      f'[[accounts]]\nname = "bob"\nhost = "h"\nusername = "bob"\n'
                      f'password_env = "PW"\nspam_folders = ["Junk"]\n')
    return config


@pytest.mark.parametrize("broken", ["alice.joblib", "alice.ledger"])
def test_status_reports_an_account_with_a_broken_model_and_goes_on(tmp_path, broken):
    """A corrupt own model (or its ledger) stopped `status` at that account:
    one error line, nothing of the accounts after it, and --json printed nothing."""
    config = status_config(tmp_path)
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / broken).write_bytes(b"garbage, not a model\n")
    result = CliRunner().invoke(app, ["--config", str(config), "status"])
    assert result.exit_code == 74, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("spamlearn: error: account alice: ") and str(tmp_path / "u" / broken) in line
    assert result.stdout.startswith("bob: model ") and "alice" not in result.stdout
    result = CliRunner().invoke(app, ["--config", str(config), "status", "--json"])
    assert result.exit_code == 74, result.output
    alice, bob = json.loads(result.stdout)
    assert alice["account"] == "alice" and alice["exit_code"] == 74
    assert alice["error"].startswith("account alice:")
    assert alice["model"] == str(tmp_path / "u" / "alice.joblib") and alice["folders"] == []
    assert bob["account"] == "bob" and bob["error"] is None and bob["exit_code"] == 0
    assert bob["model_counts"] == {"spam": 0, "ham": 0}


def test_status_goes_on_past_a_users_folder_it_may_not_search(tmp_path, monkeypatch):
    """A users' folder that this user may not enter (0700, the mail user's;
    status run by an admin or a monitoring check) raised PermissionError, an
    OSError and no SpamlearnError: the traceback-free one line, but `status`
    stopped there, bob unreported and --json printing nothing."""
    from pathlib import Path

    config = status_config(tmp_path)
    (tmp_path / "u").mkdir()
    real_exists = Path.exists

    def no_search_permission(self, *args, **kwargs):
        if self.parent == tmp_path / "u":
            raise PermissionError(13, "Permission denied", str(self))
        return real_exists(self, *args, **kwargs)

    monkeypatch.setattr(Path, "exists", no_search_permission)
    result = CliRunner().invoke(app, ["--config", str(config), "status"])
    assert result.exit_code == 74, result.output
    assert result.stderr == f"spamlearn: error: account alice: Permission denied: {tmp_path}/u/alice.joblib\n"
    assert result.stdout.startswith("bob: model ")
    result = CliRunner().invoke(app, ["--config", str(config), "status", "--json"])
    assert result.exit_code == 74, result.output
    alice, bob = json.loads(result.stdout)
    assert alice["exit_code"] == 74 and "Permission denied" in alice["error"]
    assert bob["error"] is None and bob["model_counts"] == {"spam": 0, "ham": 0}


def test_status_names_the_user_an_account_trains_for_when_its_login_does_not(tmp_path):
    """``user = "alice"`` beside the login alice*spamlearn picks her model and
    her verdicts, and `status` did not show it anywhere."""
    config = status_config(tmp_path)
    result = CliRunner().invoke(app, ["--config", str(config), "status"])
    assert result.exit_code == 0, result.output
    assert f"alice (user alice): model {tmp_path / 'u' / 'alice.joblib'} (0 spam" in result.stdout
    assert f"bob: model {tmp_path / 'model.joblib'} (0 spam" in result.stdout  # user = login: not repeated
    result = CliRunner().invoke(app, ["--config", str(config), "status", "--json"])
    assert [(row["account"], row["user"]) for row in json.loads(result.stdout)] == [("alice", "alice"),
                                                                                 ("bob", "bob")]


def test_status_shows_a_folders_undecided_copies(tmp_path):
    """Copies met in a spam and a ham folder on one pass wait, unlearned,
    until one is left (docs/imap-trainer.md): `status` did not show them,
    and a copy left in both folders waits for ever."""
    from spamlearn.imap.trainer import store_for

    config = status_config(tmp_path)
    settings = load_settings(config)
    bob = load_accounts(settings, ["bob"])[0]
    with store_for(settings, bob).session() as session:
        session.set_state("imap:bob:Junk", FolderState(last_uid=9, undecided={4: "d1", 7: "d2"}).to_json())
        session.set_state("imap:bob:INBOX", FolderState(last_uid=3).to_json())
    result = CliRunner().invoke(app, ["--config", str(config), "status", "--account", "bob"])
    assert result.exit_code == 0, result.output
    junk, = (line for line in result.stdout.splitlines() if line.strip().startswith("Junk "))
    inbox, = (line for line in result.stdout.splitlines() if line.strip().startswith("INBOX "))
    assert junk.endswith("undecided 2") and "undecided" not in inbox
    result = CliRunner().invoke(app, ["--config", str(config), "status", "--account", "bob", "--json"])
    (row,) = json.loads(result.stdout)
    assert {f["folder"]: f["undecided"] for f in row["folders"]} == {"INBOX": 0, "Junk": 2}


FOLDERS = [FolderInfo("INBOX", ()), FolderInfo("Junk", ("\\Junk",)), FolderInfo("Trash", ("\\Trash",)),
           FolderInfo("Archive", ("\\Archive",)), FolderInfo("Lists/python", ()),
           FolderInfo("Sent", ("\\Sent",))]


def test_resolve_folders_precedence_literal_ignore_spam_ham():
    acc = account(spam_folders=["\\Junk"], ham_folders=["*"], ignore_folders=["\\Trash", "Sent"])
    plan, missing = resolve_folders(acc, FOLDERS)
    assert plan == [("Junk", "spam"), ("Archive", "ham"), ("INBOX", "ham"), ("Lists/python", "ham")]
    assert missing == []
    # a literal name wins over ignore_folders
    acc = account(spam_folders=["Junk"], ham_folders=["Trash"], ignore_folders=["\\Trash"])
    assert resolve_folders(acc, FOLDERS)[0] == [("Junk", "spam"), ("Trash", "ham")]


def test_resolve_folders_reports_missing_folders_and_special_use():
    acc = account(spam_folders=["Spam", "\\Junk"], ham_folders=["inbox", "Nope/*"])
    plan, missing = resolve_folders(acc, [FolderInfo("INBOX", ())])
    assert plan == [("INBOX", "ham")]  # INBOX is case-insensitive; a pattern may match nothing
    assert [(name, label) for name, label, _ in missing][:2] == [("Spam", "spam"), ("\\Junk", "spam")]
    assert "folder 'Spam' does not exist" in missing[0][2]
    assert "ham folders Nope/* are not trained either" in missing[2][2]       # no spam folder found


def test_a_ham_pattern_takes_nothing_below_junk_or_trash_nor_anything_without_a_spam_folder():
    """(A helper's review: Junk/Phishing and Trash/2025 were learned as ham
    with the documented spam_folders = ["\\Junk"], ham_folders = ["*"]; and a
    server without the flag had its real spam folder trained as ham.)"""
    folders = [FolderInfo("INBOX", (), "/"), FolderInfo("Junk", ("\\Junk",), "/"),
               FolderInfo("Junk/Phishing", (), "/"), FolderInfo("Trash", ("\\Trash",), "/"),
               FolderInfo("Trash/2025", (), "/"), FolderInfo("Junkyard", (), "/"),
               FolderInfo("Archive", (), "/")]
    acc = account(spam_folders=["\\Junk"], ham_folders=["*"], ignore_folders=["\\Trash"])
    plan, missing = resolve_folders(acc, folders)
    assert plan == [("Junk", "spam"), ("Archive", "ham"), ("INBOX", "ham"), ("Junkyard", "ham")]
    assert missing == []
    unflagged = [FolderInfo("INBOX", (), "/"), FolderInfo("Spam", (), "/"), FolderInfo("Archive", (), "/")]
    plan, missing = resolve_folders(acc, unflagged)
    assert plan == [] and [name for name, _, _ in missing] == ["\\Junk", "\\Junk"]
    assert "ham folders * are not trained either" in missing[1][2]
    pattern = account(spam_folders=["Spam*"], ham_folders=["*"])
    plan, missing = resolve_folders(pattern, [FolderInfo("Junk", (), "/"), FolderInfo("INBOX", (), "/")])
    assert plan == [] and "no folder is a spam folder (Spam*)" in missing[0][2]
    two = account(spam_folders=["Spam*", "Pourriel*"], ham_folders=["*"])
    plan, missing = resolve_folders(two, [FolderInfo("Junk", (), "/"), FolderInfo("INBOX", (), "/")])
    assert [(name, label) for name, label, _ in missing] == [("Spam*, Pourriel*", "spam")]
    named = account(spam_folders=["\\Junk", "Spam"], ham_folders=["INBOX", "*"])
    assert resolve_folders(named, unflagged)[0] == [("Spam", "spam"), ("Archive", "ham"), ("INBOX", "ham")]
    literal_ham = account(spam_folders=["\\Junk"], ham_folders=["INBOX", "*"])
    assert resolve_folders(literal_ham, unflagged)[0] == [("INBOX", "ham")]    # named: still trained
    # a spam pattern matching nothing beside named ham folders: said too (it passed silently)
    named_ham = account(spam_folders=["Spam*"], ham_folders=["INBOX"])
    plan, missing = resolve_folders(named_ham, [FolderInfo("Junk", (), "/"), FolderInfo("INBOX", (), "/")])
    assert plan == [("INBOX", "ham")]
    assert [(label, problem) for _, label, problem in missing] == [("spam",
        "account alice@mail.example.org: no folder is a spam folder (Spam*), so no spam is learned")]
    # no spam folder given: the server's \\Junk folder, and what is below it, is still not ham
    ham_only = account(spam_folders=[], ham_folders=["*"])
    expected = [("Archive", "ham"), ("INBOX", "ham"), ("Junkyard", "ham")]
    assert resolve_folders(ham_only, folders) == (expected, [])


def test_brackets_in_a_folder_name_are_letters_not_a_pattern():
    folders = [FolderInfo(name, (), "/") for name in ("[Gmail]/Spam", "G/Spam", "INBOX")]
    acc = account(spam_folders=["[Gmail]/Spam"], ham_folders=["INBOX"])
    plan, missing = resolve_folders(acc, folders)
    assert plan == [("[Gmail]/Spam", "spam"), ("INBOX", "ham")] and missing == []
    typo = account(spam_folders=["[Gmail]/Junk"], ham_folders=["INBOX"])
    assert [name for name, _, _ in resolve_folders(typo, folders)[1]] == ["[Gmail]/Junk"]
    wild = account(spam_folders=["[Gmail]/*"], ham_folders=["INBOX"])
    assert resolve_folders(wild, folders)[0] == [("[Gmail]/Spam", "spam"), ("INBOX", "ham")]


def test_folder_state_round_trips_and_survives_damage(caplog):
    state = FolderState(uidvalidity=7, last_uid=42, uidnext=43, highestmodseq=9,
                        deferred={40: 1.5e9, 41: 1.6e9}, updated_at=1.7e9, deleted={38, 12})
    assert FolderState.from_json(state.to_json(), "x") == state
    # written before the trainer watched \Deleted messages: no "deleted" key
    older = ('{"uidvalidity":7,"last_uid":42,"uidnext":43,"highestmodseq":9,'
             '"deferred":[[40,1.5e9]],"updated_at":1.7e9}')
    assert FolderState.from_json(older, "x") == FolderState(7, 42, 43, 9, {40: 1.5e9}, 1.7e9)
    assert "unreadable" not in caplog.text
    assert FolderState.from_json(None, "x") == FolderState()
    assert FolderState.from_json("{not json", "acct Junk") == FolderState()  # rescan: safe
    assert "acct Junk: unreadable folder state" in caplog.text


def test_folder_state_writes_deleted_and_unreadable_only_when_it_has_some():
    """The release before them reads a state with ``cls(**data)``: a
    "deleted" key, even [], made it rescan every folder, and in a shared
    model a rescan can undo another user's verdict (a helper's review)."""
    state = FolderState(uidvalidity=7, last_uid=42, uidnext=43, highestmodseq=9,
                        deferred={40: 1.5e9}, updated_at=1.7e9)
    # what that release wrote for this state, byte for byte
    assert state.to_json() == ('{"uidvalidity":7,"last_uid":42,"uidnext":43,"highestmodseq":9,'
                               '"deferred":[[40,1500000000.0]],"updated_at":1700000000.0}')
    assert FolderState.from_json(state.to_json(), "x") == state
    watching = FolderState(7, 42, 43, 9, {}, 1.7e9, deleted={12}, unreadable={30: 2, 31: 0})
    data = json.loads(watching.to_json())
    assert (data["deleted"], data["unreadable"]) == ([12], [[30, 2], [31, 0]])
    assert FolderState.from_json(watching.to_json(), "x") == watching


def test_redactor_scrubs_the_password_from_log_records():
    import logging

    record = logging.LogRecord("imapclient", logging.DEBUG, __file__, 1, "> LOGIN alice %s", ("hunter2",),
                               None)
    assert _Redactor("hunter2").filter(record)
    assert "hunter2" not in record.getMessage() and "********" in record.getMessage()


def test_the_run_lock_made_by_root_is_the_model_folders_owners(tmp_path):
    """A `spamlearn train` run once by root by hand must not lock the mail
    user's cron runs out of the run lock (a helper's review: exit 78 after)."""
    import os

    from spamlearn.imap.cli import _run_lock

    owner = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    os.chown(tmp_path, *owner)
    lock = tmp_path / "models" / ".spamlearn-train-0123456789ab.lock"
    with _run_lock(lock, wait=False):
        pass
    for made in (lock.parent, lock):
        assert (made.stat().st_uid, made.stat().st_gid) == owner, made
