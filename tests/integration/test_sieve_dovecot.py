"""Dovecot imapsieve retraining against a real Dovecot with real Pigeonhole.

The server runs the files ``spamlearn sieve install`` writes, unchanged: its
config ``!include``s the generated snippet, the scripts are the generated
ones compiled by the install, and the pipe program is the generated
``/bin/sh`` script running as the mail user (``nobody`` as root) with
Dovecot's empty environment.  Users act through imapclient; learning is
checked in the ledger and the model, and every test ends with
``ModelStore.check() == []`` and no Error/Fatal line in dovecot.log.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dovecot import DovecotServer
from typer.testing import CliRunner

from spamlearn.cli import app
from spamlearn.config import load_settings
from spamlearn.ledger import Ledger
from spamlearn.message import message_digest
from spamlearn.modelstore import ModelStore
from spamlearn.sieve.drain import drain_spool
from spamlearn.sieve.spool import Spool

pytestmark = pytest.mark.integration

USERS = {"alice": "alice-Sieve-1", "bob": "bob-Sieve-2"}
runner = CliRunner()


def invoke(*args: object) -> object:
    result = runner.invoke(app, [str(a) for a in args])
    return result


def make_message(tag: str, spammy: bool = True) -> bytes:
    """A small CRLF message, unique per ``tag`` (IMAP clients send CRLF)."""
    body = ("Cheap pills, buy now, click here for the best price, limited offer"
            if spammy else "Can we move the project meeting to ten tomorrow morning?")
    return (f"From: sender-{tag}@example.org\r\nTo: alice@example.org\r\n"
            f"Subject: {tag}\r\nMessage-ID: <{tag}@example.org>\r\n\r\n{body} ({tag})\r\n").encode()


class SieveSite:
    """A Dovecot with the installed imapsieve setup, and spamlearn's config for it."""

    def __init__(self, base: Path, append_rule: bool = False):
        self.server = DovecotServer(users=USERS)
        root = self.server.dir / "spamlearn"  # under the server's 0755 folder: nobody can reach it
        self.spool_dir = root / "spool"
        self.conf_dir = root / "conf"
        mail_user = pwd.getpwuid(self.server.mail_uid).pw_name
        args = ["sieve", "install", "--spool", self.spool_dir, "--conf-dir", self.conf_dir,
                "--sieve-dir", root / "sieve", "--pipe-bin-dir", root / "bin",
                "--mail-user", mail_user]
        if append_rule:
            args.append("--append-rule")
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        self.server.extra_config = f"!include {self.conf_dir / '90-spamlearn-imapsieve.conf'}\n"
        self.config = base / "spamlearn.toml"
        self.config.write_text(
            f'[model]\npath = "{base / "model.joblib"}"\n'
            f'[users]\ndir = "{base / "users"}"\nown_model = ["bob"]\n'
            f'[sieve]\nspool = "{self.spool_dir}"\n')
        self.settings = load_settings(self.config)
        self.spool = Spool(self.spool_dir)

    def store(self, user: str | None = None) -> ModelStore:
        return ModelStore.from_settings(self.settings, user)

    def queued(self) -> list[str]:
        """(label, user) of each spool file, oldest first."""
        entries, strays = self.spool.entries()
        assert strays == []
        return [f"{e.label},{e.user}" for e in entries]

    def drain(self) -> dict:
        result = invoke("--config", self.config, "sieve", "drain", "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    def labels(self, user: str | None = None) -> dict[str, str]:
        store = self.store(user)
        if not store.ledger_path.exists():
            return {}
        with Ledger(store.ledger_path) as ledger:
            return {row.digest: row.label for row in ledger.rows()}

    def assert_healthy(self) -> None:
        for user in (None, "bob"):
            if self.store(user).exists():
                assert self.store(user).check() == []
        assert self.server.errors() == []
        assert list(self.spool.failed.iterdir()) == []


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = SieveSite(tmp_path_factory.mktemp("sieve-site"))
    site.server.start()
    try:
        yield site
    finally:
        site.server.stop()


@pytest.fixture
def fresh(site):
    """The site with empty mailboxes and an empty spool; the model carries on."""
    for user in USERS:
        site.server.reset_user(user)
    site.drain()
    assert site.queued() == []
    yield site
    site.assert_healthy()


def test_move_into_junk_learns_spam_and_back_to_inbox_relabels(fresh):
    raw = make_message("relabel-1")
    digest = message_digest(raw)
    client = fresh.server.connect("alice")
    try:
        client.append("INBOX", raw)
        client.select_folder("INBOX")
        client.move(client.search("ALL"), "Junk")
        # the pipe ran inside the MOVE: queued by the time the OK came back
        assert fresh.queued() == ["spam,alice"]
        before = fresh.store().info().get("n_spam", 0)
        report = fresh.drain()
        assert (report["learned"], report["relabelled"]) == (1, 0)
        assert fresh.labels()[digest] == "spam"
        assert fresh.store().info()["n_spam"] == before + 1

        client.select_folder("Junk")
        client.move(client.search("ALL"), "INBOX")
        assert fresh.queued() == ["ham,alice"]
        info = fresh.store().info()
        report = fresh.drain()
        assert (report["learned"], report["relabelled"]) == (0, 1)
        assert fresh.labels()[digest] == "ham"
        after = fresh.store().info()
        assert (after["n_spam"], after["n_ham"]) == (info["n_spam"] - 1, info["n_ham"] + 1)
    finally:
        client.logout()


def test_junk_to_trash_learns_nothing(fresh):
    raw = make_message("trash-1")
    client = fresh.server.connect("alice")
    try:
        client.append("Junk", raw)  # APPEND: not reported (no append rule here)
        client.select_folder("Junk")
        client.move(client.search("ALL"), "Trash")
        assert client.folder_status("Trash", [b"MESSAGES"])[b"MESSAGES"] == 1
    finally:
        client.logout()
    assert fresh.queued() == []
    assert fresh.drain()["learned"] == 0
    assert message_digest(raw) not in fresh.labels()


def test_spam_filed_into_a_junk_subfolder_is_not_ham(fresh):
    raw = make_message("junk-sub-1")
    client = fresh.server.connect("alice")
    try:
        client.create_folder("Junk/2026")
        client.append("INBOX", raw)
        client.select_folder("INBOX")
        client.move(client.search("ALL"), "Junk")
        client.select_folder("Junk")
        client.move(client.search("ALL"), "Junk/2026")
        assert client.folder_status("Junk/2026", [b"MESSAGES"])[b"MESSAGES"] == 1
    finally:
        client.logout()
    assert fresh.queued() == ["spam,alice"]     # the move into Junk only
    fresh.drain()
    assert fresh.labels()[message_digest(raw)] == "spam"


def test_multi_message_move_learns_each_once(fresh):
    messages = [make_message(f"multi-{i}") for i in range(3)]
    client = fresh.server.connect("alice")
    try:
        for raw in messages:
            client.append("INBOX", raw)
        client.select_folder("INBOX")
        uids = client.search("ALL")
        assert len(uids) == 3
        client.move(uids, "Junk")  # one UID MOVE: the pipe runs once per message
        assert fresh.queued() == ["spam,alice"] * 3
        report = fresh.drain()
        assert report["learned"] == 3 and report["already_known"] == 0
        # the same three copied into Junk again: known, not counted again
        client.select_folder("Junk")
        client.copy(client.search("ALL"), "Junk")
    finally:
        client.logout()
    assert fresh.queued() == ["spam,alice"] * 3  # Junk -> Junk: spam again, never ham
    n_spam = fresh.store().info()["n_spam"]
    report = fresh.drain()
    assert (report["learned"], report["already_known"]) == (0, 3)
    assert fresh.store().info()["n_spam"] == n_spam
    labels = fresh.labels()
    assert all(labels[message_digest(raw)] == "spam" for raw in messages)


def test_copy_into_junk_learns_spam(fresh):
    raw = make_message("copy-1")
    client = fresh.server.connect("alice")
    try:
        client.append("INBOX", raw)
        client.select_folder("INBOX")
        client.copy(client.search("ALL"), "Junk")
        assert client.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"] == 1
    finally:
        client.logout()
    assert fresh.queued() == ["spam,alice"]
    assert fresh.drain()["learned"] == 1
    assert fresh.labels()[message_digest(raw)] == "spam"


def test_append_into_junk_is_not_reported_without_the_append_rule(fresh):
    raw = make_message("append-off")
    client = fresh.server.connect("alice")
    try:
        client.append("Junk", raw)
    finally:
        client.logout()
    assert fresh.queued() == []
    assert message_digest(raw) not in fresh.labels()


def test_append_into_junk_is_reported_with_the_append_rule(tmp_path):
    site = SieveSite(tmp_path, append_rule=True)
    conf = (site.conf_dir / "90-spamlearn-imapsieve.conf").read_text()
    assert "imapsieve_mailbox1_causes = COPY APPEND" in conf
    raw = make_message("append-on")
    with site.server:
        client = site.server.connect("alice")
        try:
            client.append("Junk", raw)  # how Outlook "moves" into Junk
            client.append("INBOX", make_message("append-inbox", spammy=False))
            client.select_folder("INBOX")
            client.move(client.search("ALL"), "Junk")  # a real MOVE still counts once
        finally:
            client.logout()
        assert site.queued() == ["spam,alice", "spam,alice"]
        assert site.drain()["learned"] == 2
        assert site.labels()[message_digest(raw)] == "spam"
        site.assert_healthy()


def test_moves_while_the_drain_is_down_are_learned_once_even_after_a_crash(fresh):
    """Nothing queued is lost while spamlearn is not running, nothing is learned twice."""
    spam = [make_message(f"down-spam-{i}") for i in range(3)]
    rescued = make_message("down-rescued", spammy=False)
    client = fresh.server.connect("alice")
    try:
        for raw in spam + [rescued]:
            client.append("INBOX", raw)
        client.select_folder("INBOX")
        client.move(client.search("ALL"), "Junk")
        client.select_folder("Junk")
        (uid,) = client.search(["SUBJECT", "down-rescued"])
        client.move([uid], "INBOX")  # the user rescues one before any drain ran
    finally:
        client.logout()
    assert fresh.queued() == ["spam,alice"] * 4 + ["ham,alice"]
    store = fresh.store()
    before = store.info() if store.exists() else {"n_spam": 0, "n_ham": 0}

    # The drain dies after committing and before deleting its files.
    class Crash(Exception):
        pass

    def crash(entries):
        raise Crash

    with pytest.raises(Crash):
        drain_spool(fresh.spool, fresh.settings, on_committed=crash)
    assert len(fresh.queued()) == 5  # all still queued
    after_crash = store.info()
    assert after_crash["n_spam"] == before["n_spam"] + 3
    assert after_crash["n_ham"] == before["n_ham"] + 1

    report = fresh.drain()  # the next run: everything is known already
    assert (report["learned"], report["relabelled"]) == (0, 0)
    assert report["already_known"] == 4 and report["superseded"] == 1
    assert fresh.queued() == []
    final = store.info()
    assert (final["n_spam"], final["n_ham"]) == (after_crash["n_spam"], after_crash["n_ham"])
    labels = fresh.labels()
    assert labels[message_digest(rescued)] == "ham"
    assert all(labels[message_digest(raw)] == "spam" for raw in spam)


def test_a_busy_model_keeps_the_queue(fresh):
    raw = make_message("busy-1")
    client = fresh.server.connect("alice")
    try:
        client.append("INBOX", raw)
        client.select_folder("INBOX")
        client.move(client.search("ALL"), "Junk")
    finally:
        client.logout()
    # Another learner (a long `spamlearn train`) holds the model's lock.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, fcntl, os\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\nsys.stdin.read()\n",
         str(fresh.store().lock_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        env_timeout = {"SPAMLEARN_LOCK_TIMEOUT": "0.2"}
        result = runner.invoke(app, ["--config", str(fresh.config), "sieve", "drain"], env=env_timeout)
        assert result.exit_code == 75, result.output
        assert "held" in result.output
        assert fresh.queued() == ["spam,alice"]
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()
    assert fresh.drain()["learned"] == 1
    assert fresh.labels()[message_digest(raw)] == "spam"


def test_a_user_with_an_own_model_trains_it(fresh):
    raw = make_message("bob-own-1")
    client = fresh.server.connect("bob")
    try:
        client.append("INBOX", raw)
        client.select_folder("INBOX")
        client.move(client.search("ALL"), "Junk")
    finally:
        client.logout()
    assert fresh.queued() == ["spam,bob"]
    report = fresh.drain()
    assert report["learned"] == 1
    bob_store = fresh.store("bob")
    assert report["models"] == [str(bob_store.model_path)]
    assert bob_store.model_path == fresh.settings.user_model_path("bob")
    assert fresh.labels("bob")[message_digest(raw)] == "spam"
    assert message_digest(raw) not in fresh.labels()  # not in the shared model
    sources = {row["source"] for row in bob_store.info()["sources"]}
    assert sources == {"sieve:bob"}


def test_move_latency_with_the_pipe(fresh):
    """A MOVE into Junk (pipe runs) costs about what a MOVE elsewhere (no pipe) does."""
    n = 15
    client = fresh.server.connect("alice")
    try:
        for i in range(n):
            client.append("INBOX", make_message(f"latency-{i}"))
        client.select_folder("INBOX")
        piped, plain = [], []
        for uid in client.search("ALL"):
            start = time.perf_counter()
            client.move([uid], "Junk")
            piped.append(time.perf_counter() - start)
        for i in range(n):
            client.append("Archive", make_message(f"latency-plain-{i}"))
        client.select_folder("Archive")  # Archive -> INBOX runs no rule: the baseline
        for uid in client.search("ALL"):
            start = time.perf_counter()
            client.move([uid], "INBOX")
            plain.append(time.perf_counter() - start)
    finally:
        client.logout()
    assert len(fresh.queued()) == n
    fresh.drain()
    median_piped, median_plain = statistics.median(piped), statistics.median(plain)
    print(f"\nMOVE into Junk with the pipe: median {median_piped * 1000:.1f} ms, "
          f"max {max(piped) * 1000:.1f} ms; MOVE without a rule: median {median_plain * 1000:.1f} ms")
    # Generous bounds for a shared 2-core machine; typically 5-15 ms.
    assert median_piped < 0.1
    assert max(piped) < 1.0


def test_a_failing_pipe_does_not_fail_the_move_but_is_logged(tmp_path):
    """If the spool is unwritable the user's move still works; dovecot.log says why."""
    site = SieveSite(tmp_path)
    shutil.rmtree(site.spool.tmp)  # what a broken spool looks like
    with site.server:
        client = site.server.connect("alice")
        try:
            client.append("INBOX", make_message("broken-spool"))
            client.select_folder("INBOX")
            client.move(client.search("ALL"), "Junk")
            assert client.folder_status("Junk", [b"MESSAGES"])[b"MESSAGES"] == 1
        finally:
            client.logout()
        errors = "\n".join(site.server.errors())
        assert "spamlearn-report" in errors
        assert "is its disk full? does the mail user own the spool?" in site.server.log_text()
    assert not os.path.exists(site.spool.tmp)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_mode_learns_through_spamlearn_serve_and_spools_while_it_is_down(tmp_path):
    """The pipe posts to a real `spamlearn serve`; when that is down, the spool keeps the message."""
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    token = "sieve-learn-token-0123456789"
    service_token = tmp_path / "learn.token"  # the service's own copy: 0600, as it demands
    service_token.write_text(token + "\n")
    service_token.chmod(0o600)
    site = SieveSite(tmp_path)
    pipe_token = site.server.dir / "spamlearn" / "pipe.token"  # the mail user's copy
    pipe_token.write_text(token + "\n")
    pipe_token.chmod(0o644)
    result = invoke("sieve", "install", "--spool", site.spool_dir, "--conf-dir", site.conf_dir,
                    "--sieve-dir", site.server.dir / "spamlearn" / "sieve",
                    "--pipe-bin-dir", site.server.dir / "spamlearn" / "bin",
                    "--http", url, "--http-token-file", pipe_token)
    assert result.exit_code == 0, result.output
    with site.config.open("a") as fh:
        fh.write(f'[server]\nlearn_token_file = "{service_token}"\n')

    served, queued = make_message("http-served"), make_message("http-queued")
    service = subprocess.Popen(
        [sys.executable, "-m", "spamlearn", "--config", str(site.config), "serve",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60  # importing the service takes seconds on a busy box
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            assert service.poll() is None, service.stderr.read().decode()
            assert time.monotonic() < deadline, "spamlearn serve did not come up"
            time.sleep(0.1)
        with site.server:
            client = site.server.connect("alice")
            try:
                client.append("INBOX", served)
                client.select_folder("INBOX")
                client.move(client.search("ALL"), "Junk")
                # learned during the MOVE, through the service: nothing queued
                assert site.queued() == []
                assert site.labels()[message_digest(served)] == "spam"
                assert site.server.errors() == []

                service.terminate()
                service.wait(timeout=30)
                client.append("INBOX", queued)
                client.select_folder("INBOX")
                client.move(client.search("ALL"), "Junk")
            finally:
                client.logout()
            assert site.queued() == ["spam,alice"]
            # the outage is visible in dovecot.log, and only the fallback is
            errors = site.server.errors()
            assert errors and all("spamlearn-report" in e or "curl" in e for e in errors), errors
            report = site.drain()
            assert report["learned"] == 1
            assert site.labels()[message_digest(queued)] == "spam"
            assert site.store().check() == []
    finally:
        if service.poll() is None:
            service.terminate()
            service.wait(timeout=30)
        service.stderr.close()
