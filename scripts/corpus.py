"""Unpack the shared SpamAssassin corpus at run time (never committed).

Used by tests, benchmarks and the default-model build: the tarball lives in
``../shared/corpora``; it is unpacked once into ``.corpora/`` (git-ignored)
or the folder given, and the path of its TREC index is returned.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARBALL = Path(os.environ.get("SPAMLEARN_CORPUS_TARBALL",
                              ROOT.parent / "shared" / "corpora" / "spamassassin-public.tar.gz"))


def corpus_index(target: Path | None = None) -> Path:
    """Unpack (once) and return ``.../spamassassin-public/full/index``."""
    target = Path(target or ROOT / ".corpora")
    index = target / "spamassassin-public" / "full" / "index"
    if index.is_file():
        return index
    if not TARBALL.is_file():
        raise SystemExit(f"corpus tarball not found at {TARBALL} (set SPAMLEARN_CORPUS_TARBALL)")
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(TARBALL) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, filter="data")
        else:
            _extract_files(tar, target)
    return index


def _extract_files(tar: tarfile.TarFile, target: Path) -> None:
    """``tar``'s folders and regular files, written under ``target``.

    Python 3.11.0-3.11.3 (Debian 12's python3 is 3.11.2) have no extraction
    filters (PEP 706 came in 3.11.4: ``extractall(filter=...)`` is a
    TypeError there), and a bare ``extractall`` would follow a member's
    ``../`` or absolute path, links, devices and owners.  This writes only
    what the "data" filter lets through unchanged for the corpus (folders
    and regular files inside ``target``, its mode bits as that filter
    leaves them) and refuses the rest.
    """
    root = os.path.realpath(target)
    for member in tar:
        path = os.path.realpath(os.path.join(root, member.name.lstrip("/")))
        if os.path.commonpath([path, root]) != root:
            raise SystemExit(f"{TARBALL}: {member.name!r} would be unpacked outside {target}")
        if member.isdir():
            os.makedirs(path, exist_ok=True)
        elif member.isreg():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            mode = member.mode & 0o755 | 0o600
            if not mode & 0o100:
                mode &= ~0o111
            source = tar.extractfile(member)
            with open(path, "wb") as out:
                shutil.copyfileobj(source, out)
            os.chmod(path, mode)
            os.utime(path, (member.mtime, member.mtime))
        else:
            raise SystemExit(f"{TARBALL}: {member.name!r} is not a folder or a regular file")


if __name__ == "__main__":
    print(corpus_index())
