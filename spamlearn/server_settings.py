"""The ``[server]`` section: how ``spamlearn serve`` listens and whom it trusts.

Example::

    [server]
    host = "127.0.0.1"          # loopback: only this host's MTA asks
    port = 8731
    workers = 2                 # default: one per core (at most 4)
    learn_token_file = "/etc/spamlearn/learn.token"   # 0600, one line
    # score_token_file = "/etc/spamlearn/score.token" # scoring open if unset
    max_body_size = 26214400    # bytes (25 MiB); larger requests get 413
    reload_interval = 1.0       # seconds between checks of the model file
    per_user = true             # honour ?user= / X-Spamlearn-User
    user_header = "X-Spamlearn-User"
    # spamd_listen = "127.0.0.1:783"   # also answer spamc (SpamAssassin's protocol); unset or "off": off
    # spamd_allow_tell = false         # spamc -L / TELL may train (spamd's --allow-tell)
    # spamd_timeout = 30               # seconds a spamc client has to send its request

Precedence, lowest first: the defaults below, the file, ``SPAMLEARN_SERVER_*``
environment variables (``_HOST``, ``_PORT``, ``_WORKERS``, ``_LEARN_TOKEN``,
``_LEARN_TOKEN_FILE``, ``_SCORE_TOKEN``, ``_SCORE_TOKEN_FILE``,
``_MAX_BODY_SIZE``, ``_RELOAD_INTERVAL``, ``_SPAMD_LISTEN``), then command-line flags.
``spamd_listen = "off"`` (``--spamd-listen off``) turns off a listener an
earlier source set.

Tokens are secrets: never taken from a command-line flag (``ps`` shows
those), never logged (``repr=False``), and a token in the config file or a
token file is refused when that file is readable by group or others, as ssh
refuses such a key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import Settings, as_float, as_int, as_path, as_str, env_float, env_int, refuse_unknown, source_of
from .errors import ConfigError

__all__ = ["ServerSettings", "load_server_settings", "default_workers", "DEFAULT_PORT"]

#: Not registered with IANA for anything a mail host runs (783 is spamd,
#: 11333/11334 Rspamd, 10024/10025 Amavis).
DEFAULT_PORT = 8731
#: Gmail's and most hosted providers' limit; Postfix's own default
#: ``message_size_limit`` is 10 MB, so nothing a filter is handed is larger.
DEFAULT_MAX_BODY_SIZE = 25 * 1024 * 1024
#: Shorter tokens could be guessed by a patient client on the network.
MIN_TOKEN_LENGTH = 16
#: An HTTP field name (RFC 9110 "token"); any other never matches a request header.
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: What a bearer token may hold: visible ASCII, no spaces.
_PRINTABLE_ASCII_RE = re.compile(r"[!-~]+")

_KEYS = {
    "host", "port", "workers", "learn_token", "learn_token_file", "score_token", "score_token_file",
    "max_body_size", "reload_interval", "per_user", "user_header", "max_user_models",
    "learn_lock_timeout", "access_log", "spamd_listen", "spamd_allow_tell", "spamd_timeout",
}
#: ``spamd_listen``: "HOST:PORT", an IPv6 address in brackets ("[::1]:783").
_LISTEN_RE = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]]+)):(?P<port>[0-9]{1,5})")


def default_workers() -> int:
    """One worker process per core, at most 4.

    Scoring is CPU-bound Python: one process uses one core whatever its
    thread count, so a second core needs a second process.  Past 4 a small
    mail host gains nothing and pays ~130 MB of memory per worker.

    More workers than cores was measured, in case the operating system's
    time slicing helped the messages queued behind a slow one
    (``scripts/bench_http.py``-style probe, 8 clients, 2 cores, quiet
    host, two rounds, 2026-11-28): 2 workers 1,238-1,336/s, p99
    15.1-15.8 ms; 3 workers 1,227-1,367/s, p99 19.1-20.6 ms; 4 workers
    1,129-1,166/s, p99 22.0-22.8 ms.  It does not: one per core.
    """
    return max(1, min(os.cpu_count() or 1, 4))


class _Invalid(ConfigError):
    """A value out of range; ``load_server_settings`` names where it came from
    (the file's key, an environment variable or a flag) before it reaches the user."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"[server] {key} {problem}")
        self.key = key
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """How the HTTP service listens, limits and authorises requests.

    Parameters
    ----------
    host : str, default="127.0.0.1"
        Loopback by default: the MTA on the same host is the usual client,
        and an open scoring endpoint on the network should be a decision.
    port : int, default=8731
    workers : int, default=one per core, at most 4
        Worker processes (uvicorn's multi-process mode when more than 1).
    learn_token : str or None
        Bearer token for ``/learn`` and ``/forget``.  None disables them (403).
    score_token : str or None
        Bearer token for ``/score`` and ``/metrics``; None leaves them open.
        The learn token is accepted there too.
    max_body_size : int, default=25 MiB
        Larger request bodies are refused with 413 before being read.
    reload_interval : float, default=1.0
        Seconds between checks (one ``stat``) of a model file for a newer
        version; 0 checks on every request.
    per_user : bool, default=True
        Honour the ``user`` query parameter and ``user_header``.
    user_header : str, default="X-Spamlearn-User"
    max_user_models : int, default=16
        Per-user models kept in memory (least recently used are dropped;
        each costs ~16 MB with the default feature space).
    learn_lock_timeout : float, default=30.0
        Seconds a learn request waits for another learner's lock before 503
        with Retry-After: long enough for a cron pass to commit its batch,
        shorter than the CLI's minute, which an HTTP client would not wait.
        Counted from the request's admission: its time queued for one of
        the learner threads is part of it.
    access_log : bool, default=False
        One log line per request.  Off: a busy MX makes thousands a minute,
        and ``/metrics`` already counts them.
    spamd_listen : str or None, default=None
        ``"HOST:PORT"`` where the workers also answer SpamAssassin's
        spamc/spamd protocol (``spamlearn.spamd_protocol``); None: they do
        not.  No default port: spamd's 783 is below 1024, which needs root
        or ``CAP_NET_BIND_SERVICE``, and the service runs as its own user.
    spamd_allow_tell : bool, default=False
        Whether ``TELL`` (``spamc -L spam|ham|forget``) may train, as
        spamd's ``--allow-tell``: the protocol has no password, so anyone
        who can reach the port could train the model.
    spamd_timeout : float, default=30.0
        Seconds a spamc client has to send its whole request (and to read
        the answer): a client that stops mid-message is dropped then.
        spamd's own ``--timeout-tcp`` is 30 s too.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = dataclasses.field(default_factory=default_workers)
    learn_token: str | None = dataclasses.field(default=None, repr=False)
    score_token: str | None = dataclasses.field(default=None, repr=False)
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    reload_interval: float = 1.0
    per_user: bool = True
    user_header: str = "X-Spamlearn-User"
    max_user_models: int = 16
    learn_lock_timeout: float = 30.0
    access_log: bool = False
    spamd_listen: str | None = None
    spamd_allow_tell: bool = False
    spamd_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.host:
            raise _Invalid("host", "must not be empty")
        if not 0 <= self.port <= 65535:
            raise _Invalid("port", f"must be 0..65535, got {self.port}")
        if not 1 <= self.workers <= 64:
            raise _Invalid("workers", f"must be 1..64, got {self.workers}")
        if self.max_body_size < 1024:
            raise _Invalid("max_body_size", f"must be at least 1024 bytes, got {self.max_body_size}")
        # A flag can still bring nan or inf here; nan would pass every range check.
        for name in ("reload_interval", "learn_lock_timeout", "spamd_timeout"):
            if not math.isfinite(getattr(self, name)):
                raise _Invalid(name, f"must be a finite number, got {getattr(self, name)!r}")
        if self.reload_interval < 0:
            raise _Invalid("reload_interval", f"must be >= 0, got {self.reload_interval}")
        if self.spamd_timeout <= 0:
            raise _Invalid("spamd_timeout", f"must be > 0, got {self.spamd_timeout}")
        if self.spamd_listen is not None and _listen_address(self.spamd_listen)[1] == self.port:
            # One port cannot speak both: with several workers the spamd
            # listeners (SO_REUSEPORT) took the HTTP address over, and HTTP
            # clients got "SPAMD/1.1 76" while serve looked healthy; with one,
            # uvicorn's bind failed after startup (exit 3).  Refused on the
            # port alone: other hosts on one port are no setup worth a guess
            # at which addresses overlap ("localhost", 0.0.0.0, "::").
            raise _Invalid("spamd_listen", f"must not be on the HTTP service's port {self.port}: "
                                           f"spamc's protocol needs a port of its own")
        if self.max_user_models < 1:
            raise _Invalid("max_user_models", f"must be >= 1, got {self.max_user_models}")
        if self.learn_lock_timeout < 0:
            raise _Invalid("learn_lock_timeout", f"must be >= 0, got {self.learn_lock_timeout}")
        if not _HEADER_NAME_RE.fullmatch(self.user_header):
            raise _Invalid("user_header", f"must be an HTTP header name, got {self.user_header!r}")
        for name in ("learn_token", "score_token"):
            token = getattr(self, name)
            if token is not None and (len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token)):
                raise _Invalid(name, f"must be at least {MIN_TOKEN_LENGTH} characters "
                                     f"without spaces (e.g. from `openssl rand -hex 24`)")
            if token is not None and not _PRINTABLE_ASCII_RE.fullmatch(token):
                # Starlette reads header values as latin-1, curl sends the
                # bytes it is given (UTF-8): "é" arrives as "Ã©", and such a
                # token was accepted here but could never authenticate.
                raise _Invalid(name, "must be printable ASCII, as HTTP header values are "
                                     "(e.g. from `openssl rand -hex 24`)")

    @property
    def learning_enabled(self) -> bool:
        return self.learn_token is not None

    @property
    def is_loopback(self) -> bool:
        return _is_loopback(self.host)

    @property
    def spamd_address(self) -> tuple[str, int] | None:
        """``spamd_listen`` as (host, port); None when it is not set."""
        return None if self.spamd_listen is None else _listen_address(self.spamd_listen)

    @property
    def spamd_is_loopback(self) -> bool:
        address = self.spamd_address
        return address is not None and _is_loopback(address[0])

    def replace(self, **changes: Any) -> ServerSettings:
        return dataclasses.replace(self, **changes)


def _listen_address(text: str) -> tuple[str, int]:
    found = _LISTEN_RE.fullmatch(text)
    # Port 0 (any free port) is refused: each worker would get a port of its own.
    if not found or not 1 <= int(found["port"]) <= 65535:
        raise _Invalid("spamd_listen", f"must be HOST:PORT with a port of 1..65535 (e.g. "
                                       f"\"127.0.0.1:783\", \"[::1]:783\"), got {text!r}")
    try:
        mapped = ipaddress.IPv6Address(found["v6"]).ipv4_mapped if found["v6"] else None
    except ValueError:
        mapped = None       # not an address: serve's bind check says so
    if mapped is not None:
        # asyncio's listener sets IPV6_V6ONLY, on which such an address cannot
        # be bound: it passed serve's own check (a plain bind), then every
        # worker failed with a traceback (exit 3).
        raise _Invalid("spamd_listen", f"must not be an IPv4-mapped IPv6 address "
                                       f"({text!r}): use {mapped}:{found['port']}")
    return found["v6"] or found["host"], int(found["port"])


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def _check_private(path: Path, what: str) -> None:
    """Refuse a secret in a file its group or others can read (the sieve
    guide's 0640 copy for the mail user must not be the service's own)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from exc
    if stat.S_ISDIR(mode):
        # A folder (learn_token_file = "/etc/spamlearn") has the x bits set:
        # it was refused as a token file others can read, with the advice to
        # chmod 600 it, which locks the service's user out of the folder.
        raise ConfigError(f"{what} {path} is a folder, not the file holding the token")
    if mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
        # "Its group" said: an admin's root:spamlearn 0640 read as "not
        # readable by others" (a helper's review).
        raise ConfigError(f"{what} {path} holds a token but is readable by its group or others "
                          f"(mode {stat.S_IMODE(mode):o}); chmod 600 it, owned by the user "
                          f"the service runs as")


def _read_token_file(value: Any, base: Path | None, what: str) -> str:
    path = as_path(value, what, base)
    _check_private(path, what)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    if not token:
        raise ConfigError(f"{what} {path} is empty")
    return token


def _as_bool(value: Any, what: str) -> bool:
    # Strictly a TOML boolean: "no" is a non-empty string, and truthy.
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be true or false, got {value!r}")
    return value


def _as_token(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string")  # not echoed: it is meant to be a secret
    return value


# What a file value must be; each raises ConfigError naming the key.
_CONVERTERS = {
    "host": as_str, "port": as_int, "workers": as_int,
    "max_body_size": as_int, "reload_interval": as_float, "per_user": _as_bool,
    "user_header": as_str, "max_user_models": as_int,
    "learn_lock_timeout": as_float, "access_log": _as_bool,
    "spamd_listen": as_str, "spamd_allow_tell": _as_bool, "spamd_timeout": as_float,
}
# The keys an environment variable may set, and how its text is read.
_ENV_READERS = {
    "host": lambda text, what: text, "port": env_int, "workers": env_int,
    "max_body_size": env_int, "reload_interval": env_float,
    "spamd_listen": lambda text, what: text,
}


def load_server_settings(settings: Settings, *, env: Mapping[str, str] | None = None,
                         **overrides: Any) -> ServerSettings:
    """Build ``ServerSettings`` from ``settings.section("server")``, environment and flags.

    ``overrides`` are the command-line flags (None = not given); tokens are
    not among them on purpose.

    Raises
    ------
    ConfigError
        An unknown key, a value of the wrong type or range, or a token file
        that is missing, empty or readable by others.
    """
    env = os.environ if env is None else env
    table = settings.section("server")
    if not isinstance(table, dict):
        raise ConfigError(f"{source_of(settings)}[server] must be a table")
    # Ranges are checked by ServerSettings, once file, environment and flags
    # are merged, so only these messages can name the file.
    where = f"{source_of(settings)}[server]"
    refuse_unknown(table, _KEYS, f"{source_of(settings)}unknown key(s) in [server]")
    base = settings.config_file.parent if settings.config_file else None
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}     # key -> where its value came from, for range errors
    for key, convert in _CONVERTERS.items():
        if key in table:
            origin[key] = f"{where} {key}"
            values[key] = convert(table[key], origin[key])
    for name in ("learn_token", "score_token"):
        if name in table:
            if settings.config_file is not None:
                _check_private(settings.config_file, "config file")
            origin[name] = f"{where} {name}"
            values[name] = _as_token(table[name], origin[name])
        if f"{name}_file" in table:
            origin[name] = f"{where} {name}_file"
            values[name] = _read_token_file(table[f"{name}_file"], base, origin[name])

    for key, read in _ENV_READERS.items():
        variable = f"SPAMLEARN_SERVER_{key.upper()}"
        if env.get(variable):
            origin[key] = variable
            values[key] = read(env[variable], variable)
    for name in ("learn_token", "score_token"):
        variable = f"SPAMLEARN_SERVER_{name.upper()}"
        if env.get(f"{variable}_FILE"):
            origin[name] = f"{variable}_FILE"
            values[name] = _read_token_file(env[f"{variable}_FILE"], None, origin[name])
        if env.get(variable):
            origin[name] = variable
            values[name] = env[variable].strip()

    for key, value in overrides.items():
        if value is not None:
            origin[key] = "--" + key.replace("_", "-")
            values[key] = value
    if isinstance(values.get("spamd_listen"), str) and values["spamd_listen"].strip().lower() == "off":
        # The only way to turn off, from a flag or the environment, a
        # listener the file sets: an empty value is no address (78), and an
        # empty variable is taken as unset.
        values["spamd_listen"] = None
    try:
        return ServerSettings(**values)
    except _Invalid as exc:
        if exc.key not in origin:
            raise
        raise ConfigError(f"{origin[exc.key]} {exc.problem}") from None
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
