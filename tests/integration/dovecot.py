"""A real, throw-away Dovecot IMAP server for integration tests.

No mocks: this starts ``/usr/sbin/dovecot`` (Debian package ``dovecot-imapd``) in the
foreground with its own generated config, port, ``base_dir``, ``state_dir``, log and Maildir
store, all inside one ``tempfile.mkdtemp()`` folder under /tmp.  It never reads or touches
``/etc/dovecot`` or the system service.  Optionally Pigeonhole imapsieve
(``dovecot-sieve``) is enabled, so that moving/copying a message between mailboxes runs a
``vnd.dovecot.pipe`` program; and, apart from that, Sieve at delivery
(:class:`DeliverySieve`): :meth:`DovecotServer.deliver` hands a message to
``dovecot-lda``, which runs the user's ``~/.dovecot.sieve`` with ``vnd.dovecot.filter``
programs.

Usage::

    with DovecotServer(users={"alice": "secret"}) as srv:
        client = srv.connect("alice")      # imapclient.IMAPClient, logged in
        client.append("INBOX", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")

Facts this relies on (measured on Debian 12, Dovecot 2.3.19.1, Pigeonhole 0.5.19):

* As root, mail cannot be owned by uid 0, so mail is owned by ``nobody``/``nogroup``;
  the auth process runs as ``dovecot``, logins as ``dovenull``.  Every parent directory of
  the server folder must therefore be o+x: pytest's ``tmp_path`` (under a 0700
  ``/tmp/pytest-of-root``) does NOT work, hence ``mkdtemp()`` directly under /tmp.
* As non-root, everything runs as the current user; ``default_internal_group`` must be the
  user's own group and ``imap-login``/``anvil`` must not chroot.
* imapsieve pipe programs run synchronously (the pipe has finished when the tagged OK of
  MOVE/COPY arrives), as the mail user (as root: uid ``nobody``, gid ``nogroup``, plus
  supplementary group ``dovecot``), with cwd = the user's home and an almost empty
  environment: only ``USER``, ``HOME`` and ``HOST`` (``/bin/sh`` adds ``PWD``).  Dovecot
  clears the environment before the exec, so not even ``import_environment`` reaches it,
  and there is no setting to add variables: :class:`SieveSetup` ``pipe_env`` is therefore
  implemented with generated ``/bin/sh`` wrappers.
  There is **no PATH**.  dash (/bin/sh) still finds bare commands through its built-in
  default path, but children don't get a PATH: ``#!/usr/bin/env python3`` resolves to
  Debian's /usr/bin/python3 (glibc's default path), not the project's interpreter.  And as
  root the interpreter must be executable by ``nobody``: nothing under /root (0700).
* The piped message has CRLF line endings, otherwise unchanged.  A failing pipe program does
  not fail the IMAP command; it only logs ``Error:`` lines to dovecot.log, so tests should
  assert ``server.errors() == []``.
* IMAP MOVE counts as imapsieve cause ``COPY``; APPEND into a mailbox is cause ``APPEND``.
* Delivery (``dovecot-lda -d USER``, run as root or as the server's user) asks the running
  master's auth-userdb socket for the user, then drops to the mail user, so the server must
  be running.  It logs into dovecot.log as the server does.  Filter programs run like pipe
  programs (mail user, cwd = home, no PATH), with ``USER HOME HOST SENDER RECIPIENT
  ORIG_RECIPIENT`` only; they get the message with CRLF, and what they write back is
  stored with LF in the Maildir.  A filter that exits non-zero is not an error: its output
  is thrown away, the script goes on with the message as it came, and dovecot.log has an
  ``Info:`` line.  A filter that outlives ``sieve_filter_exec_timeout`` (10 s) is killed
  and dovecot-lda 2.3.19 then aborts (``Panic: output stream ... is missing error
  handling``, rc -6): nothing is delivered.
* Master users (``master_users``): ``auth_master_user_separator = *`` and a
  ``passwd-file`` passdb with ``master = yes``, ``pass = yes`` before the users' one, as
  Dovecot's ``conf.d/auth-master.conf.ext`` and wiki (Authentication.MasterUsers) have it.
  The login ``alice*spamlearn`` with spamlearn's password is then alice's session:
  her mail, ``USER=alice`` for pipe programs; ``pass = yes`` makes the users' passdb
  check that alice exists (it does not check her password).
* Test-friendly deviations from a stock server: failed logins answer after ~0.5 s (not 2 s)
  and there is no per-IP auth penalty; ``stop()`` skips the master's final 1 s sleep.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

DOVECOT_BIN = "/usr/sbin/dovecot"
SIEVEC_BIN = "/usr/bin/sievec"
LDA_BIN = "/usr/lib/dovecot/dovecot-lda"
NOT_INSTALLED = (
    "Dovecot is not installed: apt-get install dovecot-imapd dovecot-sieve (see .ci/run)"
)

# Exit status of the Dovecot master when a listener cannot be created (e.g. port in use).
_RC_LISTEN_FAILED = 89

SPECIAL_MAILBOXES = {"Junk": "\\Junk", "Archive": "\\Archive", "Trash": "\\Trash"}


@dataclass
class ImapsieveRule:
    """One ``imapsieve_mailboxN_*`` rule.

    ``name``: mailbox the message arrives in (``*`` = any), ``from_``: mailbox it came from
    (None = not restricted), ``causes``: space separated ``COPY``/``APPEND``/``FLAG``
    (an IMAP MOVE is ``COPY``), ``before``/``after``: paths of Sieve scripts.
    """

    name: str
    before: str | os.PathLike | None = None
    from_: str | None = None
    causes: str = "COPY"
    after: str | os.PathLike | None = None


@dataclass
class SieveSetup:
    """Pigeonhole imapsieve + extprograms configuration.

    ``pipe_bin_dir``: folder with the programs that ``pipe "name"`` may run.  Its regular
    files are *copied* at ``start()`` into the server folder (mode 0755), so they are
    readable by the mail user wherever the caller wrote them; later edits to the
    originals have no effect until ``restart()``.  A program's interpreter (``#!`` line)
    must be executable by the mail user (``nobody`` as root): e.g. nothing under /root.

    ``rules``: the imapsieve mailbox rules; their scripts are copied into the server
    folder and precompiled with ``sievec -c <config>``.

    ``settings``: extra ``plugin {}`` settings (e.g. ``{"sieve_pipe_exec_timeout": "5s"}``).

    ``pipe_env``: variables the pipe programs get.  Dovecot itself only passes USER,
    HOME and HOST, so each program is wrapped by a generated /bin/sh script that exports
    these and ``exec``s the copy.
    """

    pipe_bin_dir: str | os.PathLike
    rules: Sequence[ImapsieveRule] = ()
    settings: Mapping[str, str] = field(default_factory=dict)
    pipe_env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class DeliverySieve:
    """Pigeonhole Sieve at delivery: ``dovecot-lda`` runs each user's ``~/.dovecot.sieve``
    (written with :meth:`DovecotServer.set_sieve_script`).

    ``filter_programs``: files that ``filter "name"`` may run (``sieve_filter_bin_dir``),
    copied at ``start()`` into the server folder (mode 0755), like
    :class:`SieveSetup` ``pipe_bin_dir``'s; a program's interpreter must be executable by
    the mail user.

    ``extensions``: ``sieve_extensions``, what users' scripts may ``require`` beyond the
    default set (``vnd.dovecot.filter`` is never on by default).

    ``filter_env``: variables the filter programs get (Dovecot passes none but ``USER``,
    ``HOME``, ``HOST``, ``SENDER``, ``RECIPIENT``, ``ORIG_RECIPIENT``), by generated
    /bin/sh wrappers as ``pipe_env``.

    ``settings``: extra ``plugin {}`` settings (e.g. ``{"sieve_filter_exec_timeout": "5s"}``).
    """

    filter_programs: Sequence[str | os.PathLike] = ()
    extensions: str = "+vnd.dovecot.filter"
    filter_env: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)


def _mail_ids() -> tuple[int, int]:
    if os.geteuid() == 0:
        return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    return os.getuid(), os.getgid()


def _check_name(what: str, value: str) -> None:
    if not value or any(c in value for c in ":\n\r\0") or (what == "user" and "/" in value):
        raise ValueError(f"invalid {what} for passwd-file: {value!r}")


def _group_members(pgid: int) -> list[tuple[int, str, str]]:
    """(pid, comm, wchan) of the live processes of group ``pgid``; zombies are left out.

    Zombies count as dead: orphaned children are reaped by PID 1, which can take seconds.
    """
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
            fields = data[data.rfind(b")") + 2 :].split()  # state ppid pgrp ...
            if len(fields) < 3 or int(fields[2]) != pgid or fields[0] in (b"Z", b"X"):
                continue
            comm = data[data.find(b"(") + 1 : data.rfind(b")")].decode(errors="replace")
            try:
                with open(f"/proc/{entry}/wchan") as f:
                    wchan = f.read().strip()
            except OSError:
                wchan = ""
        except (OSError, ValueError):
            continue
        members.append((int(entry), comm, wchan))
    return members


def _process_group_alive(pgid: int) -> bool:
    """True if some process of group ``pgid`` is still running (zombies count as dead)."""
    return bool(_group_members(pgid))


def _master_only_flushing(pgid: int) -> bool:
    """After SIGTERM: all services are gone except an idle log process, master sleeps.

    The Dovecot 2.3 master then just waits out a hard-coded sleep(1) before exiting.
    Needs readable /proc/PID/wchan; otherwise returns False (the caller waits).
    """
    members = _group_members(pgid)
    master = [m for m in members if m[0] == pgid]
    others = [m for m in members if m[0] != pgid]
    return (
        len(master) == 1
        and "nanosleep" in master[0][2]
        and all(comm == "log" and "epoll" in wchan for _pid, comm, wchan in others)
    )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class DovecotServer:
    """A throw-away Dovecot IMAP server (plain IMAP on 127.0.0.1, random free port)."""

    host = "127.0.0.1"

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        sieve: SieveSetup | None = None,
        extra_config: str = "",
        delivery: DeliverySieve | None = None,
        master_users: Mapping[str, str] | None = None,
    ) -> None:
        self.users: dict[str, str] = {}
        # name -> password of the master users, who log in as "user*master"; none: the
        # config has neither the separator nor the master passdb (as before they existed)
        self.master_users: dict[str, str] = dict(master_users or {})
        self.sieve = sieve  # may be replaced before start()
        self.delivery = delivery  # likewise
        self.extra_config = extra_config
        self.port: int | None = None
        self.mail_uid, self.mail_gid = _mail_ids()
        self._proc: subprocess.Popen | None = None
        self._greeting_token = "spamlearn-test-" + secrets.token_hex(6)

        self.dir = Path(tempfile.mkdtemp(prefix="spamlearn-dovecot-", dir="/tmp"))
        os.chmod(self.dir, 0o755)  # auth (dovecot) and imap (nobody) must traverse it
        for sub in ("log", "home", "run", "state"):
            (self.dir / sub).mkdir(mode=0o755)
        # A folder the mail user (and thus pipe programs) can write to.
        self.shared_dir = self.dir / "shared"
        self.shared_dir.mkdir(mode=0o755)
        self._chown_mail(self.shared_dir)
        self.config_path = self.dir / "dovecot.conf"
        # one passwd-file per user (see add_user)
        self.users_dir = self.dir / "users"
        self.users_dir.mkdir(mode=0o750 if os.geteuid() == 0 else 0o700)
        if os.geteuid() == 0:  # read by the auth process, which runs as "dovecot"
            os.chown(self.users_dir, 0, grp.getgrnam("dovecot").gr_gid)
        self.log_path = self.dir / "log" / "dovecot.log"
        self.stderr_path = self.dir / "log" / "dovecot.stderr"
        for name, password in (users or {}).items():
            self.add_user(name, password)
        self.masters_path = self.dir / "masters"
        if self.master_users:
            self._write_masters()

    # ------------------------------------------------------------------ users / paths

    def _chown_mail(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.mail_uid, self.mail_gid)

    def home(self, user: str) -> Path:
        return self.dir / "home" / user

    def maildir(self, user: str) -> Path:
        return self.home(user) / "Maildir"

    def add_user(self, name: str, password: str) -> None:
        """Add a user, or change a password; works while the server runs.

        Each user has its own passwd-file (``users/<name>``, passdb path ``users/%n``).
        Dovecot re-reads a passwd-file when its mtime or size changed, but stats each
        file at most once per second (``last_sync_time == ioloop_time`` in
        db-passwd-file.c).  A new user's file has never been read, so adding is
        immediate; *changing* a password while running waits for the next full second
        (0-1 s) so that the next login surely sees it.
        """
        _check_name("user", name)
        _check_name("password", password)
        home = self.home(name)
        if not home.exists():
            home.mkdir(mode=0o700)
            self._chown_mail(home)
        changed = name in self.users
        self.users[name] = password
        path = self.users_dir / name
        line = f"{name}:{{PLAIN}}{password}:{self.mail_uid}:{self.mail_gid}::{home}::\n"
        tmp = self.users_dir / f".{name}.tmp"
        tmp.write_text(line)
        if os.geteuid() == 0:
            os.chown(tmp, 0, grp.getgrnam("dovecot").gr_gid)
            os.chmod(tmp, 0o640)
        else:
            os.chmod(tmp, 0o600)
        # the mtime (whole seconds) must move even for two edits within one second
        old = path.stat().st_mtime if path.exists() else 0
        written = time.time()
        new = max(written, old + 1)
        os.utime(tmp, (new, new))
        os.replace(tmp, path)
        if changed and self.running:
            while int(time.time()) <= int(written):
                time.sleep(max(0.001, int(written) + 1 - time.time()))

    def _write_masters(self) -> None:
        """The master users' passwd-file, read by auth (root:dovecot 0640 as root)."""
        lines = []
        for name, password in self.master_users.items():
            _check_name("user", name)
            _check_name("password", password)
            if "*" in name:
                raise ValueError(f"a master user's name cannot hold the separator: {name!r}")
            lines.append(f"{name}:{{PLAIN}}{password}\n")
        self.masters_path.write_text("".join(lines))
        if os.geteuid() == 0:
            os.chown(self.masters_path, 0, grp.getgrnam("dovecot").gr_gid)
            os.chmod(self.masters_path, 0o640)
        else:
            os.chmod(self.masters_path, 0o600)

    # ------------------------------------------------------------------ config

    def _master_config(self) -> str:
        if not self.master_users:
            return ""
        # Before the users' passdb: "alice*spamlearn" is looked up here as spamlearn,
        # then (pass = yes) alice in the next passdb, without her password.
        return (
            "auth_master_user_separator = *\n"
            "passdb {\n"
            "  driver = passwd-file\n"
            f"  args = scheme=PLAIN {self.masters_path}\n"
            "  master = yes\n"
            "  pass = yes\n"
            "}\n"
        )

    def _identity_config(self) -> str:
        uid, gid = self.mail_uid, self.mail_gid
        common = (
            f"first_valid_uid = {uid}\nlast_valid_uid = {uid}\n"
            f"first_valid_gid = {gid}\nlast_valid_gid = {gid}\n"
        )
        if os.geteuid() == 0:
            for user in ("dovecot", "dovenull"):
                try:
                    pwd.getpwnam(user)
                except KeyError:
                    raise RuntimeError(f"system user {user!r} missing. {NOT_INSTALLED}") from None
            return common + (
                "default_login_user = dovenull\n"
                "default_internal_user = dovecot\n"
            )
        me = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        return common + (
            f"default_login_user = {me}\n"
            f"default_internal_user = {me}\n"
            f"default_internal_group = {group}\n"
            "service anvil {\n  chroot =\n}\n"
            "service imap-login {\n  chroot =\n}\n"
        )

    def _sieve_config(self) -> str:
        if self.sieve is None:
            return ""
        lines = [
            "protocol imap {\n  mail_plugins = $mail_plugins imap_sieve\n}",
            "plugin {",
            "  sieve_plugins = sieve_imapsieve sieve_extprograms",
            "  sieve_global_extensions = +vnd.dovecot.pipe",
            f"  sieve_pipe_bin_dir = {self.dir / 'sieve-bin'}",
        ]
        for i, rule in enumerate(self.sieve.rules, start=1):
            prefix = f"  imapsieve_mailbox{i}_"
            lines.append(f"{prefix}name = {rule.name}")
            if rule.from_ is not None:
                lines.append(f"{prefix}from = {rule.from_}")
            lines.append(f"{prefix}causes = {rule.causes}")
            for kind in ("before", "after"):
                if getattr(rule, kind) is not None:
                    lines.append(f"{prefix}{kind} = file:{self._script_copy(i, kind)}")
        for key, value in self.sieve.settings.items():
            lines.append(f"  {key} = {value}")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _delivery_config(self) -> str:
        if self.delivery is None:
            return ""
        # sieve_plugins is one setting: it must name imapsieve too when that is on.
        plugins = "sieve_imapsieve sieve_extprograms" if self.sieve else "sieve_extprograms"
        lines = [
            "protocol lda {\n  mail_plugins = $mail_plugins sieve\n}",
            # A filter's output bigger than a memory buffer goes to a temporary file:
            # inside our folder, writable by the mail user (not /tmp, whatever its mode).
            f"mail_temp_dir = {self.shared_dir}",
            "plugin {",
            "  sieve = file:~/sieve;active=~/.dovecot.sieve",
            f"  sieve_plugins = {plugins}",
            f"  sieve_extensions = {self.delivery.extensions}",
            f"  sieve_filter_bin_dir = {self.dir / 'filter-bin'}",
        ]
        for key, value in self.delivery.settings.items():
            lines.append(f"  {key} = {value}")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _script_copy(self, index: int, kind: str) -> Path:
        return self.dir / "sieve" / f"rule{index}-{kind}.sieve"

    def _write_config(self) -> None:
        d = self.dir
        mailboxes = "".join(
            f"  mailbox {name} {{\n    special_use = {flag}\n    auto = subscribe\n  }}\n"
            for name, flag in SPECIAL_MAILBOXES.items()
        )
        config = f"""\
# generated by tests/integration/dovecot.py
instance_name = dovecot-test-{self.port}
base_dir = {d}/run
state_dir = {d}/state
log_path = {self.log_path}
info_log_path = {self.log_path}
protocols = imap
listen = {self.host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# Fail logins fast: no 2 s failure delay (failures are still flushed by a 0.5 s timer)
# and no per-IP auth penalty (which would slow down *later* logins from 127.0.0.1).
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
login_greeting = {self._greeting_token}
mail_location = maildir:~/Maildir
{self._identity_config()}
{self._master_config()}passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.users_dir}/%n
}}
userdb {{
  driver = passwd-file
  args = {self.users_dir}/%n
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
namespace inbox {{
  inbox = yes
  separator = /
{mailboxes}}}
{self._sieve_config()}
{self._delivery_config()}
{self.extra_config}
"""
        self.config_path.write_text(config)
        os.chmod(self.config_path, 0o644)

    def _install_sieve(self) -> None:
        """Copy scripts and programs into the server folder and precompile the scripts."""
        if self.delivery is not None:
            if not os.access(SIEVEC_BIN, os.X_OK) or not os.access(LDA_BIN, os.X_OK):
                raise RuntimeError(NOT_INSTALLED)
            self._install_programs(
                [Path(p) for p in self.delivery.filter_programs],
                self.dir / "filter-bin", self.dir / "filter-libexec", self.delivery.filter_env)
        if self.sieve is None:
            return
        if not os.access(SIEVEC_BIN, os.X_OK):
            raise RuntimeError(NOT_INSTALLED)
        scripts = self.dir / "sieve"
        if scripts.exists():
            shutil.rmtree(scripts)
        scripts.mkdir(mode=0o755)
        src_dir = Path(self.sieve.pipe_bin_dir)
        if not src_dir.is_dir():
            raise RuntimeError(f"sieve pipe_bin_dir {src_dir} is not a directory")
        self._install_programs(
            [src for src in sorted(src_dir.iterdir()) if src.is_file()],
            self.dir / "sieve-bin", self.dir / "sieve-libexec", self.sieve.pipe_env)
        for i, rule in enumerate(self.sieve.rules, start=1):
            for kind in ("before", "after"):
                src = getattr(rule, kind)
                if src is None:
                    continue
                dst = self._script_copy(i, kind)
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o644)
                res = subprocess.run(
                    [SIEVEC_BIN, "-c", str(self.config_path), str(dst)],
                    capture_output=True,
                    text=True,
                )
                if res.returncode != 0:
                    raise RuntimeError(
                        f"sievec failed for {src} (rule {i} {kind}):\n{res.stdout}{res.stderr}"
                    )

    def _install_programs(self, programs: Sequence[Path], bin_dir: Path, libexec_dir: Path,
                          env: Mapping[str, str]) -> None:
        """Copy ``programs`` into ``bin_dir`` (mode 0755); with ``env``, ``bin_dir`` gets
        /bin/sh wrappers exporting it, which ``exec`` the copies in ``libexec_dir``."""
        for d in (bin_dir, libexec_dir):
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(mode=0o755)
        for key in env:
            if not key.isidentifier() or not key.isascii():
                raise ValueError(f"invalid environment variable name: {key!r}")
        env_lines = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        for src in programs:
            self._check_interpreter(src)
            if env:
                real = libexec_dir / src.name
                shutil.copyfile(src, real)
                os.chmod(real, 0o755)
                wrapper = bin_dir / src.name
                wrapper.write_text(
                    f"#!/bin/sh\n{env_lines}exec {shlex.quote(str(real))} \"$@\"\n"
                )
                os.chmod(wrapper, 0o755)
            else:
                dst = bin_dir / src.name
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o755)

    def _check_interpreter(self, program: Path) -> None:
        """As root, fail early if the mail user can't execute a program's ``#!`` interpreter.

        Otherwise the only symptom would be an Error line in dovecot.log at MOVE time.
        """
        if os.geteuid() != 0:
            return
        with open(program, "rb") as f:
            first = f.readline(256)
        if not first.startswith(b"#!") or not first[2:].split():
            return
        interpreter = first[2:].split()[0].decode(errors="replace")
        user = pwd.getpwuid(self.mail_uid).pw_name
        res = subprocess.run(
            ["runuser", "-u", user, "--", "/usr/bin/test", "-x", interpreter],
            capture_output=True,
        )
        if res.returncode != 0:
            raise RuntimeError(
                f"pipe program {program}: its interpreter {interpreter} is not executable by "
                f"the mail user {user!r} (uid {self.mail_uid}), which runs pipe programs. "
                "Use an interpreter outside /root (mode 0700), e.g. a venv under /opt or /tmp."
            )

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def master_pid(self) -> int | None:
        """PID of the Dovecot master (also the process group of all its children)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> "DovecotServer":
        if self.running:
            return self
        if not os.access(DOVECOT_BIN, os.X_OK):
            raise RuntimeError(NOT_INSTALLED)
        fixed_port = self.port is not None  # restart(): keep the same port
        deadline = time.monotonic() + 20
        attempt = 0
        while True:
            attempt += 1
            if not fixed_port:
                self.port = _free_port(self.host)
            self._write_config()
            if attempt == 1:
                self._install_sieve()
            rc, why = self._launch(deadline)
            if rc is None:
                return self
            # rc 89 is also used for config errors: only retry when the port was taken
            in_use = rc == _RC_LISTEN_FAILED and "Address already in use" in why
            if in_use and time.monotonic() < deadline and attempt < 50:
                # forget this attempt's "Address already in use" lines: not our errors
                for path, offset in self._launch_offsets.items():
                    if path.exists():
                        os.truncate(path, offset)
                if fixed_port:
                    time.sleep(0.1)
                continue
            raise RuntimeError(
                f"Dovecot failed to start on port {self.port} (rc={rc}):\n{why}\n"
                f"(config: {self.config_path})"
            )

    def _launch(self, deadline: float) -> tuple[int | None, str]:
        """Start the master in the foreground; wait for *our* greeting.

        Returns (None, "") on success, otherwise (returncode, reason).
        """
        pid_file = self.dir / "run" / "master.pid"
        if pid_file.exists():  # left behind by kill(); our processes are gone
            pid_file.unlink()
        offsets = {p: p.stat().st_size if p.exists() else 0
                   for p in (self.stderr_path, self.log_path)}
        self._launch_offsets = offsets

        def output() -> str:
            new = b""
            for path, offset in offsets.items():
                if path.exists():
                    with open(path, "rb") as f:
                        f.seek(offset)
                        new += f.read()
            return new.decode(errors="replace").strip()[-3000:]

        stderr = open(self.stderr_path, "ab")
        try:
            self._proc = subprocess.Popen(
                [DOVECOT_BIN, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # own process group: kill() can reach children
            )
        finally:
            stderr.close()
        while time.monotonic() < deadline:
            rc = self._proc.poll()
            if rc is not None:
                self._proc = None
                return rc, output()
            greeting = self._read_greeting()
            if greeting is not None and self._greeting_token in greeting:
                return None, ""
            time.sleep(0.005)
        self._kill_group()
        return -1, "no greeting within the start timeout\n" + output()

    def _read_greeting(self) -> str | None:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as s:
                data = b""
                while not data.endswith(b"\r\n") and len(data) < 4096:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                return data.decode("ascii", "replace")
        except OSError:
            return None

    def _kill_group(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pgid = proc.pid
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        self._wait_group_gone(pgid, timeout=5)

    def _wait_group_gone(self, pgid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while _process_group_alive(pgid):
            if time.monotonic() > deadline:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    return
                deadline = time.monotonic() + timeout
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL the master and all its children (simulates a crash). Keeps the folder."""
        self._kill_group()

    def _terminate(self, timeout: float = 10, fast: bool = True) -> None:
        """SIGTERM the master and wait for it (SIGKILL the group after ``timeout``).

        On SIGTERM the 2.3 master stops its services within ~20 ms, then sleeps a
        hard-coded 1 s to let its log process drain before exiting.  With ``fast`` we
        don't wait for that: once every other service has exited and the log process is
        idle in epoll_wait (nothing left to write), the master is SIGKILLed.  Only its
        master.pid is left behind (start() removes it); the log is complete.
        """
        proc = self._proc
        if proc is None:
            return
        deadline = time.monotonic() + timeout
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            while proc.poll() is None and time.monotonic() < deadline:
                if fast and _master_only_flushing(proc.pid):
                    proc.kill()
                    break
                time.sleep(0.005)
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is not None:
            # the log process exits by itself once the master's pipes are closed
            settle = time.monotonic() + 1
            while _process_group_alive(proc.pid) and time.monotonic() < settle:
                time.sleep(0.005)
            if not _process_group_alive(proc.pid):
                self._proc = None
                return
        # The master ignored SIGTERM for `timeout` seconds, or children survived it.
        self._kill_group()

    def restart(self) -> "DovecotServer":
        """Stop (if running) and start again on the same port with the same mail store."""
        self._terminate()
        return self.start()

    def stop(self, keep_dir: bool = False) -> None:
        """SIGTERM the master, wait (SIGKILL after a timeout), then remove the folder."""
        self._terminate()
        if not keep_dir and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "DovecotServer":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<DovecotServer {self.host}:{self.port} {state} dir={self.dir}>"

    # ------------------------------------------------------------------ logs

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def errors(self) -> list[str]:
        """Lines of dovecot.log (and the master's stderr) that are errors."""
        text = self.log_text() + self._stderr_text()
        return [
            line
            for line in text.splitlines()
            if any(k in line for k in (" Error: ", " Fatal: ", " Panic: "))
        ]

    # ------------------------------------------------------------------ IMAP helpers

    def connect(self, user: str, password: str | None = None, timeout: float = 10):
        """Return an ``imapclient.IMAPClient`` logged in as ``user`` (plain IMAP)."""
        import imapclient

        if not self.running:
            raise RuntimeError(f"{self!r} is not running")
        client = imapclient.IMAPClient(self.host, self.port, ssl=False, timeout=timeout)
        secret = self.users[user] if password is None else password
        try:
            if (user + secret).isascii():
                client.login(user, secret)
            else:
                client.plain_login(user, secret)     # LOGIN cannot carry UTF-8
        except BaseException:
            client.shutdown()
            raise
        return client

    def reset_user(self, user: str) -> None:
        """Empty ``user``'s mailboxes over IMAP, like a real user would.

        Deletes every mailbox except INBOX/Junk/Archive/Trash (recreating those if a test
        deleted them) and expunges all messages from the rest.  UIDVALIDITY of the kept
        mailboxes is unchanged and UIDNEXT keeps growing, as on a real server; a deleted
        and re-created mailbox gets a new UIDVALIDITY.
        """
        keep = ["INBOX", *SPECIAL_MAILBOXES]
        client = self.connect(user)
        try:
            folders = client.list_folders()
            # children before parents; \Noselect/\NonExistent parents vanish with them
            for flags, _sep, name in sorted(folders, key=lambda f: (-f[2].count("/"), f[2])):
                if name in keep or {b"\\Noselect", b"\\NonExistent"} & set(flags):
                    continue
                client.delete_folder(name)
            for name in client.list_sub_folders():
                if name[2] not in keep:
                    client.unsubscribe_folder(name[2])
            existing = {name for _f, _s, name in client.list_folders()}
            for name in keep:
                if name not in existing:
                    client.create_folder(name)
                    client.subscribe_folder(name)
                info = client.select_folder(name)
                if info[b"EXISTS"]:
                    client.add_flags("1:*", [b"\\Deleted"], silent=True)
                    client.expunge()
                client.unselect_folder()
        finally:
            client.logout()

    # ------------------------------------------------------------------ delivery helpers

    def set_sieve_script(self, user: str, script: str) -> Path:
        """Make ``script`` the active Sieve script of ``user`` (``~/.dovecot.sieve``), run by
        dovecot-lda at delivery; after ``start()`` (sievec needs the config).

        It is compiled with ``sievec`` first: a script that does not compile would only
        show at delivery, as an Error line in dovecot.log and the mail kept in INBOX.
        dovecot-lda compiles it again, as the mail user, into ``~/.dovecot.svbin``.
        """
        if self.delivery is None:
            raise RuntimeError(f"{self!r} runs no Sieve at delivery: give it a DeliverySieve")
        if user not in self.users:
            raise ValueError(f"no user {user!r}: add_user() first")
        check = self.dir / "sieve-check"
        check.mkdir(mode=0o755, exist_ok=True)
        source = check / f"{user}.sieve"
        source.write_text(script)
        res = subprocess.run(
            [SIEVEC_BIN, "-c", str(self.config_path), str(source), str(check / f"{user}.svbin")],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise RuntimeError(f"sievec failed for {user}'s script:\n{res.stdout}{res.stderr}")
        active = self.home(user) / ".dovecot.sieve"
        tmp = self.home(user) / ".dovecot.sieve.tmp"
        tmp.write_text(script)
        os.chmod(tmp, 0o644)
        self._chown_mail(tmp)
        os.replace(tmp, active)
        # a binary compiled from an older script in the same second would be taken as fresh
        (self.home(user) / ".dovecot.svbin").unlink(missing_ok=True)
        return active

    def deliver(self, user: str, raw: bytes, sender: str = "sender@example.org",
                timeout: float = 60) -> subprocess.CompletedProcess:
        """Deliver ``raw`` to ``user`` as an MTA does: ``dovecot-lda -d USER -f SENDER``.

        Returns the finished process: returncode 0 (delivered), 75 (try again later), 67
        (no such user)...; its stderr holds what the filter programs wrote there.
        """
        if not os.access(LDA_BIN, os.X_OK):
            raise RuntimeError(NOT_INSTALLED)
        if not self.running:
            raise RuntimeError(f"{self!r} is not running (dovecot-lda asks its auth for the user)")
        return subprocess.run(
            [LDA_BIN, "-c", str(self.config_path), "-d", user, "-f", sender],
            input=raw,
            capture_output=True,
            timeout=timeout,
        )

    def messages(self, user: str, mailbox: str = "INBOX") -> list[bytes]:
        """The messages of ``user``'s ``mailbox`` as stored in the Maildir (LF line ends),
        oldest first; [] if the mailbox does not exist."""
        folder = self.maildir(user)
        if mailbox != "INBOX":
            folder = folder / ("." + mailbox.replace("/", "."))
        files = [f for sub in ("new", "cur") if (folder / sub).is_dir()
                 for f in (folder / sub).iterdir()]
        files.sort(key=lambda f: (f.stat().st_mtime_ns, f.name))
        return [f.read_bytes() for f in files]
