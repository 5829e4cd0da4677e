"""Connect to an account's IMAP server and read folders, never changing them.

Every server and socket error is translated here, at the boundary, into
spamlearn's own types, always naming the account:

- cannot connect, turned away before the login (a ``BYE`` greeting, a NO
  to STARTTLS), TLS handshake or certificate failure, timeout, the
  connection dropped -> ``ImapConnectionError`` (retried by the trainer);
- the pass outlived its ``pass_timeout`` -> ``ImapPassTimeoutError`` (a
  kind of ``ImapConnectionError``, not retried);
- the server refused the login -> ``ImapAuthError`` (not retried: a wrong
  password does not get better, and retrying risks an account lockout);
- a missing folder or an unexpected answer -> ``ImapStateError``.

Folders are opened with EXAMINE (read-only) and bodies fetched with
``BODY.PEEK[]``, so the trainer can neither set ``\\Seen`` nor expunge.

A body FETCH the server fails while it still takes a new login is
narrowed down to the messages it cannot give (``MailServer.bodies``), unless
the failure is an outage's (a temporary response code, no new login):
that is an ``ImapConnectionError``, and nothing is passed by.  A folder
whose messages fail on their own while no other message of it can be read
either is an ``ImapStateError`` of its own; the trainer takes two or more
such folders, on a connection that gave no body at all, for an outage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import imaplib
import logging
import re
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence

import imapclient
from imapclient.exceptions import CapabilityError, LoginError

from ..errors import (
    ConfigError,
    ImapAuthError,
    ImapConnectionError,
    ImapError,
    ImapPassTimeoutError,
    ImapStateError,
    ImapStoppedError,
)
from .config import Account, Security
from .deadline import DeadlinePassed, PassDeadline

__all__ = ["MailServer", "Bodies", "FolderInfo", "FolderStatus", "MessageMeta", "connect",
           "translate_errors"]

log = logging.getLogger("spamlearn.imap")

#: Bodies are fetched in batches of at most this many bytes as well as
#: ``Account.batch_size`` messages: a folder of large attachments must not
#: need gigabytes of memory.
MAX_BATCH_BYTES = 32 * 1024 * 1024
#: UIDs per metadata FETCH (RFC822.SIZE INTERNALDATE): keeps the command
#: line short (RFC 7162 recommends clients stay below 8 kB).
_META_CHUNK = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class FolderInfo:
    name: str
    flags: tuple[str, ...]
    #: The server's hierarchy delimiter for this name ("/" or "."; None: flat).
    delimiter: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int
    messages: int
    highestmodseq: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class MessageMeta:
    uid: int
    size: int
    arrived: float  # INTERNALDATE, epoch seconds
    deleted: bool = False  # flagged \\Deleted


@dataclasses.dataclass
class Bodies:
    """What a body FETCH gave: raw messages by UID; vanished ones are in none
    of its fields."""

    raw: dict[int, bytes] = dataclasses.field(default_factory=dict)
    #: flagged \\Deleted: not in ``raw`` (see ``MailServer.bodies``)
    deleted: set[int] = dataclasses.field(default_factory=set)
    #: uid -> the server's error, for messages it failed to give on their own
    unreadable: dict[int, str] = dataclasses.field(default_factory=dict)
    #: whether the server gave other bodies on this connection's pass: if it
    #: gave none, a message it failed may be an outage's victim, not bad itself
    others_given: bool = False


class _Redactor(logging.Filter):
    """Scrubs a secret from log records (imapclient already hides LOGIN lines;
    this also covers a server that echoes it, and our own mistakes)."""

    def __init__(self, secret: str):
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secret and self.secret in record.getMessage():
            record.msg = record.getMessage().replace(self.secret, "********")
            record.args = ()
        return True


_LOGGERS = ("imapclient", "imapclient.imapclient", "imapclient.imaplib", "spamlearn", "spamlearn.imap")


class _NoMailText(logging.Filter):
    """Keeps users' mail out of imapclient's debug log (``-vv``): the FETCH
    responses it logs whole hold every fetched message, and cron mails or
    journals that output (a helper's review: 40,326 lines for one pass)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("untagged_responses[FETCH]"):
            record.msg, record.args = "untagged_responses[FETCH] (message data not logged)", ()
        return True


for _name in _LOGGERS[:3]:
    logging.getLogger(_name).addFilter(_NoMailText())


@contextlib.contextmanager
def _redacting(secret: str) -> Iterator[None]:
    redactor = _Redactor(secret)
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    for logger in loggers:
        logger.addFilter(redactor)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(redactor)


@contextlib.contextmanager
def translate_errors(account: Account, doing: str, deadline: PassDeadline | None = None,
                     refused: type[ImapError] = ImapStateError) -> Iterator[None]:
    """Re-raise imapclient/socket/ssl errors as spamlearn's IMAP errors; with a
    ``deadline``, the exchange is one that the deadline may cut off.

    ``refused`` is what the server's refusal (NO, BAD, a BYE greeting) becomes:
    an unexpected answer (76) once in session, but a connection failure (69,
    retried) while the connection is being set up (see ``connect``).
    """
    where = f"account {account.name} ({account.host}:{account.port})"
    try:
        with deadline.network() if deadline else contextlib.nullcontext():
            yield
    except DeadlinePassed as exc:
        when = exc.args[0] if exc.args else "while"
        if when == "stopped":
            raise ImapStoppedError(f"{where}: stopped by a signal while {doing} (what it learned is "
                                   f"kept; the next run goes on)") from None
        raise ImapPassTimeoutError(
            f"{where}: the pass took longer than pass_timeout ({account.pass_timeout:g} s), "
            f"stopped {when} {doing} (what it learned is kept; the next run goes on)") from None
    except LoginError as exc:
        said = _text(exc)
        if _TEMPORARY_LOGIN_CODES.search(said):
            # RFC 5530: the server cannot take the login now (too many
            # connections of this user, its password database down): retried
            # like a lost connection, not a wrong password (exit 77, and an
            # admin sent to check a password that is right; a helper's review).
            raise ImapConnectionError(f"{where}: the server cannot take the login of "
                                      f"{account.username} now: {said}") from exc
        if _AUTHORIZATION_FAILED.search(said):
            # RFC 5530: the credentials were right, the user they ask to be
            # is refused: Dovecot's answer to a master-user login for a user
            # it does not know (alcie*spamlearn).  "(wrong password?)" sent
            # the admin to a password that was right.  Still 77: the
            # account's config is what must change.
            raise ImapAuthError(f"{where}: the server refused the login of {account.username}: "
                                f"its password was right, but not the user it names (no such user, "
                                f"or one this login may not act as?): {said}") from exc
        raise ImapAuthError(f"{where}: the server refused the login of {account.username} "
                            f"(wrong password?): {said}") from exc
    except CapabilityError as exc:
        raise ImapConnectionError(f"{where}: {doing}: {_text(exc)}") from exc
    except imaplib.IMAP4.abort as exc:  # before IMAP4.error: abort is its subclass
        raise ImapConnectionError(f"{where}: connection lost while {doing}: {_text(exc)}") from exc
    except ssl.SSLCertVerificationError as exc:
        hint = "" if account.ca_file else " (set ca_file for a private CA)"
        raise ImapConnectionError(f"{where}: TLS certificate not trusted: "
                                  f"{exc.verify_message}{hint}") from exc
    except ssl.SSLError as exc:
        raise ImapConnectionError(f"{where}: TLS failure while {doing}: {exc.reason or exc}") from exc
    except (TimeoutError, socket.timeout) as exc:
        raise ImapConnectionError(f"{where}: timed out while {doing}") from exc
    except socket.gaierror as exc:
        raise ImapConnectionError(f"{where}: cannot resolve host: {exc.strerror}") from exc
    except OSError as exc:
        raise ImapConnectionError(f"{where}: {exc.strerror or exc} while {doing}") from exc
    except imaplib.IMAP4.error as exc:
        raise refused(f"{where}: {doing}: the server said: {_text(exc)}") from exc


def _text(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith(("b'", 'b"')):
        text = text[2:-1]
    return text or type(exc).__name__


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


#: Errors that end the pass, never narrowed down nor retried: its time is
#: up, or it was asked to stop (a SIGTERM during a FETCH was taken for a
#: bad message and the batch split on new logins).
_ENDS_THE_PASS = (ImapPassTimeoutError, ImapStoppedError)


class MailServer:
    """A logged-in, read-only view of one account's mailbox (see ``connect``)."""

    def __init__(self, client: imapclient.IMAPClient, account: Account,
                 deadline: PassDeadline | None = None,
                 log_in: Callable[[], imapclient.IMAPClient] | None = None):
        self.client = client
        self.account = account
        self.deadline = deadline
        self._log_in = log_in
        with self._guard("reading capabilities"):
            self.capabilities = frozenset(_decode(c).upper() for c in client.capabilities())
        self.selected: str | None = None
        self.uidvalidity = 0
        #: A message of the selected folder whose body the server gave: the
        #: proof that it can give this folder's messages (``_proven``).
        self._given_uid: int | None = None
        #: Messages of the selected folder that failed on their own since a
        #: body was last given.
        self._lone_failures = 0
        #: The selected folder's messages known to fail (the trainer's
        #: state): never taken as the proof that the folder can be read.
        self.known_unreadable: set[int] = set()
        #: Folders of this connection whose messages the server gave none of,
        #: and whether it gave any body at all: only the two together tell an
        #: outage from folders it cannot read (``Trainer._judge_outage``).
        self.unreadable_folders: list[str] = []
        self.gave_bodies = False

    def _guard(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return translate_errors(self.account, doing, self.deadline)

    @property
    def has_condstore(self) -> bool:
        return "CONDSTORE" in self.capabilities

    def folders(self) -> list[FolderInfo]:
        """Every selectable folder, with its SPECIAL-USE and other flags."""
        with self._guard("listing folders"):
            listed = self.client.list_folders()
        out = []
        for flags, sep, name in listed:
            flags = tuple(_decode(f) for f in flags)
            if {"\\noselect", "\\nonexistent"} & {f.lower() for f in flags}:
                continue
            out.append(FolderInfo(_decode(name), flags, _decode(sep) if sep else None))
        return out

    def status(self, folder: str) -> FolderStatus:
        """UIDVALIDITY, UIDNEXT (and HIGHESTMODSEQ) without selecting the folder."""
        items = [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES"]
        if self.has_condstore:
            items.append(b"HIGHESTMODSEQ")
        with self._guard(f"reading the status of folder {folder!r}"):
            answer = self.client.folder_status(folder, items)
        try:
            return FolderStatus(int(answer[b"UIDVALIDITY"]), int(answer[b"UIDNEXT"]),
                                int(answer[b"MESSAGES"]),
                                int(answer[b"HIGHESTMODSEQ"]) if b"HIGHESTMODSEQ" in answer else None)
        except (KeyError, ValueError) as exc:
            raise ImapStateError(f"account {self.account.name}: folder {folder!r}: the STATUS "
                                 f"answer lacks {exc}") from exc

    def examine(self, folder: str) -> int:
        """Open ``folder`` read-only; returns its UIDVALIDITY."""
        with self._guard(f"opening folder {folder!r}"):
            answer = self.client.select_folder(folder, readonly=True)
        if folder != self.selected:
            self._given_uid, self._lone_failures, self.known_unreadable = None, 0, set()
        self.selected = folder
        try:
            self.uidvalidity = int(answer[b"UIDVALIDITY"])
        except (KeyError, ValueError) as exc:
            raise ImapStateError(f"account {self.account.name}: folder {folder!r} has no "
                                 f"UIDVALIDITY") from exc
        return self.uidvalidity

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above ``last_uid`` in the selected folder, ascending."""
        with self._guard(f"searching folder {self.selected!r}"):
            # "UID n:*" always includes the highest UID, even below n (RFC 3501 6.4.8)
            uids = self.client.search([b"UID", f"{last_uid + 1}:*".encode()])
        return sorted(u for u in uids if u > last_uid)

    def metadata(self, uids: Sequence[int]) -> list[MessageMeta]:
        """Size, arrival time and \\Deleted flag of ``uids`` (those still there), in UID order."""
        out = []
        for start in range(0, len(uids), _META_CHUNK):
            chunk = list(uids[start:start + _META_CHUNK])
            with self._guard(f"reading folder {self.selected!r}"):
                answer = self.client.fetch(chunk, [b"RFC822.SIZE", b"INTERNALDATE", b"FLAGS"])
            for uid, data in answer.items():
                if b"RFC822.SIZE" not in data:  # an unsolicited FETCH (flags) of another UID
                    continue
                out.append(MessageMeta(uid, int(data[b"RFC822.SIZE"]), _epoch(data.get(b"INTERNALDATE")),
                                       _DELETED in data.get(b"FLAGS", ())))
        out.sort(key=lambda m: m.uid)
        return out

    def bodies(self, uids: Sequence[int]) -> Bodies:
        """Raw messages of ``uids`` (without setting \\Seen); vanished ones are absent,
        and those flagged \\Deleted are only named (``deleted``): a client that
        moves a message to Junk by COPY and \\Deleted (Thunderbird's default,
        Outlook) leaves the old copy in INBOX until it expunges, and that copy
        relabelled the spam the user had just moved as ham (a helper's review,
        2026-11-29).

        A FETCH the server fails is narrowed down by halves, on a new login
        after each failure, to the messages it cannot give (``unreadable``).
        Dovecot answers a whole batch with an internal error and BYE for one
        message file it cannot open, and that one message stopped the
        account's training on every run (a helper's review).

        Raises
        ------
        ImapConnectionError
            An outage, not a bad message: the failure carries a temporary
            response code, or the server cannot be logged in to again.
            Nothing is given up: the next run fetches the batch again.
        ImapStateError
            Messages kept failing on their own and the server could not give
            another message of the folder either (``_proven``): a folder it
            cannot read, named in ``unreadable_folders``.  Nothing is given up.
        """
        fetched = Bodies()
        if uids and self._fetch_failure(list(uids), fetched):
            self._narrow(list(uids), fetched)
        if fetched.unreadable:
            # Counted towards giving them up only if the server gives another
            # message of the folder now, after they failed: a body given
            # before an outage began counted (good messages given up, a
            # third review), and a folder with nothing else new never
            # counted (an error on every run for ever; a second review).
            fetched.others_given = self._proven(fetched)
        return fetched

    def _narrow(self, uids: list[int], fetched: Bodies) -> None:
        """Fetch ``uids``, which failed together, narrowing down to the messages
        the server cannot give: depth first, so that each bad message is found
        between messages given (both halves first, then each narrowed, made
        three bad messages in a batch of 8 three failures in a row, taken for
        an outage on every run; a second review)."""
        if len(uids) == 1:
            # Once more on its own: one dropped connection is not a bad message.
            failure = self._fetch_failure(uids, fetched)
            if failure and self._still_there(uids[0]):  # RFC 2180 4.1.2: NO for an expunged one
                fetched.unreadable[uids[0]] = str(failure)
                self._failed_alone(failure, fetched)
            return
        half = len(uids) // 2
        for part in (uids[:half], uids[half:]):
            if self._fetch_failure(part, fetched):
                self._narrow(part, fetched)

    def _fetch_failure(self, uids: list[int], fetched: Bodies) -> ImapError | None:
        """One body FETCH of ``uids``: None if given, else its failure, on a new
        login; raises the failure of an outage (a temporary response code)."""
        try:
            given = self._fetch_bodies(uids, fetched)
        except _ENDS_THE_PASS:
            raise
        except (ImapConnectionError, ImapStateError) as exc:
            said = str(exc)
            if _TEMPORARY_CODES.search(said):  # RFC 5530: the server says it is for now
                raise ImapConnectionError(f"{said} (the server cannot give messages for now; nothing "
                                          f"is passed by, the next run fetches them again)") from exc
            self._reconnect_after(exc)
            return exc
        if given is not None:
            self._gave(given)
        return None

    def _gave(self, uid: int) -> None:
        """The server gave the body of ``uid``: the folder reads, for now."""
        self._given_uid = uid
        self._lone_failures = 0
        self.gave_bodies = True

    def _failed_alone(self, failure: ImapError, fetched: Bodies) -> None:
        """A message failed on its own: after three in a row (batches of this
        folder included: with batches of two the count never reached three,
        and an outage cost 4 logins a message; a third review), with no body
        given between them, the server must show that it gives another
        message of the folder, or it cannot read the folder (raised: nothing given up).
        The server that failed every body FETCH for a while, yet took each
        new login, had every message narrowed down to and passed by, after 3
        logins a message (a helper's review)."""
        self._lone_failures += 1
        if self._lone_failures < _OUTAGE_FAILURES:
            return
        if self._proven(fetched):     # which starts the count again
            return
        said = (f"{failure} (messages failed one after another and the server gave no other message "
                f"of folder {self.selected!r} either")
        # A folder the server cannot read (a restore with the wrong owner,
        # its store gone): that folder's error, the others trained (as an
        # outage it stopped them all on every run; a third review).  Each
        # such folder: a second one was taken for an outage at once, and
        # ended the pass before the folders after it (a helper's review);
        # the trainer judges an outage once every folder was tried.
        self.unreadable_folders.append(self.selected or "")
        raise ImapStateError(f"{said}: nothing is passed by, the next run fetches them again)") \
            from failure

    def _proven(self, fetched: Bodies) -> bool:
        """Whether the server gives a whole message of the selected folder now,
        one not known to fail: the last one it gave, else up to three of the
        folder's first (another of a folder with nothing new, learned before).
        A whole body, as the FETCHes that failed read: the first 2 KB were
        given by a store whose attachments were gone (a third review); and
        none of those that just failed (four bad messages first in a folder
        were tried as proof, and the account was stopped on every run)."""
        bad = set(fetched.unreadable) | self.known_unreadable
        if self._given_uid is not None and self._given_uid not in bad:
            candidates = [self._given_uid]
        else:
            with self._guard(f"searching folder {self.selected!r}"):
                candidates = [u for u in sorted(self.client.search([b"ALL"])) if u not in bad][:3]
        for uid in candidates:
            try:
                with self._guard(f"reading a message of folder {self.selected!r}"):
                    answer = self.client.fetch([uid], [b"BODY.PEEK[]"])
            except _ENDS_THE_PASS:
                raise
            except (ImapConnectionError, ImapStateError) as exc:
                self._reconnect_after(exc)
                continue
            if any(isinstance(data.get(b"BODY[]"), bytes) for data in answer.values()):
                self._gave(uid)
                return True
        self._given_uid = None
        return False

    def _fetch_bodies(self, uids: list[int], fetched: Bodies) -> int | None:
        """Bodies of ``uids`` into ``fetched``; a UID whose body was given, if one was."""
        with self._guard(f"fetching messages from folder {self.selected!r}"):
            answer = self.client.fetch(uids, [b"FLAGS", b"BODY.PEEK[]"])
        given = None
        for uid, data in answer.items():
            if not isinstance(data.get(b"BODY[]"), bytes):  # an unsolicited FETCH (flags)
                continue
            given = uid
            if _DELETED in data.get(b"FLAGS", ()):
                fetched.deleted.add(uid)
            else:
                fetched.raw[uid] = data[b"BODY[]"]
        return given

    def _still_there(self, uid: int) -> bool:
        with self._guard(f"searching folder {self.selected!r}"):
            return uid in self.client.search([b"UID", str(uid).encode()])

    def _reconnect_after(self, failure: ImapError) -> None:
        """A new session on the same folder in place of one a failed command
        ended (or left in doubt); raises ``failure`` if there is none to be had."""
        if self._log_in is None or self.selected is None:
            raise failure
        with contextlib.suppress(OSError):
            self.client.shutdown()
        try:
            self.client = self._log_in()
        except _ENDS_THE_PASS:
            raise
        except ImapError as exc:
            log.info("%s", exc)
            if isinstance(failure, ImapConnectionError):
                raise failure from None  # what went wrong first is what the user needs to hear
            # A NO, then no login: an outage (69, retried), not an unexpected answer (76).
            raise ImapConnectionError(f"{failure} (and no new login: {exc})") from None
        before = self.uidvalidity
        if self.examine(self.selected) != before:
            raise ImapStateError(f"account {self.account.name}: folder {self.selected!r} changed "
                                 f"identity (UIDVALIDITY) during the pass; it is rescanned next time")

    def close(self) -> None:
        """Log out; on a broken connection, past the deadline or asked to
        stop, just drop the socket."""
        try:
            # An exchange like any other: a SIGTERM or the pass deadline cuts
            # a LOGOUT the server never answers (it waited out `timeout`,
            # systemd's 60 s; a helper's review), and neither sends one to
            # a server that was too slow already.
            with self.deadline.network() if self.deadline else contextlib.nullcontext():
                self.client.logout()
        except (imaplib.IMAP4.error, OSError, DeadlinePassed):
            with contextlib.suppress(OSError):
                self.client.shutdown()


_DELETED = b"\\Deleted"

#: RFC 5530 response codes of a command refused for now, not for good.
_TEMPORARY = ("UNAVAILABLE", "LIMIT", "INUSE")
_TEMPORARY_CODES = re.compile(rf"\[({'|'.join(_TEMPORARY)})\]", re.I)
#: A login's SERVERBUG is no wrong password either; a FETCH's is Dovecot's
#: answer (imap_fetch_failure = no-after) for one message file it cannot open.
_TEMPORARY_LOGIN_CODES = re.compile(rf"\[({'|'.join((*_TEMPORARY, 'SERVERBUG'))})\]", re.I)
_AUTHORIZATION_FAILED = re.compile(r"\[AUTHORIZATIONFAILED\]", re.I)
#: Messages that may fail on their own one after another, no body given in
#: between, before the server must prove it gives others (``_failed_alone``).
_OUTAGE_FAILURES = 3


def _epoch(value: object) -> float:
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    return 0.0  # unknown arrival: treat as old


def _tls_context(account: Account) -> ssl.SSLContext:
    """The TLS settings; a ``ca_file`` that cannot be read or holds no
    certificate is the config's error (78), named, not a connection failure
    retried for minutes (69; a helper's review)."""
    try:
        return ssl.create_default_context(cafile=str(account.ca_file) if account.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise ConfigError(f"account {account.name}: ca_file {account.ca_file}: {reason}") from exc


@contextlib.contextmanager
def connect(account: Account, password: str,
            deadline: PassDeadline | None = None) -> Iterator[MailServer]:
    """Connect, secure and log in; yields a ``MailServer``; logs out on exit.

    Every exchange with the server, from the greeting on, may be cut off by
    ``deadline``.  The server logs in again the same way when it must
    reconnect (see ``MailServer.bodies``).

    Raises
    ------
    ImapConnectionError
        Unreachable, TLS failure, STARTTLS not offered, timeout (its
        ``ImapPassTimeoutError``: past the deadline).
    ImapAuthError
        The login was refused.
    ConfigError
        ``ca_file`` cannot be read or holds no certificate.
    """
    with _redacting(password):
        client = _log_in(account, password, deadline)
        try:
            server = MailServer(client, account, deadline,
                                log_in=lambda: _log_in(account, password, deadline))
        except BaseException:
            with contextlib.suppress(OSError):
                client.shutdown()
            raise
        try:
            yield server
        finally:
            server.close()


def _log_in(account: Account, password: str, deadline: PassDeadline | None) -> imapclient.IMAPClient:
    """A client connected, secured and logged in (see ``connect``)."""
    timeout = imapclient.SocketTimeout(connect=account.timeout, read=account.timeout)
    context = _tls_context(account) if account.security in (Security.TLS, Security.STARTTLS) else None
    # A server may turn a connection away before the login: a greeting of
    # "* BYE [UNAVAILABLE] shutting down, try again later" (RFC 3501 7.1.5),
    # a NO to STARTTLS.  imaplib raises its plain error for both, which was
    # reported as a missing folder (76) and never retried (a reviewer's finding).
    turned_away = ImapConnectionError
    with translate_errors(account, "connecting", deadline, refused=turned_away):
        if account.security == Security.TLS:
            client = imapclient.IMAPClient(account.host, account.port, ssl=True,
                                           ssl_context=context, timeout=timeout)
        else:
            client = imapclient.IMAPClient(account.host, account.port, ssl=False, timeout=timeout)
    client.normalise_times = False  # INTERNALDATE as aware datetimes: ages are exact
    try:
        if account.security == Security.STARTTLS:
            with translate_errors(account, "starting TLS (STARTTLS)", deadline, refused=turned_away):
                client.starttls(context)
        with translate_errors(account, "logging in", deadline):
            if (account.username + password).isascii():
                client.login(account.username, password)
            else:
                # LOGIN's quoted strings are ASCII; SASL PLAIN carries
                # UTF-8 (RFC 4616), which Dovecot and most servers offer.
                client.plain_login(account.username, password)
    except BaseException:
        with contextlib.suppress(OSError):
            client.shutdown()
        raise
    log.info("account %s: logged in to %s:%s as %s", account.name, account.host,
             account.port, account.username)
    return client
