"""The systemd units in scripts/ are what systemd reads without a complaint, and
each runs a spamlearn command that exists with options it takes."""

from __future__ import annotations

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
            "spamlearn-sieve-drain.service", "spamlearn-sieve-drain.path",
            "spamlearn-sieve-drain.timer"} <= names


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_reads_the_unit_without_a_warning(unit, tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install systemd"
    spamlearn = shutil.which("spamlearn")
    assert spamlearn, "the spamlearn command is not on PATH: pip install -e ."
    for other in UNITS:     # a timer or path unit names its service: all side by side
        (tmp_path / other.name).write_text(other.read_text().replace(INSTALLED_AT, spamlearn))
    result = subprocess.run([analyze, "verify", str(tmp_path / unit.name)], capture_output=True,
                            text=True, cwd=tmp_path, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("unit", [u for u in UNITS if u.suffix == ".service"], ids=lambda p: p.name)
def test_the_command_it_runs_parses(unit):
    line = next(text for text in unit.read_text().splitlines() if text.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[0] == INSTALLED_AT
    result = CliRunner().invoke(app, [*argv[1:], "--help"])
    assert result.exit_code == 0, result.output
