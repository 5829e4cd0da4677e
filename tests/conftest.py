"""Shared fixtures: small hand-written messages and a temporary model store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


def make_message(subject: str, body: str, sender: str = "someone@example.org",
                 extra_headers: str = "") -> bytes:
    return (f"From: {sender}\nTo: alice@example.org\nSubject: {subject}\n"
            f"Message-ID: <{abs(hash((subject, body))) % 10**12}@example.org>\n"
            f"{extra_headers}\n{body}\n").encode()


SPAMMY = [
    make_message("Cheap pills online", "Buy cheap viagra pills now, best price guaranteed",
                 "deals@pharma.example"),
    make_message("You won a prize", "Claim your lottery prize money now, click the link",
                 "winner@lotto.example"),
    make_message("Make money fast", "Earn money from home fast, guaranteed income, click now",
                 "rich@cash.example"),
    make_message("Free offer inside", "Free trial offer, limited time, buy now and save money",
                 "offers@deals.example"),
]
HAMMY = [
    make_message("Meeting tomorrow", "Can we move the project meeting to ten tomorrow morning?",
                 "bob@work.example"),
    make_message("Re: build failure", "The build fails on Debian because the test data is missing",
                 "dev@lists.example"),
    make_message("Lunch on Friday", "Would you like to have lunch with the team on Friday?",
                 "carol@work.example"),
    make_message("Patch review", "I reviewed your patch for the parser, two small comments inline",
                 "dev@lists.example"),
]


@pytest.fixture
def spam_messages() -> list[bytes]:
    return list(SPAMMY)


@pytest.fixture
def ham_messages() -> list[bytes]:
    return list(HAMMY)


@pytest.fixture
def sample_spam() -> bytes:
    return (FIXTURES / "sample-spam.eml").read_bytes()


@pytest.fixture
def sample_ham() -> bytes:
    return (FIXTURES / "sample-ham.eml").read_bytes()


@pytest.fixture
def store(tmp_path):
    from spamlearn.modelstore import ModelStore

    return ModelStore(tmp_path / "model.joblib", n_features=2**16)


class ReadOnlyFolder:
    """A folder that becomes read-only for this process on ``freeze()``.

    As root, permission bits do not stop writes, so the folder is a small
    tmpfs remounted read-only (EROFS, as on a read-only root filesystem);
    as an ordinary user it is chmod 0555.
    """

    def __init__(self, base: Path):
        import os
        import subprocess

        self.path = base / "ro"
        self.path.mkdir()
        self._root = os.geteuid() == 0
        self._subprocess = subprocess
        if self._root:
            result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(self.path)],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"cannot mount a tmpfs for the read-only folder test: {result.stderr}")

    def freeze(self) -> None:
        if self._root:
            self._subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)
        else:
            self.path.chmod(0o555)

    def close(self) -> None:
        if self._root:
            self._subprocess.run(["umount", "-l", str(self.path)], check=False)
        else:
            self.path.chmod(0o755)


@pytest.fixture
def read_only_folder(tmp_path):
    folder = ReadOnlyFolder(tmp_path)
    try:
        yield folder
    finally:
        folder.close()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """No test reads or writes the real user's config or models."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("HOME", str(home))
    for name in ("SPAMLEARN_CONFIG", "SPAMLEARN_MODEL", "SPAMLEARN_LEDGER", "SPAMLEARN_HAM_CUTOFF",
                 "SPAMLEARN_SPAM_CUTOFF", "SPAMLEARN_SCAN_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    return home
