"""Reading a request body when the client may be hostile: one bounded path for every route.

Every handler that takes a body (ingest and the admin API) reads it here, so each of
these holds everywhere:

- **A deadline.** The whole body must arrive within ``timeout`` seconds of the first read
  (408, connection closed): a client trickling a byte a second holds its slot for that
  long, not for ever.
- **A size limit, checked on the bytes as they arrive**: ``Content-Length`` over it is
  refused before a byte is read; a chunked body at the first byte over it.
- **Decompression here, not in aiohttp** (the server runs with ``auto_decompress=False``,
  see ``app.web.server``): ``Content-Encoding: gzip`` / ``deflate`` is inflated at most
  ``SLICE`` bytes at a time, yielding to the event loop after each slice, and refused
  (413) at the first inflated byte over the limit. A 10 GB bomb costs the loop one slice
  per turn and stops at the limit. Other encodings: 415.
- **Charsets**: JSON is UTF-8 (RFC 8259); another charset named in ``Content-Type`` is
  decoded when Python knows it as a text encoding, and refused with 400 otherwise.
- **JSON** is parsed by orjson (no recursion in Python; it refuses nesting deeper than
  1,024 levels); ``max_depth`` bounds it further for bodies that code walks recursively
  afterwards (config edits, replays), so no RecursionError can become a 500.
- **A client that goes away mid-body** is a ``BodyError`` with ``aborted`` set, never an
  exception with a traceback; the caller logs one line and counts it.
"""

from __future__ import annotations

import asyncio
import codecs
import zlib
from typing import Any

import orjson
from aiohttp import web

SLICE = 64 * 1024
"""Inflated bytes produced between two yields to the event loop (well under 1 ms)."""

UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")


class BodyError(Exception):
    """A body that cannot be used; ``status``/``code``/``message`` are the answer.

    ``aborted`` names why the connection is broken (``disconnected``, ``body_timeout``,
    ``malformed``) when it is: the caller counts those and closes the connection."""

    def __init__(self, status: int, code: str, message: str, aborted: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.aborted = aborted


def too_large(limit: int) -> BodyError:
    return BodyError(413, "too_large", f"request body over {_size(limit)}")


def _size(n: int) -> str:
    return (
        f"{n // (1024 * 1024)} MB"
        if n >= 1024 * 1024 and n % (1024 * 1024) == 0
        else (f"{n // 1024} KB")
    )


def encoding_of(request: web.BaseRequest) -> str:
    """The body's Content-Encoding, or ``BodyError`` 415 when it is not one we inflate."""
    value = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
    if value not in ENCODINGS:
        raise BodyError(
            415,
            "unsupported_encoding",
            f"Content-Encoding {value[:40]!r} is not supported (use gzip, deflate or none)",
        )
    return value


def _raw_cap(limit: int, encoding: str) -> int:
    """Most compressed bytes a body inflating to ``limit`` can take: deflate's stored
    blocks add 5 bytes per 64 KB, gzip 18 bytes of header and trailer."""
    return limit if encoding == "identity" else limit + limit // 100 + 1024


class _Inflater:
    """zlib in bounded slices: never more than ``limit + 1`` inflated bytes in all."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding
        self.limit = limit
        self.out = bytearray()
        self._z: Any = None

    def _start(self, first: bytes) -> None:
        if self.encoding in ("gzip", "x-gzip"):
            wbits = 16 + zlib.MAX_WBITS
        elif len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0:
            wbits = zlib.MAX_WBITS  # zlib-wrapped, as RFC 9110 says "deflate" is
        else:
            wbits = -zlib.MAX_WBITS  # raw deflate, as some clients send it
        self._z = zlib.decompressobj(wbits)

    async def feed(self, data: bytes) -> None:
        while data:
            if self._z is None:
                self._start(data)
            elif self._z.eof:
                # Another gzip member (RFC 1952 allows several); anything else is junk.
                if self.encoding == "deflate":
                    raise BodyError(400, "bad_body", "data after the end of the deflate stream")
                self._start(data)
            room = self.limit + 1 - len(self.out)
            try:
                piece = self._z.decompress(data, min(SLICE, room))
            except zlib.error:
                raise BodyError(
                    400, "bad_body", f"the body is not valid {self.encoding} data"
                ) from None
            self.out += piece
            if len(self.out) > self.limit:
                raise too_large(self.limit)
            data = self._z.unconsumed_tail or (self._z.unused_data if self._z.eof else b"")
            await asyncio.sleep(0)  # let every other request run between two slices

    def finish(self) -> bytes:
        if self._z is None:
            return b""  # an empty body: nothing was compressed
        if not self._z.eof:
            raise BodyError(400, "bad_body", f"the {self.encoding} body is cut short")
        return bytes(self.out)


async def read_body(request: web.BaseRequest, limit: int, timeout: float) -> bytes:
    """The body, inflated, at most ``limit`` bytes, arrived within ``timeout`` seconds."""
    encoding = encoding_of(request)
    cap = _raw_cap(limit, encoding)
    if request.content_length is not None and request.content_length > cap:
        raise too_large(limit)
    inflater = None if encoding == "identity" else _Inflater(encoding, limit)
    raw = bytearray()
    received = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await request.content.readany()
                if not chunk:
                    break
                received += len(chunk)
                if received > cap:
                    raise too_large(limit)
                if inflater is None:
                    raw += chunk
                else:
                    await inflater.feed(chunk)
    except TimeoutError:
        raise BodyError(
            408,
            "body_timeout",
            f"the body did not arrive within {timeout:g} s",
            aborted="body_timeout",
        ) from None
    except web.RequestPayloadError:
        raise BodyError(
            400, "bad_body", "cannot read the body (bad transfer encoding)", aborted="malformed"
        ) from None
    except ConnectionError:
        raise BodyError(
            400, "disconnected", "the client closed the connection", aborted="disconnected"
        ) from None
    if inflater is not None:
        return inflater.finish()
    return bytes(raw)


def decode_json(body: bytes, charset: str | None, max_depth: int | None = None) -> Any:
    """``body`` parsed as JSON in ``charset`` (None: UTF-8); ``BodyError`` 400 when not."""
    name = (charset or "utf-8").strip().lower()
    data: bytes | str = body
    if name not in UTF8_NAMES:
        try:
            info = codecs.lookup(name)
        except LookupError:
            info = None
        if info is None or not getattr(info, "_is_text_encoding", True):
            raise BodyError(
                400, "bad_charset", f"unknown charset {name[:40]!r} in Content-Type (send UTF-8)"
            )
        try:
            data = body.decode(info.name)
        except (UnicodeDecodeError, ValueError):
            raise BodyError(400, "bad_charset", f"the body is not valid {info.name}") from None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BodyError(400, "bad_json", f"malformed JSON: {exc}") from None
    if max_depth is not None and depth_over(value, max_depth):
        raise BodyError(400, "bad_json", f"JSON nested deeper than {max_depth} levels")
    return value


def depth_over(value: Any, max_depth: int) -> bool:
    """Whether ``value`` nests deeper than ``max_depth`` (iterative: any depth is fine)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


async def read_json(
    request: web.Request, limit: int, timeout: float, max_depth: int | None = None
) -> Any:
    """``read_body`` then ``decode_json`` with the request's charset."""
    body = await read_body(request, limit, timeout)
    try:
        charset = request.charset
    except Exception:  # a Content-Type aiohttp cannot parse: no charset named
        charset = None
    return decode_json(body, charset, max_depth)
