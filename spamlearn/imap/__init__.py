"""The IMAP trainer: learn from what users move into and out of their spam folders.

``spamlearn train`` (see ``spamlearn.imap.cli``) reads the ``[[accounts]]``
of the config file (``config``), connects read-only (``connection``) and
turns folder contents into learn and relabel actions (``trainer``).
"""

from .config import Account, Mode, Security, load_accounts, parse_account, parse_duration
from .connection import MailServer, connect
from .trainer import AccountReport, FolderReport, FolderState, Trainer, resolve_folders, store_for

__all__ = [
    "Account", "Mode", "Security", "load_accounts", "parse_account", "parse_duration",
    "MailServer", "connect",
    "AccountReport", "FolderReport", "FolderState", "Trainer", "resolve_folders", "store_for",
]
