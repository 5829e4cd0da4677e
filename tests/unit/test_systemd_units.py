"""The systemd units in scripts/ are what systemd reads without a complaint, and
each runs a spamlearn command that exists with options it takes."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spamlearn.cli import app

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
UNITS = sorted(p for folder in ("systemd", "dovecot") for p in (SCRIPTS / folder).iterdir()
               if p.suffix in (".service", ".timer", ".path"))
INSTALLED_AT = "/usr/local/bin/spamlearn"


def test_every_service_is_shipped_with_its_triggers():
    names = {p.name for p in UNITS}
    assert {"spamlearn-serve.service", "spamlearn-train.service", "spamlearn-train.timer",
            "spamlearn-backup.service", "spamlearn-backup.timer",
            "spamlearn-sieve-drain.service", "spamlearn-sieve-drain.path",
            "spamlearn-sieve-drain.timer"} <= names


#: A directive shipped commented out, for the admin to turn on (``#Name=value``).
COMMENTED_DIRECTIVE = re.compile(r"^#(?=[A-Z][A-Za-z]+=)", re.M)


@pytest.mark.parametrize("uncommented", [False, True], ids=["as shipped", "commented directives on"])
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_reads_the_unit_without_a_warning(unit, uncommented, tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install systemd"
    spamlearn = shutil.which("spamlearn")
    assert spamlearn, "the spamlearn command is not on PATH: pip install -e ."
    for other in UNITS:     # a timer or path unit names its service: all side by side
        (tmp_path / other.name).write_text(other.read_text().replace(INSTALLED_AT, spamlearn))
    if uncommented:
        text = (tmp_path / unit.name).read_text()
        (tmp_path / unit.name).write_text(COMMENTED_DIRECTIVE.sub("", text))
    result = subprocess.run([analyze, "verify", str(tmp_path / unit.name)], capture_output=True,
                            text=True, cwd=tmp_path, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def spamlearn_argv(command: str) -> list[str]:
    """A spamlearn command line's arguments, also through the ``sh -c`` of a
    unit whose folder is the weekday (``$(date +%a)``, as in the cron file)."""
    argv = shlex.split(command.replace("$(LC_ALL=C date +%a)", "Mon"))
    if argv[:2] == ["/bin/sh", "-c"]:
        argv = shlex.split(argv[2].removeprefix("exec "))
    assert argv[0] == INSTALLED_AT
    return argv[1:]


@pytest.mark.parametrize("unit", [u for u in UNITS if u.suffix == ".service"], ids=lambda p: p.name)
def test_the_command_it_runs_parses(unit):
    line = next(text for text in unit.read_text().splitlines() if text.startswith("ExecStart="))
    # A bare % is a specifier (%a: the architecture), which systemd-analyze
    # takes without a word: `date +%a` would name the folder "x86-64".
    assert "%" not in line.replace("%%", ""), f"an unescaped % in {line!r}"
    # $$ and %% are a unit's escapes of $ and %.
    argv = spamlearn_argv(line.removeprefix("ExecStart=").replace("$$", "$").replace("%%", "%"))
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, result.output


def test_the_crontab_runs_commands_that_parse_and_backs_up_every_model():
    """With [users] own_model, a nightly backup of the shared model alone
    lost every user's learning with the disk (a helper's review)."""
    commands = []
    for command in crontab_jobs(SCRIPTS / "cron" / "spamlearn-train")[1]:
        # Up to the pipe into logger.
        argv = spamlearn_argv(command.removeprefix("set -o pipefail; ").split(" | ")[0])
        commands.append(argv)
        result = CliRunner().invoke(app, [*argv, "--help"])
        assert result.exit_code == 0, result.output
    assert [argv[2:4] for argv in commands if "backup" in argv] == [["backup", "--all"]]
    unit = (SCRIPTS / "systemd" / "spamlearn-backup.service").read_text()
    assert " backup --all " in unit


@pytest.fixture(scope="module")
def french_locale(tmp_path_factory) -> dict[str, str]:
    """The environment of a machine whose locale is French (cron passes
    /etc/default/locale on, systemd the system's), compiled here: a test
    machine has C alone."""
    localedef = shutil.which("localedef")
    assert localedef and Path("/usr/share/i18n/locales/fr_FR").exists(), \
        "localedef or the fr_FR locale's source is missing: apt-get install locales"
    folder = tmp_path_factory.mktemp("locale")
    subprocess.run([localedef, "-i", "fr_FR", "-f", "UTF-8", str(folder / "fr_FR.UTF-8")],
                   capture_output=True, timeout=120)
    env = {"PATH": os.environ["PATH"], "LOCPATH": str(folder), "LANG": "fr_FR.UTF-8"}
    french = subprocess.run(["date", "+%a", "-d", "2026-11-30"], env=env, capture_output=True, text=True)
    assert french.stdout == "lun.\n", f"the French locale did not compile: {french}"
    return env


def crontab_jobs(path: Path) -> tuple[list[str], list[str]]:
    """How cron runs a crontab's jobs: its shell (``SHELL=``, else /bin/sh)
    with ``-c``, and each job's command (after the five times and the user;
    ``\\%`` is cron's %)."""
    text = path.read_text()
    shell = re.search(r"^SHELL=(\S+)$", text, re.M)
    commands = [line.split(None, 6)[6].replace("\\%", "%") for line in text.splitlines()
                if re.match(r"[*0-9]", line)]
    return [shell[1] if shell else "/bin/sh", "-c"], commands


def backup_folder(shell: list[str], command: str, env: dict[str, str]) -> str:
    """The folder a shipped backup command gives ``backup --all``, run by
    ``shell`` as cron or systemd runs it, with echo for spamlearn."""
    command = command.replace(INSTALLED_AT, "echo")
    command = re.sub(r"/usr/bin/logger( -t \S+)?", "cat", command)
    done = subprocess.run([*shell, command], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done
    return done.stdout.split()[-1]


def test_the_backup_folder_is_the_weekday_whatever_the_locale(french_locale):
    """Mon..Sun, as the README's restore examples say: a French locale made
    `date +%a` name the folder "lun.", and a change of locale would have left
    seven folders never written again beside seven new ones."""
    weekdays = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
    shell, commands = crontab_jobs(SCRIPTS / "cron" / "spamlearn-train")
    command = next(command for command in commands if " backup --all " in command)
    assert Path(backup_folder(shell, command, french_locale)).name in weekdays
    unit = (SCRIPTS / "systemd" / "spamlearn-backup.service").read_text()
    line = next(text for text in unit.splitlines() if text.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart=").replace("$$", "$").replace("%%", "%"))
    assert argv[:2] == ["/bin/sh", "-c"]
    assert Path(backup_folder(argv[:2], argv[2], french_locale)).name in weekdays


CRONTABS = sorted([*(SCRIPTS / "cron").iterdir(), *(SCRIPTS / "dovecot").glob("*.cron")])


@pytest.mark.parametrize("crontab", CRONTABS, ids=lambda p: p.name)
def test_cron_sees_spamlearns_exit_code_through_the_pipe_into_logger(crontab, tmp_path):
    """A line piped into logger gave cron logger's exit code (0): a failed
    train or backup looked like a success to `cron -L 4` and systemd-cron."""
    for name, script in (("spamlearn", "exit 75"), ("logger", "cat >/dev/null")):  # not this machine's syslog
        (tmp_path / name).write_text(f"#!/bin/sh\n{script}\n")
        (tmp_path / name).chmod(0o755)
    shell, commands = crontab_jobs(crontab)
    assert commands
    for command in commands:
        command = command.replace(INSTALLED_AT, "spamlearn").replace("/usr/bin/logger", "logger")
        done = subprocess.run([*shell, command], capture_output=True, text=True, timeout=60,
                              env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
        assert (done.returncode, done.stderr) == (75, ""), command
