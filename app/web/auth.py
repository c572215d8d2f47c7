"""Request authentication: Segment's API keys, the admin token, Segment's X-Signature."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from aiohttp import web


def basic_username(request: web.Request) -> str | None:
    """The username of an HTTP Basic header (Segment sends ``base64(key + ":")``)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, _, _password = decoded.partition(":")
    return user or None


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def admin_ok(request: web.Request, admin_token: str) -> bool:
    token = bearer_token(request)
    return token is not None and hmac.compare_digest(token.encode(), admin_token.encode())


def signature_ok(body: bytes, secret: str, signature: str | None) -> bool:
    """Segment's ``X-Signature``: hex HMAC-SHA1 of the raw body with the shared secret."""
    if not signature:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())
