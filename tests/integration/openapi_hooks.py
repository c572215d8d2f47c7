"""Schemathesis hooks for test_openapi_fuzz.py (loaded by ``st run`` through the config).

JSON Schema cannot say "userId differs from previousId"; an alias where they are equal is
refused (400: it would link nothing), so generated aliases get distinct ids.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    if (
        isinstance(body, dict)
        and body.get("type", "alias") == "alias"
        and "previousId" in body
        and body.get("previousId") == body.get("userId")
        and isinstance(body["previousId"], str)
    ):
        body = {**body, "previousId": body["previousId"] + "-before"}
    return body
