"""`spamlearn backup` / `restore`: the model and its ledger as one agreeing pair."""

from __future__ import annotations

import fcntl
import gzip
import io
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import joblib
import pytest
from typer.testing import CliRunner

import spamlearn.backup
from spamlearn.backup import LEDGER_MEMBER, MODEL_MEMBER, restore_backup
from spamlearn.cli import ExitCode, app
from spamlearn.errors import LedgerError, ModelFileError
from spamlearn.modelstore import ModelStore

runner = CliRunner()
SPAM = "tests/fixtures/sample-spam.eml"
HAM = "tests/fixtures/sample-ham.eml"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def model(tmp_path):
    model = tmp_path / "live" / "model.joblib"
    assert run("--model", model, "learn", "--spam", SPAM).exit_code == 0
    assert run("--model", model, "learn", "--ham", HAM).exit_code == 0
    return model


def counts(model) -> tuple[int, int, int]:
    info = ModelStore(model).info()
    return info["n_spam"], info["n_ham"], info["revision"]


def interrupt_restore_after_the_ledger(monkeypatch, model, archive) -> None:
    """Restore ``archive`` into ``model``, killed between its two renames
    (the ledger replaced, the model not yet)."""
    real_replace = os.replace

    def killed_after_the_ledger(src, dst):
        if str(dst) == str(model):
            raise KeyboardInterrupt("killed between the two renames")
        return real_replace(src, dst)

    monkeypatch.setattr("spamlearn.backup.os.replace", killed_after_the_ledger)
    with pytest.raises(KeyboardInterrupt):
        restore_backup(ModelStore(model), archive)
    monkeypatch.undo()


def unpack(tar: tarfile.TarFile, folder: Path) -> None:
    """A backup's two files, written into ``folder``: by hand, since
    ``extractall(filter=...)`` is a TypeError before Python 3.11.4 (Debian
    12's python3 is 3.11.2) and a bare ``extractall`` warns from 3.12."""
    folder.mkdir()
    for member in tar:
        assert member.isreg() and "/" not in member.name, member.name
        (folder / member.name).write_bytes(tar.extractfile(member).read())


def with_ledger_changed(archive, tmp_path, sql: str):
    """A copy of ``archive`` whose ledger had ``sql`` run on it."""
    unpacked = tmp_path / "unpacked"
    with tarfile.open(archive) as tar:
        unpack(tar, unpacked)
    db = sqlite3.connect(unpacked / LEDGER_MEMBER)
    db.execute(sql)
    db.commit()
    db.close()
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(tampered, "w") as tar:
        for name in (MODEL_MEMBER, LEDGER_MEMBER):
            tar.add(unpacked / name, arcname=name)
    return tampered


def test_backup_then_restore_brings_back_the_pair(model, tmp_path):
    archive = tmp_path / "b.tar"
    made = run("--model", model, "backup", archive)
    assert made.exit_code == 0, made.output
    assert "revision 2: 1 spam, 1 ham" in made.output
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == [MODEL_MEMBER, LEDGER_MEMBER]
    assert run("--model", model, "forget", HAM).exit_code == 0
    assert counts(model) == (1, 0, 3)
    restored = run("--model", model, "restore", archive)
    assert restored.exit_code == 0, restored.output
    assert counts(model) == (1, 1, 2)
    assert run("--model", model, "info", "--check").exit_code == 0
    # The ledger came back too: the ham is known again, so learning it is a no-op.
    again = run("--model", model, "learn", "--ham", HAM)
    assert "already known 1" in again.output
    # The pair that was replaced is kept.
    kept = model.with_name("model.joblib.before-restore")
    assert joblib.load(kept)["n_ham"] == 0
    assert model.with_name("model.ledger.before-restore").exists()
    assert not model.with_name("model.joblib.restoring").exists()


def test_a_gzip_archive_and_standard_output(model, tmp_path):
    archive = tmp_path / "b.tar.gz"
    assert run("--model", model, "backup", archive).exit_code == 0
    with open(archive, "rb") as fh:
        assert fh.read(2) == b"\x1f\x8b"
    piped = run("--model", model, "backup", "-")
    assert piped.exit_code == 0
    with tarfile.open(fileobj=io.BytesIO(piped.stdout_bytes)) as tar:
        assert sorted(tar.getnames()) == [MODEL_MEMBER, LEDGER_MEMBER]
    fresh = tmp_path / "elsewhere" / "m.joblib"       # a new host: nothing there yet
    result = run("--model", fresh, "restore", archive)
    assert result.exit_code == 0, result.output
    assert counts(fresh) == (1, 1, 2)
    assert not fresh.with_name("m.joblib.before-restore").exists()


def test_backup_refuses_without_a_model_or_a_place_to_write(tmp_path, model):
    nothing = run("--model", tmp_path / "none.joblib", "backup", tmp_path / "b.tar")
    assert nothing.exit_code == ExitCode.IOERR and "nothing to back up" in nothing.output
    assert not (tmp_path / "none.ledger").exists()       # no empty ledger left behind
    folder = run("--model", model, "backup", tmp_path)
    assert folder.exit_code == ExitCode.USAGE and "is a folder" in folder.output
    nowhere = run("--model", model, "backup", tmp_path / "no" / "b.tar")
    # 2, as the README's table and `eval --plot` have it: a cron job's
    # missing /var/backups/spamlearn said "74: the model is corrupt".
    assert nowhere.exit_code == ExitCode.USAGE and "no folder" in nowhere.output
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.geteuid() != 0:                     # root writes anywhere
        unwritable = run("--model", model, "backup", locked / "b.tar")
        assert unwritable.exit_code == ExitCode.USAGE and "cannot write in" in unwritable.output


@pytest.mark.parametrize("content", [b"", b"not a tar archive at all\n" * 40, b"\x1f\x8b\x08garbage"])
def test_restore_refuses_what_is_not_a_backup_and_changes_nothing(model, tmp_path, content):
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(content)
    before = model.read_bytes()
    result = run("--model", model, "restore", archive)
    assert result.exit_code == ExitCode.DATAERR, result.output
    assert "not a spamlearn backup" in result.output
    assert "Traceback" not in result.output and ":)" not in result.output
    assert model.read_bytes() == before


def test_restore_refuses_an_archive_without_its_ledger(model, tmp_path):
    archive = tmp_path / "half.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(model, arcname=MODEL_MEMBER)
    result = run("--model", model, "restore", archive)
    assert result.exit_code == ExitCode.DATAERR
    assert f"no {LEDGER_MEMBER}" in result.output


def test_restore_refuses_a_pair_that_disagrees(model, tmp_path):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    tampered = with_ledger_changed(archive, tmp_path, "DELETE FROM messages WHERE label = 'ham'")
    before = (model.read_bytes(), model.with_name("model.ledger").read_bytes())
    result = run("--model", model, "restore", tampered)
    assert result.exit_code == ExitCode.DATAERR
    assert "disagree" in result.output
    assert (model.read_bytes(), model.with_name("model.ledger").read_bytes()) == before


def test_restore_of_a_missing_archive_is_no_input(model, tmp_path):
    result = run("--model", model, "restore", tmp_path / "nope.tar")
    assert result.exit_code == ExitCode.NOINPUT and "no such file" in result.output


def test_an_interrupted_restore_is_refused_until_a_restore_completes(model, tmp_path, monkeypatch):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    assert run("--model", model, "forget", HAM).exit_code == 0
    store = ModelStore(model)
    interrupt_restore_after_the_ledger(monkeypatch, model, archive)
    # The ledger is the backup's (revision 2), the model still the live one
    # (revision 3): learners must not go on, nor "repair" one with the other.
    assert model.with_name("model.joblib.restoring").exists()
    learn = run("--model", model, "learn", "--spam", HAM)
    assert learn.exit_code == ExitCode.IOERR and "restore" in learn.output and "interrupted" in learn.output
    with pytest.raises(LedgerError, match="interrupted"):
        store.check()
    assert run("--model", model, "restore", archive).exit_code == 0
    assert not model.with_name("model.joblib.restoring").exists()
    assert counts(model) == (1, 1, 2)
    assert run("--model", model, "info", "--check").exit_code == 0


def test_backup_copies_under_the_model_lock(model, tmp_path):
    # A learner holding the lock (here: this test) makes backup wait, and
    # give up with "try again later" after the lock timeout: it never
    # copies a pair in the middle of a commit.
    fd = os.open(model.with_name("model.joblib.lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = runner.invoke(app, ["--model", str(model), "backup", str(tmp_path / "b.tar")],
                               env={"SPAMLEARN_LOCK_TIMEOUT": "0.3"})
    finally:
        os.close(fd)
    assert result.exit_code == ExitCode.TEMPFAIL, result.output
    assert not (tmp_path / "b.tar").exists()
    assert run("--model", model, "backup", tmp_path / "b.tar").exit_code == 0


def test_restore_into_a_read_only_folder_says_so_and_changes_nothing(read_only_folder, tmp_path):
    model = read_only_folder.path / "model.joblib"
    assert run("--model", model, "learn", "--spam", SPAM).exit_code == 0
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    before = model.read_bytes()
    read_only_folder.freeze()
    result = run("--model", model, "restore", archive)
    assert result.exit_code == ExitCode.IOERR, result.output
    assert "spamlearn: error:" in result.output and "Traceback" not in result.output
    assert f"cannot write in {read_only_folder.path} (" in result.output, "names the folder"
    assert ".spamlearn-restore-" not in result.output
    assert model.read_bytes() == before
    assert run("--model", model, "backup", tmp_path / "again.tar").exit_code == 0   # reading still works


def test_backup_refuses_devices_fifos_and_the_models_own_files(model, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (fifo, "/dev/null", "/dev/stdout", "/proc/self/fd/1"):
        result = run("--model", model, "backup", target)
        assert result.exit_code == ExitCode.USAGE and "give - and redirect" in result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    for own in ("model.joblib", "model.ledger", "model.joblib.lock", "model.ledger-journal",
                "model.joblib.before-restore"):
        path = model.with_name(own)
        if not path.exists():
            path.write_bytes(b"")
        before = path.read_bytes()
        result = run("--model", model, "backup", path)
        assert result.exit_code == ExitCode.USAGE and "model's own files" in result.output
        assert path.read_bytes() == before
        if not before:
            path.unlink()
    link = tmp_path / "link.tar"
    link.symlink_to(model)
    assert run("--model", model, "backup", link).exit_code == ExitCode.USAGE
    zstd = run("--model", model, "backup", tmp_path / "b.tar.zst")
    assert zstd.exit_code == ExitCode.USAGE and ".tar.xz" in zstd.output


def test_other_compressions_and_hand_made_archives(model, tmp_path):
    archive = tmp_path / "b.tar.xz"
    assert run("--model", model, "backup", archive).exit_code == 0
    with tarfile.open(archive, "r:xz") as tar:
        unpack(tar, tmp_path / "unpacked")
    assert oct(archive.stat().st_mode & 0o777) == "0o600"       # it holds what mail taught
    by_hand = tmp_path / "by-hand.tar"                           # tar -C unpacked -cf by-hand.tar .
    with tarfile.open(by_hand, "w") as tar:
        tar.add(tmp_path / "unpacked", arcname=".")
    assert run("--model", model, "restore", by_hand).exit_code == 0
    twice = tmp_path / "twice.tar"
    with tarfile.open(twice, "w") as tar:
        for name in (MODEL_MEMBER, LEDGER_MEMBER, MODEL_MEMBER):
            tar.add(tmp_path / "unpacked" / name, arcname=name)
    result = run("--model", model, "restore", twice)
    assert result.exit_code == ExitCode.DATAERR and "twice" in result.output


def test_restore_refuses_members_that_are_not_what_they_are_named(model, tmp_path):
    swapped = tmp_path / "swapped.tar"
    with tarfile.open(swapped, "w") as tar:
        tar.add(model, arcname=LEDGER_MEMBER)
        tar.add(model.with_name("model.ledger"), arcname=MODEL_MEMBER)
    result = run("--model", model, "restore", swapped)
    assert result.exit_code == ExitCode.DATAERR and "is not a" in result.output


def test_user_restore_needs_the_users_own_model(model, tmp_path):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    config = tmp_path / "c.toml"
    config.write_text(f'[model]\npath = "{model}"\n[users]\ndir = "{tmp_path / "users"}"\n'
                      f'own_model = ["alice"]\n')
    before = model.read_bytes()
    for user in ("bob", "../x"):
        result = run("--config", config, "restore", "--user", user, archive)
        assert result.exit_code in (ExitCode.USAGE, ExitCode.CONFIG), result.output
    assert model.read_bytes() == before
    alice = run("--config", config, "restore", "--user", "alice", archive)
    assert alice.exit_code == 0, alice.output
    assert counts(tmp_path / "users" / "alice.joblib") == (1, 1, 2)


def test_restore_with_the_ledger_on_another_file_system(model, tmp_path, read_only_folder):
    # read_only_folder is a tmpfs (as root): another file system, not frozen here.
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    config = tmp_path / "c.toml"
    config.write_text(f'[model]\npath = "{tmp_path / "m2" / "m.joblib"}"\n'
                      f'ledger = "{read_only_folder.path / "m.ledger"}"\n')
    result = run("--config", config, "restore", archive)
    assert result.exit_code == 0, result.output
    assert run("--config", config, "info", "--check").exit_code == 0
    assert not (tmp_path / "m2" / "m.joblib.restoring").exists()


def test_restore_keeps_the_replaced_files_owner_and_mode(model, tmp_path):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    ledger = model.with_name("model.ledger")
    os.chmod(model, 0o640)
    os.chmod(ledger, 0o660)
    if os.geteuid() == 0:
        os.chown(model, 65534, 65534)
        os.chown(ledger, 65534, 65534)
    assert run("--model", model, "restore", archive).exit_code == 0
    assert oct(model.stat().st_mode & 0o777) == "0o640" and oct(ledger.stat().st_mode & 0o777) == "0o660"
    if os.geteuid() == 0:
        assert (model.stat().st_uid, ledger.stat().st_uid) == (65534, 65534)


def test_restore_into_an_empty_place_follows_the_umask(model, tmp_path):
    """A fixed 0644 for both made the restored pair world-readable where
    the admin's umask 077 said not to (``learn`` would have made 0600)."""
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    fresh = tmp_path / "fresh" / "model.joblib"
    old = os.umask(0o077)
    try:
        result = run("--model", fresh, "restore", archive)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    modes = [oct(stat.S_IMODE(path.stat().st_mode)) for path in (fresh, fresh.with_name("model.ledger"))]
    assert modes == ["0o600", "0o600"]


def test_a_planted_link_at_the_marker_is_not_written_through(model, tmp_path):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    model.with_name("model.joblib.restoring").symlink_to(victim)
    # refused, as interrupted
    assert run("--model", model, "learn", "--spam", HAM).exit_code == ExitCode.IOERR
    assert run("--model", model, "restore", archive).exit_code == 0
    assert victim.read_text() == "precious\n"
    assert not os.path.lexists(model.with_name("model.joblib.restoring"))


def test_restore_over_a_ledger_a_crash_left_a_journal_beside(model, tmp_path):
    # A writer killed mid-transaction leaves a hot journal; applied to the
    # restored file it would corrupt it.
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    ledger = model.with_name("model.ledger")
    killed = subprocess.run([sys.executable, "-c", (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('PRAGMA cache_size=1'); db.execute('BEGIN IMMEDIATE')\n"
        "db.execute(\"UPDATE messages SET source = source || ?\", ('y' * 4000,))\n"
        "db.execute('DELETE FROM messages WHERE label = \\'ham\\'')\n"
        "os.kill(os.getpid(), 9)\n"), str(ledger)])
    assert killed.returncode == -9
    assert model.with_name("model.ledger-journal").exists()
    assert run("--model", model, "restore", archive).exit_code == 0
    assert not model.with_name("model.ledger-journal").exists()
    assert run("--model", model, "info", "--check").exit_code == 0
    kept = sqlite3.connect(model.with_name("model.ledger.before-restore"))
    assert kept.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    kept.close()


def test_backup_refuses_a_pair_that_disagrees(model, tmp_path):
    db = sqlite3.connect(model.with_name("model.ledger"))
    db.execute("DELETE FROM messages WHERE label = 'ham'")
    db.commit()
    db.close()
    result = run("--model", model, "backup", tmp_path / "b.tar")
    assert result.exit_code == ExitCode.IOERR and "disagree" in result.output
    assert not (tmp_path / "b.tar").exists()


def test_a_damaged_ledger_row_is_a_clear_error_not_a_crash(model, tmp_path):
    db = sqlite3.connect(model.with_name("model.ledger"))
    db.execute("UPDATE messages SET indices = X'00010203' WHERE label = 'ham'")
    db.commit()
    db.close()
    result = run("--model", model, "info", "--check")
    assert result.exit_code == ExitCode.IOERR and "corrupt" in result.output
    forget = run("--model", model, "forget", HAM)
    assert forget.exit_code == ExitCode.IOERR and "corrupt" in forget.output


def test_backup_into_a_pipe_closed_early_is_an_error(model, tmp_path):
    shell = subprocess.run(["bash", "-c", f'"{sys.executable}" -m spamlearn --model "{model}" backup - '
                            '| true; echo "${PIPESTATUS[0]}"'],
                           capture_output=True, text=True)
    assert shell.stdout.strip() == str(ExitCode.IOERR), shell.stderr
    assert "before the archive was complete" in shell.stderr


def test_backup_overwrites_an_archive_but_no_other_file(model, tmp_path):
    archive = tmp_path / "b.tar.gz"
    assert run("--model", model, "backup", archive).exit_code == 0
    assert run("--model", model, "backup", archive).exit_code == 0       # last week's, replaced
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    result = run("--model", model, "backup", notes)
    assert result.exit_code == ExitCode.USAGE and "not a tar archive" in result.output
    assert notes.read_text() == "keep me\n"
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert run("--model", model, "backup", empty).exit_code == ExitCode.USAGE
    other_lock = tmp_path / "other" / "model.joblib.lock"
    other_lock.parent.mkdir()
    other_lock.write_bytes(b"")
    inode = other_lock.stat().st_ino
    assert run("--model", model, "backup", other_lock).exit_code == ExitCode.USAGE
    assert other_lock.stat().st_ino == inode
    made_by_touch = tmp_path / "new.tar.gz"
    made_by_touch.write_bytes(b"")
    assert run("--model", model, "backup", made_by_touch).exit_code == 0


def test_restore_refuses_a_model_path_that_is_not_a_file(model, tmp_path, monkeypatch):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    fifo = tmp_path / "fifo.joblib"
    os.mkfifo(fifo)
    result = run("--model", fifo, "restore", archive)
    assert result.exit_code == ExitCode.IOERR and "nothing restored" in result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    folder = tmp_path / "folder.joblib"
    folder.mkdir()
    monkeypatch.setenv("SPAMLEARN_MODEL", str(folder))
    result = run("restore", archive)
    assert result.exit_code == ExitCode.IOERR and "is a folder" in result.output
    assert not os.path.lexists(tmp_path / "folder.joblib.restoring")


def test_a_model_named_like_its_ledger_is_refused(tmp_path):
    result = run("--model", tmp_path / "x.ledger", "learn", "--spam", SPAM)
    assert result.exit_code == ExitCode.IOERR and "both the model file and its ledger" in result.output


def test_a_full_disk_names_the_archive_and_keeps_the_last_one(model, tmp_path, monkeypatch):
    """It said "disk full: writing the output", naming no file."""
    archive = tmp_path / "b.tar.gz"
    assert run("--model", model, "backup", archive).exit_code == 0
    last_nights = archive.read_bytes()

    def disk_full(tar, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spamlearn.backup, "_add_pair", disk_full)
    result = run("--model", model, "backup", archive)
    assert result.exit_code == ExitCode.IOERR, result.output
    assert result.output == f"spamlearn: error: disk full: {archive}\n"
    assert archive.read_bytes() == last_nights
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.gz", "live"]


def test_the_marker_is_never_left_by_a_failed_write(model, tmp_path, monkeypatch):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    real_write = os.write

    def disk_full(fd, data):
        if data.startswith(b"restoring from"):
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr("spamlearn.backup.os.write", disk_full)
    before = model.read_bytes()
    with pytest.raises(ModelFileError, match="nothing restored"):
        restore_backup(ModelStore(model), archive)
    monkeypatch.undo()
    assert not os.path.lexists(model.with_name("model.joblib.restoring"))
    assert model.read_bytes() == before
    assert run("--model", model, "learn", "--spam", HAM).exit_code == 0


def test_a_resumed_restore_keeps_the_pair_from_before_the_first_attempt(model, tmp_path, monkeypatch):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    assert run("--model", model, "learn", "--spam", HAM).exit_code == 0      # relabelled: revision 3
    interrupt_restore_after_the_ledger(monkeypatch, model, archive)
    resumed = run("--model", model, "restore", archive)
    assert resumed.exit_code == 0 and "kept as *.before-restore" in resumed.output
    assert joblib.load(model.with_name("model.joblib.before-restore"))["revision"] == 3
    kept = ModelStore(model.with_name("model.joblib.before-restore"),
                      model.with_name("model.ledger.before-restore"))
    assert kept.check() == []                                   # a pair that belongs together


def test_an_archive_ledger_with_a_trigger_or_damage_is_refused(model, tmp_path):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    tampered = with_ledger_changed(
        archive, tmp_path, "CREATE TRIGGER t AFTER INSERT ON messages BEGIN DELETE FROM messages; END")
    result = run("--model", model, "restore", tampered)
    assert result.exit_code == ExitCode.DATAERR and "trigger" in result.output


def test_a_corrupt_compressed_archive_is_a_data_error(model, tmp_path):
    for name in ("b.tar.xz", "b.tar.gz"):
        archive = tmp_path / name
        assert run("--model", model, "backup", archive).exit_code == 0
        data = bytearray(archive.read_bytes())
        for i in range(len(data) // 3, len(data) // 3 + 8):
            data[i] ^= 0xFF
        archive.write_bytes(bytes(data))
        result = run("--model", model, "restore", archive)
        assert result.exit_code == ExitCode.DATAERR, (name, result.output)
        assert "internal error" not in result.output


def test_a_resumed_restore_without_the_first_attempts_pair_keeps_nothing(model, tmp_path, monkeypatch):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    interrupt_restore_after_the_ledger(monkeypatch, model, archive)
    for aside in ("model.joblib.before-restore", "model.ledger.before-restore"):
        model.with_name(aside).unlink()
    resumed = run("--model", model, "restore", archive)
    assert resumed.exit_code == 0 and "before-restore" not in resumed.output
    assert not model.with_name("model.joblib.before-restore").exists()   # not half a pair, named as one


def test_a_link_planted_at_the_lock_is_neither_followed_nor_given_away(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("root's\n")
    owner = victim.stat().st_uid
    (folder / "model.joblib.lock").symlink_to(victim)
    result = run("--model", folder / "model.joblib", "learn", "--spam", SPAM)
    assert result.exit_code == ExitCode.IOERR and "symbolic link" in result.output
    assert victim.stat().st_uid == owner and victim.read_text() == "root's\n"


def test_files_root_creates_in_a_users_folder_belong_to_that_user(tmp_path):
    # As root (CI): a learn by hand in the mail user's folder must not leave
    # root's files the mail user's learners cannot write.  As another user
    # the folder is the user's own, and the same holds.
    folder = tmp_path / "m"
    folder.mkdir()
    if os.geteuid() == 0:
        os.chown(folder, 65534, 65534)
    assert run("--model", folder / "model.joblib", "learn", "--spam", SPAM).exit_code == 0
    assert run("--model", folder / "model.joblib", "learn", "--ham", HAM).exit_code == 0
    want = folder.stat().st_uid
    for name in ("model.joblib", "model.ledger", "model.joblib.lock"):
        assert (folder / name).stat().st_uid == want, name


def test_restore_removes_what_a_killed_restore_left_a_day_ago(model, tmp_path):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    old = model.parent / ".spamlearn-restore-a1b2c3d4"       # as tempfile names them
    young = model.parent / ".spamlearn-restore-e5f6g7h8"
    for leftover in (old, young):
        leftover.mkdir()
        (leftover / MODEL_MEMBER).write_bytes(model.read_bytes())
    # Killed during its check, which takes the staged pair's lock (a helper's review).
    (old / (MODEL_MEMBER + ".lock")).write_bytes(b"")
    # An admin's things that only start the same way are never touched.
    notes = model.parent / ".spamlearn-restore-notes.txt"
    notes.write_text("keep me")
    kept = model.parent / ".spamlearn-restore-20261128"
    kept.mkdir()
    (kept / "README").write_text("not a model")
    two_days_ago = time.time() - 2 * 86_400
    for path in (old, notes, kept):
        os.utime(path, (two_days_ago, two_days_ago))
    assert run("--model", model, "restore", archive).exit_code == 0
    assert not old.exists() and young.exists()
    assert notes.read_text() == "keep me" and (kept / "README").exists()


def test_backup_removes_what_a_killed_backup_left_a_day_ago(model, tmp_path, monkeypatch):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    dest = tmp_path / "backups"
    dest.mkdir()
    old_copy, young_copy = tmp / "spamlearn-backup-k2j4_x9q", tmp / "spamlearn-backup-p0o9i8u7"
    old_partial = dest / ".spamlearn-partial-abcd1234.tmp"
    young_partial = dest / ".spamlearn-partial-wxyz9876.tmp"
    for folder in (old_copy, young_copy):
        folder.mkdir()
        (folder / MODEL_MEMBER).write_bytes(model.read_bytes())
        (folder / LEDGER_MEMBER).write_bytes(b"SQLite format 3\0")
    for partial in (old_partial, young_partial):
        partial.write_bytes(b"half an archive")
    # The admin's own things, named alike, a day old too: none is a leftover.
    archive_of_monday = tmp / "spamlearn-backup-2026-11-23.tar.gz"
    archive_of_monday.write_bytes(b"last week's archive")
    dated_folder = tmp / "spamlearn-backup-20261123"
    dated_folder.mkdir()
    (dated_folder / "model.joblib.gz").write_bytes(b"kept by hand")
    notes = dest / ".spamlearn-notes.tmp"
    notes.write_text("keep me")
    two_days_ago = time.time() - 2 * 86_400
    for leftover in (old_copy, old_partial, archive_of_monday, dated_folder, notes):
        os.utime(leftover, (two_days_ago, two_days_ago))
    assert run("--model", model, "backup", dest / "b.tar").exit_code == 0
    assert not old_copy.exists() and not old_partial.exists()
    assert young_copy.exists() and young_partial.exists()      # perhaps another run's, at work
    assert archive_of_monday.exists() and (dated_folder / "model.joblib.gz").exists() and notes.exists()


def test_restore_from_a_pipe(model, tmp_path):
    # The way an archive comes back from a backup host: ssh host cat x.tar.gz | spamlearn restore -
    archive = tmp_path / "b.tar.gz"
    assert run("--model", model, "backup", archive).exit_code == 0
    fresh = tmp_path / "new-host" / "model.joblib"
    shell = subprocess.run(["bash", "-c", f'cat "{archive}" | "{sys.executable}" -m spamlearn '
                            f'--model "{fresh}" restore -'], capture_output=True, text=True)
    assert shell.returncode == 0, shell.stderr
    assert "from standard input" in shell.stdout
    assert counts(fresh) == (1, 1, 2)
    assert run("--model", fresh, "info", "--check").exit_code == 0
    # Straight from a backup on the same pipe, plain tar this time.
    other = tmp_path / "third" / "model.joblib"
    shell = subprocess.run(["bash", "-c", f'"{sys.executable}" -m spamlearn --model "{model}" backup - '
                            f'| "{sys.executable}" -m spamlearn --model "{other}" restore -'],
                           capture_output=True, text=True)
    assert shell.returncode == 0, shell.stderr
    assert counts(other) == (1, 1, 2)


@pytest.mark.parametrize("content", [b"", b"\x1f\x8b\x08garbage", b"not a tar archive at all\n" * 40])
def test_restore_from_standard_input_refuses_what_is_not_a_backup(model, content):
    before = model.read_bytes()
    result = runner.invoke(app, ["--model", str(model), "restore", "-"], input=content)
    assert result.exit_code == ExitCode.DATAERR, result.output
    assert "standard input is not a spamlearn backup" in result.output
    assert "Traceback" not in result.output
    assert model.read_bytes() == before
    assert not model.with_name("model.joblib.before-restore").exists()
    assert not list(model.parent.glob(".spamlearn-restore-*"))


def test_restore_from_a_terminal_is_a_usage_error(model):
    script = ("import sys, pty, os\n"
              "pid, fd = pty.fork()\n"
              "if pid == 0:\n"
              f"    os.execv(sys.executable, [sys.executable, '-m', 'spamlearn', '--model', {str(model)!r},"
              " 'restore', '-'])\n"
              "out = b''\n"
              "while True:\n"
              "    try:\n"
              "        chunk = os.read(fd, 1024)\n"
              "    except OSError:\n"
              "        break\n"
              "    if not chunk:\n"
              "        break\n"
              "    out += chunk\n"
              "_, status = os.waitpid(pid, 0)\n"
              "print(os.waitstatus_to_exitcode(status)); print(out.decode())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    code, _, output = done.stdout.partition("\n")
    assert int(code) == ExitCode.USAGE, done.stdout + done.stderr
    assert "standard input is a terminal" in output


def test_a_failed_restore_to_a_new_place_leaves_no_folders_behind(tmp_path):
    archive = tmp_path / "x.tar"
    archive.write_bytes(b"not a tar archive at all\n" * 40)
    fresh = tmp_path / "new" / "deeper" / "model.joblib"
    result = run("--model", fresh, "restore", archive)
    assert result.exit_code == ExitCode.DATAERR, result.output
    assert not (tmp_path / "new").exists()


def test_a_plain_archive_whose_header_claims_too_much_is_damaged_not_a_full_disk(model, tmp_path):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    archive.write_bytes(_claiming_an_exbibyte(archive))
    before = model.read_bytes()
    result = run("--model", model, "restore", archive)
    assert result.exit_code == ExitCode.DATAERR, result.output
    assert "damaged or cut short" in result.output and "past the archive's end" in result.output
    assert model.read_bytes() == before


def _claiming_an_exbibyte(archive: Path) -> bytes:
    """The plain tar ``archive`` with its model's header saying 1 EiB."""
    raw = bytearray(archive.read_bytes())
    at = next(i for i in range(0, len(raw), 512) if raw[i:i + 13] == MODEL_MEMBER.encode() + b"\0")
    raw[at + 124:at + 136] = b"\x80" + (2 ** 60).to_bytes(11, "big")    # size: 1 EiB, GNU base-256
    raw[at + 148:at + 156] = b" " * 8
    raw[at + 148:at + 156] = b"%06o\0 " % sum(raw[at:at + 512])        # the header's checksum again
    return bytes(raw)


@pytest.mark.parametrize("from_stdin", [False, True])
def test_a_compressed_archive_whose_header_claims_too_much_is_damaged_not_a_full_disk(model, tmp_path,
                                                                                       from_stdin):
    plain = tmp_path / "b.tar"
    assert run("--model", model, "backup", plain).exit_code == 0
    archive = tmp_path / "b.tar.gz"
    archive.write_bytes(gzip.compress(_claiming_an_exbibyte(plain)))
    before = model.read_bytes()
    if from_stdin:
        done = subprocess.run([sys.executable, "-m", "spamlearn", "--model", str(model), "restore", "-"],
                              input=archive.read_bytes(), capture_output=True, timeout=120)
        code, output = done.returncode, (done.stdout + done.stderr).decode()
    else:
        result = run("--model", model, "restore", archive)
        code, output = result.exit_code, result.output
    assert code == ExitCode.DATAERR, output
    assert "damaged or cut short" in output and "the archive ends first" in output
    assert "Traceback" not in output
    assert model.read_bytes() == before


def test_a_compressed_member_larger_than_the_free_space_is_a_lack_of_space(model, tmp_path, monkeypatch):
    archive = tmp_path / "b.tar.gz"
    assert run("--model", model, "backup", archive).exit_code == 0
    before = model.read_bytes()
    real = shutil.disk_usage

    def almost_full(path):
        usage = real(path)
        return usage._replace(free=100) if str(path).startswith(str(model.parent)) else usage

    monkeypatch.setattr("spamlearn.backup.shutil.disk_usage", almost_full)
    result = run("--model", model, "restore", archive)
    assert result.exit_code == ExitCode.IOERR, result.output
    assert "more than the 100 free" in result.output
    assert model.read_bytes() == before


def test_a_restore_that_fails_on_its_second_folder_removes_the_first(model, tmp_path, monkeypatch):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    # Not there (so the checks before pass), and no one, root included, can make it.
    # (Both by the environment: a ledger named below --model is not that model's.)
    monkeypatch.setenv("SPAMLEARN_LEDGER", "/proc/sys/spamlearn-nowhere/model.ledger")
    fresh = tmp_path / "new" / "deeper" / "model.joblib"
    monkeypatch.setenv("SPAMLEARN_MODEL", str(fresh))
    result = run("restore", archive)
    assert result.exit_code == ExitCode.IOERR, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "new").exists()


def test_restore_with_standard_input_closed_says_so(model):
    shell = subprocess.run(["bash", "-c", f'"{sys.executable}" -m spamlearn --model "{model}" restore - <&-'],
                           capture_output=True, text=True)
    assert shell.returncode == ExitCode.USAGE
    assert "standard input is closed" in shell.stderr


def test_a_header_claiming_a_terabyte_is_a_bad_archive_not_a_crash(model, tmp_path):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    raw = bytearray(archive.read_bytes())
    assert raw[156:157] == b"x"                                    # the first header is a pax header
    raw[124:136] = b"\x80" + (10 ** 12).to_bytes(11, "big")       # its size: 1 TB, GNU base-256
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\0 " % sum(raw[:512])
    archive.write_bytes(bytes(raw))
    before = model.read_bytes()
    result = run("--model", model, "restore", archive)
    assert result.exit_code == ExitCode.DATAERR, result.output
    assert "not a spamlearn backup" in result.output
    assert model.read_bytes() == before


def test_a_restore_by_root_into_new_folders_leaves_them_to_the_mail_user(tmp_path):
    """(A helper's review: they came out root's, and the mail user's next
    learn failed on the folder.)  Not root: everything is the user's own."""
    owner = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    source = tmp_path / "source" / "model.joblib"
    assert run("--model", source, "learn", "--spam", SPAM).exit_code == 0
    assert run("--model", source, "learn", "--ham", HAM).exit_code == 0
    archive = tmp_path / "b.tar"
    assert run("--model", source, "backup", archive).exit_code == 0
    lib = tmp_path / "lib"
    lib.mkdir()
    os.chown(lib, *owner)
    target = lib / "users" / "alice" / "model.joblib"
    assert run("--model", target, "restore", archive).exit_code == 0
    for made in (lib / "users", target.parent, target, ModelStore(target).ledger_path):
        assert (made.stat().st_uid, made.stat().st_gid) == owner, made


@pytest.mark.skipif(os.geteuid() != 0, reason="root following another user's link")
@pytest.mark.parametrize("linked, target", [("model.joblib", "secret"), ("model.ledger", "new")])
def test_root_does_not_write_through_a_link_another_user_made_to_a_file_not_theirs(
        model, tmp_path, linked, target):
    """The folder's owner (here uid 65534) linked the model to a root-only
    file: a restore (or a learn) by root replaced that file with the model
    and made <file>.ledger, .lock and .before-restore beside it; a ledger
    linked to a new name in a root-only folder was made there, as root's
    SQLite file (a helper's review)."""
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    lib = tmp_path / "lib"
    lib.mkdir()
    os.chown(lib, 65534, 65534)
    victim = tmp_path / "root-only"
    victim.mkdir()
    (victim / "secret").write_text("root's\n")
    for name in ("model.joblib", "model.ledger"):
        shutil.copy(model.with_name(name), lib / name)
        os.chown(lib / name, 65534, 65534)
    (lib / linked).unlink()
    (lib / linked).symlink_to(victim / target)
    os.lchown(lib / linked, 65534, 65534)
    for command in (["restore", archive], ["learn", "--spam", SPAM]):
        result = run("--model", lib / "model.joblib", *command)
        assert result.exit_code == ExitCode.IOERR, result.output
        assert "does not own: run as root, spamlearn does not write through it" in result.output
    assert os.listdir(victim) == ["secret"] and (victim / "secret").read_text() == "root's\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="root following another user's link")
def test_root_follows_a_link_that_stays_within_its_owners_files(model, tmp_path):
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    lib = tmp_path / "lib"
    lib.mkdir()
    os.chown(lib, 65534, 65534)
    (lib / "model.joblib").symlink_to("model-2.joblib")
    os.lchown(lib / "model.joblib", 65534, 65534)
    assert run("--model", lib / "model.joblib", "restore", archive).exit_code == 0
    restored = lib / "model-2.joblib"
    assert restored.is_file() and (restored.stat().st_uid, restored.stat().st_gid) == (65534, 65534)


def test_a_staging_folder_swapped_for_a_link_is_not_written_through(model, tmp_path, monkeypatch):
    """The staging folders are made in the model's folder, which its owner
    (the mail user) may rename in: swapped for a link to that owner's folder
    of links, root's restore wrote the archive's members into the files
    they named (seen: a root-only 0600 file overwritten with the ledger, a
    helper's review)."""
    archive = tmp_path / "b.tar"
    assert run("--model", model, "backup", archive).exit_code == 0
    victim = tmp_path / "root-only"
    victim.mkdir()
    for name in ("model.joblib", "model.ledger"):
        (victim / name).write_text("root's\n")
    links = tmp_path / "links"
    links.mkdir()
    for name in ("model.joblib", "model.ledger"):
        (links / name).symlink_to(victim / name)
    real_extract = spamlearn.backup._extract_pair

    def swapped_first(source, model_target, ledger_target):
        for staging in model.parent.glob(".spamlearn-restore-*"):
            staging.rename(staging.with_name(staging.name + ".x"))
            staging.symlink_to(links, target_is_directory=True)
        return real_extract(source, model_target, ledger_target)

    monkeypatch.setattr(spamlearn.backup, "_extract_pair", swapped_first)
    result = run("--model", model, "restore", archive)
    assert [(victim / name).read_text() for name in ("model.joblib", "model.ledger")] == ["root's\n"] * 2
    assert result.exit_code == 0, result.output
    assert counts(model) == (1, 1, 2)
