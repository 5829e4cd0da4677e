"""The README's Postfix content filter in a real Postfix (Debian 12's 3.7):
its ``master.cf`` lines read from the README, mail sent by SMTP (Python's
smtplib), tagged by ``scripts/postfix/spamlearn-postfix-filter`` against a
real ``spamlearn serve``, given back through Postfix's own ``sendmail`` and
``pickup``, and delivered by ``virtual(8)`` into a Maildir that the test reads.

Postfix cannot be installed here (Debian allows one MTA, and
tests/integration/test_exim.py needs Exim): scripts/test.sh downloads
Debian's postfix package (``apt-get download``) and unpacks it
(``dpkg-deb -x``) into :data:`POSTFIX_ROOT`, and the test runs that tree with
its own ``config_directory`` (``postfix -c``), queue, data and log files in
one ``tempfile.mkdtemp()`` folder under /tmp, listening on 127.0.0.1 on a
free port, started and stopped by the test.  Nothing of the system (no
/etc/postfix, no system MTA) is read or changed, but for two accounts:
Postfix refuses to start without its ``mail_owner`` and ``setgid_group``,
so as root (CI) the test creates the system user ``postfix`` and the group
``postdrop`` when they are missing (no login, no home), as the package
would.  What differs from an installed Postfix, and why:

* the unpacked programs look for their libraries in /usr/lib/postfix (their
  RUNPATH): ``LD_LIBRARY_PATH`` names the unpacked folder, passed to the
  daemons (``import_environment``) and to the filter (``export_environment``,
  for ``sendmail`` and ``postdrop``);
* ``postdrop`` is not set-gid (the package's postinst makes it so, and a
  set-gid program ignores ``LD_LIBRARY_PATH``): the maildrop folder is
  writable by all (1733) and ``public`` enterable (0711), which set-gid
  ``postdrop`` gives the filter's user on a real install;
* the filter runs as ``nobody`` (the README's ``user=spamlearn`` is an
  account this test does not create), its ``TMPDIR`` a folder of its own
  (a /tmp it may not write to: the README's requirement, not the test's);
* the README's ``/usr/local/bin`` paths are copies of the clone's
  scripts in the test's folder, and chroot is off (``n``; Debian's own
  ``smtp inet`` line has ``y``, which the unpacked tree cannot serve).
"""

from __future__ import annotations

import email
import grp
import os
import pwd
import re
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from serve_process import free_port
from test_postfix_filter import FILTER, README, SPAMLEARNC
from test_serve import HAMMY, SPAMMY
from test_spamc import deploy

pytestmark = pytest.mark.integration

#: Where scripts/test.sh unpacks Debian's postfix package (``dpkg-deb -x``).
POSTFIX_ROOT = Path(os.environ.get("SPAMLEARN_TEST_POSTFIX_ROOT", "/var/cache/spamlearn-tests/postfix"))
FILTER_USER = "nobody"


def require_postfix() -> Path:
    assert (POSTFIX_ROOT / "usr/sbin/postfix").is_file(), (
        f"Postfix is missing from {POSTFIX_ROOT}: scripts/test.sh downloads Debian's postfix package "
        "there (apt-get download postfix; dpkg-deb -x), which cannot be installed beside Exim; "
        "these tests run the README's master.cf lines in a real Postfix")
    # Only root can start Postfix's master, and create its accounts.
    assert os.getuid() == 0, "Postfix's master starts for root alone: run these tests as root, as CI does"
    return POSTFIX_ROOT


def ensure_postfix_accounts() -> None:
    """Postfix's ``mail_owner`` (user postfix) and ``setgid_group`` (group
    postdrop): system accounts, no login, created only if missing."""
    try:
        grp.getgrnam("postdrop")
    except KeyError:
        subprocess.run(["groupadd", "--system", "postdrop"], check=True, timeout=60)
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "postfix"],
                       check=True, timeout=60)


def readme_master_cf_blocks() -> list[str]:
    """The README's master.cf blocks, as an admin pastes them: the script's
    (the ``smtp inet`` line and the service), and spamc's (the service)."""
    section = README.read_text().split("\n### Postfix content filter\n", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"^```\n(.*?)^```$", section, re.M | re.S)


def replaced(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, (old, text)
    return text.replace(old, new)


class Postfix:
    """The unpacked Postfix with its config, queue and Maildirs in ``folder``,
    ``smtpd`` on 127.0.0.1:``port`` with the README's content filter."""

    def __init__(self, folder: Path, spamlearn_url: str, spamd_port: int, with_spamc: bool = False):
        root = POSTFIX_ROOT
        self.folder = folder
        self.port = free_port()
        self.config = folder / "etc"
        self.queue = folder / "spool"
        self.mail = folder / "mail"
        self.maillog = folder / "maillog"
        self.libs = root / "usr/lib/postfix"
        nobody = pwd.getpwnam(FILTER_USER)
        for path in (self.config, folder / "bin", self.queue, folder / "data", self.mail, folder / "tmp"):
            path.mkdir()
        # The README's install lines: the filter and spamlearnc, 0755.
        for script in (FILTER, SPAMLEARNC):
            shutil.copy(script, folder / "bin" / script.name)
            (folder / "bin" / script.name).chmod(0o755)
        for path in (self.mail, folder / "tmp"):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        os.chown(folder / "data", pwd.getpwnam("postfix").pw_uid, -1)
        self.sendmail = root / "usr/sbin/sendmail"
        filter_env = (f"TMPDIR={folder}/tmp SPAMLEARNC={folder}/bin/spamlearnc "
                      f"SPAMLEARN_SENDMAIL={self.sendmail} SPAMLEARN_URL={spamlearn_url} "
                      "SPAMLEARN_TIMEOUT=20")
        (self.config / "main.cf").write_text(
            "compatibility_level = 3.6\n"
            f"queue_directory = {self.queue}\n"
            f"data_directory = {folder}/data\n"
            f"daemon_directory = {root}/usr/lib/postfix/sbin\n"
            f"command_directory = {root}/usr/sbin\n"
            f"shlib_directory = {self.libs}\n"
            f"meta_directory = {root}/etc/postfix\n"
            f"sendmail_path = {self.sendmail}\n"
            "mail_owner = postfix\nsetgid_group = postdrop\n"
            "myhostname = postfix.test.example\nmydestination =\n"
            "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n"
            "alias_maps =\nalias_database =\n"
            # postlogd writes it: no syslog needed (a file not under
            # maillog_file_prefixes, /var by default, is fatal to `postfix start`).
            f"maillog_file = {self.maillog}\nmaillog_file_prefixes = {folder}\n"
            f"import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH={self.libs}\n"
            f"export_environment = TZ MAIL_CONFIG LANG LD_LIBRARY_PATH {filter_env}\n"
            "virtual_mailbox_domains = example.org\n"
            f"virtual_mailbox_base = {self.mail}\n"
            "virtual_mailbox_maps = inline:{ alice@example.org=alice/, bob@example.org=bob/ }\n"
            f"virtual_uid_maps = static:{nobody.pw_uid}\nvirtual_gid_maps = static:{nobody.pw_gid}\n")
        # The package's master.cf up to the services every Postfix has (not its
        # examples of pipe services), chroot off, then the README's lines.
        services = []
        for line in (root / "usr/share/postfix/master.cf.dist").read_text().splitlines():
            if line.startswith(("#", "smtp      inet")) or not line.strip():
                continue
            fields = line.split()
            if not line[0].isspace():
                fields[4] = "n"
            services.append(line if line[0].isspace() else "  ".join(fields))
            if fields[0] == "postlog":
                break
        script, spamc = readme_master_cf_blocks()
        smtpd, service = script.split("spamlearn ", 1)
        smtpd = replaced(smtpd, "smtp      inet  n       -       y       -       -       smtpd",
                         f"127.0.0.1:{self.port} inet  n  -  n  -  -  smtpd")
        if with_spamc:
            service = replaced(spamc, "-p 7830 ", f"-p {spamd_port} ")
            service = replaced(service, "-e /usr/sbin/sendmail ", f"-e {self.sendmail} ")
        else:
            service = replaced("spamlearn " + service, "argv=/usr/local/bin/spamlearn-postfix-filter ",
                               f"argv={folder}/bin/spamlearn-postfix-filter ")
        ours = smtpd + replaced(service, "user=spamlearn", f"user={FILTER_USER}")
        (self.config / "master.cf").write_text("\n".join(services) + "\n" + ours)
        # The queue as the package's postfix-files makes it, but for maildrop
        # and public (see the module's docstring: postdrop is not set-gid).
        postfix_uid, postdrop_gid = pwd.getpwnam("postfix").pw_uid, grp.getgrnam("postdrop").gr_gid
        for name in ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold",
                     "incoming", "private", "saved", "trace", "maildrop", "public", "pid"):
            (self.queue / name).mkdir()
        for name, mode in (("maildrop", 0o1733), ("public", 0o711), ("pid", 0o755)):
            (self.queue / name).chmod(mode)
        for path in self.queue.iterdir():
            if path.name != "pid":
                os.chown(path, postfix_uid, postdrop_gid if path.name in ("maildrop", "public") else -1)
        folder.chmod(0o755)         # mkdtemp's 0700: postfix and nobody go through it

    def postfix(self, *args: str) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LD_LIBRARY_PATH": str(self.libs)}
        return subprocess.run([str(POSTFIX_ROOT / "usr/sbin/postfix"), "-c", str(self.config), *args],
                              env=env, cwd="/", capture_output=True, text=True, timeout=120)

    def start(self) -> Postfix:
        result = self.postfix("start")
        assert result.returncode == 0, f"postfix start: {result}\n{self.log()}"
        return self

    def stop(self) -> None:
        """``postfix stop``; then no process of this instance may be left."""
        result = self.postfix("stop")
        deadline = time.monotonic() + 20
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.1)         # master waits for its children
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert result.returncode == 0, result
        assert not left, f"Postfix processes left behind: {left}"

    def processes(self) -> list[int]:
        """This instance's processes: their working folder is its queue (from /proc)."""
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and (proc / "cwd").readlink() == self.queue:
                    found.append(int(proc.name))
            except OSError:
                pass
        return found

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else "(no maillog)"

    def send(self, raw: bytes, sender: str, recipients: tuple[str, ...] = ("alice@example.org",)) -> None:
        # In CR LF: smtplib sends bytes as they are, and adds a line of its
        # own to a message whose last line ends in a bare LF.
        assert b"\r" not in raw
        with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as client:
            assert client.sendmail(sender, list(recipients), raw.replace(b"\n", b"\r\n")) == {}

    def delivered(self, mailbox: str, count: int, timeout: float = 60.0) -> dict[str, bytes]:
        """The messages in ``mailbox``'s Maildir once ``count`` have arrived,
        by Subject (not by order: two deliveries in the same clock tick have
        the same mtime); fails if a Subject came twice."""
        new = self.mail / mailbox / "new"
        deadline = time.monotonic() + timeout
        while len(files := list(new.glob("*")) if new.exists() else []) < count:
            assert time.monotonic() < deadline, f"{len(files)} of {count} in {mailbox}:\n{self.log()}"
            time.sleep(0.1)
        copies: dict[str, bytes] = {}
        for path in files:
            raw = path.read_bytes()
            subject = email.message_from_bytes(raw)["Subject"]
            assert subject not in copies, f"two copies of {subject!r} in {mailbox}:\n{self.log()}"
            copies[subject] = raw
        assert len(copies) == count, f"{sorted(copies)} in {mailbox}, not {count}:\n{self.log()}"
        return copies

    def idle(self, timeout: float = 60.0) -> None:
        """Wait until the queue is empty (nothing deferred, nothing left to go
        round again), on two looks 0.3 s apart: a look at one folder after
        another can miss a file moving on from the next to the one just seen."""
        deadline = time.monotonic() + timeout
        empty = 0
        while empty < 2:
            queued = [p for name in ("maildrop", "incoming", "active", "deferred", "hold")
                      for p in (self.queue / name).rglob("*") if p.is_file()]
            empty = 0 if queued else empty + 1
            assert time.monotonic() < deadline, f"still queued: {queued}\n{self.log()}"
            time.sleep(0.3)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """One worker answering HTTP (spamlearnc) and spamd (spamc)."""
    server, port, _, _ = deploy(tmp_path_factory.mktemp("postfix-delivery"), workers=1, allow_tell=False)
    try:
        yield server, port
    finally:
        assert server.stop() == 0, server.log.read_text()


@contextmanager
def started_postfix(deployment, with_spamc: bool = False) -> Iterator[Postfix]:
    require_postfix()
    ensure_postfix_accounts()
    server, spamd_port = deployment
    folder = Path(tempfile.mkdtemp(prefix="spamlearn-postfix-", dir="/tmp"))
    try:
        instance = Postfix(folder, server.url, spamd_port, with_spamc).start()
        try:
            yield instance
            assert "fatal" not in instance.log() and "panic" not in instance.log(), instance.log()
        finally:
            instance.stop()
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def postfix(deployment) -> Iterator[Postfix]:
    with started_postfix(deployment) as instance:
        yield instance


def subject(raw: bytes) -> str:
    return email.message_from_bytes(raw)["Subject"]


def headers_and_body(delivered: bytes) -> tuple[email.message.Message, bytes]:
    header, _, body = delivered.partition(b"\n\n")
    return email.message_from_bytes(header + b"\n\n"), body


def test_spam_and_ham_are_delivered_once_each_tagged_and_otherwise_intact(postfix):
    spam, ham = SPAMMY[0], HAMMY[0]
    postfix.send(spam, "deals@pharma.example")
    postfix.send(ham, "bob@work.example")
    postfix.idle()
    # One copy each: the filter's copy came back through pickup, unfiltered.
    delivered = postfix.delivered("alice", 2)
    assert postfix.log().count("relay=spamlearn") == 2, postfix.log()
    for raw, verdict, sender in ((spam, "spam", "deals@pharma.example"), (ham, "ham", "bob@work.example")):
        headers, body = headers_and_body(delivered[subject(raw)])
        assert headers["X-Spam-Verdict"] == verdict
        assert headers["X-Spam-Status"].startswith("Yes, " if verdict == "spam" else "No, ")
        assert headers.get_all("X-Spam-Flag") == (["YES"] if verdict == "spam" else None)
        assert len(headers.get_all("X-Spam-Verdict")) == 1
        # Under the Received: line pickup adds to the copy given back.
        names = headers.keys()
        assert names[names.index("Received") + 1].startswith("X-Spam-"), names
        # The body byte for byte, and the message's own headers kept.
        assert body == raw.partition(b"\n\n")[2]
        original = email.message_from_bytes(raw)
        assert (headers["Subject"], headers["From"]) == (original["Subject"], original["From"])
        # Return-Path: the one virtual(8) writes; pipe's (flags=R) dropped by cleanup.
        assert headers.get_all("Return-Path") == [f"<{sender}>"]


def test_a_senders_own_x_spam_headers_are_replaced(postfix):
    postfix.send(b"X-Spam-Flag: NO\nX-Spam-Status: No, score=-100\n" + SPAMMY[1], "win@lotto.example")
    postfix.idle()
    [copy] = postfix.delivered("alice", 1).values()
    headers, _ = headers_and_body(copy)
    assert headers.get_all("X-Spam-Flag") == ["YES"] and headers["X-Spam-Status"].startswith("Yes, ")


def test_a_null_sender_is_delivered_with_its_null_sender(postfix):
    bounce = b"From: MAILER-DAEMON@example.net\nSubject: Undelivered Mail\n\nSorry.\n"
    postfix.send(bounce, "", ("alice@example.org", "bob@example.org"))
    postfix.idle()
    # Given back with -f '' (null_sender=): pickup reads the null sender.
    # Without it pickup reads MAILER-DAEMON, which cleanup happens to turn
    # back into <> (seen here, Postfix 3.7), so the mailbox alone cannot tell.
    assert re.search(r"postfix/pickup\[\d+\]: \w+: uid=\d+ from=<>$", postfix.log(), re.M), postfix.log()
    for mailbox in ("alice", "bob"):
        [copy] = postfix.delivered(mailbox, 1).values()
        headers, body = headers_and_body(copy)
        assert headers.get_all("Return-Path") == ["<>"] and body == b"Sorry.\n"
        assert headers["X-Spam-Verdict"] is not None


def test_with_the_service_down_mail_is_delivered_untagged(postfix, deployment):
    server, _ = deployment
    server.stop()
    try:
        postfix.send(SPAMMY[2], "rich@cash.example")
        postfix.idle()
        [copy] = postfix.delivered("alice", 1).values()
    finally:
        server.start()
    headers, body = headers_and_body(copy)
    assert not [name for name in headers.keys() if name.startswith("X-Spam-")], copy[:600]
    assert body == SPAMMY[2].partition(b"\n\n")[2]


def test_spamcs_variant_tags_spam_and_ham_and_keeps_a_null_sender(deployment):
    # The README's spamc line: spamc runs Postfix's sendmail itself (-e).
    with started_postfix(deployment, with_spamc=True) as postfix:
        postfix.send(SPAMMY[0], "deals@pharma.example")
        postfix.send(HAMMY[0], "")
        postfix.idle()
        delivered = postfix.delivered("alice", 2)
        assert postfix.log().count("relay=spamlearn") == 2, postfix.log()
        for raw, flag, sender in ((SPAMMY[0], ["YES"], "deals@pharma.example"), (HAMMY[0], None, "")):
            headers, body = headers_and_body(delivered[subject(raw)])
            assert headers.get_all("X-Spam-Flag") == flag and headers["X-Spam-Status"] is not None
            assert headers.get_all("Return-Path") == [f"<{sender}>"]
            assert body == raw.partition(b"\n\n")[2]
