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
import re
from collections import deque

# A JSON string (escapes included) or a bracket; everything else between them is skipped.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_COLON = re.compile(rb"[ \t\r\n]*:[ \t\r\n]*")
_SPACE = re.compile(rb"[ \t\r\n]*")
_OPEN = frozenset(b"[{")
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


def find_model(body: bytes | bytearray, max_depth: int) -> tuple[object, tuple[int, int]]:
    """The top-level ``model`` value and the byte span of its JSON text.

    Raises ``BodyError`` (400) when the body is not a JSON object, nests deeper than ``max_depth``,
    has no ``model``, or has it twice (the switcher and the engine could read different ones).
    """
    start = _SPACE.match(body).end()
    if start >= len(body) or body[start] != ord("{"):
        raise BodyError(400, "the request body must be a JSON object", "invalid_json")
    depth = 0
    found: tuple[object, tuple[int, int]] | None = None
    end = None
    for token in _TOKEN.finditer(body, start):
        first = body[token.start()]
        if first == _QUOTE:
            if depth == 1 and token.end() - token.start() <= _LONGEST_MODEL_KEY:
                colon = _COLON.match(body, token.end())
                if colon is not None and _key(body, token.start(), token.end()) == "model":
                    if found is not None:
                        raise BodyError(400, "the request body has `model` twice", "invalid_json", "model")
                    found = _value(body, colon.end())
        elif first in _OPEN:
            depth += 1
            if depth > max_depth:
                raise BodyError(400, f"the request body nests deeper than {max_depth} levels", "invalid_json")
        else:
            depth -= 1
            if depth == 0:
                end = token.end()
                break
    if end is None or _SPACE.match(body, end).end() != len(body):
        raise BodyError(400, "the request body is not valid JSON", "invalid_json")
    if found is None:
        raise BodyError(400, "you must provide a `model` parameter", "missing_model", "model")
    return found


def _key(body: bytes | bytearray, start: int, end: int) -> str | None:
    raw = bytes(body[start:end])
    if b"\\" not in raw:
        return raw[1:-1].decode("utf-8", "replace")
    try:  # "mod\u0065l" is "model" to the engine, so it must be to us
        return json.loads(raw)
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
