"""ModelStore: the ledger and the model change together, exactly once, crash-safe."""

from __future__ import annotations

import email
import multiprocessing
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from spamlearn import LedgerError, MessageError, ModelFileError, StoreBusyError
from spamlearn.classifier import Label
from spamlearn.ledger import Ledger
from spamlearn.message import message_bytes, message_digest
from spamlearn.modelstore import Action, ModelStore


def test_learning_twice_is_a_no_op_that_says_so(store, sample_spam):
    assert store.learn(sample_spam, "spam").action == Action.LEARNED
    again = store.learn(sample_spam, "spam")
    assert again.action == Action.ALREADY_KNOWN
    assert store.load().n_spam == 1
    assert store.check() == []


def test_relabel_unlearns_first_exactly_once(store, sample_spam, sample_ham):
    store.learn(sample_ham, "ham")
    store.learn(sample_spam, "spam")
    outcome = store.learn(sample_spam, "ham")
    assert outcome.action == Action.RELABELLED and outcome.previous.value == "spam"
    assert store.learn(sample_spam, "ham").action == Action.ALREADY_KNOWN
    clf = store.load()
    assert (clf.n_spam, clf.n_ham) == (0, 2)
    assert store.check() == []


def test_crlf_and_lf_copies_are_one_message(store, sample_spam):
    store.learn(sample_spam, "spam")
    crlf = sample_spam.replace(b"\n", b"\r\n")
    assert store.learn(crlf, "spam").action == Action.ALREADY_KNOWN


@pytest.mark.parametrize("known", [False, True])
def test_a_message_looked_up_then_learned_is_hashed_once(store, monkeypatch, sample_spam, known):
    """The IMAP trainer looks each message up (``learned``), then learns it:
    each hashed it, twice the digests it needs for a message it knows (a
    rescan of a big mailbox), and the legacy digests twice for a new one."""
    import spamlearn.modelstore as ms

    if known:
        store.learn(sample_spam, "spam")
    calls = {"digest": 0, "legacy": 0}
    digest, legacy = ms.message_digest, ms._legacy_digests

    def counted(name, function):
        def count(raw):
            calls[name] += 1
            return function(raw)
        return count

    monkeypatch.setattr(ms, "message_digest", counted("digest", digest))
    monkeypatch.setattr(ms, "_legacy_digests", counted("legacy", legacy))
    with store.session() as session:
        row = session.learned(sample_spam)
        outcome = session.learn(sample_spam, "spam")
        other = session.learn(sample_spam + b"\nP.S. another one\n", "spam")
    assert (row is not None) is known and other.action == Action.LEARNED
    assert outcome.action == (Action.ALREADY_KNOWN if known else Action.LEARNED)
    assert calls == {"digest": 2, "legacy": 2}
    assert store.check() == []


def test_put_back_undoes_a_learn_or_a_relabel_exactly(store, sample_spam, sample_ham):
    """What the IMAP trainer takes back when it meets a copy the other way:
    the row as it was, counts and all, and no forget remembered (a verdict
    queued before it would be turned away)."""
    store.learn(sample_ham, "ham", source="cli")
    before = store.load()
    with store.session() as session:
        row = session.learned(sample_ham)
        digest = session.digest(sample_spam)
        session.learn(sample_spam, "spam")
        session.learn(sample_ham, "spam")                    # relabelled
    with store.session() as session:
        session.put_back(digest, None)
        session.put_back(row.digest, row)
    with store.session() as session:
        assert session.learned(sample_ham) == row and session.learned(sample_spam) is None
        assert session.get_state("forgotten:" + digest) is None
    after = store.load()
    assert (after.n_spam, after.n_ham) == (before.n_spam, before.n_ham) == (0, 1)
    assert after.score(sample_spam).spam_prob == before.score(sample_spam).spam_prob
    assert store.check() == []
    assert store.learn(sample_spam, "spam").action == Action.LEARNED


def test_forget_removes_and_is_idempotent(store, sample_spam, sample_ham):
    store.learn(sample_ham, "ham")
    store.learn(sample_spam, "spam")
    assert store.forget(sample_spam).action == Action.FORGOTTEN
    assert store.forget(sample_spam).action == Action.NOT_KNOWN
    assert store.load().n_spam == 0
    assert store.check() == []


def test_exception_in_session_discards_uncommitted_work(store, sample_spam, sample_ham):
    store.learn(sample_ham, "ham")
    with pytest.raises(RuntimeError):
        with store.session() as session:
            session.learn(sample_spam, "spam")
            raise RuntimeError("boom")
    assert store.load().n_spam == 0
    assert store.check() == []


def test_state_is_committed_with_the_messages(store, sample_spam):
    with store.session() as session:
        session.learn(sample_spam, "spam")
        session.set_state("imap:alice:Junk", '{"last_uid": 5}')
    with store.session() as session:
        assert session.get_state("imap:alice:Junk") == '{"last_uid": 5}'


_KILL_BETWEEN_WRITES = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import spamlearn.modelstore as ms
    def die(*args, **kwargs):
        os._exit(9)   # killed after the ledger commit, before the model write
    ms.save_classifier = die
    store = ms.ModelStore(Path(sys.argv[1]), n_features=2**16)
    with store.session() as session:
        session.learn(Path(sys.argv[2]).read_bytes(), "spam")
        session.set_state("imap:x", "moved-on")
""")


def test_killed_between_ledger_and_model_write_recovers(store, tmp_path, sample_spam, sample_ham):
    store.learn(sample_ham, "ham")
    message = tmp_path / "spam.eml"
    message.write_bytes(sample_spam)
    proc = subprocess.run([sys.executable, "-c", _KILL_BETWEEN_WRITES, str(store.model_path), str(message)])
    assert proc.returncode == 9
    with Ledger(store.ledger_path) as ledger:
        assert ledger.revision == store.load().revision + 1, "the crash must leave the ledger ahead"
    # The next opener repairs: the message is not learned anywhere, then learns once.
    assert store.check() == []
    with store.session() as session:
        assert session.known(sample_spam) is None
        assert session.get_state("imap:x") is None
        assert session.learn(sample_spam, "spam").action == Action.LEARNED
    clf = store.load()
    assert (clf.n_spam, clf.n_ham) == (1, 1)
    assert store.check() == []


_KILL_DURING_MODEL_WRITE = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import spamlearn.store as st
    import spamlearn.modelstore as ms
    real_replace = os.replace
    def die(src, dst):
        os._exit(9)   # the temp file is written, the rename never happens
    st.os.replace = die
    store = ms.ModelStore(Path(sys.argv[1]), n_features=2**16)
    store.learn(Path(sys.argv[2]).read_bytes(), "spam")
""")


def test_killed_during_model_write_recovers(store, tmp_path, sample_spam, sample_ham):
    store.learn(sample_ham, "ham")
    message = tmp_path / "spam.eml"
    message.write_bytes(sample_spam)
    proc = subprocess.run([sys.executable, "-c", _KILL_DURING_MODEL_WRITE, str(store.model_path),
                           str(message)])
    assert proc.returncode == 9
    assert store.check() == []
    assert store.load().n_spam == 0
    assert store.learn(sample_spam, "spam").action == Action.LEARNED
    assert store.check() == []


@pytest.mark.parametrize("where", ["before the rename", "after the rename"])
def test_ctrl_c_in_the_model_write_leaves_model_and_ledger_agreeing(store, monkeypatch, sample_spam,
                                                                     sample_ham, where):
    """Ctrl-C (or the IMAP trainer's second signal) lands in the model write:
    before the rename the commit is undone, after it (in the folder's fsync)
    it stands; either way the pair agrees and the next learner goes on."""
    import spamlearn.store as st

    store.learn(sample_ham, "ham")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(st.os, "replace", interrupt) if where == "before the rename" else \
        monkeypatch.setattr(st, "fsync_dir", interrupt)
    with pytest.raises(KeyboardInterrupt):
        store.learn(sample_spam, "spam")
    monkeypatch.undo()
    assert store.check() == []
    landed = where == "after the rename"
    assert store.load().n_spam == int(landed)
    with store.session() as session:
        assert (session.known(sample_spam) == Label.SPAM) if landed else session.known(sample_spam) is None
    outcome = store.learn(sample_spam, "spam")
    assert outcome.action == (Action.ALREADY_KNOWN if landed else Action.LEARNED)
    assert store.check() == [] and store.load().n_spam == 1


def test_a_learner_removes_what_killed_writers_left_and_only_that(store, sample_spam, sample_ham):
    import os
    import time

    store.learn(sample_ham, "ham")
    folder = store.model_path.parent
    stale = folder / f".{store.model_path.name}.k1ll3d_x.tmp"            # mkstemp's shape
    fresh = folder / f".{store.model_path.name}.writing1.tmp"
    other = folder / ".other.joblib.k1ll3d_x.tmp"
    longer = folder / f".{store.model_path.name}.joblib.k1ll3d_x.tmp"      # the model "<name>.joblib"'s
    admins = folder / f".{store.model_path.name}.weekly.tmp"               # not mkstemp's
    for path in (stale, fresh, other, longer, admins):
        path.write_bytes(b"half a model")
    old = time.time() - 2 * store.STALE_TEMP_SECONDS
    for path in (stale, other, longer, admins):
        os.utime(path, (old, old))
    store.learn(sample_spam, "spam")
    assert not stale.exists(), "a killed writer's temp file stays for ever"
    assert fresh.exists(), "a writer may be at work on a fresh one"
    assert other.exists() and longer.exists() and admins.exists(), "another model's or an admin's files"
    assert store.check() == []


def test_a_verdict_older_than_the_one_learned_is_superseded(store, sample_spam, sample_ham):
    """Verdicts land in the order users gave them, not the order they
    arrive: a request that waited (for the lock, past its client's patience)
    must not undo the user's later move."""
    store.learn(sample_ham, "ham")
    with store.session() as session:
        assert session.learn(sample_spam, "spam", verdict_at=1000.0).action == Action.LEARNED
    with store.session() as session:
        stale = session.learn(sample_spam, "ham", verdict_at=999.0)
        assert (stale.action, stale.label, stale.previous) == (Action.SUPERSEDED, Label.HAM, Label.SPAM)
        assert "later verdict" in stale.describe()
        # The same verdict again, later: its time moves, so a move out given
        # between the two cannot land after it.
        assert session.learn(sample_spam, "spam", verdict_at=2000.0).action == Action.ALREADY_KNOWN
    with store.session() as session:
        assert session.learn(sample_spam, "ham", verdict_at=1500.0).action == Action.SUPERSEDED
        assert session.learn(sample_spam, "ham", verdict_at=2500.0).action == Action.RELABELLED
        # Now (no time given) is later than any verdict of the past.
        assert session.learn(sample_spam, "spam").action == Action.RELABELLED

        # A time far in the future counts as now: it cannot
        # lock later verdicts out for long.
        assert session.learn(sample_spam, "ham", verdict_at=1e12).action == Action.RELABELLED
        assert session._row(message_digest(sample_spam)).learned_at < time.time() + 301
    assert store.learn(sample_spam, "spam").action == Action.RELABELLED
    clf = store.load()
    assert (clf.n_spam, clf.n_ham) == (1, 1) and store.check() == []


def test_a_stamp_far_ahead_counts_as_now_and_locks_no_correction_out(store, sample_spam, sample_ham):
    """A sieve stamp an hour ahead (the clock ran fast, then NTP stepped it
    back) was kept as now + 5 minutes: the user's move out of Junk a minute
    later was `superseded`, and its spool file deleted (a helper's review)."""
    store.learn(sample_ham, "ham")
    with store.session(source="sieve:alice") as session:
        session.learn(sample_spam, "spam", verdict_at=time.time() + 3600)
    with store.session(source="sieve:alice") as session:
        moved = session.learn(sample_spam, "ham", verdict_at=time.time() + 1)
    assert moved.action == Action.RELABELLED
    assert (store.load().n_spam, store.load().n_ham) == (0, 2) and store.check() == []


def test_the_same_verdict_given_again_records_who_gave_it_last(store, sample_spam, sample_ham):
    """Bob junked a campaign, then alice her copy: the row said bob, and the
    IMAP trainer took alice's quick move out of Junk for someone else's
    untouched copy, and held it back (a helper's review)."""
    store.learn(sample_ham, "ham")
    with store.session(source="imap:bob/Junk") as session:
        session.learn(sample_spam, "spam", verdict_at=1000.0)
    with store.session(source="imap:alice/Junk") as session:
        assert session.learn(sample_spam, "spam", verdict_at=2000.0).action == Action.ALREADY_KNOWN
        assert session.learned(sample_spam).source == "imap:alice/Junk"
    with store.session(source="imap:bob/Junk") as session:      # an older reading of bob's: no change
        session.learn(sample_spam, "spam", verdict_at=1500.0)
    with store.session() as session:
        row = session.learned(sample_spam)
    assert (row.source, row.learned_at) == ("imap:alice/Junk", 2000.0)
    assert store.load().revision == 2 and store.check() == []


def test_a_verdict_given_now_is_never_stale_even_when_the_clock_steps_back(store, monkeypatch, sample_spam,
                                                                           sample_ham):
    import spamlearn.modelstore as ms

    store.learn(sample_ham, "ham")
    monkeypatch.setattr(ms.time, "time", lambda: 2_000_000_000.0)
    with store.session() as session:
        assert session.learn(sample_spam, "spam", verdict_at=1_999_999_999.0).action == Action.LEARNED
    monkeypatch.setattr(ms.time, "time", lambda: 1_999_999_990.0)      # NTP stepped it back
    with store.session() as session:
        assert session.learn(sample_spam, "ham").action == Action.RELABELLED      # the command line, say
        assert session.learn(sample_spam, "spam", verdict_at=1_999_999_980.0).action == Action.SUPERSEDED
    assert store.check() == []


def test_a_stamped_verdict_is_not_superseded_by_a_time_from_a_clock_that_ran_fast(store, monkeypatch,
                                                                                  sample_spam, sample_ham):
    """The IMAP trainer stamps its verdicts with when it read the folder: a
    pass made while the clock ran 10 minutes fast dated its rows then, and
    after NTP set the clock back, the user's move out of Junk was
    SUPERSEDED by them and never seen again (a helper's review)."""
    import spamlearn.modelstore as ms

    fast = 2_000_000_600.0
    monkeypatch.setattr(ms.time, "time", lambda: fast)
    with store.session() as session:
        session.learn(sample_ham, "ham", verdict_at=fast)
        session.learn(sample_spam, "spam", verdict_at=fast)
        session.forget(sample_ham)
    monkeypatch.setattr(ms.time, "time", lambda: 2_000_000_000.0)      # set back by 10 minutes
    with store.session() as session:
        moved = session.learn(sample_spam, "ham", verdict_at=2_000_000_060.0)
        assert moved.action == Action.RELABELLED
        assert session.learn(sample_ham, "ham", verdict_at=2_000_000_060.0).action == Action.LEARNED
        # Within the lead a stamp is believed: a queued verdict older than it still loses.
        assert session.learn(sample_spam, "spam", verdict_at=2_000_000_030.0).action == Action.SUPERSEDED
    clf = store.load()
    assert (clf.n_spam, clf.n_ham) == (0, 2) and store.check() == []


def test_full_ledger_disk_loses_nothing(store, sample_spam, sample_ham, spam_messages):
    store.learn(sample_ham, "ham")
    store.learn(sample_spam, "spam")
    # Simulate a full disk: SQLite's page limit answers SQLITE_FULL exactly as ENOSPC does.
    db = sqlite3.connect(store.ledger_path)
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()

    import spamlearn.ledger as ledger_module

    real_connect = sqlite3.connect

    def capped(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    ledger_module.sqlite3.connect = capped
    try:
        with pytest.raises(LedgerError, match="full"):
            with store.session() as session:
                for i in range(300):
                    words = " ".join(f"w{i}x{j}" for j in range(200)).encode()
                    session.learn(spam_messages[i % 4] + words, "spam")
    finally:
        ledger_module.sqlite3.connect = real_connect
    clf = store.load()
    assert (clf.n_spam, clf.n_ham) == (1, 1), "what was learned before is intact"
    assert store.check() == []
    assert store.learn(spam_messages[0], "spam").action == Action.LEARNED


def test_the_state_readers_say_a_damaged_or_locked_ledger_as_the_others_do(store, sample_spam):
    """The IMAP trainer's folder positions (``get_state``, ``state_items``):
    a damaged state table was a raw sqlite3.DatabaseError, "internal error
    (a bug)" and exit 70 from `spamlearn status`, where every other read of
    the ledger says 74; another program's write lock is 75, as elsewhere."""
    with store.session() as session:
        session.learn(sample_spam, "spam")
        session.set_state("imap:alice:INBOX", "{}")
    with Ledger(store.ledger_path, busy_timeout=0.1) as ledger:
        holder = sqlite3.connect(store.ledger_path, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            for read in (lambda: ledger.get_state("imap:alice:INBOX"), lambda: ledger.state_items("imap:")):
                with pytest.raises(StoreBusyError, match="locked by another program"):
                    read()
        finally:
            holder.close()
    db = sqlite3.connect(store.ledger_path)
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'state'").fetchone()[0]
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with open(store.ledger_path, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xff" * page_size)
    with Ledger(store.ledger_path) as ledger:
        assert ledger.counts()["spam"] == 1, "the rest of the ledger reads"
        for read in (lambda: ledger.get_state("imap:alice:INBOX"), lambda: ledger.state_items("imap:")):
            with pytest.raises(LedgerError, match="malformed"):
                read()


@pytest.mark.timeout(30)
def test_a_ledger_path_that_is_no_file_is_named_and_nothing_is_made_beside_it(tmp_path, sample_spam):
    """SQLite opens a FIFO or a device as a database: "disk I/O error", and
    a <name>-journal beside it (SPAMLEARN_LEDGER=/dev/null left
    /dev/null-journal); a folder was "unable to open database file"."""
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    for ledger, kind in ((fifo, "a FIFO"), (folder, "a folder")):
        store = ModelStore(tmp_path / "m.joblib", ledger_path=ledger, n_features=2**16)
        with pytest.raises(LedgerError, match=f"ledger {ledger} is {kind}, not a ledger file"):
            store.learn(sample_spam, "spam")
        with pytest.raises(LedgerError, match=f"is {kind}"):
            Ledger(ledger)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "folder", "m.joblib.lock"]


@pytest.mark.timeout(30)
def test_a_model_path_that_is_no_file_gets_no_lock_file_beside_it(tmp_path, sample_spam):
    """The model was refused only once its lock file was made beside it:
    `--model /dev/null learn` left /dev/null.lock, and SPAMLEARN_MODEL
    naming a folder a <folder>.lock next to it."""
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    for model, kind in ((fifo, "a FIFO"), (folder, "a folder")):
        store = ModelStore(model, n_features=2**16)
        with pytest.raises(ModelFileError, match=f"{model} is {kind}, not a model file"):
            store.learn(sample_spam, "spam")
        with pytest.raises(ModelFileError, match=f"is {kind}"):
            store.check()
        with pytest.raises(ModelFileError, match=f"is {kind}"):
            store.resize(2**17)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "folder"]


def test_ledger_of_another_model_is_refused(tmp_path, sample_spam, sample_ham):
    a = ModelStore(tmp_path / "a.joblib", n_features=2**16)
    a.learn(sample_spam, "spam")
    a.learn(sample_ham, "ham")
    b = ModelStore(tmp_path / "b.joblib", ledger_path=a.ledger_path, n_features=2**16)
    with pytest.raises(LedgerError, match="does not belong"):
        b.learn(sample_spam, "ham")


def test_a_trained_model_without_its_ledger_is_named_as_such_and_none_is_created(tmp_path, sample_spam):
    store = ModelStore(tmp_path / "m.joblib", n_features=2**16)
    store.learn(sample_spam, "spam")
    store.ledger_path.unlink()
    with pytest.raises(LedgerError, match="has no ledger: .* is missing"):
        store.learn(sample_spam, "ham")
    assert not store.ledger_path.exists()


def test_a_corrupt_model_leaves_no_new_ledger_behind(tmp_path, sample_spam):
    model = tmp_path / "m.joblib"
    model.write_bytes(b"\x80junk" * 100)
    with pytest.raises(ModelFileError):
        ModelStore(model, n_features=2**16).learn(sample_spam, "spam")
    assert not (tmp_path / "m.ledger").exists()


def test_corrupt_model_file_refuses_to_learn(store, sample_spam, sample_ham):
    store.learn(sample_ham, "ham")
    store.model_path.write_bytes(store.model_path.read_bytes()[:100])
    with pytest.raises(ModelFileError):
        store.learn(sample_spam, "spam")
    with Ledger(store.ledger_path) as ledger:
        assert ledger.counts() == {"ham": 1, "spam": 0}


def test_read_only_model_folder(read_only_folder, sample_spam, sample_ham):
    store = ModelStore(read_only_folder.path / "m.joblib", n_features=2**16)
    store.learn(sample_ham, "ham")
    read_only_folder.freeze()
    with pytest.raises((ModelFileError, LedgerError), match="not writable|read-only|cannot"):
        store.learn(sample_spam, "spam")
    assert store.load().n_ham == 1


def test_a_lock_file_this_user_cannot_write_is_named_not_the_folder(store, monkeypatch, sample_spam,
                                                                    sample_ham):
    """Root's first learn in a root-owned, group-writable folder leaves a
    0644 root:root lock file; the mail user's learner was told "the model
    folder is not writable", a folder it could write.  (Root writes any
    file, so the refusal is the one open(2) gives another user.)"""
    import errno

    store.learn(sample_ham, "ham")

    def refused(self, access):
        raise PermissionError(errno.EACCES, "Permission denied", str(self.lock_path))

    monkeypatch.setattr(ModelStore, "_open_lock_file", refused)
    not_writable = r"the lock file .*model.joblib.lock is not writable by this user"
    with pytest.raises(ModelFileError, match=not_writable):
        store.learn(sample_spam, "spam")
    monkeypatch.undo()
    assert store.load().n_spam == 0 and store.check() == []


def test_a_user_who_cannot_write_the_folder_can_still_check(read_only_folder, sample_spam, sample_ham):
    # A monitoring check run as another user: it reads, under the lock taken for reading.
    store = ModelStore(read_only_folder.path / "m.joblib", n_features=2**16)
    store.learn(sample_ham, "ham")
    store.learn(sample_spam, "spam")
    other = ModelStore(read_only_folder.path / "n.joblib", n_features=2**16)
    other.learn(sample_spam, "spam")
    with Ledger(other.ledger_path) as ledger:
        ledger.commit({}, ledger.revision + 1)        # a learner killed between its two writes
    read_only_folder.freeze()
    assert store.check() == []
    with pytest.raises(LedgerError, match="one commit ahead of model .* the next learn repairs it"):
        other.check()
    from typer.testing import CliRunner

    from spamlearn.cli import app

    shown = CliRunner().invoke(app, ["--model", str(store.model_path), "info", "--check"])
    assert shown.exit_code == 0 and "check:          ok" in shown.output


def test_busy_lock_times_out_clearly(tmp_path, sample_spam):
    store = ModelStore(tmp_path / "m.joblib", n_features=2**16, lock_timeout=0.2)
    with store.session():
        other = ModelStore(tmp_path / "m.joblib", n_features=2**16, lock_timeout=0.2)
        with pytest.raises(StoreBusyError, match="another learner has held"):
            other.learn(sample_spam, "spam")


def test_a_wait_for_the_lock_ends_at_once_when_told_to_stop(tmp_path, sample_spam):
    """The HTTP service's SIGTERM: its learners stop waiting (30 s by default).
    The holder here is in the same process, as a learn request of the
    service itself often is: the 503 said "another spamlearn process"."""
    store = ModelStore(tmp_path / "m.joblib", n_features=2**16)
    stop = threading.Event()
    waiting = ModelStore(tmp_path / "m.joblib", n_features=2**16, lock_timeout=30, stop_waiting=stop)
    with store.session():
        threading.Timer(0.2, stop.set).start()
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match="held by another learner and this service is stopping"):
            waiting.learn(sample_spam, "spam")
    assert time.monotonic() - started < 1.0


def _learn_in_process(args):
    path, raw, label = args
    from pathlib import Path

    from spamlearn.modelstore import ModelStore

    return ModelStore(Path(path), n_features=2**16).learn(raw, label).action


def test_concurrent_learners_lose_nothing(tmp_path, spam_messages, ham_messages):
    path = tmp_path / "m.joblib"
    jobs = [(str(path), raw, "spam") for raw in spam_messages] + \
           [(str(path), raw, "ham") for raw in ham_messages] + \
           [(str(path), spam_messages[0], "spam")] * 4
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        actions = pool.map(_learn_in_process, jobs)
    assert actions.count(Action.LEARNED) == len(spam_messages) + len(ham_messages)
    assert actions.count(Action.ALREADY_KNOWN) == 4
    store = ModelStore(path, n_features=2**16)
    clf = store.load()
    assert (clf.n_spam, clf.n_ham) == (len(spam_messages), len(ham_messages))
    assert store.check() == []


def test_envelope_line_does_not_change_identity(store, sample_spam):
    store.learn(b"From spammer@example.net  Mon Sep  2 03:14:15 2002\n" + sample_spam, "spam")
    assert store.learn(sample_spam.replace(b"\n", b"\r\n"), "spam").action == Action.ALREADY_KNOWN


def test_another_name_of_the_shared_model_keeps_its_configured_ledger(tmp_path):
    """users/alice.joblib -> ../model.joblib with [model] ledger set: the
    store pairs the configured ledger with every name of that file (a
    helper's review: it looked for model.ledger beside it, and a restore
    wrote a second ledger there)."""
    from spamlearn.config import load_settings

    lib = tmp_path / "lib"
    (lib / "users").mkdir(parents=True)
    shared = tmp_path / "led" / "shared.ledger"
    settings = load_settings(env={}, model_path=lib / "model.joblib", ledger_path=shared)
    (lib / "users" / "alice.joblib").symlink_to("../model.joblib")
    for name in (lib / "model.joblib", lib / "users" / "alice.joblib", lib / "users" / ".." / "model.joblib"):
        assert ModelStore.with_settings(settings, name).ledger_path == shared, name
    assert ModelStore.with_settings(settings, lib / "other.joblib").ledger_path == lib / "other.ledger"


def _delivered_to(user: bytes, raw: bytes) -> bytes:
    return (b"Return-Path: <bounce@example.net>\nDelivered-To: " + user + b"\nReceived: from mx.example.org"
            b"\n\tby mail.example.org (Dovecot) with LMTP\n"
            b"\tfor <" + user + b">; Sat, 28 Nov 2026 10:00:00 +0000\n"
            + raw)


def test_the_copies_one_delivery_gave_several_users_count_once(store, sample_spam, sample_ham):
    store.learn(sample_ham, "ham")
    assert store.learn(_delivered_to(b"alice@example.org", sample_spam), "spam").action == Action.LEARNED
    assert store.learn(_delivered_to(b"bob@example.org", sample_spam), "spam").action == Action.ALREADY_KNOWN
    assert store.learn(_delivered_to(b"carol@example.org", sample_spam), "ham").action == Action.RELABELLED
    clf = store.load()
    assert (clf.n_spam, clf.n_ham) == (0, 2)
    assert store.check() == []


def learned_by_an_older_version(store, monkeypatch, digest_of, ham, raw):
    """``ham``, then ``raw`` as spam, learned by a version that keyed messages
    on ``digest_of``; the outcome of the second."""
    import spamlearn.modelstore as modelstore

    with monkeypatch.context() as old_version:
        old_version.setattr(modelstore, "message_digest", digest_of)
        store.learn(ham, "ham")
        return store.learn(raw, "spam")


def test_a_message_a_0_2_ledger_learned_is_not_counted_again(store, monkeypatch, sample_spam,
                                                                   sample_ham):
    from spamlearn.message import legacy_message_digest

    copy = _delivered_to(b"alice@example.org", sample_spam)
    assert legacy_message_digest(copy) != message_digest(copy)
    old = learned_by_an_older_version(store, monkeypatch, legacy_message_digest, sample_ham, copy)
    assert old.digest == legacy_message_digest(copy)
    # The same copy again: the row of then is found, and moves to today's
    # digest, where the other users' copies of the delivery will find it.
    again = store.learn(copy, "spam")
    assert (again.action, again.digest) == (Action.ALREADY_KNOWN, message_digest(copy))
    assert store.load().n_spam == 1
    bobs = _delivered_to(b"bob@example.org", sample_spam)
    relabel = store.learn(bobs, "ham")
    assert (relabel.action, relabel.digest) == (Action.RELABELLED, message_digest(copy))
    assert (store.load().n_spam, store.load().n_ham) == (0, 2)
    assert store.forget(copy).action == Action.FORGOTTEN
    assert store.forget(copy).action == Action.NOT_KNOWN
    assert (store.load().n_spam, store.load().n_ham) == (0, 1)
    assert store.check() == []


def test_a_0_2_row_of_a_copy_joins_the_row_another_copy_made_since(store, monkeypatch, sample_spam,
                                                                   sample_ham):
    """0.2 learned alice's copy; bob's copy of the same delivery was learned
    after the upgrade.  Alice's move out of Junk reaches her row of then, and
    the two rows become the message's one (a helper's review: bob's row was
    relabelled, alice's left spam: one message counted as both)."""
    from spamlearn.message import legacy_message_digest

    alices, bobs = (_delivered_to(user, sample_spam) for user in (b"alice@example.org", b"bob@example.org"))
    learned_by_an_older_version(store, monkeypatch, legacy_message_digest, sample_ham, alices)
    assert store.learn(bobs, "spam").action == Action.LEARNED       # not known under today's digest yet
    assert store.load().n_spam == 2
    relabel = store.learn(alices, "ham")
    assert (relabel.action, relabel.digest) == (Action.RELABELLED, message_digest(alices))
    assert (store.load().n_spam, store.load().n_ham) == (0, 2) and store.check() == []
    assert store.forget(alices).action == Action.FORGOTTEN
    assert (store.load().n_spam, store.load().n_ham) == (0, 1) and store.check() == []


def test_forgetting_a_0_2_row_stops_a_verdict_queued_before_it(store, monkeypatch, sample_spam, sample_ham):
    from spamlearn.message import legacy_message_digest

    alices = _delivered_to(b"alice@example.org", sample_spam)
    old = learned_by_an_older_version(store, monkeypatch, legacy_message_digest, sample_ham, alices)
    queued_at = time.time() - 60
    assert store.forget(old.digest).action == Action.FORGOTTEN          # by the digest 0.2 gave
    with store.session(source="sieve") as session:
        assert session.learn(alices, "spam", verdict_at=queued_at).action == Action.SUPERSEDED
    assert store.load().n_spam == 0 and store.check() == []


def test_an_mbox_entry_learned_under_its_quoted_digest_of_before_is_not_counted_again(
        store, monkeypatch, sample_ham):
    """Bytes with an envelope line and ``>From `` lines (stdin, HTTP) were
    keyed with their quoting until 2026-11-29, and the same file learned by
    its path (an mbox, unquoted) was another message; the row of then is
    found, and both ways are one message now (a helper's review)."""
    from spamlearn.mailsource import messages_in_file
    from spamlearn.message import quoted_envelope_digest

    entry = (b"From bounce@example.net Sat Nov 28 10:00:00 2026\nDelivered-To: alice@example.org\n"
             b"From: a@example.org\nSubject: an offer\nMessage-ID: <2@example.org>\n\n"
             b"Dear friend,\n>From the desk of the director: cheap pills\n")
    old = learned_by_an_older_version(store, monkeypatch,
                                      lambda raw: quoted_envelope_digest(raw) or message_digest(raw),
                                      sample_ham, entry)
    assert old.digest == quoted_envelope_digest(entry) != message_digest(entry)
    (from_file,) = messages_in_file("offer.mbox", entry)
    moved = store.learn(from_file.raw, "ham")                 # `learn --ham offer.mbox`
    assert (moved.action, moved.digest) == (Action.RELABELLED, message_digest(entry))
    assert store.learn(entry, "ham").action == Action.ALREADY_KNOWN     # the bytes over HTTP
    assert (store.load().n_spam, store.load().n_ham) == (0, 2) and store.check() == []


@pytest.mark.parametrize("then_newlines, now_newlines", [(b"", b"\n"), (b"\n", b""), (b"\n", b"\n\n"),
                                                          (b"", b"\r\n")])
def test_a_header_only_message_learned_under_its_digest_of_before_is_not_counted_again(
        store, monkeypatch, sample_ham, then_newlines, now_newlines):
    """A message without a blank line was keyed with its trailing newlines
    until 2026-11-29; its row of then is found (and moves to today's
    digest), from any form of it (a second review: learned yesterday as
    "Subject: a" and today as "Subject: a\n", it was spam and ham at once)."""
    from spamlearn.message import _NOT_THE_MESSAGE_RE, _digest, legacy_message_digest

    # Delivered-To: the digest of 0.2.0, which kept it, is not this one.
    head = (b"Delivered-To: alice@example.org\nFrom: a@example.org\nSubject: cheap pills now\n"
            b"Message-ID: <1@example.org>")
    then, now = head + then_newlines, head + now_newlines
    def digest_then(raw):
        return _digest(message_bytes(raw), _NOT_THE_MESSAGE_RE, bare_head_as_empty_body=False)

    assert len({digest_then(then), message_digest(then), legacy_message_digest(then)}) == 3
    old = learned_by_an_older_version(store, monkeypatch, digest_then, sample_ham, then)
    assert old.digest == digest_then(then)
    moved = store.learn(now, "ham")
    assert (moved.action, moved.digest) == (Action.RELABELLED, message_digest(now))
    assert (store.load().n_spam, store.load().n_ham) == (0, 2)
    assert store.forget(head).action == Action.FORGOTTEN
    assert (store.load().n_spam, store.load().n_ham) == (0, 1) and store.check() == []


def test_the_same_verdict_given_now_outdates_one_queued_before_it(store, sample_spam, sample_ham):
    """A move out of Junk queued at T1, then `learn --spam` of the message
    (already spam) at T2: the queued ham verdict is older and must not
    land (the drain made it ham)."""
    store.learn(sample_ham, "ham")
    with store.session() as session:
        assert session.learn(sample_spam, "spam", verdict_at=time.time() - 60).action == Action.LEARNED
    queued_at = time.time() - 30
    assert store.learn(sample_spam, "spam").action == Action.ALREADY_KNOWN     # now, no time given
    with store.session(source="sieve") as session:
        assert session.learn(sample_spam, "ham", verdict_at=queued_at).action == Action.SUPERSEDED
    assert store.load().n_spam == 1 and store.check() == []


def test_a_message_given_as_text_is_the_message_never_a_ledger_key(store, sample_spam, sample_ham):
    text = sample_spam.decode("utf-8")
    with store.session() as session:
        assert session.learn(text, "spam").action == Action.LEARNED
        assert session.learn(sample_spam, "spam").action == Action.ALREADY_KNOWN
        assert session.known(text) == Label.SPAM
        # A digest is taken as one where a message or its digest may be given.
        assert session.known(message_digest(sample_spam)) == Label.SPAM
    store.learn(sample_ham, "ham")
    assert (store.load().n_spam, store.load().n_ham) == (1, 1) and store.check() == []


def test_every_form_of_a_message_classifier_takes_the_store_takes(store, sample_spam, sample_ham):
    """A helper's review: a memoryview, which Classifier scores, failed to
    learn with AttributeError."""
    with store.session() as session:
        assert session.learn(memoryview(sample_spam), "spam").action == Action.LEARNED
        assert session.learn(bytearray(sample_spam), "spam").action == Action.ALREADY_KNOWN
        assert session.known(memoryview(sample_spam)) == Label.SPAM
        assert session.forget(bytearray(sample_spam)).action == Action.FORGOTTEN
    assert store.learn(memoryview(sample_ham), "ham").action == Action.LEARNED
    assert store.forget(bytearray(sample_ham)).action == Action.FORGOTTEN


@pytest.mark.parametrize("raw, message", [
    (None, "not NoneType"),
    (Path("message.eml"), "not PosixPath"),
    (email.message_from_bytes(b"Subject: a\n\nb"), "not Message"),
    ("Subject: a\n\n\ud800", "lone surrogate"),
    (b"", "empty message"),
    (b" \r\n", "empty message"),
    (b"From bounce@example.net Mon Jan  1 00:00:00 2024\n\n", "empty message"),   # an envelope line only
])
def test_what_is_not_a_message_is_a_message_error_for_learn_and_forget(store, sample_spam, raw, message):
    """Not an AttributeError or a UnicodeEncodeError from inside the store,
    and an empty message is none for forget as it is for learn (forget said
    "not known")."""
    store.learn(sample_spam, "spam")
    for act in (lambda: store.learn(raw, "spam"), lambda: store.forget(raw)):
        with pytest.raises(MessageError, match=message):
            act()
    with store.session() as session:
        with pytest.raises(MessageError, match=message):
            session.known(raw)
    assert store.check() == [] and store.load().n_spam == 1


@pytest.mark.parametrize("when", [float("nan"), float("inf"), float("-inf")])
def test_a_verdict_time_that_is_no_time_is_refused_and_the_session_keeps_its_work(store, sample_spam,
                                                                                  sample_ham, when):
    with store.session() as session:
        session.learn(sample_ham, "ham")
        with pytest.raises(ValueError, match="finite"):
            session.learn(sample_spam, "spam", verdict_at=when)
    assert store.load().n_ham == 1 and store.load().n_spam == 0 and store.check() == []


def test_a_verdict_given_again_moves_its_time_in_the_ledger_alone(store, sample_spam, sample_ham):
    """Nothing the model counts changes: its file and revision stay, so the
    HTTP service has nothing to reload (the time still lands, and a crash
    cannot part the two)."""
    store.learn(sample_ham, "ham")
    with store.session() as session:
        session.learn(sample_spam, "spam", verdict_at=time.time() - 60)
    before = store.model_path.stat()
    revision = store.load().revision
    with store.session() as session:
        assert session.learn(sample_spam, "spam").action == Action.ALREADY_KNOWN
        session.set_state("imap:alice:INBOX", "1:42")
    after = store.model_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert store.load().revision == revision and store.check() == []
    with store.session() as session:
        assert session._row(message_digest(sample_spam)).learned_at > time.time() - 5
        assert session.get_state("imap:alice:INBOX") == "1:42"


def test_a_verdict_queued_before_a_forget_does_not_learn_the_message_back(store, sample_spam, sample_ham):
    store.learn(sample_ham, "ham")
    store.learn(sample_spam, "spam")
    queued_at = time.time() - 1                    # a move into Junk, queued while the service was busy
    assert store.forget(sample_spam).action == Action.FORGOTTEN
    with store.session(source="sieve") as session:
        outcome = session.learn(sample_spam, "spam", verdict_at=queued_at)
        assert (outcome.action, outcome.previous) == (Action.SUPERSEDED, None)
        assert "forgotten after this verdict" in outcome.describe()
        # A verdict given after the forget is learned, as one given now is.
        assert session.learn(sample_spam, "ham", verdict_at=time.time()).action == Action.LEARNED
    assert (store.load().n_spam, store.load().n_ham) == (0, 2) and store.check() == []
