"""Raw RFC 822 bytes to a ``ParsedMessage``: headers, parts and their text.

The parser never gives up on a message: what the ``email`` package cannot
make sense of becomes a note in ``ParsedMessage.defects`` (the tokenizer turns
those into ``control:`` tokens, which are evidence in their own right: spam
is far more often malformed than ham), and the readable rest still yields
text.  Work is bounded: only the first ``scan_limit`` bytes are read, so a
50 MB message costs what a 500 kB one does (SpamAssassin and spamc do the
same), and MIME nesting is walked without recursion to a fixed depth.
"""

from __future__ import annotations

import binascii
import codecs
import dataclasses
import email.errors
import email.header
import email.message
import email.parser
import email.policy
import hashlib
import re

from .errors import MessageError

__all__ = ["Part", "ParsedMessage", "parse_message", "message_digest", "decode_bytes"]

#: Parts nested deeper than this are not walked.  Real mail rarely nests
#: beyond 4 (a forwarded message with attachments); 20 is generous and
#: keeps a hostile 1,000-deep message cheap.
MAX_MIME_DEPTH = 20
#: More parts than this are not read: a few hundred tiny parts are a
#: denial-of-service shape, never a real message.
MAX_PARTS = 200

_PARSER = email.parser.BytesParser(policy=email.policy.compat32)


@dataclasses.dataclass(slots=True)
class Part:
    """One leaf of the MIME tree.

    ``text`` is the decoded text of ``text/*`` parts that are not
    attachments, and None for everything else: attachments are typed and
    named, never read as text.
    """

    content_type: str
    charset: str | None = None
    filename: str | None = None
    disposition: str | None = None
    encoding: str | None = None
    text: str | None = None
    size: int = 0
    notes: tuple[str, ...] = ()

    @property
    def is_html(self) -> bool:
        return self.content_type == "text/html"


@dataclasses.dataclass(slots=True)
class ParsedMessage:
    """What the tokenizer sees of a message."""

    headers: list[tuple[str, str]]
    parts: list[Part]
    structure: list[str]
    defects: list[str]
    size: int
    truncated: bool

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), decoded."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]


def decode_bytes(data: bytes, declared: str | None) -> tuple[str, tuple[str, ...]]:
    """Decode ``data`` with its declared charset, falling back sensibly.

    Returns the text and notes: ``charset-unknown`` when the declared name is
    not a text codec, ``charset-wrong`` when the bytes are not valid in it.
    Falls back to UTF-8, then Latin-1, which decodes every byte.
    """
    notes: tuple[str, ...] = ()
    if declared:
        try:
            return data.decode(declared), notes
        except LookupError:
            notes = ("charset-unknown",)
        except (UnicodeError, ValueError):
            notes = ("charset-wrong",)
    try:
        return data.decode("utf-8"), notes
    except UnicodeDecodeError:
        return data.decode("latin-1"), notes


def _unescape_header(value: str) -> str:
    """Undo compat32's surrogateescape of raw 8-bit header bytes."""
    try:
        value.encode("ascii")
        return value
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogateescape")
        return decode_bytes(raw, None)[0]


def decode_header_value(value: object) -> str:
    """Decode RFC 2047 encoded words and raw 8-bit bytes into text."""
    if isinstance(value, email.header.Header):
        value = str(value)
    text = _unescape_header(str(value))
    if "=?" not in text:
        return text
    try:
        pieces = email.header.decode_header(text)
    except (email.errors.HeaderParseError, ValueError, LookupError):
        return text
    out = []
    for chunk, charset in pieces:
        if isinstance(chunk, bytes):
            out.append(decode_bytes(chunk, charset)[0])
        else:
            out.append(chunk)
    return "".join(out)


_CRLF = re.compile(rb"\r\n")


def message_digest(raw: bytes) -> str:
    """The identity of a message: SHA-256 of its bytes, line ends normalised.

    The same message reaches spamlearn with LF line ends from a Maildir file
    and with CRLF from IMAP or a Dovecot pipe; our own ``X-Spam-*`` headers
    are left out so a filtered copy and the original are one message.
    """
    data = _CRLF.sub(b"\n", raw)
    head, sep, body = data.partition(b"\n\n")
    if b"x-spam-" in head.lower():
        kept = []
        skipping = False
        for line in head.split(b"\n"):
            if line[:1] in (b" ", b"\t"):
                if not skipping:
                    kept.append(line)
                continue
            skipping = line.lower().startswith(b"x-spam-")
            if not skipping:
                kept.append(line)
        head = b"\n".join(kept)
    return hashlib.sha256(head + sep + body.rstrip(b"\n")).hexdigest()


def _payload_bytes(part: email.message.Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except (binascii.Error, ValueError, AssertionError):
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("latin-1", "surrogateescape")
    return b""


def _leaf(part: email.message.Message) -> Part:
    content_type = part.get_content_type()
    disposition = (part.get_content_disposition() or None)
    try:
        filename = part.get_filename()
    except (LookupError, ValueError, TypeError):
        filename = None
    if filename is not None:
        filename = decode_header_value(filename)
    charset = part.get_param("charset")
    if isinstance(charset, tuple):  # RFC 2231 encoded parameter
        charset = charset[2]
    charset = str(charset).strip().lower() if charset else None
    encoding = (part.get("content-transfer-encoding") or "").strip().lower() or None
    payload = _payload_bytes(part)
    leaf = Part(content_type=content_type, charset=charset, filename=filename,
                disposition=disposition, encoding=encoding, size=len(payload))
    if content_type.startswith("text/") and disposition != "attachment" and filename is None:
        leaf.text, leaf.notes = decode_bytes(payload, charset)
    return leaf


def parse_message(raw: bytes, scan_limit: int = 512_000) -> ParsedMessage:
    """Parse raw message bytes.

    Parameters
    ----------
    raw : bytes
        The message as it came off the wire or out of a mailbox.
    scan_limit : int, default=512000
        Bytes read at most; the rest is ignored and ``truncated`` is set.

    Raises
    ------
    MessageError
        The input is empty (or whitespace only), or not bytes.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise MessageError(f"a message must be bytes, not {type(raw).__name__}")
    raw = bytes(raw)
    if not raw.strip():
        raise MessageError("empty message")
    data = raw[:scan_limit]
    defects: list[str] = []
    try:
        root = _PARSER.parsebytes(data)
    except RecursionError:
        # The email package recurses once per nesting level; a hostile
        # message nested a thousand deep exhausts the stack.  Read its
        # headers, and its body as one plain text.
        root = _PARSER.parsebytes(data, headersonly=True)
        headers = [(str(k).lower(), decode_header_value(v)) for k, v in root.raw_items()]
        body = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[-1]
        text, notes = decode_bytes(body, None)
        return ParsedMessage(
            headers=headers,
            parts=[Part("text/plain", text=text, size=len(body), notes=notes)],
            structure=[f"0:{root.get_content_type()}"],
            defects=["mime-too-deep"] + (["truncated"] if len(raw) > scan_limit else []),
            size=len(raw), truncated=len(raw) > scan_limit)
    headers = [(str(k).lower(), decode_header_value(v)) for k, v in root.raw_items()]
    parts: list[Part] = []
    structure: list[str] = []
    stack: list[tuple[email.message.Message, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        for defect in node.defects:
            defects.append(type(defect).__name__)
        if depth > MAX_MIME_DEPTH:
            defects.append("mime-too-deep")
            continue
        if len(parts) >= MAX_PARTS:
            defects.append("mime-too-many-parts")
            break
        structure.append(f"{depth}:{node.get_content_type()}")
        if node.is_multipart():
            children = node.get_payload()
            if isinstance(children, list):
                stack.extend((child, depth + 1) for child in reversed(children))
            continue
        parts.append(_leaf(node))
    if len(raw) > scan_limit:
        defects.append("truncated")
    return ParsedMessage(headers=headers, parts=parts, structure=structure,
                         defects=defects, size=len(raw), truncated=len(raw) > scan_limit)
