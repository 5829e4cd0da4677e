"""The README's Sieve `filter "spamlearnc"` recipes, run by a real Dovecot at delivery.

A real `spamlearn serve` (one worker, a trained shared model, a score token,
bob's own model) on a loopback port, and a real Dovecot 2.3 whose
``dovecot-lda`` runs each user's ``~/.dovecot.sieve`` with Pigeonhole's
``vnd.dovecot.filter``.  The scripts are the README's two recipes, read from
the README, with only ``-U`` and ``-T`` added (where the service is and its
score token: Dovecot gives the filter no environment to carry them).  The
filter is ``scripts/spamlearnc`` itself, run as the mail user (``nobody`` as
root); the mail is read back from the users' Maildirs.  Each test delivers to
users of its own, who have no Junk folder yet (``auto = no``, as Debian's
stock ``15-mailboxes.conf`` leaves it), and ends with no Error line in
dovecot.log.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from dovecot import DeliverySieve, DovecotServer
from serve_process import ServeProcess, free_port
from test_serve import HAMMY, SPAMMY, write_deployment

from spamlearn.config import load_settings
from spamlearn.modelstore import ModelStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "scripts" / "spamlearnc"
README = ROOT / "README.md"
SCORE_TOKEN = "sieve-score-token-0123456789abcdef"
FORGED = b"X-Spam-Flag: NO\nX-Spam-Status: No, score=-100\n" + SPAMMY[1]

# Stock Debian (15-mailboxes.conf) has a Junk folder with special_use but no
# `auto`: a user who never opened it has none.  The test server creates it by
# default; here it must not, or `fileinto` without `:create` would pass.
JUNK_NOT_AUTO = "namespace inbox {\n  mailbox Junk {\n    auto = no\n  }\n}\n"


def readme_recipes() -> list[str]:
    """The two ```sieve blocks of the README's "Tagging at delivery"."""
    text = README.read_text()
    start = text.index("*Tagging at delivery*")
    section = text[start:text.index("\n* ", start)]
    blocks = [textwrap.dedent(block) for block in re.findall(r"```sieve\n(.*?)```", section, re.S)]
    assert len(blocks) == 2, blocks
    return blocks


def readme_spamc_recipe(port: int) -> str:
    """The ```sieve block of the README's spamd section, asking ``port``."""
    text = README.read_text()
    start = text.index("### spamd's protocol")
    blocks = re.findall(r"```sieve\n(.*?)```", text[start:text.index("\n## ", start)], re.S)
    assert len(blocks) == 1, blocks
    script, n = re.subn(r'"-p", "7830"', f'"-p", "{port}"', blocks[0])
    assert n == 1, blocks[0]
    return script


def with_options(recipe: str, url: str, token_file: Path) -> str:
    """``recipe`` with ``-U URL -T TOKEN_FILE`` put first in spamlearnc's arguments
    (the recipe's own, ``-u``, come after them and are left as they are)."""
    options = f'"-U", "{url}", "-T", "{token_file}"'
    script, n = re.subn(r'filter "spamlearnc"(?: \[|;)',
                        lambda m: f'filter "spamlearnc" [{options}' + (", " if m[0].endswith("[") else "];"),
                        recipe)
    assert n == 1, recipe
    return script


def mail_user_can_write(path: str, server: DovecotServer) -> bool:
    if os.geteuid() != 0:
        return os.access(path, os.W_OK)
    user = pwd.getpwuid(server.mail_uid).pw_name
    return subprocess.run(["runuser", "-u", user, "--", "/usr/bin/test", "-w", path]).returncode == 0


class Site:
    """The service and the Dovecot, with the README's scripts for new users."""

    def __init__(self, base: Path):
        assert shutil.which("curl"), "curl is missing: apt-get install curl"
        self.spamc = shutil.which("spamc")
        assert self.spamc, "spamc is missing: apt-get install spamc (scripts/test.sh installs it)"
        self.server = DovecotServer(extra_config=JUNK_NOT_AUTO)
        try:
            self._prepare(base)
        except BaseException:
            self.server.stop()  # removes its folder
            raise

    def _prepare(self, base: Path) -> None:
        config, _, env = write_deployment(base, workers=1)
        service_token = base / "score.token"  # the service's own: 0600, or it refuses it
        service_token.write_text(SCORE_TOKEN + "\n")
        service_token.chmod(0o600)
        self.spamd_port = free_port()
        with config.open("a") as fh:
            fh.write(f'score_token_file = "{service_token}"\n'
                     f'spamd_listen = "127.0.0.1:{self.spamd_port}"\n'
                     f'[users]\ndir = "{base / "users"}"\nown_model = ["bob"]\n')
        # The filter's copy, as the README says: readable by the mail user
        # (nobody as root: group nogroup, 0640), where it can reach it (not in
        # pytest's folder, 0700 under /tmp/pytest-of-root).
        self.token_file = self.server.dir / "spamlearn" / "score.token"
        self.token_file.parent.mkdir(mode=0o755)
        self.token_file.write_text(SCORE_TOKEN + "\n")
        os.chmod(self.token_file, 0o640 if os.geteuid() == 0 else 0o600)
        if os.geteuid() == 0:
            os.chown(self.token_file, 0, self.server.mail_gid)
        # bob's own model learned the opposite of the shared one: what it calls
        # spam is his ham, so his verdicts show which model scored.
        with ModelStore.from_settings(load_settings(config), "bob").session(source="setup") as session:
            for raw in SPAMMY:
                session.learn(raw, "ham")
            for raw in HAMMY:
                session.learn(raw, "spam")
        # spamlearnc keeps its copy of the message in /tmp (Dovecot passes no
        # TMPDIR).  Where the mail user cannot write there (a hardened /tmp), a
        # wrapper gives it the server's own writable folder; options still
        # come from the script.
        filter_env = ({} if mail_user_can_write("/tmp", self.server)
                      else {"TMPDIR": str(self.server.shared_dir)})
        self.server.delivery = DeliverySieve(
            filter_programs=[CLIENT, Path(self.spamc)],
            extensions="+vnd.dovecot.filter +vnd.dovecot.environment", filter_env=filter_env)
        self.service = ServeProcess(config, base / "serve.log", env)
        self.recipes = readme_recipes()
        self.users = 0

    def start(self) -> Site:
        self.server.start()
        self.service.start()
        return self

    def stop(self) -> None:
        try:
            self.service.stop()
        finally:
            self.server.stop()

    def new_user(self, recipe: int | str, name: str | None = None, url: str | None = None) -> str:
        """A user (``name``, else a new one) whose script is README recipe ``recipe``
        (0: shared model, 1: the user's own; or a script's text) asking ``url``
        (default: the service)."""
        self.users += 1
        name = name or f"user{self.users}"
        self.server.add_user(name, f"{name}-pw")
        text = recipe if isinstance(recipe, str) else self.recipes[recipe]
        if "spamlearnc" in text:
            text = with_options(text, url or self.service.url, self.token_file)
        self.server.set_sieve_script(name, text)
        return name

    def deliver(self, user: str, raw: bytes) -> subprocess.CompletedProcess:
        result = self.server.deliver(user, raw)
        assert result.returncode == 0, (result.returncode, result.stderr, self.server.errors())
        return result


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = Site(tmp_path_factory.mktemp("sieve-filter"))
    try:
        yield site.start()
    finally:
        site.stop()


@pytest.fixture
def fresh(site):
    yield site
    assert site.server.errors() == []
    assert site.service.process.poll() is None, site.service.log.read_text()


def head(raw: bytes) -> list[bytes]:
    return raw.split(b"\n\n", 1)[0].split(b"\n")


def test_spam_is_filed_in_junk_flagged_yes_and_ham_kept_in_inbox_unflagged(fresh):
    user = fresh.new_user(0)
    assert fresh.deliver(user, SPAMMY[0]).stderr == b""
    assert fresh.deliver(user, HAMMY[0]).stderr == b""
    (spam,) = fresh.server.messages(user, "Junk")
    (ham,) = fresh.server.messages(user, "INBOX")
    assert b"X-Spam-Flag: YES" in head(spam) and b"X-Spam-Verdict: spam" in head(spam)
    # As SpamAssassin writes them: the flag on spam only, X-Spam-Status on both.
    assert not [line for line in head(ham) if line.startswith(b"X-Spam-Flag")]
    assert b"X-Spam-Verdict: ham" in head(ham) and head(ham)[0].startswith(b"X-Spam-Status: No, score=")
    assert head(spam)[1].startswith(b"X-Spam-Status: Yes, score=")
    # the message itself came through whole
    assert spam.endswith(SPAMMY[0].split(b"\n\n", 1)[1])
    assert ham.endswith(HAMMY[0].split(b"\n\n", 1)[1])


@pytest.mark.parametrize("test", ['exists "X-Spam-Flag"', 'header :contains "X-Spam-Status" "Yes,"',
                                  'header :contains "X-Spam-Level" "*****"'])
def test_a_users_rule_written_for_spamassassins_headers_files_the_same(fresh, test):
    """Scripts kept from SpamAssassin test the flag's presence, or Status's
    "Yes": spamlearn's X-Spam-Flag: NO on ham sent every message to Junk."""
    user = fresh.new_user('require ["vnd.dovecot.filter", "fileinto", "mailbox"];\n'
                          'filter "spamlearnc";\n'
                          f'if {test} {{ fileinto :create "Junk"; }}\n')
    fresh.deliver(user, SPAMMY[0])
    fresh.deliver(user, HAMMY[0])
    (spam,) = fresh.server.messages(user, "Junk")
    (ham,) = fresh.server.messages(user, "INBOX")
    assert b"X-Spam-Verdict: spam" in head(spam) and b"X-Spam-Verdict: ham" in head(ham)


def test_the_spamc_recipe_files_spam_in_junk_through_the_spamd_port(fresh):
    user = fresh.new_user(readme_spamc_recipe(fresh.spamd_port))
    fresh.deliver(user, FORGED)
    fresh.deliver(user, HAMMY[0])
    (spam,) = fresh.server.messages(user, "Junk")
    (ham,) = fresh.server.messages(user, "INBOX")
    assert head(spam)[:2] == [b"X-Spam-Flag: YES", head(spam)[1]] and b"score=-100" not in spam
    assert head(spam)[1].startswith(b"X-Spam-Status: Yes, score=")
    assert b"X-Spam-Verdict: ham" in head(ham) and spam.endswith(SPAMMY[1].split(b"\n\n", 1)[1])


def test_a_forged_x_spam_flag_no_on_spam_does_not_survive(fresh):
    user = fresh.new_user(0)
    fresh.deliver(user, FORGED)
    assert fresh.server.messages(user, "INBOX") == []
    (spam,) = fresh.server.messages(user, "Junk")
    flags = [line for line in head(spam) if line.lower().startswith(b"x-spam-flag:")]
    assert flags == [b"X-Spam-Flag: YES"]
    assert b"score=-100" not in spam


def test_the_per_user_recipe_scores_with_the_users_own_model(fresh):
    # bob's model calls the shared model's ham spam, and its spam ham
    bob = fresh.new_user(1, name="bob")
    fresh.deliver(bob, HAMMY[0])
    fresh.deliver(bob, SPAMMY[0])
    (junk,) = fresh.server.messages(bob, "Junk")
    (inbox,) = fresh.server.messages(bob, "INBOX")
    assert b"Subject: Meeting tomorrow" in head(junk) and b"X-Spam-Flag: YES" in head(junk)
    assert b"Subject: Cheap pills online" in head(inbox) and b"X-Spam-Verdict: ham" in head(inbox)
    # someone without an own model, on the same recipe: the shared model
    other = fresh.new_user(1)
    fresh.deliver(other, SPAMMY[0])
    (junk,) = fresh.server.messages(other, "Junk")
    assert b"Subject: Cheap pills online" in head(junk) and b"X-Spam-Flag: YES" in head(junk)


def test_with_the_service_stopped_the_message_is_delivered_unchanged(fresh):
    user = fresh.new_user(0)
    assert fresh.service.stop() == 0
    try:
        result = fresh.deliver(user, FORGED)
    finally:
        fresh.service.start()
    assert b"passed through unscored" in result.stderr and SCORE_TOKEN.encode() not in result.stderr
    assert fresh.server.messages(user, "INBOX") == [FORGED]
    assert fresh.server.messages(user, "Junk") == []
    # and once it is back, the next one is tagged again
    fresh.deliver(user, SPAMMY[0])
    (spam,) = fresh.server.messages(user, "Junk")
    assert b"X-Spam-Flag: YES" in head(spam)


def test_a_service_that_never_answers_costs_the_recipes_timeout_not_the_message(fresh):
    """spamlearnc's default wait, 5 s, is below Pigeonhole's 10 s
    ``sieve_filter_exec_timeout``: spamlearnc gives up first and passes the
    message through.  (At 10 s, its first default, Dovecot killed the filter,
    and dovecot-lda 2.3.19 then panicked without delivering: measured by
    hand, not run here.)"""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections (the kernel does), never answers
        user = fresh.new_user(0, url=f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        result = fresh.deliver(user, FORGED)
        took = time.monotonic() - started
    assert b"passed through unscored" in result.stderr
    assert 4.5 < took < 9.5, took
    assert fresh.server.messages(user, "INBOX") == [FORGED]
