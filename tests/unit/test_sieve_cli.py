"""``spamlearn sieve print|install|uninstall`` as an admin types them."""

from __future__ import annotations

import os
import stat

import pytest
from typer.testing import CliRunner

from spamlearn.cli import ExitCode, app
from spamlearn.sieve import SieveOptions, install

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_every_sieve_command_has_help():
    for command in ("print", "install", "uninstall", "drain"):
        result = run("sieve", command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_print_shows_all_four_files_for_the_given_setup():
    result = run("sieve", "print", "--spam-folder", "Spam", "--trash-folder", "Deleted Items",
                 "--spool", "/srv/spool", "--http", "http://127.0.0.1:8731", "--append-rule")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count("# ==> ") == 4
    assert 'imapsieve_mailbox1_name = "Spam"' in out
    assert "imapsieve_mailbox1_causes = COPY APPEND" in out
    assert '["Spam", "Spam/*", "Spam.*", "Deleted Items", "Deleted Items/*", "Deleted Items.*"]' in out
    assert "SPOOL='/srv/spool'" in out and "HTTP_URL='http://127.0.0.1:8731'" in out


def test_print_one_file():
    result = run("sieve", "print", "--file", "report-spam.sieve")
    assert result.exit_code == 0
    assert result.output.startswith("# report-spam.sieve")
    result = run("sieve", "print", "--file", "nope")
    assert result.exit_code == 2
    assert "one of: 90-spamlearn-imapsieve.conf" in result.output


def test_bad_flags_are_one_line_config_errors():
    result = run("sieve", "print", "--spam-folder", 'Ju"nk')
    assert result.exit_code == 78
    assert result.output.startswith("spamlearn: error: invalid spam folder")
    assert "Traceback" not in result.output


def test_config_file_sets_the_defaults(tmp_path):
    config = tmp_path / "spamlearn.toml"
    config.write_text('[sieve]\nspam_folder = "Junk E-mail"\nnot_ham_folders = ["Archive/*"]\n')
    result = run("--config", config, "sieve", "print", "--file", "report-ham.sieve")
    assert ('["Junk E-mail", "Junk E-mail/*", "Junk E-mail.*", "Trash", "Trash/*", "Trash.*", '
            '"Archive/*"]') in result.output


def test_install_then_uninstall(tmp_path):
    args = ["--conf-dir", tmp_path / "conf", "--sieve-dir", tmp_path / "sieve",
            "--pipe-bin-dir", tmp_path / "bin"]
    result = run("sieve", "install", "--spool", tmp_path / "spool", *args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sieve" / "report-spam.svbin").is_file()
    assert (tmp_path / "bin" / "spamlearn-report").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "spool" / "new").is_dir()
    result = run("sieve", "uninstall", *args)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "sieve").exists()
    assert not (tmp_path / "bin" / "spamlearn-report").exists()
    assert not (tmp_path / "conf" / "90-spamlearn-imapsieve.conf").exists()
    assert (tmp_path / "spool" / "new").is_dir()  # kept for a last drain


def test_uninstall_with_dest_removes_what_install_staged_there_and_nothing_else(tmp_path):
    """``install --dest`` stages for a package; ``uninstall`` had no --dest,
    so a staging root could only be cleaned by hand (a walkthrough)."""
    real = tmp_path / "real"
    args = ["--conf-dir", real / "conf", "--sieve-dir", real / "sieve", "--pipe-bin-dir", real / "bin"]
    assert run("sieve", "install", "--no-compile", "--spool", real / "spool", *args).exit_code == 0
    staged = tmp_path / "stage"
    result = run("sieve", "install", "--no-compile", "--spool", real / "spool", *args, "--dest", staged)
    assert result.exit_code == 0, result.output
    staged_script = staged / (real / "sieve" / "report-spam.sieve").relative_to("/")
    assert staged_script.is_file()
    result = run("sieve", "uninstall", *args, "--dest", staged)
    assert result.exit_code == 0, result.output
    assert f"removed {staged_script}" in result.output
    assert not staged_script.parent.exists()
    assert not (staged / (real / "bin" / "spamlearn-report").relative_to("/")).exists()
    assert not (staged / (real / "conf" / "90-spamlearn-imapsieve.conf").relative_to("/")).exists()
    for kept in ("sieve/report-spam.sieve", "bin/spamlearn-report", "conf/90-spamlearn-imapsieve.conf"):
        assert (real / kept).is_file(), kept


def test_relative_flag_paths_are_from_the_current_folder_not_the_config_files(tmp_path, monkeypatch):
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    config = config_dir / "spamlearn.toml"
    config.write_text('[sieve]\nspool = "from-file"\n')
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    shown = run("--config", config, "sieve", "print", "--file", "spamlearn-report").output
    assert f"SPOOL='{config_dir / 'from-file'}'" in shown
    shown = run("--config", config, "sieve", "print", "--file", "spamlearn-report", "--spool", "mine").output
    assert f"SPOOL='{work / 'mine'}'" in shown


def test_install_makes_folders_the_mail_user_can_enter_whatever_the_umask(tmp_path):
    """An admin's umask 027 made the new folders 0750 root:root: Dovecot's
    mail user could not read the scripts nor run the pipe program, and
    every move into Junk went unlearned (a helper's review)."""
    options = SieveOptions(spool=tmp_path / "var/spool/spamlearn", conf_dir=tmp_path / "conf.d",
                           sieve_dir=tmp_path / "sieve/spamlearn", pipe_bin_dir=tmp_path / "lib/sieve-pipe")
    old = os.umask(0o027)
    try:
        install(options, compile_scripts=False)
    finally:
        os.umask(old)
    for folder in (options.sieve_dir, options.sieve_dir.parent, options.pipe_bin_dir,
                   options.pipe_bin_dir.parent, options.spool.parent, options.spool.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, (folder, oct(folder.stat().st_mode))
    assert stat.S_IMODE(options.spool.stat().st_mode) == 0o2770


@pytest.mark.parametrize("flag", ["--spam-folder", "--trash-folder"])
@pytest.mark.parametrize("name", ["*", "Junk*", "Sp?m", "%"])
def test_a_spam_or_trash_folder_with_wildcards_is_refused(flag, name):
    """Dovecot reads them as wildcards: a spam folder '*' made every move spam."""
    result = runner.invoke(app, ["sieve", "print", flag, name])
    assert result.exit_code == ExitCode.CONFIG, result.output
    assert "without the wildcards" in result.output


def test_install_unknown_mail_user(tmp_path):
    result = run("sieve", "install", "--dest", tmp_path, "--mail-user", "no-such-user-xyz")
    assert result.exit_code == 78
    assert "no such user" in result.output


def test_install_refuses_to_replace_a_fifo_or_device_where_a_file_goes(tmp_path):
    """Each file is written beside its name and renamed over it, which
    replaces whatever has the name (``eval --plot /dev/full`` did so as root)."""
    conf = tmp_path / "conf"
    conf.mkdir()
    fifo = conf / "90-spamlearn-imapsieve.conf"
    os.mkfifo(fifo)
    result = run("sieve", "install", "--no-compile", "--spool", tmp_path / "spool", "--conf-dir", conf,
                 "--sieve-dir", tmp_path / "sieve", "--pipe-bin-dir", tmp_path / "bin")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "a FIFO, not a regular file to replace" in result.output, result.output
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
