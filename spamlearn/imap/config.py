"""The ``[[accounts]]`` tables of the config file, parsed and validated once.

Example (two accounts, one with its own model)::

    [[accounts]]
    name = "alice"                       # default: username@host
    host = "mail.example.org"
    security = "tls"                     # tls (993), starttls (143), plain (143)
    username = "alice@example.org"
    password_file = "/etc/spamlearn/alice.secret"   # or password_env = "ALICE_IMAP_PW"
    spam_folders = ["\\\\Junk"]          # a leading backslash = SPECIAL-USE attribute
    ham_folders = ["INBOX", "Archive/*"] # shell patterns are matched against LIST
    ignore_folders = ["\\\\Trash"]       # never scanned, even if a pattern matches
    ham_min_age_days = 3                 # ham folders: wait until the user had time
    mode = "all"                         # all | error | until-no-error
    own_model = false
    # user = "alice"                     # whose model and verdicts these are (default: username)

A password is never taken from the command line (it would show in ``ps``)
nor from the config file itself (which is often world-readable): it comes
from a file, read when connecting, or from an environment variable.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
import math
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import Settings, as_float, as_int, as_path, check_user_name, refuse_unknown, source_of
from ..errors import ConfigError

__all__ = ["Account", "Security", "Mode", "load_accounts", "parse_account", "parse_duration"]


class Security:
    TLS = "tls"
    STARTTLS = "starttls"
    PLAIN = "plain"
    ALL = (TLS, STARTTLS, PLAIN)


class Mode:
    """What a folder pass learns.

    ``all``: every message not learned before.  ``error``: only what the
    model being trained gets wrong or is unsure of (train-on-error, as
    DSPAM's TOE and SpamBayes's train-on-mistakes; keeps the model small
    and avoids re-teaching it what it already knows, e.g. the spam the MDA
    already filed into Junk).  ``until-no-error``: as ``error``, then
    re-score the batch's remaining messages with the updated model and learn
    the new mistakes, until a round learns nothing (at most
    ``MAX_ROUNDS`` rounds).  A message is never counted twice either way:
    the ledger forbids it, unlike SpamBayes's train-to-exhaustion.
    """

    ALL = "all"
    ERROR = "error"
    UNTIL_NO_ERROR = "until-no-error"
    CHOICES = (ALL, ERROR, UNTIL_NO_ERROR)
    MAX_ROUNDS = 5


_DEFAULT_PORTS = {Security.TLS: 993, Security.STARTTLS: 143, Security.PLAIN: 143}

_KEYS = {
    "name", "host", "port", "security", "username", "password_file", "password_env",
    "spam_folders", "ham_folders", "ignore_folders", "ham_min_age_days", "mode", "own_model",
    "allow_plaintext", "ca_file", "timeout", "pass_timeout", "retries", "retry_delay", "batch_size",
    "user",
}


@dataclasses.dataclass(frozen=True)
class Account:
    """One IMAP account to train from (validated; no secret inside).

    Attributes
    ----------
    name : str
        Used in messages, the ledger's folder state keys and ``status``.
    host, port, security :
        Where and how to connect; ``plain`` only to a loopback address
        unless ``allow_plaintext``.
    username : str
        The IMAP login.
    user : str or None
        The user whose mail this is, as Dovecot, the sieve hook and the
        HTTP service name them, when the login is not that name: a Dovecot
        master-user login (``alice*spamlearn``), or ``alice@example.org``
        where Dovecot knows ``alice`` (``auth_username_format = %n``).  It
        picks the own model the account trains (``model_user``).
    password_file, password_env :
        Exactly one is set; the password is read by ``password()`` only
        when connecting, so it is never part of a repr or a log line.
    spam_folders, ham_folders, ignore_folders : tuple of str
        Folder names, shell patterns (``Archive/*``) or SPECIAL-USE
        attributes (``\\Junk``).
    ham_min_age_days : float
        Messages in a ham folder that arrived less than this long ago are
        left for a later pass (unless they are a rescue of known spam).
    mode : str
        One of ``Mode.CHOICES``.
    own_model : bool
        Train the user's own model instead of the shared one.
    timeout : float
        Seconds for connecting and for each server answer.
    pass_timeout : float
        Seconds one pass over the account may take in all, reconnects
        included (0: no bound).  A server that trickles its answers never
        trips ``timeout``; this stops such a pass (exit 69), keeping what
        it learned, so that it does not hold the run lock for ever.
    retries, retry_delay :
        Reconnect this many times after a dropped connection, waiting
        ``retry_delay * 2**attempt`` seconds, at most an hour.
    batch_size : int
        Messages per FETCH and per commit.
    """

    name: str
    host: str
    username: str
    port: int = 993
    security: str = Security.TLS
    password_file: Path | None = dataclasses.field(default=None, repr=False)
    password_env: str | None = dataclasses.field(default=None, repr=False)
    spam_folders: tuple[str, ...] = ()
    ham_folders: tuple[str, ...] = ()
    ignore_folders: tuple[str, ...] = ("\\Trash",)
    ham_min_age_days: float = 0.0
    mode: str = Mode.ALL
    own_model: bool = False
    user: str | None = None
    allow_plaintext: bool = False
    ca_file: Path | None = None
    timeout: float = 60.0
    pass_timeout: float = 3600.0
    retries: int = 3
    retry_delay: float = 2.0
    batch_size: int = 200

    @property
    def model_user(self) -> str:
        """The user name that picks the model this account trains."""
        return self.user or self.username

    def password(self, env: Mapping[str, str] | None = None) -> str:
        """Read the password now (file or environment).

        Raises
        ------
        ConfigError
            The file is missing, unreadable or not UTF-8, or the variable is
            unset or not UTF-8.
        """
        if self.password_env is not None:
            return self._password_from_env(os.environ if env is None else env)
        assert self.password_file is not None  # parse_account guarantees one of the two
        return self._password_from_file(self.password_file)

    def _password_from_env(self, env: Mapping[str, str]) -> str:
        value = env.get(self.password_env or "")
        if not value:
            raise ConfigError(f"account {self.name}: environment variable "
                              f"{self.password_env} (password_env) is not set")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # Bytes that are not UTF-8 reach os.environ as lone surrogates
            # (PEP 383), which no login can send: it crashed the run at the
            # login (70), the accounts after it untrained (a reviewer's finding).
            raise ConfigError(f"account {self.name}: environment variable {self.password_env} "
                              f"(password_env) is not UTF-8") from None
        return value

    def _password_from_file(self, path: Path) -> str:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"account {self.name}: cannot read password_file "
                              f"{path}: {exc.strerror}") from exc
        except UnicodeDecodeError:
            # An editor that saved Latin-1 ("p\xe4ss"): guessing the charset
            # would send a password the user may never have typed, and the
            # crash it was stopped the run, the accounts after it untrained
            # (a helper's review).  Not "from exc": its text shows a byte of
            # the password and where it is.
            raise ConfigError(f"account {self.name}: password_file {path} is not UTF-8; "
                              f"save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
        # Only the line end an editor adds is dropped: a password may have spaces.
        value = text.rstrip("\r\n")
        if not value:
            raise ConfigError(f"account {self.name}: password_file {path} is empty")
        return value

    def password_file_is_private(self) -> bool:
        """False if others than the owner (and group) could read the password file."""
        if self.password_file is None:
            return True
        try:
            return not self.password_file.stat().st_mode & stat.S_IROTH
        except OSError:
            return True  # reported when it is read

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def matches(self, patterns: Sequence[str], folder: str, flags: Sequence[str] = ()) -> bool:
        """Whether ``folder`` (with SPECIAL-USE ``flags``) is named by ``patterns``."""
        for pattern in patterns:
            if pattern.startswith("\\"):
                if pattern.lower() in (f.lower() for f in flags):
                    return True
            elif pattern == folder or (is_folder_pattern(pattern) and
                                       fnmatch.fnmatchcase(folder, pattern.replace("[", "[[]"))):
                return True
            elif pattern.upper() == "INBOX" and folder.upper() == "INBOX":
                return True  # INBOX is case-insensitive (RFC 3501 5.1)
        return False


def is_folder_pattern(name: str) -> bool:
    """Whether a folder spec is a pattern: ``*`` and ``?`` are wildcards,
    ``[`` is a letter ("[Gmail]/Spam" is Gmail's folder, not a class that
    also matched "G/Spam"; a helper's review)."""
    return not name.startswith("\\") and ("*" in name or "?" in name)


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{what} must be a list of folder names")
    return tuple(value)


# Upper bounds far past any sensible value, there so that a typo (1e12) is
# refused here rather than overflow in socket.settimeout() or time.sleep().
_DAY_SECONDS = 86_400
_CENTURY_DAYS = 36_500


def _number(value: Any, what: str, minimum: float, integer: bool = False,
            maximum: float | None = None) -> Any:
    # The type (and, for floats, finiteness: nan would pass every range
    # check) by the shared readers; the range here.
    value = as_int(value, what) if integer else as_float(value, what)
    if value < minimum:
        raise ConfigError(f"{what} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{what} must be <= {maximum}, got {value!r}")
    return value


def parse_account(table: Mapping[str, Any], index: int = 0, base: Path | None = None) -> Account:
    """Validate one ``[[accounts]]`` table.

    Raises
    ------
    ConfigError
        A key is unknown, missing, of the wrong type or out of range.
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"accounts[{index}] must be a table")
    label = f"accounts[{index}]" + (f" ({table['name']})" if isinstance(table.get("name"), str)
                                    and table["name"] else "")
    if "password" in table:
        raise ConfigError(f"{label}: a password in the config file is not accepted; "
                          f"use password_file or password_env")
    refuse_unknown(table, _KEYS, f"{label}: unknown key(s)")
    for key in ("host", "username"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise ConfigError(f"{label}: '{key}' is required")
    values: dict[str, Any] = {"host": table["host"], "username": table["username"]}
    if "name" in table and (not isinstance(table["name"], str) or not table["name"]):
        raise ConfigError(f"{label}: name must be a non-empty string, got {table['name']!r}")
    # The name keys the folder state ("imap:<name>:<folder>"), hence no ':' or '/'.
    values["name"] = table.get("name") or re.sub(r"[\s:/]", "_", f"{table['username']}@{table['host']}")
    if not isinstance(values["name"], str) or re.search(r"[\s:/]", values["name"]):
        raise ConfigError(f"{label}: name must be a word without spaces, ':' or '/'")

    security = table.get("security", Security.TLS)
    if security not in Security.ALL:
        raise ConfigError(f"{label}: security must be one of {', '.join(Security.ALL)}, got {security!r}")
    values["security"] = security
    port = table.get("port", _DEFAULT_PORTS[security])
    values["port"] = _number(port, f"{label}: port", 1, integer=True)
    if values["port"] > 65535:
        raise ConfigError(f"{label}: port must be <= 65535")

    has_file, has_env = "password_file" in table, "password_env" in table
    if has_file == has_env:
        raise ConfigError(f"{label}: give exactly one of password_file and password_env")
    if has_file:
        values["password_file"] = as_path(table["password_file"], f"{label}: password_file", base)
    else:
        if not isinstance(table["password_env"], str) or not table["password_env"].isidentifier():
            raise ConfigError(f"{label}: password_env must be an environment variable name")
        values["password_env"] = table["password_env"]

    for key in ("spam_folders", "ham_folders", "ignore_folders"):
        if key in table:
            values[key] = _str_list(table[key], f"{label}: {key}")
    if not values.get("spam_folders") and not values.get("ham_folders"):
        raise ConfigError(f"{label}: give spam_folders and/or ham_folders")
    literal = lambda names: {n.upper() if n.upper() == "INBOX" else n for n in names}  # noqa: E731
    both = literal(values.get("spam_folders", ())) & literal(values.get("ham_folders", ()))
    if both:
        raise ConfigError(f"{label}: folder(s) both spam and ham: {', '.join(sorted(both))}")

    if "ham_min_age_days" in table:
        values["ham_min_age_days"] = float(_number(table["ham_min_age_days"],
                                                   f"{label}: ham_min_age_days", 0, maximum=_CENTURY_DAYS))
    mode = table.get("mode", Mode.ALL)
    if mode not in Mode.CHOICES:
        raise ConfigError(f"{label}: mode must be one of {', '.join(Mode.CHOICES)}, got {mode!r}")
    values["mode"] = mode
    for key in ("own_model", "allow_plaintext"):
        if key in table:
            if not isinstance(table[key], bool):
                raise ConfigError(f"{label}: {key} must be true or false")
            values[key] = table[key]
    if "user" in table:
        values["user"] = check_user_name(table["user"], f"{label}: user")
    if "ca_file" in table:
        values["ca_file"] = as_path(table["ca_file"], f"{label}: ca_file", base)
    if "timeout" in table:
        values["timeout"] = float(_number(table["timeout"], f"{label}: timeout", 0.1, maximum=_DAY_SECONDS))
    if "pass_timeout" in table:
        values["pass_timeout"] = float(_number(table["pass_timeout"], f"{label}: pass_timeout", 0,
                                               maximum=7 * _DAY_SECONDS))
    if "retries" in table:
        values["retries"] = _number(table["retries"], f"{label}: retries", 0, integer=True)
    if "retry_delay" in table:
        values["retry_delay"] = float(_number(table["retry_delay"], f"{label}: retry_delay", 0,
                                              maximum=_DAY_SECONDS))
    if "batch_size" in table:
        values["batch_size"] = _number(table["batch_size"], f"{label}: batch_size", 1, integer=True)

    account = Account(**values)
    if account.security == Security.PLAIN and not account.is_loopback and not account.allow_plaintext:
        raise ConfigError(f"account {account.name}: security = \"plain\" would send the password "
                          f"unencrypted to {account.host}; use tls or starttls, or set "
                          f"allow_plaintext = true")
    return account


def load_accounts(settings: Settings, names: Sequence[str] = ()) -> list[Account]:
    """The accounts of the config file (only ``names``, if given).

    Raises
    ------
    ConfigError
        No accounts, a bad table, a duplicate name, or an unknown name asked for.
    """
    tables = settings.section("accounts")
    if not tables:
        where = settings.config_file or "the config file (none found)"
        raise ConfigError(f"no [[accounts]] in {where}")
    if not isinstance(tables, list):
        raise ConfigError("accounts must be an array of tables: [[accounts]]")
    base = settings.config_file.parent if settings.config_file else None
    try:
        accounts = [parse_account(t, i, base) for i, t in enumerate(tables)]
    except ConfigError as exc:  # every value of an account comes from the file: name it
        raise ConfigError(f"{source_of(settings)}{exc}") from exc
    seen: set[str] = set()
    for account in accounts:
        if account.name in seen:
            raise ConfigError(f"two accounts are named {account.name!r}; give each a unique name")
        seen.add(account.name)
    if names:
        missing = [n for n in names if n not in seen]
        if missing:
            raise ConfigError(f"no account named {', '.join(missing)} (have: {', '.join(sorted(seen))})")
        accounts = [a for a in accounts if a.name in names]
    return accounts


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$")
_UNIT_SECONDS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
#: The longest duration (``train --every``): a year, and a leap day.  Far
#: past any schedule, and far below ``threading.TIMEOUT_MAX`` (292 years on
#: Linux), past which the wait after the first pass raised OverflowError: a
#: daemon that died (70) after one pass (a reviewer's finding).
MAX_DURATION_DAYS = 366


def parse_duration(text: str) -> float:
    """``"90"``, ``"30s"``, ``"15m"``, ``"2h"``, ``"1d"`` -> seconds.

    Raises
    ------
    ConfigError
        Not a duration, zero, or longer than ``MAX_DURATION_DAYS``.
    """
    match = _DURATION.match(text or "")
    if not match:
        raise ConfigError(f"not a duration: {text!r} (examples: 30s, 15m, 2h)")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    # not finite: 400 digits make inf
    if not math.isfinite(seconds) or seconds > MAX_DURATION_DAYS * _DAY_SECONDS:
        raise ConfigError(f"duration too long: {text!r} (at most {MAX_DURATION_DAYS}d)")
    if seconds <= 0:
        raise ConfigError(f"duration must be positive: {text!r}")
    return seconds
