"""The exception tree of spamlearn.

Every error that spamlearn raises on purpose about what it was given to
work on -- a message, a model or ledger file, a configuration, a server --
derives from ``SpamlearnError``, so an embedding filter can catch one type.
A wrong argument, a mistake in the calling code, is ``ValueError`` or
``TypeError``, as in Python and scikit-learn: a label other than ham or
spam (``Label.learnable``), cutoffs out of order, ``n_features`` not a
power of two, one message where ``MessageVectorizer`` wants a list::

    SpamlearnError
     ├── MessageError          empty, oversized or unreadable input
     ├── InputMissingError     a corpus index that does not exist or
     │                         cannot be read
     ├── CorpusIndexError      a corpus index not in TREC's form
     ├── ModelError
     │    ├── NotFittedError   scoring with a model that learned nothing
     │    ├── ModelFileError   a model file that is missing, truncated,
     │    │                    foreign or of an unknown format version
     │    └── BackupError      a backup archive spamlearn did not write, or
     │                         whose model and ledger disagree
     ├── LedgerError           the learned-message ledger cannot be read,
     │                         written, or disagrees with its model
     ├── StoreBusyError        another learner holds the model's lock
     ├── ConfigError           a bad config file, option or setting
     └── ImapError
          ├── ImapConnectionError  cannot reach, or lost, the server
          │    ├── ImapPassTimeoutError  a pass longer than pass_timeout
          │    └── ImapStoppedError      an exchange cut off by SIGTERM
          ├── ImapAuthError        the server refused the login
          └── ImapStateError       a folder is missing or unreadable

The command line maps each type to an exit code (see ``spamlearn.cli``) and
the HTTP service to a 4xx/503 status; neither shows a traceback to the user.
"""

from __future__ import annotations

__all__ = [
    "SpamlearnError",
    "MessageError",
    "READING_FAILURES",
    "InputMissingError",
    "CorpusIndexError",
    "ModelError",
    "NotFittedError",
    "ModelFileError",
    "BackupError",
    "LedgerError",
    "StoreBusyError",
    "ConfigError",
    "ImapError",
    "ImapConnectionError",
    "ImapPassTimeoutError",
    "ImapStoppedError",
    "ImapAuthError",
    "ImapStateError",
]


class SpamlearnError(Exception):
    """Base class of every error spamlearn raises on purpose."""


class MessageError(SpamlearnError):
    """The input is not a message spamlearn can work with."""


#: What a bug in reading one hostile message raises (the parser, the
#: tokenizer): made that message's error where one message must not stop
#: the rest (``parse_message``, the IMAP trainer).
READING_FAILURES = (ValueError, LookupError, TypeError, IndexError, KeyError, UnicodeError, RecursionError)


class InputMissingError(SpamlearnError):
    """An input file (a corpus index) does not exist or cannot be read."""


class CorpusIndexError(SpamlearnError):
    """A corpus index is not in TREC's form ("spam PATH" or "ham PATH" per line)."""


class ModelError(SpamlearnError):
    """The model cannot do what was asked."""


class NotFittedError(ModelError):
    """The model has not learned any message yet."""


class ModelFileError(ModelError):
    """A model file is missing, truncated, foreign or of another version."""


class BackupError(ModelError):
    """A backup archive is not one spamlearn wrote, or its pair disagrees."""


class LedgerError(SpamlearnError):
    """The ledger of learned messages cannot be used."""


class StoreBusyError(SpamlearnError):
    """Another process holds the model's lock for longer than we wait."""


class ConfigError(SpamlearnError):
    """The configuration file or an option is invalid."""


class ImapError(SpamlearnError):
    """Base class of the IMAP trainer's errors."""


class ImapConnectionError(ImapError):
    """The IMAP server cannot be reached, or the connection broke."""


class ImapPassTimeoutError(ImapConnectionError):
    """A pass over one account took longer than its ``pass_timeout`` (not retried)."""


class ImapStoppedError(ImapConnectionError):
    """An exchange with the server cut off because the trainer was asked to
    stop (SIGTERM, SIGINT): not retried."""


class ImapAuthError(ImapError):
    """The IMAP server refused the account's credentials."""


class ImapStateError(ImapError):
    """A folder is missing, or the server answered something unexpected."""
