"""``scripts/spamlearnc`` (sh + curl) against a real ``spamlearn serve``: spamc's job, failing open."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from serve_process import ServeProcess, free_port
from test_serve import HAMMY, SPAMMY, write_deployment

pytestmark = pytest.mark.integration

CLIENT = Path(__file__).resolve().parents[2] / "scripts" / "spamlearnc"
SCORE_TOKEN = "e2e-score-token-0123456789abcdef"
FORGED = b"X-Spam-Flag: NO\nX-Spam-Status: No, score=-100\n" + SPAMMY[1]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """The service on a trained shared model, with a score token, one worker."""
    assert shutil.which("curl"), "curl is missing: apt-get install curl"
    base = tmp_path_factory.mktemp("spamlearnc")
    config, _, env = write_deployment(base, workers=1)
    token_file = base / "score.token"
    token_file.write_text(SCORE_TOKEN + "\n")
    token_file.chmod(0o600)
    with config.open("a") as fh:
        fh.write('score_token_file = "score.token"\n')
    server = ServeProcess(config, base / "serve.log", env).start()
    try:
        yield server, config, env, token_file
    finally:
        assert server.stop() == 0, server.log.read_text()


def spamlearnc(raw: bytes, env: dict[str, str], *args: str, url: str | None = None,
               token_file: Path | None = None) -> subprocess.CompletedProcess:
    environment = {**env, "SPAMLEARN_TIMEOUT": "20"}
    if url:
        environment["SPAMLEARN_URL"] = url
    if token_file:
        environment["SPAMLEARN_SCORE_TOKEN_FILE"] = str(token_file)
    return subprocess.run(["sh", str(CLIENT), *args], input=raw, env=environment, capture_output=True,
                          timeout=60)


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]):
    """``handler`` served on a free loopback port in a thread; its URL.  Stopped on leaving."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextlib.contextmanager
def not_spamlearn():
    """A web server on loopback that answers every POST with 200 and a page
    (a proxy's error page, another service on the port)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            page = b"<html>Welcome to nginx!</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    with serving(Handler) as url:
        yield url


@contextlib.contextmanager
def held_answer():
    """A web server on loopback that takes the message and answers 500 only
    once told to: a look at what spamlearnc keeps meanwhile."""
    received, release = threading.Event(), threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.set()
            release.wait(30)
            self.send_error(500)

        def log_message(self, *args):
            pass

    with serving(Handler) as url:
        try:
            yield url, received, release
        finally:
            release.set()   # before the server stops: closing it waits for the handler


def filtered_by_the_cli(config: Path, env: dict[str, str], raw: bytes) -> bytes:
    result = subprocess.run([sys.executable, "-m", "spamlearn", "--config", str(config), "filter",
                             "--exit-zero"], input=raw, env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_it_writes_what_spamlearn_filter_writes_and_exits_by_verdict_with_e(deployment):
    server, config, env, token_file = deployment
    for raw, verdict, code in ((SPAMMY[0], b"spam", 0), (HAMMY[0], b"ham", 1)):
        tagged = spamlearnc(raw, env, url=server.url, token_file=token_file)
        assert tagged.returncode == 0, tagged.stderr
        assert tagged.stdout == filtered_by_the_cli(config, env, raw)
        assert b"X-Spam-Verdict: " + verdict in tagged.stdout and tagged.stderr == b""
        assert spamlearnc(raw, env, "-e", url=server.url, token_file=token_file).returncode == code


def test_the_mail_users_curlrc_is_not_read(deployment, tmp_path):
    # "--include" in ~/.curlrc (procmail runs the filter as the user) put
    # "HTTP/1.1 200 OK" and the service's headers at the top of the message.
    server, config, env, token_file = deployment
    home = tmp_path / "home"
    home.mkdir()
    (home / ".curlrc").write_text("--include\n")
    tagged = spamlearnc(SPAMMY[0], {**env, "HOME": str(home)}, url=server.url, token_file=token_file)
    assert tagged.returncode == 0, tagged.stderr
    assert tagged.stdout == filtered_by_the_cli(config, env, SPAMMY[0])


def test_a_forged_x_spam_flag_does_not_survive(deployment):
    server, _, env, token_file = deployment
    tagged = spamlearnc(FORGED, env, url=server.url, token_file=token_file)
    assert tagged.returncode == 0, tagged.stderr
    head = tagged.stdout.split(b"\n\n", 1)[0]
    assert b"X-Spam-Flag: YES" in head and b"X-Spam-Flag: NO" not in head and b"score=-100" not in head


def test_a_user_name_reaches_the_service(deployment):
    server, _, env, token_file = deployment
    good = spamlearnc(SPAMMY[0], env, "-u", "alice+lists@example.org", url=server.url, token_file=token_file)
    assert good.returncode == 0 and b"X-Spam-Verdict: spam" in good.stdout, good.stderr


@pytest.mark.parametrize("name", ["alice\nInjected: yes", ".hidden", "o'brien", "x" * 129])
def test_what_is_no_user_name_is_scored_with_the_shared_model(deployment, name):
    # As `spamlearn filter --user` does.  It was exit 64 with nothing written:
    # a Postfix pipe bounces on 64, and the name may be the recipient's.
    server, _, env, token_file = deployment
    shared = spamlearnc(SPAMMY[0], env, url=server.url, token_file=token_file)
    named = spamlearnc(SPAMMY[0], env, "-e", "-u", name, url=server.url, token_file=token_file)
    assert named.returncode == 0 and named.stdout == shared.stdout, named.stderr
    assert named.stderr.startswith(b"spamlearnc: not a user name: ") and named.stderr.count(b"\n") == 1


def test_a_url_ending_in_a_slash_is_the_same_service(deployment):
    # SPAMLEARN_URL=http://127.0.0.1:8731/ asked for //filter, a 404: every
    # message went through untagged, with a line on stderr each.
    server, _, env, token_file = deployment
    for url in (server.url + "/", server.url + "//"):
        tagged = spamlearnc(SPAMMY[0], env, "-e", url=url, token_file=token_file)
        assert tagged.returncode == 0 and b"X-Spam-Verdict: spam" in tagged.stdout, tagged.stderr


@pytest.mark.parametrize("problem", ["no service", "wrong token", "no token", "not spamlearn",
                                     "no token file"])
def test_it_fails_open_passing_the_message_through_unchanged(deployment, tmp_path, problem):
    server, _, env, token_file = deployment
    url, token = server.url, token_file
    if problem == "no service":
        url = f"http://127.0.0.1:{free_port()}"
    elif problem == "wrong token":
        token = tmp_path / "wrong.token"
        token.write_text("not-the-token\n")
    elif problem == "no token":
        token = None
    elif problem == "no token file":
        token = tmp_path / "missing.token"
    with not_spamlearn() if problem == "not spamlearn" else contextlib.nullcontext(url) as url:
        result = spamlearnc(FORGED, env, "-e", url=url, token_file=token)
        assert result.returncode == 3, result.stderr
        assert result.stdout == FORGED
        assert b"passed through unscored" in result.stderr and SCORE_TOKEN.encode() not in result.stderr
        assert result.stderr.startswith(b"spamlearnc: ") and result.stderr.count(b"\n") == 1
        assert spamlearnc(FORGED, env, url=url, token_file=token).returncode == 0


def test_a_full_tmp_is_try_again_later_not_a_lost_message(deployment, tmp_path):
    server, _, env, token_file = deployment
    missing = tmp_path / "no-such-dir"
    result = spamlearnc(SPAMMY[0], {**env, "TMPDIR": str(missing)}, url=server.url, token_file=token_file)
    assert result.returncode == 75 and result.stdout == b""


def test_its_files_are_in_a_private_folder_removed_at_the_end(deployment, tmp_path):
    # They were $tmp, $tmp.out, $tmp.head and $tmp.auth beside mktemp's file:
    # in a shared /tmp, any user who saw spamlearnc.XXXXXX appear could make
    # spamlearnc.XXXXXX.out first, as a link, and curl wrote the answer (the
    # sender's message) where it pointed; $tmp.auth took the token so.
    _, _, env, token_file = deployment
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    with held_answer() as (url, received, release):
        environment = {**env, "TMPDIR": str(tmpdir), "SPAMLEARN_URL": url,
                       "SPAMLEARN_SCORE_TOKEN_FILE": str(token_file)}
        message = tmp_path / "message.eml"
        message.write_bytes(FORGED)
        with message.open("rb") as stdin:
            client = subprocess.Popen(["sh", str(CLIENT)], stdin=stdin, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=environment)
            assert received.wait(20)
            [folder] = tmpdir.iterdir()
            assert folder.is_dir() and folder.stat().st_mode & 0o777 == 0o700
            release.set()
            out, err = client.communicate(timeout=30)
    assert client.returncode == 0 and out == FORGED and b"500" in err
    assert list(tmpdir.iterdir()) == []


def test_a_closed_stderr_does_not_cost_the_message(deployment, tmp_path):
    # The first word of "passed through unscored" to a stderr whose reader
    # was gone killed the shell (SIGPIPE) before the message was written,
    # and left its files, the token's among them, in /tmp.
    _, _, env, token_file = deployment
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    environment = {**env, "TMPDIR": str(tmpdir), "SPAMLEARN_URL": f"http://127.0.0.1:{free_port()}",
                   "SPAMLEARN_SCORE_TOKEN_FILE": str(token_file)}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(["sh", str(CLIENT)], input=FORGED, stdout=subprocess.PIPE,
                                stderr=write_end, env=environment, timeout=60)
    finally:
        os.close(write_end)
    assert result.returncode == 0 and result.stdout == FORGED
    assert list(tmpdir.iterdir()) == []


def test_the_options_stand_in_for_the_environment_dovecot_does_not_pass(deployment):
    server, _, env, token_file = deployment
    tagged = spamlearnc(SPAMMY[0], {"PATH": env["PATH"]}, "-e", "-U", server.url, "-T", str(token_file),
                        "-t", "20")
    assert tagged.returncode == 0, tagged.stderr
    assert b"X-Spam-Verdict: spam" in tagged.stdout


# -t 0 is curl's "no limit": the filter waited until Dovecot killed it at
# its own 10 s, and dovecot-lda then aborted the delivery.  "." and "1.2.3"
# passed the check, and every message went through unscored on curl's usage error.
@pytest.mark.parametrize("args", [["-x"], ["extra-argument"], ["-t", "soon"],
                                  ["-t", "0"], ["-t", "0.0"], ["-t", "."], ["-t", "1.2.3"]])
def test_a_wrong_command_line_is_64(deployment, args):
    _, _, env, _ = deployment
    result = spamlearnc(SPAMMY[0], env, *args)
    assert result.returncode == 64 and result.stdout == b"" and result.stderr
