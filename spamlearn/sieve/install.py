"""Put the rendered files in place, compile the Sieve scripts, create the spool."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import ConfigError
from ..regularfile import check_replaceable, make_folders
from .options import SieveOptions
from .spool import Spool
from .templates import CONF_NAME, RenderedFile, render_files

__all__ = ["install", "uninstall", "staged_path", "compile_sieve_script", "SIEVEC"]

SIEVEC = "/usr/bin/sievec"


def staged_path(path: Path, dest: Path | None) -> Path:
    """``path`` below a staging root (``DESTDIR``-style), or ``path`` itself."""
    return dest / path.relative_to(path.anchor) if dest is not None else path


def _write_atomically(path: Path, text: str, mode: int) -> None:
    check_replaceable(path)
    # 0755 whatever the umask: Dovecot's mail user must reach the scripts
    # and run the pipe program (see ``make_folders``).
    make_folders(path.parent, mode=0o755)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def compile_sieve_script(script: Path, dovecot_config: Path) -> None:
    """Precompile with ``sievec -c``, so Dovecot never tries (and fails) to save a binary.

    The config only has to enable the same Sieve plugins and extensions as
    the server; our own snippet does, so it is used on its own.  (Plain
    ``sievec`` would read /etc/dovecot and fail with "unknown Sieve
    capability 'vnd.dovecot.pipe'" until the snippet is installed there.)
    """
    if not os.access(SIEVEC, os.X_OK):
        raise ConfigError(f"{SIEVEC} not found: apt-get install dovecot-sieve")
    result = subprocess.run([SIEVEC, "-c", str(dovecot_config), str(script)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigError(f"sievec failed for {script}: {(result.stdout + result.stderr).strip()}")


def _lookup_user(name: str) -> int:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise ConfigError(f"no such user: {name!r} (the mail user, e.g. vmail)") from None


def _lookup_group(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(f"no such group: {name!r} (the group the drain runs as)") from None


def install(options: SieveOptions, *, dest: Path | None = None, compile_scripts: bool = True,
            mail_user: str | None = None, drain_group: str | None = None) -> list[Path]:
    """Write the setup's files, compile its scripts and create its spool.

    Parameters
    ----------
    options : SieveOptions
    dest : Path, optional
        Staging root: files go to ``dest/<absolute path>`` (for packaging or
        review); the files still name the final paths.
    compile_scripts : bool
        Run ``sievec`` on the two scripts (needs dovecot-sieve).
    mail_user, drain_group : str, optional
        Owner and group of the spool folders (mode 2770): the user Dovecot
        runs pipe programs as, and the group ``spamlearn sieve drain`` runs
        as.  Not given: the spool is owned by whoever runs this.

    Returns
    -------
    list of Path
        What was written or created.

    Raises
    ------
    ConfigError
        Unknown user or group, sievec missing or failing.
    """
    owner = _lookup_user(mail_user) if mail_user else None
    group = _lookup_group(drain_group) if drain_group else None
    written: list[Path] = []
    files: list[RenderedFile] = render_files(options)
    for rendered in files:
        target = staged_path(rendered.path, dest)
        _write_atomically(target, rendered.text, rendered.mode)
        written.append(target)
    if compile_scripts:
        conf = staged_path(options.conf_dir / CONF_NAME, dest)
        for rendered in files:
            if rendered.kind == "sieve":
                compile_sieve_script(staged_path(rendered.path, dest), conf)
                written.append(staged_path(rendered.path.with_suffix(".svbin"), dest))
    spool = Spool(staged_path(options.spool, dest))
    spool.create(owner, group)
    written.append(spool.root)
    return written


def uninstall(options: SieveOptions, *, dest: Path | None = None) -> list[Path]:
    """Remove the config snippet, scripts and pipe program (the spool is kept);
    with ``dest``, the copies ``install(dest=...)`` staged below it."""
    removed = []
    for rendered in render_files(options):
        for path in (rendered.path, rendered.path.with_suffix(".svbin")):
            path = staged_path(path, dest)
            if path.exists():
                path.unlink()
                removed.append(path)
    sieve_dir = staged_path(options.sieve_dir, dest)
    if sieve_dir.is_dir() and not any(sieve_dir.iterdir()):
        shutil.rmtree(sieve_dir)
    return removed
