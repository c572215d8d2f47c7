"""Error answers: ``{"code": ..., "message": ...}`` on every route.

Segment's libraries log an error's ``code`` and ``message`` (analytics-python's
``APIError``, for one, shows "Unknown error" without a code), so every 4xx/5xx body this
app writes carries both: ``message`` for a person, ``code`` for a program. Handlers that
know better name the code (``bad_json``, ``invalid_message``, ``bad_signature``...); the
middleware gives every other JSON error body the code of its status, so no route can
answer an error without one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "body_timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_encoding",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}


def code_for(status: int) -> str:
    return CODES.get(status, "client_error" if status < 500 else "server_error")


def error(
    status: int,
    message: str,
    code: str | None = None,
    *,
    retry_after: int | None = None,
    **extra: Any,
) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    body = {"code": code or code_for(status), "message": message, **extra}
    return web.json_response(body, status=status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def ensure_code(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Adds ``code`` to a JSON error body that has a ``message`` but no ``code``.

    aiohttp's own HTTP errors (404 for an unknown path, 405) are plain text: they are
    answered as JSON too, so a client never has to guess the body's format."""
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.content_type == "application/json" and exc.text:
            resp = web.Response(
                body=exc.text.encode(), status=exc.status, content_type="application/json"
            )
        else:
            message = (
                exc.reason if exc.text in (None, "", f"{exc.status}: {exc.reason}") else exc.text
            )
            resp = error(exc.status, message or exc.reason)
            for name in ("Allow", "Retry-After"):
                if name in exc.headers:
                    resp.headers[name] = exc.headers[name]
    if resp.status < 400 or not isinstance(resp, web.Response):
        return resp
    if resp.content_type != "application/json" or not isinstance(resp.body, bytes):
        return resp
    try:
        body = orjson.loads(resp.body)
    except orjson.JSONDecodeError:
        return resp
    if isinstance(body, dict) and "message" in body and "code" not in body:
        body = {"code": code_for(resp.status), **body}
        resp.body = orjson.dumps(body)
    return resp
