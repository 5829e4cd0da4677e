"""The endpoints: /score, /filter, /learn, /forget, /healthz, /metrics."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Security
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..classifier import Label, Verdict
from ..errors import MessageError, SpamlearnError
from ..headers import marked_pieces
from .edges import check_token, holds_token, read_body, refuse_repeated, resolve_user
from .schemas import MESSAGE_BODY, Health, LearnResult, ScoreResult, error_responses
from .scoring import LoadedModel, ModelKind
from .service import ClientGone, LearnReport, Service, run_sized

__all__ = ["router", "score_message", "ScoreFastPath"]

router = APIRouter()

# Declared for the OpenAPI schema ("Authorize" in /docs); the check itself
# is ``check_token``, which compares in constant time and answers 401.
_bearer = HTTPBearer(auto_error=False, description="The learn token (`[server] learn_token_file`), "
                     "or for scoring the score token when one is set.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]

UserQuery = Annotated[str | None, Query(
    description="Score with (or train) this user's own model when one is configured and ready; "
                "else the shared model.  Also taken from the `X-Spamlearn-User` header.",
    examples=["alice"])]


def service_of(request: Request) -> Service:
    return request.app.state.service


# The dependencies are ``async`` on purpose: FastAPI runs a plain ``def``
# dependency in the thread pool (measured: ~0.5 ms a request).
async def require_scorer(request: Request, _: Credentials) -> Service:
    service = service_of(request)
    if service.score_tokens:
        check_token(request, service.score_tokens)
    return service


async def require_learner(request: Request, _: Credentials) -> Service:
    service = service_of(request)
    if not service.learn_tokens:
        raise HTTPException(403, "learning over HTTP is disabled; set [server] learn_token_file "
                                 "(or SPAMLEARN_SERVER_LEARN_TOKEN)")
    check_token(request, service.learn_tokens)
    return service


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})

#: /score reads its query parameters itself: FastAPI's dependency solving
#: cost ~0.3 ms of CPU per request here, as much as scoring a short message.
#: They are documented here instead, so the schema shows them all the same.
_SCORE_PARAMETERS = {
    "parameters": [
        {"name": "explain", "in": "query", "required": False,
         "schema": {"type": "boolean", "default": False},
         "description": "Also return the clues behind the score."},
        {"name": "user", "in": "query", "required": False, "schema": {"type": "string"},
         "example": "alice", "description": "Score with this user's own model when one is "
         "configured and ready, else the shared model."},
        {"name": "X-Spamlearn-User", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "The user, when not given as `?user=` (the header name is "
                        "`[server] user_header`)."},
    ],
    "security": [{"HTTPBearer": []}, {}],
}


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise HTTPException(422, f"{name} must be true or false, got {value[:20]!r}")


@router.post(
    "/score", tags=["scoring"], response_model=ScoreResult,
    openapi_extra={**MESSAGE_BODY, **_SCORE_PARAMETERS},
    responses=error_responses(400, 401, 403, 413, 415, 422, 503),
    summary="Score a message: verdict, spam probability, model used",
)
async def score(request: Request) -> Response:
    """Score the raw message in the body.

    Messages longer than `scan_limit` (default 512,000 bytes) are scored on
    their first part, as `spamc` does; `truncated` says so.  A body that is
    not a mail message still gets a score (the parser never gives up); an
    empty one is a 400.  Scoring requires a bearer token only when
    `[server] score_token_file` is set.
    """
    # Requests normally reach ``score_message`` through ``ScoreFastPath``;
    # this route documents the endpoint, and answers when the app is
    # mounted under a prefix.
    return await score_message(request, service_of(request))


async def score_message(request: Request, service: Service) -> Response:
    """The work of ``POST /score``; raises ``HTTPException`` or ``SpamlearnError``."""
    if service.score_tokens:
        check_token(request, service.score_tokens)
    refuse_repeated(request, "explain", "user")
    explain = _flag(request.query_params.get("explain"), "explain")
    raw, verdict, model, user = await _score_body(request, service, explain)
    classifier = model.classifier
    spam_prob = round(verdict.spam_prob, 6)
    payload = {
        "verdict": verdict.label.value, "spam_prob": spam_prob, "score": spam_prob,
        "ham_cutoff": classifier.ham_cutoff, "spam_cutoff": classifier.spam_cutoff,
        "model": model.identity(), "user": user, "bytes": len(raw),
        "truncated": len(raw) > classifier.scan_limit,
    }
    if explain:
        payload["clues"] = [dataclasses.asdict(clue) for clue in verdict.clues]
    return JSONResponse(payload)


async def _score_body(request: Request, service: Service,
                      explain: bool) -> tuple[bytes, Verdict, LoadedModel, str | None]:
    """Read the body and score it with the user's model, once the caller has
    checked the token: what /score and /filter share (the body, its verdict,
    the model, the user)."""
    raw = await read_body(request, service.server.max_body_size)
    query = request.query_params
    user = resolve_user(query.get("user"), request, service.server)
    model = await service.models.for_user(user)
    if explain and model.kind == ModelKind.USER:
        # A user's own model holds that user's mail alone: its clue counts
        # say which words their mail holds, so only a learner reads them.
        if not service.learn_tokens:
            raise HTTPException(403, "explain of a user's own model needs the learn token "
                                     "([server] learn_token_file)")
        check_token(request, service.learn_tokens)
    verdict = await service.score(model, raw, explain)
    return raw, verdict, model, user


@router.post(
    "/filter", tags=["scoring"],
    openapi_extra={**MESSAGE_BODY, "parameters": [p for p in _SCORE_PARAMETERS["parameters"]
                                                  if p["name"] != "explain"],
                   "security": _SCORE_PARAMETERS["security"]},
    response_class=Response,
    responses={200: {"description": "The message as it came, its own `X-Spam-*` headers replaced "
                                    "by spamlearn's (as `spamlearn filter` writes them); the "
                                    "verdict also in the response headers `X-Spamlearn-Verdict` "
                                    "and `X-Spamlearn-Spam-Prob`.",
                     "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}}},
               **error_responses(400, 401, 413, 415, 503)},
    summary="The message back with X-Spam-* verdict headers (as spamd answers spamc)",
)
async def filter_message(request: Request) -> Response:
    """Score the raw message in the body and answer with the message itself,
    headers added: what `spamlearn filter` writes, for delivery-time filters
    (`scripts/spamlearnc`, a Sieve `filter`, a Postfix `pipe`) that would
    rather not start Python for every message.  The whole message comes
    back, however long (scored as `/score` scores it).  Errors as `/score`;
    a client passes the mail on unchanged when it gets one.
    """
    service = service_of(request)
    if service.score_tokens:
        check_token(request, service.score_tokens)
    refuse_repeated(request, "user")
    raw, verdict, model, _ = await _score_body(request, service, explain=False)
    # In a thread, as scoring is (INLINE_SCORE_BYTES): a 24 MB message of
    # header lines took 0.9 s to rewrite on the event loop, and every other
    # request (other deliveries, /healthz) waited that long.
    tagged = await run_sized(len(raw), _tagged, raw, verdict, model.classifier.spam_cutoff)
    return Response(tagged, media_type="message/rfc822", headers={
        "X-Spamlearn-Verdict": verdict.label.value,
        "X-Spamlearn-Spam-Prob": f"{verdict.spam_prob:.6f}",
    })


def _tagged(raw: bytes, verdict: Verdict, spam_cutoff: float) -> bytes:
    head, rest = marked_pieces(raw, verdict, spam_cutoff)
    return head + rest


class ScoreFastPath:
    """``POST /score`` straight to ``score_message``, past FastAPI's router.

    The router, the exception middleware, the exit-stack middleware and
    FastAPI's request handling (dependency solving, a spare ``Response``
    for dependencies) cost ~0.15-0.2 ms of CPU a request, as much as
    tokenizing a short message (measured 2026-11-28: in-process ASGI calls
    over 1,500 corpus messages, see the commit).  Errors become the answers
    the route would give: the app's own handlers for ``HTTPException`` and
    ``SpamlearnError``.  Every other request, and ``/score`` under a
    ``root_path``, goes on to the app.
    """

    def __init__(self, app: Any, service: Service,
                 handlers: Mapping[Any, Callable[[Request, Any], Awaitable[Response]]]):
        self.app = app
        self.service = service
        self.handlers = handlers  # the app's own, looked up as Starlette does: by the exception's MRO

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/score" or scope["method"] != "POST" \
                or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await score_message(request, self.service)
        except (HTTPException, SpamlearnError) as exc:
            handler = next(self.handlers[kind] for kind in type(exc).__mro__ if kind in self.handlers)
            response = await handler(request, exc)
        await response(scope, receive, send)


async def run_learner(request: Request, service: Service, work: Callable[..., LearnReport],
                      *args: Any) -> LearnReport:
    """``service.run_learner``, dropping a request whose client hung up while it queued."""
    try:
        return await service.run_learner(work, *args, client_gone=request.is_disconnected)
    except ClientGone:
        # A client that gave up waiting (curl --max-time): it reads no
        # answer, and may send the verdict again, newer (the sieve pipe's
        # spool), so learning it now would only cost another's wait.
        raise HTTPException(400, "the client closed the connection while the request waited "
                                 "for the model: nothing learned") from None


@router.post(
    "/learn", tags=["learning"], response_model=LearnResult, openapi_extra=MESSAGE_BODY,
    responses=error_responses(400, 401, 403, 413, 415, 503),
    summary="Learn a message as spam or ham (once; a relabel unlearns first)",
)
async def learn(
    request: Request,
    service: Annotated[Service, Depends(require_learner)],
    label: Annotated[Literal["spam", "ham"], Query(description="What the message is.")],
    user: UserQuery = None,
    at: Annotated[float | None, Query(
        ge=0, allow_inf_nan=False,
        description="When the user gave this verdict (Unix time; default: now). A verdict "
        "older than the one learned for the message is not learned (`superseded`): requests "
        "that wait for the model must not undo a later move.")] = None,
) -> Response:
    """Learn the raw message in the body, through the same ledger as the command line.

    The same message learned twice is counted once (`already-known`); one
    learned before with the other label is unlearned first (`relabelled`);
    with `at`, a verdict older than the one learned is not (`superseded`).
    Needs the learn token; a wrong or missing one is a 401 and nothing is
    learned.  Waits up to `learn_lock_timeout` for another learner (a cron
    `spamlearn learn`, the sieve hook), then answers 503 with `Retry-After`.
    """
    refuse_repeated(request, "label", "user", "at")
    raw = await read_body(request, service.server.max_body_size)
    user = resolve_user(user, request, service.server)
    try:
        report = await run_learner(request, service, service.learn, raw, Label(label), user, at)
    except MessageError:
        service.metrics.count_parse_failure()
        raise
    service.note_learned(report)
    return JSONResponse(report.as_dict())


@router.post(
    "/forget", tags=["learning"], response_model=LearnResult, openapi_extra=MESSAGE_BODY,
    responses=error_responses(400, 401, 403, 413, 415, 503),
    summary="Unlearn a message, whatever it was learned as",
)
async def forget(
    request: Request,
    service: Annotated[Service, Depends(require_learner)],
    digest: Annotated[str | None, Query(
        pattern="^[0-9a-f]{64}$", description="Forget by the `digest` a learn request returned "
        "(then send an empty body).")] = None,
    user: UserQuery = None,
) -> Response:
    """Unlearn the message in the body (or the one with `?digest=`): `forgotten` or `not-known`."""
    refuse_repeated(request, "digest", "user")
    raw = await read_body(request, service.server.max_body_size)
    user = resolve_user(user, request, service.server)
    has_message = bool(raw) and not raw.isspace()     # not strip(): no copy of a large body
    if digest is not None and has_message:
        raise HTTPException(400, "send either the message as the body or ?digest=, not both")
    if digest is None and not has_message:
        raise HTTPException(400, "empty message: send the message as the body, or ?digest=")
    report = await run_learner(request, service, service.forget, digest or raw, user)
    service.note_learned(report)
    return JSONResponse(report.as_dict())


@router.get("/healthz", tags=["operations"], response_model=Health,
            responses=error_responses(503), summary="Whether a model is loaded, and which")
async def healthz(request: Request, _: Credentials) -> Response:
    """Answers 200 with the identity of the model scoring for no particular user
    (checking its file for a newer version, as a score would), or 503 when
    there is no model to score with.  Needs no token (load balancers send
    none); when a token is set, `model_errors` names the failing files
    (their paths name users) only to a request with the score or learn
    token, and is `null` to any other (a health check never fails on a token);
    a 503's `detail` names the file to those callers only."""
    service = service_of(request)
    # No 401 here: a stale token in a load balancer, or a proxy's own
    # Authorization header, must not take a healthy service out.
    shown = holds_token(request, service.any_tokens)
    model = await service.models.for_user(None)     # a ModelError: the app's 503
    errors = service.models.errors()
    return JSONResponse({"status": "ok", "model": model.identity(),
                         "learning": bool(service.learn_tokens), "pid": os.getpid(),
                         "model_errors": errors if shown else None, "model_error_count": len(errors)})


# Monitors that send HEAD (curl -I, some load balancers) get the same status.
router.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)


@router.get(
    "/metrics", tags=["operations"], response_class=PlainTextResponse, responses={
        **error_responses(401),
        200: {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {"example": (
            '# TYPE spamlearn_http_requests_total counter\n'
            'spamlearn_http_requests_total{endpoint="/score",status="200"} 1234\n'
            '# TYPE spamlearn_verdicts_total counter\nspamlearn_verdicts_total{verdict="spam"} 321\n')}}}},
    summary="Counters and latency histograms for Prometheus",
)
async def metrics(service: Annotated[Service, Depends(require_scorer)]) -> Response:
    """Requests and latency by endpoint and status, verdicts, learn actions,
    parse failures, model reloads, spamc requests by command and result, and
    the age and revision of the models in use.  With several workers, the
    counts of all of them.  Needs the score token when one is set."""
    await service.models.settled()              # the gauges of the model files as they are now
    return PlainTextResponse(service.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")
