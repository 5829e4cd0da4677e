"""The rendered imapsieve files: valid for Dovecot and sievec, and saying what the options say."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from spamlearn.config import load_settings
from spamlearn.errors import ConfigError
from spamlearn.sieve.install import install, staged_path
from spamlearn.sieve.options import SieveOptions, check_user_name
from spamlearn.sieve.templates import render_files

ROOT = Path(__file__).resolve().parents[2]
DOVECONF = "/usr/bin/doveconf"


def rendered(options: SieveOptions) -> dict[str, str]:
    return {f.path.name: f.text for f in render_files(options)}


def test_defaults_match_the_debian_layout():
    files = {str(f.path): f for f in render_files(SieveOptions())}
    assert set(files) == {
        "/etc/dovecot/conf.d/90-spamlearn-imapsieve.conf",
        "/etc/dovecot/sieve/spamlearn/report-spam.sieve",
        "/etc/dovecot/sieve/spamlearn/report-ham.sieve",
        "/usr/local/lib/spamlearn/sieve-pipe/spamlearn-report",
    }
    assert files["/usr/local/lib/spamlearn/sieve-pipe/spamlearn-report"].mode == 0o755
    conf = files["/etc/dovecot/conf.d/90-spamlearn-imapsieve.conf"].text
    for line in ("mail_plugins = $mail_plugins imap_sieve",
                 "sieve_plugins = sieve_imapsieve sieve_extprograms",
                 "sieve_global_extensions = +vnd.dovecot.pipe",
                 "sieve_pipe_bin_dir = /usr/local/lib/spamlearn/sieve-pipe",
                 'imapsieve_mailbox1_name = "Junk"', "imapsieve_mailbox1_causes = COPY",
                 "imapsieve_mailbox2_name = *", 'imapsieve_mailbox2_from = "Junk"'):
        assert line in conf


def test_the_ham_script_skips_trash_and_not_ham_folders():
    text = rendered(SieveOptions(trash_folder="Deleted Items",
                                 not_ham_folders=("Trash/*", "Spam Archive")))["report-ham.sieve"]
    assert ('if string :matches "${mailbox}" ["Junk", "Junk/*", "Junk.*", "Deleted Items", '
            '"Deleted Items/*", "Deleted Items.*", "Trash/*", "Spam Archive"]') in text
    assert 'pipe :copy "spamlearn-report" ["ham", "${username}"];' in text


def test_append_rule_and_rule_numbering():
    conf = rendered(SieveOptions(append_rule=True, first_rule=3))["90-spamlearn-imapsieve.conf"]
    assert "imapsieve_mailbox3_causes = COPY APPEND" in conf
    assert "imapsieve_mailbox4_causes = COPY" in conf
    assert "imapsieve_mailbox1_" not in conf


def test_a_trailing_slash_in_the_url_is_dropped():
    assert SieveOptions(http_url="http://127.0.0.1:8731/").http_url == "http://127.0.0.1:8731"


def test_the_pipe_program_uses_absolute_paths_only():
    text = rendered(SieveOptions(http_url="http://127.0.0.1:8731",
                                 http_token_file=Path("/etc/spamlearn/learn.token")))["spamlearn-report"]
    assert text.startswith("#!/bin/sh\n")
    commands = {"cat", "date", "mv", "rm", "curl"}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for command in commands:
            assert f" {command} " not in f" {line} ", line  # always /bin/... or /usr/bin/...
    assert "HTTP_URL='http://127.0.0.1:8731'" in text
    assert "TOKEN_FILE='/etc/spamlearn/learn.token'" in text


@pytest.mark.parametrize("options", [
    SieveOptions(),
    SieveOptions(spam_folder="Junk E-mail", trash_folder="Deleted Items", append_rule=True,
                 not_ham_folders=("Trash/*",)),
    SieveOptions(spam_folder="INBOX/Spam", first_rule=5),
], ids=["default", "outlook-names", "subfolder"])
def test_install_compiles_with_sievec_and_the_config_parses(tmp_path, options):
    written = install(options, dest=tmp_path)
    assert staged_path(options.sieve_dir / "report-ham.svbin", tmp_path) in written
    conf = staged_path(options.conf_dir / "90-spamlearn-imapsieve.conf", tmp_path)
    result = subprocess.run([DOVECONF, "-c", str(conf), "-h",
                             f"plugin/imapsieve_mailbox{options.first_rule}_name"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == options.spam_folder
    spool = staged_path(options.spool, tmp_path)
    assert {p.name for p in spool.iterdir()} == {"tmp", "new", "failed", ".drain.lock"}
    assert spool.stat().st_mode & 0o7777 == 0o2770


@pytest.mark.parametrize("bad, match", [
    ({"spam_folder": 'Ju"nk'}, "invalid spam folder"),
    ({"trash_folder": "Tr${x}ash"}, "invalid trash folder"),
    ({"not_ham_folders": ("a\nb",)}, "invalid not-ham folder"),
    ({"spam_folder": "Junk", "trash_folder": "Junk"}, "cannot also be"),
    ({"spool": Path("relative/spool")}, "absolute path"),
    ({"spool": Path("/var/spool/it's")}, "absolute path"),
    ({"http_url": "http://x/'; rm -rf /"}, "http_url"),
    ({"http_token_file": Path("/etc/token")}, "without http_url"),
    ({"first_rule": 0}, "first_rule"),
])
def test_bad_options_are_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        SieveOptions(**bad)


def test_options_from_the_config_file_then_flags(tmp_path):
    config = tmp_path / "spamlearn.toml"
    config.write_text('[sieve]\nspool = "spool"\nspam_folder = "Spam"\nappend_rule = true\n'
                      'not_ham_folders = ["Archive"]\n')
    settings = load_settings(config)
    options = SieveOptions.from_settings(settings, spam_folder="Junk", append_rule=None)
    assert options.spool == tmp_path / "spool"  # relative to the config file
    assert (options.spam_folder, options.append_rule, options.not_ham_folders) == ("Junk", True, ("Archive",))


@pytest.mark.parametrize("table, match", [
    ('spoool = "/x"', "unknown key"),
    ("append_rule = 1", "true or false"),
    ('not_ham_folders = "Trash"', "list of folder names"),
    ("spam_folder = 3", "must be a string"),
])
def test_bad_sieve_tables_are_config_errors(tmp_path, table, match):
    config = tmp_path / "spamlearn.toml"
    config.write_text(f"[sieve]\n{table}\n")
    with pytest.raises(ConfigError, match=match):
        SieveOptions.from_settings(load_settings(config))


def test_a_bad_value_from_the_file_names_the_file_and_one_from_a_flag_does_not(tmp_path):
    config = tmp_path / "spamlearn.toml"
    config.write_text("[sieve]\nfirst_rule = 0\n")
    with pytest.raises(ConfigError) as from_file:
        SieveOptions.from_settings(load_settings(config))
    assert str(from_file.value) == (f"config file {config}: [sieve]: first_rule must be between 1 and 1000, "
                                    "got 0")
    config.write_text("")
    with pytest.raises(ConfigError) as from_flag:
        SieveOptions.from_settings(load_settings(config), first_rule=0)
    assert str(from_flag.value) == "first_rule must be between 1 and 1000, got 0"


@pytest.mark.parametrize("user", ["alice", "alice@example.org", "first.last+tag", "u_1-2=3"])
def test_user_names_accepted(user):
    assert check_user_name(user) == user


@pytest.mark.parametrize("user", ["", ".alice", "a/b", "a,b", "a b", "é", "x" * 129])
def test_user_names_refused(user):
    with pytest.raises(ConfigError):
        check_user_name(user)


def test_the_shipped_examples_are_what_print_renders():
    """scripts/dovecot/ is what an admin reads: it must not drift from the templates."""
    for rendered_file in render_files(SieveOptions()):
        shipped = ROOT / "scripts" / "dovecot" / rendered_file.path.name
        assert shipped.read_text() == rendered_file.text, f"regenerate {shipped}"
