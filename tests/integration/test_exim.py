"""Debian's real Exim (exim4-daemon-heavy, 4.96) with its DATA ACL's
``spam =`` condition asking a real ``spamlearn serve`` on its spamd port:
what an Exim admin gets from the README's config lines, seen by an SMTP
client (Python's smtplib) and in the message Exim keeps.

The Exim is a throw-away daemon (``exim -C FILE -bdf``): its own config,
spool and logs in one ``tempfile.mkdtemp()`` folder under /tmp, listening
on 127.0.0.1 on a free port, stopped by the test.  Not ``exim -bh``: it
does run the ``spam`` condition for real (it asks spamd), but it writes
no message to the spool and answers on stdout, so neither the headers
Exim adds to the message it keeps nor a 550 seen by an SMTP client could
be checked.

As root (CI; a daemon is refused to anyone but Exim's admin users): a
``-C`` file not in Debian's TRUSTED_CONFIG_LIST (``/etc/exim4/trusted_configs``,
shown by ``exim -d -bV``) makes Exim give up root, and the daemon runs as
``exim_user`` (``Debian-exim``): the folder is handed to that user, and
is not under pytest's ``/tmp/pytest-of-root`` (0700, which it cannot
enter).  Nothing of the system's Exim (its config, spool, logs, trusted
list) is read or changed.  ``queue_only``: a message accepted stays in the
spool, never delivered, and the test reads its header file.
"""

from __future__ import annotations

import email
import math
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path

import httpx
import pytest
from serve_process import ServeProcess, free_port, terminate
from test_serve import HAMMY, SPAMMY, write_deployment

from spamlearn.points import spamassassin_points

pytestmark = pytest.mark.integration

EXIM = "/usr/sbin/exim4"

#: The README's lines for the DATA ACL, as an admin writes them; ``{defer_ok}``
#: is "" or "/defer_ok" and ``{reject_above}`` a $spam_score_int (points x 10).
#: ``nobody:true`` makes the condition true whatever the score, for its
#: variables; ``nobody`` alone is true for spam (score >= 5.0).
DATA_ACL = """\
acl_check_data:
  warn    spam       = nobody:true{defer_ok}
          add_header = X-Spam-Score: $spam_score ($spam_bar)
          add_header = X-Spam-Report: $spam_report
  warn    spam       = nobody{defer_ok}
          add_header = X-Spam-Flag: YES
  deny    spam       = nobody:true{defer_ok}
          condition  = ${{if >{{$spam_score_int}}{{{reject_above}}}}}
          message    = This message scored $spam_score spam points.
  accept
"""


def require_exim() -> str:
    assert os.access(EXIM, os.X_OK), (
        "Exim is missing: apt-get install exim4-daemon-heavy (scripts/test.sh installs it); "
        "these tests check spamlearn against Exim's real spam = condition")
    built = subprocess.run([EXIM, "-bV"], capture_output=True, text=True, timeout=30).stdout
    assert "Content_Scanning" in built, (
        "this Exim has no content scanning (exim4-daemon-light?): "
        "apt-get install exim4-daemon-heavy")
    # A daemon (-bd) is refused to all but Exim's admin users ("exim:
    # permission denied" to anyone else), whatever config it is given.
    assert os.getuid() == 0, ("Exim starts a daemon for root (its admin user) alone: run these "
                              "tests as root, as CI does (scripts/test.sh)")
    return EXIM


def exim_user() -> tuple[int, int]:
    """Who the daemon runs as: the exim user (root's privilege is dropped)."""
    name = subprocess.run([EXIM, "-bP", "exim_user"], capture_output=True, text=True,
                          timeout=30).stdout.partition("=")[2].strip()
    user = pwd.getpwnam(name)
    return user.pw_uid, user.pw_gid


class EximDaemon:
    """``exim -C FOLDER/exim.conf -bdf`` on 127.0.0.1, its spool and logs in FOLDER."""

    def __init__(self, folder: Path, spamd_port: int, reject_above: int, defer_ok: bool):
        self.folder = folder
        self.port = free_port()
        self.config = folder / "exim.conf"
        self.spool = folder / "spool"
        self.log = folder / "log"
        self.config.write_text(
            "keep_environment =\n"
            "primary_hostname = exim.test.example\n"
            f"spool_directory = {self.spool}\n"
            f"log_file_path = {self.log}/%slog\n"
            f"pid_file_path = {folder}/exim.pid\n"
            f"daemon_smtp_ports = {self.port}\n"
            "local_interfaces = <; 127.0.0.1\n"
            "host_lookup =\nrfc1413_hosts =\ntls_advertise_hosts =\n"
            "queue_only = true\n"
            f"spamd_address = 127.0.0.1 {spamd_port}\n"
            "acl_smtp_rcpt = acl_check_rcpt\n"
            "acl_smtp_data = acl_check_data\n"
            "\nbegin acl\n\nacl_check_rcpt:\n  accept\n\n"
            + DATA_ACL.format(defer_ok="/defer_ok" if defer_ok else "", reject_above=reject_above)
            + "\nbegin routers\n\nbegin transports\n")
        for path in (self.spool, self.log):
            path.mkdir()
        uid, gid = exim_user()
        for path in (folder, self.spool, self.log):
            os.chown(path, uid, gid)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> EximDaemon:
        self.process = subprocess.Popen([require_exim(), "-C", str(self.config), "-bdf"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"exim exited with {self.process.returncode}: "
                                   f"{self.process.stdout.read().decode()}{self.logs()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"exim did not listen within {timeout} s{self.logs()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM the daemon; then no process of this config may be left."""
        if self.process is not None:
            terminate(self.process, 10)
            self.process.stdout.close()
        deadline = time.monotonic() + 10
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.05)        # a connection's own process finishing its QUIT
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"exim processes left behind: {left}"

    def processes(self) -> list[int]:
        """Processes running with this config (the daemon, a connection's child), from /proc."""
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and str(self.config).encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
        return found

    def logs(self) -> str:
        return "".join(f"\n{path.name}:\n{path.read_text()}" for path in sorted(self.log.glob("*log")))

    def send(self, raw: bytes) -> tuple[int, str]:
        """One message over SMTP: the answer to its DATA."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as client:
            client.ehlo("client.test.example")
            assert client.mail("sender@example.net")[0] == 250
            assert client.rcpt("alice@example.org")[0] == 250
            code, text = client.data(raw)
        return code, text.decode()

    def kept(self, answer: str) -> Message:
        """The message as Exim keeps it, headers it added included, from its
        spool header file (``-H``: after the envelope and a blank line, each
        header as its length, a flag, a space and the header's lines)."""
        message_id = re.search(r"\bid=(\S+)", answer)[1]
        text = (self.spool / "input" / f"{message_id}-H").read_text()
        rest = text.partition("\n\n")[2]
        headers = []
        while rest:
            found = re.match(r"(\d{3,})(.) ", rest)
            end = found.end() + int(found[1])
            if found[2] != "*":                 # "*": a header Exim removed
                headers.append(rest[found.end():end])
            rest = rest[end:]
        return email.message_from_string("".join(headers) + "\n")


@contextmanager
def exim(spamd_port: int, reject_above: int = 150, defer_ok: bool = False) -> Iterator[EximDaemon]:
    folder = Path(tempfile.mkdtemp(prefix="spamlearn-exim-", dir="/tmp"))
    try:
        daemon = EximDaemon(folder, spamd_port, reject_above, defer_ok)
        try:
            yield daemon.start()
        finally:
            daemon.stop()
    finally:
        shutil.rmtree(folder)


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[tuple[ServeProcess, int]]:
    """``spamlearn serve`` (1 worker) with a spamd listener, on a trained shared model."""
    require_exim()
    base = tmp_path_factory.mktemp("exim")
    config, _, env = write_deployment(base, workers=1)
    port = free_port()
    with config.open("a") as fh:
        fh.write(f'spamd_listen = "127.0.0.1:{port}"\n')
    server = ServeProcess(config, base / "serve.log", env).start()
    try:
        yield server, port
    finally:
        assert server.stop() == 0, server.log.read_text()


def points(server: ServeProcess, raw: bytes) -> str:
    """What POST /score says of ``raw``, on SpamAssassin's scale (spamlearn.points)."""
    p = httpx.post(f"{server.url}/score", content=raw, timeout=30).json()["spam_prob"]
    return spamassassin_points(math.log(p / (1 - p)), 0.90, p >= 0.90)[0]


def test_spam_is_kept_with_the_score_report_and_flag_exim_adds(service):
    server, port = service
    expected = points(server, SPAMMY[0])
    assert 5.0 <= float(expected) <= 15.0, "below the reject level of 15: tagged, not refused"
    with exim(port, reject_above=150) as daemon:
        code, answer = daemon.send(SPAMMY[0])
        assert code == 250, (answer, daemon.logs())
        kept = daemon.kept(answer)
    assert kept["X-Spam-Score"] == f"{expected} ({'+' * int(float(expected))})"
    assert kept["X-Spam-Flag"] == "YES"
    report = kept["X-Spam-Report"]
    assert report.startswith("spamlearn verdict: spam, spam probability"), report
    assert f"(score {expected}, threshold 5.0;" in report and "clues (" in report
    assert kept["Subject"] == "Cheap pills online"


def test_ham_passes_with_a_score_below_5_and_no_flag(service):
    server, port = service
    expected = points(server, HAMMY[0])
    with exim(port, reject_above=50) as daemon:
        code, answer = daemon.send(HAMMY[0])
        assert code == 250, (answer, daemon.logs())
        kept = daemon.kept(answer)
    score = kept["X-Spam-Score"].split()[0]
    assert score == expected and float(score) < 5.0
    assert kept["X-Spam-Flag"] is None
    assert kept["X-Spam-Report"].startswith("spamlearn verdict: ham")


def test_deny_above_a_score_is_a_550_at_smtp_time(service):
    server, port = service
    expected = points(server, SPAMMY[0])
    with exim(port, reject_above=50) as daemon:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            with smtplib.SMTP("127.0.0.1", daemon.port, timeout=60) as client:
                client.sendmail("sender@example.net", ["alice@example.org"], SPAMMY[0])
        assert daemon.send(HAMMY[0])[0] == 250, "ham still passes"
        log = (daemon.log / "mainlog").read_text()
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error.decode() == f"This message scored {expected} spam points."
    assert "rejected after DATA: This message scored" in log


def test_with_the_service_down_exim_defers_the_message(service):
    port = free_port()                  # nothing listens there: the service stopped
    with exim(port) as daemon:
        code, answer = daemon.send(SPAMMY[0])
        log = (daemon.log / "mainlog").read_text()
        spooled = list((daemon.spool / "input").glob("*-H"))
    # The warn statements are skipped (a warn goes on when its condition
    # defers), then the deny's spam condition defers the whole ACL: a 451,
    # the sender's MTA retries later, nothing is lost nor passed unscored.
    assert (code, answer) == (451, "Temporary local problem - please try later"), log
    assert 'ACL "warn" statement skipped: condition test deferred' in log
    assert "spam acl condition: all spamd servers failed" in log
    assert "temporarily rejected after DATA" in log
    assert spooled == []


def test_with_the_service_down_and_defer_ok_exim_passes_the_message_untagged(service):
    port = free_port()
    with exim(port, defer_ok=True) as daemon:
        code, answer = daemon.send(SPAMMY[0])
        assert code == 250, (answer, daemon.logs())
        kept = daemon.kept(answer)
    assert kept["X-Spam-Score"] is None and kept["X-Spam-Flag"] is None
    assert kept["Subject"] == "Cheap pills online"
