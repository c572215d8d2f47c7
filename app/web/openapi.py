"""The OpenAPI 3.1 document of every public endpoint, at ``GET /api/openapi.json``.

Written by hand (the handlers are plain aiohttp); a test checks that every route the
worker serves is described here, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

ACCOUNT = {"name": "account", "in": "path", "required": True, "schema": {"type": "string"}}
ADMIN: list[dict[str, list[str]]] = [{"admin": []}]
SEGMENT: list[dict[str, list[str]]] = [{"segmentBasic": []}]
PERSON_QUERY = [
    {"name": n, "in": "query", "schema": {"type": "string"}, "description": d}
    for n, d in (
        ("userId", "the person's userId"),
        ("anonymousId", "an anonymousId of the person"),
        ("primaryKey", "the person's primary key value (the Emarsys contact key)"),
    )
]
ERROR = {"type": "object", "properties": {"message": {"type": "string"}}}
PROBLEMS = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def _nullable(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **more}


RETRYING_CALL = {
    "type": "object",
    "description": "an Emarsys call being retried now (5xx, 429, timeouts)",
    "properties": {
        "call": {"type": "string", "description": "method and path, e.g. `PUT /contact/`"},
        "attempt": {"type": "integer", "description": "attempts made so far"},
        "lastStatus": _nullable("integer", description="HTTP status of the last attempt"),
        "lastReplyCode": _nullable("integer", description="Emarsys replyCode, if any"),
        "reason": {"type": "string"},
        "since": {"type": "string", "format": "date-time"},
        "nextAttemptAt": _nullable("string", format="date-time"),
        "secondsToNextAttempt": _nullable("number"),
        "givesUpAt": {"type": "string", "format": "date-time"},
        "secondsUntilGivenUp": {"type": "number"},
        "worker": {"type": "string", "description": "the worker making the call"},
    },
}
LANE = {
    "type": "object",
    "description": "one worker's delivery lane of the account",
    "properties": {
        "worker": {"type": "string"},
        "state": {"enum": ["idle", "delivering", "parked"]},
        "backlog": {"type": "integer", "description": "effects not delivered yet"},
        "inMemory": {"type": "integer"},
        "parked": {"type": "integer", "description": "effects waiting in the parking topic"},
        "oldestAgeSeconds": _nullable("number"),
        "parkedPartitions": {"type": "array", "items": {"type": "integer"}},
        "directPartitions": {"type": "array", "items": {"type": "integer"}},
        "blockedSince": _nullable("string", format="date-time"),
    },
}
DELIVERIES = {
    "description": "OK",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "account": {"type": "string"},
                    "person": {"type": "string", "description": "with a person query only"},
                    "deliveries": {"type": "array", "items": {"type": "object"}},
                    "retrying": {"type": "array", "items": RETRYING_CALL},
                    "backlog": {
                        "type": "object",
                        "description": "every worker's lane summed; `state` is the worst",
                        "properties": {
                            "state": {"enum": ["idle", "delivering", "parked"]},
                            "effects": {"type": "integer"},
                            "inMemory": {"type": "integer"},
                            "parked": {"type": "integer"},
                            "oldestAgeSeconds": _nullable("number"),
                        },
                    },
                    "workers": {"type": "array", "items": LANE},
                },
            }
        }
    },
}


def _json(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": schema or {}}}}


def _ingest(summary: str, batch: bool) -> dict[str, Any]:
    body_schema: dict[str, Any] = (
        {"type": "object", "required": ["batch"], "properties": {"batch": {"type": "array"}}}
        if batch
        else {"type": "object", "description": "one Segment message"}
    )
    return {
        "post": {
            "summary": summary,
            "tags": ["ingest"],
            "security": SEGMENT,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_schema}},
            },
            "responses": {
                "200": _json(
                    "every accepted message is durably in the input topic; invalid "
                    "messages of a batch are listed in `rejected`"
                ),
                "400": _json("malformed JSON or an invalid message", ERROR),
                "401": _json("unknown API key or wrong X-Signature", ERROR),
                "413": _json(
                    "over Segment's limits (32 KB a message, 500 KB / 2500 a batch)", ERROR
                ),
                "429": _json("too many requests in flight; see Retry-After", ERROR),
                "503": _json("the broker did not acknowledge; see Retry-After", ERROR),
            },
        }
    }


def _admin_get(summary: str, tag: str, params=(), extra: dict[str, Any] | None = None):
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "security": ADMIN,
        "parameters": [ACCOUNT, *params],
        "responses": {
            "200": _json("OK"),
            "401": _json("admin token missing or wrong", ERROR),
            "404": _json("no such account (or person)", ERROR),
        },
    }
    op.update(extra or {})
    return op


def _catalog(kind: str, what: str, call: str) -> dict[str, Any]:
    item: dict[str, Any] = {"id": {"type": "integer"}, "name": {"type": "string"}}
    if kind == "fields":
        item["type"] = {"type": "string", "description": "Emarsys's application_type"}
    answer = {
        "type": "object",
        "properties": {
            "account": {"type": "string"},
            kind: {"type": "array", "items": {"type": "object", "properties": item}},
            "fetched_at": {"type": "string", "format": "date-time"},
            "cached": {"type": "boolean"},
        },
    }
    return _admin_get(
        f"The account's Emarsys {what} by id and name (from `{call}`), for the console's "
        "pickers; kept 5 minutes per worker (`?refresh=1` fetches again)",
        "catalog",
        [{"name": "refresh", "in": "query", "schema": {"type": "string"}}],
        extra={
            "responses": {
                "200": _json("OK", answer),
                "401": _json("admin token missing or wrong", ERROR),
                "404": _json("no such account", ERROR),
                "502": _json("Emarsys cannot be reached, or refused the call", ERROR),
                "504": _json("Emarsys did not answer in time", ERROR),
            }
        },
    )


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        f"/v1/{t}": _ingest(f"Segment {t} (Tracking API shape)", False)
        for t in ("identify", "track", "page", "screen", "group", "alias")
    }
    paths["/v1/batch"] = _ingest('Segment batch: {"batch": [...]}', True)
    paths["/v1/import"] = _ingest("Alias of /v1/batch", True)
    paths["/segment"] = _ingest("One message or a batch", False)
    q_range = [
        {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}},
    ]
    edit_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"data_maps": {"type": "array"}, "rules": {"type": "array"}},
                }
            }
        },
    }
    paths.update(
        {
            "/api/accounts": {
                "get": {
                    "summary": "The accounts of this deployment",
                    "tags": ["config"],
                    "security": ADMIN,
                    "responses": {"200": _json("OK"), "401": _json("admin token", ERROR)},
                }
            },
            "/api/accounts/{account}/config": {
                "get": _admin_get(
                    "The live data maps and rules (`?format=yaml` for YAML)", "config"
                ),
                "put": _admin_get(
                    "Replace data maps and/or rules; validated like check-config; applied by "
                    "every worker within seconds",
                    "config",
                    extra={
                        "requestBody": edit_body,
                        "responses": {
                            "200": _json("stored and applied"),
                            "400": _json("invalid: every problem with its location", PROBLEMS),
                            "401": _json("admin token", ERROR),
                            "404": _json("no such account", ERROR),
                        },
                    },
                ),
            },
            "/api/accounts/{account}/config/validate": {
                "post": _admin_get(
                    "Validate an edit without storing it",
                    "config",
                    extra={"requestBody": edit_body},
                )
            },
            "/api/accounts/{account}/rules": {
                "get": _admin_get(
                    "Each rule with its funnel: instances at each sequence now, and "
                    "transitions per hour over the period (default: the last 24 h)",
                    "rules",
                    q_range,
                )
            },
            "/api/accounts/{account}/replay": {
                "post": _admin_get(
                    "Run a rule set (saved or not) over the input topic's history; nothing "
                    "is sent. Answers what `replay --format jsonl` would print",
                    "rules",
                    extra={"requestBody": edit_body},
                )
            },
            "/api/accounts/{account}/users": {
                "get": _admin_get(
                    "A person: identity, data map values, Emarsys fields, rule instances, "
                    "recent events and deliveries (answered by the owning worker)",
                    "inspection",
                    PERSON_QUERY,
                )
            },
            "/api/accounts/{account}/deliveries": {
                "get": _admin_get(
                    "Recent Emarsys calls and outcomes: a person's (with a person query) or "
                    "the account's (`failed=1` for failures only), then with the calls being "
                    "retried right now and what waits to be delivered, from every worker",
                    "inspection",
                    [
                        *PERSON_QUERY,
                        {"name": "failed", "in": "query", "schema": {"type": "string"}},
                    ],
                    extra={"responses": {**_admin_get("", "")["responses"], "200": DELIVERIES}},
                )
            },
            "/api/accounts/{account}/dead-letters": {
                "get": _admin_get(
                    "Recent dead letters of the account with their reasons",
                    "inspection",
                    [{"name": "limit", "in": "query", "schema": {"type": "integer"}}],
                )
            },
            "/api/accounts/{account}/dead-letters/retry": {
                "post": _admin_get(
                    "Put dead letters back where they failed",
                    "inspection",
                    extra={
                        "requestBody": {
                            "required": True,
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "ids": {"type": "array", "items": {"type": "string"}}
                                        },
                                    }
                                }
                            },
                        }
                    },
                )
            },
            **{
                f"/api/accounts/{{account}}/emarsys/{kind}": {"get": _catalog(kind, what, call)}
                for kind, what, call in (
                    ("fields", "contact fields", "GET /field/translate/en"),
                    ("events", "external events", "GET /event"),
                    ("lists", "contact lists", "GET /contactlist"),
                )
            },
            "/health": {
                "get": {
                    "summary": "Broker reachable, assigned partitions",
                    "tags": ["operations"],
                    "responses": {"200": _json("healthy"), "503": _json("broker unreachable")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus text format",
                    "tags": ["operations"],
                    "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}},
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "tags": ["operations"],
                    "responses": {"200": _json("OpenAPI 3.1")},
                }
            },
            "/": {
                "get": {
                    "summary": "The web console",
                    "tags": ["console"],
                    "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
                }
            },
        }
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "emarsys-destination",
            "version": "0.1.0",
            "description": "Segment destination for Emarsys: ingest, inspection, live config.",
        },
        "components": {
            "securitySchemes": {
                "segmentBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "The account's API key as username, empty password "
                    "(or `writeKey` in the body)",
                },
                "admin": {"type": "http", "scheme": "bearer", "description": "EMD_ADMIN_TOKEN"},
            }
        },
        "paths": paths,
    }


INTERNAL = ("/_link", "/_pk", "/_person")


async def handler(request: web.Request) -> web.Response:
    return web.json_response(document())


def routes() -> list[web.RouteDef]:
    return [web.get("/api/openapi.json", handler)]
