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
import email.header
import email.message
import email.quoprimime
import hashlib
import re
import urllib.parse
from collections.abc import Iterator

from .errors import READING_FAILURES, MessageError
from .mailsource import has_quoted_from_lines, mbox_unquoted

__all__ = ["Part", "ParsedMessage", "parse_message", "message_digest", "legacy_message_digest",
           "bare_head_digests", "quoted_envelope_digest", "message_bytes", "decode_bytes", "RawMessage"]

#: Parts nested deeper than this are not walked.  Real mail rarely nests
#: beyond 4 (a forwarded message with attachments); 20 is generous and
#: keeps a hostile 1,000-deep message cheap.
MAX_MIME_DEPTH = 20
#: More parts than this are not read: a few hundred tiny parts are a
#: denial-of-service shape, never a real message.
MAX_PARTS = 200

#: Every form of a message spamlearn takes (``message_bytes``): the type
#: hints said ``bytes``, so mypy refused a str or memoryview the
#: docstrings offer (a helper's review).
RawMessage = bytes | bytearray | memoryview | str


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
    if declared and not _text_codec(declared):
        notes = ("charset-unknown",)
    elif declared:
        try:
            return data.decode(declared), notes
        except LookupError:
            notes = ("charset-unknown",)
        except UnicodeDecodeError as exc:
            text = _without_cut_character(data, declared, exc)
            if text is not None:
                return text, notes
            notes = ("charset-wrong",)
        except (UnicodeError, ValueError):
            notes = ("charset-wrong",)
    try:
        return data.decode("utf-8"), notes
    except UnicodeDecodeError as exc:
        text = _without_cut_character(data, "utf-8", exc)
        return (text if text is not None else data.decode("latin-1")), notes


def _without_cut_character(data: bytes, charset: str, exc: UnicodeDecodeError) -> str | None:
    """``data`` decoded without its last few bytes, if all that was wrong
    with it is a character cut off at the end (a part cut at the scan
    limit, or a message cut short); else None.  A 5 MB Chinese message cut
    inside its last character read as "charset-wrong" and mojibake, in two
    of three byte alignments (a helper's review)."""
    if exc.end != len(data) or exc.start < len(data) - 4:
        return None
    head = data[:exc.start]
    if head.isascii():
        # Nothing before it says the text is in a multibyte charset: a
        # Latin-1 "Caf\xe9" at the very end is a wrong charset, not a cut.
        return None
    try:
        return head.decode(charset)
    except (UnicodeError, LookupError, ValueError):
        return None


def _unescape_header(value: str) -> str:
    """Undo compat32's surrogateescape of raw 8-bit header bytes."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value                      # real text, no escaped bytes
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogateescape")
        return decode_bytes(raw, None)[0]


# Characters of one header value decoded from RFC 2047 encoded words (a
# real Subject or To is far shorter; 16 KB of encoded words take ~5 ms).
_MAX_DECODED_HEADER = 16_384


def decode_header_value(value: object) -> str:
    """Decode RFC 2047 encoded words and raw 8-bit bytes into text."""
    if isinstance(value, email.header.Header):
        value = str(value)
    text = str(value)
    if "=?" not in text:
        return _unescape_header(text) if not text.isascii() else text
    text = _unescape_header(text)
    if len(text) > _MAX_DECODED_HEADER:
        # Decode the front, keep the rest as written.  Set when the standard
        # library's decoder took time growing with the square of the
        # encoded words in one value (1.1 s for 30,000); ours is linear,
        # and the bound stays: no real header comes near it.
        return decode_header_value(text[:_MAX_DECODED_HEADER]) + text[_MAX_DECODED_HEADER:]
    decoded = _decode_encoded_words(text)
    return text if decoded is None else decoded


# An RFC 2047 encoded word.  email.header.decode_header's pattern reads the
# encoded text as ``.*?`` up to "?=", so from each "=?" with no "?=" after
# it, it scanned to the end of the value: quadratic (16 KB of "=??q? ",
# 0.26 s; a message of such headers, 7 s).  Encoded text holds no "?"
# (RFC 2047: Q writes it =3F, base64 has none), so ``[^?]*`` stops at the
# next one, and each stretch between two "?" is read once.
_ENCODED_WORD_RE = re.compile(r"=\?([^?]*)\?([qQbB])\?([^?]*)\?=")


def _decode_encoded_words(text: str) -> str | None:
    """``text`` with its encoded words decoded, as email.header.decode_header
    does (white space between two encoded words dropped, neighbouring words
    in one charset decoded together, so a character split across them
    survives); None when a base64 word cannot be decoded."""
    out: list[str] = []
    run: list[bytes] = []            # encoded words of one charset in a row
    run_charset: str | None = None
    pos = 0
    for match in _ENCODED_WORD_RE.finditer(text):
        between = text[pos:match.start()]
        if not pos:
            between = between.lstrip()
        elif between.isspace():
            between = ""                # between two encoded words: not text
        charset, kind, encoded = match.group(1).lower(), match.group(2).lower(), match.group(3)
        if kind == "q":
            word = email.quoprimime.header_decode(encoded).encode("raw-unicode-escape")
        else:
            encoded += "==="[:(4 - len(encoded) % 4) % 4]      # Postel: add the missing padding
            try:
                word = binascii.a2b_base64(encoded.encode("raw-unicode-escape"))
            except binascii.Error:
                return None
        if run and (charset != run_charset or between):
            out.append(decode_bytes(b"".join(run), run_charset)[0])
            run = []
        if between:
            out.append(between)
        if not run:
            run_charset = charset
        run.append(word)
        pos = match.end()
    if not pos:
        return text                     # no encoded word in it after all
    out.append(decode_bytes(b"".join(run), run_charset)[0])
    out.append(text[pos:])
    return "".join(out)




#: Headers that delivery writes for each recipient (a final hop's ``Received
#: ... for <user>``, Postfix's ``Delivered-To`` and ``X-Original-To``, the
#: envelope sender as ``Return-Path``), and our own ``X-Spam-*`` verdict.
_NOT_THE_MESSAGE_RE = re.compile(
    rb"(?:x-spam-|(?:received|delivered-to|x-original-to|return-path|x-envelope-to|envelope-to"
    rb"|x-delivered-to)[ \t]*:)", re.IGNORECASE)

#: Up to 0.2.0 only our own ``X-Spam-*`` headers were left out
#: (``legacy_message_digest``).
_VERDICT_HEADER_RE = re.compile(rb"x-spam-", re.IGNORECASE)


def _field_runs(pattern: re.Pattern[bytes]) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """Regexes for a run of fields that ``pattern`` names, each with its
    continuation lines: at the start of the header block, and after a line
    break (group 1; a literal first, which ``re`` looks for quickly).
    Possessive: nothing to give back, and a plain ``*`` kept a record of
    each line it took.

    Each field is an atomic group ``(?>...)``: Python 3.11.0 to 3.11.4
    (Debian 12's python3 is 3.11.2) end a possessive repeat where its last
    try failed, not where it started (CPython gh-106052), and a try fails
    part way in ``pattern``: ``Received: x\\nX-Delivered-To-Foo: y`` left
    out ``X-Delivered-To`` there, another digest than 3.11.5's and than
    before the runs (a review).  An atomic group gives its position back
    when it fails, on those versions too."""
    run = (rb"(?:(?>(?:" + pattern.pattern + rb")[^\n]*+(?:\n|\Z)(?:[ \t][^\n]*+(?:\n|\Z))*+))++")
    return re.compile(run, re.IGNORECASE), re.compile(rb"\n(" + run + rb")", re.IGNORECASE)


_SKIPPED_FIELDS = {pattern: _field_runs(pattern) for pattern in (_NOT_THE_MESSAGE_RE, _VERDICT_HEADER_RE)}


def _skipped_spans(data: bytes, start: int, end: int,
                   skipped: re.Pattern[bytes]) -> Iterator[tuple[int, int]]:
    """Where the runs of header fields named by ``skipped`` are in the header
    block ``data[start:end]``, whose lines end in LF."""
    at_start, after_break = _SKIPPED_FIELDS[skipped]
    found = at_start.match(data, start, end)
    if found:
        yield found.span()
        start = found.end()
    for found in after_break.finditer(data, start, end):
        yield found.span(1)


def message_bytes(raw: object, *, allow_empty: bool = False) -> bytes:
    """A message as bytes, whatever form of it spamlearn takes: ``bytes``,
    ``bytearray`` and ``memoryview`` as they are, a ``str`` as its UTF-8
    encoding (``surrogateescape``, so text read with it gives back its
    bytes).  The one conversion, so that what ``Classifier`` scores the
    ledger (``ModelStore``) and ``message_digest`` take too (a helper's
    review: a memoryview, scored fine, failed to learn with AttributeError).

    Raises
    ------
    MessageError
        ``raw`` is of another type, is text that is not UTF-8 (a lone
        surrogate), or is empty or white space only (unless ``allow_empty``).
    """
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            raise MessageError(f"a message given as text must be UTF-8: character {exc.start} is a "
                               f"lone surrogate (give the message as bytes)") from None
    elif isinstance(raw, (bytearray, memoryview)):
        raw = bytes(raw)
    elif not isinstance(raw, bytes):
        hint = ""
        if isinstance(raw, email.message.Message):
            # What a filter reading a mailbox (``mailbox.mbox``) or parsing
            # with ``email`` has in hand; its bytes are a call away, and the
            # error did not say which (a helper's review).
            hint = " (give msg.as_bytes(), or the mailbox's get_bytes(key))"
        raise MessageError(f"a message must be bytes or str, not {type(raw).__name__}{hint}")
    # isspace, not strip: strip copied a 50 MB message that ended in a
    # space or newline, doubling the memory a huge message costs.
    if not allow_empty and (not raw or raw.isspace() or _only_an_envelope_line(raw)):
        raise MessageError("empty message")
    return raw


def _only_an_envelope_line(raw: bytes) -> bool:
    """An mbox envelope line (``From sender date``) and nothing but white
    space after it: empty, as ``learn FILE`` reads such a file (on stdin or
    over HTTP it was learned, every one as the one empty message; a
    review)."""
    if not raw.startswith(b"From "):
        return False
    newline = raw.find(b"\n")
    return newline < 0 or _WHITE_SPACE_TO_THE_END_RE.match(raw, newline + 1) is not None


_WHITE_SPACE_TO_THE_END_RE = re.compile(rb"\s*\Z")


def message_digest(raw: RawMessage) -> str:
    """The identity of a message: SHA-256 of its bytes, line ends normalised.

    The same message reaches spamlearn with LF line ends from a Maildir file
    and with CRLF from IMAP or a Dovecot pipe; the headers its delivery
    writes (``Received``, ``Delivered-To``, ``X-Original-To``,
    ``Return-Path``...) and our own ``X-Spam-*`` headers are left out, so
    the copies one delivery gives several users of a shared model are one
    message (SpamAssassin's Bayes keys on the Message-ID, Rspamd on the
    content, for the same reason), and so is a filtered copy and the
    original; an mbox envelope line (``From sender date``), which procmail
    and mbox archives add and IMAP never shows, too, and with it the
    ``>From `` quoting of the lines after it (mboxrd: one level undone, as
    ``spamlearn learn`` reads an mbox file).  Trailing newlines do
    not count: a message without a blank line (headers only) is the one
    with a blank line and an empty body.  ``raw`` is any form
    ``message_bytes`` takes (MessageError for anything else).
    """
    return _digest(message_bytes(raw, allow_empty=True), _NOT_THE_MESSAGE_RE, bare_head_as_empty_body=True,
                   unquote=True)


def quoted_envelope_digest(raw: bytes) -> str | None:
    """The digest a message with an mbox envelope line and ``>From `` lines
    was keyed on until 2026-11-29, its quoting counted; None for any other
    message, whose digest did not change.  (A helper's review: such a file
    learned by its path, read as an mbox and unquoted, and the same bytes on
    standard input or over HTTP were two messages, spam and ham at once.)"""
    raw = message_bytes(raw, allow_empty=True)
    if not raw.startswith(b"From ") or not has_quoted_from_lines(raw, raw.find(b"\n") + 1):
        return None
    quoted = _digest(raw, _NOT_THE_MESSAGE_RE, bare_head_as_empty_body=True, unquote=False)
    return quoted if quoted != message_digest(raw) else None


def bare_head_digests(raw: bytes) -> tuple[str, ...]:
    """The digests a message with an empty body may have been keyed on
    until 2026-11-29, when a message without a blank line was hashed with
    its trailing newlines: its headers ending with no newline, and with one
    (a helper's review: ``Subject: a`` with no newline, one or two was three
    messages).  Both, whichever form ``raw`` is: yesterday's ``Subject: a``
    is today's ``Subject: a\\n`` (a second review: only the digest of the
    very bytes given was looked up, and the other form was counted again).
    Empty for a message with a body, whose digest did not change."""
    raw = message_bytes(raw, allow_empty=True)
    start = raw.find(b"\n") + 1 if raw.startswith(b"From ") else 0
    blanks = [at for at in (raw.find(b"\n\n", start), raw.find(b"\n\r\n", start)) if at >= 0]
    if blanks and not _ONLY_NEWLINES_RE.match(raw, min(blanks)):
        return ()        # a body: found without a copy of the message
    data = raw.replace(b"\r\n", b"\n") if b"\r\n" in raw else raw
    head = data[:_end_without_newlines(data, start)]
    return tuple(dict.fromkeys(_digest_normalised(form, _NOT_THE_MESSAGE_RE, bare_head_as_empty_body=False)
                               for form in (head, head + b"\n")))


_ONLY_NEWLINES_RE = re.compile(rb"(?:\r?\n)*\Z")


def legacy_message_digest(raw: bytes) -> str:
    """The digest ledgers written by 0.2.0 and earlier keyed messages on: the same,
    but only ``X-Spam-*`` headers left out (every delivery copy its own), and
    a message's trailing newlines counted where it has no blank line."""
    return _digest(message_bytes(raw, allow_empty=True), _VERDICT_HEADER_RE, bare_head_as_empty_body=False)


def _digest(raw: bytes, skipped: re.Pattern[bytes], *, bare_head_as_empty_body: bool,
            unquote: bool = False) -> str:
    # The body is hashed in place (a memoryview), not sliced and joined: for
    # a 50 MB message the straightforward ``head + sep + body.rstrip()``
    # made three copies of it.  The digests are the same bit for bit (the
    # ledger keys on them; ``test_digest_matches_the_reference_definition``).
    # bytes.replace, not re.sub: the same bytes, but re.sub built a list of
    # every piece between two CRLFs first (learning a 60 MB CRLF message
    # took 556 MB).
    return _digest_normalised(raw.replace(b"\r\n", b"\n") if b"\r\n" in raw else raw, skipped,
                              bare_head_as_empty_body=bare_head_as_empty_body, unquote=unquote)


def _digest_normalised(data: bytes, skipped: re.Pattern[bytes], *, bare_head_as_empty_body: bool,
                       unquote: bool = False) -> str:
    """``_digest`` of a message whose CRLFs are LFs already (normalised
    once: a second pass would join a CR left before an LF)."""
    start = 0
    if data.startswith(b"From "):
        newline = data.find(b"\n")
        start = newline + 1 if newline >= 0 else len(data)
        if unquote and has_quoted_from_lines(data, start):
            # The message's own first line is no quoted line (nor is it in
            # an mbox file: mailsource unquotes each message after its
            # envelope line alike).
            data = mbox_unquoted(data[start:])
            start = 0
    blank = data.find(b"\n\n", start)
    head_end = blank if blank >= 0 else len(data)
    if blank < 0 and bare_head_as_empty_body:
        head_end = _end_without_newlines(data, start)
    # The header lines but the skipped fields (with their continuation
    # lines), joined by "\n": hashed run by run of lines kept, not line by
    # line, which made a list of every line (a 10 MB message without a
    # blank line, all header, took 360 MB to learn; a review, 2026-11-29).
    digest = hashlib.sha256()
    view = memoryview(data)
    pos = start
    joined = False
    for skip_start, skip_end in _skipped_spans(data, start, head_end, skipped):
        if skip_start > pos:
            if joined:
                digest.update(b"\n")
            digest.update(view[pos:skip_start - 1])     # the run's last line break is the join's
            joined = True
        pos = skip_end
    if pos < head_end or (pos > start and data[pos - 1] == 10):
        # The lines after the last skipped field, or the empty line after
        # its line break.
        if joined:
            digest.update(b"\n")
        digest.update(view[pos:head_end])
    if blank >= 0:
        digest.update(b"\n\n")
        body_start = blank + 2
        body_end = _end_without_newlines(data, body_start)
        digest.update(memoryview(data)[body_start:body_end])
    elif bare_head_as_empty_body:
        digest.update(b"\n\n")
    return digest.hexdigest()


def _end_without_newlines(data: bytes, start: int) -> int:
    """Where ``data[start:]`` would end after ``rstrip(b"\\n")``, without the copy."""
    end = len(data)
    while end > start:
        tail = data[max(start, end - 65536):end]
        kept = len(tail.rstrip(b"\n"))
        end -= len(tail) - kept
        if kept:
            break
    return end


# A Content-Type or Content-Disposition parameter: name=value or name="value",
# RFC 2231's name*=charset'lang'value and name*0=... continuations included.
_PARAM_RE = re.compile(r';\s*([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)')


# One header field: a name of printable characters but the colon, then its
# value, then any continuation lines (starting with a space or a tab).
_FIELD_RE = re.compile(r"([\041-\071\073-\176]+)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)")
# A run of such fields, each ended by its line break (or the end of the text).
_FIELDS_RUN_RE = re.compile(r"(?:[\041-\071\073-\176]+[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*(?:\n|\Z))*")
_HEAD_END = re.compile(rb"\n\r?\n")
_FIRST_FIELD_RE = re.compile(rb"[\041-\071\073-\176]+[ \t]*:")
_FOLD_RE = re.compile(r"\r?\n")


def _field_text(value: str) -> str:
    """A field value (decoded as Latin-1) unfolded, stripped, 8-bit bytes read as UTF-8."""
    if "\n" in value:
        # str.replace when there is no CR: a third of the fields are folded
        # (Received), and re.sub cost ~4 us each against ~0.3 us.
        value = value.replace("\n", "") if "\r" not in value else _FOLD_RE.sub("", value)
    value = value.strip()
    if not value.isascii():
        raw = value.encode("latin-1")
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            pass                      # Latin-1 already: every byte is a character
    return value


def _split_head(data: bytes, defects: list[str]) -> tuple[list[tuple[str, str]], bytes]:
    """Split a message or part into its header fields and its body.

    Fields are (lower-case name, unfolded value with 8-bit bytes decoded).
    The header block ends at the first empty line.  A line that is neither
    a header nor a continuation also ends it (compat32's
    ``MissingHeaderBodySeparatorDefect``): that line starts the body, as in
    the ``email`` package, so random binary is all body.  The block is
    decoded once as Latin-1 (one character a byte, so offsets stay valid)
    and cut with one regex; this was 3x faster than a loop over lines.
    """
    if data[:1] == b"\n":
        return [], data[1:]
    if data[:2] == b"\r\n":
        return [], data[2:]
    match = _HEAD_END.search(data)
    if match:
        head, body_start = data[:match.start() + 1], match.end()
    else:
        head, body_start = data, len(data)
    text = head.decode("latin-1")
    # The run of well-formed fields from the top in one match, then its
    # fields in one findall, instead of a match per field from a Python
    # loop; values that are ASCII and unfolded (most) need only a strip.
    # measured 2026-11-28, parse_message over the corpus (146,189 fields),
    # with str.replace for unfolding in _field_text: 0.80 -> 0.60 s CPU,
    # the same ParsedMessage (headers, parts, defects) for all 6,046.
    end = _FIELDS_RUN_RE.match(text).end()
    fields = [(name.lower(), value.strip() if "\n" not in value and value.isascii() else _field_text(value))
              for name, value in _FIELD_RE.findall(text, 0, end)]
    if end < len(text) and text[end:].strip():
        defects.append("MissingHeaderBodySeparatorDefect")
        return fields, data[end:]
    return fields, data[body_start:]


def _params(value: str) -> tuple[str, dict[str, str]]:
    """``type/sub; a=b; c="d"`` -> (``type/sub`` lower-cased, {a: b, c: d})."""
    main, sep, rest = value.partition(";")
    params: dict[str, str] = {}
    if sep:
        pieces: dict[str, list[tuple[int, str, bool]]] = {}
        for match in _PARAM_RE.finditer(";" + rest):
            key, raw = match.group(1).lower(), match.group(2).strip()
            if raw.startswith('"'):
                raw = raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:]
                raw = raw.replace('\\"', '"').replace("\\\\", "\\")
            # RFC 2231: name*0*=utf-8''a%20b, name*1*=c, name*=us-ascii'en'x
            if "*" in key:
                base, _, tail = key.partition("*")
                encoded = tail.endswith("*") or tail == ""
                number = tail.rstrip("*")
                # ASCII digits, and few: "²".isdigit() is true and int() refuses it,
                # and int() refuses more than 4,300 digits.
                order = int(number) if number.isascii() and number.isdigit() and len(number) <= 6 else 0
                pieces.setdefault(base, []).append((order, raw, encoded))
            else:
                params.setdefault(key, raw)
        for base, chunks in pieces.items():
            chunks.sort(key=lambda c: c[0])
            charset = None
            out = []
            for i, (_, raw, encoded) in enumerate(chunks):
                if encoded:
                    if i == 0 and raw.count("'") >= 2:
                        charset, _, raw = raw.split("'", 2)
                    raw = urllib.parse.unquote(raw, encoding=charset or "utf-8", errors="replace") \
                        if _valid_codec(charset) else urllib.parse.unquote(raw, errors="replace")
                out.append(raw)
            params[base] = "".join(out)
    return main.strip().lower(), params


def _valid_codec(name: str | None) -> bool:
    return not name or _text_codec(name)


# Codecs whose decoders take time growing with the square of the input (the
# standard library's punycode rebuilds its string per character: 480 KB of
# body declared charset=punycode took 27 s).  No mail is written in them;
# text declared so is read as an unknown charset.
_SLOW_CODECS = frozenset({"punycode", "idna"})


def _text_codec(name: str) -> bool:
    """Whether ``name`` is a charset to decode text with: a text encoding
    Python knows, and not a slow one.  Not base64, hex or zlib (bytes to
    bytes: "'base64' is not a text encoding"), nor a name with a NUL in it
    (``codecs.lookup`` raises ValueError): both came from a crafted
    ``charset*=`` parameter and stopped every IMAP training run at that
    message (a helper's review)."""
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return False
    return getattr(info, "_is_text_encoding", True) and info.name not in _SLOW_CODECS


def _transfer_decode(body: bytes, encoding: str | None) -> tuple[bytes, tuple[str, ...]]:
    if encoding == "base64":
        try:
            return binascii.a2b_base64(body), ()
        except binascii.Error:
            # Bad padding or a cut-off part: decode the whole quads we have.
            clean = _NOT_BASE64.sub(b"", body)
            clean = clean[: len(clean) // 4 * 4]
            try:
                return binascii.a2b_base64(clean), ("base64-invalid",)
            except binascii.Error:
                return body, ("base64-invalid",)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(body), ()
    return body, ()


_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


def _node_fields(fields: list[tuple[str, str]]) -> tuple[str | None, str | None, str | None]:
    """The first Content-Type, Content-Transfer-Encoding, Content-Disposition."""
    ctype = cte = disposition = None
    for name, value in fields:
        if not name.startswith("content-"):
            continue
        if name == "content-type":
            if ctype is None:
                ctype = value
        elif name == "content-transfer-encoding":
            if cte is None:
                cte = value.lower() or None
        elif name == "content-disposition":
            if disposition is None:
                disposition = value
    return ctype, cte, disposition


def _split_multipart(body: bytes, boundary: bytes) -> tuple[list[bytes], bool, bool]:
    """The parts between ``--boundary`` lines, found with ``bytes.find``.

    Returns (parts, start found, close found).  A delimiter counts only at the
    start of a line and followed by nothing but white space (or ``--``), so a
    longer boundary sharing our prefix is not taken for ours.  Without a
    closing delimiter (a cut-off message) the last part runs to the end.
    """
    delim = b"--" + boundary
    n = len(body)
    marks: list[tuple[int, int]] = []   # (start of delimiter line, start of part)
    closed = False
    pos = 0
    while len(marks) <= MAX_PARTS:
        i = body.find(delim, pos)
        if i < 0:
            break
        pos = i + len(delim)
        if i and body[i - 1] != 10:      # not at the start of a line
            continue
        end = body.find(b"\n", pos)
        if end < 0:
            end = n
        rest = body[pos:end]
        is_close = rest[:2] == b"--"
        if (rest[2:] if is_close else rest).strip():
            continue
        marks.append((i, end + 1))
        if is_close:
            closed = True
            break
        pos = end + 1
    if not marks:
        return [], False, False
    parts = []
    for (_, part_start), (next_line, _) in zip(marks, marks[1:]):
        # The line break before a delimiter belongs to the delimiter.
        stop = next_line - 1 if next_line > 0 else 0
        if stop > part_start and body[stop - 1] == 13:
            stop -= 1
        parts.append(body[part_start:max(stop, part_start)])
    if not closed:
        parts.append(body[marks[-1][1]:])
    return parts, True, closed


def _leaf(ctype: str, params: dict[str, str], cte: str | None, disposition_raw: str | None,
          body: bytes) -> Part:
    disposition = None
    filename = None
    if disposition_raw:
        disposition, dparams = _params(disposition_raw)
        disposition = disposition or None
        filename = dparams.get("filename")
    if filename is None:
        filename = params.get("name")
    if filename is not None:
        filename = decode_header_value(filename)
    charset = params.get("charset")
    charset = charset.strip().lower() or None if charset else None
    payload, notes = _transfer_decode(body, cte)
    leaf = Part(content_type=ctype, charset=charset, filename=filename, disposition=disposition,
                encoding=cte, size=len(payload), notes=notes)
    if ctype.startswith("text/") and disposition != "attachment" and filename is None:
        leaf.text, decode_notes = decode_bytes(payload, charset)
        leaf.notes = notes + decode_notes
    return leaf


def has_header_fields(raw: bytes) -> bool:
    """Whether ``raw`` starts with a header field (after an mbox "From "
    line), as every mail message does: False for a text or binary file
    given by mistake (it would still be learned, as its body alone)."""
    start = raw.find(b"\n") + 1 if raw.startswith(b"From ") else 0
    return _FIRST_FIELD_RE.match(raw, start) is not None


def parse_message(raw: RawMessage, scan_limit: int = 512_000) -> ParsedMessage:
    """Parse raw message bytes (``_parse``); any failure of the parser itself
    on hostile input is this message's ``MessageError``, not the caller's
    crash: one crafted message must not stop a training run, a filter or a
    drain for every message after it (a helper's review found two).
    """
    try:
        return _parse(raw, scan_limit)
    except MessageError:
        raise
    except READING_FAILURES as exc:
        raise MessageError(f"cannot parse this message ({type(exc).__name__}: {str(exc)[:200]})") from exc


def _parse(raw: RawMessage, scan_limit: int) -> ParsedMessage:
    """Parse raw message bytes.

    A small iterative MIME walker of our own, not the ``email`` package:
    compat32's feed parser cost ~270 us a message on the SpamAssassin corpus
    and recursed once per nesting level (a 1,000-deep message blew the
    stack).  Headers end at the first empty line and are unfolded; multipart
    bodies are split on their boundary with ``bytes.find``; base64 and
    quoted-printable are decoded by ``binascii``.  Defects keep the names
    the ``email`` package gives them (``CloseBoundaryNotFoundDefect``, ...),
    since they become ``control:`` tokens.

    Parameters
    ----------
    raw : bytes, bytearray, memoryview or str
        The message as it came off the wire or out of a mailbox (a ``str``
        is taken as its UTF-8 encoding, ``message_bytes``; a message in
        another charset must come as bytes).
    scan_limit : int, default=512000
        Bytes read at most; the rest is ignored and ``truncated`` is set.

    Raises
    ------
    MessageError
        The input is empty (or whitespace only), or not a message
        (``message_bytes``).
    """
    raw = message_bytes(raw)
    truncated = len(raw) > scan_limit
    data = raw[:scan_limit]
    if data.startswith(b"From "):       # an mbox envelope line, not a header
        newline = data.find(b"\n")
        data = data[newline + 1:] if newline >= 0 else b""
    defects: list[str] = []
    fields, body = _split_head(data, defects)
    headers = [(name, decode_header_value(value) if "=?" in value else value) for name, value in fields]
    parts: list[Part] = []
    structure: list[str] = []
    stack: list[tuple[list[tuple[str, str]], bytes, int, str]] = [(fields, body, 0, "text/plain")]
    while stack:
        fields, body, depth, default = stack.pop()
        if depth > MAX_MIME_DEPTH:
            defects.append("mime-too-deep")
            continue
        if len(parts) >= MAX_PARTS:
            defects.append("mime-too-many-parts")
            break
        ctype_raw, cte, disposition = _node_fields(fields)
        if ctype_raw:
            ctype, params = _params(ctype_raw)
            major, slash, minor = ctype.partition("/")
            if not (slash and major and minor) or "/" in minor:
                ctype = "text/plain"       # compat32's answer to an invalid type
        else:
            ctype, params = default, {}
        structure.append(f"{depth}:{ctype}")
        if ctype.startswith("multipart/"):
            if cte not in (None, "7bit", "8bit", "binary"):
                defects.append("InvalidMultipartContentTransferEncodingDefect")
            boundary = params.get("boundary")
            if not boundary:
                defects.append("NoBoundaryInMultipartDefect")
            else:
                children, started, closed = _split_multipart(body, boundary.encode("utf-8", "replace"))
                if not started:
                    defects.append("StartBoundaryNotFoundDefect")
                else:
                    if not closed:
                        defects.append("CloseBoundaryNotFoundDefect")
                    if not children:
                        defects.append("MultipartInvariantViolationDefect")
                    child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
                    for child in reversed(children):
                        child_fields, child_body = _split_head(child, defects)
                        stack.append((child_fields, child_body, depth + 1, child_default))
                    continue
            # No usable boundary: read the body as plain text, so its words
            # still count (the defect token says what happened).
            parts.append(_leaf("text/plain", params, None, None, body))
            continue
        if ctype == "message/rfc822" and cte in (None, "7bit", "8bit", "binary"):
            inner_fields, inner_body = _split_head(body, defects)
            stack.append((inner_fields, inner_body, depth + 1, "text/plain"))
            continue
        parts.append(_leaf(ctype, params, cte, disposition, body))
    if truncated:
        defects.append("truncated")
    return ParsedMessage(headers=headers, parts=parts, structure=structure,
                         defects=defects, size=len(raw), truncated=truncated)
