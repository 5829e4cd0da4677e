"""HTML to text plus the markup evidence spammers leave behind.

Spam uses markup to hide and to lure: links whose text lies about where
they go, remote images instead of text, text made invisible (display:none,
zero or tiny font sizes, white on white) to poison word statistics, and
forms that ask for passwords.  ``html_to_text`` returns the visible text for
the word tokenizer, plus ``html:`` tokens for that evidence and the URLs of
links, images and forms for the URL tokenizer.
"""

from __future__ import annotations

import dataclasses
import functools
import html as html_lib
import importlib.util
import re
import sys
import warnings
from collections.abc import Callable, Iterator

from .memo import memoised

__all__ = ["HtmlContent", "html_to_text"]

# lxml: measured 2026-11-28 on the 999 prescanned HTML parts of the
# SpamAssassin corpus that still hold tags, BeautifulSoup builds their trees
# in 0.92-0.96 s CPU with lxml, 1.13-1.17 s with html.parser (~20% faster).
_PARSER = "lxml" if importlib.util.find_spec("lxml") else "html.parser"

_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*[0-3](?:\.\d+)?(?:px|pt)?\s*(?:;|$)",
    re.IGNORECASE,
)
_WHITE = {"#fff", "#ffffff", "white"}
_COLOR_STYLE = re.compile(r"(?<![-\w])color\s*:\s*([#\w]+)", re.IGNORECASE)


@dataclasses.dataclass(slots=True)
class HtmlContent:
    text: str
    tokens: list[str]
    urls: list[str]


def _hides(style: str, size: str, color: str, is_font: bool) -> bool:
    """Does markup with these attributes hide its text (none, tiny, white)?"""
    if style and _HIDDEN_STYLE.search(style):
        return True
    if is_font:
        if size.strip() in ("0", "1", "-2", "-3", "-4"):
            return True
        if color.strip().lower() in _WHITE:
            return True
    if style:
        match = _COLOR_STYLE.search(style)
        if match and match.group(1).lower() in _WHITE:
            return True
    return False


def _is_hidden(tag) -> bool:
    return _hides(tag.get("style") or "", tag.get("size") or "", tag.get("color") or "",
                  tag.name == "font")


#: HTML beyond this many characters is not parsed.  Only 1% of this corpus's
#: HTML parts are longer (the longest is 82 kB); spam puts its pitch first.
MAX_HTML_CHARS = 60_000

# Tags BeautifulSoup still has to see: those it removes with their text
# (head, title, noscript) and those the evidence pass reads.
_SOUP_TAGS: frozenset[str] = frozenset({"form", "input", "iframe", "object", "embed", "applet", "map", "area",
                                        "base", "head", "title", "noscript"})
# Work per part stays linear in its length, whatever the markup:
# * a tag's name is matched possessively (``*+``): its letters are also
#   the attributes' ``[^<>]``, and with no ">" to end the tag, every
#   shorter name was tried again (one "<" and 59,000 letters: 73 s);
# * an element's end (``</script>``, ``</head>``) is looked for once: a
#   regex's lazy ``.*?`` scanned to the end of the part again from each
#   "<head" of "<head><head>..." (10,000 of them: 2.8 s; both measured
#   2026-11-29, and now a few ms).
_TAG_RE = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9:]*+)([^<>]*)>")
_COMMENT_RE = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_SCRIPT_STYLE_OPEN_RE = re.compile(r"<(script|style)\b[^>]*>", re.IGNORECASE)
_CLOSE_RES = {name: re.compile(rf"</{name}\s*>", re.IGNORECASE)
              for name in ("script", "style", "head", "title")}
_ATTR_RE = re.compile(r"""(?<![-\w])(href|src|width|height)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""",
                      re.IGNORECASE)
# Loose supersets of ``_is_hidden``'s tests, on the raw attribute text.
_MAYBE_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*[0-3](?!\d)"
    r"|(?<![-\w])color\s*:\s*(?:#fff\b|#ffffff|white)", re.IGNORECASE)
# The white space around an optional quote is taken possessively (``\s*+``):
# with no quote, ``\s*[\"']?\s*`` split a run of spaces between its two
# ``\s*`` every way there is before giving up, the square of the run (one
# ``<font color=`` and 59,000 spaces: 27 s a part).  No match is lost: a
# space is never a quote, so the first run always takes every space.
_MAYBE_HIDDEN_FONT = re.compile(
    r"(?<![-\w])(?:color\s*=\s*+[\"']?\s*+(?:#fff\b|#ffffff|white)|size\s*=\s*+[\"']?\s*+(?:0|1|-[234])(?!\d))",
    re.IGNORECASE)


_HREF_ONLY_RE = re.compile(r"""(?<![-\w])href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)


def _attrs(text: str, pattern: re.Pattern = _ATTR_RE) -> dict[str, str]:
    """Attributes matched by ``pattern`` (name, then one of three value forms), first wins."""
    out: dict[str, str] = {}
    for match in pattern.finditer(text):
        value = match.group(2) if match.group(2) is not None else (
            match.group(3) if match.group(3) is not None else match.group(4))
        out.setdefault(match.group(1).lower(), html_lib.unescape(value) if "&" in value else value)
    return out


@memoised(4096, arguments=2)
def _maybe_hidden(name: str, attrs: str) -> bool:
    if name == "font" and _MAYBE_HIDDEN_FONT.search(attrs):
        return True
    return "style" in attrs.lower() and _MAYBE_HIDDEN_STYLE.search(attrs) is not None


_LINK_RE = re.compile(r"<((?i:a|img))(?![a-zA-Z0-9:])([^<>]*)>")
# A tag with attributes; the styled ones are those whose attributes hold
# "style" (_STYLE_WORD_RE: the same case folding as the regex had).
_SPACED_TAG_RE = re.compile(r"<([a-zA-Z][a-zA-Z0-9:]*+)(?=\s)([^<>]*)>")
_STYLE_WORD_RE = re.compile(r"style", re.IGNORECASE)
_FONT_TAG_RE = re.compile(r"<(/?)(?i:font)(?![a-zA-Z0-9:])([^<>]*)>")


@functools.lru_cache(maxsize=256)
def _drop_re(keep: frozenset[str]) -> re.Pattern:
    """A regex for every open or close tag whose name is not in ``keep``."""
    names = "|".join(sorted(re.escape(name) for name in keep))
    return re.compile(rf"</?(?!(?i:{names})(?![a-zA-Z0-9:]))[a-zA-Z][a-zA-Z0-9:]*+[^<>]*>")


# ``_drop_re`` is for a few short names: the corpus keeps at most two
# beyond ``_SOUP_TAGS`` ("font" and "td", say).  A message names the rest
# (every tag name with a hiding style), and a regex of all of them cost
# its compiling and a try of each name at every tag: 1,400 names a part,
# 1 s a message of eight; one name of 58 KB, 55 ms a part, and the regex
# caches (ours and ``re``'s) held 300 MB of such patterns after 150
# messages.  Past these bounds the names are looked up in a set instead.
_MAX_REGEX_NAMES = len(_SOUP_TAGS) + 8
_LONGEST_REGEX_NAME = 32
_ANY_TAG_RE = re.compile(r"</?([a-zA-Z][a-zA-Z0-9:]*+)[^<>]*>")


def _drop_tags(html: str, keep: frozenset[str]) -> str:
    """``html`` with every open or close tag whose name is not in ``keep``
    (lower-case names) replaced by a space."""
    if len(keep) <= _MAX_REGEX_NAMES and max(map(len, keep)) <= _LONGEST_REGEX_NAME:
        return _drop_re(keep).sub(" ", html)
    # The same tags but for Unicode case folding: to the regex a long s
    # or a Kelvin sign in a tag's name could spell a kept name ("noſcript"),
    # as it does to no HTML parser.
    return _ANY_TAG_RE.sub(lambda match: match.group(0) if match.group(1).lower() in keep else " ", html)


_A_CLOSE_RE = re.compile(r"</a\s*>", re.IGNORECASE)
_TEXT_HOST_RE = re.compile(r"(?:https?://|www\.)([a-z0-9-]+(?:\.[a-z0-9-]+)+)|\b((?:[a-z0-9-]+\.)+(?:com|net|org|edu|gov|biz|info|[a-z]{2}))\b")
_HREF_HOST_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//(?:[^/@?#]*@)?([^/:?#]+)", re.IGNORECASE)


def _link_text_tokens(html: str, start: int, href: str, tokens: list[str]) -> None:
    """``html:link-host-mismatch`` when a link's text names another host
    than its href does (``<a href="http://evil.example/">www.bank.com</a>``),
    the phishing sign."""
    close = _A_CLOSE_RE.search(html, start, start + 400)
    if not close:
        return
    text = html_lib.unescape(_TAG_RE.sub(" ", html[start:close.start()])).lower()
    found = _TEXT_HOST_RE.search(text)
    if not found:
        return
    shown = (found.group(1) or found.group(2)).strip(".")
    target = _HREF_HOST_RE.match(href.strip())
    if not target:
        return
    host = target.group(1).lower().strip(".")
    if shown.startswith("www."):
        shown = shown[4:]
    if host.startswith("www."):
        host = host[4:]
    if host == shown or host.endswith("." + shown) or shown.endswith("." + host):
        tokens.append("html:link-host-same")
    else:
        tokens.append("html:link-host-mismatch")


# Links and images repeat across messages (list footers, spam templates:
# 13,299 <a> tags with 7,889 distinct attribute texts, 13,037 <img> with
# 3,884 in the corpus), so what is read from an attribute text is memoised.
# measured 2026-11-28 (with the font memo below, and the styled-tag search),
# html_to_text over the 1,208 HTML parts: 1.67 -> 1.40 s CPU warm, 1.89 ->
# 1.65 s on a first pass (fresh process); the same text, tokens and URLs.
@memoised(8192)
def _href(attrs: str) -> str | None:
    """The first href of an ``<a>`` tag's attribute text, unescaped.

    One search for the first href, not every attribute (``_attrs``):
    26,120 links, same hrefs (2026-11-28).
    """
    found = _HREF_ONLY_RE.search(attrs)
    if not found:
        return None
    href = found.group(1) if found.group(1) is not None else (
        found.group(2) if found.group(2) is not None else found.group(3))
    return html_lib.unescape(href) if "&" in href else href


@memoised(8192)
def _img_facts(attrs: str) -> tuple[str | None, bool]:
    """An ``<img>`` tag's src and whether it is 0 or 1 pixel wide or high."""
    found = _attrs(attrs)
    return found.get("src"), found.get("width") in ("0", "1") or found.get("height") in ("0", "1")


def _styled_tags(html: str, lowered: str) -> Iterator[re.Match]:
    """The tags whose attributes hold "style", tried only at those tags.

    The regex run over the whole part tries its lazy ``[^<>]*?style`` at
    every tag; for ASCII text (85% of the corpus's HTML parts), where
    ``lowered`` lines up with ``html`` and IGNORECASE folds nothing but
    A-Z, every match holds a "style" in ``lowered``, so the regex is tried
    only at the tag around each of those.  measured 2026-11-28, the 1,208
    HTML parts: this step 0.150 -> 0.074 s CPU, the same tags.
    """
    if not html.isascii() or len(lowered) != len(html):
        yield from (m for m in _SPACED_TAG_RE.finditer(html) if _STYLE_WORD_RE.search(m.group(2)))
        return
    resume = 0
    find, rfind, match, styled = lowered.find, html.rfind, _SPACED_TAG_RE.match, _STYLE_WORD_RE.search
    hit = find("style")
    while hit >= 0:
        if hit >= resume:
            start = rfind("<", resume, hit)
            if start >= 0 and rfind(">", start, hit) < 0:
                found = match(html, start)
                if found and styled(found.group(2)):
                    yield found
                    resume = found.end()
                else:
                    resume = hit + 5
            else:
                resume = hit    # no tag open here, so none starts before this "style"
        hit = find("style", hit + 5)


def _drop_elements(html: str, opening: re.Pattern,
                   replace: Callable[[str, str | None, int, int], str]) -> str:
    """Each element that ``opening`` starts, up to its own end tag or, for
    script and style, the end of ``html``, replaced by ``replace(name,
    inner, start, end)``; ``inner`` is the text between the tags (None when
    the element runs to the end), ``start:end`` the element in ``html``.
    What ``re.sub`` with ``<open>(.*?)</name\\s*>`` does, alternatives in
    the order ``opening`` tries them, but in one pass: an
    end tag is looked for once per element found, and a name whose end tag
    is nowhere after an opening is given up for the rest of ``html``.
    """
    out: list[str] = []
    pos = done = 0
    last = html.rfind(">") + 1              # an opening tag ends with one
    hopeless: set[str] = set()
    to_end = ("script", "style")            # they run to the end if never closed
    while (found := opening.search(html, pos, last)) is not None:
        name = found.group(1).lower()
        if name in hopeless:
            pos = found.start() + 1
            continue
        close = _CLOSE_RES[name].search(html, found.end())
        if close is None and name not in to_end:
            hopeless.add(name)
            pos = found.start() + 1
            continue
        out.append(html[done:found.start()])
        end = close.end() if close else len(html)
        out.append(replace(name, html[found.end():close.start()] if close else None, found.start(), end))
        if close is None:
            return "".join(out)
        pos = done = end
    out.append(html[done:])
    return "".join(out)


def _prescan(html: str, tokens: list[str], urls: list[str], link_hosts: bool = False) -> str:
    """Read links and images, and drop the markup BeautifulSoup need not see.

    BeautifulSoup builds its tree in Python, at ~50 us a tag on this
    corpus, and 2/3 of the tags of HTML mail are layout (``br``, ``td``,
    ``tr``, ``p``, ``b``, ``font``...), 1/6 each links and images.  So a few
    regex passes first, each done by ``re`` in C but for the links:

    * comments, scripts and style sheets are removed (with their tokens);
    * ``<a>`` and ``<img>`` give their tokens and URLs here;
    * ``<font>`` tags are dropped unless they may hide text (a stack of
      open fonts keeps the close tag of every kept one);
    * every other tag name is dropped (each open and close tag becomes a
      space, as ``get_text(" ")`` would separate them) unless BeautifulSoup
      reads it (``_SOUP_TAGS``) or some tag of that name in this document
      may hide text (a loose superset of ``_is_hidden``): keeping or
      dropping whole names leaves the open/close structure of the rest
      unchanged.

    measured (2026-11-28, the 1,208 HTML parts of the SpamAssassin corpus):
    tags parsed by BeautifulSoup 165,784 -> 11,480; html_to_text 11.8 s ->
    2.5 s CPU; the online figures unchanged (roca 0.1386 -> 0.1386, lam 1.50 ->
    1.53, hm 0.19 -> 0.19).  What differs: links inside hidden text now
    count (the full parse lost them: decompose() had cleared their attrs).
    """
    if "<!--" in html:
        def comment(match: re.Match) -> str:
            tokens.append("html:comment")
            return " "
        html = _COMMENT_RE.sub(comment, html)
    lowered = html.lower()
    if "<script" in lowered or "<style" in lowered:
        def script(name: str, *_: object) -> str:
            if name == "script":
                tokens.append("html:script")
            return " "
        html = _drop_elements(html, _SCRIPT_STYLE_OPEN_RE, script)
        lowered = html.lower()
    if "<a" in lowered or "<img" in lowered:
        for match in _LINK_RE.finditer(html):
            attrs = match.group(2)
            if match.group(1).lower() == "a":
                href = _href(attrs) if attrs else None
                if href:
                    urls.append(href)
                    tokens.append("html:a")
                    if link_hosts:
                        _link_text_tokens(html, match.end(), href, tokens)
                continue
            tokens.append("html:img")
            src, tiny = _img_facts(attrs) if attrs else (None, False)
            if src:
                urls.append(src)
                if src.lower().startswith("cid:"):
                    tokens.append("html:img-cid")
            if tiny:
                tokens.append("html:img-tiny")  # web bug: opens are tracked
    keep = _SOUP_TAGS
    if "style" in lowered:
        extra = {m.group(1).lower() for m in _styled_tags(html, lowered)
                 if _MAYBE_HIDDEN_STYLE.search(m.group(2))}
        extra -= {"a", "img", "font"}
        if extra:
            keep = keep | extra
    if "<font" in lowered:
        if any(_maybe_hidden("font", m.group(2)) for m in _FONT_TAG_RE.finditer(html) if not m.group(1)):
            fonts: list[bool] = []

            def font(match: re.Match) -> str:
                if not match.group(1):
                    hidden = _maybe_hidden("font", match.group(2))
                    fonts.append(hidden)
                    return match.group(0) if hidden else " "
                return match.group(0) if fonts and fonts.pop() else " "
            html = _FONT_TAG_RE.sub(font, html)
            keep = keep | {"font"}
    return _drop_tags(html, keep)


#: Off only to check the fast path against the tree (tests, measurements).
_FAST_PATH = True

_HEAD_TITLE_OPEN_RE = re.compile(r"<(head|title)(?![a-zA-Z0-9:])[^<>]*>", re.IGNORECASE)
_TITLE_OPEN_RE = re.compile(r"<(title)(?![a-zA-Z0-9:])[^<>]*>", re.IGNORECASE)
_FONT_ATTR_RE = re.compile(r"""(?<![-\w])(style|size|color)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""",
                           re.IGNORECASE)


def _font_hidden(attrs: str) -> bool:
    """``_is_hidden`` for a ``<font>`` tag, from its raw attribute text."""
    found = _attrs(attrs, _FONT_ATTR_RE)
    return _hides(found.get("style") or "", found.get("size") or "", found.get("color") or "", True)


# A tag whose quoted attribute values may hold ">" ("Click here >>").  Each
# piece is an atomic group: Python 3.11.0 to 3.11.4 (Debian 12's python3 is
# 3.11.2) end a possessive repeat where its last try failed, not where it
# began (CPython gh-106052), and an unclosed quote fails part way: a
# <form action="..."> after one was lost there, and found on 3.11.5+
# (measured: 3 of 30,000 random tag soups differed between the two).
_QUOTED_TAG_RE = re.compile(r"""<(/?)([a-zA-Z][a-zA-Z0-9:]*+)((?:(?>[^<>"']|"[^"]*"|'[^']*'))*+)>""")
_FORM_ATTR_RE = re.compile(r"""(?<![-\w])(type|action)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""",
                           re.IGNORECASE)


def _form_attrs(attrs: str) -> dict[str, str]:
    return _attrs(attrs, _FORM_ATTR_RE)


_DOCTYPE_RE = re.compile(r"\s*<!doctype(?![a-z0-9])[^<>]*>", re.IGNORECASE)


# Tags the tree pass only reads attributes of (a token, a URL): they hide
# no text, and but for iframe hold none that a parser reads differently
# (``_without_soup`` says where they still need the tree).
_FLAT_TAGS = frozenset({"form", "input", "iframe", "object", "embed", "applet", "map", "area"})
_VOID_FLAT_TAGS = frozenset({"input", "embed", "area"})
_HEAD_ALLOWED_FLAT_TAGS = frozenset({"input", "object", "embed", "applet", "area"})
_DECLARATION_RE = re.compile(r"<[!?][^>]*>")
# Where a parser would start reading markup; a "<" before anything else
# ("<<<", "< 5", "<3") is text to lxml.
_MARKUP_START_RE = re.compile(r"<[a-zA-Z/!?]")
_NOSCRIPT_END_RE = re.compile(r"</noscript\s*>", re.IGNORECASE)


def _flat_tag_tokens(name: str, attrs: str, tokens: list[str], urls: list[str]) -> None:
    """The tree pass's tokens and URL for an open ``_FLAT_TAGS`` tag."""
    if name == "form":
        tokens.append("html:form")
        action = _form_attrs(attrs).get("action")
        if action:
            urls.append(action)
    elif name == "input":
        tokens.append(f"html:input:{(_form_attrs(attrs).get('type') or 'text').lower()}")
    else:
        tokens.append(f"html:{name}")
        found = _attrs(attrs)
        ref = found.get("src") or found.get("href")
        if ref:
            urls.append(ref)


def _without_soup(html: str, out_tokens: list[str], urls: list[str]) -> str | None:
    """What the tree pass gives, for markup left with only head, title, font,
    noscript and tags read for their attributes (form, input, iframe, map...).

    After the prescan, 3/4 of the HTML parts that still hold tags hold
    nothing but ``<head>``, ``<title>`` and ``<font>`` tags that may hide
    text (``size=1`` is common).  Those need no tree: head and title are
    cut out (only when the head holds nothing but a title, as a parser
    would otherwise move the rest into the body), and fonts are walked
    with a stack, as lxml nests them (a stray close tag is ignored, an
    unclosed font runs to the end), hidden ones with their text removed
    and counted.  ``None`` for anything else; BeautifulSoup reads that.
    measured 2026-11-28, the 1,208 HTML parts of the SpamAssassin corpus:
    687 of the 1,000 parts that reached BeautifulSoup now skip it, with the
    same words, tokens and URLs as the tree pass for all 1,208 parts
    (checked part by part); html_to_text 2.56 -> 1.70 s CPU; tokenize
    stage 5.2 -> 4.0 s, whole loop 670 -> 796 msg/CPU-s; roca 0.1030,
    lam 1.053, hm 0.024, unsure 8.19% unchanged.

    Then (2026-11-29) most of what still sent parts to the tree: Word's
    ``<![if ...]>`` markers, other ``<!...>`` declarations and ``<?...>``
    processing instructions (lxml drops them), a "<" that starts no markup
    ("<<<", text to lxml), iframe, object, embed, applet, map and area
    read like form and input (a token, their src or href), noscript cut
    out with its content, and a stray ``</head>`` or ``</title>`` ignored.
    Left to the tree, because lxml builds something else there: any of
    these with a hiding style, an iframe holding tags or entities (its
    content is raw text), a close tag that closes fonts opened inside it,
    input/object/embed/applet/area after a title with no ``<head>`` (lxml
    puts them in the implied head), a noscript holding tags, a head or
    title after a font, and ``<base>`` (head or body, by what precedes it).
    Those rules came from comparing both paths on random mixtures of
    these pieces (test_html_fast_path_matches_tree_on_random_markup).
    measured 2026-11-29, the same 1,208 parts: reaching BeautifulSoup
    188 -> 97, html_to_text 1.05-1.09 -> 0.91-0.95 s CPU, the same words,
    tokens and URLs for all 1,208 (``scripts/check_html_fast_path.py``);
    eval, interleaved with the code before, 1,008-1,028 -> 1,016-1,098
    msg/s, the figures unchanged.
    """
    failed = False
    found_urls: list[str] = []
    tokens: list[str] = []      # handed over only on success
    if html[:1] in "< \t\r\n":
        # A leading <!DOCTYPE ...> is no text to the tree either (a Doctype
        # node, which get_text leaves out): it alone sent 152 of the 313
        # parts that still reached BeautifulSoup there (313 -> 188 now).
        # measured 2026-11-28, the 1,208 HTML parts: html_to_text 1.40 ->
        # 1.20 s CPU warm, 1.65 -> 1.47 s first pass; the same words
        # (text.split()), tokens and URLs for all 1,208 parts (only runs of
        # white space differ).
        doctype = _DOCTYPE_RE.match(html)
        if doctype:
            html = " " + html[doctype.end():]
    if "<!" in html or "<?" in html:
        if "<iframe" in html.lower():
            return None     # an iframe's content is raw text, declarations too
        # Only up to the last ">": a "<!" with none after it is no
        # declaration, and was otherwise scanned to the end again from
        # each one ("<!" 29,000 times: 0.93 s).
        last = html.rfind(">") + 1
        html = _DECLARATION_RE.sub(" ", html[:last]) + html[last:]

    bare_title = False
    head_end = 0

    def head(name: str, inner: str | None, start: int, end: int) -> str:
        nonlocal failed, bare_title, head_end
        if "<font" in html[head_end:start].lower():
            failed = True   # a title inside a font that may hide text counts as hidden words
        head_end = end
        if name == "title":
            bare_title = True
        else:
            inner = _drop_elements(inner or "", _TITLE_OPEN_RE, lambda *_: " ")
            if "<" in inner or inner.strip():
                failed = True
        return " "

    if "<head" in html or "<HEAD" in html or "<title" in html or "<TITLE" in html or "<Head" in html:
        html = _drop_elements(html, _HEAD_TITLE_OPEN_RE, head)
        if failed:
            return None
    pieces: list[str] = []
    hidden: list[str] = []
    stack: list[bool] = []
    containers: list[tuple[str, int]] = []     # open form, map...: name, fonts open then
    # How many of each name are in ``containers``: a stray close tag asks
    # whether its name is open anywhere, and a look through the list from
    # each of them cost the square of the tags (2,500 <form> and 7,000
    # </map>: 0.5 s a part, eight parts a message).
    open_names: dict[str, int] = {}
    hidden_depth = 0          # depth of the open hidden font, 0 if none
    hidden_words = 0
    pos = 0
    in_iframe = False
    for match in _QUOTED_TAG_RE.finditer(html):
        if match.start() < pos:
            continue            # inside a noscript already cut out
        closing, name, attrs = match.group(1), match.group(2).lower(), match.group(3)
        if in_iframe:
            # lxml reads an iframe's content as raw text: tags, entities and all.
            if not (closing and name == "iframe") or "&" in html[pos:match.start()]:
                return None
        text_out = hidden if hidden_depth else pieces
        if name in _FLAT_TAGS:
            text_out.append(html[pos:match.start()])
            pos = match.end()
            if closing:
                # A close tag separates text only if it closes something;
                # a stray one is dropped by the parser, joining its sides.
                # One that closes fonts opened inside it is the tree's to
                # sort out.
                if containers and containers[-1][0] == name:
                    open_names[name] -= 1
                    if len(stack) > containers.pop()[1]:
                        return None
                    text_out.append(" ")
                elif open_names.get(name):
                    return None
                elif hidden_depth:
                    text_out.append(" ")    # opened inside the hidden font: all goes with it
                in_iframe = False
                continue
            text_out.append(" ")
            in_iframe = name == "iframe"
            if hidden_depth:
                # Inside a hidden font: the tree pass never sees the tag
                # (the font is removed first).
                continue
            if _maybe_hidden(name, attrs) or (bare_title and name in _HEAD_ALLOWED_FLAT_TAGS):
                # A hiding style is the tree's to read; after a title with no
                # <head> around it, lxml puts these in the implied head.
                return None
            if name not in _VOID_FLAT_TAGS:
                containers.append((name, len(stack)))
                open_names[name] = open_names.get(name, 0) + 1
            _flat_tag_tokens(name, attrs, tokens, found_urls)
            continue
        if name == "noscript" and not closing and not hidden_depth:
            end = _NOSCRIPT_END_RE.search(html, match.end())
            if end is None or _MARKUP_START_RE.search(html, match.end(), end.start()):
                return None     # a tag left open inside may run past </noscript>
            text_out.append(html[pos:match.start()])
            text_out.append(" ")
            pos = end.end()
            continue
        if closing and name in ("head", "title"):
            text_out.append(html[pos:match.start()])
            pos = match.end()       # stray: the head and title were cut out above
            continue
        if name != "font":
            return None
        text_out.append(html[pos:match.start()])
        pos = match.end()
        text_out.append(" ")
        if not closing:
            is_hidden = not hidden_depth and _font_hidden(attrs)
            stack.append(is_hidden)
            if is_hidden:
                hidden_depth = len(stack)
        elif stack:
            if containers and containers[-1][1] >= len(stack):
                return None     # a font closed inside a form or map opened after it
            if len(stack) == hidden_depth:
                words = len(html_lib.unescape("".join(hidden)).split())
                if words:
                    hidden_words += words
                    tokens.append("html:hidden-text")
                hidden.clear()
                hidden_depth = 0
            stack.pop()
    if in_iframe:
        return None
    tail = html[pos:]
    if "<" in html and any(_MARKUP_START_RE.search(piece) for piece in (tail, *pieces, *hidden)):
        return None
    (hidden if hidden_depth else pieces).append(tail)
    if hidden_depth:
        words = len(html_lib.unescape("".join(hidden)).split())
        if words:
            hidden_words += words
            tokens.append("html:hidden-text")
    if hidden_words:
        tokens.append(f"html:hidden-words:{min(hidden_words, 50) // 10 * 10}")
    urls.extend(found_urls)
    out_tokens.extend(tokens)
    return html_lib.unescape("".join(pieces))


def preload() -> None:
    """Import BeautifulSoup now, without soupsieve, for this process and
    the workers it forks (``score``); 0.04 s CPU.

    ``html_to_text`` imports it at the first part that needs a tree; a
    parent process about to fork workers calls this first, so that they
    share one import instead of paying one each.  BeautifulSoup imports
    soupsieve, for CSS selectors, if it can: half of its import, compiling
    soupsieve's CSS regexes, for selectors nothing here uses (``select``
    then raises NotImplementedError in this process).  measured
    2026-11-30, ``import bs4``: 0.079-0.082 -> 0.040-0.041 s CPU.  A
    BeautifulSoup that needs soupsieve is imported with it.
    """
    if "bs4" in sys.modules:
        return
    hide = "soupsieve" not in sys.modules
    if hide:
        sys.modules["soupsieve"] = None     # import soupsieve: ImportError
    try:
        with warnings.catch_warnings():
            # "The soupsieve package is not installed. CSS selectors cannot be used."
            warnings.simplefilter("ignore", UserWarning)
            import bs4  # noqa: F401
    except ImportError:
        if not hide:
            raise
    finally:
        if hide and sys.modules.get("soupsieve", False) is None:
            del sys.modules["soupsieve"]
    import bs4  # noqa: F401,F811


def html_to_text(html: str, link_hosts: bool = False) -> HtmlContent:
    """Turn an HTML part into visible text, evidence tokens and URLs."""
    tokens: list[str] = []
    urls: list[str] = []
    if len(html) > MAX_HTML_CHARS:
        html = html[:MAX_HTML_CHARS]
        tokens.append("html:long")
    html = _prescan(html, tokens, urls, link_hosts)
    if "<" not in html:
        # Nothing left for a tree: entities are all BeautifulSoup would do.
        text = html_lib.unescape(html)
        if not text.strip():
            tokens.append("html:no-text")
        return HtmlContent(text=text, tokens=tokens, urls=urls)
    if _FAST_PATH:
        text = _without_soup(html, tokens, urls)
        if text is not None:
            if not text.strip():
                tokens.append("html:no-text")
            return HtmlContent(text=text, tokens=tokens, urls=urls)
    # Imported here: BeautifulSoup costs 0.17 s of start-up, which a
    # `spamlearn filter` of a plain-text message need not pay.
    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
    from bs4.builder import ParserRejectedMarkup

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
            soup = BeautifulSoup(html, _PARSER)
    except (ParserRejectedMarkup, ValueError, RecursionError):
        return HtmlContent(text=re.sub(r"<[^>]*>", " ", html), tokens=tokens + ["html:unparseable"],
                           urls=urls)

    # One pass over the (small) tree.
    hidden_words = 0
    for tag in soup.find_all(True):
        # Not ``tag.decomposed``: that property is getattr(tag, "_decomposed",
        # False), and on a live tag the missing attribute falls through to
        # Tag.__getattr__, which searches the whole subtree for a <_decomposed>
        # child.  decompose() sets the flag in each removed element's
        # __dict__, so the dict says the same without the search.  measured
        # 2026-11-28, html_to_text over the 188 parts that reach
        # BeautifulSoup, 3 runs each: 0.62-0.66 -> 0.54-0.57 s CPU, the same
        # text, tokens and URLs.
        if tag.__dict__.get("_decomposed"):
            continue
        name = tag.name
        if name in ("head", "title", "noscript"):
            tag.decompose()
            continue
        if name == "form":
            tokens.append("html:form")
            action = tag.get("action")
            if action:
                urls.append(str(action))
        elif name == "input":
            kind = str(tag.get("type") or "text").lower()
            tokens.append(f"html:input:{kind}")
        elif name in ("iframe", "object", "embed", "applet", "map", "area", "base"):
            tokens.append(f"html:{name}")
            ref = tag.get("src") or tag.get("href")
            if ref:
                urls.append(str(ref))
        if tag.attrs and _is_hidden(tag):
            hidden = tag.get_text(" ", strip=True)
            if hidden:
                hidden_words += len(hidden.split())
                tokens.append("html:hidden-text")
            tag.decompose()
    if hidden_words:
        tokens.append(f"html:hidden-words:{min(hidden_words, 50) // 10 * 10}")
    text = soup.get_text(" ")
    if not text.strip():
        tokens.append("html:no-text")
    return HtmlContent(text=text, tokens=tokens, urls=urls)
