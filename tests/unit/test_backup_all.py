"""`spamlearn backup --all`: every model (the shared one, each user's own) in one
command for cron, one archive each, so that `restore` (which works per model)
can bring back any one of them."""

from __future__ import annotations

import errno
import fcntl
import os
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import spamlearn.backup
from spamlearn.backup import LEDGER_MEMBER, MODEL_MEMBER
from spamlearn.cli import ExitCode, app
from spamlearn.modelstore import ModelStore

runner = CliRunner()
SPAM = "tests/fixtures/sample-spam.eml"
HAM = "tests/fixtures/sample-ham.eml"
#: Own-model users: a user name is a file name (config.USER_NAME_RE), @ and + included.
ALICE, BOB, CAROL, DAVE = "alice@example.org", "bob+spam", "carol", "dave"


def run(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


@pytest.fixture
def config(tmp_path) -> Path:
    """A shared model (1 spam, 1 ham) and own models for alice and bob (1
    spam each) and carol (1 ham); dave has an own model he has not learned yet."""
    live = tmp_path / "live"
    config = tmp_path / "spamlearn.toml"
    config.write_text(f'[model]\npath = "{live / "model.joblib"}"\n[users]\ndir = "{live / "users"}"\n'
                      f'own_model = ["{ALICE}", "{BOB}", "{CAROL}", "{DAVE}"]\n')
    for user, label, message in ((None, "--spam", SPAM), (None, "--ham", HAM), (ALICE, "--spam", SPAM),
                                 (BOB, "--spam", SPAM), (CAROL, "--ham", HAM)):
        learned = run("--config", config, "learn", *(("--user", user) if user else ()), label, message)
        assert learned.exit_code == 0, learned.output
    return config


def user_model(config: Path, user: str) -> Path:
    return config.parent / "live" / "users" / f"{user}.joblib"


def counts(model: Path) -> tuple[int, int]:
    info = ModelStore(model).info()
    return info["n_spam"], info["n_ham"]


def archived_counts(archive: Path, tmp_path: Path) -> tuple[int, int]:
    """The spam and ham an archive's model has learned, restored into a model of its own."""
    fresh = tmp_path / "check" / f"{len(list(tmp_path.glob('check*')))}" / "m.joblib"
    restored = run("--model", fresh, "restore", archive)
    assert restored.exit_code == 0, restored.output
    return counts(fresh)


def test_every_model_gets_an_archive_that_restore_takes_back(config, tmp_path):
    out = tmp_path / "backups" / "Mon"          # the cron line's weekday folder, made here
    out.parent.mkdir()
    result = run("--config", config, "backup", "--all", out)
    assert result.exit_code == 0, result.output
    # One line for the cron log; dave has no model yet, which is no failure.
    assert result.output == f"backed up 4 of 5 models to {out} (1 not learned yet)\n"
    archives = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert archives == ["shared.tar.gz", f"users/{ALICE}.tar.gz", f"users/{BOB}.tar.gz",
                        f"users/{CAROL}.tar.gz"]
    for archive in out.rglob("*.tar.gz"):
        assert oct(archive.stat().st_mode & 0o777) == "0o600"      # what the users' mail taught
        with tarfile.open(archive) as tar:
            assert sorted(tar.getnames()) == [MODEL_MEMBER, LEDGER_MEMBER]
    assert oct(out.stat().st_mode & 0o777) == oct((out / "users").stat().st_mode & 0o777) == "0o700"

    # alice's model, lost since: back from her own archive, nobody else's touched.
    alice = user_model(config, ALICE)
    assert run("--config", config, "learn", "--user", ALICE, "--ham", HAM).exit_code == 0
    assert counts(alice) == (1, 1)
    shared_before = (config.parent / "live" / "model.joblib").read_bytes()
    restored = run("--config", config, "restore", "--user", ALICE, out / "users" / f"{ALICE}.tar.gz")
    assert restored.exit_code == 0, restored.output
    assert counts(alice) == (1, 0)
    assert run("--config", config, "info", "--user", ALICE, "--check").exit_code == 0
    assert (config.parent / "live" / "model.joblib").read_bytes() == shared_before
    assert archived_counts(out / "shared.tar.gz", tmp_path) == (1, 1)
    assert archived_counts(out / "users" / f"{CAROL}.tar.gz", tmp_path) == (0, 1)

    verbose = run("--config", config, "-v", "backup", "--all", out)   # tonight's replaces last week's
    assert verbose.exit_code == 0, verbose.output
    assert f"users/{BOB}.tar.gz" in verbose.output and f"no model at {user_model(config, DAVE)} yet" \
        in verbose.output
    assert not list(out.rglob(".spamlearn-partial-*"))


def test_a_broken_and_a_locked_user_model_do_not_stop_the_others(config, tmp_path):
    out = tmp_path / "backups"
    assert run("--config", config, "backup", "--all", out).exit_code == 0
    last_nights_bob = (out / "users" / f"{BOB}.tar.gz").read_bytes()
    user_model(config, BOB).write_bytes(b"not a model at all")          # a disk error, say
    assert run("--config", config, "learn", "--user", ALICE, "--ham", HAM).exit_code == 0
    # A learner holds carol's lock longer than the lock timeout.
    fd = os.open(user_model(config, CAROL).with_name(f"{CAROL}.joblib.lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = run("--config", config, "backup", "--all", out, env={"SPAMLEARN_LOCK_TIMEOUT": "0.3"})
    finally:
        os.close(fd)
    # The highest of the failures' codes, as `train` gives of its accounts':
    # 75 (carol: try again later) over 74 (bob's model file).
    assert result.exit_code == ExitCode.TEMPFAIL, result.output
    assert "Traceback" not in result.output
    errors = result.stderr.splitlines()
    assert len(errors) == 2, errors                                    # one line each
    assert errors[0].startswith(f"spamlearn: error: user {BOB}: ") and "model file" in errors[0]
    assert errors[1].startswith(f"spamlearn: error: user {CAROL}: ")
    assert result.stdout == f"backed up 2 of 5 models to {out} (2 failed, 1 not learned yet)\n"
    # The others were backed up tonight; bob's archive of last night is kept, not cut short.
    assert archived_counts(out / "users" / f"{ALICE}.tar.gz", tmp_path) == (1, 1)
    assert (out / "users" / f"{BOB}.tar.gz").read_bytes() == last_nights_bob
    assert not list(out.rglob(".spamlearn-partial-*"))


def test_a_full_disk_leaves_no_half_archive(config, tmp_path, monkeypatch):
    out = tmp_path / "backups"
    assert run("--config", config, "backup", "--all", out).exit_code == 0
    last_nights_alice = (out / "users" / f"{ALICE}.tar.gz").read_bytes()
    real_add_pair = spamlearn.backup._add_pair
    calls = []

    def disk_full_on_the_second(tar, folder):     # the shared model first, then alice
        calls.append(folder)
        real_add_pair(tar, folder)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spamlearn.backup, "_add_pair", disk_full_on_the_second)
    result = run("--config", config, "backup", "--all", out)
    assert result.exit_code == ExitCode.IOERR, result.output
    assert result.stderr == (f"spamlearn: error: user {ALICE}: disk full: "
                             f"{out / 'users' / f'{ALICE}.tar.gz'}\n")
    assert (out / "users" / f"{ALICE}.tar.gz").read_bytes() == last_nights_alice
    assert not list(out.rglob(".spamlearn-partial-*"))
    assert "backed up 3 of 5 models" in result.stdout


def test_a_destination_that_cannot_be_written(config, tmp_path, read_only_folder):
    # The whole folder: refused before anything is done, as a single archive's is (2).
    archives = read_only_folder.path / "Mon"
    read_only_folder.freeze()
    result = run("--config", config, "backup", "--all", archives)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.output == f"spamlearn: error: cannot write in {read_only_folder.path}\n"
    # Only its users/ folder (here a link into the read-only one): the shared
    # model is backed up, each user's archive refused with a line of its own.
    out = tmp_path / "backups"
    out.mkdir()
    (out / "users").symlink_to(read_only_folder.path)
    result = run("--config", config, "backup", "--all", out)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.stderr.splitlines() == [f"spamlearn: error: user {user}: cannot write in "
                                          f"{read_only_folder.path}" for user in (ALICE, BOB, CAROL)]
    assert result.stdout == f"backed up 1 of 5 models to {out} (3 failed, 1 not learned yet)\n"
    assert archived_counts(out / "shared.tar.gz", tmp_path) == (1, 1)


def test_what_backup_all_refuses(config, tmp_path):
    out = tmp_path / "backups"
    for args, said in ((("--user", ALICE, out), "leave out --user"), (("-",), "give a folder, not -"),
                       ((config,), "is not a folder"), ((tmp_path / "no" / "Mon",), "no folder")):
        result = run("--config", config, "backup", "--all", *args)
        assert result.exit_code == ExitCode.USAGE and said in result.output, result.output
    assert not out.exists()
    nothing = tmp_path / "nothing.toml"
    nothing.write_text(f'[model]\npath = "{tmp_path / "none" / "model.joblib"}"\n'
                       f'[users]\nown_model = ["{ALICE}"]\n')
    result = run("--config", nothing, "backup", "--all", out)
    assert result.exit_code == ExitCode.IOERR and "nothing to back up" in result.output
    assert not out.exists()


def test_one_archive_is_never_written_over_by_another_models(config, tmp_path):
    # On a file system that ignores case (a USB disk, an SMB share),
    # users/Alice.tar.gz and users/alice.tar.gz are one file; a link is the
    # same case, which this test can make anywhere.
    out = tmp_path / "backups"
    (out / "users").mkdir(parents=True)
    (out / "users" / f"{BOB}.tar.gz").symlink_to(out / "shared.tar.gz")
    result = run("--config", config, "backup", "--all", out)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.stderr == (f"spamlearn: error: user {BOB}: {out}/users/{BOB}.tar.gz is the archive "
                             f"just written for shared model: not overwritten\n")
    assert archived_counts(out / "shared.tar.gz", tmp_path) == (1, 1)


def test_a_users_folder_that_cannot_be_looked_into_is_a_failure_not_a_model_not_made_yet(
        config, tmp_path, monkeypatch):
    out = tmp_path / "backups"
    users = config.parent / "live" / "users"
    real_lstat = os.lstat

    def no_search_permission(path, *args, **kwargs):
        if Path(path).parent == users:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr("spamlearn.cli_backup.os.lstat", no_search_permission)
    result = run("--config", config, "backup", "--all", out)
    assert result.exit_code == ExitCode.IOERR, result.output
    assert result.stderr.count("Permission denied") == 4      # dave's too: it may be there
    assert result.stdout == f"backed up 1 of 5 models to {out} (4 failed)\n"


def test_last_weeks_archive_this_user_cannot_read_is_not_called_no_archive(config, tmp_path, monkeypatch):
    """An admin's run by hand as root left root's 0600 archives in the
    spamlearn user's weekday folder; a week later the nightly run refused
    each as "exists and is not a tar archive", which it is."""
    out = tmp_path / "backups"
    assert run("--config", config, "backup", "--all", out).exit_code == 0
    roots = out / "shared.tar.gz"
    real_access = os.access

    def as_another_user(path, mode, *args, **kwargs):
        if Path(path) == roots and mode & os.R_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr("spamlearn.cli_backup.os.access", as_another_user)
    result = run("--config", config, "backup", "--all", out)
    assert result.exit_code == ExitCode.USAGE, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"spamlearn: error: shared model: {roots} exists but this user cannot read it")
    assert "not a tar archive" not in line


@pytest.mark.skipif(os.geteuid() != 0, reason="root following another user's link")
@pytest.mark.parametrize("linked", [f"users/{ALICE}.tar.gz", "users"])
def test_root_does_not_write_through_a_link_the_folders_owner_planted(config, tmp_path, linked):
    """The archives' folder is the spamlearn user's (here uid 65534): root
    running the nightly command by hand followed that user's link at
    users/NAME.tar.gz (or at users/) and replaced root's own archive
    elsewhere with alice's model."""
    out = tmp_path / "backups"
    (out / "users").mkdir(parents=True)
    for made in (out, out / "users"):
        os.chown(made, 65534, 65534)
    roots = tmp_path / "root-only"
    roots.mkdir()
    precious = roots / f"{ALICE}.tar.gz"
    with tarfile.open(precious, "w:gz") as tar:
        tar.add(config, arcname="spamlearn.toml")
    before = precious.read_bytes()
    if linked == "users":
        (out / "users").rmdir()
    (out / linked).symlink_to(precious if linked != "users" else roots)
    os.lchown(out / linked, 65534, 65534)
    result = run("--config", config, "backup", "--all", out)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"spamlearn: error: user {ALICE}: {out / linked} is a symbolic link of uid 65534" in result.stderr
    assert "spamlearn does not write through it" in result.stderr
    assert precious.read_bytes() == before and os.listdir(roots) == [precious.name]
    assert archived_counts(out / "shared.tar.gz", tmp_path) == (1, 1)
    if linked == "users":
        return
    # A single archive's name too (a link in its folders is the admin's path, as a model's is).
    single = run("--config", config, "backup", out / "users" / f"{ALICE}.tar.gz")
    assert single.exit_code == ExitCode.USAGE and "symbolic link of uid 65534" in single.output
    assert precious.read_bytes() == before
