"""The POSIX shell scripts in scripts/ that an admin installs as they are:
executable, and parsed by dash (Debian's /bin/sh) as shipped and with the
settings they ship commented out turned on."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
SHELL_SCRIPTS = sorted(p for p in SCRIPTS.rglob("*")
                       if p.is_file() and p.read_bytes().startswith(b"#!/bin/sh\n"))
#: A setting shipped commented out, for the admin to turn on (``#NAME=value``).
COMMENTED_SETTING = re.compile(r"^#(?=[A-Z_]+=)", re.M)


def test_the_installed_scripts_are_among_them():
    names = {p.relative_to(SCRIPTS).as_posix() for p in SHELL_SCRIPTS}
    assert {"spamlearnc", "postfix/spamlearn-postfix-filter", "dovecot/spamlearn-report"} <= names


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.relative_to(SCRIPTS).as_posix())
def test_it_is_executable_and_dash_parses_it(script, tmp_path):
    # pipe(8), Dovecot's filter and procmail exec the file: without the bit,
    # every message is deferred or passed on untagged.
    assert os.access(script, os.X_OK), f"chmod +x {script} (and commit the mode)"
    dash = shutil.which("dash") or "/bin/sh"
    text = script.read_text()
    for variant in {text, COMMENTED_SETTING.sub("", text)}:
        copy = tmp_path / script.name
        copy.write_text(variant)
        result = subprocess.run([dash, "-n", str(copy)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
