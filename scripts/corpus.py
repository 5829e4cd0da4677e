"""Unpack the shared SpamAssassin corpus at run time (never committed).

Used by tests, benchmarks and the default-model build: the tarball lives in
``../shared/corpora``; it is unpacked once into ``.corpora/`` (git-ignored)
or the folder given, and the path of its TREC index is returned.
"""

from __future__ import annotations

import os
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
        tar.extractall(target, filter="data")
    return index


if __name__ == "__main__":
    print(corpus_index())
