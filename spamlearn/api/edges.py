"""The request's edges: bearer tokens, the bounded body, the user, the timing.

Everything here runs before an endpoint touches a model, so a request that
is refused (401, 413, 415) costs nothing and changes nothing.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

from ..config import USER_NAME_RE
from ..metrics import Metrics
from ..server_settings import ServerSettings
from .balance import LoadBoard

__all__ = ["check_token", "read_body", "refuse_repeated", "resolve_user", "named_user", "TimingMiddleware",
           "ENDPOINTS"]

#: Endpoints counted by name in the metrics; everything else is "other",
#: so a scanner probing random paths cannot blow up the label set.
ENDPOINTS = frozenset({"/score", "/filter", "/learn", "/forget", "/healthz", "/metrics"})



def _unauthorized(detail: str, error: str | None) -> HTTPException:
    challenge = 'Bearer realm="spamlearn"' + (f', error="{error}"' if error else "")
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


def check_token(request: Request, accepted: tuple[str, ...]) -> None:
    """Raise 401 unless the request carries one of the ``accepted`` bearer tokens.

    ``hmac.compare_digest`` against every accepted token, so the time taken
    tells nothing about how much of a guess was right, nor which token it
    resembled.
    """
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("a bearer token is required (Authorization: Bearer <token>)", None)
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise _unauthorized("a bearer token is required (Authorization: Bearer <token>)",
                            "invalid_request")
    given_bytes = given.strip().encode("utf-8", "surrogateescape")
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(given_bytes, token.encode("utf-8"))
    if not matched:
        raise _unauthorized("the bearer token is not valid", "invalid_token")



def holds_token(request: Request, accepted: tuple[str, ...]) -> bool:
    """Whether the request may be told which files failed: no token is
    set, or it carries one of the ``accepted`` ones.  The paths of per-user
    models and ledgers are user names; a caller of an open endpoint while
    a token is set (``/healthz``, ``/score`` with only the learn token)
    gets the error without them, and the service's log keeps them."""
    if not accepted:
        return True
    try:
        check_token(request, accepted)
    except HTTPException:
        return False
    return True

async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``.

    A declared ``Content-Length`` over the limit is refused before a byte
    of the body is read (curl, sending ``Expect: 100-continue`` for large
    bodies, then does not send it at all); a chunked body is counted while
    it streams, so a lying or missing length cannot make us buffer more.
    """
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        raise HTTPException(415, "send the raw message as the request body (curl --data-binary "
                                 "@message.eml), not as a form upload")
    if content_type.startswith("application/json"):
        # A client written for a JSON API ({"message": "..."}) had its JSON
        # scored, and learned, as if it were mail (a helper's review: `{"a":`
        # posted to /learn was learned as spam).
        raise HTTPException(415, "send the raw message as the request body (Content-Type: "
                                 "message/rfc822), not wrapped in JSON")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, f"invalid Content-Length {declared[:40]!r}")
        if int(declared) > limit:
            raise HTTPException(413, f"the message is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"the message is larger than the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # A filter that gave up (curl --max-time): the client's doing, not a
        # server error; it was logged with a traceback and counted as a 500.
        raise HTTPException(400, "the client closed the connection before the whole message "
                                 "arrived") from None
    body = b"".join(chunks)
    if content_type.startswith("application/x-www-form-urlencoded") and b"\n" not in body and body:
        # `curl -d @message.eml`: curl dropped the line breaks, so the message
        # would be scored, or learned, mangled.  (The content type alone says
        # nothing: --data-binary sends the same one, unless told otherwise;
        # and a body that never had a line break, 64 NUL bytes sent with
        # --data-binary, was told to use --data-binary: the answer says both.)
        raise HTTPException(415, "the body has no line break, so it is no mail message: if it is a "
                                 "file sent with curl -d, which removes them, send it with "
                                 "--data-binary @message.eml")
    return body


def refuse_repeated(request: Request, *names: str) -> None:
    """``?label=spam&label=ham`` is ambiguous: a 400, not the last value taken silently."""
    for name in names:
        count = len(request.query_params.getlist(name))
        if count > 1:
            raise HTTPException(400, f"give {name} once, not {count} times")


def resolve_user(query_user: str | None, request: Request, server: ServerSettings) -> str | None:
    """The user a request is for: ``?user=``, else the user header; None if per-user is off.

    Both given and different: a 400 (which one the sender meant is unknown,
    and one of them would get the other's verdict or training)."""
    if not server.per_user:
        return None
    header_users = request.headers.getlist(server.user_header)
    if len(header_users) > 1:
        # A proxy that appends the header must not be outvoted by the client's own.
        raise HTTPException(400, f"give {server.user_header} once")
    header_user = header_users[0] if header_users else None
    if query_user == "" and header_user:
        raise HTTPException(400, f"?user= is empty and {server.user_header}: {header_user[:64]} "
                                 f"is not; give one")
    if query_user and header_user and query_user != header_user:
        raise HTTPException(400, f"?user={query_user[:64]} and {server.user_header}: "
                                 f"{header_user[:64]} disagree; give one")
    try:
        return named_user(query_user if query_user is not None else header_user, server)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def named_user(user: str | None, server: ServerSettings) -> str | None:
    """The user a request names (``?user=``, the user header, spamc's
    ``User:``), checked; None for none, or when ``per_user`` is off.

    Whose model scores it is then ``ScoringModels.for_user``'s choice: the
    user's own when ``[users] own_model`` lists them, else the shared one.

    Raises
    ------
    ValueError
        Not a user name (``USER_NAME_RE``): it names model files.
    """
    if not server.per_user or user is None or user == "":
        return None
    if not USER_NAME_RE.fullmatch(user):
        raise ValueError("invalid user name (1-128 of A-Z a-z 0-9 . _ @ + = -, not starting with a dot)")
    return user


Send = Callable[[dict[str, Any]], Awaitable[None]]
_CLOSE = (b"connection", b"close")


class TimingMiddleware:
    """Counts every request by endpoint and status, with its duration.

    With several workers it also notes each request's connection on the
    shared ``LoadBoard`` and, when the board says this worker is the busy
    one, answers with ``Connection: close`` so that the client's next
    request opens a connection another worker can take (see ``balance``).

    A plain ASGI middleware rather than ``BaseHTTPMiddleware``, which runs
    the endpoint in a separate task and costs ~100 us a request.
    """

    def __init__(self, app: Any, metrics: Metrics, board: Callable[[], LoadBoard | None] = lambda: None):
        self.app = app
        self.metrics = metrics
        self.board = board

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app raises before answering, the client sees a 500
        board = self.board()

        async def send_and_note(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if board is not None and board.should_shed(client):
                    message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
            await send(message)

        client = scope.get("client")
        if board is not None:
            board.note(client)
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = scope["path"]
            self.metrics.observe_request(path if path in ENDPOINTS else "other", status,
                                         time.perf_counter() - start)
