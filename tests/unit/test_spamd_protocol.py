"""spamc's protocol without a network: request heads parsed, answers written."""

from __future__ import annotations

import zlib

import pytest

from spamlearn.spamd_protocol import (
    EX_DATAERR,
    EX_PROTOCOL,
    EX_USAGE,
    SpamdError,
    answer,
    build_request,
    error_answer,
    inflate,
    parse_header_line,
    parse_request_line,
)


@pytest.mark.parametrize("line, expected", [
    (b"CHECK SPAMC/1.5\r\n", ("CHECK", (1, 5))),
    (b"PROCESS SPAMC/1.2\n", ("PROCESS", (1, 2))),
    (b"REPORT_IFSPAM SPAMC/1.5\r\n", ("REPORT_IFSPAM", (1, 5))),
    (b"TELL SPAMC/1.5\r\n", ("TELL", (1, 5))),
])
def test_a_request_line_gives_its_command_and_version(line, expected):
    assert parse_request_line(line) == expected


@pytest.mark.parametrize("line, reason", [
    (b"check SPAMC/1.5\r\n", "bad request line"),
    (b"CHECK\r\n", "bad request line"),
    (b"CHECK SPAMC/1.5 extra\r\n", "bad request line"),
    (b"GET / HTTP/1.1\r\n", "bad request line"),
    (b"LEARN SPAMC/1.5\r\n", "unknown command 'LEARN'"),
    (b"CHECK SPAMC/2.0\r\n", "unsupported protocol version SPAMC/2.0"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n", "bad request line"),   # a TLS hello
])
def test_a_bad_request_line_is_a_protocol_error(line, reason):
    with pytest.raises(SpamdError, match=reason) as caught:
        parse_request_line(line)
    assert caught.value.code == EX_PROTOCOL


def test_header_names_are_case_blind_and_values_trimmed():
    assert parse_header_line(b"Content-Length:   42  \r\n") == ("content-length", "42")
    assert parse_header_line(b"user:alice\n") == ("user", "alice")


@pytest.mark.parametrize("line", [b"no colon here\r\n", b": value\r\n", b"User: al\x00ice\r\n",
                                  b"User: \xc3\xa9\r\n", b"Bad Name: x\r\n"])
def test_a_bad_header_line_is_a_protocol_error_that_shows_no_control_bytes(line):
    with pytest.raises(SpamdError, match="bad header line") as caught:
        parse_header_line(line)
    assert caught.value.code == EX_PROTOCOL
    assert all(" " <= c <= "~" for c in caught.value.reason)


def test_a_request_with_a_message_needs_a_content_length_within_the_limit():
    request = build_request(b"CHECK SPAMC/1.5\r\n", [b"Content-length: 10\r\n", b"X-Other: ignored\r\n"],
                            max_body_size=1024)
    assert request.content_length == 10 and request.headers["x-other"] == "ignored"
    with pytest.raises(SpamdError, match="without Content-length") as missing:
        build_request(b"PROCESS SPAMC/1.5\r\n", [], max_body_size=1024)
    with pytest.raises(SpamdError, match="larger than the limit of 1024") as large:
        build_request(b"PROCESS SPAMC/1.5\r\n", [b"Content-length: 1025\r\n"], max_body_size=1024)
    for bad in (b"-1", b"12a", b"1e3", b"9" * 13):
        with pytest.raises(SpamdError, match="bad Content-length"):
            build_request(b"CHECK SPAMC/1.5\r\n", [b"Content-length: " + bad + b"\r\n"], max_body_size=1024)
    assert (missing.value.code, large.value.code) == (EX_PROTOCOL, EX_DATAERR)
    assert build_request(b"PING SPAMC/1.5\r\n", [], max_body_size=1024).has_message is False


def test_a_header_given_twice_with_different_values_is_refused():
    lines = [b"Content-length: 10\r\n", b"Content-length: 20\r\n"]
    with pytest.raises(SpamdError, match="content-length given twice"):
        build_request(b"CHECK SPAMC/1.5\r\n", lines, max_body_size=1024)
    same = build_request(b"CHECK SPAMC/1.5\r\n", [lines[0], lines[0]], max_body_size=1024)
    assert same.content_length == 10


def test_only_zlib_compression_is_known():
    request = build_request(b"CHECK SPAMC/1.5\r\n", [b"Content-length: 1\r\n", b"Compress: zlib\r\n"],
                            max_body_size=1024)
    assert request.compressed
    with pytest.raises(SpamdError, match="unknown compression 'gzip'") as caught:
        build_request(b"CHECK SPAMC/1.5\r\n", [b"Content-length: 1\r\n", b"Compress: gzip\r\n"],
                      max_body_size=1024)
    assert caught.value.code == EX_USAGE


def test_tell_targets_and_class_are_read_as_spamc_writes_them():
    request = build_request(b"TELL SPAMC/1.5\r\n", [b"Message-class: Spam\r\n", b"Set: local,remote\r\n",
                                                    b"Content-length: 3\r\n"], max_body_size=1024)
    assert request.message_class == "spam"
    assert request.targets("set") == {"local", "remote"} and request.targets("remove") == set()


def test_inflate_is_bounded():
    message = b"Subject: hi\r\n\r\n" + b"A" * 5000
    assert inflate(zlib.compress(message, 3), limit=len(message)) == message
    bomb = zlib.compress(b"\0" * (10 * 1024 * 1024), 9)
    assert len(bomb) < 20_000
    with pytest.raises(SpamdError, match="larger than the limit of 4096 bytes once decompressed"):
        inflate(bomb, limit=4096)
    with pytest.raises(SpamdError, match="not zlib data"):
        inflate(b"plain text, not compressed", limit=4096)
    with pytest.raises(SpamdError, match="cut short"):
        inflate(zlib.compress(message)[:-10], limit=len(message))


def test_an_answer_counts_its_body_and_an_error_is_one_printable_line():
    pieces = answer([("Spam", "True ; 9.7 / 9.0")], [b"abc", memoryview(b"de")])
    assert b"".join(pieces) == (b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 9.7 / 9.0\r\nContent-length: 5\r\n\r\n"
                                b"abcde")
    assert b"".join(answer([("DidSet", "local")])) == b"SPAMD/1.1 0 EX_OK\r\nDidSet: local\r\n\r\n"
    assert error_answer(76, "bad\r\nline \x00") == b"SPAMD/1.1 76 EX_PROTOCOL: bad??line ?\r\n"
