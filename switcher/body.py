"""Request bodies: read them within a byte budget, and find the top-level ``model`` without parsing.

The switcher forwards the client's bytes unchanged; it only needs the ``model`` field. Parsing a
body with ``json.loads`` builds an object tree many times the body's size (a 30 MB body of ``{}``
items is gigabytes of dicts), so the field is found by a scan that builds nothing: strings are
skipped by a regular expression, brackets only move a depth counter (which also bounds nesting,
so no deep body can recurse anything). The engine validates the rest of the JSON itself.
"""

from __future__ import annotations

import asyncio
import json
import operator
import re
from collections import deque
from itertools import accumulate, count

# A JSON string (escapes included), or a stretch of anything else up to the next string.
_PIECE = re.compile(rb'("[^"\\]*(?:\\.[^"\\]*)*")|[^"\[\]{}]+|([^"]+)')
_WHITESPACE = b" \t\r\n"
# Bracket steps for the depth count: translate() maps an opening bracket to 2 and a closing one to
# 0 and drops every other byte, so depth after k brackets is start + (sum of steps) - k.
_STEP = bytes.maketrans(b"{[}]", b"\x02\x02\x00\x00")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"{[}]")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_COLON = re.compile(rb"[ \t\r\n]*:[ \t\r\n]*")
_SPACE = re.compile(rb"[ \t\r\n]*")
_QUOTE = ord('"')
# The longest spelling of a key that can decode to "model" (every letter as \uXXXX).
_LONGEST_MODEL_KEY = 2 + 6 * len("model")


class BodyError(Exception):
    """A request body the switcher refuses; answered in the OpenAI error shape."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def find_model(
    body: bytes | bytearray, max_depth: int, max_elements: int = 100_000
) -> tuple[object, tuple[int, int]]:
    """The top-level ``model`` value and the byte span of its JSON text.

    Raises ``BodyError`` (400) when the body is not a JSON object, nests deeper than ``max_depth``,
    has more than ``max_elements`` strings, objects and arrays, has no ``model``, or has it twice
    (the switcher and the engine could read different ones).
    """
    start = _SPACE.match(body).end()  # type: ignore[union-attr]  # matches the empty string
    if start >= len(body) or body[start] != ord("{"):
        raise BodyError(400, "the request body must be a JSON object", "invalid_json")
    # Counted at C speed first, so the scan below (Python per element) has a bounded cost.
    skeleton, strings = _STRING.subn(b"", body)
    elements = strings + skeleton.count(b"{") + skeleton.count(b"[")
    del skeleton
    if elements > max_elements:
        raise BodyError(
            400,
            f"the request body has more than {max_elements} JSON strings, objects and arrays",
            "invalid_json",
        )
    depth = 0
    ended = False
    found: tuple[object, tuple[int, int]] | None = None
    for token in _PIECE.finditer(body, start):
        kind = token.lastindex
        if kind is None:  # no string and no bracket: commas, colons, numbers, literals, spaces
            if ended and token.group().strip(_WHITESPACE):
                raise _invalid()
            continue
        if kind == 1:
            if ended:
                raise _invalid()
            if depth == 1 and token.end() - token.start() <= _LONGEST_MODEL_KEY:
                colon = _COLON.match(body, token.end())
                if colon is not None and _key(body, token.start(), token.end()) == "model":
                    if found is not None:
                        raise BodyError(400, "the request body has `model` twice", "invalid_json", "model")
                    found = _value(body, colon.end())
            continue
        piece = token.group()
        if ended:
            if piece.strip(_WHITESPACE):
                raise _invalid()
            continue
        depth, ended = _walk(piece, depth, max_depth)
    if not ended:
        raise _invalid()
    if found is None:
        raise BodyError(400, "you must provide a `model` parameter", "missing_model", "model")
    return found


def _walk(piece: bytes, depth: int, max_depth: int) -> tuple[int, bool]:
    """Depth after a stretch of JSON between two strings; True if the top-level object ends in it.

    Counted with C-level primitives (no Python loop per bracket), so a body of millions of
    brackets costs about what reading it does.
    """
    opens = piece.count(b"{") + piece.count(b"[")
    closes = piece.count(b"}") + piece.count(b"]")
    if depth + opens <= max_depth and closes < depth:
        return depth + opens - closes, False  # cannot get too deep, cannot end here
    steps = piece.translate(_STEP, _NOT_BRACKET)  # an opening bracket 2, a closing one 0
    if max(map(operator.sub, accumulate(steps), count(1))) + depth > max_depth:
        raise BodyError(400, f"the request body nests deeper than {max_depth} levels", "invalid_json")
    lowest = min(map(operator.sub, accumulate(steps), count(1))) + depth
    if lowest < 0:
        raise _invalid()
    if lowest > 0:
        return depth + opens - closes, False
    # The object ends here: at the last bracket of this stretch, with only whitespace after it.
    last = operator.indexOf(map(operator.sub, accumulate(steps), count(1)), -depth)
    after = max(piece.rfind(b"}"), piece.rfind(b"]")) + 1
    if last != len(steps) - 1 or piece[after:].strip(_WHITESPACE):
        raise _invalid()
    return 0, True


def _invalid() -> BodyError:
    return BodyError(400, "the request body is not valid JSON", "invalid_json")


def _key(body: bytes | bytearray, start: int, end: int) -> str | None:
    raw = bytes(body[start:end])
    if b"\\" not in raw:
        return raw[1:-1].decode("utf-8", "replace")
    try:  # "mod\u0065l" is "model" to the engine, so it must be to us
        key = json.loads(raw)
        return key if isinstance(key, str) else None
    except ValueError:
        return None


def _value(body: bytes | bytearray, at: int) -> tuple[object, tuple[int, int]]:
    string = _STRING.match(body, at)
    if string is None:
        raise BodyError(400, "`model` must be a string", "invalid_model", "model")
    try:
        return json.loads(bytes(body[string.start() : string.end()])), string.span()
    except ValueError:
        raise BodyError(400, "`model` is not a valid JSON string", "invalid_model", "model") from None


def replace_span(body: bytearray, span: tuple[int, int], value: str) -> None:
    """Rewrite one JSON value in place (an alias to the served name) without re-serialising."""
    body[span[0] : span[1]] = json.dumps(value).encode()


_BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,70})"|([^";\s]{1,70}))', re.IGNORECASE)
_FORM_MODEL = re.compile(
    rb'^content-disposition:[^\r\n]*;\s*name="?model"?\s*(?:;|$)', re.IGNORECASE | re.MULTILINE
)


def find_form_model(body: bytes | bytearray, content_type: str) -> tuple[str, tuple[int, int]]:
    """The ``model`` field of a ``multipart/form-data`` body (the audio routes) and its byte span.

    Each part is found with ``bytes.find`` (no copy of the audio); raises ``BodyError`` (400) without a
    boundary, without a ``model`` field, with two of them, or with one that is not UTF-8 text.
    """
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise BodyError(400, "a multipart body needs a boundary in its Content-Type", "invalid_multipart")
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("latin-1")
    found: tuple[int, int] | None = None
    at = body.find(delimiter)
    while at != -1:
        headers_start = at + len(delimiter)
        if body[headers_start : headers_start + 2] == b"--":
            break  # the closing delimiter
        headers_end = body.find(b"\r\n\r\n", headers_start)
        if headers_end == -1:
            break
        value_start = headers_end + 4
        end = body.find(b"\r\n" + delimiter, value_start)
        if end == -1:
            raise BodyError(400, "the multipart body is not terminated", "invalid_multipart")
        if _FORM_MODEL.search(bytes(body[headers_start:headers_end])):
            if found is not None:
                raise BodyError(400, "the form has more than one `model` field", "duplicate_model", "model")
            found = (value_start, end)
        at = end + 2
    if found is None:
        raise BodyError(400, "the form has no `model` field: name the model to use", "missing_model", "model")
    try:
        return bytes(body[found[0] : found[1]]).decode().strip(), found
    except UnicodeDecodeError:
        raise BodyError(400, "`model` is not UTF-8 text", "invalid_model", "model") from None


def replace_form_value(body: bytearray, span: tuple[int, int], value: str) -> None:
    """Rewrite one form field's value in place (an alias to the served name)."""
    body[span[0] : span[1]] = value.encode()


class ByteBudget:
    """Bytes of request bodies the switcher holds at once, across all requests (FIFO waiters)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, n: int) -> None:
        if not self._waiters and self.used + n <= self.capacity:
            self.used += n
            return
        fut = asyncio.get_running_loop().create_future()
        entry = (n, fut)
        self._waiters.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(n)  # granted in the same instant it was abandoned
            else:
                self._waiters.remove(entry)
                self._grant()
            raise

    def release(self, n: int) -> None:
        self.used -= n
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            n, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if self.used + n > self.capacity:
                return
            self._waiters.popleft()
            self.used += n
            fut.set_result(None)
