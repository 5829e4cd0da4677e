"""Dovecot imapsieve retraining: a user's move into or out of Junk retrains spamlearn.

Dovecot (Pigeonhole imapsieve) runs ``report-spam.sieve`` when a message is
moved or copied into the spam folder and ``report-ham.sieve`` when one is
moved out of it; both pipe the message to a small ``/bin/sh`` program that
queues it in a spool (or posts it to ``spamlearn serve``) and returns at
once.  ``spamlearn sieve drain`` learns the queue through ``ModelStore``,
so the ledger keeps sieve learning, ``spamlearn train`` and ``spamlearn
learn`` from ever counting one message twice.

Modules: ``options`` (the ``[sieve]`` settings), ``templates`` (the four
files), ``install``, ``spool`` (the queue on disk), ``drain`` (learning
from it), ``cli`` (the ``spamlearn sieve`` commands).
"""

from .drain import DrainReport, drain_spool
from .install import install, uninstall
from .options import SieveOptions, check_user_name
from .spool import Spool, SpoolEntry
from .templates import RenderedFile, render_files

__all__ = ["SieveOptions", "check_user_name", "RenderedFile", "render_files", "install", "uninstall",
           "Spool", "SpoolEntry", "DrainReport", "drain_spool"]
