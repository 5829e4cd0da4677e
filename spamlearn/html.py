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
import re
import warnings

from bs4 import BeautifulSoup, Comment, XMLParsedAsHTMLWarning
from bs4.builder import ParserRejectedMarkup

__all__ = ["HtmlContent", "html_to_text"]

# lxml builds the tree about 3x faster than html.parser on this corpus's
# HTML spam (scripts/bench_html.py) and is as lenient with broken markup.
try:
    import lxml  # noqa: F401

    _PARSER = "lxml"
except ImportError:  # pragma: no cover - lxml is a declared dependency
    _PARSER = "html.parser"

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


def _is_hidden(tag) -> bool:
    style = tag.get("style") or ""
    if style and _HIDDEN_STYLE.search(style):
        return True
    if tag.name == "font":
        size = (tag.get("size") or "").strip()
        if size in ("0", "1", "-2", "-3", "-4"):
            return True
        if (tag.get("color") or "").strip().lower() in _WHITE:
            return True
    if style:
        match = _COLOR_STYLE.search(style)
        if match and match.group(1).lower() in _WHITE:
            return True
    return False


def html_to_text(html: str) -> HtmlContent:
    """Turn an HTML part into visible text, evidence tokens and URLs."""
    tokens: list[str] = []
    urls: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
            soup = BeautifulSoup(html, _PARSER)
    except (ParserRejectedMarkup, ValueError, RecursionError):
        return HtmlContent(text=re.sub(r"<[^>]*>", " ", html), tokens=["html:unparseable"], urls=[])

    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        tokens.append("html:comment")
        comment.extract()
    for tag in soup.find_all(["script", "style", "head", "title", "noscript"]):
        if tag.name == "script":
            tokens.append("html:script")
        tag.decompose()

    hidden_words = 0
    for tag in soup.find_all(True):
        name = tag.name
        if name == "a":
            href = tag.get("href")
            if href:
                urls.append(href)
                tokens.append("html:a")
        elif name == "img":
            tokens.append("html:img")
            src = tag.get("src")
            if src:
                urls.append(src)
                if str(src).lower().startswith("cid:"):
                    tokens.append("html:img-cid")
            width, height = tag.get("width"), tag.get("height")
            if width in ("0", "1") or height in ("0", "1"):
                tokens.append("html:img-tiny")  # web bug: opens are tracked
        elif name == "form":
            tokens.append("html:form")
            action = tag.get("action")
            if action:
                urls.append(action)
        elif name == "input":
            kind = str(tag.get("type") or "text").lower()
            tokens.append(f"html:input:{kind}")
        elif name in ("iframe", "object", "embed", "applet", "map", "area", "base"):
            tokens.append(f"html:{name}")
            ref = tag.get("src") or tag.get("href")
            if ref:
                urls.append(ref)
        if tag.attrs and _is_hidden(tag) and not tag.decomposed:
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
    return HtmlContent(text=text, tokens=tokens, urls=[str(u) for u in urls])
