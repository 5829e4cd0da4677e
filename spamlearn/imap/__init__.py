"""The IMAP trainer: learn from what users move into and out of their spam folders.

``spamlearn train`` (see ``spamlearn.imap.cli``) reads the ``[[accounts]]``
of the config file (``config``), connects read-only (``connection``) and
turns folder contents into learn and relabel actions (``trainer``).
"""

import importlib

# Names are imported on first use, not with the package: every ``spamlearn``
# command registers ``train`` and ``status`` (so imports spamlearn.imap.cli),
# and the trainer's imapclient and ssl cost ~50 ms of the start-up of
# ``spamlearn filter``, run once per message (measured 2026-11-29).
_HOMES = {
    "config": ("Account", "Mode", "Security", "load_accounts", "parse_account", "parse_duration"),
    "connection": ("MailServer", "connect"),
    "trainer": ("AccountReport", "FolderReport", "FolderState", "Trainer", "resolve_folders", "store_for"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [name for names in _HOMES.values() for name in names]


def __getattr__(name: str):
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
