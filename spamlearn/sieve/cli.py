"""``spamlearn sieve print|install|uninstall|drain``: the Dovecot imapsieve commands."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path
from typing import Annotated

import typer

from ..cli import ExitCode, app, exit_code_for, fail, handle_errors, state_of
from ..errors import StoreBusyError
from ..stopping import StopRequest
from .drain import DEFAULT_BATCH, DrainReport, drain_spool
from .install import install as install_files
from .install import staged_path
from .install import uninstall as uninstall_files
from .options import SieveOptions
from .spool import Spool
from .templates import render_files

sieve_app = typer.Typer(
    name="sieve",
    help="Dovecot imapsieve retraining: a user's move into or out of Junk retrains.\n\n"
         "Settings come from the \\[sieve] table of the config file; flags override it.  "
         "See docs/dovecot-sieve.md.",
    no_args_is_help=True,
)
app.add_typer(sieve_app)

SpamFolder = Annotated[str | None, typer.Option(help="Spam folder (default Junk).")]
TrashFolder = Annotated[str | None, typer.Option(help="Moves from the spam folder into it learn "
                                                      "nothing (default Trash).")]
NotHamFolder = Annotated[list[str] | None, typer.Option(
    "--not-ham-folder", help="More folders treated like Trash (repeatable; Sieve :matches "
                             "patterns such as 'Trash/*').")]
SpoolOpt = Annotated[Path | None, typer.Option(help="Spool folder (default /var/spool/spamlearn).")]
HttpUrl = Annotated[str | None, typer.Option("--http", help="Learn through `spamlearn serve` at "
                                                            "this URL; the spool is the fallback.")]
HttpTokenFile = Annotated[Path | None, typer.Option(help="Bearer token file for --http, readable "
                                                         "by the mail user.")]
AppendRule = Annotated[bool | None, typer.Option("--append-rule/--no-append-rule", help="Also report "
                       "messages APPENDed into the spam folder (Outlook-style clients).")]
ConfDir = Annotated[Path | None, typer.Option(help="Dovecot conf.d folder (default /etc/dovecot/conf.d).")]
SieveDir = Annotated[Path | None, typer.Option(help="Folder of the Sieve scripts "
                                                    "(default /etc/dovecot/sieve/spamlearn).")]
PipeBinDir = Annotated[Path | None, typer.Option(help="Dovecot's sieve_pipe_bin_dir "
                                                      "(default /usr/local/lib/spamlearn/sieve-pipe).")]
FirstRule = Annotated[int | None, typer.Option(help="First imapsieve_mailboxN number (default 1).")]


def _options(ctx: typer.Context, **flags) -> SieveOptions:
    if flags.get("not_ham_folders") == []:
        flags["not_ham_folders"] = None  # typer gives [] for "not given"
    return SieveOptions.from_settings(state_of(ctx).settings, **flags)


@sieve_app.command("print")
@handle_errors
def print_(
    ctx: typer.Context,
    spam_folder: SpamFolder = None, trash_folder: TrashFolder = None,
    not_ham_folder: NotHamFolder = None, spool: SpoolOpt = None, http: HttpUrl = None,
    http_token_file: HttpTokenFile = None, append_rule: AppendRule = None, conf_dir: ConfDir = None,
    sieve_dir: SieveDir = None, pipe_bin_dir: PipeBinDir = None, first_rule: FirstRule = None,
    file: Annotated[str | None, typer.Option("--file", help="Print only this file, e.g. "
                    "report-ham.sieve, without the header line.")] = None,
) -> None:
    """Print the Dovecot config snippet, the two Sieve scripts and the pipe program."""
    options = _options(ctx, spam_folder=spam_folder, trash_folder=trash_folder,
                       not_ham_folders=not_ham_folder, spool=spool, http_url=http,
                       http_token_file=http_token_file, append_rule=append_rule, conf_dir=conf_dir,
                       sieve_dir=sieve_dir, pipe_bin_dir=pipe_bin_dir, first_rule=first_rule)
    files = render_files(options)
    if file is not None:
        chosen = [f for f in files if f.path.name == file]
        if not chosen:
            names = ", ".join(f.path.name for f in files)
            typer.echo(f"spamlearn: error: no file {file!r}; one of: {names}", err=True)
            raise typer.Exit(ExitCode.USAGE)
        typer.echo(chosen[0].text, nl=False)
        return
    for i, rendered in enumerate(files):
        typer.echo(("\n" if i else "") + f"# ==> {rendered.path} <==")
        typer.echo(rendered.text, nl=False)


@sieve_app.command()
@handle_errors
def install(
    ctx: typer.Context,
    spam_folder: SpamFolder = None, trash_folder: TrashFolder = None,
    not_ham_folder: NotHamFolder = None, spool: SpoolOpt = None, http: HttpUrl = None,
    http_token_file: HttpTokenFile = None, append_rule: AppendRule = None, conf_dir: ConfDir = None,
    sieve_dir: SieveDir = None, pipe_bin_dir: PipeBinDir = None, first_rule: FirstRule = None,
    dest: Annotated[Path | None, typer.Option(help="Staging root: write below it (DESTDIR "
                    "style) instead of to the real paths.", file_okay=False)] = None,
    compile_scripts: Annotated[bool, typer.Option("--compile/--no-compile", help="Precompile "
                               "the Sieve scripts with sievec.")] = True,
    mail_user: Annotated[str | None, typer.Option(help="Owner of the spool: the user Dovecot runs "
                         "pipe programs as (e.g. vmail).")] = None,
    drain_group: Annotated[str | None, typer.Option(help="Group of the spool: the group "
                           "`spamlearn sieve drain` runs as.")] = None,
) -> None:
    """Write the config snippet, Sieve scripts and pipe program; create the spool."""
    options = _options(ctx, spam_folder=spam_folder, trash_folder=trash_folder,
                       not_ham_folders=not_ham_folder, spool=spool, http_url=http,
                       http_token_file=http_token_file, append_rule=append_rule, conf_dir=conf_dir,
                       sieve_dir=sieve_dir, pipe_bin_dir=pipe_bin_dir, first_rule=first_rule)
    for path in install_files(options, dest=dest, compile_scripts=compile_scripts,
                              mail_user=mail_user, drain_group=drain_group):
        typer.echo(f"installed {path}")
    if dest is None:
        typer.echo("now: `doveadm reload` (or systemctl reload dovecot), and run "
                   "`spamlearn sieve drain` from a timer (see docs/dovecot-sieve.md)")
    else:
        typer.echo(f"staged below {dest}; the files name {staged_path(options.spool, None)} etc.")


@sieve_app.command()
@handle_errors
def uninstall(
    ctx: typer.Context,
    conf_dir: ConfDir = None, sieve_dir: SieveDir = None, pipe_bin_dir: PipeBinDir = None,
    dest: Annotated[Path | None, typer.Option(help="Staging root: remove what install --dest "
                    "staged below it.", file_okay=False)] = None,
) -> None:
    """Remove the config snippet, Sieve scripts and pipe program (the spool is kept)."""
    options = _options(ctx, conf_dir=conf_dir, sieve_dir=sieve_dir, pipe_bin_dir=pipe_bin_dir)
    for path in uninstall_files(options, dest=dest):
        typer.echo(f"removed {path}")
    if dest is None:
        typer.echo("now: `doveadm reload`; the spool is left for a last `spamlearn sieve drain`")


@sieve_app.command()
@handle_errors
def drain(
    ctx: typer.Context,
    spool: SpoolOpt = None,
    watch: Annotated[bool, typer.Option("--watch", help="Keep running: drain whenever messages "
                     "are queued (stop with SIGTERM).")] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="--watch: seconds between looks "
                        "at the spool.")] = 2.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Messages per commit.")] = DEFAULT_BATCH,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing when the spool was "
                     "empty (for cron).")] = False,
) -> None:
    """Learn the messages users moved into or out of Junk, then delete them from the spool.

    Each user's own model is trained if configured, else the shared one.
    Exit 0 also when another drain is running (it takes the queue); 75 when
    a model's lock stays busy (the messages stay queued for the next run);
    74 when a model or the spool is unusable.
    """
    if not math.isfinite(interval):     # click's FloatRange lets nan through
        raise fail(f"--interval must be a finite number of seconds, got {interval}", ExitCode.USAGE)
    settings = state_of(ctx).settings
    options = SieveOptions.from_settings(settings, spool=spool)
    queue = Spool(options.spool)
    queue.check()
    if not watch:
        raise typer.Exit(_drain_once(queue, settings, batch_size, as_json, quiet))
    stop = StopRequest()        # not a threading.Event: see spamlearn.stopping
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _frame: stop.ask(signum))
    while not stop:
        if queue.pending():
            _drain_once(queue, settings, batch_size, as_json, quiet=True)
        stop.wait(interval)


def _drain_once(queue: Spool, settings, batch_size: int, as_json: bool, quiet: bool) -> int:
    try:
        report = drain_spool(queue, settings, batch_size=batch_size)
    except StoreBusyError:
        if as_json:     # a JSON reader gets JSON whatever happened
            typer.echo(json.dumps({**DrainReport().as_dict(), "another_drain_running": True}))
        elif not quiet:
            typer.echo("sieve drain: another drain is running; it takes the queue")
        return ExitCode.OK
    if as_json:
        typer.echo(json.dumps({**report.as_dict(), "another_drain_running": False}))
    elif report.processed or report.failed or report.errors or not quiet:
        typer.echo(report.summary())
    for error in report.errors:
        typer.echo(f"spamlearn: error: {error}", err=True)
    if report.errors:
        return exit_code_for(report.errors[0])
    return ExitCode.OK
