"""Exit codes of every spamlearn command, and the error -> code table.

Exit codes follow sysexits(3), which Postfix's pipe(8) and procmail already
understand (75 = try again later):

=====  ======================================================================
code   meaning
=====  ======================================================================
0      success (``filter``: spam, as bogofilter; with ``--exit-zero``,
       always)
1      ``filter``: ham
2      ``filter``: unsure; any other command: a command line that cannot be
       parsed (an unknown option, a missing argument, a value of the wrong
       type or outside the range its ``--help`` gives, such as ``serve
       --port 99999``), or that is refused before anything is done
       (``learn`` without ``--spam`` or ``--ham``, ``backup --user`` naming
       someone without an own model, an output path that is a folder or not
       writable)
3      ``filter``: error (the message is passed through, without any
       ``X-Spam-*`` header it came with; unchanged if ``filter`` could not
       even start), a command line it cannot run with included
65     EX_DATAERR: an input is not a usable message (the others were
       processed; ``eval``: scored 0.5 in the figures); ``restore``: the
       archive is not a spamlearn backup, or its model and ledger
       disagree; ``eval``: the index is not in TREC's form
66     EX_NOINPUT: an input file or folder (``eval``: the index, or a
       message it lists) does not exist or is unreadable
69     EX_UNAVAILABLE: the IMAP server cannot be reached, or answered so
       slowly that a ``train`` pass outlived ``pass_timeout`` (``serve``:
       the address is taken, or ``spamd_listen``'s, or a worker could not
       start and uvicorn stopped the others)
70     EX_SOFTWARE: internal error (a bug)
74     EX_IOERR: the model file or ledger is missing, corrupt or not
       writable (``serve``: no usable model to start with; ``sieve drain``:
       nor its spool readable and writable); standard output is closed or
       cannot be written (``filter``: nor standard input read)
75     EX_TEMPFAIL: another spamlearn holds the model's lock (or another
       program the ledger's): retry later
76     EX_PROTOCOL: the IMAP server answered unexpectedly (e.g. a missing
       folder)
77     EX_NOPERM: the IMAP server refused the login
78     EX_CONFIG: a setting is wrong, in the configuration file, the
       environment, or given as an option whose value spamlearn checks
       itself (``resize --features 1000``, ``train --every 15x``)
128+N  killed by signal N (143: SIGTERM, from cron's ``timeout`` or
       systemd; ``serve`` stops gracefully and exits 0; ``backup`` and
       ``restore`` first remove their temporary copies; a single ``train``
       pass first commits what it learned, and the next run goes on from
       there; what SIGKILL left, the next run removes once a day old)
=====  ======================================================================
"""

from __future__ import annotations

from .errors import (
    BackupError,
    ConfigError,
    CorpusIndexError,
    ImapAuthError,
    ImapConnectionError,
    ImapStateError,
    InputMissingError,
    LedgerError,
    MessageError,
    ModelError,
    SpamlearnError,
    StoreBusyError,
)

__all__ = ["ExitCode", "exit_code_for"]


class ExitCode:
    OK = 0
    FILTER_HAM = 1
    FILTER_UNSURE = 2
    USAGE = 2
    FILTER_ERROR = 3
    DATAERR = 65
    NOINPUT = 66
    UNAVAILABLE = 69
    SOFTWARE = 70
    IOERR = 74
    TEMPFAIL = 75
    PROTOCOL = 76
    NOPERM = 77
    CONFIG = 78


_ERROR_CODES: list[tuple[type[BaseException], int]] = [
    (StoreBusyError, ExitCode.TEMPFAIL),
    (ConfigError, ExitCode.CONFIG),
    (MessageError, ExitCode.DATAERR),
    (CorpusIndexError, ExitCode.DATAERR),
    (InputMissingError, ExitCode.NOINPUT),
    (BackupError, ExitCode.DATAERR),
    (ImapAuthError, ExitCode.NOPERM),
    (ImapConnectionError, ExitCode.UNAVAILABLE),
    (ImapStateError, ExitCode.PROTOCOL),
    (ModelError, ExitCode.IOERR),
    (LedgerError, ExitCode.IOERR),
    (SpamlearnError, ExitCode.SOFTWARE),
]


def exit_code_for(exc: BaseException) -> int:
    for kind, code in _ERROR_CODES:
        if isinstance(exc, kind):
            return code
    return ExitCode.SOFTWARE
