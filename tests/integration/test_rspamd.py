"""Debian's real Rspamd (3.4) with ``external_services`` type ``spamassassin``
pointed at a real ``spamlearn serve``'s spamd port, configured with the
README's lines: what an Rspamd user who wires spamlearn in as a spamd sees.

Rspamd's scanner (``lualib/lua_scanners/spamassassin.lua``) sends
``HEADERS SPAMC/1.5``, takes what its first read gives, and reads score and
symbols from its ``X-Spam-Status`` line with a Lua pattern that wants
``autolearn`` after ``tests=``.  Until this test ran it, neither held:
spamlearn's line ended at ``tests=`` (the pattern did not match, and the
scanner died on "attempt to compare number with nil", in Rspamd's log
only), and the answer's head went out in a write of its own (Rspamd read
the head alone and took spam for clean).  Every message went without the
symbol.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from serve_process import ServeProcess, free_port, terminate
from test_serve import HAMMY, SPAMMY, make_message, write_deployment

from spamlearn.points import spamassassin_points

pytestmark = pytest.mark.integration

#: The three hammy messages in one: spam probability 0.02, -1.6 points.
SURE_HAM = make_message("Re: Meeting tomorrow, build failure, lunch on Friday",
                        "Can we move the project meeting to ten? The build fails on Debian: "
                        "test data missing. Lunch with the team on Friday?", "bob@work.example")

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_rule(port: int) -> str:
    """The README's lines for local.d/external_services.conf (its Rspamd
    bullet), asking ``port``.  ``score`` there multiplies the points
    spamlearn answers: the module registers its symbol with a weight of 0."""
    text = README.read_text()
    start = text.index("* *Rspamd's `external_services` type `spamassassin`*")
    block = textwrap.dedent(re.search(r"```\n(.*?)```", text[start:], re.S)[1])
    assert '"127.0.0.1:7830"' in block, block
    return block.replace('"127.0.0.1:7830"', f'"127.0.0.1:{port}"')


def require_rspamd() -> tuple[str, str]:
    rspamd, rspamc = shutil.which("rspamd"), shutil.which("rspamc")
    assert rspamd and rspamc, ("rspamd is missing: apt-get install rspamd (scripts/test.sh installs it); "
                               "these tests check spamlearn's spamd port with Rspamd's spamassassin scanner")
    return rspamd, rspamc


class RspamdProcess:
    """A throw-away Rspamd in ``base``: Debian's /etc/rspamd/rspamd.conf with
    our own LOCAL_CONFDIR (local.d, override.d), database, run and log
    folders; one normal worker on a free loopback port, no controller or
    proxy, no Redis (the modules that need it switch themselves off)."""

    def __init__(self, base: Path, external_services: str):
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = base / "log" / "rspamd.log"
        for folder in ("local.d", "override.d", "db", "run", "log"):
            (base / folder).mkdir(parents=True, exist_ok=True)
        (base / "local.d" / "external_services.conf").write_text(external_services)
        # override.d: replaces Debian's bind_socket (localhost:11333) instead of adding to it.
        (base / "override.d" / "worker-normal.inc").write_text(
            f'bind_socket = "127.0.0.1:{self.port}";\ncount = 1;\n')
        for worker in ("controller", "proxy"):
            (base / "override.d" / f"worker-{worker}.inc").write_text("enabled = false;\n")
        (base / "override.d" / "logging.inc").write_text(
            f'type = "file";\nfilename = "{self.log}";\nlevel = "info";\n')
        # Hyperscan would compile its 172 expressions at every start (15 s here).
        (base / "local.d" / "options.inc").write_text("disable_hyperscan = true;\n")
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> RspamdProcess:
        rspamd, _ = require_rspamd()
        command = [rspamd, "-f", "-c", "/etc/rspamd/rspamd.conf"]
        command += [f"--var={name}={self.base / folder}" for name, folder in
                    (("LOCAL_CONFDIR", ""), ("DBDIR", "db"), ("RUNDIR", "run"), ("LOGDIR", "log"))]
        if os.geteuid() == 0:
            # CI runs as root, which Rspamd refuses without -u/-g (a user that
            # could not read this folder under pytest's 0700 one) or this.
            command.append("--insecure")
        with (self.base / "stdout").open("ab") as out:
            # Its own process group: its workers go with it whatever happens.
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rspamd exited with {self.process.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/ping", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"rspamd did not answer /ping within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        texts = [path.read_text(errors="replace")[-5000:] for path in (self.base / "stdout", self.log)
                 if path.exists()]
        return "\n".join(texts)

    def stop(self) -> None:
        """SIGTERM the main process, then whatever of its group is left."""
        if self.process is None:
            return
        terminate(self.process, 20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def check(self, raw: bytes) -> dict:
        """``rspamc -j``'s verdict on ``raw``."""
        _, rspamc = require_rspamd()
        result = subprocess.run([rspamc, "-h", f"127.0.0.1:{self.port}", "-j", "-t", "30"], input=raw,
                                capture_output=True, timeout=60)
        assert result.returncode == 0, result
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory):
    """spamlearn serve with a spamd port, and an Rspamd whose ``spamlearn``
    rule asks it; a second rule asks a port nothing listens on (the service
    down)."""
    require_rspamd()
    base = tmp_path_factory.mktemp("rspamd")
    (base / "spamlearn").mkdir()
    config, _, env = write_deployment(base / "spamlearn", workers=1)
    port = free_port()
    with config.open("a") as fh:
        fh.write(f'spamd_listen = "127.0.0.1:{port}"\n')
    server = ServeProcess(config, base / "spamlearn" / "serve.log", env).start()
    down = readme_rule(free_port()).replace("spamlearn {", "spamlearn_down {").replace(
        '"SPAMLEARN"', '"SPAMLEARN_DOWN"')
    daemon = RspamdProcess(base / "rspamd", readme_rule(port) + down)
    try:
        daemon.start()
        yield daemon, server
    finally:
        daemon.stop()
        assert server.stop() == 0, server.log.read_text()
    assert "callback call failed" not in daemon.log.read_text(), daemon.output()


def expected_points(server: ServeProcess, raw: bytes) -> float:
    p = httpx.post(f"{server.url}/score", content=raw, timeout=30).json()["spam_prob"]
    return float(spamassassin_points(math.log(p / (1 - p)), 0.90, p >= 0.90)[0])


def test_spam_gets_the_symbol_worth_spamlearns_points(rspamd):
    daemon, server = rspamd
    for raw in SPAMMY:
        symbols = daemon.check(raw)["symbols"]
        assert "SPAMLEARN" in symbols, daemon.output()
        points = expected_points(server, raw)
        assert points >= 5.0
        assert symbols["SPAMLEARN"]["score"] == pytest.approx(points, abs=0.005)
        assert symbols["SPAMLEARN"]["options"] == ["SPAMLEARN_SPAM"]


def test_sure_ham_gets_no_symbol_and_other_ham_its_few_points(rspamd):
    """Rspamd adds nothing for a score at or below 0, and a positive one
    whatever the verdict, as for SpamAssassin's: a ham between 0 and 5
    points (spam probability about 0.08 to 0.9) adds those points."""
    daemon, server = rspamd
    assert expected_points(server, SURE_HAM) < 0
    assert "SPAMLEARN" not in daemon.check(SURE_HAM)["symbols"]
    for raw in HAMMY:
        points = expected_points(server, raw)
        assert points < 5.0
        symbols = daemon.check(raw)["symbols"]
        if points <= 0:
            assert "SPAMLEARN" not in symbols
        else:
            assert symbols["SPAMLEARN"]["score"] == pytest.approx(points, abs=0.005)
            assert symbols["SPAMLEARN"]["options"] == ["SPAMLEARN_HAM"]


def test_the_service_down_rspamd_goes_on_without_the_symbol(rspamd):
    """The rule on a port nothing listens on: its _FAIL symbol, worth 0, and
    the message scored by the rest as before, at once."""
    daemon, _ = rspamd
    started = time.monotonic()
    result = daemon.check(SPAMMY[0])
    assert time.monotonic() - started < 5
    assert "SPAMLEARN_DOWN" not in result["symbols"]
    assert result["symbols"]["SPAMLEARN_DOWN_FAIL"]["score"] == 0
    assert "SPAMLEARN" in result["symbols"]
