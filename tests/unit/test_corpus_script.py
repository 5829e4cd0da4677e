"""scripts/corpus.py unpacks the corpus tarball on every Python 3.11.

Its ``extractall(filter="data")`` is a TypeError before 3.11.4 (Debian 12's
python3 is 3.11.2), which broke the evaluation notebook and the integration
tests' corpus there; the fallback must be as safe as the filter.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile

import corpus  # scripts/corpus.py, put on sys.path by tests/conftest.py
import pytest


def make_tarball(path, extra=()):
    """A small corpus-shaped tarball (plus ``extra`` (TarInfo, bytes) members)."""
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo("spamassassin-public/full")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, data, mode in (("spamassassin-public/full/index", b"spam ../data/1\n", 0o644),
                                 ("spamassassin-public/data/1", b"Subject: hi\n\nbody\n", 0o4777)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1_000_000_000
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def tree(root):
    return {str(p.relative_to(root)): (oct(stat.S_IMODE(p.stat().st_mode)), p.read_bytes(), p.stat().st_mtime)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("with_filter", [True, False], ids=["extraction filter", "without (3.11.0-3.11.3)"])
def test_the_corpus_is_unpacked_with_or_without_extraction_filters(tmp_path, monkeypatch, with_filter):
    if with_filter and not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile extraction filters")
    if not with_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    monkeypatch.setattr(corpus, "TARBALL", make_tarball(tmp_path / "c.tar.gz"))
    index = corpus.corpus_index(tmp_path / "out")
    assert index == tmp_path / "out" / "spamassassin-public" / "full" / "index"
    assert tree(tmp_path / "out") == {
        "spamassassin-public/data/1": ("0o755", b"Subject: hi\n\nbody\n", 1_000_000_000),   # no setuid
        "spamassassin-public/full/index": ("0o644", b"spam ../data/1\n", 1_000_000_000),
    }


@pytest.mark.parametrize("name, kind", [("../outside", tarfile.REGTYPE),
                                        ("/abs/../../outside", tarfile.REGTYPE),
                                        ("spamassassin-public/link", tarfile.SYMTYPE),
                                        ("spamassassin-public/fifo", tarfile.FIFOTYPE)])
def test_without_extraction_filters_nothing_outside_the_folder_or_special_is_written(tmp_path, monkeypatch,
                                                                                      name, kind):
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    bad = tarfile.TarInfo(name)
    bad.type, bad.size, bad.linkname = kind, 3 if kind == tarfile.REGTYPE else 0, "/etc/passwd"
    monkeypatch.setattr(corpus, "TARBALL", make_tarball(tmp_path / "c.tar.gz",
                                                        [(bad, b"bad" if kind == tarfile.REGTYPE else b"")]))
    (tmp_path / "out").mkdir()
    with pytest.raises(SystemExit, match="outside|not a folder or a regular file"):
        corpus.corpus_index(tmp_path / "out")
    assert not (tmp_path / "outside").exists()
    assert not os.path.lexists(tmp_path / "out" / "spamassassin-public" / "link")
    assert not os.path.lexists(tmp_path / "out" / "spamassassin-public" / "fifo")
