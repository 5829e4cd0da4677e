"""Debian's real ``spamc`` (SpamAssassin 4.0) against a real ``spamlearn serve``
(2 workers sharing the spamd port) on loopback: what an MTA's spamc
integration sees, learning included, and failing open."""

from __future__ import annotations

import math
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from serve_process import ServeProcess, free_port
from test_serve import (
    HAMMY,
    MAX_BODY,
    SPAMMY,
    make_message,
    wait_for_both_workers,
    wait_for_log,
    write_deployment,
)

from spamlearn.modelstore import ModelStore
from spamlearn.points import spamassassin_points

pytestmark = pytest.mark.integration

FORGED = b"X-Spam-Flag: NO\nX-Spam-Status: No, score=-100\n" + SPAMMY[1]


def require_spamc() -> str:
    spamc = shutil.which("spamc")
    assert spamc, ("spamc is missing: apt-get install spamc (scripts/test.sh installs it); "
                   "these tests check spamlearn against the real client")
    return spamc


def deploy(base: Path, workers: int, allow_tell: bool) -> tuple[ServeProcess, int, ModelStore, ModelStore]:
    """The service with a spamd listener, a shared model and alice's own
    model (trained the other way round), started."""
    config, store, env = write_deployment(base, workers=workers)
    port = free_port()
    with config.open("a") as fh:
        fh.write(f'spamd_listen = "127.0.0.1:{port}"\nspamd_allow_tell = {str(allow_tell).lower()}\n'
                 f'\n[users]\nown_model = ["alice"]\n')
    alice = ModelStore(base / "users" / "alice.joblib", n_features=2**18)
    with alice.session(source="setup") as session:
        for raw in SPAMMY:
            session.learn(raw, "ham")
        for raw in HAMMY:
            session.learn(raw, "spam")
    server = ServeProcess(config, base / "serve.log", env).start()
    return server, port, store, alice


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    require_spamc()
    server, port, store, alice = deploy(tmp_path_factory.mktemp("spamc"), workers=2, allow_tell=True)
    try:
        yield server, port, store, alice
    finally:
        assert server.stop() == 0, server.log.read_text()


def spamc(port: int, raw: bytes, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_spamc(), "-d", "127.0.0.1", "-p", str(port), "-t", "30", *args],
                          input=raw, capture_output=True, timeout=60)


def listening_pids(port: int, pids: list[int]) -> set[int]:
    """The processes among ``pids`` with a socket listening on ``port`` (from /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":      # 0A: LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    found = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if str(fd.readlink()) in inodes:
                    found.add(pid)
            except OSError:
                pass
    return found


def test_both_workers_listen_for_spamc_and_the_supervisor_does_not(deployment):
    server, port, _, _ = deployment
    # /healthz answered once one worker was up: the other may still be starting.
    deadline = time.monotonic() + 90
    while True:
        supervisor, *children = server.worker_pids()     # the workers, and multiprocessing's helper
        listening = listening_pids(port, [supervisor, *children])
        if len(listening) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(listening) == 2 and supervisor not in listening


def test_spamc_gets_the_message_tagged_as_post_filter_tags_it(deployment):
    server, port, _, _ = deployment
    for raw in (FORGED, HAMMY[0]):
        result = spamc(port, raw)
        filtered = httpx.post(f"{server.url}/filter", content=raw, timeout=30).content
        assert result.returncode == 0 and result.stdout == filtered, result
    assert spamc(port, FORGED).stdout.startswith(b"X-Spam-Flag: YES\nX-Spam-Status: Yes, score=")
    assert b"X-Spam-Flag: NO" not in spamc(port, FORGED).stdout


def test_spamc_headers_mode_gives_the_same_message(deployment):
    _, port, _, _ = deployment
    assert spamc(port, FORGED, "--headers").stdout == spamc(port, FORGED).stdout


def test_spamc_check_exits_1_for_spam_and_prints_score_over_threshold(deployment):
    server, port, _, _ = deployment
    spam, ham = spamc(port, SPAMMY[0], "-c"), spamc(port, HAMMY[0], "-c")
    probabilities = [httpx.post(f"{server.url}/score", content=raw, timeout=30).json()["spam_prob"]
                     for raw in (SPAMMY[0], HAMMY[0])]
    # SpamAssassin's scale: required 5.0 at spam_cutoff, 2.5 points a tenfold in the odds.
    expected = ["/".join(spamassassin_points(math.log(p / (1 - p)), 0.90, p >= 0.90)) + "\n"
                for p in probabilities]
    assert (spam.returncode, spam.stdout.decode()) == (1, expected[0])
    assert (ham.returncode, ham.stdout.decode()) == (0, expected[1])


def test_spamc_symbols_and_report(deployment):
    _, port, _, _ = deployment
    assert spamc(port, SPAMMY[0], "-y").stdout == b"SPAMLEARN_SPAM"
    assert spamc(port, HAMMY[0], "-y").stdout == b"SPAMLEARN_HAM"
    report = spamc(port, SPAMMY[0], "-R")
    score_line, _, text = report.stdout.decode().partition("\n")
    assert score_line.endswith("/5.0") and text.startswith("spamlearn verdict: spam")
    assert "clues (" in text and report.returncode == 0, report
    assert spamc(port, HAMMY[0], "-r").stdout == b"", "REPORT_IFSPAM of ham: nothing"


def test_spamc_user_is_scored_by_the_users_own_model(deployment):
    _, port, _, _ = deployment
    # Alice's model learned everything the other way round.
    assert spamc(port, SPAMMY[0], "-c", "-u", "alice").returncode == 0
    assert spamc(port, HAMMY[0], "-c", "-u", "alice").returncode == 1
    assert spamc(port, HAMMY[0], "-c", "-u", "bob").returncode == 0, "bob: the shared model"


def test_spamc_compression(deployment):
    _, port, _, _ = deployment
    result = spamc(port, FORGED, "-z")
    if result.returncode == 64 and not result.stdout:
        # Debian's spamc 4.0.1 is built without zlib: it says so (to syslog
        # when not on a terminal), exits 64 and writes nothing, not even the
        # message.  What a spamc with zlib sends (deflate, Content-length of
        # the compressed bytes, "Compress: zlib") is tested with raw sockets
        # in tests/unit/test_spamd.py; here, that the README's warning holds.
        return
    assert result.stdout == spamc(port, FORGED).stdout


def info(store: ModelStore) -> tuple[int, int, dict[str, int]]:
    details = store.info()
    return details["n_spam"], details["n_ham"], details["ledger_counts"]


def test_spamc_learn_relabel_and_forget_count_once(deployment):
    _, port, store, alice = deployment
    raw = make_message("A new one", "a message learned through spamc -L, then relabelled, then forgotten")
    n_spam, n_ham, ledger = info(store)
    learned = spamc(port, raw, "-L", "spam")
    again = spamc(port, raw, "-L", "spam")
    assert learned.stdout == b"Message successfully un/learned\n" and learned.returncode == 0, learned
    assert again.stdout == b"Message was already un/learned\n"
    assert info(store) == (n_spam + 1, n_ham, {"spam": ledger["spam"] + 1, "ham": ledger["ham"]})
    assert spamc(port, raw, "-L", "ham").stdout == b"Message successfully un/learned\n"
    assert info(store) == (n_spam, n_ham + 1, {"spam": ledger["spam"], "ham": ledger["ham"] + 1})
    assert spamc(port, raw, "-L", "forget").stdout == b"Message successfully un/learned\n"
    assert spamc(port, raw, "-L", "forget").stdout == b"Message was already un/learned\n"
    assert info(store) == (n_spam, n_ham, ledger)
    assert store.check() == []
    # -u alice trains alice's own model, and only hers.
    alice_before = info(alice)
    assert spamc(port, raw, "-L", "spam", "-u", "alice").stdout == b"Message successfully un/learned\n"
    assert info(alice)[0] == alice_before[0] + 1 and info(store) == (n_spam, n_ham, ledger)


def test_spamc_fails_open_on_an_error_answer(deployment):
    """spamc passes the message on as it came when we answer an error: 65
    for a message over max_body_size (spamc's -s lets it send one).  Not
    ``-u no/such/user`` any more: such a name is scored with the shared model."""
    server, port, _, _ = deployment
    big = FORGED + b"x" * MAX_BODY + b"\n"
    result = spamc(port, big, "-s", str(2 * MAX_BODY))
    assert (result.returncode, result.stdout) == (0, big)
    assert spamc(port, big, "-c", "-s", str(2 * MAX_BODY)).stdout == b"0/0\n"
    assert server.log.read_text().count("answered 65: the message is larger than the limit") == 2


def test_spamc_fails_open_when_the_service_is_down(tmp_path):
    port = free_port()          # nothing listens there
    result = spamc(port, FORGED)
    assert (result.returncode, result.stdout) == (0, FORGED)
    checked = spamc(port, SPAMMY[0], "-c")
    assert (checked.returncode, checked.stdout) == (0, b"0/0\n")


def test_spamc_learn_is_refused_unless_allowed_and_nothing_is_learned(tmp_path):
    require_spamc()
    server, port, store, _ = deploy(tmp_path, workers=1, allow_tell=False)
    try:
        before = info(store)
        result = spamc(port, HAMMY[0], "-L", "spam")
        scored = spamc(port, SPAMMY[0], "-c")
    finally:
        assert server.stop() == 0, server.log.read_text()
    assert result.returncode != 0 and b"successfully" not in result.stdout, result
    assert info(store) == before
    assert scored.returncode == 1, "scoring is served all the same"
    log = server.log.read_text()
    assert "answering spamc on 127.0.0.1" in log and "TELL refused" in log
    assert "TELL is not allowed" in log


def test_sighup_with_the_spamd_address_taken_keeps_the_workers_in_one_line(tmp_path):
    """spamd_listen changed to an address something else holds, then SIGHUP:
    the check before the restart passed it, the new worker's bind failed in
    its lifespan (a traceback in the log), and uvicorn aborted the restart.
    The README promises one ERROR line, the workers going on as they are."""
    require_spamc()
    server, port, _, _ = deploy(tmp_path, workers=2, allow_tell=False)
    config = tmp_path / "spamlearn.toml"
    try:
        workers = wait_for_both_workers(server)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            other = taken.getsockname()[1]
            config.write_text(config.read_text().replace(f"127.0.0.1:{port}", f"127.0.0.1:{other}"))
            server.process.send_signal(signal.SIGHUP)
            outcome = wait_for_log(server, "workers are not restarted", "aborting the restart")
        scored = spamc(port, SPAMMY[0], "-c")
        assert set(server.worker_pids()) >= workers, "the workers were replaced"
        # Back to the address the workers hold (SO_REUSEPORT): restarted.
        config.write_text(config.read_text().replace(f"127.0.0.1:{other}", f"127.0.0.1:{port}"))
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while workers & set(server.worker_pids()):
            assert time.monotonic() < deadline, "the workers were not restarted"
            time.sleep(0.2)
        assert spamc(port, SPAMMY[0], "-c").returncode == 1
    finally:
        code = server.stop()
    log = server.log.read_text()
    assert outcome == "workers are not restarted", log
    assert f"cannot listen for spamc on 127.0.0.1:{other}" in log and "Traceback" not in log, log
    assert scored.returncode == 1, "the old workers go on answering spamc"
    assert code == 0, log
