"""The JSON the service answers, as pydantic models: its OpenAPI documentation.

The endpoints build their answers as plain dicts (validating every response
through pydantic would cost more than the HTTP layer itself); the unit
tests check that real answers validate against these models, so the
documentation cannot drift from the behaviour.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ModelIdentity", "Clue", "ScoreResult", "LearnResult", "Health", "ErrorBody",
           "MESSAGE_BODY", "error_responses", "SAMPLE_MESSAGE"]

SAMPLE_MESSAGE = (
    "From: deals@pharma.example\r\nTo: alice@example.org\r\nSubject: Cheap pills online\r\n"
    "Message-ID: <1234@pharma.example>\r\n\r\nBuy cheap pills now, best price guaranteed.\r\n"
)

_MODEL_EXAMPLE = {"name": "model.joblib", "kind": "shared", "revision": 42,
                  "trained_at": 1764300000.0, "digest": "3f2a9c0d1b7e", "n_spam": 1896, "n_ham": 4150}


class ModelIdentity(BaseModel):
    """Which model answered."""

    model_config = ConfigDict(json_schema_extra={"examples": [_MODEL_EXAMPLE]})

    name: str = Field(description="File name of the model (not its full path).")
    kind: str = Field(description="`user` (the user's own model), `shared`, or `default` "
                                  "(the packaged model, until a trained one is ready).")
    revision: int = Field(description="Bumped by every saved change to the model.")
    trained_at: float | None = Field(description="When it last learned something (Unix time).")
    digest: str = Field(description="First 12 hex digits of the SHA-256 of the model file.")
    n_spam: int
    n_ham: int


class Clue(BaseModel):
    token: str
    spam_prob: float
    spam_count: int
    ham_count: int


class ScoreResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "verdict": "spam", "spam_prob": 0.999871, "score": 0.999871, "ham_cutoff": 0.2,
        "spam_cutoff": 0.9, "model": _MODEL_EXAMPLE, "user": None, "bytes": 187,
        "truncated": False}]})

    verdict: str = Field(description="`ham`, `unsure` or `spam`.")
    spam_prob: float = Field(description="Probability that the message is spam, 0..1.")
    score: float = Field(description="Same as `spam_prob` (the name the CLI's JSON uses).")
    ham_cutoff: float = Field(description="Below this: ham.")
    spam_cutoff: float = Field(description="At or above this: spam; in between: unsure.")
    model: ModelIdentity
    user: str | None = Field(description="The user whose choice of model applied, if any.")
    bytes: int = Field(description="Size of the message received.")
    truncated: bool = Field(description="True when the message is longer than `scan_limit` and "
                                        "only its first part was scored (as spamc does).")
    clues: list[Clue] | None = Field(default=None, description="With `?explain=true`: the tokens "
                                     "behind the score, strongest first.")


class LearnResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "action": "relabelled", "digest": "9b1c0f6e3a...", "label": "spam", "previous": "ham",
        "model": "model.joblib", "revision": 43, "user": None}]})

    action: str = Field(description="`learned`, `relabelled` (it was learned with the other label, "
                                    "which was unlearned first), `already-known`, `superseded` (a "
                                    "verdict older than the one learned, see `at`), `forgotten` or "
                                    "`not-known`.")
    digest: str = Field(description="The message's identity: SHA-256 of its bytes (line ends "
                                    "normalised, X-Spam-* headers ignored).")
    label: str | None = Field(description="What it is learned as now (None after forget).")
    previous: str | None = Field(description="What it was learned as before, if anything.")
    model: str = Field(description="File name of the model that was trained.")
    revision: int = Field(description="The model's revision after this request.")
    user: str | None


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "ok", "model": _MODEL_EXAMPLE, "learning": True, "pid": 4242,
        "model_errors": {}, "model_error_count": 0}]})

    status: str
    model: ModelIdentity
    learning: bool = Field(description="Whether /learn and /forget are enabled (a token is set).")
    pid: int = Field(description="The worker process that answered.")
    model_errors: dict[str, str] | None = Field(
        description="Model files whose newest version failed to load (the previous one still "
                    "answers); `null` when a token is set and the request sent none (the paths "
                    "name users).")
    model_error_count: int = Field(description="How many model files those are (always given).")


class ErrorBody(BaseModel):
    detail: Any = Field(description="What was wrong, in one line (a list for invalid parameters).")


_BINARY = {"type": "string", "format": "binary"}

#: The request body of /score, /learn and /forget: the raw message.
MESSAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The raw message (RFC 5322 bytes, headers and body) exactly as the MTA "
                       "has it.  Any content type but multipart/form-data is accepted; "
                       "`message/rfc822` or `application/octet-stream` say what it is.",
        "content": {
            "message/rfc822": {"schema": _BINARY, "example": SAMPLE_MESSAGE},
            "application/octet-stream": {"schema": _BINARY},
        },
    },
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the error statuses an endpoint can give."""
    meaning = {
        400: ("The body is not a usable message (e.g. empty), or a parameter is malformed.",
              "empty message"),
        401: ("Missing or wrong bearer token (`WWW-Authenticate: Bearer`); nothing was learned.",
              "a valid bearer token is required"),
        403: ("Learning over HTTP is disabled: no learn token is configured.",
              "learning over HTTP is disabled; set [server] learn_token_file"),
        413: ("The body is larger than `max_body_size`.",
              "the message is larger than the limit of 26214400 bytes"),
        422: ("A query parameter has a value it cannot take.",
              "explain must be true or false, got 'maybe'"),
        415: ("A form upload or a JSON body: send the raw message as the body instead.",
              "send the raw message as the request body, not as a form upload"),
        503: ("The model is being written by another learner for too long (with `Retry-After`), "
              "or the model file or ledger cannot be used.",
              "another learner has held model.joblib.lock for 30 s; try again later"),
    }
    return {status: {"model": ErrorBody, "description": meaning[status][0],
                     "content": {"application/json": {"example": {"detail": meaning[status][1]}}}}
            for status in statuses}
