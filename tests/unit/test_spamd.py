"""The spamd listener of the HTTP service's app, on a free loopback port,
spoken to with raw sockets: every command, every error, the bounds."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import re
import socket
import struct
import time
import warnings
import zlib

import pytest
from starlette.exceptions import StarletteDeprecationWarning
from test_api import LEARN_TOKEN, LEARNER, train

from spamlearn.api import create_app
from spamlearn.api.spamd_server import FIRST_WRITE, MAX_CONNECTIONS, coalesced
from spamlearn.config import load_settings
from spamlearn.errors import ConfigError
from spamlearn.message import message_digest
from spamlearn.modelstore import ModelStore
from spamlearn.server_settings import ServerSettings, load_server_settings
from spamlearn.sources import spamd_source, verdict_giver

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

MAX_BODY = 64 * 1024


@pytest.fixture
def settings(tmp_path):
    return load_settings(model_path=tmp_path / "model.joblib", min_messages=2,
                         user_models_dir=tmp_path / "users", own_model_users=frozenset({"alice"}))


@pytest.fixture
def store(settings, spam_messages, ham_messages):
    return train(settings.model_path, spam_messages, ham_messages)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Spamd:
    """The app's lifespan running (so its listener too), and a raw client for it."""

    def __init__(self, port: int, client: TestClient):
        self.port = port
        self.client = client        # the same app over HTTP

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=20)

    def ask(self, data: bytes) -> bytes:
        """Send ``data``, shut the sending side (as spamc does), read to the end."""
        with self.connect() as connection:
            connection.sendall(data)
            connection.shutdown(socket.SHUT_WR)
            return read_all(connection)

    def request(self, command: str, message: bytes = b"", *headers: str, length: int | None = None) -> bytes:
        head = [f"{command} SPAMC/1.5", *headers]
        if command not in ("PING", "SKIP"):
            head.append(f"Content-length: {len(message) if length is None else length}")
        return self.ask(("\r\n".join(head) + "\r\n\r\n").encode() + message)


def read_all(connection: socket.socket) -> bytes:
    out = b""
    while chunk := connection.recv(65536):
        out += chunk
    return out


@contextlib.contextmanager
def listening(settings, **changes):
    port = free_port()
    values = {"workers": 1, "reload_interval": 0.0, "max_body_size": MAX_BODY,
              "spamd_listen": f"127.0.0.1:{port}", **changes}
    with TestClient(create_app(settings, ServerSettings(**values))) as client:
        yield Spamd(port, client)


def split(answer: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    first, *lines = head.decode().split("\r\n")
    return first, dict(line.split(": ", 1) for line in lines), body


# -- commands ------------------------------------------------------------------------------
def test_ping_answers_pong_with_or_without_the_blank_line_of_protocol_1_5(settings, store):
    with listening(settings) as spamd:
        assert spamd.ask(b"PING SPAMC/1.5\r\n\r\n") == b"SPAMD/1.5 0 PONG\r\n"
        # spamc before 3.3 sent the line alone, and waited for the answer.
        with spamd.connect() as connection:
            connection.sendall(b"PING SPAMC/1.2\r\n")
            assert connection.recv(100) == b"SPAMD/1.5 0 PONG\r\n"


def test_check_says_spam_with_score_and_threshold_and_no_body(settings, store, spam_messages,
                                                             ham_messages):
    with listening(settings) as spamd:
        spam = split(spamd.request("CHECK", spam_messages[0]))
        ham = split(spamd.request("CHECK", ham_messages[0]))
        verdicts = [spamd.client.post("/score", content=m).json()
                    for m in (spam_messages[0], ham_messages[0])]
    assert spam[0] == ham[0] == "SPAMD/1.1 0 EX_OK"
    assert verdicts[0]["verdict"] == "spam" and verdicts[1]["verdict"] == "ham"
    # SpamAssassin's scale (spamlearn.points): required 5.0 at spam_cutoff.
    spam_score, ham_score = (float(re.fullmatch(rf"{word} ; (-?\d+\.\d) / 5\.0", answer[1]["Spam"])[1])
                             for word, answer in (("True", spam), ("False", ham)))
    assert spam_score >= 5.0 > ham_score and spam[2] == ham[2] == b""


def test_symbols_name_the_verdict_and_unsure_is_not_spam(tmp_path, spam_messages, ham_messages):
    # Cutoffs that make every score unsure: 0 <= p < 1.
    settings = load_settings(model_path=tmp_path / "model.joblib", min_messages=2,
                             ham_cutoff=0.0, spam_cutoff=1.0)
    train(settings.model_path, spam_messages, ham_messages)
    with listening(settings) as spamd:
        _, headers, body = split(spamd.request("SYMBOLS", spam_messages[0]))
        _, _, processed = split(spamd.request("PROCESS", spam_messages[0]))
    assert headers["Spam"].startswith("False ; ") and headers["Spam"].endswith(" / 5.0")
    assert body == b"SPAMLEARN_UNSURE" and headers["Content-length"] == str(len(body))
    assert b"X-Spam-Flag" not in processed
    assert re.search(rb"X-Spam-Status: No, score=-?\d+\.\d required=5\.0 tests=SPAMLEARN_UNSURE "
                     rb"autolearn=no\n(X-Spam-Level: \*{0,4}\n)?X-Spam-Verdict: unsure\n", processed)


def test_symbols_of_spam_and_ham(settings, store, spam_messages, ham_messages):
    with listening(settings) as spamd:
        assert split(spamd.request("SYMBOLS", spam_messages[1]))[2] == b"SPAMLEARN_SPAM"
        assert split(spamd.request("SYMBOLS", ham_messages[1]))[2] == b"SPAMLEARN_HAM"


def test_report_gives_the_verdict_the_model_and_the_clues(settings, store, spam_messages, ham_messages):
    with listening(settings) as spamd:
        _, headers, report = split(spamd.request("REPORT", spam_messages[0]))
        _, _, if_spam = split(spamd.request("REPORT_IFSPAM", spam_messages[0]))
        _, ham_headers, if_ham = split(spamd.request("REPORT_IFSPAM", ham_messages[0]))
        clues = spamd.client.post("/score", params={"explain": "true"},
                                  content=spam_messages[0]).json()["clues"]
    text = report.decode()
    assert text.startswith("spamlearn verdict: spam, spam probability ")
    assert "model: shared model.joblib, revision 1" in text
    assert clues[0]["token"] in text and len(text.splitlines()) <= 3 + 15
    assert headers["Content-length"] == str(len(report)) and if_spam == report
    assert ham_headers["Spam"].startswith("False") and if_ham == b"" and ham_headers["Content-length"] == "0"


def test_process_writes_what_post_filter_writes_the_senders_own_x_spam_removed(settings, store,
                                                                               spam_messages):
    forged = (b"X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-100\r\n"
              + spam_messages[2].replace(b"\n", b"\r\n"))
    with listening(settings) as spamd:
        _, headers, processed = split(spamd.request("PROCESS", forged))
        _, _, only_headers = split(spamd.request("HEADERS", forged))
        filtered = spamd.client.post("/filter", content=forged).content
    assert processed == filtered and headers["Content-length"] == str(len(processed))
    assert processed.startswith(b"X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=")
    assert b"X-Spam-Flag: NO" not in processed and b"score=-100" not in processed
    # HEADERS: the same, up to and with the blank line (spamc adds the body it sent).
    assert only_headers.endswith(b"\r\n\r\n") and processed.startswith(only_headers)
    assert processed[len(only_headers):] == forged.partition(b"\r\n\r\n")[2]


def test_the_user_header_picks_the_users_own_model_as_the_user_parameter_does(
        settings, store, spam_messages, ham_messages):
    # Alice's own model learned everything the other way round.
    train(settings.user_model_path("alice"), ham_messages, spam_messages)
    with listening(settings) as spamd:
        alice = split(spamd.request("CHECK", spam_messages[0], "User: alice"))[1]["Spam"]
        shouting = split(spamd.request("CHECK", spam_messages[0], "User: ALICE"))[1]["Spam"]
        bob = split(spamd.request("CHECK", spam_messages[0], "User: bob"))[1]["Spam"]
        nobody = split(spamd.request("CHECK", spam_messages[0]))[1]["Spam"]
        report = split(spamd.request("REPORT", spam_messages[0], "User: alice"))[2].decode()
        over_http = spamd.client.post("/score", params={"user": "alice"}, content=spam_messages[0]).json()
    assert alice.startswith("False") and shouting == alice and over_http["verdict"] != "spam"
    assert bob.startswith("True") and nobody == bob
    # Its clues say which words alice's mail holds: not shown to anyone who can connect.
    assert "model: user alice.joblib" in report and "clues: not shown" in report


def exim_reads(answer: bytes) -> tuple[float, float, bytes] | None:
    """What Exim's `spam` condition (src/spam.c, 4.9x) reads of a REPORT
    answer: its two sscanf formats, run by the C library's sscanf."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    version, score, threshold, offset = (ctypes.create_string_buffer(8), ctypes.c_double(),
                                         ctypes.c_double(), ctypes.c_int(-1))
    for form in (b"SPAMD/%7s 0 EX_OK\r\nContent-length: %*u\r\n\r\n%lf/%lf\r\n%n",
                 b"SPAMD/%7s 0 EX_OK\r\nSpam: %*s ; %lf / %lf\r\n\r\n%n"):
        if libc.sscanf(answer, form, version, ctypes.byref(score), ctypes.byref(threshold),
                       ctypes.byref(offset)) == 3:
            return score.value, threshold.value, answer[offset.value:]
    return None


def exim_asks(spamd: Spamd, message: bytes) -> bytes:
    """Exim's request, as src/spam.c writes it: REPORT SPAMC/1.2."""
    return spamd.ask(f"REPORT SPAMC/1.2\r\nUser: nobody\r\nContent-length: {len(message)}\r\n\r\n"
                     .encode() + message)


def test_exim_reads_the_score_threshold_and_report_of_a_report_answer(settings, store, spam_messages,
                                                                     ham_messages):
    with listening(settings) as spamd:
        spam = exim_asks(spamd, spam_messages[0])
        ham = exim_asks(spamd, ham_messages[0])
        current = spamd.request("REPORT", spam_messages[0])
    spam_score, threshold, report = exim_reads(spam)
    ham_score, _, _ = exim_reads(ham)
    assert threshold == 5.0 and spam_score >= threshold > ham_score
    # spamd counts the body of a CHECK or REPORT answer only for SPAMC/1.3
    # on; Exim asks in 1.2 and takes all after the Spam line as the report:
    # its X-Spam-Report header began "Content-length: 718", then a blank
    # continuation line (seen with Exim 4.96 in tests/integration/test_exim.py).
    assert report.startswith(b"spamlearn verdict: spam"), report
    assert split(spam)[1].keys() == {"Spam"}
    assert "Content-length" in split(current)[1], "spamc 4.0 (SPAMC/1.5) counts it"


def rspamd_reads(first_read: bytes) -> tuple[float, str] | None:
    """What Rspamd's spamassassin scanner (lualib/lua_scanners/spamassassin.lua,
    3.4) reads of a HEADERS answer: score and tests of the X-Spam-Status
    line, with its Lua pattern in Python's words.  It parses the bytes of
    its first read alone.  None where Rspamd fails: its pattern does not
    match, and comparing the line with 0 is a Lua error."""
    score, symbols = "0", ""
    for line in re.sub(r"[\r\n]+[\t ]", " ", first_read.decode("latin-1")).splitlines():
        if re.search(r"X-Spam-Status: \S+, score", line):
            found = re.search(r"X-Spam-Status: \S+, score=([-\d.]+)\s.*tests=(.*,?)(\s*\S+)\sautolearn.*",
                              line)
            if not found:
                return None
            score, symbols = found[1], re.sub(r"\s", "", found[2] + found[3])
    return float(score), symbols


def test_rspamd_reads_score_and_symbol_from_the_first_write_of_a_headers_answer(
        settings, store, spam_messages, ham_messages, monkeypatch):
    """Rspamd parses what its first read gives: the answer's head and our
    X-Spam-Status line go out in one write.  Written apart, Rspamd got the
    head alone and took spam for clean; without "autolearn" after the
    tests, its pattern failed on every message (tests/integration/test_rspamd.py
    with the real Rspamd)."""
    writes: list[bytes] = []
    write = asyncio.StreamWriter.write

    def recorded(self, data):
        writes.append(bytes(data))
        return write(self, data)

    monkeypatch.setattr(asyncio.StreamWriter, "write", recorded)
    read = {}
    with listening(settings) as spamd:
        for name, raw in (("spam", spam_messages[0]), ("ham", ham_messages[0])):
            writes.clear()
            answer = spamd.request("HEADERS", raw, "User: root")
            assert b"".join(writes) == answer
            read[name] = rspamd_reads(writes[0])
    assert read["spam"] is not None and read["spam"][0] >= 5.0 and read["spam"][1] == "SPAMLEARN_SPAM"
    assert read["ham"] is not None and read["ham"][0] < 5.0 and read["ham"][1] == "SPAMLEARN_HAM"


def test_an_answer_goes_out_as_its_first_64_kb_then_the_rest_uncopied():
    big = memoryview(b"m" * (FIRST_WRITE * 2))
    pieces = coalesced([b"head\r\n\r\n", b"X-Spam-Status: Yes\r\n", big])
    assert pieces[0] == (b"head\r\n\r\nX-Spam-Status: Yes\r\n" + b"m" * FIRST_WRITE)[:FIRST_WRITE]
    assert b"".join(pieces) == b"head\r\n\r\nX-Spam-Status: Yes\r\n" + bytes(big)
    assert len(pieces) == 2 and isinstance(pieces[1], memoryview) and pieces[1].obj is big.obj
    assert coalesced([]) == [] and coalesced([b"PONG"]) == [b"PONG"]


def test_a_compressed_message_is_answered_as_the_plain_one(settings, store, spam_messages):
    with listening(settings) as spamd:
        plain = spamd.request("PROCESS", spam_messages[0])
        packed = spamd.request("PROCESS", zlib.compress(spam_messages[0], 3), "Compress: zlib")
    assert packed == plain


def test_skip_answers_nothing_and_a_port_check_is_not_logged(settings, store, caplog):
    with listening(settings) as spamd, caplog.at_level(logging.INFO, "spamlearn"):
        assert spamd.ask(b"SKIP SPAMC/1.5\r\n\r\n") == b""
        with spamd.connect():
            pass                                 # connect, close: a monitor's port check
        assert spamd.ask(b"PING SPAMC/1.5\r\n\r\n").endswith(b"PONG\r\n")
    assert [r for r in caplog.records if r.name.startswith("spamlearn")] == []


def test_it_scores_messages_counted_in_the_metrics(settings, store, spam_messages):
    with listening(settings) as spamd:
        spamd.request("CHECK", spam_messages[0])
        metrics = spamd.client.get("/metrics").text
    assert 'spamlearn_verdicts_total{verdict="spam"} 1' in metrics


def test_spamd_requests_are_counted_by_command_and_result_apart_from_http(settings, store,
                                                                            spam_messages):
    """/metrics counted no spamd request at all: a listener answering only
    errors looked idle."""
    with listening(settings) as spamd:
        spamd.request("CHECK", spam_messages[0])
        spamd.request("CHECK", spam_messages[1])
        spamd.ask(b"HELLO SPAMC/1.5\r\n\r\n")
        spamd.ask(b"PING SPAMC/1.5\r\n\r\n")
        with spamd.connect():
            pass                                 # a port check: no request
        metrics = spamd.client.get("/metrics").text
    counted = sorted(line for line in metrics.splitlines() if line.startswith("spamlearn_spamd_"))
    assert counted == ['spamlearn_spamd_requests_total{command="CHECK",result="EX_OK"} 2',
                       'spamlearn_spamd_requests_total{command="PING",result="EX_OK"} 1',
                       'spamlearn_spamd_requests_total{command="request",result="EX_PROTOCOL"} 1']
    assert "spamd" not in "".join(x for x in metrics.splitlines() if "http_requests_total" in x)


# -- errors -----------------------------------------------------------------------------------
SECRET = b"Subject: private\r\n\r\nthe password is hunter2-do-not-log\r\n"


@pytest.mark.parametrize("data, code, reason", [
    (b"HELLO SPAMC/1.5\r\n\r\n", 76, "unknown command 'HELLO'"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 76, "bad request line starting 'GET'"),
    # Raw mail piped to the port: its first word only, not the addresses after it.
    (b"Received: from hunter2-do-not-log.example (1.2.3.4)\r\n\r\n" + SECRET, 76,
     "bad request line starting 'Received:'"),
    (b"CHECK SPAMC/3.0\r\nContent-length: 1\r\n\r\nx", 76, "unsupported protocol version"),
    (b"CHECK SPAMC/1.5\r\nContent-length 5\r\n\r\nhello", 76,
     "bad header line starting 'Content-length'"),
    (b"CHECK SPAMC/1.5\r\nFrom hunter2-do-not-log@example.org\r\n\r\n", 76,
     "bad header line starting 'From'"),
    (b"CHECK SPAMC/1.5\r\n\r\n" + SECRET, 76, "CHECK without Content-length"),
    (b"CHECK SPAMC/1.5\r\nContent-length: ten\r\n\r\n" + SECRET, 76, "bad Content-length 'ten'"),
    (b"CHECK SPAMC/1.5\r\nContent-length: 999999\r\n\r\n" + SECRET, 65, "larger than the limit of 65536"),
    (b"CHECK SPAMC/1.5\r\nContent-length: 500\r\n\r\n" + SECRET, 76,
     f"the message ended after {len(SECRET)} of the 500 bytes"),
    (b"CHECK SPAMC/1.5\r\nContent-length: 0\r\n\r\n", 65, "empty"),
    (b"TELL SPAMC/1.5\r\nUser: ../etc\r\nMessage-class: spam\r\nSet: local\r\nContent-length: %d\r\n\r\n"
     % len(SECRET) + SECRET, 67, "invalid user name"),
    (b"CHECK SPAMC/1.5\r\nCompress: gzip\r\nContent-length: %d\r\n\r\n" % len(SECRET) + SECRET, 64,
     "unknown compression 'gzip'"),
    (b"CHECK SPAMC/1.5\r\nCompress: zlib\r\nContent-length: %d\r\n\r\n" % len(SECRET) + SECRET, 65,
     "not zlib data"),
    (b"CHECK SPAMC/1.5\r\n" + b"X-Filler: x\r\n" * 40 + b"\r\n", 76, "more than 32 header lines"),
    (b"CHECK SPAMC/1.5\r\nX-Long: " + b"x" * 5000 + b"\r\n\r\n", 76, "longer than 1024 bytes"),
    (b"CHECK SPAMC/1.5\r\nContent-length: 5\r\n", 76, "ended before the blank line"),
    (b"CHECK SPAMC/1.5\r\nContent-length: 5\r\nContent-length: 6\r\n\r\nhello", 76, "given twice"),
])
def test_a_bad_request_is_an_error_line_and_one_warning_without_the_message(
        settings, store, caplog, data, code, reason):
    with listening(settings) as spamd, caplog.at_level(logging.INFO, "spamlearn"):
        answer = spamd.ask(data)
    first, _, rest = answer.partition(b"\r\n")
    assert rest == b"", "an error answer is its first line alone"
    assert first.startswith(f"SPAMD/1.1 {code} ".encode()) and reason.encode() in first, first
    records = [r for r in caplog.records if r.name.startswith("spamlearn")]
    assert [r.levelname for r in records] == ["WARNING"], [r.getMessage() for r in records]
    assert reason in records[0].getMessage() and b"hunter2" not in records[0].getMessage().encode()


def test_a_user_that_is_no_user_name_is_scored_with_the_shared_model(settings, store, spam_messages):
    """As spamd scores an unknown user with its defaults: Exim does not fail
    open as spamc does, and `spam = $local_part` with a local part such as
    o'brien deferred the mail (67 here, a review found)."""
    with listening(settings) as spamd:
        odd = split(spamd.request("CHECK", spam_messages[0], "User: o'brien"))
        none = split(spamd.request("CHECK", spam_messages[0]))
    assert odd[0] == "SPAMD/1.1 0 EX_OK" and odd[1] == none[1]


def test_a_zip_bomb_is_refused_without_inflating_it(settings, store):
    bomb = zlib.compress(b"Subject: x\r\n\r\n" + b"\0" * (50 * 1024 * 1024), 9)
    with listening(settings) as spamd:
        answer = spamd.request("CHECK", bomb, "Compress: zlib")
    assert answer.startswith(b"SPAMD/1.1 65 EX_DATAERR: the message is larger than the limit of 65536 "
                             b"bytes once decompressed")


def test_an_oversized_message_is_refused_from_its_content_length_before_it_is_sent(settings, store):
    with listening(settings) as spamd, spamd.connect() as connection:
        connection.sendall(b"PROCESS SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % (MAX_BODY + 1))
        started = time.monotonic()
        answer = read_all(connection)            # not a byte of the body sent, no EOF either
    assert answer.startswith(b"SPAMD/1.1 65 EX_DATAERR: the message is larger than the limit")
    assert time.monotonic() - started < 5


def test_a_client_that_stops_mid_message_is_dropped_after_the_timeout(settings, store, caplog):
    with listening(settings, spamd_timeout=0.5) as spamd, caplog.at_level(logging.INFO, "spamlearn"):
        with spamd.connect() as connection:
            connection.sendall(b"CHECK SPAMC/1.5\r\nContent-length: 1000\r\n\r\n" + SECRET)
            started = time.monotonic()
            answer = read_all(connection)        # the client neither sends more nor closes
            waited = time.monotonic() - started
        # Still serving the others.
        assert spamd.ask(b"PING SPAMC/1.5\r\n\r\n").endswith(b"PONG\r\n")
    assert answer == b"SPAMD/1.1 74 EX_IOERR: no complete request within 0.5 s (spamd_timeout)\r\n"
    assert 0.4 < waited < 5
    assert [r.levelname for r in caplog.records if r.name.startswith("spamlearn")] == ["WARNING"]


def test_a_client_that_resets_mid_message_is_one_warning(settings, store, caplog):
    with listening(settings) as spamd, caplog.at_level(logging.INFO, "spamlearn"):
        with spamd.connect() as connection:
            connection.sendall(b"CHECK SPAMC/1.5\r\nContent-length: 1000\r\n\r\n" + SECRET)
            time.sleep(0.2)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # closed with SO_LINGER 0: a reset; then something the listener answers
        assert spamd.ask(b"PING SPAMC/1.5\r\n\r\n").endswith(b"PONG\r\n")
    # Two were logged: the broken read, then "the answer could not be sent"
    # of the nothing there was to send.
    records = [r.getMessage() for r in caplog.records if r.name.startswith("spamlearn")]
    assert len(records) == 1 and "the connection broke before the request was read" in records[0], records


def test_a_client_gone_before_its_error_line_is_one_warning_not_a_traceback(settings, store, caplog):
    # Half a message, then closed (a filter killed mid-send): the listener
    # answers EX_PROTOCOL to a socket that is gone, and the kernel's reset
    # made the end of the answer (shutdown) fail with ENOTCONN, an OSError
    # but no ConnectionError: "Unhandled exception in client_connected_cb"
    # and a traceback for about one in two (a soak's 800 in 6 minutes, on
    # asyncio's own loop; uvloop ignores that error).
    with listening(settings) as spamd, caplog.at_level(logging.INFO):
        for _ in range(10):
            with spamd.connect() as connection:
                connection.sendall(b"CHECK SPAMC/1.5\r\nContent-length: 1000\r\n\r\n" + SECRET)
            time.sleep(0.05)
        assert spamd.ask(b"PING SPAMC/1.5\r\n\r\n").endswith(b"PONG\r\n")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], \
        [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert all(r.levelname == "WARNING" and SECRET.decode() not in r.getMessage()
               for r in caplog.records if r.name.startswith("spamlearn"))


def test_a_slow_head_is_dropped_too(settings, store):
    with listening(settings, spamd_timeout=0.5) as spamd, spamd.connect() as connection:
        connection.sendall(b"CHECK SPAMC/1.5\r\n")
        assert read_all(connection).startswith(b"SPAMD/1.1 74 EX_IOERR")


def test_no_model_to_score_with_is_unavailable_and_not_logged_for_every_message(
        tmp_path, spam_messages, caplog):
    settings = load_settings(model_path=tmp_path / "model.joblib", min_messages=2)
    port = free_port()
    app = create_app(settings, ServerSettings(workers=1, spamd_listen=f"127.0.0.1:{port}"),
                     start_degraded=True)
    settings.model_path.write_bytes(b"\x80 not a model")
    with caplog.at_level(logging.INFO, "spamlearn"), TestClient(app):
        said_at_start = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        caplog.clear()
        answers = [Spamd(port, None).request("CHECK", spam_messages[0]) for _ in range(3)]
    assert all(a.startswith(b"SPAMD/1.1 69 EX_UNAVAILABLE: ") and b"corrupt" in a for a in answers), answers
    assert any("starting without a model" in line for line in said_at_start)
    assert [r for r in caplog.records if r.name.startswith("spamlearn")] == []


def test_more_connections_than_the_limit_are_told_to_come_back(settings, store):
    with listening(settings) as spamd:
        idle = [spamd.connect() for _ in range(MAX_CONNECTIONS)]
        try:
            time.sleep(0.2)
            answer = spamd.ask(b"PING SPAMC/1.5\r\n\r\n")
        finally:
            for connection in idle:
                connection.close()
        time.sleep(0.2)
        again = spamd.ask(b"PING SPAMC/1.5\r\n\r\n")
    assert answer.startswith(b"SPAMD/1.1 75 EX_TEMPFAIL: more than 64 connections")
    assert again == b"SPAMD/1.5 0 PONG\r\n"


# -- TELL -------------------------------------------------------------------------------------
def tell(spamd: Spamd, message: bytes, *headers: str) -> tuple[str, dict[str, str]]:
    first, headers_back, _ = split(spamd.request("TELL", message, *headers))
    return first, headers_back


def test_tell_is_refused_unless_allowed_and_learns_nothing(settings, store, ham_messages, caplog):
    with listening(settings) as spamd, caplog.at_level(logging.INFO, "spamlearn"):
        answer = spamd.request("TELL", ham_messages[0], "Message-class: spam", "Set: local")
    assert answer == (b"SPAMD/1.1 69 EX_UNAVAILABLE: TELL is not allowed: set [server] "
                      b"spamd_allow_tell = true (spamd's --allow-tell)\r\n")
    assert store.info()["ledger_counts"] == {"spam": 4, "ham": 4} and store.load().revision == 1


def test_tell_learns_once_relabels_once_and_forgets_through_the_ledger(settings, store, spam_messages):
    message = spam_messages[0].replace(b"Cheap pills", b"Cheaper pills")    # a new message
    with listening(settings, spamd_allow_tell=True) as spamd:
        learned = tell(spamd, message, "Message-class: spam", "Set: local")
        again = tell(spamd, message, "Message-class: spam", "Set: local")
        after_learning = store.info()
        relabelled = tell(spamd, message, "Message-class: ham", "Set: local")
        after_relabel = store.info()
        forgotten = tell(spamd, message, "Remove: local")
        not_known = tell(spamd, message, "Remove: local")
        metrics = spamd.client.get("/metrics").text
    assert learned == ("SPAMD/1.1 0 EX_OK", {"DidSet": "local", "Content-length": "0"})
    assert again == ("SPAMD/1.1 0 EX_OK", {"Content-length": "0"}), "spamc: already un/learned"
    assert (after_learning["n_spam"], after_learning["ledger_counts"]) == (5, {"spam": 5, "ham": 4})
    assert relabelled[1] == {"DidSet": "local", "Content-length": "0"}
    assert (after_relabel["n_spam"], after_relabel["n_ham"]) == (4, 5)
    assert after_relabel["ledger_counts"] == {"spam": 4, "ham": 5}
    assert forgotten[1] == {"DidRemove": "local", "Content-length": "0"}
    assert not_known[1] == {"Content-length": "0"}
    final = store.info()
    assert (final["n_spam"], final["n_ham"], final["ledger_counts"]) == (4, 4, {"spam": 4, "ham": 4})
    assert store.check() == []
    assert 'spamlearn_learn_total{action="relabelled"} 1' in metrics


@pytest.mark.parametrize("body", [b"", b"From e@x Mon Jan  1 00:00:00 2024\n"])
def test_a_tell_of_a_message_that_does_not_parse_is_counted_as_a_parse_failure(settings, store, body):
    """As POST /learn counts it (and CHECK does): a TELL answered EX_DATAERR
    was missing from spamlearn_parse_failures_total."""
    with listening(settings, spamd_allow_tell=True, learn_token=LEARN_TOKEN) as spamd:
        answer = spamd.request("TELL", body, "Message-class: spam", "Set: local")
        metrics = spamd.client.get("/metrics").text
        over_http = spamd.client.post("/learn", params={"label": "spam"}, content=body,
                                      headers=LEARNER)
        metrics_after_http = spamd.client.get("/metrics").text
    assert answer.startswith(b"SPAMD/1.1 65 EX_DATAERR: ") and over_http.status_code == 400
    assert "spamlearn_parse_failures_total 1" in metrics
    assert "spamlearn_parse_failures_total 2" in metrics_after_http
    assert store.load().revision == 1


def test_tell_for_a_user_trains_their_own_model_and_is_their_verdict(
        settings, store, spam_messages, ham_messages):
    train(settings.user_model_path("alice"), spam_messages, ham_messages)
    message = ham_messages[0].replace(b"Meeting", b"Meeting again")
    with listening(settings, spamd_allow_tell=True) as spamd:
        _, headers = tell(spamd, message, "Message-class: spam", "Set: local", "User: alice")
    assert headers["DidSet"] == "local"
    alice = ModelStore.from_settings(settings, "alice")
    assert alice.info()["n_spam"] == 5 and store.info()["n_spam"] == 4
    assert {"source": "spamd:alice", "label": "spam", "messages": 1} in [
        {k: row[k] for k in ("source", "label", "messages")} for row in alice.info()["sources"]]
    with alice.session() as session:
        assert session.learned(message_digest(message)).source == "spamd:alice"


def test_a_spamc_verdict_is_the_users_own_for_the_imap_trainers_rescue_rule():
    # A message alice junked with `spamc -L spam -u alice` and then moved
    # out of Junk is her rescue, as one she junked through the sieve.
    assert verdict_giver(spamd_source("alice")) == "alice"
    assert verdict_giver(spamd_source(None)) is None


@pytest.mark.parametrize("headers, reason", [
    (("Set: local",), "needs Message-class: spam or ham"),
    (("Message-class: unsure", "Set: local"), "needs Message-class: spam or ham"),
    (("Message-class: spam", "Set: local", "Remove: local"), "both Set: local and Remove: local"),
    (("Message-class: spam", "Set: remote"), "without Set: local or Remove: local"),
    (("Message-class: spam", "Set: everywhere"), "unknown TELL target"),
    ((), "without Set: local or Remove: local"),
])
def test_a_tell_that_asks_for_nothing_we_do_is_a_usage_error(settings, store, spam_messages, headers, reason):
    with listening(settings, spamd_allow_tell=True) as spamd:
        answer = spamd.request("TELL", spam_messages[0], *headers)
    assert answer.startswith(b"SPAMD/1.1 64 EX_USAGE: ") and reason.encode() in answer, answer
    assert store.load().revision == 1


# -- settings ---------------------------------------------------------------------------------
def test_the_spamd_settings_come_from_the_server_table_and_the_environment(tmp_path):
    config = tmp_path / "spamlearn.toml"
    config.write_text('[server]\nspamd_listen = "[::1]:7830"\nspamd_allow_tell = true\nspamd_timeout = 5\n')
    settings = load_settings(config)
    server = load_server_settings(settings, env={})
    assert (server.spamd_address, server.spamd_allow_tell, server.spamd_timeout) == (("::1", 7830), True, 5.0)
    assert server.spamd_is_loopback
    from_env = load_server_settings(settings, env={"SPAMLEARN_SERVER_SPAMD_LISTEN": "0.0.0.0:783"})
    assert from_env.spamd_address == ("0.0.0.0", 783) and not from_env.spamd_is_loopback
    assert ServerSettings().spamd_address is None, "off unless configured"


@pytest.mark.parametrize("env, flag", [({"SPAMLEARN_SERVER_SPAMD_LISTEN": "off"}, None),
                                       ({}, "off"), ({"SPAMLEARN_SERVER_SPAMD_LISTEN": "[::1]:7831"}, "OFF")])
def test_off_from_the_environment_or_a_flag_turns_off_the_files_spamd_listener(tmp_path, env, flag):
    """An empty value is no address (78) and an empty variable is unset:
    there was no way to turn off, without editing the file, a listener it
    set.  The workers read the flag as the parent does (the same function)."""
    config = tmp_path / "spamlearn.toml"
    config.write_text('[server]\nspamd_listen = "127.0.0.1:7830"\n')
    server = load_server_settings(load_settings(config), env=env, spamd_listen=flag)
    assert server.spamd_listen is None and server.spamd_address is None


@pytest.mark.parametrize("line, problem", [
    ('spamd_listen = "783"', "spamd_listen must be HOST:PORT"),
    ('spamd_listen = "127.0.0.1:0"', "spamd_listen must be HOST:PORT with a port of 1..65535"),
    ('spamd_allow_tell = "yes"', "spamd_allow_tell must be true or false"),
    ("spamd_timeout = 0", "spamd_timeout must be > 0"),
    # The HTTP port (8731 by default): with 2 workers spamc's listeners took
    # it over and HTTP answered "SPAMD/1.1 76" to curl; with 1, exit 3.
    ('spamd_listen = "127.0.0.1:8731"', "spamd_listen must not be on the HTTP service's port 8731"),
    ('port = 7830\nspamd_listen = "[::1]:7830"', "spamd_listen must not be on the HTTP service's port"),
    # asyncio binds with IPV6_V6ONLY: serve started, every worker then
    # failed with a traceback (exit 3).
    ('spamd_listen = "[::ffff:127.0.0.1]:7830"',
     r"spamd_listen must not be an IPv4-mapped IPv6 address .*: use 127\.0\.0\.1:7830"),
])
def test_a_bad_spamd_setting_names_the_key(tmp_path, line, problem):
    config = tmp_path / "spamlearn.toml"
    config.write_text(f"[server]\n{line}\n")
    with pytest.raises(ConfigError, match=problem):
        load_server_settings(load_settings(config), env={})


def test_serve_with_spamd_on_the_http_port_exits_78_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from spamlearn.cli import ExitCode, app

    port = free_port()
    result = CliRunner().invoke(app, ["serve", "--port", str(port), "--workers", "1",
                                      "--spamd-listen", f"127.0.0.1:{port}"])
    assert result.exit_code == ExitCode.CONFIG, result.output
    assert f"--spamd-listen must not be on the HTTP service's port {port}" in result.output


def test_serve_with_spamd_on_an_ipv4_mapped_address_exits_78_with_one_line():
    from typer.testing import CliRunner

    from spamlearn.cli import ExitCode, app

    result = CliRunner().invoke(app, ["serve", "--port", str(free_port()), "--workers", "1",
                                      "--spamd-listen", "[::ffff:127.0.0.1]:7830"])
    assert result.exit_code == ExitCode.CONFIG, result.output
    assert "--spamd-listen must not be an IPv4-mapped IPv6 address" in result.output
    assert "use 127.0.0.1:7830" in result.output and "Traceback" not in result.output


def test_serve_with_the_spamd_address_taken_exits_69_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from spamlearn.cli import ExitCode, app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--port", str(free_port()), "--workers", "1",
                                          "--spamd-listen", f"127.0.0.1:{port}"])
    assert result.exit_code == ExitCode.UNAVAILABLE, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output and "Traceback" not in result.output
