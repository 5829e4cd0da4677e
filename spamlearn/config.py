"""Settings: one frozen object, read from TOML, then environment, then flags.

Nothing is read at import time.  ``load_settings()`` builds a ``Settings``
from, in rising order of precedence:

1. the defaults below, each with the reason for its value;
2. the config file: ``--config``, else ``$SPAMLEARN_CONFIG``, else the first
   of ``~/.config/spamlearn/spamlearn.toml`` and
   ``/etc/spamlearn/spamlearn.toml`` that exists;
3. ``SPAMLEARN_*`` environment variables (``SPAMLEARN_MODEL``,
   ``SPAMLEARN_LEDGER``, ``SPAMLEARN_HAM_CUTOFF``, ``SPAMLEARN_SPAM_CUTOFF``,
   ``SPAMLEARN_SCAN_LIMIT``, ``SPAMLEARN_LOCK_TIMEOUT``);
4. keyword overrides, which the CLI fills from its flags.

Sections that belong to one subsystem (``[server]``, ``[[accounts]]``,
``[sieve]``) are kept as plain dicts in ``Settings.sections`` and parsed by
that subsystem, so this module does not grow with every feature; only their
names are listed here, so that a misspelt table is refused, not ignored.
The ``as_*`` readers below are shared with those subsystems: a TOML value
of the wrong type is refused, never converted (``own_model = "alice"`` is
not the users a, l, i, c, e), and no float setting may be nan or inf.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
import stat
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .features import DEFAULT_N_FEATURES
from .regularfile import irregular_kind

__all__ = [
    "Settings", "load_settings", "find_config_file", "default_data_dir",
    "USER_NAME_RE", "check_user_name", "as_int", "as_float", "as_str", "as_path", "env_int", "env_float",
    "refuse_unknown", "source_of",
]

CONFIG_ENV = "SPAMLEARN_CONFIG"

#: User names that may have a model of their own.  They name a model file
#: (``<dir>/<user>.joblib``) and the sieve spool's files, so the set is
#: small on purpose: what Dovecot users look like (``alice``,
#: ``alice@example.org``, ``first.last+tag``), never a path separator, a
#: comma (the spool's field separator), a leading dot or whitespace.  The
#: HTTP service accepts the same names in ``?user=``.
USER_NAME_RE = re.compile(r"[A-Za-z0-9_@+=-][A-Za-z0-9._@+=-]{0,127}")


def check_user_name(user: Any, what: str = "") -> str:
    """Return ``user`` if it is a safe user name, else raise ``ConfigError``.

    ``what`` (e.g. ``"[users] own_model"``) says where the name came from.
    """
    if not isinstance(user, str) or not USER_NAME_RE.fullmatch(user):
        where = f"{what}: " if what else ""
        raise ConfigError(f"{where}invalid user name {user!r} (allowed: letters, digits and "
                          ". _ @ + = -, not starting with a dot)")
    return user


def default_data_dir() -> Path:
    """Where a user's own model lives when nothing says otherwise (XDG)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "spamlearn"


#: The largest model size (buckets) a setting may ask for: 256 MB of counts.
MAX_FEATURES = 2**25

#: The bounds (inclusive; None: none) of the numeric settings, checked where a
#: value is read so that the message names the file key or the variable.
#: scan_limit: below 1 KiB not even the headers of most mail are read.
_RANGES: dict[str, tuple[float, float | None]] = {
    "ham_cutoff": (0.0, 1.0), "spam_cutoff": (0.0, 1.0), "lock_timeout": (0.0, None),
    "scan_limit": (1024, None), "min_messages": (0, None), "features": (2**16, MAX_FEATURES),
}


def check_features(value: int, what: str) -> None:
    """ConfigError unless ``value`` is a model size spamlearn accepts."""
    _check_range("features", value, what)


def _check_range(field: str, value: float, what: str) -> None:
    low, high = _RANGES[field]
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{what} must be {bounds}, got {value!r}")
    if field == "features" and value & (value - 1):
        # The bucket is the hash's low bits (a mask, not a modulo).
        raise ConfigError(f"{what} must be a power of two (2**21 = 2097152, 2**22 = 4194304, "
                          f"2**23 = 8388608), got {value!r}")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything spamlearn's core needs to know, validated once.

    Parameters
    ----------
    model_path : Path
        The trained model file that ``learn``, ``train`` and ``serve`` use.
        Default: ``$XDG_DATA_HOME/spamlearn/model.joblib``.
    ledger_path : Path or None
        The SQLite ledger of learned messages.  None puts it beside the model
        (``model.ledger``), since a ledger only makes sense with its model.
    ham_cutoff, spam_cutoff : float
        Scores below ``ham_cutoff`` are ham, at or above ``spam_cutoff`` spam,
        in between unsure.  SpamBayes ships 0.20 / 0.90: chi-squared scores
        cluster near 0 and 1 and the middle is where the model says "I can't
        tell", which is what the unsure folder is for.
    scan_limit : int
        Bytes of a raw message that are read at all.  512,000 is spamc's
        default maximum (``spamc -s``): spam is small, and a 50 MB message
        must not cost more than this.
    min_messages : int
        A trained model is used for scoring once it has learned this many
        spam and this many ham; before that the packaged default model
        (or, for a per-user model, the shared one) answers.
    features : int
        Hashed feature buckets of a model created from now on (a model keeps
        the size it was made with).  2**21 by default: past about a quarter
        of the buckets used, collisions blur the scores (README, "A full
        model"); 2**25 is 256 MB of counts in memory.
    lock_timeout : float
        Seconds a learner waits for another one holding the model's lock
        before giving up with exit code 75 (try again later).  A minute
        covers a cron pass committing a large batch.
    user_models_dir : Path or None
        Folder of per-user models, ``<dir>/<user>.joblib``.
    own_model_users : frozenset of str
        Users who train and are scored by their own model.
    config_file : Path or None
        The file these settings were read from, for ``spamlearn info``.
    sections : mapping
        Raw TOML tables of other subsystems, keyed by table name.
    """

    model_path: Path = dataclasses.field(default_factory=lambda: default_data_dir() / "model.joblib")
    ledger_path: Path | None = None
    ham_cutoff: float = 0.20
    spam_cutoff: float = 0.90
    scan_limit: int = 512_000
    min_messages: int = 10
    features: int = DEFAULT_N_FEATURES
    lock_timeout: float = 60.0
    user_models_dir: Path | None = None
    own_model_users: frozenset[str] = frozenset()
    config_file: Path | None = None
    sections: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # The file and the environment were checked as they were read, with
        # messages naming them; this catches flags and direct construction.
        for name in ("ham_cutoff", "spam_cutoff", "lock_timeout"):
            if not math.isfinite(getattr(self, name)):  # a nan timeout never expires
                raise ConfigError(f"{name} must be a finite number, got {getattr(self, name)!r}")
        for name in _RANGES:
            _check_range(name, getattr(self, name), name)
        if not self.ham_cutoff <= self.spam_cutoff:
            raise ConfigError(
                f"cutoffs must satisfy 0 <= ham_cutoff <= spam_cutoff <= 1, "
                f"got ham_cutoff={self.ham_cutoff} spam_cutoff={self.spam_cutoff}"
            )

    @property
    def effective_ledger_path(self) -> Path:
        return self.ledger_path or ledger_path_for(model_file(self.model_path))

    def has_own_model(self, user: str | None) -> bool:
        return self.own_model_name(user) is not None

    def own_model_name(self, user: str | None) -> str | None:
        """The ``[users] own_model`` name ``user`` stands for: as written, else
        ignoring case, else without a ``+detail`` (``Alice+lists@example.org``
        is ``alice@example.org``): an MTA passes the recipient as it was
        written, and a user's mail went unnoticed to the shared model (a
        helper's review, 2026-11-29)."""
        return _own_model_name(self.own_model_users, self._own_models_folded, user)

    @functools.cached_property
    def _own_models_folded(self) -> dict[str, str]:
        return _folded_names(self.own_model_users)

    def user_model_path(self, user: str) -> Path:
        """The model file of ``user`` (whether or not it exists yet), under the
        ``own_model`` name it stands for, if any."""
        check_user_name(user)
        base = self.user_models_dir or self.model_path.parent / "users"
        return base / f"{self.own_model_name(user) or user}.joblib"

    def model_path_for(self, user: str | None) -> Path:
        """The model a user trains: their own if configured, else the shared one."""
        if user and self.has_own_model(user):
            return self.user_model_path(user)
        return self.model_path

    def section(self, name: str) -> Any:
        return self.sections.get(name, {})

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _folded_names(names: Collection[str]) -> dict[str, str]:
    """Lower-cased name -> the configured name; names that differ only in
    case (Alice and alice, both configured) match only as written."""
    folded: dict[str, str | None] = {}
    for name in names:
        folded[name.lower()] = None if name.lower() in folded else name
    return {key: name for key, name in folded.items() if name is not None}


def _own_model_name(names: Collection[str], folded: Mapping[str, str], user: str | None) -> str | None:
    """``Settings.own_model_name`` for the names ``names`` (``folded``: theirs)."""
    if not user:
        return None
    if user in names:
        return user
    key = user.lower()
    if key in folded:
        return folded[key]
    # Without a +detail, cut at each "+" from the last (a configured name
    # may hold one itself: bob+spam@example.org), as written, then folded.
    local, at, domain = user.partition("@")
    cuts = [i for i, c in enumerate(local) if c == "+" and i > 0]
    for cut in reversed(cuts):
        base = local[:cut] + at + domain
        if base in names:
            return base
        if base.lower() in folded:
            return folded[base.lower()]
    return None


def ledger_path_for(model_path: Path) -> Path:
    return model_path.with_name(model_path.stem + ".ledger")


def model_file(model_path: str | os.PathLike[str]) -> Path:
    """The file a model name stands for: the one a symlink names (learning
    replaces that file, so the link stays a link, and takes that file's lock,
    the one every other name of it takes), else the name itself."""
    model_path = Path(model_path)
    # os.path.islink, not Path.is_symlink: a folder this user may not
    # search is "not a link" here, and the store then says what is wrong
    # with it (is_symlink raised PermissionError, a traceback to the sieve
    # drain and a 500 from the service; a helper's review).
    return Path(os.path.realpath(model_path)) if os.path.islink(model_path) else model_path


def _usable_config_file(path: Path, origin: str) -> Path:
    """``path``, if it names a file to read; /dev/null too, read as an empty
    config (``--config /dev/null`` ignores the system's, as ``ssh -F`` does)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"config file {path}{origin} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}{origin}: {exc.strerror}") from None
    if stat.S_ISREG(mode) or path == Path(os.devnull):
        return path
    raise ConfigError(f"config file {path}{origin} is {irregular_kind(mode)}, not a file")


def find_config_file(explicit: Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if env is None else env
    if explicit is not None:
        return _usable_config_file(explicit, "")
    if env.get(CONFIG_ENV):
        return _usable_config_file(Path(env[CONFIG_ENV]), f" (from ${CONFIG_ENV})")
    for candidate in (Path.home() / ".config" / "spamlearn" / "spamlearn.toml",
                      Path("/etc/spamlearn/spamlearn.toml")):
        # os.path.isfile, not Path.is_file: under a HOME this user may not
        # search (a container run with --user and HOME=/root, setpriv or
        # start-stop-daemon --chuid from root) is no config file of theirs;
        # Path.is_file raised PermissionError there, and every command, the
        # filter included, failed on a file it would never have read.
        if os.path.isfile(candidate):
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        # Decoded here rather than by tomllib.load, whose UnicodeDecodeError
        # is not a TOMLDecodeError and would escape as a traceback.
        # A byte-order mark first (Windows Notepad's UTF-8) is no TOML,
        # but nothing else in the file is wrong: read past it.
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"config file {path}: line {line}: byte 0x{raw[exc.start]:02x} is not UTF-8 "
                          f"(TOML files are UTF-8; re-save it as such)") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    except RecursionError as exc:  # arrays nested thousands deep
        raise ConfigError(f"config file {path}: nested too deeply") from exc


# -- Reading values -----------------------------------------------------------------------------
# ``what`` names the value in the message: "config file F: [model] key" for a
# file value, the variable's name for an environment value.

def _shown(value: Any) -> str:
    """A wrong value, for a one-line message."""
    if isinstance(value, dict):
        return "a table"  # whose contents may be long, or secret
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_int(value: Any, what: str) -> int:
    """``value`` if it is a TOML integer, else ``ConfigError``."""
    # bool is an int subclass, and int(1.5) or int("7") would hide a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an integer, got {_shown(value)}")
    return value


def as_float(value: Any, what: str) -> float:
    """``value`` as a float if it is a finite TOML number, else ``ConfigError``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} must be a number, got {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        number = math.inf
    # TOML (and float()) read nan and inf.  Neither is a cutoff or a number
    # of seconds: nan compares false with everything, so a nan timeout
    # passes every range check and then never expires.
    if not math.isfinite(number):
        raise ConfigError(f"{what} must be a finite number, got {_shown(value)}")
    return number


def as_str(value: Any, what: str) -> str:
    """``value`` if it is a non-empty TOML string, else ``ConfigError``."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string, got {_shown(value)}")
    return value


def expand_path(text: str, what: str) -> Path:
    """``text`` as a path, with ``~`` and ``~user`` expanded."""
    try:
        return Path(text).expanduser()
    except RuntimeError:        # ~nosuchuser, or ~ with no HOME and no passwd entry
        raise ConfigError(f"{what}: cannot find the home folder in {text!r}") from None


def as_path(value: Any, what: str, base: Path | None = None) -> Path:
    """A path from a TOML string, relative to ``base`` (the config file's folder)."""
    # A NUL would pass here and raise ValueError at the first open().
    if not isinstance(value, str) or not value or "\0" in value:
        raise ConfigError(f"{what} must be a path (a non-empty string), got {_shown(value)}")
    path = expand_path(value, what)
    if base is not None and not path.is_absolute():
        path = base / path
    return path


def env_int(text: str, what: str) -> int:
    """An environment variable's text as an integer."""
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{what} must be an integer, got {text!r}") from None


def env_float(text: str, what: str) -> float:
    """An environment variable's text as a finite number."""
    try:
        number = float(text)
    except ValueError:
        raise ConfigError(f"{what} must be a number, got {text!r}") from None
    return as_float(number, what)


def _user_names(value: Any, what: str) -> set[str]:
    # A bare string is refused, not iterated: "alice" would be a, l, i, c, e.
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ConfigError(f'{what} must be a list of user names (e.g. ["alice"]), got {_shown(value)}')
    return {check_user_name(name, what) for name in value}


def refuse_unknown(table: Mapping[str, Any], known: Mapping[str, str] | Collection[str], what: str) -> None:
    """Refuse the keys of ``table`` not in ``known``, listing those that are.

    ``known`` maps each key to how it is written (``"accounts"`` to
    ``"[[accounts]]"``), or is just the keys.  ``what`` begins the message
    (``"unknown key(s) in [model]"``).
    """
    written = dict(known) if isinstance(known, Mapping) else {key: key for key in sorted(known)}
    unknown = sorted(set(table) - set(written))
    if not unknown:
        return
    guesses = difflib.get_close_matches(unknown[0], list(written), n=1)
    hint = f" (did you mean {written[guesses[0]]}?)" if guesses else ""
    raise ConfigError(f"{what}: {', '.join(unknown)}{hint}; known: {', '.join(written.values())}")


def source_of(settings: Settings) -> str:
    """How a message begins for a value read from ``settings``' file: ``"config file F: "``."""
    return f"config file {settings.config_file}: " if settings.config_file else ""


# -- The file -----------------------------------------------------------------------------------

#: Every top-level table spamlearn reads.  Those of the subsystems are parsed
#: elsewhere (``server_settings``, ``imap.config``, ``sieve.options``) but
#: named here: a misspelt ``[sevrer]`` silently ignored would leave the
#: service on its defaults while its admin believes it configured.  A new
#: subsystem's table is added here.
_TABLES = {"model": "[model]", "users": "[users]", "server": "[server]",
           "accounts": "[[accounts]]", "sieve": "[sieve]"}
_MODEL_KEYS = {"path", "ledger", "ham_cutoff", "spam_cutoff", "scan_limit", "min_messages", "features",
               "lock_timeout"}
_USERS_KEYS = {"dir", "own_model"}


def _table(data: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [{name}] must be a table, got {_shown(table)}")
    return table


def _model_values(model: Mapping[str, Any], base: Path, where: str) -> dict[str, Any]:
    refuse_unknown(model, _MODEL_KEYS, f"{where}: unknown key(s) in [model]")
    values: dict[str, Any] = {}
    if "path" in model:
        values["model_path"] = as_path(model["path"], f"{where}: [model] path", base)
    if "ledger" in model:
        values["ledger_path"] = as_path(model["ledger"], f"{where}: [model] ledger", base)
    for key, read in (("ham_cutoff", as_float), ("spam_cutoff", as_float), ("lock_timeout", as_float),
                      ("scan_limit", as_int), ("min_messages", as_int), ("features", as_int)):
        if key in model:
            values[key] = read(model[key], f"{where}: [model] {key}")
            _check_range(key, values[key], f"{where}: [model] {key}")
    return values


def _users_values(users: Mapping[str, Any], accounts: Any, base: Path, where: str) -> dict[str, Any]:
    refuse_unknown(users, _USERS_KEYS, f"{where}: unknown key(s) in [users]")
    values: dict[str, Any] = {}
    if "dir" in users:
        values["user_models_dir"] = as_path(users["dir"], f"{where}: [users] dir", base)
    own = _user_names(users.get("own_model", []), f"{where}: [users] own_model")
    for username in _own_model_accounts(accounts, where):
        # An account's username that already stands for an own-model name
        # (Alice for [users] own_model = ["alice"]) is that user, as it was
        # without own_model = true: added as a name of its own, it split the
        # user in two, train learning Alice.joblib and the sieve (Dovecot's
        # lower-cased alice) alice.joblib, which scored her (a helper's review).
        if _own_model_name(own, _folded_names(own), username) is None:
            own.add(username)
    values["own_model_users"] = frozenset(own)
    return values


def _own_model_accounts(accounts: Any, where: str) -> list[str]:
    """The users (``user``, else ``username``) of the ``[[accounts]]`` with
    ``own_model = true``, in order.

    Only the shape and the keys read here are checked: the rest of an
    account is ``imap.config``'s, and is checked when it is used.
    """
    if not isinstance(accounts, list):
        raise ConfigError(f"{where}: accounts must be an array of tables, written [[accounts]], "
                          f"got {_shown(accounts)}")
    users = []
    for index, account in enumerate(accounts):
        if not isinstance(account, dict):
            raise ConfigError(f"{where}: accounts[{index}] must be a table, got {_shown(account)}")
        own_model = account.get("own_model", False)
        if not isinstance(own_model, bool):
            raise ConfigError(f"{where}: accounts[{index}] own_model must be true or false, "
                              f"got {_shown(own_model)}")
        if own_model:
            # The user names the model file, as a [users] own_model name does.
            key = "user" if "user" in account else "username"
            what = f"{where}: accounts[{index}] {key}"
            if key not in account:
                raise ConfigError(f"{what} is required with own_model = true")
            try:
                users.append(check_user_name(account[key], what))
            except ConfigError as exc:
                if key == "user":
                    raise
                # The login is no user name (a Dovecot master-user login,
                # alice*spamlearn): the message gave the allowed letters,
                # not the key that answers it (a reviewer's finding).
                login = account[key]
                master, star, _ = login.partition("*") if isinstance(login, str) else ("", "", "")
                name = master if star and USER_NAME_RE.fullmatch(master) else "<name>"
                raise ConfigError(f"{exc}; with own_model = true the login names the user's model "
                                  f"unless the account says whose it is: set user = \"{name}\" "
                                  f"(the user's name as Dovecot knows it)") from None
    return users


def _file_values(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    where = f"config file {path}"
    refuse_unknown(data, _TABLES, f"{where}: unknown top-level table(s) or key(s)")
    values = _model_values(_table(data, "model", where), path.parent, where)
    values.update(_users_values(_table(data, "users", where), data.get("accounts", []), path.parent, where))
    return values


# -- The environment ----------------------------------------------------------------------------

_ENV = {  # variable: (Settings field, reader)
    "SPAMLEARN_MODEL": ("model_path", expand_path),
    "SPAMLEARN_LEDGER": ("ledger_path", expand_path),
    "SPAMLEARN_HAM_CUTOFF": ("ham_cutoff", env_float),
    "SPAMLEARN_SPAM_CUTOFF": ("spam_cutoff", env_float),
    "SPAMLEARN_LOCK_TIMEOUT": ("lock_timeout", env_float),
    "SPAMLEARN_SCAN_LIMIT": ("scan_limit", env_int),
}


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for variable, (field, read) in _ENV.items():
        if env.get(variable):  # empty counts as unset, as a shell's `VAR= cmd` means
            values[field] = read(env[variable], variable)
            if field in _RANGES:
                _check_range(field, values[field], variable)
    return values


def _default_model_path() -> Path:
    return Settings.__dataclass_fields__["model_path"].default_factory()


def model_file_key(path: Path) -> Path:
    """What makes two names one model file: the path made absolute, ``..``
    and symlinks resolved (``ModelStore`` learns into the file a symlink
    names, under that file's lock).  Not the inode: a hard link is one file
    only until the next learn replaces the name learned through (a rename
    cannot keep two names together), and its ledger must not then be the
    other name's (a helper's review: the next learner under the other name
    "repaired" the shared ledger and deleted what was learned)."""
    return Path(os.path.realpath(path))


def load_settings(
    config_file: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build ``Settings`` from file, environment and overrides (None = unset).

    Raises
    ------
    ConfigError
        The file is unreadable or not UTF-8 TOML, has a table or key
        spamlearn does not know, or a value of the wrong type or range.
    """
    env = os.environ if env is None else env
    path = find_config_file(config_file, env)
    data = _read_toml(path) if path else {}
    values: dict[str, Any] = {"config_file": path}
    layers = [_file_values(data, path) if path is not None else {}, _env_values(env),
              {k: v for k, v in overrides.items() if v is not None}]
    # A ledger belongs to the model named with it (at its level or below):
    # a model given by SPAMLEARN_MODEL or --model to try one out was paired
    # with the configured model's ledger, whose revision it did not match,
    # and the "repair" of that deleted the configured model's rows (a
    # helper's review, 2026-11-29).  Another model gets the ledger beside it;
    # the same model, however spelt, keeps the ledger named for it.
    model = _default_model_path()
    ledgers: dict[Path, Path] = {}
    for layer in layers:
        model = layer.get("model_path", model)
        if "ledger_path" in layer:
            ledgers[model_file_key(model)] = layer["ledger_path"]
        values.update({k: v for k, v in layer.items() if k != "ledger_path"})
    if model_file_key(model) in ledgers:
        values["ledger_path"] = ledgers[model_file_key(model)]
    values["sections"] = {k: v for k, v in data.items() if k not in ("model", "users")}
    try:
        return Settings(**values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
    except ConfigError as exc:
        # A check of values together (the cutoffs' order) cannot say which
        # layer set them; the file, if any, is where an admin looks first.
        if path is None or str(path) in str(exc):
            raise
        raise ConfigError(f"config file {path} (or the environment): {exc}") from None
