"""Check that the HTML fast path gives what the BeautifulSoup tree pass gives.

    PYTHONPATH=. python scripts/check_html_fast_path.py [INDEX] [--repeat 3]

``spamlearn.html`` turns most HTML parts into text with regular expressions
(``_prescan``, ``_without_soup``) and hands BeautifulSoup only the parts
whose markup needs a tree.  That is only right if both give the same
result, so this runs every HTML part of a corpus through both and compares
the words (``text.split()``), the tokens and the URLs, part by part.  It
prints how many parts still reach BeautifulSoup, how many differ (each
difference is shown; the exit code is 1 if any), and the CPU seconds of
``html_to_text`` over all parts with the fast path on.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from spamlearn import html as H
from spamlearn.evaluate import read_index
from spamlearn.message import parse_message

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import corpus_index  # noqa: E402


def html_parts(index: Path) -> list[str]:
    parts = []
    for entry in read_index(index):
        msg = parse_message(entry.path.read_bytes())
        parts.extend(part.text for part in msg.parts if part.is_html and part.text)
    return parts


def reaches_soup(html: str) -> bool:
    prescanned = H._prescan(html[:H.MAX_HTML_CHARS], [], [])
    return "<" in prescanned and H._without_soup(prescanned, [], []) is None


def difference(fast: H.HtmlContent, tree: H.HtmlContent) -> str | None:
    problems = []
    if fast.text.split() != tree.text.split():
        problems.append(f"words: {len(fast.text.split())} fast, {len(tree.text.split())} tree")
    for what in ("tokens", "urls"):
        mine, theirs = Counter(getattr(fast, what)), Counter(getattr(tree, what))
        if mine != theirs:
            problems.append(f"{what}: fast only {dict(mine - theirs)}, tree only {dict(theirs - mine)}")
    return "; ".join(problems) or None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", nargs="?", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    parts = html_parts(args.index or corpus_index())
    differ = 0
    try:
        for number, html in enumerate(parts):
            H._FAST_PATH = True
            fast = H.html_to_text(html)
            H._FAST_PATH = False
            problem = difference(fast, H.html_to_text(html))
            if problem:
                differ += 1
                print(f"part {number}: {problem}")
    finally:
        H._FAST_PATH = True
    to_soup = sum(reaches_soup(html) for html in parts)
    print(f"{len(parts):,} HTML parts; {to_soup:,} reach BeautifulSoup; {differ} differ from the tree pass")
    best = float("inf")
    for _ in range(args.repeat):
        start = time.process_time()
        for html in parts:
            H.html_to_text(html)
        best = min(best, time.process_time() - start)
    print(f"html_to_text over all parts: {best:.3f} s CPU (best of {args.repeat})")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
