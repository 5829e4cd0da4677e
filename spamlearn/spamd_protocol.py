"""SpamAssassin's spamc/spamd protocol (SPAMC/1.5), without I/O: requests
read, answers written.

A request is a line ``COMMAND SPAMC/1.x``, header lines (``Name: value``),
a blank line and, for the commands that carry a message, the message of
``Content-length`` bytes (zlib-compressed with ``Compress: zlib``)::

    CHECK SPAMC/1.5\\r\\n
    Content-length: 1234\\r\\n
    User: alice\\r\\n
    \\r\\n
    <1234 bytes>

An answer is ``SPAMD/1.1 0 EX_OK``, headers (``Spam: True ; 9.7 / 9.0``,
``Content-length``; none for a CHECK, SYMBOLS or REPORT asked in SPAMC/1.2,
as Exim asks) and a body; an error is its first line alone, with a
code from sysexits.h (``SPAMD/1.1 76 EX_PROTOCOL: ...``), and the
connection is closed, as spamd does.  The network side is
``spamlearn.api.spamd_server``; what each command answers,
``spamlearn.api.spamd_answers``.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Sequence

__all__ = [
    "SpamdError", "Request", "parse_request_line", "parse_header_line", "build_request",
    "inflate", "answer", "counts_report", "error_answer", "pong", "shown", "spam_header", "code_name",
    "COMMANDS", "EX_OK", "EX_USAGE", "EX_DATAERR", "EX_NOUSER", "EX_UNAVAILABLE", "EX_SOFTWARE",
    "EX_IOERR", "EX_TEMPFAIL", "EX_PROTOCOL", "MAX_LINE", "MAX_HEADER_LINES", "MAX_HEAD_BYTES",
]

# sysexits.h, the codes spamd answers with.
EX_OK = 0
EX_USAGE = 64        # a well-formed request asking for something we do not do
EX_DATAERR = 65      # the message: empty, too large, bad zlib data
EX_NOUSER = 67       # a User: name that cannot be a user's
EX_UNAVAILABLE = 69  # no model to score with, TELL not allowed
EX_SOFTWARE = 70
EX_IOERR = 74        # the client too slow
EX_TEMPFAIL = 75     # the model locked by another learner, too many connections
EX_PROTOCOL = 76     # a request that is not the protocol
_NAMES = {EX_OK: "EX_OK", EX_USAGE: "EX_USAGE", EX_DATAERR: "EX_DATAERR", EX_NOUSER: "EX_NOUSER",
          EX_UNAVAILABLE: "EX_UNAVAILABLE", EX_SOFTWARE: "EX_SOFTWARE", EX_IOERR: "EX_IOERR",
          EX_TEMPFAIL: "EX_TEMPFAIL", EX_PROTOCOL: "EX_PROTOCOL"}


def code_name(code: int) -> str:
    """``EX_OK``, ``EX_TEMPFAIL``...: the sysexits name an answer carries."""
    return _NAMES.get(code, "EX_SOFTWARE")


#: What spamc (4.0) sends, and SKIP (a client that changed its mind).
COMMANDS = frozenset({"PING", "SKIP", "CHECK", "SYMBOLS", "REPORT", "REPORT_IFSPAM", "PROCESS",
                      "HEADERS", "TELL"})
_WITHOUT_MESSAGE = frozenset({"PING", "SKIP"})

#: Bounds on what comes before the message.  spamc sends 3 to 6 short lines
#: (TELL's are the most); a request line or header longer than this, or more
#: of them, is not a spamc talking.
MAX_LINE = 1024
MAX_HEADER_LINES = 32
MAX_HEAD_BYTES = 8192

#: Answers carry the version real spamd answers with; spamc takes any >= 1.0,
#: Exim's `spam =` reads "SPAMD/<version> 0 EX_OK" and then the Spam header.
_ANSWER_VERSION = "1.1"
_PONG_VERSION = "1.5"

_REQUEST_LINE_RE = re.compile(rb"([A-Z_]{1,16}) SPAMC/(\d{1,3})\.(\d{1,3})")
_HEADER_RE = re.compile(rb"([A-Za-z0-9][A-Za-z0-9_-]{0,63})[ \t]*:[ \t]*([\x20-\x7e\t]*?)[ \t]*")
#: Headers whose repetition with another value would make the request ambiguous.
_SINGLE = ("content-length", "user", "compress", "message-class", "set", "remove")


class SpamdError(Exception):
    """A request answered with an error line: ``code`` (sysexits.h) and why.

    ``reason`` is sent to the client and logged: it never holds message
    content, only what the request's head said, shortened.
    """

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        #: Logged already where it was raised: the listener adds no WARNING.
        self.logged = False


def first_word(line: bytes) -> bytes:
    """What of a line that is not a request may be logged: its first word.
    Raw mail piped to the port starts "Received: from mail.example.org
    (...)" or "From: alice@...": the rest names people."""
    return line.split(None, 1)[0][:20] if line.strip() else line[:20]


def shown(text: bytes | str, limit: int = 40) -> str:
    """Client-sent text fit for a log line and an answer: printable ASCII, short."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    clean = "".join(c if " " <= c <= "~" else "?" for c in text[:limit])
    return repr(clean + ("..." if len(text) > limit else ""))


@dataclasses.dataclass(frozen=True)
class Request:
    """A request's head: the command, the protocol version and the headers
    (names in lower case)."""

    command: str
    version: tuple[int, int]
    headers: dict[str, str]

    @property
    def has_message(self) -> bool:
        return self.command not in _WITHOUT_MESSAGE

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return None if value is None else int(value)    # checked by build_request

    @property
    def user(self) -> str | None:
        return self.headers.get("user") or None

    @property
    def compressed(self) -> bool:
        return "compress" in self.headers

    @property
    def message_class(self) -> str | None:
        value = self.headers.get("message-class")
        return value.lower() if value else None

    def targets(self, name: str) -> frozenset[str]:
        """What ``Set:`` or ``Remove:`` names: ``local``, ``remote``."""
        return frozenset(part.strip().lower() for part in self.headers.get(name, "").split(",")
                         if part.strip())


def parse_request_line(line: bytes) -> tuple[str, tuple[int, int]]:
    """``b"CHECK SPAMC/1.5\\r\\n"`` -> ``("CHECK", (1, 5))``.

    Raises
    ------
    SpamdError
        EX_PROTOCOL: not a request line, an unknown command, or a protocol
        version other than 1.x.
    """
    line = line.rstrip(b"\r\n")
    found = _REQUEST_LINE_RE.fullmatch(line)
    if not found:
        raise SpamdError(EX_PROTOCOL, f"bad request line starting {shown(first_word(line))}")
    command = found[1].decode("ascii")
    if command not in COMMANDS:
        raise SpamdError(EX_PROTOCOL, f"unknown command {shown(command)}")
    version = (int(found[2]), int(found[3]))
    if version[0] != 1:
        raise SpamdError(EX_PROTOCOL, f"unsupported protocol version SPAMC/{version[0]}.{version[1]}")
    return command, version


def parse_header_line(line: bytes) -> tuple[str, str]:
    """``b"Content-length: 12\\r\\n"`` -> ``("content-length", "12")``.

    Raises
    ------
    SpamdError
        EX_PROTOCOL: no ``Name: value`` of printable ASCII.
    """
    line = line.rstrip(b"\r\n")
    found = _HEADER_RE.fullmatch(line)
    if not found:
        raise SpamdError(EX_PROTOCOL, f"bad header line starting {shown(first_word(line))}")
    return found[1].decode("ascii").lower(), found[2].decode("ascii")


def build_request(line: bytes, header_lines: Sequence[bytes], max_body_size: int) -> Request:
    """The request of a request line and its header lines (without the blank line).

    Unknown headers are ignored, as the protocol asks.  Checked here:
    ``Content-length`` (digits, at most ``max_body_size``; required by the
    commands that carry a message) and ``Compress`` (zlib only).

    Raises
    ------
    SpamdError
        EX_PROTOCOL for a malformed head or a known header given twice with
        different values; EX_DATAERR for a message over ``max_body_size``;
        EX_USAGE for a compression other than zlib.
    """
    command, version = parse_request_line(line)
    headers: dict[str, str] = {}
    for raw in header_lines:
        name, value = parse_header_line(raw)
        if name in _SINGLE and name in headers and headers[name] != value:
            raise SpamdError(EX_PROTOCOL, f"header {name} given twice with different values")
        headers.setdefault(name, value)
    request = Request(command, version, headers)
    length = headers.get("content-length")
    if length is not None and not (length.isdigit() and len(length) <= 12):
        raise SpamdError(EX_PROTOCOL, f"bad Content-length {shown(length)}")
    if request.has_message:
        if length is None:
            raise SpamdError(EX_PROTOCOL, f"{command} without Content-length")
        if int(length) > max_body_size:
            raise SpamdError(EX_DATAERR, f"the message is larger than the limit of {max_body_size} bytes")
    compress = headers.get("compress")
    if compress is not None and compress.lower() != "zlib":
        raise SpamdError(EX_USAGE, f"unknown compression {shown(compress)} (zlib only)")
    return request


def inflate(data: bytes, limit: int) -> bytes:
    """zlib ``data`` decompressed, refused past ``limit`` bytes (a zip bomb
    of 25 kB inflates to 25 MB, and a crafted one to far more).

    Raises
    ------
    SpamdError
        EX_DATAERR: not zlib data, cut short, or more than ``limit`` bytes.
    """
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise SpamdError(EX_DATAERR, f"the message is not zlib data ({exc})") from None
    if len(out) > limit:
        raise SpamdError(EX_DATAERR, f"the message is larger than the limit of {limit} bytes "
                                     f"once decompressed")
    if not inflater.eof:
        raise SpamdError(EX_DATAERR, "the compressed message is cut short")
    return out


def spam_header(is_spam: bool, score: str, threshold: str) -> tuple[str, str]:
    return "Spam", f"{'True' if is_spam else 'False'} ; {score} / {threshold}"


def answer(headers: Sequence[tuple[str, str]], body: Sequence[bytes | memoryview] | None = None,
           counted: bool = True) -> list[bytes | memoryview]:
    """An ``EX_OK`` answer as pieces to write one after the other; with a
    body (pieces too, never joined: a message of 25 MB is not copied), a
    ``Content-length`` that counts it, unless not ``counted`` (see
    ``counts_report``)."""
    lines = [f"SPAMD/{_ANSWER_VERSION} {EX_OK} EX_OK"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body is not None and counted:
        lines.append(f"Content-length: {sum(len(piece) for piece in body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    return [head, *(body or ())]


def counts_report(version: tuple[int, int]) -> bool:
    """Whether a CHECK, SYMBOLS or REPORT answer to a SPAMC/``version``
    request has a ``Content-length``: from 1.3 on, as spamd decides.

    Exim asks ``REPORT SPAMC/1.2`` and reads ``SPAMD/1.1 0 EX_OK``, the
    ``Spam:`` line, then takes everything after it as ``$spam_report``: a
    ``Content-length`` there became the report's first line (Exim 4.96's
    X-Spam-Report began "Content-length: 718", then a blank line).
    """
    return version >= (1, 3)


def pong() -> bytes:
    return f"SPAMD/{_PONG_VERSION} {EX_OK} PONG\r\n".encode("ascii")


def error_answer(code: int, reason: str) -> bytes:
    """The one line of an error answer: ``SPAMD/1.1 76 EX_PROTOCOL: bad header line ...``."""
    text = "".join(c if " " <= c <= "~" else "?" for c in reason)
    return f"SPAMD/{_ANSWER_VERSION} {code} {code_name(code)}: {text}\r\n".encode("ascii")
