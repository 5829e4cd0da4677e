"""Who gave a verdict: the ``source`` a ledger row records, spelt in one place.

The HTTP service, its spamd listener and the sieve drain write these; the IMAP trainer reads
them back (moving a young message out of Junk is a "rescue", learned as ham
at once, only when this user gave its spam verdict), so writers and reader
must spell them alike.  The IMAP trainer's own sources (``imap:ACCOUNT/FOLDER``)
are its own business (``spamlearn.imap.trainer``).
"""

from __future__ import annotations

__all__ = ["http_source", "spamd_source", "sieve_source", "verdict_giver"]


def http_source(user: str | None) -> str:
    """A verdict given through ``spamlearn serve`` (for ``user``, if named)."""
    return f"http:{user}" if user else "http"


def spamd_source(user: str | None) -> str:
    """A verdict given through ``spamc -L`` (TELL) to ``spamlearn serve``'s spamd listener."""
    return f"spamd:{user}" if user else "spamd"


def sieve_source(user: str) -> str:
    """A verdict the sieve drain learned from ``user``'s move."""
    return f"sieve:{user}"


def verdict_giver(source: str) -> str | None:
    """The user named by a source ``http_source``, ``spamd_source`` or
    ``sieve_source`` wrote; None for any other source (the IMAP trainer's,
    ``http`` with no user)."""
    kind, colon, user = source.partition(":")
    return user if colon and user and kind in ("http", "spamd", "sieve") else None
