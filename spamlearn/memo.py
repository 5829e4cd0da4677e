"""Memos of the parser's helpers that never keep what a message makes long.

The tokenizer's and the HTML reader's helpers memoise what repeats across
messages (hosts, links, identifiers, tag attributes).  A memo keeps its
arguments, and a message decides how long they are: 300 messages with 400
KB Message-IDs grew a process by 150 MB, 1,200 messages of eight 59 KB
``<a href>`` parts by 1 GB, and the HTTP service lives for weeks (two
reviews).  Real hosts, links, identifiers and attributes are shorter than
``MEMO_LONGEST`` (of the corpus's 59,874 HTML helper calls, 11 were
longer, 2026-11-29): a longer argument is worked out each time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

__all__ = ["MEMO_LONGEST", "memoised"]

MEMO_LONGEST = 512


def memoised(maxsize: int, arguments: int = 1) -> Callable:
    """``functools.lru_cache(maxsize)`` for calls whose first ``arguments``
    (1 or 2) string arguments are at most ``MEMO_LONGEST`` characters long."""
    def wrap(fn: Callable) -> Callable:
        cached = functools.lru_cache(maxsize=maxsize)(fn)
        if arguments == 1:
            def call(first, *args, **kwargs):
                if len(first) > MEMO_LONGEST:
                    return fn(first, *args, **kwargs)
                return cached(first, *args, **kwargs)
        else:
            def call(first, second, *args, **kwargs):
                if len(first) > MEMO_LONGEST or len(second) > MEMO_LONGEST:
                    return fn(first, second, *args, **kwargs)
                return cached(first, second, *args, **kwargs)
        call.cache_clear = cached.cache_clear
        call.cache_info = cached.cache_info
        return functools.wraps(fn)(call)
    return wrap
