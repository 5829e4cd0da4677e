"""Keeping a model pair: ``spamlearn backup`` and ``restore`` (the model and its ledger as one
archive), ``spamlearn resize`` (its learned messages counted into more buckets)."""

from __future__ import annotations

import contextlib
import lzma
import os
import pwd
import signal
import stat
import sys
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from .backup import BackupSummary, archive_compression, own_files, restore_backup, write_backup
from .cli import ExitCode, app, error_line, fail, handle_errors, state_of
from .config import check_features, check_user_name
from .errors import ModelFileError, SpamlearnError
from .mailsource import display_name
from .modelstore import ModelStore, refuse_foreign_link
from .regularfile import make_folders

UserOption = Annotated[str | None, typer.Option(
    help="This user's own model (one in \\[users] own_model, or an account's own_model = true).")]


@contextlib.contextmanager
def _terminated_cleanly() -> Iterator[None]:
    """SIGTERM (cron's `timeout`, systemd) ends the command through the
    normal unwinding, so temporary copies of the model are removed."""
    signals = (signal.SIGTERM, signal.SIGHUP)
    previous = [signal.signal(signum, lambda signum, frame: sys.exit(128 + signum)) for signum in signals]
    try:
        yield
    finally:
        for signum, handler in zip(signals, previous):
            signal.signal(signum, handler)


def _store(ctx: typer.Context, user: str | None) -> ModelStore:
    settings = state_of(ctx).settings
    if user is not None:
        check_user_name(user, "--user")
        if not settings.has_own_model(user):
            # learn --user falls back to the shared model with a note; a
            # restore must not overwrite the shared model by that route.
            raise fail(f"{user} has no own model (own_model in the config file); "
                       f"leave out --user for the shared model", ExitCode.USAGE)
    return ModelStore.from_settings(settings, user)


def _check_destination(destination: Path, store: ModelStore, what: str = "") -> Path:
    """Where the archive goes (a symbolic link's target), or a usage error
    (``what``: whose archive, to begin its line with, for ``backup --all``)."""

    def refuse(message: str) -> typer.Exit:
        return fail(f"{what}{message}", ExitCode.USAGE)

    shown = display_name(str(destination))
    to_pipe = "to write the archive into a pipe or a descriptor, give - and redirect standard output"
    if os.path.abspath(destination).startswith(("/dev/", "/proc/")):
        # /dev/stdout, /proc/self/fd/N resolve to whatever file is open there.
        raise refuse(f"{shown}: {to_pipe}")
    _not_through_a_foreign_link(destination, what)
    existing = False
    with contextlib.suppress(FileNotFoundError):
        mode = os.stat(destination).st_mode
        existing = True
        if stat.S_ISDIR(mode):
            raise refuse(f"{shown} is a folder; give the archive's file name")
        if not stat.S_ISREG(mode):
            raise refuse(f"{shown} is not a regular file (a device or FIFO?); {to_pipe}")
    target = Path(os.path.realpath(destination))
    if target in {Path(os.path.realpath(f)) for f in own_files(store)}:
        raise refuse(f"{shown} is one of the model's own files; write the archive elsewhere")
    if target.name.endswith((".lock", ".restoring", ".before-restore")):
        raise refuse(f"{shown} is named like a model's lock or restore file; write the archive elsewhere")
    if existing and not os.access(target, os.R_OK):
        # Root's archive of a backup run by hand, in the spamlearn user's
        # folder (0600): the nightly run called it "not a tar archive", which
        # it is, for each model every week (a helper's review).
        raise refuse(f"{shown} exists but this user cannot read it to check that it is an archive "
                     f"(it is {_owner(target)}'s); remove it, or back up as its owner")
    if existing and not (_is_tar(target) if target.stat().st_size else _has_archive_suffix(target.name)):
        # Overwriting last week's archive is the point; anything else (the
        # shared model named by mistake, an empty lock file) is kept.
        raise refuse(f"{shown} exists and is not a tar archive; remove it or choose another name")
    try:
        archive_compression(target.name)
    except ValueError as exc:
        raise refuse(f"{shown}: {exc}") from None
    # USAGE, as for every output path refused before anything is done
    # (`eval --plot`): 74 says the model is at fault (a helper's review).
    if not target.parent.is_dir():
        raise refuse(f"no folder {display_name(str(target.parent))} for the archive")
    if not os.access(target.parent, os.W_OK):
        raise refuse(f"cannot write in {display_name(str(target.parent))}")
    return target


def _not_through_a_foreign_link(path: Path, what: str = "") -> None:
    """A usage error if, run as root, ``path`` is another user's link to
    what that user does not own (``refuse_foreign_link``).  The archives'
    folder is the spamlearn user's (/var/backups/spamlearn): root running
    the nightly command by hand wrote through that user's link at
    users/NAME.tar.gz, or at users/, and replaced an archive of root's
    elsewhere with the model's (a helper's review).  Checked once, before
    the archive is written: a link swapped in meanwhile is not caught."""
    try:
        refuse_foreign_link(path)
    except ModelFileError as exc:
        raise fail(f"{what}{exc}", ExitCode.USAGE) from None


def _owner(path: Path) -> str:
    uid = os.stat(path).st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _has_archive_suffix(name: str) -> bool:
    return name.lower().endswith((".tar", ".tgz", ".tbz", ".tbz2", ".txz", ".gz", ".bz2", ".xz"))


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error, lzma.LZMAError):
        return False


@app.command()
@handle_errors
def backup(
    ctx: typer.Context,
    destination: Annotated[str, typer.Argument(
        help="Archive to write: a tar file, compressed if it ends in .gz/.tgz, .bz2 or .xz; "
             "- for standard output (plain tar).  With --all, a folder.", show_default=False,
        metavar="DESTINATION")],
    user: UserOption = None,
    all_models: Annotated[bool, typer.Option(
        "--all", help="Every model, one archive each in the folder DESTINATION (made if missing): "
                      "the shared model as shared.tar.gz, each user's own model as "
                      "users/NAME.tar.gz.  A model that fails is reported and the others are "
                      "backed up; the exit code is the highest of the failures'.")] = False,
) -> None:
    """Write the model and its ledger, as one agreeing pair, to a tar archive.

    Safe while learners run (it takes the model's lock for the moment of the
    copy): for cron, where `cp` could catch the two files at different
    revisions.  The pair is checked before the archive is written.  The
    ledger holds the IMAP trainer's state too.  Users' own models (\\[users]
    own_model) are backed up with --user NAME, or all with --all.
    """
    if all_models:
        if user is not None:
            raise fail("--all backs up every user's own model; leave out --user", ExitCode.USAGE)
        if destination == "-":
            raise fail("--all writes one archive per model: give a folder, not -", ExitCode.USAGE)
        raise typer.Exit(_backup_all(ctx, Path(destination)))
    store = _store(ctx, user)
    to_stdout = destination == "-"
    if to_stdout and sys.stdout.isatty():
        raise fail("standard output is a terminal: redirect it, or give the archive's file name",
                   ExitCode.USAGE)
    target = None if to_stdout else _check_destination(Path(destination), store)
    with _terminated_cleanly():
        try:
            summary = write_backup(store, target)
        except BrokenPipeError:
            # Not the quiet success it is for `score | head`: the archive is cut short.
            with contextlib.suppress(OSError):
                sys.stdout = None       # nothing more to flush into the closed pipe
            raise fail("standard output was closed before the archive was complete", ExitCode.IOERR) from None
    where = "standard output" if to_stdout else display_name(destination)
    typer.echo(_backed_up(store, summary, where), err=to_stdout)


def _backed_up(store: ModelStore, summary: BackupSummary, where: str) -> str:
    return f"backed up {store.model_path} and its ledger ({summary.describe()}) to {where}"


def archive_name(user: str | None) -> str:
    """Where ``backup --all`` writes a model's archive in its folder: the
    shared model's, or ``user``'s own.  A user name is a safe file name
    (``config.USER_NAME_RE``: no "/", no leading dot, at most 128
    characters), and under users/ none is the shared model's archive."""
    return "shared.tar.gz" if user is None else f"users/{user}.tar.gz"


def _check_archive_folder(folder: Path) -> None:
    """A usage error unless ``folder`` is, or can be made, a folder this user
    can write in: refused before any model is backed up, as a single
    archive's folder is."""
    shown = display_name(str(folder))
    _not_through_a_foreign_link(folder)
    where = folder
    if not folder.is_dir():
        if os.path.lexists(folder):
            raise fail(f"{shown} is not a folder; --all writes one archive per model into a folder",
                       ExitCode.USAGE)
        where = folder.parent
        if not where.is_dir():
            raise fail(f"no folder {display_name(str(where))} for {shown}", ExitCode.USAGE)
    if not os.access(where, os.W_OK | os.X_OK):
        raise fail(f"cannot write in {display_name(str(where))}", ExitCode.USAGE)


def _model_is_there(store: ModelStore) -> bool:
    """Whether a model has been made (its file or its ledger is there).  Any
    error but "no such file" (a users' folder this user cannot search) is
    raised: a model that cannot be looked at is not one not made yet."""
    for path in (store.model_path, store.ledger_path):
        try:
            os.lstat(path)
            return True
        except FileNotFoundError:
            continue
    return False


def _backup_all(ctx: typer.Context, folder: Path) -> int:
    """``backup --all``: every model's archive in ``folder``; returns the exit
    code, the highest of the models' failures (as ``train``'s of its accounts')."""
    state = state_of(ctx)
    settings = state.settings
    _check_archive_folder(folder)
    users = [None, *sorted(settings.own_model_users)]
    written: dict[tuple[int, int], str] = {}        # the archives made so far, as files
    backed_up = not_yet = failed = 0
    code = ExitCode.OK
    with _terminated_cleanly():
        for user in users:
            label = "shared model" if user is None else f"user {user}"
            archive = folder / archive_name(user)
            try:
                store = ModelStore.from_settings(settings, user)
                if not _model_is_there(store):
                    not_yet += 1
                    if state.verbose:
                        typer.echo(f"no model at {store.model_path} yet ({label}): not backed up")
                    continue
                if archive.parent != folder:
                    _not_through_a_foreign_link(archive.parent, f"{label}: ")
                make_folders(archive.parent, mode=0o700)
                target = _check_destination(archive, store, f"{label}: ")
                with contextlib.suppress(FileNotFoundError):
                    info = os.stat(target)
                    if (info.st_dev, info.st_ino) in written:
                        # Alice's and alice's archives on a file system that
                        # ignores case (a USB disk, an SMB share), or a link.
                        raise fail(f"{label}: {display_name(str(archive))} is the archive just "
                                   f"written for {written[info.st_dev, info.st_ino]}: not overwritten",
                                   ExitCode.USAGE)
                summary = write_backup(store, target)
                info = os.stat(target)
                written[info.st_dev, info.st_ino] = label
            except typer.Exit as exc:       # a refused archive: fail() has said why
                failed += 1
                code = max(code, exc.exit_code)
                continue
            except (SpamlearnError, OSError) as exc:
                # Its previous archive, if any, is left as it was.
                line, exc_code = error_line(exc)
                typer.echo(f"spamlearn: error: {label}: {line}", err=True)
                failed += 1
                code = max(code, exc_code)
                continue
            backed_up += 1
            if state.verbose:
                typer.echo(_backed_up(store, summary, display_name(str(archive))))
    if not backed_up and not failed:
        raise ModelFileError(f"no model at {settings.model_path} nor any user's own model yet: "
                             f"nothing to back up")
    problems = [f"{n} {what}" for n, what in ((failed, "failed"), (not_yet, "not learned yet")) if n]
    typer.echo(f"backed up {backed_up} of {len(users)} models to {display_name(str(folder))}"
               + (f" ({', '.join(problems)})" if problems else ""))
    return code


@app.command()
@handle_errors
def restore(
    ctx: typer.Context,
    archive: Annotated[str, typer.Argument(
        help="An archive written by `spamlearn backup`; - for standard input "
             "(plain or compressed tar, read once: `ssh backups cat x.tar.gz | spamlearn restore -`).",
        show_default=False, metavar="ARCHIVE")],
    user: UserOption = None,
) -> None:
    """Replace the model and its ledger with the pair in a backup archive.

    The pair is checked first (the model's counts must equal the sum of the
    ledger's messages); the replaced files are kept as *.before-restore,
    with their owner and mode passed on to the restored ones.  Learners
    wait for the lock meanwhile; scorers see the old model or the new,
    never a half-written one.
    """
    if archive == "-":
        if sys.stdin is None:
            raise fail("standard input is closed: pipe the archive in, or give its file name",
                       ExitCode.USAGE)
        if sys.stdin.isatty():
            raise fail("standard input is a terminal: pipe the archive in, or give its file name",
                       ExitCode.USAGE)
        source = sys.stdin.buffer
    else:
        source = Path(archive)
        if not source.is_file():
            why = "no such file" if not source.exists() else "not a regular file"
            raise fail(f"{display_name(archive)}: {why}", ExitCode.NOINPUT)
        if not os.access(source, os.R_OK):
            raise fail(f"{display_name(archive)}: cannot be read by this user", ExitCode.NOINPUT)
    store = _store(ctx, user)
    with _terminated_cleanly():
        summary = restore_backup(store, source)
    kept = "; the previous pair is kept as *.before-restore" if summary.kept_previous else ""
    shown = "standard input" if archive == "-" else display_name(archive)
    typer.echo(f"restored {store.model_path} and its ledger ({summary.describe()}) from {shown}{kept}")


@app.command()
@handle_errors
def resize(
    ctx: typer.Context,
    features: Annotated[int, typer.Option(
        "--features", help="The new number of feature buckets: a power of two, such as "
                           "4194304 (2**22) or 8388608 (2**23).", show_default=False)],
    user: UserOption = None,
) -> None:
    """Count the model's learned messages again into another number of feature buckets.

    For a model that `info` says is crowded (hash collisions blur its
    scores).  Exact: the ledger keeps every learned message's token hashes,
    so the new model is the one those messages would have made at that
    size.  A ledger made before 2026-11-29 keeps bucket numbers only; such a
    model is learned again from the mail instead (README, "A full model").
    Set `features` in the config file too, for models made later.
    """
    check_features(features, "--features")
    store = _store(ctx, user)
    before, after = store.resize(features)
    used = {name: 100 * clf.model.buckets_used_ratio()
            for name, clf in (("before", before), ("after", after))}
    typer.echo(f"resized {store.model_path}: {before.model.n_features_in_:,} -> {features:,} buckets, "
               f"{used['before']:.1f}% -> {used['after']:.1f}% in use "
               f"({after.n_spam + after.n_ham:,} learned messages counted again from the ledger)")
