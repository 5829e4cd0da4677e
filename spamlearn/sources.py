"""Who gave a verdict: the ``source`` a ledger row records, spelt in one place.

The HTTP service and the sieve drain write these; the IMAP trainer reads
them back (moving a young message out of Junk is a "rescue", learned as ham
at once, only when this user gave its spam verdict), so writers and reader
must spell them alike.  The IMAP trainer's own sources (``imap:ACCOUNT/FOLDER``)
are its own business (``spamlearn.imap.trainer``).
"""

from __future__ import annotations

__all__ = ["http_source", "sieve_source"]


def http_source(user: str | None) -> str:
    """A verdict given through ``spamlearn serve`` (for ``user``, if named)."""
    return f"http:{user}" if user else "http"


def sieve_source(user: str) -> str:
    """A verdict the sieve drain learned from ``user``'s move."""
    return f"sieve:{user}"
