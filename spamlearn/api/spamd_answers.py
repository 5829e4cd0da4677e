"""What each spamc command answers, with one worker's models and learners.

The same choices as the HTTP endpoints, through the same code: the model
is ``ScoringModels.for_user`` (the ``User:`` header as ``?user=``), the
score ``Service.score``, the headers of PROCESS and HEADERS those of
``spamlearn filter`` and ``POST /filter`` (``spamlearn.headers``), and TELL
learns and forgets through ``Service.learn`` / ``forget`` (the ledger and
the model's lock, as ``POST /learn``).  The verdict in spamd's terms:

* ``Spam: True`` for spam only; unsure is ``False`` (not spam), and says
  so in ``X-Spam-Verdict`` and the symbol.
* the score on SpamAssassin's scale, required 5.0 at ``spam_cutoff``
  (``spamlearn.points``): ``spamc -c`` prints 7.6/5.0 for 0.99.
* SYMBOLS: ``SPAMLEARN_SPAM``, ``SPAMLEARN_UNSURE`` or ``SPAMLEARN_HAM``.
* REPORT: the verdict, the model and the strongest clues, as
  ``spamlearn score --explain`` lists them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from ..classifier import Label, Verdict
from ..errors import (
    ConfigError,
    LedgerError,
    MessageError,
    ModelError,
    SpamlearnError,
    StoreBusyError,
)
from ..headers import marked_headers, marked_pieces
from ..points import spamassassin_points
from ..sources import spamd_source
from ..spamd_protocol import (
    EX_DATAERR,
    EX_NOUSER,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    Request,
    SpamdError,
    answer,
    counts_report,
    inflate,
    pong,
    spam_header,
)
from .edges import named_user
from .scoring import LoadedModel, ModelKind
from .service import LearnReport, Service, run_sized

__all__ = ["answer_request", "SYMBOLS"]

log = logging.getLogger("spamlearn.serve")

SYMBOLS = {Label.SPAM: "SPAMLEARN_SPAM", Label.UNSURE: "SPAMLEARN_UNSURE", Label.HAM: "SPAMLEARN_HAM"}
#: Clues listed by REPORT: a header's worth (Exim puts the report in one).
REPORT_CLUES = 15

# Most specific first, as the HTTP service's statuses (app._ERROR_STATUS).
_ERROR_CODES: list[tuple[type[SpamlearnError], int]] = [
    (MessageError, EX_DATAERR),
    (ConfigError, EX_USAGE),
    (StoreBusyError, EX_TEMPFAIL),
    (ModelError, EX_UNAVAILABLE),
    (LedgerError, EX_UNAVAILABLE),
    (SpamlearnError, EX_SOFTWARE),
]


async def answer_request(request: Request, body: bytes, service: Service) -> Sequence[bytes | memoryview]:
    """The answer to ``request`` and its message ``body`` (as sent: still
    compressed with ``Compress: zlib``), as pieces to write.

    Raises
    ------
    SpamdError
        Answered with an error line.  A ``SpamlearnError`` of the library
        (no model, the model locked by a learner, a ledger that cannot be
        written) becomes one here, logged as the HTTP service logs it.
    """
    if request.command == "PING":
        return [pong()]
    if request.command == "SKIP":
        return []
    try:
        user = named_user(request.user, service.server)
    except ValueError as exc:
        if request.command == "TELL":
            raise SpamdError(EX_NOUSER, f"{exc}") from None
        # Scored with the shared model, as spamd scores an unknown user with
        # its defaults: Exim does not fail open as spamc does, and with
        # `spam = $local_part` a local part such as o'brien deferred the mail.
        user = None
    raw = inflate(body, service.server.max_body_size) if request.compressed else body
    try:
        if request.command == "TELL":
            return await _tell(request, raw, user, service)
        return await _check(request, raw, user, service)
    except SpamlearnError as exc:
        code = next(code for kind, code in _ERROR_CODES if isinstance(exc, kind))
        error = SpamdError(code, str(exc))
        error.logged = _log_library_error(service, exc, code)
        raise error from None


async def _check(request: Request, raw: bytes, user: str | None,
                 service: Service) -> Sequence[bytes | memoryview]:
    command = request.command
    model = await service.models.for_user(user)
    # A user's own model holds that user's mail alone: its clue counts say
    # which words their mail holds.  Over HTTP only the learn token reads
    # them; here only a listener that lets anyone train it (TELL) shows them.
    explain = command in ("REPORT", "REPORT_IFSPAM") and (
        model.kind != ModelKind.USER or service.server.spamd_allow_tell)
    verdict = await service.score(model, raw, explain)
    is_spam = verdict.label is Label.SPAM
    cutoff = model.classifier.spam_cutoff
    score, threshold = spamassassin_points(verdict.decision, cutoff, is_spam)
    headers = [spam_header(is_spam, score, threshold)]
    counted = counts_report(request.version)
    if command == "CHECK":
        return answer(headers)
    if command == "SYMBOLS":
        return answer(headers, [SYMBOLS[verdict.label].encode("ascii")], counted)
    if command in ("REPORT", "REPORT_IFSPAM"):
        text = _report(verdict, model, score, threshold, explain) if is_spam or command == "REPORT" else ""
        return answer(headers, [text.encode("utf-8")], counted)
    if command == "HEADERS":
        return answer(headers, [await run_sized(len(raw), marked_headers, raw, verdict, cutoff)])
    # PROCESS: the whole message, however long (scored on its first part, as /filter).
    return answer(headers, await run_sized(len(raw), marked_pieces, raw, verdict, cutoff))


def _report(verdict: Verdict, model: LoadedModel, score: str, threshold: str, explain: bool) -> str:
    """A short text: the verdict, the model, the strongest clues."""
    clf = model.classifier
    lines = [f"spamlearn verdict: {verdict.label.value}, spam probability {verdict.spam_prob:.4f} "
             f"(score {score}, threshold {threshold}; unsure from {clf.ham_cutoff:.2f}, "
             f"spam from {clf.spam_cutoff:.2f})",
             f"model: {model.kind} {model.path.name}, revision {clf.revision}, digest {model.digest}"]
    if not explain:
        lines.append("clues: not shown for a user's own model (spamd_allow_tell is off)")
    elif verdict.clues:
        lines.append("clues (spam probability, spam / ham messages holding it, token):")
        for clue in verdict.clues[:REPORT_CLUES]:
            token = "".join(c if c.isprintable() else "?" for c in clue.token)
            lines.append(f"  {clue.spam_prob:.3f}  {clue.spam_count:>5d} / {clue.ham_count:<5d} {token}")
    return "\n".join(lines) + "\n"


async def _tell(request: Request, raw: bytes, user: str | None,
                service: Service) -> Sequence[bytes | memoryview]:
    """``spamc -L spam|ham`` (``Message-class``, ``Set: local``) and ``-L forget``
    (``Remove: local``): learned once, a relabel unlearned first, by the ledger.

    ``DidSet`` / ``DidRemove`` only when the model changed: spamc then says
    "Message successfully un/learned", else "Message was already
    un/learned" (exit 0 both, as with spamd).  ``remote`` (spamc -C, reporting
    to Razor and the like) is not done, nor answered as done; the ``Set:
    local`` spamc -C sends with it is (spamd learns it too).
    """
    if not service.server.spamd_allow_tell:
        raise SpamdError(EX_UNAVAILABLE, "TELL is not allowed: set [server] spamd_allow_tell = true "
                                         "(spamd's --allow-tell)")
    to_set, to_remove = request.targets("set"), request.targets("remove")
    unknown = (to_set | to_remove) - {"local", "remote"}
    if unknown:
        raise SpamdError(EX_USAGE, f"unknown TELL target(s) {', '.join(sorted(unknown))[:40]!r} "
                                   f"(local or remote)")
    if "local" in to_set and "local" in to_remove:
        raise SpamdError(EX_USAGE, "TELL with both Set: local and Remove: local")
    source = spamd_source(user)
    if "local" in to_set:
        label = request.message_class
        if label not in ("spam", "ham"):
            raise SpamdError(EX_USAGE, "TELL Set: local needs Message-class: spam or ham")
        try:
            report = await _run_learner(service, service.learn, raw, Label(label), user, source=source)
        except MessageError:
            # Counted as POST /learn counts it (forget, as /forget, is not).
            service.metrics.count_parse_failure()
            raise
        headers = [("DidSet", "local")] if report.outcome.changed else []
    elif "local" in to_remove:
        report = await _run_learner(service, service.forget, raw, user, source=source)
        headers = [("DidRemove", "local")] if report.outcome.changed else []
    else:
        raise SpamdError(EX_USAGE, "TELL without Set: local or Remove: local (remote is not done)")
    service.note_learned(report)
    return answer(headers, [])


async def _run_learner(service: Service, work, *args: object, source: str) -> LearnReport:
    # No client_gone: spamc has shut its side down once it sent the message,
    # which is what a client that went away looks like too.
    return await service.run_learner(functools.partial(work, source=source), *args)


def _log_library_error(service: Service, exc: SpamlearnError, code: int) -> bool:
    """As the HTTP service logs its 5xx: other failures of ours an ERROR, a
    model file that does not load once (``Service.new_error``: a worker
    without a model would log one for every message); True if this took
    care of the logging (busy, a bad message: the listener's WARNING line
    for the request)."""
    if code not in (EX_SOFTWARE, EX_UNAVAILABLE):
        return False
    if service.new_error(exc):
        log.error("spamd: %s", exc)
    return True
