"""The README's Postfix content filter: ``scripts/postfix/spamlearn-postfix-filter``
(and spamc's variant of the recipe) against a real ``spamlearn serve``, with
a stand-in sendmail.

The ``argv=`` of the README's master.cf lines is run here as pipe(8) runs
it (``${sender}`` and ``${recipient}`` expanded, ``-f ''`` for a bounce with
``null_sender=``, an environment of PATH and little else), and the stand-in
records what Postfix's sendmail would have been given, and lets the
failures be made that a real sendmail will not make on demand.  The same
lines in a real Postfix, mail sent by SMTP and read from the mailbox:
tests/integration/test_postfix_delivery.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from serve_process import free_port
from test_serve import HAMMY, SPAMMY
from test_spamc import deploy, require_spamc

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SCRIPTS = ROOT / "scripts"
FILTER = SCRIPTS / "postfix" / "spamlearn-postfix-filter"
SPAMLEARNC = SCRIPTS / "spamlearnc"
# pipe(8) with flags=R puts the envelope sender in a Return-Path: on top.
SPAM = b"Return-Path: <deals@pharma.example>\n" + SPAMMY[0]
HAM = b"Return-Path: <bob@work.example>\n" + HAMMY[0]
RECIPIENTS = ("alice@example.org", '"john doe"@example.org')   # q quotes a local part with a space
# Bytes that are no text, a line with only a dot (which sendmail without -i
# takes for the end), CR LF beside LF, and no newline at the end.
BINARY = (b"Return-Path: <>\nFrom: printer@example.org\nSubject: scan \xe9\xff\r\n"
          b"Content-Type: application/octet-stream\n\n"
          b"\x00\x01\xfe\xff binary\r\n.\n..\nlast line, no newline")


#: pipe(8)'s attributes and flags (postfix/src/pipe/pipe.c): any other is a fatal error.
PIPE_ATTRIBUTES = {"chroot", "directory", "eol", "flags", "null_sender", "size", "user", "argv"}
PIPE_FLAGS = set("BDFORhqu.>")


def readme_master_cf() -> list[dict[str, list[str]]]:
    """The master.cf blocks of the README's "Postfix content filter": each
    service's name to its fields, continuation lines joined as Postfix joins them."""
    section = README.read_text().split("\n### Postfix content filter\n", 1)[1].split("\n### ", 1)[0]
    blocks = []
    for block in re.findall(r"^```\n(.*?)^```$", section, re.M | re.S):
        services: dict[str, list[str]] = {}
        name = ""
        for line in block.splitlines():
            if line[:1].isspace():
                services[name] += line.split()
            else:
                name = line.split()[0]
                services[name] = line.split()
        blocks.append(services)
    return blocks


def pipe_argv(service: list[str], sender: str, recipients: tuple[str, ...]) -> list[str]:
    """The command pipe(8) runs for ``service``'s ``argv=``: ``${sender}`` in place
    (an empty sender as ``null_sender=`` has it), ``${recipient}`` one word a recipient."""
    name, kind, private, unprivileged, chroot, wakeup, maxproc, command, *attributes = service
    assert (kind, private, unprivileged, chroot, command) == ("unix", "-", "n", "n", "pipe"), service
    at = next(i for i, word in enumerate(attributes) if word.startswith("argv="))
    settings = dict(word.partition("=")[::2] for word in attributes[:at])
    assert set(settings) <= PIPE_ATTRIBUTES and set(settings["flags"]) <= PIPE_FLAGS, settings
    assert settings["null_sender"] == "" and settings["user"] not in ("root", "postfix"), settings
    argv = [attributes[at].removeprefix("argv="), *attributes[at + 1:]]
    # -f ${sender} as two words: -f${sender} would swallow the next word for a bounce.
    assert argv[argv.index("${sender}") - 1] == "-f" and argv[-2:] == ["--", "${recipient}"], argv
    expanded = []
    for word in argv:
        expanded += recipients if word == "${recipient}" else [word.replace("${sender}", sender)]
    return expanded


def test_the_readmes_master_cf_lines_name_one_filter_service():
    [script, with_spamc] = readme_master_cf()
    assert script["smtp"][-2:] == ["-o", "content_filter=spamlearn:dummy"]
    assert list(with_spamc) == ["spamlearn"]
    programs = [pipe_argv(block["spamlearn"], "", ("a@example.org",))[0] for block in (script, with_spamc)]
    assert programs == ["/usr/local/bin/spamlearn-postfix-filter", "/usr/bin/spamc"]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """One worker answering HTTP (spamlearnc) and spamd (spamc)."""
    assert shutil.which("curl"), "curl is missing: apt-get install curl"
    server, port, _, _ = deploy(tmp_path_factory.mktemp("postfix"), workers=1, allow_tell=False)
    try:
        yield server, port
    finally:
        assert server.stop() == 0, server.log.read_text()


class Postfix:
    """What pipe(8) gives the filter, and a stand-in for what it calls.

    ``bin/sendmail`` records its arguments (``argv``, NUL-separated: an empty
    sender shows) and standard input (``stdin``), then ends as
    :meth:`set_sendmail` says; ``bin/logger`` records what would go to syslog.
    """

    def __init__(self, folder: Path, url: str):
        self.folder = folder
        self.bin = folder / "bin"
        self.bin.mkdir()
        self.tmp = folder / "tmp"
        self.tmp.mkdir()
        self.sendmail = self.bin / "sendmail"
        self.set_sendmail("exit 0")
        logger = self.bin / "logger"
        logger.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{folder}/syslog"\n')
        logger.chmod(0o755)
        # Little more than pipe(8) passes (PATH; main.cf's export_environment):
        # no HOME, no TMPDIR but the test's.
        self.env = {"PATH": f"{self.bin}:/usr/bin:/bin", "TMPDIR": str(self.tmp),
                    "SPAMLEARNC": str(SPAMLEARNC), "SPAMLEARN_SENDMAIL": str(self.sendmail),
                    "SPAMLEARN_URL": url, "SPAMLEARN_TIMEOUT": "20"}

    def set_sendmail(self, ending: str) -> None:
        self.sendmail.write_text(f'#!/bin/sh\nhere="{self.folder}"\n'
                                 'for arg; do printf "%s\\000" "$arg"; done > "$here/argv"\n'
                                 'cat > "$here/stdin"\n' + ending + "\n")
        self.sendmail.chmod(0o755)

    def run(self, raw: bytes, *argv: str, **env: str) -> subprocess.CompletedProcess:
        result = subprocess.run([str(FILTER), *argv], input=raw, env={**self.env, **env},
                                capture_output=True, timeout=60)
        assert list(self.tmp.iterdir()) == [], "its folder (and spamlearnc's) removed"
        return result

    def deliver(self, raw: bytes, sender: str = "deals@pharma.example",
                recipients: tuple[str, ...] = RECIPIENTS, **env: str) -> subprocess.CompletedProcess:
        """``raw`` through the README's ``argv=``, as pipe(8) would run it."""
        [script, _] = readme_master_cf()
        program, *argv = pipe_argv(script["spamlearn"], sender, recipients)
        assert program == "/usr/local/bin/spamlearn-postfix-filter"
        return self.run(raw, *argv, **env)

    @property
    def argv(self) -> list[str] | None:
        """What sendmail was called with; None if it was not called."""
        path = self.folder / "argv"
        return path.read_bytes().decode().split("\0")[:-1] if path.exists() else None

    @property
    def injected(self) -> bytes:
        return (self.folder / "stdin").read_bytes()

    @property
    def syslog(self) -> str:
        path = self.folder / "syslog"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def postfix(deployment, tmp_path):
    return Postfix(tmp_path, deployment[0].url)


def added_headers(injected: bytes, raw: bytes) -> list[bytes]:
    """The lines put above ``raw``; fails unless the rest is ``raw`` byte for byte."""
    assert injected.endswith(raw), injected[:400]
    added = injected[:len(injected) - len(raw)].splitlines()
    assert added and all(line.startswith(b"X-Spam-") for line in added), added
    return added


def spamlearnc(raw: bytes, url: str) -> bytes:
    result = subprocess.run([str(SPAMLEARNC)], input=raw, env={"PATH": "/usr/bin:/bin", "SPAMLEARN_URL": url,
                                                                "SPAMLEARN_TIMEOUT": "20"},
                            capture_output=True, timeout=60)
    assert result.returncode == 0 and result.stderr == b"", result
    return result.stdout


def test_spam_and_ham_are_tagged_and_reinjected_with_the_envelope(postfix, deployment):
    for raw, sender, verdict in ((SPAM, "deals@pharma.example", b"spam"), (HAM, "bob@work.example", b"ham")):
        result = postfix.deliver(raw, sender)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
        assert postfix.argv == ["-G", "-i", "-f", sender, "--", *RECIPIENTS]
        added = added_headers(postfix.injected, raw)
        assert b"X-Spam-Verdict: " + verdict in added
        assert (b"X-Spam-Flag: YES" in added) == (verdict == b"spam")
        assert postfix.injected == spamlearnc(raw, deployment[0].url)
    assert postfix.syslog == ""


def test_a_senders_own_x_spam_headers_are_all_that_is_taken_out(postfix):
    forged = b"X-Spam-Flag: NO\nX-Spam-Status: No, score=-100\n" + SPAM
    assert postfix.deliver(forged).returncode == 0
    added = added_headers(postfix.injected, SPAM)
    assert b"X-Spam-Flag: YES" in added and b"X-Spam-Flag: NO" not in added


def test_a_bounce_keeps_its_null_sender(postfix):
    # null_sender= makes pipe(8) pass -f '' (its default is MAILER-DAEMON,
    # which sendmail would take for a real sender, and bounces would bounce).
    bounce = b"From: MAILER-DAEMON@example.org\nSubject: Undelivered Mail\n\nSorry.\n"
    result = postfix.deliver(bounce, "", ("alice@example.org",))
    assert result.returncode == 0, result.stderr
    assert postfix.argv == ["-G", "-i", "-f", "", "--", "alice@example.org"]
    added_headers(postfix.injected, bounce)


def test_binary_bytes_and_no_final_newline_survive(postfix):
    result = postfix.deliver(BINARY, "")
    assert result.returncode == 0, result.stderr
    added = added_headers(postfix.injected, BINARY)
    assert any(line.startswith(b"X-Spam-Verdict: ") for line in added), "scored, not passed through"


def test_with_the_service_down_mail_flows_untagged_and_syslog_says_why(postfix):
    result = postfix.deliver(SPAM, SPAMLEARN_URL=f"http://127.0.0.1:{free_port()}")
    assert (result.returncode, result.stderr) == (0, b"")
    assert postfix.injected == SPAM
    assert postfix.argv == ["-G", "-i", "-f", "deals@pharma.example", "--", *RECIPIENTS]
    [line] = postfix.syslog.splitlines()
    assert line.startswith("-p mail.warning -t spamlearn-postfix-filter -- spamlearnc: ")
    assert line.endswith("message passed through unscored")


def one_line(stderr: bytes, after: bytes = b"") -> str:
    assert stderr.startswith(after) and stderr.count(b"\n") == after.count(b"\n") + 1, stderr
    text = stderr[len(after):].decode()
    assert text.startswith("spamlearn-postfix-filter: ") and text.endswith("; message deferred\n"), text
    return text


CANNOT_MAKE = "failed to create directory via template "     # GNU mktemp's words


def stand_in(folder: Path, body: str) -> Path:
    path = folder / "spamlearnc"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("failure", ["full tmp", "bad setting", "half written", "nothing written"])
def test_when_spamlearnc_fails_nothing_is_reinjected_and_postfix_retries(postfix, tmp_path, failure):
    # `spamlearnc | sendmail` (dash has no pipefail), tried here, gave
    # sendmail an empty message and exited 0: the mail was gone.
    env = {}
    if failure == "full tmp":
        # The real spamlearnc unable to keep its copy (exit 75).
        env["SPAMLEARNC"] = str(stand_in(tmp_path, f'TMPDIR="{tmp_path}/missing" exec "{SPAMLEARNC}"'))
        expected = f"spamlearnc exited 75 (mktemp: {CANNOT_MAKE}'{tmp_path}/missing/"
    elif failure == "bad setting":
        env["SPAMLEARN_TIMEOUT"] = "0"          # the real spamlearnc's exit 64
        expected = "spamlearnc exited 64 (spamlearnc: -t wants seconds"
    elif failure == "half written":
        env["SPAMLEARNC"] = str(stand_in(tmp_path, "head -c 20; echo 'spamlearnc: full' >&2; exit 74"))
        expected = "spamlearnc exited 74 (spamlearnc: full)"
    else:
        env["SPAMLEARNC"] = str(stand_in(tmp_path, "cat > /dev/null"))
        expected = "spamlearnc wrote no message"
    result = postfix.deliver(SPAM, **env)
    assert (result.returncode, result.stdout, postfix.argv) == (75, b"", None)
    assert expected in one_line(result.stderr)


def test_a_full_tmp_defers_before_anything_runs(postfix):
    result = postfix.deliver(SPAM, TMPDIR=str(postfix.folder / "missing"))
    assert (result.returncode, postfix.argv) == (75, None)
    said = one_line(result.stderr)
    assert f"cannot keep a copy of the message: mktemp: {CANNOT_MAKE}'{postfix.folder}/missing/" in said


@pytest.mark.parametrize(("ending", "code"), [("exit 75", 75), ("exit 69", 69), ("exit 0", 0)])
def test_sendmails_exit_code_is_the_filters(postfix, ending, code):
    postfix.set_sendmail(f'echo "sendmail: said {code}" >&2; {ending}')
    result = postfix.deliver(SPAM)
    assert result.returncode == code and result.stderr == f"sendmail: said {code}\n".encode()
    added_headers(postfix.injected, SPAM)


def test_a_sendmail_killed_or_a_program_missing_defers_rather_than_bounces(postfix):
    # Exit 143 is no sysexits code: pipe(8) would bounce it.
    postfix.set_sendmail('kill -TERM $$')
    result = postfix.deliver(SPAM)
    # dash's own word on it comes first.
    assert result.returncode == 75 and "exited 143" in one_line(result.stderr, after=b"Terminated\n")
    (postfix.folder / "argv").unlink()
    result = postfix.deliver(SPAM, SPAMLEARNC=str(postfix.folder / "no-spamlearnc"))
    assert (result.returncode, postfix.argv) == (75, None)
    assert "cannot run " in one_line(result.stderr)
    postfix.sendmail.unlink()
    result = postfix.deliver(SPAM)
    assert result.returncode == 75 and "cannot run " in one_line(result.stderr)


@pytest.mark.parametrize("argv", [[], ["-f", "a@example.org", "b@example.org"],
                                  ["-f", "a@example.org", "--"], ["a@example.org", "--", "b@example.org"]])
def test_a_wrong_argv_in_master_cf_defers_rather_than_bounces(postfix, argv):
    result = postfix.run(SPAM, *argv)
    assert (result.returncode, postfix.argv) == (75, None)
    assert "usage: " in one_line(result.stderr)


# spamc's variant of the recipe: spamc itself runs sendmail (-e), so no shell
# and no pipe; its exit code is sendmail's.
def spamc_filter(postfix: Postfix, port: int, raw: bytes, sender: str) -> subprocess.CompletedProcess:
    [_, with_spamc] = readme_master_cf()
    argv = pipe_argv(with_spamc["spamlearn"], sender, RECIPIENTS)
    assert argv[:3] == ["/usr/bin/spamc", "-d", "127.0.0.1"] and argv[3:5] == ["-p", "7830"]
    assert argv[argv.index("-e") + 1] == "/usr/sbin/sendmail"
    argv[0], argv[4], argv[argv.index("-e") + 1] = require_spamc(), str(port), str(postfix.sendmail)
    return subprocess.run(argv, input=raw, env={"PATH": "/usr/bin:/bin"}, capture_output=True, timeout=60)


def test_spamcs_variant_tags_reinjects_and_fails_open(postfix, deployment):
    server, port = deployment
    for raw, sender in ((SPAM, "deals@pharma.example"), (BINARY, "")):
        result = spamc_filter(postfix, port, raw, sender)
        assert result.returncode == 0, result
        assert postfix.argv == ["-G", "-i", "-f", sender, "--", *RECIPIENTS]
        added_headers(postfix.injected, raw)
        assert postfix.injected == spamlearnc(raw, server.url)
    result = spamc_filter(postfix, free_port(), SPAM, "deals@pharma.example")
    assert result.returncode == 0 and postfix.injected == SPAM
    postfix.set_sendmail("exit 75")
    assert spamc_filter(postfix, port, SPAM, "deals@pharma.example").returncode == 75
