"""Turn what users put into their spam and ham folders into learn and relabel actions.

The rules (see ``docs/imap-trainer.md`` for the reasoning):

- a message in a spam folder is learned as spam, in a ham folder as ham;
- one learned the other way before is relabelled (its counts removed,
  then learned with the new label), exactly once: the user corrected us;
- one already learned with the same label (a copy, a re-upload, the same
  message in a second ham folder) is not counted again: identity is the
  content digest in the ledger, never the UID;
- ignored folders (Trash) are never read, and a message deleted or moved
  to Trash is not unlearned: deleting spam from Junk is housekeeping, not a
  correction, and unlearning on delete would make an auto-expunging Junk
  folder erase everything the user taught;
- a message met in a spam and in a ham folder on the same pass (a copy, not
  a move) is neither learned nor relabelled on that pass: both copies are
  watched, and the one left alone decides on a later pass;
- ``ham_min_age_days``: a message younger than that in a ham folder waits
  (its UID is kept in the folder's state and fetched again once old enough)
  unless the ledger knows it as spam, i.e. the user just rescued it;
- ``mode``: see ``spamlearn.imap.config.Mode``.

Incremental: per folder the ledger keeps ``{uidvalidity, last_uid,
uidnext, highestmodseq, deferred, deleted, unreadable, undecided}`` (``LearningSession.set_state``), saved
in the same transaction as the messages learned with it.  A pass asks
STATUS first and skips a folder whose UIDNEXT has not moved, so an idle
mailbox costs one round trip per folder; otherwise it fetches UIDs above
``last_uid`` in batches and commits after each one, so a pass killed
part-way resumes where the last commit left it, without losing or double
counting anything.  A changed UIDVALIDITY means the UIDs are meaningless:
the folder is rescanned and the ledger recognises what it already knows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence

from ..classifier import Label
from ..config import Settings
from ..errors import (
    READING_FAILURES,
    ConfigError,
    ImapAuthError,
    ImapConnectionError,
    ImapPassTimeoutError,
    ImapStateError,
    ImapStoppedError,
    LedgerError,
    MessageError,
    ModelError,
    StoreBusyError,
)
from ..exitcodes import ExitCode, exit_code_for
from ..ledger import LedgerRow
from ..modelstore import Action, LearningSession, LearnOutcome, ModelStore
from ..sources import verdict_giver
from .config import Account, Mode, is_folder_pattern
from .connection import MAX_BATCH_BYTES, FolderInfo, FolderStatus, MailServer, MessageMeta, connect
from .deadline import PassDeadline

__all__ = ["Trainer", "AccountReport", "FolderReport", "FolderState", "resolve_folders",
           "store_for", "state_key"]

log = logging.getLogger("spamlearn.imap")

_DAY = 86400.0
#: \\Deleted UIDs a folder's state keeps watching for an undelete.  Clients
#: expunge them soon (on leaving the folder, at exit); a user who never
#: does must not grow the state, rewritten at every commit, without end.
MAX_WATCHED_DELETED = 1000
#: Passes a message the server cannot give is fetched on before it is
#: passed by for good: a message file restored by the admin, or a server
#: that failed it for a while, is learned on a later pass.
UNREADABLE_PASSES = 3


def state_key(account: Account, folder: str) -> str:
    return f"imap:{account.name}:{folder}"


def store_for(settings: Settings, account: Account) -> ModelStore:
    """The model an account trains: the user's own, or the shared one.

    The user's own when the account says ``own_model = true`` or its user
    (``user``, else the login) is in ``[users] own_model``: that list gives
    a user an own model for every learner and for scoring, and an account
    listed only there trained the shared model, which never scored its user
    (a reviewer's finding).  The user, not the login: a master-user login
    (``alice*spamlearn``) trained the shared model while alice's own, that
    the sieve hook trains, judged her.
    """
    if account.own_model or settings.has_own_model(account.model_user):
        return ModelStore.with_settings(settings, settings.user_model_path(account.model_user))
    return ModelStore.from_settings(settings)


@dataclasses.dataclass
class FolderState:
    """Where a folder's last pass stopped (JSON in the ledger's state table)."""

    uidvalidity: int = 0
    last_uid: int = 0
    uidnext: int = 0
    highestmodseq: int | None = None
    deferred: dict[int, float] = dataclasses.field(default_factory=dict)  # uid -> arrival
    updated_at: float | None = None
    #: UIDs below last_uid flagged \\Deleted when seen: looked at again on
    #: later passes, learned once undeleted, forgotten once expunged.
    deleted: set[int] = dataclasses.field(default_factory=set)
    #: UIDs the server could not give on their own: uid -> the passes it
    #: failed them on (counted while it gave other bodies), fetched again.
    unreadable: dict[int, int] = dataclasses.field(default_factory=dict)
    #: UIDs of copies of a message met in a spam and a ham folder on one
    #: pass: uid -> the message's digest; learned once no copy the other
    #: way is left (``Trainer._hold_undecided``).
    undecided: dict[int, str] = dataclasses.field(default_factory=dict)

    def let_go(self, uid: int) -> int:
        """Watch ``uid`` no more (deferred, \\Deleted, unreadable, undecided):
        it is looked at now (and watched again if need be), or it is gone.
        Returns the passes it failed on."""
        self.deferred.pop(uid, None)
        self.deleted.discard(uid)
        self.undecided.pop(uid, None)
        return self.unreadable.pop(uid, 0)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["deferred"] = sorted([uid, t] for uid, t in self.deferred.items())
        data["deleted"] = sorted(self.deleted)
        data["unreadable"] = sorted([uid, n] for uid, n in self.unreadable.items())
        data["undecided"] = sorted([uid, digest] for uid, digest in self.undecided.items())
        # Only when there are some: the release before them reads the state
        # with cls(**data), and an unknown key, even [], made it rescan every
        # folder (a rescan can undo another user's verdict; a helper's review).
        for name in ("deleted", "unreadable", "undecided"):
            if not data[name]:
                del data[name]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None, where: str) -> FolderState:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            data["deferred"] = {int(uid): float(t) for uid, t in data.get("deferred", [])}
            data["deleted"] = {int(uid) for uid in data.get("deleted", [])}  # not in older states
            data["unreadable"] = {int(uid): int(n) for uid, n in data.get("unreadable", [])}
            data["undecided"] = {int(uid): str(digest) for uid, digest in data.get("undecided", [])}
            return cls(**data)
        except (ValueError, TypeError, KeyError) as exc:
            # A rescan is safe (the ledger stops double counting), so a
            # damaged state costs time, not correctness; say so loudly.
            log.warning("%s: unreadable folder state (%s): rescanning the folder", where, exc)
            return cls()


@dataclasses.dataclass
class FolderReport:
    folder: str
    label: str
    learned: int = 0
    relabelled: int = 0
    already_known: int = 0
    correct: int = 0      # mode error: the model already said so; not learned
    deferred: int = 0     # younger than ham_min_age_days; left for a later pass
    errors: int = 0       # messages that could not be parsed, or read from the server
    error: str | None = None
    rescanned: bool = False
    undecided: int = 0    # also met the other way on this pass (a copy); left for a later pass

    def add(self, other: FolderReport) -> None:
        for name in ("learned", "relabelled", "already_known", "correct", "errors", "undecided"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.deferred = other.deferred


@dataclasses.dataclass
class AccountReport:
    """What a pass did for one account; ``summary()`` is the line for cron."""

    account: str
    model: str
    folders: list[FolderReport] = dataclasses.field(default_factory=list)
    error: str | None = None
    exit_code: int = 0
    seconds: float = 0.0
    #: Where the time went: IMAP round trips, tokenizing and learning, and
    #: the store (lock, load, commit: ledger + atomic model write).
    timings: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"imap": 0.0, "learn": 0.0, "store": 0.0})
    attempts: int = 0

    def folder(self, name: str, label: str) -> FolderReport:
        for report in self.folders:
            if report.folder == name:
                return report
        report = FolderReport(name, label)
        self.folders.append(report)
        return report

    def total(self, name: str, label: str | None = None) -> int:
        return sum(getattr(f, name) for f in self.folders if label is None or f.label == label)

    @property
    def message_errors(self) -> int:
        return self.total("errors")

    def as_dict(self) -> dict:
        return {
            "account": self.account, "model": self.model,
            "learned_spam": self.total("learned", "spam"), "learned_ham": self.total("learned", "ham"),
            "relabelled": self.total("relabelled"), "already_known": self.total("already_known"),
            "correct": self.total("correct"), "deferred": self.total("deferred"),
            "undecided": self.total("undecided"),
            "errors": (self.message_errors + (1 if self.error else 0)
                       + sum(1 for f in self.folders if f.error)),
            "error": self.error, "exit_code": self.exit_code, "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "folders": [dataclasses.asdict(f) for f in self.folders],
        }

    def summary(self) -> str:
        d = self.as_dict()
        line = (f"{self.account}: learned {d['learned_spam']} spam, {d['learned_ham']} ham, "
                f"relabelled {d['relabelled']}, already known {d['already_known']}")
        if d["correct"]:
            line += f", already right {d['correct']}"
        if d["deferred"]:
            line += f", waiting {d['deferred']}"
        if d["undecided"]:
            line += f", undecided {d['undecided']}"
        line += f", errors {d['errors']} ({self.seconds:.1f} s)"
        failed = [f"{f.folder}: {f.error}" for f in self.folders if f.error]
        if self.error:
            line += f" FAILED: {self.error}"
        elif failed:
            line += " FAILED: " + "; ".join(failed)
        return line


def resolve_folders(account: Account, folders: Sequence[FolderInfo]
                    ) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """Which existing folders are trained as what; and (name, label, problem)
    of missing ones (the label the report files the problem under).

    Precedence: a folder named literally in spam_folders/ham_folders, then
    ignore_folders, then spam patterns/SPECIAL-USE, then ham patterns (so
    ``ham_folders = ["*"]`` with ``spam_folders = ["\\\\Junk"]`` does what it says).
    A ham pattern never takes a folder below a spam or ignored folder
    (``Junk/Phishing``, ``Trash/2025``), nor anything while no spam folder
    is found: the real spam folder would be among what it takes.  Without
    spam folders at all, it leaves out the folder the server flags
    ``\\Junk``, and those below it, as it leaves out Trash.
    """
    missing = []
    for pattern, label in [*((p, "spam") for p in account.spam_folders),
                           *((p, "ham") for p in account.ham_folders)]:
        if pattern.startswith("\\"):
            if not any(account.matches([pattern], f.name, f.flags) for f in folders):
                missing.append((pattern, label, f"account {account.name}: no folder has the "
                                         f"SPECIAL-USE flag {pattern}"))
        elif not is_folder_pattern(pattern) and not any(account.matches([pattern], f.name) for f in folders):
            missing.append((pattern, label, f"account {account.name}: folder {pattern!r} does not exist"))

    def named(names: Sequence[str]) -> list[str]:
        return [n for n in names if not n.startswith("\\") and not is_folder_pattern(n)]

    literal = {"spam": named(account.spam_folders), "ham": named(account.ham_folders)}
    labels: dict[str, str | None] = {}
    fenced: list[tuple[str, str | None]] = []    # spam and ignored folders: (name, delimiter)
    for info in folders:
        label = None
        for wanted in ("spam", "ham"):
            if account.matches(literal[wanted], info.name):
                label = wanted
        ignored = label is None and account.matches(account.ignore_folders, info.name, info.flags)
        if label is None and not account.spam_folders and account.matches(["\\Junk"], info.name, info.flags):
            # No spam folder given (spam learned by the sieve, say): the
            # server's own spam folder is still not ham.  ham_folders = ["*"]
            # learned Junk as ham (a reviewer's finding).
            ignored = True
        if label is None and not ignored and account.matches(account.spam_folders, info.name, info.flags):
            label = "spam"
        if ignored or label == "spam":
            fenced.append((info.name, info.delimiter))
        labels[info.name] = label
    # No spam folder found at all (a SPECIAL-USE flag the server does not
    # set, a name misspelt): "*" would take the real one as ham.
    spam_missing = bool(account.spam_folders) and "spam" not in labels.values()
    skipped = [h for h in account.ham_folders if h.startswith("\\") or is_folder_pattern(h)]
    if spam_missing and skipped:
        # Said, not silent: a spam pattern that matches nothing left a run
        # that trained nothing and exited 0 (a helper's review).
        specs = ", ".join(account.spam_folders)
        missing.append((specs, "spam", f"account {account.name}: no folder is a spam folder ({specs}), "
                               f"so the ham folders {', '.join(skipped)} are not trained either"))
    elif spam_missing and any(is_folder_pattern(p) for p in account.spam_folders):
        # A spam pattern that matches nothing, beside named ham folders: the
        # ham was trained and the run said nothing of the spam it never saw
        # (exit 0; a helper's review).  Named folders say so above.
        specs = ", ".join(account.spam_folders)
        missing.append((specs, "spam", f"account {account.name}: no folder is a spam folder ({specs}), "
                               f"so no spam is learned"))
    plan: list[tuple[str, str]] = []
    for info in folders:
        label = labels[info.name]
        below_fence = any(sep and info.name.startswith(name + sep) for name, sep in fenced)
        if label is None and not spam_missing and not below_fence \
                and account.matches(account.ham_folders, info.name, info.flags) \
                and (info.name, info.delimiter) not in fenced:
            label = "ham"
        if label:
            plan.append((info.name, label))
    # spam folders first: a pass stopped early has then learned the corrections first
    plan.sort(key=lambda item: (item[1] != "spam", item[0]))
    return plan, missing


@dataclasses.dataclass(slots=True)
class _Sighting:
    """A message met in spam folders on this pass: what the ledger had
    before, and where its copies are (``Trainer._undecided`` takes back what
    they taught if a copy turns up in a ham folder)."""

    #: when the first copy was seen, and the label the ledger had then (its
    #: row if that copy relabelled it)
    seen_at: float
    before: Label | None
    before_row: LedgerRow | None
    #: (folder, UIDVALIDITY, UID) of each copy, the first one first
    copies: list[tuple[str, int, int]]
    #: the spam folder whose counts have the copy this pass learned or
    #: relabelled: the row's source names the folder of the last copy met
    #: (an already-known copy stamps it), and a second spam folder's
    #: report showed learned -1 beside the first one's 1
    taught_in: str | None = None


class Trainer:
    """Runs passes over accounts; one instance per run.

    Parameters
    ----------
    settings : Settings
    on_batch : callable, optional
        ``on_batch(account, folder, n_committed)`` after each committed batch
        (a test seam: e.g. kill the server there).
    should_stop : callable, optional
        Polled before each message; once true the pass commits what it has
        done and returns (SIGTERM in ``--every`` mode).
    progress : callable, optional
        ``progress(n)`` after each message handled.
    on_pass : callable, optional
        ``on_pass(cut_off)`` as an account's pass starts, ``on_pass(None)``
        as it ends: ``cut_off()``, called from a signal handler, ends the
        exchange with the server in progress at once (``PassDeadline.cut_off``).
    clock, sleep : callables
        ``time.time`` and ``time.sleep`` unless a test says otherwise; the
        command line's ``sleep`` wakes up when it is asked to stop.
    """

    def __init__(self, settings: Settings, *,
                 on_batch: Callable[[Account, str, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 progress: Callable[[int], None] | None = None,
                 on_total: Callable[[int], None] | None = None,
                 on_pass: Callable[[Callable[[], None] | None], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.on_batch = on_batch
        self.should_stop = should_stop or (lambda: False)
        self.progress = progress or (lambda n: None)
        self.on_total = on_total or (lambda n: None)
        self.on_pass = on_pass or (lambda cut_off: None)
        self.clock = clock
        self.sleep = sleep
        #: The account's pass so far: digest -> a copy met in a spam folder;
        #: and the labels of the folders undecided copies are still in.
        self._sightings: dict[str, _Sighting] = {}
        self._undecided_in: dict[str, set[str]] = {}
        #: The account's spam folders (``_bound_watched``).
        self._spam_folders: list[str] = []

    # -- accounts ---------------------------------------------------------------------
    def train(self, accounts: Sequence[Account]) -> list[AccountReport]:
        """One pass over every account; an account's failure does not stop the others."""
        reports = []
        for account in accounts:
            if self.should_stop():
                break
            reports.append(self.train_account(account))
        return reports

    def train_account(self, account: Account) -> AccountReport:
        """One pass over one account, reconnecting after a dropped connection.

        Every failure is the report's, a bug's too (exit 70): an account's
        failure must not stop the accounts after it, nor an ``--every``
        trainer, nor the run's summary and ``--json`` object.
        """
        started = time.monotonic()
        report = AccountReport(account.name, "?")
        try:
            self._train_account(account, report)
        except Exception as exc:
            # The safety net under the errors foreseen below (a password
            # file in Latin-1 once ended the whole run here, the accounts
            # after it untrained and `status` showing their last run as
            # if current; a reviewer's finding).  Whatever was committed
            # stays, and so do its counts in the report.
            self._report_internal_error(account, report, exc)
        report.seconds = time.monotonic() - started
        return report

    def _report_internal_error(self, account: Account, report: AccountReport, exc: Exception) -> None:
        if log.isEnabledFor(logging.INFO):  # -v, as for an internal error of any command
            log.exception("account %s: internal error", account.name)
        report.error = (f"account {account.name}: internal error (a bug, please report it; -v shows "
                        f"the traceback): {type(exc).__name__}: {exc}")
        report.exit_code = ExitCode.SOFTWARE

    def _train_account(self, account: Account, report: AccountReport) -> None:
        try:
            store = store_for(self.settings, account)
        except ConfigError as exc:
            report.error, report.exit_code = str(exc), exit_code_for(exc)
            return
        report.model = str(store.model_path)
        try:
            # A corrupt model or ledger, found before the network: otherwise
            # an unreachable server was retried for minutes and reported
            # (69) while the real problem went unsaid.  Reads the headers
            # and the ledger only, without the lock.
            store.info()
        except (ModelError, LedgerError) as exc:
            report.error, report.exit_code = str(exc), exit_code_for(exc)
            return
        if not account.password_file_is_private():
            # Once a pass, not once per reconnect (it was said retries + 1 times).
            log.warning("account %s: password_file %s is readable by every user; chmod 600 it",
                        account.name, account.password_file)
        done: set[str] = set()
        last_error = ""
        # across reconnects: a folder done is not read again
        self._sightings, self._undecided_in = {}, {}
        with PassDeadline(account.pass_timeout) as deadline, self._cut_off_by(deadline):
            for attempt in range(account.retries + 1):
                report.attempts = attempt + 1
                try:
                    password = account.password()
                    with connect(account, password, deadline) as server:
                        self._pass(server, account, store, report, done)
                    break
                except ImapStoppedError as exc:
                    # Asked to stop: not a failure of the account (`status`
                    # said FAILED (exit 69) after a plain `systemctl stop`;
                    # a helper's review).  The command line says it stopped.
                    log.info("%s", exc)
                    break
                except ImapConnectionError as exc:
                    if (attempt >= account.retries or self.should_stop()
                            or isinstance(exc, ImapPassTimeoutError)):
                        error = str(exc)
                        if isinstance(exc, ImapPassTimeoutError) and last_error:
                            error += f"; before that: {last_error}"
                        report.error, report.exit_code = error, exit_code_for(exc)
                        break
                    last_error = str(exc)
                    # Doubling, up to an hour (with many retries 2**attempt
                    # alone would overflow time.sleep), and no longer than
                    # the deadline: the reconnect after it is refused at once.
                    delay = min(account.retry_delay * 2 ** min(attempt, 32), 3600.0, deadline.remaining())
                    log.warning("%s; retry %d of %d in %.1f s", exc, attempt + 1, account.retries, delay)
                    self.sleep(delay)
                    if self.should_stop():
                        # Asked to stop while waiting to reconnect: nothing is
                        # in hand, so stop now, not after the wait.
                        report.error, report.exit_code = str(exc), exit_code_for(exc)
                        break
                except (ImapAuthError, ImapStateError, ConfigError, StoreBusyError, ModelError,
                        LedgerError) as exc:
                    report.error, report.exit_code = str(exc), exit_code_for(exc)
                    break
        self._sightings, self._undecided_in = {}, {}
        if not report.exit_code:
            codes = [exit_code_for(ImapStateError())] if any(f.error for f in report.folders) else []
            if report.message_errors:
                codes.append(exit_code_for(MessageError()))
            report.exit_code = max(codes, default=0)

    @contextlib.contextmanager
    def _cut_off_by(self, deadline: PassDeadline) -> Iterator[None]:
        self.on_pass(deadline.cut_off)
        if self.should_stop():
            # Asked before the pass could be cut off (reading the model's
            # header, the password file): no connect that waits out `timeout`.
            deadline.cut_off()
        try:
            yield
        finally:
            self.on_pass(None)

    def _pass(self, server: MailServer, account: Account, store: ModelStore,
              report: AccountReport, done: set[str]) -> None:
        plan, missing = resolve_folders(account, server.folders())
        for name, label, problem in missing:
            # The label as resolve_folders says: "Spam*, Pourriel*", two spam
            # patterns matching nothing, was filed as a ham folder (a
            # helper's review).
            report.folder(name, label).error = problem
            log.info("%s", problem)  # in the report: the command line says it once
        self._spam_folders = [folder for folder, label in plan if label == "spam"]
        plan = [(folder, label) for folder, label in plan if folder not in done]
        # One session reads every folder's state: it also repairs an
        # interrupted commit first, so the state read is the one that counts.
        with store.session(source=f"imap:{account.name}") as session:
            states = {folder: FolderState.from_json(session.get_state(state_key(account, folder)),
                                                    f"account {account.name}: folder {folder}")
                      for folder, _label in plan}
        work = []
        for folder, label in plan:
            try:
                started = time.perf_counter()
                work.append(self._plan_folder(server, account, folder, label, states[folder], report))
                report.timings["imap"] += time.perf_counter() - started
            except ImapStateError as exc:
                report.folder(folder, label).error = str(exc)
                log.info("%s", exc)  # in the report: the command line says it once
                done.add(folder)
        self._hold_undecided(work, [states[folder] for folder, _label in plan if folder in done])
        self.on_total(sum(len(w[4]) + len(w[5]) for w in work if w))
        for item in work:
            if self.should_stop():
                return
            if item is None:
                continue
            folder, label, state, uidnext, new, again = item
            try:
                if server.examine(folder) != state.uidvalidity:
                    log.warning("account %s: folder %s changed identity (UIDVALIDITY) during the "
                                "pass; it is rescanned next time", account.name, folder)
                    continue
                self._sync_folder(server, account, store, folder, Label(label), state, uidnext,
                                  new, again, report)
            except ImapStateError as exc:
                report.folder(folder, label).error = str(exc)
                log.info("%s", exc)  # in the report: the command line says it once
            if not self.should_stop():
                done.add(folder)
        if not self.should_stop():
            self._judge_outage(server, account, report, done)

    @staticmethod
    def _judge_outage(server: MailServer, account: Account, report: AccountReport,
                      done: set[str]) -> None:
        """Two folders or more the server gave no message of, and no message
        of any other folder either: a store down behind a server that still
        takes logins, not folders it cannot read.  Judged once every folder
        was tried: at the second such folder the pass ended, and the folders
        after it, that it could read, were never trained (a helper's
        review).  Raised as a dropped connection (69, retried): those
        folders are fetched again, and their errors are the outage's."""
        failed = server.unreadable_folders
        if len(failed) < 2 or server.gave_bodies:
            return
        for report_folder in report.folders:
            if report_folder.folder in failed:
                report_folder.error = None
                done.discard(report_folder.folder)
        raise ImapConnectionError(
            f"account {account.name} ({account.host}:{account.port}): the server gave no message of "
            f"folders {', '.join(failed)}, nor of any other: an outage, not folders it cannot read; "
            f"nothing is passed by, the next run fetches them again")

    # -- one folder -----------------------------------------------------------------------
    def _plan_folder(self, server: MailServer, account: Account, folder: str, label: str,
                     state: FolderState, report: AccountReport):
        """None if nothing changed since the last pass, else what to fetch.

        STATUS costs one round trip and no SELECT: a folder whose UIDNEXT has
        not moved has no new message (UIDs only grow), so an idle mailbox is
        checked in milliseconds.  ``state.uidnext`` is only advanced once a
        folder pass completes, so a pass cut short is never mistaken for done.
        """
        report.folder(folder, label)
        status = server.status(folder)
        now = self.clock()
        min_age = account.ham_min_age_days * _DAY if label == "ham" else 0.0
        due = sorted(uid for uid, arrived in state.deferred.items() if now - arrived >= min_age)
        if status.uidvalidity == state.uidvalidity and status.uidnext <= state.uidnext and not due \
                and not state.unreadable and not state.undecided \
                and not self._flags_may_have_changed(status, state):
            report.folder(folder, label).deferred = len(state.deferred)
            return None
        uidvalidity = server.examine(folder)
        if uidvalidity != state.uidvalidity:
            if state.uidvalidity:
                log.warning("account %s: folder %s: UIDVALIDITY changed (%d -> %d): rescanning; "
                            "messages learned before are recognised by content", account.name,
                            folder, state.uidvalidity, uidvalidity)
                report.folder(folder, label).rescanned = True
            state = FolderState(uidvalidity=uidvalidity)
            due = []
        state.highestmodseq = status.highestmodseq
        again = self._look_again(server, state, due)
        new = server.metadata(server.uids_after(state.last_uid))
        return folder, label, state, status.uidnext, new, again

    @staticmethod
    def _flags_may_have_changed(status: FolderStatus, state: FolderState) -> bool:
        """Whether a watched \\Deleted message may have been undeleted: with
        CONDSTORE, only if the folder's HIGHESTMODSEQ moved, so that an idle
        folder holding \\Deleted messages still costs one round trip."""
        if not state.deleted:
            return False
        return status.highestmodseq is None or status.highestmodseq != state.highestmodseq

    def _look_again(self, server: MailServer, state: FolderState, due: list[int]) -> list[MessageMeta]:
        """Of the matured deferred, the watched \\Deleted and the unreadable
        messages, those to fetch now, sized as new ones are (sized as nothing,
        matured ham was fetched whole, past the 32 MB bound of a batch: 12 ham
        of 6 MB in one FETCH of 72 MB; a helper's review).  The state forgets
        the expunged and watches the \\Deleted, a matured ham among them too
        (it was dropped, and never learned once undeleted; a helper's review)."""
        uids = sorted(set(due) | state.deleted | set(state.unreadable) | set(state.undecided))
        metas = server.metadata(uids)
        for uid in set(uids) - {m.uid for m in metas}:
            state.let_go(uid)
        again = []
        for meta in metas:
            if meta.deleted:
                # An undecided copy flagged \Deleted is on its way out: the
                # other copy decides (this one is learned if undeleted).
                state.deferred.pop(meta.uid, None)
                state.undecided.pop(meta.uid, None)
                state.deleted.add(meta.uid)
            else:
                again.append(meta)
        return again

    def _hold_undecided(self, work: list, unread: list[FolderState]) -> None:
        """Of the undecided copies (``FolderState.undecided``), leave out of
        this pass those of a message with copies still in a spam and in a
        ham folder: they stay undecided, and are not even fetched.  A copy
        left alone is fetched and learned as its folder says.  The copies in
        a folder this pass could not look at (``unread``) count as there, and
        so do those a connection of this pass before this one found there."""
        labels = self._undecided_in
        for item in work:
            if item is None:
                continue
            _folder, label, state, _uidnext, _new, again = item
            present = {meta.uid for meta in again}
            for uid, digest in state.undecided.items():
                if uid in present:
                    labels.setdefault(digest, set()).add(label)
        for state in unread:
            for digest in state.undecided.values():
                labels.setdefault(digest, set()).update(("spam", "ham"))
        for item in work:
            if item is None:
                continue
            state, again = item[2], item[5]
            again[:] = [meta for meta in again
                        if len(labels.get(state.undecided.get(meta.uid, ""), ())) < 2]

    def _source(self, account: Account, folder: str) -> str:
        return f"imap:{account.name}/{folder}"

    def _batches(self, metas: Sequence[MessageMeta], size: int) -> list[list[MessageMeta]]:
        batches: list[list[MessageMeta]] = []
        current: list[MessageMeta] = []
        nbytes = 0
        for meta in metas:
            if current and (len(current) >= size or nbytes + meta.size > MAX_BATCH_BYTES):
                batches.append(current)
                current, nbytes = [], 0
            current.append(meta)
            nbytes += meta.size
        if current:
            batches.append(current)
        return batches

    def _sync_folder(self, server: MailServer, account: Account, store: ModelStore, folder: str,
                     label: Label, state: FolderState, uidnext: int, new: list[MessageMeta],
                     again: list[MessageMeta], report: AccountReport) -> None:
        key = state_key(account, folder)
        folder_report = report.folder(folder, label.value)
        min_age = account.ham_min_age_days * _DAY if label is Label.HAM else 0.0
        now = self.clock()
        # Matured deferred and undeleted messages first (they are older), then new arrivals.
        work = list(again) + list(new)
        if not work:  # the new or matured messages are gone again: remember that
            with store.session(source=self._source(account, folder)) as session:
                state.updated_at = now
                state.uidnext = max(state.uidnext, uidnext)
                session.set_state(key, state.to_json())
            return
        committed = 0
        batches = self._batches(work, account.batch_size)
        for number, batch in enumerate(batches, start=1):
            if self.should_stop():
                return
            t0 = time.perf_counter()
            # When the trainer saw the folder: the time of its verdicts, so
            # that a user's move made while it waited for the model's lock
            # (a sieve verdict, stamped later) is not undone by this older
            # reading (a helper's review).
            seen_at = self.clock()
            server.known_unreadable = set(state.unreadable)     # never the proof the folder reads
            fetched = server.bodies([m.uid for m in batch if not m.deleted])
            t1 = time.perf_counter()
            counts = FolderReport(folder, label.value)
            taken_back: list[tuple[str, Label | None]] = []     # what this batch took back, of which folder
            with store.session(source=self._source(account, folder)) as session:
                t2 = time.perf_counter()
                stored = FolderState.from_json(session.get_state(key), key)
                if stored.uidvalidity == state.uidvalidity and stored.last_uid > state.last_uid:
                    # another trainer (another config on this model) got here first
                    state.last_uid = stored.last_uid
                pending = []
                for meta in batch:
                    if self.should_stop():
                        break
                    self.progress(1)
                    is_due = meta.uid in state.deferred
                    looked_again = (is_due or meta.uid in state.deleted or meta.uid in state.unreadable
                                    or meta.uid in state.undecided)
                    failed_passes = state.let_go(meta.uid)
                    if meta.uid > state.last_uid:
                        state.last_uid = meta.uid
                    elif not looked_again:
                        continue
                    if meta.deleted or meta.uid in fetched.deleted:
                        state.deleted.add(meta.uid)  # not now; learned if undeleted
                        continue
                    if meta.uid in fetched.unreadable:
                        if fetched.others_given:  # else it may be an outage's victim, not bad
                            failed_passes += 1
                        self._unreadable(account, folder, meta.uid, fetched.unreadable[meta.uid],
                                         failed_passes, state, counts)
                        continue
                    raw = fetched.raw.get(meta.uid)
                    if raw is None:  # expunged meanwhile: nothing to learn
                        continue
                    young = not is_due and min_age > 0 and now - meta.arrived < min_age
                    where = (folder, state.uidvalidity, meta.uid)
                    kept = self._handle(session, account, where, raw, label, young, counts, seen_at,
                                        taken_back)
                    if kept == "deferred":
                        state.deferred[meta.uid] = meta.arrived
                    elif isinstance(kept, str):
                        state.undecided[meta.uid] = kept
                    elif kept is not None:
                        pending.append(kept)
                if pending and account.mode == Mode.UNTIL_NO_ERROR:
                    self._until_no_error(session, pending, label, counts, seen_at)
                counts.deferred = len(state.deferred)
                self._bound_watched(session, account, folder, label, state)
                if number == len(batches) and not self.should_stop():
                    state.uidnext = max(state.uidnext, uidnext)  # the folder is done
                state.updated_at = self.clock()
                session.set_state(key, state.to_json())
                t3 = time.perf_counter()
            # the session committed: only now do its counts become true
            t4 = time.perf_counter()
            report.timings["imap"] += t1 - t0
            report.timings["learn"] += t3 - t2
            report.timings["store"] += (t2 - t1) + (t4 - t3)
            folder_report.add(counts)
            for spam_folder, before in taken_back:
                spam_report = report.folder(spam_folder, Label.SPAM.value)
                if before is None:
                    spam_report.learned -= 1
                else:
                    spam_report.relabelled -= 1
            committed += len(batch)
            if self.on_batch is not None:
                self.on_batch(account, folder, committed)

    def _bound_watched(self, session: LearningSession, account: Account, folder: str, label: Label,
                       state: FolderState) -> None:
        excess = len(state.deleted) - MAX_WATCHED_DELETED
        if excess > 0:
            state.deleted = set(sorted(state.deleted)[excess:])
            log.warning("account %s: folder %s: the %d oldest messages flagged \\Deleted are no longer "
                        "watched (it keeps %d); if undeleted, they are not learned (expunge the folder)",
                        account.name, folder, excess, MAX_WATCHED_DELETED)
        excess = len(state.undecided) - MAX_WATCHED_DELETED
        if excess > 0 and label is Label.HAM:
            # Each is looked at on every pass: a user who keeps copies in
            # Junk and INBOX by the thousand must not make every pass slower.
            # Let go of by message, in the spam folders too, in this commit:
            # each folder let go of its own oldest UIDs, in another order,
            # and the copy still watched was learned on the next pass, the
            # other one still there (a helper's review).  A spam folder's
            # are bounded through its ham folders' (read before them).
            dropped = {state.undecided[uid] for uid in sorted(state.undecided)[:excess]}
            state.undecided = {uid: digest for uid, digest in state.undecided.items()
                               if digest not in dropped}
            for spam_folder in self._spam_folders:
                key = state_key(account, spam_folder)
                other = FolderState.from_json(session.get_state(key), key)
                kept = {uid: digest for uid, digest in other.undecided.items() if digest not in dropped}
                if len(kept) < len(other.undecided):
                    other.undecided = kept
                    session.set_state(key, other.to_json())
            log.warning("account %s: folder %s: the %d oldest messages that also have a copy the "
                        "other way are no longer watched (it keeps %d), nor their copies in spam "
                        "folders; the ledger keeps what it has of them", account.name, folder,
                        len(dropped), MAX_WATCHED_DELETED)

    def _unreadable(self, account: Account, folder: str, uid: int, why: str, failed_passes: int,
                    state: FolderState, counts: FolderReport) -> None:
        """A message the server cannot give is an error on each pass and is
        fetched again on the next, until it has failed on ``UNREADABLE_PASSES``
        passes that gave other bodies: passed by at once, a message the
        server failed for a while, or whose file the admin then restored, was
        lost for good (a helper's review).  The rest of its batch is learned
        all the same, so it never holds the account up."""
        counts.errors += 1
        if failed_passes >= UNREADABLE_PASSES:
            log.warning("account %s: folder %s: message UID %d cannot be read from the server "
                        "(%d passes); it is passed by and never learned (%s)", account.name, folder,
                        uid, failed_passes, why)
            return
        state.unreadable[uid] = failed_passes
        log.warning("account %s: folder %s: message UID %d cannot be read from the server; it is "
                    "tried again on the next pass (failed passes: %d of %d; %s)", account.name, folder,
                    uid, failed_passes, UNREADABLE_PASSES, why)

    def _handle(self, session: LearningSession, account: Account, where: tuple[str, int, int],
                raw: bytes, label: Label, young: bool, counts: FolderReport, seen_at: float,
                taken_back: list[tuple[str, Label | None]]):
        """Learn one message (``where``: folder, its UIDVALIDITY, UID); returns
        "deferred", the digest of a message left undecided (``_undecided``),
        or (raw, hashes) kept for another round."""
        uid = where[2]
        try:
            row = session.learned(raw)
            known = Label(row.label) if row else None
            digest = session.digest(raw)
            sighting = self._sightings.get(digest) if label is Label.HAM else None
            if sighting is not None:
                return self._undecided(session, account, where, digest, row, sighting, counts,
                                       taken_back)
            if label is Label.SPAM:
                # Spam folders are read first: a copy in a ham folder, read
                # later on this pass, finds this one here.  The first copy's
                # ``before``: a second one finds what the first one taught.
                self._sightings.setdefault(digest, _Sighting(
                    seen_at, known, row if known is Label.HAM else None, [])).copies.append(where)
            if known is label:
                # Learned again all the same: nothing is counted, but the
                # row then says this user gave the verdict too, and when (a
                # second review: alice junked what bob had junked first,
                # and her quick move back out waited ham_min_age_days).
                session.learn(raw, label, verdict_at=seen_at)
                counts.already_known += 1
                return None
            if young and (known is None or not self._own_verdict(account, row.source)):
                # A young message known the other way is a rescue only if
                # this user gave that verdict: in a shared model, bob's
                # untouched copy of a campaign alice junked was learned as
                # ham at once, min age or not (a helper's review).
                return "deferred"
            # The message is read (parsed, tokenized) here, before anything
            # is counted: a failure on it below leaves the model untouched.
            hashes = session.classifier.hashes(raw)
            if known is None and account.mode != Mode.ALL and self._model_ready(session):
                if session.classifier.score(raw).label is label:
                    counts.correct += 1
                    return (raw, hashes)
        except MessageError as exc:
            # With its UID: the admin the exit 65 is mailed to must be able to
            # find the message (the line named the folder only; a reviewer's finding).
            log.warning("account %s: folder %s: message UID %d could not be learned: %s",
                        account.name, counts.folder, uid, exc)
            counts.errors += 1
            return None
        except READING_FAILURES as exc:
            # A tokenizer or parser bug on one crafted message: that message
            # is an error, the pass goes on (a crash here rolled the batch
            # back and met the same message on every later run, and the
            # accounts after it were never trained; a helper's review).
            log.error("account %s: folder %s: message UID %d could not be learned (internal "
                      "error, please report: %s: %s)", account.name, counts.folder, uid,
                      type(exc).__name__, exc,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            counts.errors += 1
            return None
        outcome = session.learn(raw, label, hashes=hashes, verdict_at=seen_at)
        if outcome.action == Action.RELABELLED:
            counts.relabelled += 1
        elif outcome.action == Action.LEARNED:
            counts.learned += 1
        else:
            counts.already_known += 1
        self._taught(outcome, label, counts)
        return None

    def _taught(self, outcome: LearnOutcome, label: Label, counts: FolderReport) -> None:
        """Note which spam folder's counts a learn of a watched message went to."""
        sighting = self._sightings.get(outcome.digest) if label is Label.SPAM else None
        if sighting is not None and outcome.action in (Action.LEARNED, Action.RELABELLED):
            sighting.taught_in = counts.folder

    def _undecided(self, session: LearningSession, account: Account, where: tuple[str, int, int],
                   digest: str, row: LedgerRow | None, sighting: _Sighting, counts: FolderReport,
                   taken_back: list[tuple[str, Label | None]]) -> str:
        """A copy in a ham folder of a message met in a spam folder on this
        pass: a user's COPY, not MOVE, or a pass between a client's COPY and
        its EXPUNGE.  The label of the folder read last won (the ham
        folder's: spam folders are read first; a helper's review).  Now
        neither copy is learned on this pass: what the spam copy taught on
        it is taken back (the ledger keeps what it had before, or nothing),
        and both copies are watched, the one left alone deciding on a later
        pass (``_hold_undecided``).  Returns the digest."""
        folder, _uidvalidity, uid = where
        # Learned or relabelled by a spam copy of this pass, and by no other
        # learner since (a sieve verdict meanwhile is newer than both copies).
        taught = (row is not None and row.label == Label.SPAM.value and sighting.before is not Label.SPAM
                  and row.learned_at >= sighting.seen_at
                  and row.source.startswith(self._source(account, "")))
        if taught:
            session.put_back(digest, sighting.before_row)
            if sighting.taught_in is not None:      # else not in this pass's counts
                taken_back.append((sighting.taught_in, sighting.before))
            kept = sighting.before
        else:
            kept = Label(row.label) if row else None
        for spam_folder, uidvalidity, spam_uid in sighting.copies:
            key = state_key(account, spam_folder)
            other = FolderState.from_json(session.get_state(key), key)
            if other.uidvalidity == uidvalidity:
                other.undecided[spam_uid] = digest
                session.set_state(key, other.to_json())
        counts.undecided += 1
        spam_folder, _uidvalidity, spam_uid = sighting.copies[0]
        log.warning("account %s: folder %s: message UID %d is also in spam folder %s (UID %d), copied "
                    "rather than moved: neither copy is learned on this pass (%s); the one left alone "
                    "decides on a later pass", account.name, folder, uid, spam_folder, spam_uid,
                    f"the ledger keeps it as {kept.value}" if kept else "it stays unlearned")
        return digest

    def _own_verdict(self, account: Account, source: str) -> bool:
        """Whether a ledger row's source is this account's own verdict: its
        folders here, or its moves through the sieve or the HTTP service.

        Those name the user as Dovecot and the MTA do (``bob``), which for
        an own-model user may be another spelling of the account's user
        (``Bob``, matched to ``[users] own_model = ["bob"]``): the user's
        own model's ledger holds both, and the account's rescue of a message
        ``spamlearnc -u bob`` had junked waited ``ham_min_age_days`` (a
        helper's review).  On the shared model too a name is the user's
        ignoring case, as an own model's name is: Dovecot lower-cases
        logins by default (``auth_username_format = %Lu``), so the moves of
        the login ``Dave`` came as ``sieve:dave`` and his rescues waited.
        """
        if source.startswith(self._source(account, "")):
            return True
        who = verdict_giver(source)
        if who is None:
            return False
        user = account.model_user
        if who == user:
            return True
        own = self.settings.own_model_name(user)
        if own is not None:
            return self.settings.own_model_name(who) == own
        return who.lower() == user.lower()

    def _model_ready(self, session: LearningSession) -> bool:
        """Train-on-error needs a model that can err; before that, learn everything."""
        need = max(self.settings.min_messages, 1)
        return session.classifier.n_spam >= need and session.classifier.n_ham >= need

    def _until_no_error(self, session: LearningSession, pending: list, label: Label,
                        counts: FolderReport, seen_at: float) -> None:
        """Re-score what the model got right with the updated model; learn new mistakes."""
        for _round in range(Mode.MAX_ROUNDS - 1):
            still_right = []
            for raw, hashes in pending:
                if session.classifier.score(raw).label is label:
                    still_right.append((raw, hashes))
                    continue
                outcome = session.learn(raw, label, hashes=hashes, verdict_at=seen_at)
                if outcome.action == Action.LEARNED:
                    counts.learned += 1
                    counts.correct -= 1
                    self._taught(outcome, label, counts)
            if len(still_right) == len(pending):
                return
            pending = still_right

