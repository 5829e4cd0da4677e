"""What a Dovecot imapsieve setup looks like: folders, paths, local or HTTP learning.

One frozen ``SieveOptions`` is read from the ``[sieve]`` table of the config
file and overridden by command-line flags; the templates, the installer and
the drain all take it, so the files an admin installs and the spool the
drain empties cannot disagree about a path::

    [sieve]
    spool = "/var/spool/spamlearn"        # the queue the pipe program writes to
    spam_folder = "Junk"                  # moved/copied in: spam
    trash_folder = "Trash"                # moved out of Junk into it: nothing
    not_ham_folders = []                  # more folders that are not "ham"
    append_rule = false                   # APPEND into Junk counts too (Outlook)
    http_url = ""                         # learn through `spamlearn serve` instead
    http_token_file = ""                  # bearer token for it, readable by the mail user
    conf_dir = "/etc/dovecot/conf.d"
    sieve_dir = "/etc/dovecot/sieve/spamlearn"
    pipe_bin_dir = "/usr/local/lib/spamlearn/sieve-pipe"
    first_rule = 1                        # imapsieve_mailboxN_ numbering starts here
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The user names the pipe program and the drain accept are those that may
# have a model of their own: one definition, in config (re-exported here).
from ..config import USER_NAME_RE, Settings, as_path, check_user_name, refuse_unknown, source_of
from ..errors import ConfigError

__all__ = ["SieveOptions", "USER_NAME_RE", "check_user_name"]

# Folder names go into Sieve strings and Dovecot config values: printable,
# no quote or backslash (escaping rules differ between the two), no "${"
# (a Sieve variable) and no control characters.
_BAD_FOLDER_RE = re.compile(r'["\\\x00-\x1f\x7f]|\$\{')
# What the URL may contain: it is pasted into a /bin/sh single-quoted string.
_URL_RE = re.compile(r"https?://[A-Za-z0-9.:\[\]_-]+(/[A-Za-z0-9._~/-]*)?")


def _check_folder(name: str, what: str, pattern: bool = False) -> str:
    """``name`` if it can be pasted into Dovecot's config and a Sieve string;
    ``pattern``: may hold wildcards (the not-ham folders are Sieve
    ``:matches`` patterns; the spam and trash folders are names: Dovecot
    reads ``*`` and ``?`` in ``imapsieve_mailboxN_name`` as wildcards even
    quoted, and a spam folder ``*`` made every move anywhere spam)."""
    if not name or _BAD_FOLDER_RE.search(name) or name != name.strip():
        raise ConfigError(f"invalid {what} {name!r}: no quotes, backslashes, '${{', control "
                          "characters or surrounding spaces")
    if not pattern and any(c in name for c in "*?%"):
        raise ConfigError(f"invalid {what} {name!r}: one folder's name, without the wildcards * ? %")
    return name


def _check_abs_path(path: Path, what: str) -> Path:
    text = str(path)
    # Paths are pasted into /bin/sh single quotes and Dovecot config values.
    if not path.is_absolute() or any(c in text for c in "'\"\\\n\r\0 "):
        raise ConfigError(f"{what} must be an absolute path without quotes or spaces, got {text!r}")
    return path


@dataclasses.dataclass(frozen=True)
class SieveOptions:
    """One imapsieve setup.

    Parameters
    ----------
    spool : Path
        The queue folder (``tmp/``, ``new/``, ``failed/`` below it).  The
        pipe program, running as the mail user, writes into it; ``spamlearn
        sieve drain`` empties it.  Default ``/var/spool/spamlearn``.
    spam_folder : str
        The folder whose arrivals are spam, default ``Junk`` (Dovecot's and
        Thunderbird's name; Outlook's is ``Junk E-mail``).
    trash_folder : str
        Moving a message out of the spam folder into it learns nothing: the
        user threw spam away, which says nothing about ham.
    not_ham_folders : tuple of str
        More folders treated like Trash.  Sieve ``:matches`` patterns, so
        ``Trash/*`` covers Trash's subfolders.
    append_rule : bool
        Also report a message APPENDed into the spam folder as spam.  Some
        clients (Outlook, some mobile apps) "move" by APPEND to the target
        and delete from the source, which imapsieve sees as APPEND, not COPY.
        Off by default because a migration tool that uploads a whole mailbox
        (imapsync) would then teach every old Junk message.
    http_url : str or None
        Learn through ``spamlearn serve``'s ``POST /learn`` instead of the
        spool; the spool stays the fallback when the service fails.
    http_token_file : Path or None
        File with the service's bearer token; must be readable by the mail user.
    conf_dir, sieve_dir, pipe_bin_dir : Path
        Where ``install`` puts the Dovecot config snippet, the two Sieve
        scripts and the pipe program (Dovecot's ``sieve_pipe_bin_dir``).
    first_rule : int
        The first ``imapsieve_mailboxN_`` number, for servers that already
        have imapsieve rules (Dovecot stops at the first missing number).
    """

    spool: Path = Path("/var/spool/spamlearn")
    spam_folder: str = "Junk"
    trash_folder: str = "Trash"
    not_ham_folders: tuple[str, ...] = ()
    append_rule: bool = False
    http_url: str | None = None
    http_token_file: Path | None = None
    conf_dir: Path = Path("/etc/dovecot/conf.d")
    sieve_dir: Path = Path("/etc/dovecot/sieve/spamlearn")
    pipe_bin_dir: Path = Path("/usr/local/lib/spamlearn/sieve-pipe")
    first_rule: int = 1

    def __post_init__(self) -> None:
        _check_folder(self.spam_folder, "spam folder")
        _check_folder(self.trash_folder, "trash folder")
        for name in self.not_ham_folders:
            _check_folder(name, "not-ham folder", pattern=True)
        if self.spam_folder in (self.trash_folder, *self.not_ham_folders):
            raise ConfigError(f"the spam folder {self.spam_folder!r} cannot also be a trash "
                              "or not-ham folder")
        for what in ("spool", "conf_dir", "sieve_dir", "pipe_bin_dir"):
            _check_abs_path(getattr(self, what), what)
        if self.http_token_file is not None:
            _check_abs_path(self.http_token_file, "http_token_file")
        if self.http_url is not None:
            if not _URL_RE.fullmatch(self.http_url):
                raise ConfigError(f"http_url must look like http://127.0.0.1:8731, got {self.http_url!r}")
            # the pipe program appends "/learn"
            object.__setattr__(self, "http_url", self.http_url.rstrip("/"))
        if self.http_token_file is not None and self.http_url is None:
            raise ConfigError("http_token_file given without http_url")
        if not 1 <= self.first_rule <= 1000:
            raise ConfigError(f"first_rule must be between 1 and 1000, got {self.first_rule}")

    @property
    def skip_folders(self) -> tuple[str, ...]:
        """Folders a move out of the spam folder into teaches nothing: also
        the spam and trash folders' subfolders (Junk/2026 is spam filed
        away, not ham; a helper's review, 2026-11-29), with either of
        Dovecot's hierarchy separators."""
        return (self.spam_folder, f"{self.spam_folder}/*", f"{self.spam_folder}.*",
                self.trash_folder, f"{self.trash_folder}/*", f"{self.trash_folder}.*",
                *self.not_ham_folders)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SieveOptions:
        """Options from the ``[sieve]`` table, then ``overrides`` (None = not given).

        Raises
        ------
        ConfigError
            An unknown key, a value of the wrong type, or an invalid value.
        """
        table = settings.section("sieve")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source_of(settings)}[sieve] must be a table")
        where = source_of(settings)
        refuse_unknown(table, {f.name for f in dataclasses.fields(cls)}, f"{where}unknown key(s) in [sieve]")
        base = settings.config_file.parent if settings.config_file else None
        values = {key: _coerce(key, value, base, f"{where}[sieve] {key}") for key, value in table.items()}
        # Flags are checked alike, but their messages must not blame the
        # file, and their relative paths are the shell's: from the folder
        # the command runs in, not the config file's.
        flags = {key: value for key, value in overrides.items() if value is not None}
        for key, value in flags.items():
            values[key] = _coerce(key, value, Path.cwd(), f"[sieve] {key}")
        if values.get("http_url") == "":
            values["http_url"] = None
        try:
            return cls(**values)
        except ConfigError as exc:
            if flags or not where:
                raise
            # Every value came from the file: say which file to fix.
            raise ConfigError(f"{where}[sieve]: {exc}") from None


def _coerce(key: str, value: Any, base: Path | None, what: str) -> Any:
    if key in ("spool", "conf_dir", "sieve_dir", "pipe_bin_dir", "http_token_file"):
        if value == "" and key == "http_token_file":
            return None
        if isinstance(value, Path):  # a flag
            value = str(value)
        # An empty string would be "." below the config's folder: refused.
        return as_path(value, what, base)
    if key == "not_ham_folders":
        # A bare string is refused, not iterated into one-letter folders.
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{what} must be a list of folder names, got {value!r}")
        return tuple(value)
    if key == "append_rule":
        if not isinstance(value, bool):
            raise ConfigError(f"{what} must be true or false, got {value!r}")
        return value
    if key == "first_rule":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{what} must be an integer, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, got {value!r}")
    return value
