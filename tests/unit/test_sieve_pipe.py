"""The generated pipe program, run as Dovecot runs it: mail user, no PATH, USER/HOME/HOST only.

As root the mail user is ``nobody`` (as in the Dovecot tests), so the
program and spool live in a ``mkdtemp()`` folder under /tmp that nobody
can reach (pytest's ``tmp_path`` is below a 0700 folder).
"""

from __future__ import annotations

import http.server
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from spamlearn.sieve.install import install
from spamlearn.sieve.options import SieveOptions
from spamlearn.sieve.spool import Spool, SpoolEntry

MESSAGE = b"From: a@example.org\r\nSubject: pills\r\n\r\nBuy cheap pills\r\n\x00\xff binary\r\n"
AS_ROOT = os.geteuid() == 0
MAIL_USER = "nobody" if AS_ROOT else pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def site():
    base = Path(tempfile.mkdtemp(prefix="spamlearn-pipe-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def installed(base: Path, **options) -> tuple[Path, Spool]:
    opts = SieveOptions(spool=base / "spool", conf_dir=base / "conf", sieve_dir=base / "sieve",
                        pipe_bin_dir=base / "bin", **options)
    install(opts, compile_scripts=False, mail_user=MAIL_USER)
    return base / "bin" / "spamlearn-report", Spool(opts.spool)


def run_pipe(program: Path, *args: str, user: str = "alice", stdin: bytes = MESSAGE,
             home: str = "/nonexistent"):
    """Run like Dovecot's program client: as the mail user, an emptied environment."""
    env = ["/usr/bin/env", "-i", f"USER={user}", f"HOME={home}", "HOST=mx"]
    prefix = ["/usr/sbin/runuser", "-u", MAIL_USER, "--"] if AS_ROOT else []
    return subprocess.run([*prefix, *env, str(program), *args], input=stdin,
                          capture_output=True, timeout=30)


def test_spools_the_exact_bytes_under_label_and_user(site):
    program, spool = installed(site)
    result = run_pipe(program, "spam", "alice@example.org")
    assert result.returncode == 0, result.stderr
    entries, strays = spool.entries()
    assert strays == [] and len(entries) == 1
    (entry,) = entries
    assert (entry.label, entry.user) == ("spam", "alice@example.org")
    assert entry.read() == MESSAGE
    assert list(spool.tmp.iterdir()) == []
    assert entry.path.stat().st_uid == pwd.getpwnam(MAIL_USER).pw_uid
    assert entry.path.stat().st_mode & 0o777 == 0o660  # umask 007: the drain's group reads it


def test_falls_back_to_the_user_dovecot_sets(site):
    program, spool = installed(site)
    assert run_pipe(program, "ham", user="bob").returncode == 0
    assert [(e.label, e.user) for e in spool.entries()[0]] == [("ham", "bob")]


def test_entries_sort_in_the_order_the_pipe_ran(site):
    program, spool = installed(site)
    for label in ("spam", "ham", "spam", "ham"):
        assert run_pipe(program, label).returncode == 0
    assert [e.label for e in spool.entries()[0]] == ["spam", "ham", "spam", "ham"]


@pytest.mark.parametrize("args, user", [
    (("spam", "../../etc"), "alice"),
    (("spam", "a,b"), "alice"),
    (("spam", ".hidden"), "alice"),
    (("spam", "x" * 129), "alice"),
    (("spam", "al ice"), "alice"),
    (("spam",), ""),
    (("unsure", "alice"), "alice"),
    ((), "alice"),
])
def test_refuses_bad_labels_and_user_names(site, args, user):
    program, spool = installed(site)
    result = run_pipe(program, *args, user=user)
    assert result.returncode == 64
    assert b"spamlearn-report:" in result.stderr
    assert spool.entries() == ([], []) and list(spool.tmp.iterdir()) == []


def test_an_unwritable_spool_fails_loudly(site):
    program, spool = installed(site)
    shutil.rmtree(spool.tmp)
    result = run_pipe(program, "spam")
    assert result.returncode == 75
    assert b"is its disk full? does the mail user own the spool?" in result.stderr


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records what the pipe program sends to ``POST /learn`` and answers ``status``."""

    requests: list
    status = 200

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.requests.append((self.path, dict(self.headers), body))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"action": "learned"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def learn_endpoint():
    handler = type("Handler", (Recorder,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _token_file(base: Path, token: str = "s3cret-token") -> Path:
    path = base / "learn.token"
    path.write_text(token)  # no trailing newline: must still be read
    os.chmod(path, 0o644)
    return path


def test_http_mode_posts_to_the_learn_endpoint(site, learn_endpoint):
    server, handler = learn_endpoint
    url = f"http://127.0.0.1:{server.server_port}"
    program, spool = installed(site, http_url=url, http_token_file=_token_file(site))
    before = time.time()
    result = run_pipe(program, "ham", "first.last+tag@example.org")
    assert result.returncode == 0, result.stderr
    ((path, headers, body),) = handler.requests
    parsed = urllib.parse.urlsplit(path)
    assert parsed.path == "/learn"
    query = urllib.parse.parse_qs(parsed.query)
    at = float(query.pop("at")[0])          # when the user moved it: verdicts land in that order
    assert before - 1 <= at <= time.time() + 1
    assert query == {"label": ["ham"], "user": ["first.last+tag@example.org"]}
    assert headers["Authorization"] == "Bearer s3cret-token"
    assert headers["Content-Type"] == "message/rfc822"
    assert body == MESSAGE
    assert spool.entries() == ([], []) and list(spool.tmp.iterdir()) == []


def test_http_mode_reads_no_curlrc_from_the_users_home(site, learn_endpoint):
    """Dovecot runs the pipe with HOME the user's home: a .curlrc there was
    read by curl (a header added, a proxy that would get the learn token)."""
    server, handler = learn_endpoint
    url = f"http://127.0.0.1:{server.server_port}"
    program, spool = installed(site, http_url=url, http_token_file=_token_file(site))
    home = site / "home"
    home.mkdir()
    (home / ".curlrc").write_text('header = "X-From-Curlrc: yes"\n')
    os.chmod(home, 0o755)
    os.chmod(home / ".curlrc", 0o644)
    result = run_pipe(program, "spam", "alice", home=str(home))
    assert result.returncode == 0, result.stderr
    ((_, headers, _),) = handler.requests
    assert "X-From-Curlrc" not in headers and headers["Authorization"] == "Bearer s3cret-token"


def test_http_mode_spools_when_the_service_refuses(site, learn_endpoint):
    server, handler = learn_endpoint
    handler.status = 503
    url = f"http://127.0.0.1:{server.server_port}"
    program, spool = installed(site, http_url=url, http_token_file=_token_file(site))
    result = run_pipe(program, "spam")
    assert result.returncode == 0
    assert b"spooled for spamlearn sieve drain" in result.stderr
    assert len(handler.requests) == 1
    (entry,) = spool.entries()[0]
    assert entry.read() == MESSAGE and entry.label == "spam"


def test_http_mode_spools_without_posting_when_the_token_cannot_be_read(site, learn_endpoint):
    """It said "spooling instead", then posted anyway with no token (a helper's review)."""
    server, handler = learn_endpoint
    url = f"http://127.0.0.1:{server.server_port}"
    token = _token_file(site)
    program, spool = installed(site, http_url=url, http_token_file=token)
    token.chmod(0o600 if AS_ROOT else 0o000)       # unreadable by the mail user
    result = run_pipe(program, "spam")
    assert result.returncode == 0
    assert b"cannot read" in result.stderr and b"spooling instead" in result.stderr
    assert handler.requests == []
    (entry,) = spool.entries()[0]
    assert entry.read() == MESSAGE and entry.label == "spam"


def test_http_mode_spools_when_the_service_is_down(site):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    program, spool = installed(site, http_url=f"http://127.0.0.1:{port}")
    result = run_pipe(program, "spam")
    assert result.returncode == 0
    entries = spool.entries()[0]
    assert [SpoolEntry.parse(e.path).label for e in entries] == ["spam"]
    assert entries[0].read() == MESSAGE


def test_http_mode_queues_behind_messages_already_queued(site, learn_endpoint):
    """A verdict posted past older queued ones would be undone by the next
    drain (a helper's review: MOVE into Junk while the service was down,
    back out once it was up, then the drain relabelled it spam again)."""
    server, handler = learn_endpoint
    url = f"http://127.0.0.1:{server.server_port}"
    program, spool = installed(site, http_url=url, http_token_file=_token_file(site))
    handler.status = 503
    assert run_pipe(program, "spam").returncode == 0        # refused: queued
    handler.status = 200
    result = run_pipe(program, "ham")                      # the service is back; the queue is not empty
    assert result.returncode == 0 and result.stderr == b""
    assert len(handler.requests) == 1
    assert [e.label for e in spool.entries()[0]] == ["spam", "ham"]
    for entry in spool.entries()[0]:
        entry.path.unlink()                                 # drained
    assert run_pipe(program, "spam").returncode == 0
    assert len(handler.requests) == 2 and spool.entries() == ([], [])


def test_after_one_failed_post_the_rest_of_a_move_queues_without_waiting(site):
    import socket

    with socket.socket() as listener:       # accepts, never answers: curl waits its --max-time
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        program, spool = installed(site, http_url=f"http://127.0.0.1:{listener.getsockname()[1]}")
        started = time.monotonic()
        for _ in range(5):
            assert run_pipe(program, "spam").returncode == 0
        took = time.monotonic() - started
    assert len(spool.entries()[0]) == 5
    assert 2.5 < took < 5.5, took           # one 3 s wait, not five


def test_http_mode_queues_while_another_pipes_message_is_in_flight(site, learn_endpoint):
    """Another pipe's message in tmp/ may still fail its post and be queued:
    this newer verdict must not be learned before it."""
    server, handler = learn_endpoint
    url = f"http://127.0.0.1:{server.server_port}"
    program, spool = installed(site, http_url=url, http_token_file=_token_file(site))
    in_flight = spool.tmp / "1700000000.000000001.4242,spam,alice"
    in_flight.write_bytes(MESSAGE)
    assert run_pipe(program, "ham").returncode == 0
    assert handler.requests == [] and [e.label for e in spool.entries()[0]] == ["ham"]
    in_flight.unlink()
    for entry in spool.entries()[0]:
        entry.path.unlink()
    # A killed pipe's leftovers (a file there for more than a minute, a
    # folder) are not in flight: they must not turn HTTP mode off for the
    # day the drain takes to remove them.
    stale = spool.tmp / "1600000000.000000001.4242,spam,alice"
    stale.write_bytes(MESSAGE)
    os.utime(stale, (time.time() - 120, time.time() - 120))
    (spool.tmp / "1600000000.000000002.4243,spam,alice").mkdir()
    assert run_pipe(program, "ham").returncode == 0 and len(handler.requests) == 1
    assert spool.entries()[0] == []
