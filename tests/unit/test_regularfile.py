"""read_regular: every byte of a regular file, by os.read, whatever fstat said its size was."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spamlearn.regularfile import NotRegularFileError, read_regular


@pytest.mark.parametrize("size", [0, 1, 4095, 65_536, 65_537, 1_000_003])
def test_the_file_is_read_whole(tmp_path, size):
    path = tmp_path / "m.eml"
    data = os.urandom(size)
    path.write_bytes(data)
    assert read_regular(path) == data


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_a_file_longer_than_fstat_says_is_read_to_its_end():
    """/proc files are regular files of st_size 0 that hold text: the read
    goes on past the size it was given until the file ends (a file that
    grew after the fstat is read the same way)."""
    assert os.stat("/proc/self/status").st_size == 0
    text = read_regular("/proc/self/status")
    assert text.startswith(b"Name:") and text.endswith(b"\n") and len(text) > 200



def test_a_read_shorter_than_the_file_goes_on_to_its_end(tmp_path, monkeypatch):
    """Linux gives at most 2 GiB a read(2): a short first read is not the
    end of a file that fstat said was longer (it returned the first piece)."""
    path = tmp_path / "m.eml"
    data = os.urandom(100_000)
    path.write_bytes(data)
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: real_read(fd, min(n, 30_000)))
    assert read_regular(path) == data

def test_folders_and_fifos_are_refused_unread(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotRegularFileError, match="a FIFO"):
        read_regular(tmp_path / "fifo")
    with pytest.raises(NotRegularFileError, match="a folder"):
        read_regular(tmp_path)
