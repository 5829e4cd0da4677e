"""``spamlearn backup`` and ``spamlearn restore``: the model and its ledger as one archive."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from .backup import restore_backup, write_backup
from .cli import ExitCode, app, fail, handle_errors, state_of
from .mailsource import display_name
from .modelstore import ModelStore

UserOption = Annotated[str | None, typer.Option(help="This user's own model (own_model in the config file).")]


@app.command()
@handle_errors
def backup(
    ctx: typer.Context,
    destination: Annotated[Path, typer.Argument(
        help="Archive to write: a tar file (gzip-compressed if it ends in .gz or .tgz), or - for "
             "standard output.", show_default=False)],
    user: UserOption = None,
) -> None:
    """Write the model and its ledger, as one agreeing pair, to a tar archive.

    Safe while learners run (it takes the model's lock for the moment of the
    copy): for cron, where `cp` could catch the two files at different
    revisions.  The ledger holds the IMAP trainer's state too.
    """
    store = ModelStore.from_settings(state_of(ctx).settings, user)
    to_stdout = str(destination) == "-"
    if not to_stdout:
        if destination.is_dir():
            raise fail(f"{display_name(str(destination))} is a folder; give the archive's file name",
                       ExitCode.USAGE)
        if not destination.parent.is_dir():
            raise fail(f"no folder {display_name(str(destination.parent))} for the archive", ExitCode.IOERR)
        if not os.access(destination.parent, os.W_OK):
            raise fail(f"cannot write in {display_name(str(destination.parent))}", ExitCode.IOERR)
    summary = write_backup(store, None if to_stdout else destination)
    where = "standard output" if to_stdout else display_name(str(destination))
    typer.echo(f"backed up {store.model_path} and its ledger ({summary.describe()}) to {where}",
               err=to_stdout)


@app.command()
@handle_errors
def restore(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Argument(help="An archive written by `spamlearn backup`.",
                                            show_default=False)],
    user: UserOption = None,
) -> None:
    """Replace the model and its ledger with the pair in a backup archive.

    The pair is checked first (the model's counts must equal the sum of the
    ledger's messages); the replaced files are kept as *.before-restore.
    Learners wait for the lock meanwhile; scorers see the old model or the
    new, never a half-written one.
    """
    if not archive.is_file():
        why = "no such file" if not archive.exists() else "not a regular file"
        raise fail(f"{display_name(str(archive))}: {why}", ExitCode.NOINPUT)
    if not os.access(archive, os.R_OK):
        raise fail(f"{display_name(str(archive))}: cannot be read by this user", ExitCode.NOINPUT)
    store = ModelStore.from_settings(state_of(ctx).settings, user)
    summary = restore_backup(store, archive)
    typer.echo(f"restored {store.model_path} and its ledger ({summary.describe()}) from "
               f"{display_name(str(archive))}; the previous pair is kept as *.before-restore")
