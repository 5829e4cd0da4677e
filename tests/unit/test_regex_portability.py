"""Every regex with a possessive repeat matches alike on Python 3.11 before 3.11.5.

Python 3.11.0 to 3.11.4 (Debian 12's python3 is 3.11.2) end a possessive
repeat where its last try failed, not where that try began (CPython
gh-106052).  Two regexes read differently there: a digest's runs of
left-out fields (a review) and the HTML tag regex that reads quoted
attributes (a form's action after an unclosed quote was lost: 3 of 30,000
random tag soups).  This runs every such regex of the parser's modules
under the machine's older 3.11 and compares the matches with this Python's.
"""

from __future__ import annotations

import ast
import random
import re
import subprocess

import pytest
from test_message_digest import _python_311_before_the_possessive_fix

from spamlearn import headers, html, message

_POSSESSIVE = re.compile(r"[*+?}]\+")
_PIECES = ['<a href="http://x.example/', '"', "'", "<", ">", "<font color=white>", "<font size=1 >",
           "</font>", "text ", '<div style="display:none">', "</div>", "<img src='http://i.example/p.gif'",
           ' alt="a>b"', '<form action="http://f.example">', "</form>", "<!-- c -->", "<!--", "<b", " x=1",
           "=", "\n", "\r",
           "<p", "</p>", "word", "Received: x\n", "X-Delivered-To-Alias: y\n", "x-spam-flag: no\n", " cont\n",
           "\t", "<a href='u", "<a href=x.html>link</a>", "From: a@b\n", "\n\n"]


def possessive_regexes() -> list[tuple[str, bool, int]]:
    """(pattern, is bytes, flags) of every compiled regex in the parser's
    modules (in a module's namespace, or in a tuple or dict there) that has a
    possessive repeat."""
    found = {}
    for module in (html, headers, message):
        for value in vars(module).values():
            items = (value.values() if isinstance(value, dict)
                     else value if isinstance(value, tuple) else [value])
            for item in items:
                for regex in (item if isinstance(item, (tuple, list)) else [item]):
                    if not isinstance(regex, re.Pattern):
                        continue
                    is_bytes = isinstance(regex.pattern, bytes)
                    text = regex.pattern.decode("latin-1") if is_bytes else regex.pattern
                    if _POSSESSIVE.search(text):
                        found[(text, is_bytes, regex.flags)] = True
    return list(found)


def test_the_possessive_regexes_are_found():
    patterns = [p for p, _, _ in possessive_regexes()]
    assert any("(?>[^<>\"']" in p for p in patterns), "html's quoted-tag regex"
    assert any(p.startswith("(?:(?>") for p in patterns), "message's runs of left-out fields"
    assert len(patterns) >= 8


def test_they_match_alike_on_python_3_11_before_3_11_5():
    python = _python_311_before_the_possessive_fix()
    if python is None:
        pytest.skip("no python3.11 older than 3.11.5 here")
    rng = random.Random(106052)
    texts = ["".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 20))) for _ in range(3000)]
    regexes = possessive_regexes()
    script = ("import ast, re, sys\n"
              "regexes, texts = ast.literal_eval(sys.stdin.read())\n"
              "out = []\n"
              "for pattern, is_bytes, flags in regexes:\n"
              "    regex = re.compile(pattern.encode('latin-1') if is_bytes else pattern, flags)\n"
              "    out.append([[m.span() for m in regex.finditer(t.encode('latin-1') if is_bytes else t)]"
              " for t in texts])\n"
              "print(out)")

    def spans(pattern: str, is_bytes: bool, flags: int) -> list:
        regex = re.compile(pattern.encode("latin-1") if is_bytes else pattern, flags)
        return [[m.span() for m in regex.finditer(t.encode("latin-1") if is_bytes else t)] for t in texts]

    here = [spans(*r) for r in regexes]
    there = subprocess.run([python, "-c", script], input=repr((regexes, texts)), capture_output=True,
                           text=True, check=True, timeout=300).stdout
    for regex, ours, theirs in zip(regexes, here, ast.literal_eval(there)):
        assert ours == theirs, regex[0]
