"""``spamlearn sieve drain`` and the spool: learned once, in order, deleted only after the commit."""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spamlearn.cli import app
from spamlearn.config import load_settings
from spamlearn.errors import ConfigError, StoreBusyError
from spamlearn.ledger import Ledger
from spamlearn.message import message_digest
from spamlearn.modelstore import ModelStore
from spamlearn.regularfile import NotRegularFileError
from spamlearn.sieve.drain import drain_spool
from spamlearn.sieve.spool import STALE_TMP_SECONDS, Spool, SpoolEntry

runner = CliRunner()


class Site:
    def __init__(self, base: Path):
        self.config = base / "spamlearn.toml"
        self.config.write_text(f'[model]\npath = "{base / "model.joblib"}"\n'
                               f'[users]\ndir = "{base / "users"}"\nown_model = ["bob"]\n'
                               f'[sieve]\nspool = "{base / "spool"}"\n')
        self.settings = load_settings(self.config)
        self.spool = Spool(base / "spool")
        self.spool.create()
        self._clock = 1_700_000_000

    def queue(self, raw: bytes, label: str, user: str = "alice") -> Path:
        """What the pipe program leaves in new/ (names in the order they were queued)."""
        self._clock += 1
        path = self.spool.new / f"{self._clock}.000000001.{os.getpid()},{label},{user}"
        path.write_bytes(raw)
        return path

    def spool_name(self, label: str, user: str = "alice") -> Path:
        """The next name the pipe program would give, for something else to sit at."""
        self._clock += 1
        return self.spool.new / f"{self._clock}.000000001.{os.getpid()},{label},{user}"

    def store(self, user: str | None = None) -> ModelStore:
        return ModelStore.from_settings(self.settings, user)

    def labels(self, user: str | None = None) -> dict[str, str]:
        with Ledger(self.store(user).ledger_path) as ledger:
            return {row.digest: row.label for row in ledger.rows()}

    def drain_cli(self, *extra: str, env: dict | None = None):
        return runner.invoke(app, ["--config", str(self.config), "sieve", "drain", *extra], env=env)


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path)


def test_learns_each_message_then_deletes_it(site, spam_messages, ham_messages):
    for raw in spam_messages:
        site.queue(raw, "spam")
    site.queue(ham_messages[0], "ham")
    report = drain_spool(site.spool, site.settings)
    assert (report.learned, report.relabelled, report.already_known, report.failed) == (5, 0, 0, 0)
    assert list(site.spool.new.iterdir()) == []
    info = site.store().info()
    assert (info["n_spam"], info["n_ham"]) == (4, 1)
    assert {row["source"] for row in info["sources"]} == {"sieve:alice"}
    assert site.store().check() == []


def test_into_junk_and_out_again_before_a_drain_learns_the_last_verdict(site, spam_messages):
    site.queue(spam_messages[0], "spam")
    site.queue(spam_messages[0], "ham")
    report = drain_spool(site.spool, site.settings)
    assert (report.learned, report.superseded, report.relabelled) == (1, 1, 0)
    assert site.labels()[message_digest(spam_messages[0])] == "ham"
    assert site.store().info()["n_spam"] == 0


def test_the_order_holds_across_batches_and_relabels_unlearn_first(site, spam_messages):
    site.queue(spam_messages[0], "spam")
    site.queue(spam_messages[0], "ham")
    site.queue(spam_messages[0], "spam")
    report = drain_spool(site.spool, site.settings, batch_size=1)
    assert (report.learned, report.relabelled) == (1, 2)
    assert site.labels()[message_digest(spam_messages[0])] == "spam"
    info = site.store().info()
    assert (info["n_spam"], info["n_ham"]) == (1, 0)
    assert site.store().check() == []


def test_a_crash_between_commit_and_delete_learns_nothing_twice(site, spam_messages):
    for raw in spam_messages:
        site.queue(raw, "spam")

    def die(entries):
        raise KeyboardInterrupt  # the process is killed right after the commit

    with pytest.raises(KeyboardInterrupt):
        drain_spool(site.spool, site.settings, on_committed=die)
    assert len(list(site.spool.new.iterdir())) == 4
    report = drain_spool(site.spool, site.settings)
    assert (report.learned, report.already_known) == (0, 4)
    assert site.store().info()["n_spam"] == 4
    assert site.store().check() == []


def test_sieve_and_the_command_line_share_one_ledger(site, spam_messages, tmp_path):
    site.queue(spam_messages[0], "spam")
    drain_spool(site.spool, site.settings)
    message = tmp_path / "m.eml"
    message.write_bytes(spam_messages[0].replace(b"\n", b"\r\n"))  # as the pipe saw it: CRLF
    result = runner.invoke(app, ["--config", str(site.config), "learn", "--spam", str(message)])
    assert result.exit_code == 0
    assert "already known 1" in result.output
    assert site.store().info()["n_spam"] == 1


def test_a_queued_verdict_older_than_the_one_learned_is_superseded(site, spam_messages):
    """HTTP mode: the move into Junk waited past curl's patience (so it was
    also queued); the move back out was learned; the queued copy, older,
    must not undo it, and the ledger keeps the time the user gave each
    verdict, not the time a drain got to it."""
    stale = site.queue(spam_messages[0], "spam")
    stale_at = SpoolEntry.parse(stale).given_at
    with site.store().session(source="http:alice") as session:
        session.learn(spam_messages[0], "ham", verdict_at=stale_at + 0.5)   # the later move out
    report = drain_spool(site.spool, site.settings)
    assert (report.learned, report.relabelled, report.superseded) == (0, 0, 1), report.summary()
    assert site.labels()[message_digest(spam_messages[0])] == "ham"
    fresh = site.queue(spam_messages[0], "spam")
    fresh_at = SpoolEntry.parse(fresh).given_at
    assert fresh_at > stale_at + 0.5
    assert drain_spool(site.spool, site.settings).relabelled == 1
    with Ledger(site.store().ledger_path) as ledger:
        assert ledger.get(message_digest(spam_messages[0])).learned_at == pytest.approx(fresh_at)


def test_a_drain_run_by_root_leaves_what_it_makes_to_the_drain_user(site, spam_messages, tmp_path):
    """Root running the drain once (as the README's command would be typed)
    must not lock the drain user out: the drain's lock file and a user's
    first own-model folder and files go to the owners of their folders.
    (Not root: everything made is the user's own, as before.)"""
    owner = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    os.chown(tmp_path, *owner)
    site.spool.lock_path.unlink()           # a spool made before `install` made the lock file
    for folder in (site.spool.root, *site.spool.root.iterdir()):
        os.chown(folder, *owner)
    site.queue(spam_messages[0], "spam", user="bob")       # bob has his own model
    old_umask = os.umask(0o022)             # a root shell's: 0660 would come out 0640
    try:
        report = drain_spool(site.spool, site.settings)
    finally:
        os.umask(old_umask)
    assert report.learned == 1, report.summary()
    lock = os.stat(site.spool.lock_path)
    assert (lock.st_uid, lock.st_gid, stat.S_IMODE(lock.st_mode)) == (*owner, 0o660)
    store = site.store("bob")
    for made in (store.model_path.parent, store.model_path, store.ledger_path, store.lock_path):
        assert os.stat(made).st_uid == owner[0], made


def test_the_spool_is_made_with_the_drains_lock_file(tmp_path):
    """Made by the first drain, the lock file needed an inode, and a spool
    filled with queued moves before any drain had none left: every drain
    failed on it for good (a helper's review)."""
    owner = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    spool = Spool(tmp_path / "spool")
    old_umask = os.umask(0o077)
    try:
        spool.create(*owner)
    finally:
        os.umask(old_umask)
    lock = os.stat(spool.lock_path)
    assert stat.S_ISREG(lock.st_mode)
    assert (lock.st_uid, lock.st_gid, stat.S_IMODE(lock.st_mode)) == (*owner, 0o660)
    spool.create(*owner)                    # install again: the lock file is kept
    with spool.lock():
        pass


def test_files_it_cannot_use_go_to_failed_with_a_reason(site, spam_messages):
    site.queue(b"", "spam")  # a pipe that got nothing
    stray = site.spool.new / "not-ours"
    stray.write_bytes(spam_messages[1])
    site.queue(spam_messages[0], "spam")
    report = drain_spool(site.spool, site.settings)
    assert (report.learned, report.failed) == (1, 2)
    failed = sorted(p.name for p in site.spool.failed.iterdir())
    assert "not-ours" in failed and "not-ours.reason" in failed
    reasons = [p.read_text() for p in site.spool.failed.glob("*.reason")]
    assert any("empty message" in r for r in reasons)
    assert list(site.spool.new.iterdir()) == []


def unreadable(monkeypatch, *paths: Path) -> None:
    """Reading these spool files fails as it does when the drain's group may not read them.

    (As root a chmod 000 file stays readable, hence the monkeypatch.)
    """
    real_read = SpoolEntry.read

    def read(entry: SpoolEntry) -> bytes:
        if entry.path in paths:
            raise PermissionError(errno.EACCES, "Permission denied", str(entry.path))
        return real_read(entry)

    monkeypatch.setattr(SpoolEntry, "read", read)


@pytest.mark.timeout(20)
def test_a_file_it_may_not_read_goes_to_failed_and_the_rest_is_learned(
        site, spam_messages, monkeypatch):
    site.queue(spam_messages[0], "spam")
    locked = site.queue(spam_messages[1], "spam")
    site.queue(spam_messages[2], "spam")
    unreadable(monkeypatch, locked)
    result = site.drain_cli()
    assert result.exit_code == 0, result.output  # was 74, on this run and every later one
    assert "learned 2" in result.output and "failed 1" in result.output
    assert list(site.spool.new.iterdir()) == []
    assert "Permission denied" in (site.spool.failed / (locked.name + ".reason")).read_text()
    assert (site.spool.failed / locked.name).read_bytes() == spam_messages[1]
    assert message_digest(spam_messages[1]) not in site.labels()


@pytest.mark.timeout(20)
def test_a_file_it_can_neither_read_nor_move_is_left_counted_and_the_rest_is_learned(
        site, spam_messages, monkeypatch):
    locked = site.queue(spam_messages[0], "spam")
    site.queue(spam_messages[1], "spam")
    unreadable(monkeypatch, locked)

    def cannot_move(path, reason):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(site.spool, "set_aside", cannot_move)
    for _ in range(2):  # and again on the next run: counted, never stuck
        report = drain_spool(site.spool, site.settings)
        assert (report.failed, report.errors) == (1, [])
        assert list(site.spool.new.iterdir()) == [locked]
    assert list(site.labels().values()) == ["spam"]


def a_folder(path: Path) -> None:
    path.mkdir()
    (path / "inside").write_bytes(b"x")


def a_fifo(path: Path) -> None:
    os.mkfifo(path)  # opened for reading, it waits for a writer that never comes


def a_link_to_a_message(path: Path) -> None:
    # Whoever writes the spool would have the drain learn any file it may read.
    target = path.parent.parent / "elsewhere.eml"
    target.write_bytes(b"Subject: not queued\n\nread through a link\n")
    path.symlink_to(target)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("make, kind, is_kind", [
    (a_folder, "a folder", stat.S_ISDIR),
    (a_fifo, "a FIFO", stat.S_ISFIFO),
    (a_link_to_a_message, "a symbolic link", stat.S_ISLNK),
])
def test_what_is_not_a_regular_file_goes_to_failed_unopened(site, spam_messages, make, kind, is_kind):
    site.queue(spam_messages[0], "spam")
    odd = site.spool_name("spam")
    make(odd)
    site.queue(spam_messages[1], "ham")
    report = drain_spool(site.spool, site.settings)
    assert (report.learned, report.failed, report.errors) == (2, 1, [])
    assert list(site.spool.new.iterdir()) == []
    moved = site.spool.failed / odd.name
    assert is_kind(os.lstat(moved).st_mode)  # moved as it was, not read and copied
    assert kind in (site.spool.failed / (odd.name + ".reason")).read_text()
    assert len(site.labels()) == 2


@pytest.mark.timeout(20)
@pytest.mark.parametrize("make", [a_folder, a_fifo, a_link_to_a_message])
def test_reading_an_entry_swapped_for_something_else_refuses_at_once(site, spam_messages, make):
    queued = site.queue(spam_messages[0], "spam")
    (entry,) = site.spool.entries()[0]
    queued.unlink()  # after the listing, before the read
    make(queued)
    with pytest.raises(NotRegularFileError):
        entry.read()


@pytest.mark.timeout(20)
def test_a_fifo_in_place_of_a_reason_note_is_replaced_not_opened(site, spam_messages):
    stray = site.spool.new / "not-ours"
    stray.write_bytes(spam_messages[0])
    site.spool.failed.mkdir(exist_ok=True)
    os.mkfifo(site.spool.failed / "not-ours.reason")
    assert drain_spool(site.spool, site.settings).failed == 1
    assert "not written by spamlearn-report" in (site.spool.failed / "not-ours.reason").read_text()


def test_a_user_with_an_own_model_trains_it(site, spam_messages):
    site.queue(spam_messages[0], "spam", user="bob")
    site.queue(spam_messages[1], "spam", user="alice")
    report = drain_spool(site.spool, site.settings)
    assert report.learned == 2
    assert report.models == {str(site.store().model_path), str(site.store("bob").model_path)}
    assert list(site.labels("bob").values()) == ["spam"]
    assert message_digest(spam_messages[0]) not in site.labels()


def test_a_broken_model_keeps_its_files_and_the_others_are_drained(site, spam_messages):
    bob_model = site.store("bob").model_path
    bob_model.parent.mkdir(parents=True)
    bob_model.write_bytes(b"not a model")
    bob_file = site.queue(spam_messages[0], "spam", user="bob")
    site.queue(spam_messages[1], "spam", user="alice")
    result = site.drain_cli()
    assert result.exit_code == 74, result.output
    assert "learned 1" in result.output
    assert bob_file.exists()


def test_stale_tmp_files_are_removed(site):
    old = site.spool.tmp / "1.1.1,spam,alice"
    old.write_bytes(b"half a mess")
    fresh = site.spool.tmp / "2.2.2,spam,alice"
    fresh.write_bytes(b"being written")
    past = time.time() - STALE_TMP_SECONDS - 60
    os.utime(old, (past, past))
    assert drain_spool(site.spool, site.settings).stale_tmp_removed == 1
    assert not old.exists() and fresh.exists()


def test_a_stale_folder_in_tmp_does_not_stop_the_drain(site, spam_messages):
    folder = site.spool.tmp / "1.1.1,spam,alice"
    folder.mkdir()
    past = time.time() - STALE_TMP_SECONDS - 60
    os.utime(folder, (past, past))
    site.queue(spam_messages[0], "spam")
    report = drain_spool(site.spool, site.settings)
    assert (report.learned, report.stale_tmp_removed) == (1, 0)
    assert folder.is_dir()


def test_one_drain_at_a_time(site, spam_messages):
    site.queue(spam_messages[0], "spam")
    with site.spool.lock():
        with pytest.raises(StoreBusyError):
            drain_spool(site.spool, site.settings)
        result = site.drain_cli()
        assert result.exit_code == 0
        assert "another drain is running" in result.output
        result = site.drain_cli("--json")
        assert result.exit_code == 0
        assert json.loads(result.output) | {"another_drain_running": True} == json.loads(result.output)
        assert json.loads(result.output)["learned"] == 0
    assert len(list(site.spool.new.iterdir())) == 1


def test_cli_json_and_quiet(site, spam_messages):
    result = site.drain_cli("--quiet")
    assert result.exit_code == 0 and result.output == ""
    site.queue(spam_messages[0], "spam")
    result = site.drain_cli("--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["learned"] == 1
    assert json.loads(result.output)["another_drain_running"] is False


def test_cli_missing_spool_is_a_config_error(tmp_path):
    result = runner.invoke(app, ["sieve", "drain", "--spool", str(tmp_path / "nope")])
    assert result.exit_code == 78
    assert "spamlearn sieve install" in result.output


def test_a_drain_outside_the_spools_group_is_told_permission_denied_not_missing(
        site, spam_messages, monkeypatch):
    """The drain run as a user not in --drain-group cannot look into the 2770
    spool: it was told the folders were missing and to run `sieve install`
    (78), which changed nothing; the guide says 74 for this."""
    queued = site.queue(spam_messages[0], "spam")
    real_lstat = os.lstat

    def lstat(path, *args, **kwargs):  # as root a 2770 folder stays open, hence the monkeypatch
        if Path(path).parent == site.spool.root:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat)
    result = site.drain_cli()
    assert result.exit_code == 74, result.output
    assert "Permission denied" in result.output and "missing" not in result.output
    assert queued.exists()


def test_watch_drains_as_messages_arrive_and_stops_on_sigterm(site, spam_messages):
    import signal
    import subprocess
    import sys

    watcher = subprocess.Popen(
        [sys.executable, "-m", "spamlearn", "--config", str(site.config), "sieve", "drain",
         "--watch", "--interval", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        queued = site.queue(spam_messages[0], "spam")
        deadline = time.monotonic() + 60  # the interpreter's start-up included
        while queued.exists():
            assert watcher.poll() is None, watcher.stderr.read()
            assert time.monotonic() < deadline, "the watcher did not drain the spool"
            time.sleep(0.05)
        assert site.labels()[message_digest(spam_messages[0])] == "spam"
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert "learned 1" in out


def test_two_users_copies_learned_apart_by_a_0_2_ledger_are_each_relabelled(tmp_path, monkeypatch,
                                                                           sample_spam, sample_ham):
    """A shared model whose older ledger learned carol's and dave's copies of
    one delivery as two spam; both move theirs out of Junk: no spam is left
    (the drain took one for the other's duplicate and left it spam, a
    helper's review), and the two rows are the message's one ham now."""
    import spamlearn.modelstore as modelstore
    from spamlearn.message import legacy_message_digest

    def delivered(user: bytes) -> bytes:
        return (b"Return-Path: <bounce@example.net>\nDelivered-To: " + user + b"\nReceived: from mx by "
                b"mail (Dovecot) with LMTP\n\tfor <" + user + b">; Sat, 28 Nov 2026\n" + sample_spam)

    site = Site(tmp_path)
    store = site.store()
    carol, dave = delivered(b"carol@example.org"), delivered(b"dave@example.org")
    with monkeypatch.context() as old_version:
        old_version.setattr(modelstore, "message_digest", legacy_message_digest)
        with store.session() as session:
            for raw, label in ((sample_ham, "ham"), (carol, "spam"), (dave, "spam")):
                session.learn(raw, label)
    assert store.load().n_spam == 2
    site._clock = int(time.time()) + 5
    site.queue(carol, "ham", "carol")
    site.queue(dave, "ham", "dave")
    drain_spool(site.spool, site.settings)
    assert (store.load().n_spam, store.load().n_ham) == (0, 2)
    assert store.check() == []


# -- the spool's folders swapped for links ------------------------------------------------
# The mail user owns the spool, so it can put a symbolic link at tmp/, new/
# or failed/.  Followed, a link at tmp/ had the drain delete every day-old
# file of the folder it named (the model's: the model and ledger; as root,
# /etc); at new/, the model and ledger were strays, moved into failed/ where
# the mail user reads them; at failed/, a stray was moved into the folder it
# named; and `sieve install` again, as root, chowned and chmodded the folder
# a link named (a helper's review).

def _swap_for_link(folder: Path, target: Path) -> None:
    folder.rename(folder.with_name(folder.name + ".old"))
    folder.symlink_to(target, target_is_directory=True)


@pytest.mark.parametrize("name", ["tmp", "new", "failed"])
def test_the_drain_refuses_a_spool_folder_that_is_a_link(site, spam_messages, tmp_path, name):
    victim = tmp_path / "victim"
    victim.mkdir()
    kept = victim / "model.joblib"
    kept.write_bytes(b"the model")
    past = time.time() - STALE_TMP_SECONDS - 60
    os.utime(kept, (past, past))
    stray = site.spool.new / "not-ours"
    stray.write_bytes(spam_messages[0])
    _swap_for_link(site.spool.root / name, victim)
    result = site.drain_cli()
    assert result.exit_code == 78, result.output
    assert f"spool folder {site.spool.root / name} is a symbolic link" in result.output
    assert sorted(p.name for p in victim.iterdir()) == ["model.joblib"]
    assert kept.read_bytes() == b"the model"


def test_a_new_folder_swapped_for_a_link_after_the_commit_is_not_followed(site, spam_messages, tmp_path):
    queued = site.queue(spam_messages[0], "spam")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / queued.name).write_bytes(b"not the spool's")

    def swap(_entries):  # the listing and reads are done: only the deletes remain
        _swap_for_link(site.spool.new, victim)

    report = drain_spool(site.spool, site.settings, on_committed=swap)
    assert [type(error) for error in report.errors] == [ConfigError]
    assert "is a symbolic link" in str(report.errors[0])
    assert (victim / queued.name).read_bytes() == b"not the spool's"


def test_install_again_does_not_follow_a_link_in_the_spool(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.create()
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    before = os.stat(victim)
    _swap_for_link(spool.tmp, victim)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        spool.create(os.getuid(), os.getgid())
    after = os.stat(victim)
    assert (stat.S_IMODE(after.st_mode), after.st_uid, after.st_gid) == \
        (stat.S_IMODE(before.st_mode), before.st_uid, before.st_gid)


def test_a_spool_that_is_a_link_the_admin_made_is_still_installed(tmp_path):
    real = tmp_path / "srv-spool"
    real.mkdir()
    (tmp_path / "spool").symlink_to(real, target_is_directory=True)
    Spool(tmp_path / "spool").create()
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o2770 and (real / "new").is_dir()
