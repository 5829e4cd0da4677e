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
that subsystem, so this module does not grow with every feature.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["Settings", "load_settings", "find_config_file", "default_data_dir"]

CONFIG_ENV = "SPAMLEARN_CONFIG"


def default_data_dir() -> Path:
    """Where a user's own model lives when nothing says otherwise (XDG)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "spamlearn"


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
    lock_timeout: float = 60.0
    user_models_dir: Path | None = None
    own_model_users: frozenset[str] = frozenset()
    config_file: Path | None = None
    sections: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.ham_cutoff <= self.spam_cutoff <= 1.0:
            raise ConfigError(
                f"cutoffs must satisfy 0 <= ham_cutoff <= spam_cutoff <= 1, "
                f"got ham_cutoff={self.ham_cutoff} spam_cutoff={self.spam_cutoff}"
            )
        if self.scan_limit < 1024:
            raise ConfigError(f"scan_limit must be at least 1024 bytes, got {self.scan_limit}")
        if self.lock_timeout < 0:
            raise ConfigError(f"lock_timeout must be >= 0, got {self.lock_timeout}")
        if self.min_messages < 0:
            raise ConfigError(f"min_messages must be >= 0, got {self.min_messages}")

    @property
    def effective_ledger_path(self) -> Path:
        return self.ledger_path or ledger_path_for(self.model_path)

    def has_own_model(self, user: str | None) -> bool:
        return bool(user) and user in self.own_model_users

    def user_model_path(self, user: str) -> Path:
        """The model file of ``user`` (whether or not it exists yet)."""
        if not user or "/" in user or user.startswith(".") or "\0" in user:
            raise ConfigError(f"invalid user name {user!r}")
        base = self.user_models_dir or self.model_path.parent / "users"
        return base / f"{user}.joblib"

    def model_path_for(self, user: str | None) -> Path:
        """The model a user trains: their own if configured, else the shared one."""
        if user and self.has_own_model(user):
            return self.user_model_path(user)
        return self.model_path

    def section(self, name: str) -> Any:
        return self.sections.get(name, {})

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def ledger_path_for(model_path: Path) -> Path:
    return model_path.with_name(model_path.stem + ".ledger")


def find_config_file(explicit: Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if env is None else env
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    if env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
        if not path.is_file():
            raise ConfigError(f"config file {path} (from ${CONFIG_ENV}) does not exist")
        return path
    for candidate in (Path.home() / ".config" / "spamlearn" / "spamlearn.toml",
                      Path("/etc/spamlearn/spamlearn.toml")):
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc


def _as_float(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None


def _as_int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be an integer, got {value!r}") from None


def _resolve(base: Path | None, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    return path


_MODEL_KEYS = {"path", "ledger", "ham_cutoff", "spam_cutoff", "scan_limit", "min_messages", "lock_timeout"}


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
        The file is unreadable or not TOML, or a value is out of range.
    """
    env = os.environ if env is None else env
    path = find_config_file(config_file, env)
    data = _read_toml(path) if path else {}
    base = path.parent if path else None
    values: dict[str, Any] = {"config_file": path}

    model = data.get("model", {})
    if not isinstance(model, dict):
        raise ConfigError("[model] must be a table")
    unknown = set(model) - _MODEL_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) in [model]: {', '.join(sorted(unknown))}")
    if "path" in model:
        values["model_path"] = _resolve(base, model["path"])
    if "ledger" in model:
        values["ledger_path"] = _resolve(base, model["ledger"])
    for key in ("ham_cutoff", "spam_cutoff", "lock_timeout"):
        if key in model:
            values[key] = _as_float(model[key], f"[model] {key}")
    for key in ("scan_limit", "min_messages"):
        if key in model:
            values[key] = _as_int(model[key], f"[model] {key}")

    users = data.get("users", {})
    if not isinstance(users, dict):
        raise ConfigError("[users] must be a table")
    if "dir" in users:
        values["user_models_dir"] = _resolve(base, users["dir"])
    own = set(users.get("own_model", []))
    for account in data.get("accounts", []) or []:
        if isinstance(account, dict) and account.get("own_model") and account.get("username"):
            own.add(str(account["username"]))
    values["own_model_users"] = frozenset(str(u) for u in own)

    if env.get("SPAMLEARN_MODEL"):
        values["model_path"] = Path(env["SPAMLEARN_MODEL"]).expanduser()
    if env.get("SPAMLEARN_LEDGER"):
        values["ledger_path"] = Path(env["SPAMLEARN_LEDGER"]).expanduser()
    if env.get("SPAMLEARN_HAM_CUTOFF"):
        values["ham_cutoff"] = _as_float(env["SPAMLEARN_HAM_CUTOFF"], "SPAMLEARN_HAM_CUTOFF")
    if env.get("SPAMLEARN_SPAM_CUTOFF"):
        values["spam_cutoff"] = _as_float(env["SPAMLEARN_SPAM_CUTOFF"], "SPAMLEARN_SPAM_CUTOFF")
    if env.get("SPAMLEARN_LOCK_TIMEOUT"):
        values["lock_timeout"] = _as_float(env["SPAMLEARN_LOCK_TIMEOUT"], "SPAMLEARN_LOCK_TIMEOUT")
    if env.get("SPAMLEARN_SCAN_LIMIT"):
        values["scan_limit"] = _as_int(env["SPAMLEARN_SCAN_LIMIT"], "SPAMLEARN_SCAN_LIMIT")

    values.update({k: v for k, v in overrides.items() if v is not None})
    values["sections"] = {k: v for k, v in data.items() if k not in ("model", "users")}
    try:
        return Settings(**values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
