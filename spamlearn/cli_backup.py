"""Keeping a model pair: ``spamlearn backup`` and ``restore`` (the model and its ledger as one
archive), ``spamlearn resize`` (its learned messages counted into more buckets)."""

from __future__ import annotations

import contextlib
import lzma
import os
import signal
import stat
import sys
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from .backup import archive_compression, own_files, restore_backup, write_backup
from .cli import ExitCode, app, fail, handle_errors, state_of
from .config import check_features, check_user_name
from .mailsource import display_name
from .modelstore import ModelStore

UserOption = Annotated[str | None, typer.Option(
    help="This user's own model (the user must be listed in \\[users] own_model).")]


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


def _check_destination(destination: Path, store: ModelStore) -> Path:
    """Where the archive goes (a symbolic link's target), or a usage error."""
    shown = display_name(str(destination))
    to_pipe = "to write the archive into a pipe or a descriptor, give - and redirect standard output"
    if os.path.abspath(destination).startswith(("/dev/", "/proc/")):
        # /dev/stdout, /proc/self/fd/N resolve to whatever file is open there.
        raise fail(f"{shown}: {to_pipe}", ExitCode.USAGE)
    existing = False
    with contextlib.suppress(FileNotFoundError):
        mode = os.stat(destination).st_mode
        existing = True
        if stat.S_ISDIR(mode):
            raise fail(f"{shown} is a folder; give the archive's file name", ExitCode.USAGE)
        if not stat.S_ISREG(mode):
            raise fail(f"{shown} is not a regular file (a device or FIFO?); {to_pipe}", ExitCode.USAGE)
    target = Path(os.path.realpath(destination))
    if target in {Path(os.path.realpath(f)) for f in own_files(store)}:
        raise fail(f"{shown} is one of the model's own files; write the archive elsewhere",
                   ExitCode.USAGE)
    if target.name.endswith((".lock", ".restoring", ".before-restore")):
        raise fail(f"{shown} is named like a model's lock or restore file; write the archive elsewhere",
                   ExitCode.USAGE)
    if existing and not (_is_tar(target) if target.stat().st_size else _has_archive_suffix(target.name)):
        # Overwriting last week's archive is the point; anything else (the
        # shared model named by mistake, an empty lock file) is kept.
        raise fail(f"{shown} exists and is not a tar archive; remove it or choose another name",
                   ExitCode.USAGE)
    try:
        archive_compression(target.name)
    except ValueError as exc:
        raise fail(f"{shown}: {exc}", ExitCode.USAGE) from None
    # USAGE, as for every output path refused before anything is done
    # (`eval --plot`): 74 says the model is at fault (a helper's review).
    if not target.parent.is_dir():
        raise fail(f"no folder {display_name(str(target.parent))} for the archive", ExitCode.USAGE)
    if not os.access(target.parent, os.W_OK):
        raise fail(f"cannot write in {display_name(str(target.parent))}", ExitCode.USAGE)
    return target


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
             "- for standard output (plain tar).", show_default=False, metavar="DESTINATION")],
    user: UserOption = None,
) -> None:
    """Write the model and its ledger, as one agreeing pair, to a tar archive.

    Safe while learners run (it takes the model's lock for the moment of the
    copy): for cron, where `cp` could catch the two files at different
    revisions.  The pair is checked before the archive is written.  The
    ledger holds the IMAP trainer's state too.
    """
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
    typer.echo(f"backed up {store.model_path} and its ledger ({summary.describe()}) to {where}",
               err=to_stdout)


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
