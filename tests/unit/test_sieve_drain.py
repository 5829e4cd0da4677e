"""``spamlearn sieve drain`` and the spool: learned once, in order, deleted only after the commit."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spamlearn.cli import app
from spamlearn.config import load_settings
from spamlearn.errors import StoreBusyError
from spamlearn.ledger import Ledger
from spamlearn.message import message_digest
from spamlearn.modelstore import ModelStore
from spamlearn.sieve.drain import drain_spool
from spamlearn.sieve.spool import STALE_TMP_SECONDS, Spool

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


def test_one_drain_at_a_time(site, spam_messages):
    site.queue(spam_messages[0], "spam")
    with site.spool.lock():
        with pytest.raises(StoreBusyError):
            drain_spool(site.spool, site.settings)
        result = site.drain_cli()
        assert result.exit_code == 0
        assert "another drain is running" in result.output
    assert len(list(site.spool.new.iterdir())) == 1


def test_cli_json_and_quiet(site, spam_messages):
    result = site.drain_cli("--quiet")
    assert result.exit_code == 0 and result.output == ""
    site.queue(spam_messages[0], "spam")
    result = site.drain_cli("--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["learned"] == 1


def test_cli_missing_spool_is_a_config_error(tmp_path):
    result = runner.invoke(app, ["sieve", "drain", "--spool", str(tmp_path / "nope")])
    assert result.exit_code == 78
    assert "spamlearn sieve install" in result.output


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
