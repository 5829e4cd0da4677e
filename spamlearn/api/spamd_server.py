"""The spamd listener of ``spamlearn serve``: spamc's protocol over TCP, in
every worker, beside the HTTP service and with its models and learners.

Started by the app's lifespan when ``[server] spamd_listen`` is set.  With
several workers each binds the address with ``SO_REUSEPORT`` and the
kernel spreads the connections over them (and over an old and a new worker
while SIGHUP replaces one).  A connection carries one request, as with
spamd: read (bounded in lines, bytes and ``spamd_timeout``), answered
(``spamd_answers``), then closed.  Every bad request is one WARNING line,
never with the message's content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from ..spamd_protocol import (
    EX_IOERR,
    EX_OK,
    EX_PROTOCOL,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    MAX_HEAD_BYTES,
    MAX_HEADER_LINES,
    MAX_LINE,
    Request,
    SpamdError,
    build_request,
    code_name,
    error_answer,
    parse_request_line,
)
from .service import Service
from .spamd_answers import answer_request

__all__ = ["SpamdListener", "read_request", "coalesced", "MAX_CONNECTIONS", "FIRST_WRITE"]

log = logging.getLogger("spamlearn.serve")

#: Connections one worker serves at once; past it a client is answered
#: EX_TEMPFAIL at once (spamc then passes the message on unscored) rather
#: than queued: each can hold a message of up to ``max_body_size``.
MAX_CONNECTIONS = 64
#: After answering, how long the rest of a request we did not read (an
#: error found in the head) is read and thrown away before the connection
#: closes: closed with unread data, the kernel resets it, and the client
#: could lose the error line it was about to read (a lingering close, as
#: HTTP servers do).
LINGER_SECONDS = 2.0
#: The StreamReader's buffer; lines are held to MAX_LINE by ``_read_line``.
_READ_BUFFER = 64 * 1024
#: How much of an answer goes out in its first write: the head and the
#: start of the body, together.  Rspamd's spamassassin scanner reads once
#: and parses what that read gave (no Content-length, no end of stream):
#: written as two pieces, the head alone came, without the X-Spam-Status
#: line after it, and Rspamd took every message for clean
#: (tests/integration/test_rspamd.py).  Bounded: a PROCESS answer of 25 MB
#: is not copied into one buffer.
FIRST_WRITE = 64 * 1024


class _Gone(Exception):
    """The client closed the connection before sending anything (a port check)."""


async def read_request(reader: asyncio.StreamReader, max_body_size: int) -> tuple[Request, bytes]:
    """Read one request's head and message (as sent: compressed or not).

    Raises
    ------
    SpamdError
        EX_PROTOCOL for a malformed or over-long head, a message shorter
        than its ``Content-length``; see ``build_request`` for the rest.
    _Gone
        Nothing at all was sent.
    """
    line = await _read_line(reader, first=True)
    command, version = parse_request_line(line)
    if command == "PING" and version < (1, 5):
        # spamc before 3.3 (protocol 1.5) sent no blank line after PING.
        return build_request(line, [], max_body_size), b""
    header_lines: list[bytes] = []
    size = len(line)
    while True:
        header = await _read_line(reader)
        if header in (b"\r\n", b"\n"):
            break
        header_lines.append(header)
        size += len(header)
        if len(header_lines) > MAX_HEADER_LINES or size > MAX_HEAD_BYTES:
            raise SpamdError(EX_PROTOCOL, f"more than {MAX_HEADER_LINES} header lines or "
                                          f"{MAX_HEAD_BYTES} bytes of headers")
    request = build_request(line, header_lines, max_body_size)
    if not request.has_message:
        return request, b""
    length = request.content_length
    assert length is not None                   # build_request requires it
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise SpamdError(EX_PROTOCOL, f"the message ended after {len(exc.partial)} of the {length} "
                                      f"bytes its Content-length said") from None
    return request, body


async def _read_line(reader: asyncio.StreamReader, first: bool = False) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if first and not exc.partial:
            raise _Gone from None
        raise SpamdError(EX_PROTOCOL, "the request ended before the blank line after its headers") from None
    except asyncio.LimitOverrunError:
        line = b"x" * (MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise SpamdError(EX_PROTOCOL, f"a line of the request is longer than {MAX_LINE} bytes")
    return line


class SpamdListener:
    """spamc's protocol on ``host``:``port`` for one worker's ``service``.

    Parameters
    ----------
    service : Service
        The worker's models, learners and settings (``max_body_size``,
        ``spamd_timeout``, ``spamd_allow_tell``, ``per_user``).
    host, port : str, int
    reuse_port : bool
        Share the address with the other workers (``SO_REUSEPORT``).
    """

    def __init__(self, service: Service, host: str, port: int, *, reuse_port: bool = False):
        self.service = service
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Listen.  Raises ``OSError`` when the address cannot be bound."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  reuse_port=self.reuse_port or None, limit=_READ_BUFFER)

    async def close(self, grace: float) -> None:
        """Stop listening; let the requests in flight end for up to ``grace``
        seconds, then drop them."""
        if self._server is not None:
            self._server.close()
        pending = set(self._tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = _peer(writer)
        try:
            if len(self._tasks) > MAX_CONNECTIONS:
                error = SpamdError(EX_TEMPFAIL, f"more than {MAX_CONNECTIONS} connections at once")
                log.warning("spamd: refused %s: %s", peer, error.reason)
                self.service.metrics.count_spamd("request", code_name(error.code))
                pieces: Sequence[bytes | memoryview] = [error_answer(error.code, error.reason)]
            else:
                pieces = await self._answer(reader, peer)
            if pieces is not None:
                await self._send(reader, writer, pieces, peer)
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, peer: str) -> Sequence[bytes | memoryview] | None:
        """The answer's pieces; None when the client is gone (nothing to send:
        a broken connection is logged here once, not again for the answer)."""
        server = self.service.server
        command = "request"
        try:
            try:
                async with asyncio.timeout(server.spamd_timeout):
                    request, body = await read_request(reader, server.max_body_size)
            except TimeoutError:
                raise SpamdError(EX_IOERR, f"no complete request within {server.spamd_timeout:g} s "
                                           f"(spamd_timeout)") from None
            except _Gone:
                return None
            except ConnectionError as exc:
                log.warning("spamd: %s: the connection broke before the request was read: %s",
                            peer, exc.strerror or type(exc).__name__)
                return None
            command = request.command
            pieces = await answer_request(request, body, self.service)
            code = EX_OK
        except SpamdError as exc:
            if not exc.logged:
                log.warning("spamd: %s %s: answered %d: %s", peer, command, exc.code, exc.reason)
            pieces, code = [error_answer(exc.code, exc.reason)], exc.code
        except Exception:
            # A bug of ours: the client gets its answer (and fails open), the log the traceback.
            log.exception("spamd: %s %s: internal error", peer, command)
            pieces, code = [error_answer(EX_SOFTWARE, "internal error (see the service's log)")], EX_SOFTWARE
        # Counted when answered (whether or not the client is still there to
        # read it); a connection that closed before asking anything is not a request.
        self.service.metrics.count_spamd(command, code_name(code))
        return pieces

    async def _send(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    pieces: Sequence[bytes | memoryview], peer: str) -> None:
        try:
            async with asyncio.timeout(self.service.server.spamd_timeout):
                for piece in coalesced(pieces):
                    writer.write(piece)
                await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
        except OSError as exc:
            # Not only ConnectionError: when the client's reset came in
            # between the write and the end of the answer, shutdown()
            # fails with ENOTCONN, a plain OSError, which escaped as
            # "Unhandled exception in client_connected_cb" and a traceback
            # (asyncio's own loop; a soak, half the clients that hung up
            # mid-message).  TimeoutError is an OSError too.
            log.warning("spamd: %s: the answer could not be sent: %s", peer,
                        "the client did not read it" if isinstance(exc, TimeoutError)
                        else exc.strerror or type(exc).__name__)
            return
        # The lingering close: whatever of the request is still coming.
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(LINGER_SECONDS):
                while await reader.read(_READ_BUFFER):
                    pass


def coalesced(pieces: Sequence[bytes | memoryview], first: int = FIRST_WRITE) -> list[bytes | memoryview]:
    """``pieces`` as one piece of up to ``first`` bytes, then the rest as
    they were (views, not copies)."""
    head = bytearray()
    rest: list[bytes | memoryview] = []
    for piece in pieces:
        room = first - len(head)
        if room <= 0:
            rest.append(piece)
            continue
        head += piece[:room]
        if len(piece) > room:
            rest.append(memoryview(piece)[room:])
    return [bytes(head), *rest] if head else rest


def _peer(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else address[0]
        return f"{host}:{address[1]}"
    return str(address)
