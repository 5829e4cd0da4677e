"""The systemd units in scripts/ are what systemd reads without a complaint, and
each runs a spamlearn command that exists with options it takes."""

from __future__ import annotations

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
    argv = shlex.split(command.replace("$(date +%a)", "Mon"))
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
    for line in (SCRIPTS / "cron" / "spamlearn-train").read_text().splitlines():
        if re.match(r"[*0-9]", line):
            # After the five times and the user, up to the pipe into logger; \% is cron's %.
            command = line.split(None, 6)[6].split(" | ")[0].replace("\\%", "%")
            argv = spamlearn_argv(command)
            commands.append(argv)
            result = CliRunner().invoke(app, [*argv, "--help"])
            assert result.exit_code == 0, result.output
    assert [argv[2:4] for argv in commands if "backup" in argv] == [["backup", "--all"]]
    unit = (SCRIPTS / "systemd" / "spamlearn-backup.service").read_text()
    assert " backup --all " in unit
