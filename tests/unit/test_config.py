"""Settings: file, then environment, then flags; every bad value is a ConfigError."""

from __future__ import annotations

import json
import math
import os
import re
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spamlearn.cli import ExitCode, app
from spamlearn.config import Settings, check_user_name, load_settings
from spamlearn.errors import ConfigError
from spamlearn.imap import load_accounts
from spamlearn.server_settings import ServerSettings, load_server_settings
from spamlearn.sieve import SieveOptions
from spamlearn.sieve import check_user_name as sieve_check_user_name

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path, text):
    path = tmp_path / "spamlearn.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(isolated_home):
    settings = load_settings()
    assert settings.config_file is None
    assert settings.model_path == isolated_home / "data" / "spamlearn" / "model.joblib"
    assert settings.effective_ledger_path == settings.model_path.with_name("model.ledger")
    assert (settings.ham_cutoff, settings.spam_cutoff) == (0.20, 0.90)


def test_file_then_environment_then_overrides(tmp_path, monkeypatch):
    config = write(tmp_path, '[model]\npath = "models/m.joblib"\nham_cutoff = 0.1\nspam_cutoff = 0.8\n')
    settings = load_settings(config)
    assert settings.model_path == tmp_path / "models" / "m.joblib", "relative to the config file"
    assert settings.ham_cutoff == 0.1
    monkeypatch.setenv("SPAMLEARN_SPAM_CUTOFF", "0.95")
    assert load_settings(config).spam_cutoff == 0.95
    assert load_settings(config, spam_cutoff=0.99).spam_cutoff == 0.99
    monkeypatch.setenv("SPAMLEARN_CONFIG", str(config))
    assert load_settings().config_file == config


def test_a_model_named_above_the_file_gets_its_own_ledger_not_the_configured_one(tmp_path):
    config = write(tmp_path, '[model]\npath = "main/m.joblib"\nledger = "main/m.ledger"\n')
    assert load_settings(config, env={}).effective_ledger_path == tmp_path / "main" / "m.ledger"
    trial = tmp_path / "trial.joblib"
    for settings in (load_settings(config, env={"SPAMLEARN_MODEL": str(trial)}),
                     load_settings(config, env={}, model_path=trial)):
        assert settings.effective_ledger_path == tmp_path / "trial.ledger"
    # A ledger named at the same level as the model, or above it, still counts.
    both = load_settings(config, env={"SPAMLEARN_MODEL": str(trial), "SPAMLEARN_LEDGER": "/x/l"})
    assert both.effective_ledger_path == Path("/x/l")
    assert load_settings(config, env={"SPAMLEARN_LEDGER": "/x/l"}).effective_ledger_path == Path("/x/l")
    flag = load_settings(config, env={"SPAMLEARN_LEDGER": "/x/l"}, model_path=trial)
    assert flag.effective_ledger_path == tmp_path / "trial.ledger"
    # The configured model named again (a unit file that sets it redundantly),
    # however spelt, keeps its ledger, even past another model named between.
    for again in (tmp_path / "main" / "m.joblib", tmp_path / "main" / ".." / "main" / "m.joblib"):
        same = load_settings(config, env={"SPAMLEARN_MODEL": str(again)})
        assert same.effective_ledger_path == tmp_path / "main" / "m.ledger"
        back = load_settings(config, env={"SPAMLEARN_MODEL": str(trial)}, model_path=again)
        assert back.effective_ledger_path == tmp_path / "main" / "m.ledger"
    (tmp_path / "main").mkdir()
    (tmp_path / "main" / "m.joblib").write_bytes(b"x")
    (tmp_path / "soft.joblib").symlink_to(tmp_path / "main" / "m.joblib")
    linked = load_settings(config, env={}, model_path=tmp_path / "soft.joblib")
    assert linked.effective_ledger_path == tmp_path / "main" / "m.ledger"
    # A hard link is another name that a learn through it would split off
    # (a rename replaces one name): it is another model, with its own ledger.
    os.link(tmp_path / "main" / "m.joblib", tmp_path / "hard.joblib")
    hard = load_settings(config, env={}, model_path=tmp_path / "hard.joblib")
    assert hard.effective_ledger_path == tmp_path / "hard.ledger"


@pytest.mark.parametrize("text, message", [
    ("[model]\nham_cutoff = 0.9\nspam_cutoff = 0.2\n", "cutoffs"),
    ("[model]\nscan_limit = 'lots'\n", "scan_limit"),
    ("[model]\nunknown_key = 1\n", "unknown key"),
    ("[model\n", "config file"),
    ("model = 3\n", "must be a table"),
])
def test_bad_files_are_config_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


def test_missing_explicit_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_per_user_models(tmp_path):
    config = write(tmp_path, '[model]\npath = "/srv/m.joblib"\n'
                             '[users]\ndir = "/srv/users"\nown_model = ["alice"]\n'
                             '[[accounts]]\nusername = "bob"\nown_model = true\n'
                             '[[accounts]]\nusername = "carol"\n')
    settings = load_settings(config)
    assert settings.model_path_for("alice") == Path("/srv/users/alice.joblib")
    assert settings.model_path_for("bob") == Path("/srv/users/bob.joblib")
    assert settings.model_path_for("carol") == Path("/srv/m.joblib")
    assert settings.section("accounts")[0]["username"] == "bob"
    with pytest.raises(ConfigError, match="invalid user"):
        settings.user_model_path("../etc/passwd")


# -- A wrong config is one line naming the file and the key, never a traceback ----------------

def test_a_file_that_is_not_utf8_names_the_file_and_line(tmp_path):
    path = tmp_path / "spamlearn.toml"
    path.write_bytes(b"[model]\n# M\xfcller\n")
    with pytest.raises(ConfigError, match=f"{re.escape(str(path))}: line 2: byte 0xfc is not UTF-8"):
        load_settings(path)


def test_a_file_saved_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "spamlearn.toml"
    path.write_bytes(b"\xef\xbb\xbf[model]\nspam_cutoff = 0.95\n")     # Windows Notepad's UTF-8
    assert load_settings(path, env={}).spam_cutoff == 0.95


def test_cutoffs_out_of_order_name_the_config_file(tmp_path):
    path = tmp_path / "spamlearn.toml"
    path.write_text("[model]\nham_cutoff = 0.5\nspam_cutoff = 0.4\n")
    with pytest.raises(ConfigError, match=f"config file {re.escape(str(path))} .*ham_cutoff <= spam_cutoff"):
        load_settings(path, env={})


@pytest.mark.parametrize("value", ["5", "[[1]]", '"alice"', "{ alice = true }", '["a b"]', '["../x"]',
                                   '[".hidden"]', '[""]'])
def test_own_model_must_be_a_list_of_user_names(tmp_path, value):
    path = write(tmp_path, f"[users]\nown_model = {value}\n")
    with pytest.raises(ConfigError, match=f"{re.escape(str(path))}: \\[users\\] own_model"):
        load_settings(path)


def test_own_model_names_are_those_the_sieve_and_the_service_accept(tmp_path):
    names = ["alice", "alice@example.org", "first.last+tag", "a_b=c-d"]
    settings = load_settings(write(tmp_path, f"[users]\nown_model = {json.dumps(names)}\n"))
    assert settings.own_model_users == frozenset(names)
    assert all(check_user_name(name) for name in names)
    assert check_user_name is sieve_check_user_name, "one definition of a user name"


@pytest.mark.parametrize("text, message", [
    ("accounts = 5\n", r"accounts must be an array of tables, written \[\[accounts\]\], got 5"),
    ('[accounts]\nhost = "h"\n', r"accounts must be an array of tables.*got a table"),
    ("accounts = [1]\n", r"accounts\[0\] must be a table"),
    ('[[accounts]]\nusername = "bob"\nown_model = "yes"\n', r"accounts\[0\] own_model must be true or false"),
    ("[[accounts]]\nown_model = true\n", r"accounts\[0\] username is required with own_model"),
    ('[[accounts]]\nusername = "bob smith"\nown_model = true\n', r"accounts\[0\] username: invalid user"),
])
def test_accounts_read_for_own_models_are_checked(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


@pytest.mark.parametrize("text, message", [
    ("[modle]\npath = 'm.joblib'\n",
     r"unknown top-level table\(s\) or key\(s\): modle \(did you mean \[model\]\?\)"),
    ("[sevrer]\nport = 1\n", r"unknown top-level .*: sevrer \(did you mean \[server\]\?\)"),
    ("ham_cutoff = 0.1\n",
     r"unknown top-level .*: ham_cutoff; known: \[model\], \[users\], \[server\], "
     r"\[\[accounts\]\], \[sieve\]"),
    ("[model]\nham_cutof = 0.1\n",
     r"unknown key\(s\) in \[model\]: ham_cutof \(did you mean ham_cutoff\?\)"),
    ("[users]\nown_models = ['alice']\n", r"unknown key\(s\) in \[users\]: own_models"),
])
def test_unknown_tables_and_keys_are_refused_with_the_known_ones(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"config file {re.escape(str(path))}: {message}"):
        load_settings(path)


def toml_examples():
    """Every ```toml block of the README and docs/, so that no documented table is refused."""
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```toml\n(.*?)```", doc.read_text(encoding="utf-8"), re.DOTALL):
            text = textwrap.dedent(block)
            yield pytest.param(text, id=f"{doc.name}:{text.splitlines()[0]}")


@pytest.mark.parametrize("text", list(toml_examples()))
def test_the_documented_examples_are_accepted(tmp_path, text):
    load_settings(write(tmp_path, text), env={})


@pytest.mark.parametrize("text", list(toml_examples()))
def test_the_documented_examples_are_accepted_with_their_commented_settings_uncommented(tmp_path, text):
    """A commented setting is one to turn on: "timeout = 60, retries = 3" on one
    line, uncommented, was a TOML error."""
    uncommented = re.sub(r"(?m)^# ?(?=[a-z_]+ = )", "", text)
    load_settings(write(tmp_path, uncommented), env={})


# Every key of every table with a value of the wrong type: (table, key, TOML value).
WRONG_TYPES = [
    ("model", "path", "5"), ("model", "path", '""'), ("model", "ledger", "[]"),
    ("model", "ham_cutoff", '"0.2"'), ("model", "spam_cutoff", "true"), ("model", "scan_limit", "1e6"),
    ("model", "min_messages", '"10"'), ("model", "lock_timeout", "true"),
    ("users", "dir", "[1]"), ("users", "dir", '""'),
    ("server", "host", "1"), ("server", "port", "8731.5"), ("server", "workers", '"2"'),
    ("server", "max_body_size", "true"), ("server", "reload_interval", '"1"'),
    ("server", "per_user", '"yes"'), ("server", "user_header", "1"),
    ("server", "max_user_models", "1.5"), ("server", "learn_lock_timeout", "[]"),
    ("server", "access_log", "1"), ("server", "learn_token", "12345678901234567890"),
    ("server", "learn_token_file", "5"), ("server", "score_token_file", '""'),
    ("accounts", "name", "5"), ("accounts", "name", '""'), ("accounts", "port", '"993"'),
    ("accounts", "security", "1"), ("accounts", "spam_folders", "5"), ("accounts", "ham_min_age_days", '"3"'),
    ("accounts", "mode", "[]"), ("accounts", "own_model", '"yes"'), ("accounts", "allow_plaintext", "1"),
    ("accounts", "ca_file", "5"), ("accounts", "timeout", '"60"'), ("accounts", "retries", "1.5"),
    ("accounts", "retry_delay", "true"), ("accounts", "batch_size", '"200"'),
    ("sieve", "spool", "5"), ("sieve", "spool", '""'), ("sieve", "spam_folder", "1"),
    ("sieve", "trash_folder", "[]"), ("sieve", "not_ham_folders", '"Trash"'),
    ("sieve", "not_ham_folders", "5"), ("sieve", "not_ham_folders", "{ Trash = 1 }"),
    ("sieve", "append_rule", '"yes"'), ("sieve", "http_url", "1"), ("sieve", "conf_dir", "[]"),
    ("sieve", "first_rule", "1.5"),
]
ACCOUNT = {"host": '"mail.example.org"', "username": '"alice"', "password_env": '"PW"',
           "spam_folders": '["Junk"]'}


def load_table(tmp_path, table, body):
    """The config file with ``[table]`` holding ``body``, read as its subsystem reads it."""
    heading = "[[accounts]]" if table == "accounts" else f"[{table}]"
    path = write(tmp_path, f"{heading}\n{body}")
    path.chmod(0o600)  # a [server] token is refused in a file others can read
    settings = load_settings(path, env={})
    if table == "server":
        load_server_settings(settings, env={})
    elif table == "accounts":
        load_accounts(settings)
    elif table == "sieve":
        SieveOptions.from_settings(settings)
    return settings


@pytest.mark.parametrize("table, key, value", WRONG_TYPES)
def test_a_value_of_the_wrong_type_is_refused_naming_file_and_key(tmp_path, table, key, value):
    lines = {**(ACCOUNT if table == "accounts" else {}), key: value}
    where = re.escape(f"config file {tmp_path / 'spamlearn.toml'}: ")
    with pytest.raises(ConfigError, match=f"^{where}.*{re.escape(key)}") as caught:
        load_table(tmp_path, table, "".join(f"{k} = {v}\n" for k, v in lines.items()))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("table, key, value", [
    ("model", "ham_cutoff", "nan"), ("model", "spam_cutoff", "inf"), ("model", "lock_timeout", "nan"),
    ("model", "lock_timeout", "inf"), ("model", "lock_timeout", "-1"), ("model", "ham_cutoff", "-0.1"),
    ("model", "spam_cutoff", "1.5"), ("model", "min_messages", "-1"), ("model", "scan_limit", "100"),
    ("model", "lock_timeout", "1" + "0" * 400),
    ("server", "reload_interval", "nan"), ("server", "learn_lock_timeout", "inf"),
    ("server", "learn_lock_timeout", "-1"), ("server", "user_header", '"X User"'),
    ("accounts", "timeout", "nan"), ("accounts", "timeout", "1e300"), ("accounts", "retry_delay", "inf"),
    ("accounts", "ham_min_age_days", "nan"), ("accounts", "retries", "-1"),
])
def test_values_out_of_range_or_not_finite_are_refused(tmp_path, table, key, value):
    lines = {**(ACCOUNT if table == "accounts" else {}), key: value}
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_table(tmp_path, table, "".join(f"{k} = {v}\n" for k, v in lines.items()))


@pytest.mark.parametrize("variable, value, message", [
    ("SPAMLEARN_LOCK_TIMEOUT", "nan", "SPAMLEARN_LOCK_TIMEOUT must be a finite number, got nan"),
    ("SPAMLEARN_LOCK_TIMEOUT", "inf", "SPAMLEARN_LOCK_TIMEOUT must be a finite number"),
    ("SPAMLEARN_LOCK_TIMEOUT", "-1", "SPAMLEARN_LOCK_TIMEOUT must be >= 0"),
    ("SPAMLEARN_HAM_CUTOFF", "nan", "SPAMLEARN_HAM_CUTOFF must be a finite number"),
    ("SPAMLEARN_SPAM_CUTOFF", "1e999", "SPAMLEARN_SPAM_CUTOFF must be a finite number"),
    ("SPAMLEARN_SPAM_CUTOFF", "2", "SPAMLEARN_SPAM_CUTOFF must be between 0.0 and 1.0"),
    ("SPAMLEARN_SCAN_LIMIT", "1e6", "SPAMLEARN_SCAN_LIMIT must be an integer, got '1e6'"),
    ("SPAMLEARN_SCAN_LIMIT", "10", "SPAMLEARN_SCAN_LIMIT must be >= 1024"),
])
def test_bad_environment_values_name_the_variable(variable, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(env={variable: value})


def test_a_home_folder_that_does_not_exist_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="SPAMLEARN_MODEL: cannot find the home folder in '~nosuchuser/m'"):
        load_settings(env={"SPAMLEARN_MODEL": "~nosuchuser/m"})
    config = write(tmp_path, '[users]\ndir = "~nosuchuser/x"\n')
    with pytest.raises(ConfigError, match=r"\[users\] dir: cannot find the home folder"):
        load_settings(config, env={})


@pytest.mark.parametrize("variable, value", [
    ("SPAMLEARN_SERVER_RELOAD_INTERVAL", "nan"), ("SPAMLEARN_SERVER_RELOAD_INTERVAL", "inf"),
    ("SPAMLEARN_SERVER_PORT", "8731.0"), ("SPAMLEARN_SERVER_WORKERS", "two"),
])
def test_bad_server_environment_values_name_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        load_server_settings(load_settings(env={}), env={variable: value})


def test_flags_cannot_bring_nan_either():
    with pytest.raises(ConfigError, match="lock_timeout must be a finite number"):
        Settings(lock_timeout=math.nan)
    with pytest.raises(ConfigError, match="reload_interval must be a finite number"):
        ServerSettings(reload_interval=math.nan, workers=1)


@pytest.mark.parametrize("text", [b"# M\xfcller\n[model]\n", b"[users]\nown_model = 5\n", b"[modle]\n",
                                  b"accounts = 5\n", b"[model]\nlock_timeout = nan\n"])
def test_the_command_line_says_one_line_and_exits_78(tmp_path, text):
    path = tmp_path / "spamlearn.toml"
    path.write_bytes(text)
    result = CliRunner().invoke(app, ["--config", str(path), "info"])
    assert result.exit_code == ExitCode.CONFIG, result.output
    assert result.output.startswith(f"spamlearn: error: config file {path}: ")
    assert len(result.output.splitlines()) == 1 and "Traceback" not in result.output


def test_config_dev_null_is_an_empty_config_and_a_folder_or_fifo_is_named(tmp_path):
    from spamlearn.config import find_config_file
    from spamlearn.errors import ConfigError

    assert find_config_file(Path("/dev/null")) == Path("/dev/null")
    assert load_settings(Path("/dev/null")).config_file == Path("/dev/null")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ConfigError, match=r"\(from \$SPAMLEARN_CONFIG\) is a FIFO, not a file"):
        find_config_file(env={"SPAMLEARN_CONFIG": str(tmp_path / "fifo")})
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        find_config_file(env={"SPAMLEARN_CONFIG": str(tmp_path)})
    with pytest.raises(ConfigError, match="does not exist"):
        find_config_file(tmp_path / "missing.toml")


def test_an_own_model_user_is_found_as_the_mta_writes_the_recipient(tmp_path):
    config = write(tmp_path, '[users]\ndir = "u"\nown_model = ["alice@example.org", "Bob"]\n')
    settings = load_settings(config, env={})
    for written in ("alice@example.org", "Alice@Example.ORG", "alice+lists@example.org"):
        assert settings.own_model_name(written) == "alice@example.org"
        assert settings.user_model_path(written) == tmp_path / "u" / "alice@example.org.joblib"
    assert settings.own_model_name("bob") == "Bob"
    for stranger in ("carol@example.org", "alicex@example.org", "+x@example.org", "", None):
        assert not settings.has_own_model(stranger)
    assert settings.model_path_for("carol@example.org") == settings.model_path
    # Names that differ only in case match only as written; a name with a "+".
    config = write(tmp_path, '[users]\nown_model = ["Alice", "alice", "bob+spam@example.org"]\n')
    settings = load_settings(config, env={})
    assert (settings.own_model_name("Alice"), settings.own_model_name("alice")) == ("Alice", "alice")
    assert settings.own_model_name("ALICE") is None and settings.own_model_name("alice+x") == "alice"
    assert settings.own_model_name("Bob+Spam+x@example.org") == "bob+spam@example.org"
    assert settings.own_model_name("bob+spam+x+y@example.org") == "bob+spam@example.org"
    assert settings.own_model_name("ALICE+x") is None


def test_own_model_true_on_an_account_listed_in_users_own_model_keeps_one_model(tmp_path):
    """The account's own_model = true says again what [users] said: "Alice"
    became a second name, and train learned Alice.joblib while the sieve
    (Dovecot's lower-cased alice) learned, and scoring read, alice.joblib."""
    from spamlearn.imap.trainer import store_for

    account = '[[accounts]]\nhost = "{}"\nusername = "{}"\npassword_env = "X"\nspam_folders = ["Junk"]\n' \
              'own_model = true\n'
    accounts = [account.format(f"127.0.0.{n}", name)
                for n, name in enumerate(("Alice", "Bob", "bob+imap"), start=1)]
    config = write(tmp_path, '[users]\ndir = "u"\nown_model = ["alice"]\n' + "".join(accounts))
    settings = load_settings(config, env={})
    assert settings.own_model_users == frozenset({"alice", "Bob"})
    alice, bob, bob_again = load_accounts(settings)
    own = tmp_path / "u"
    assert store_for(settings, alice).model_path == own / "alice.joblib"
    assert store_for(settings, bob).model_path == own / "Bob.joblib"
    assert store_for(settings, bob_again).model_path == own / "Bob.joblib"
    for user, model in (("alice", "alice.joblib"), ("ALICE", "alice.joblib"), ("bob", "Bob.joblib")):
        assert settings.model_path_for(user) == own / model
        assert settings.own_model_name(user) is not None


def test_a_model_name_in_a_folder_this_user_may_not_search_is_not_an_error_yet(tmp_path, monkeypatch):
    """Whether a name is a symlink is asked before anything opens it; a
    folder the user may not search must leave the answer to the store (a
    clear error there), not raise PermissionError (a traceback to the sieve
    drain, a 500 from the service)."""
    from spamlearn.config import model_file
    from spamlearn.modelstore import ModelStore

    locked = tmp_path / "users" / "bob.joblib"

    def refusing(real):
        def call(path, *args, **kwargs):
            if str(path).startswith(str(tmp_path / "users")):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, *args, **kwargs)
        return call

    # As root (CI) the folder itself cannot refuse: both ways of asking do.
    monkeypatch.setattr(os, "lstat", refusing(os.lstat))
    monkeypatch.setattr(os, "stat", refusing(os.stat))
    assert model_file(locked) == locked
    assert ModelStore(locked).model_path == locked
    assert load_settings(env={}, model_path=locked).effective_ledger_path == tmp_path / "users" / "bob.ledger"


def test_a_home_folder_this_user_may_not_search_holds_no_config_file_of_theirs(isolated_home, monkeypatch):
    """A container run with --user and HOME=/root (or setpriv, start-stop-daemon
    --chuid from a root shell): ~/.config/spamlearn/spamlearn.toml cannot be
    looked at.  It was a PermissionError, so every command failed on a file
    it would not have read, and `filter` passed all mail through unscored;
    the next candidate (/etc/spamlearn) is read, or none."""
    real_stat = os.stat

    def refusing(path, *args, **kwargs):
        if str(path).startswith(str(isolated_home)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", refusing)
    assert load_settings(env={}).config_file in (None, Path("/etc/spamlearn/spamlearn.toml"))
