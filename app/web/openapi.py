"""The OpenAPI 3.1 document of every public endpoint, at ``GET /api/openapi.json``.

Written by hand (the handlers are plain aiohttp). Two tests keep it true: every route
the worker serves is described here (tests/integration/test_security.py), and
schemathesis runs against a real worker from this document (test_openapi_fuzz.py): no
5xx, no status the document does not list, every body as described.

What "exactly what it accepts" means here:

- Every status a route can answer is listed, with the error body (``code`` and
  ``message``) each 4xx/5xx carries.
- Ingest bodies are described per message type with the checks the server makes
  (which ids are required, that an id is not a placeholder such as ``"null"``, types of
  the known fields); a batch's messages are checked one by one inside a 200
  (``rejected``), so the document does not constrain them.
- What JSON Schema cannot say is in the descriptions: a config edit's cross-checks (a
  filter naming an unknown data map...) answer 400 with every problem located; the
  person lookups need one of their three query parameters.
- Timestamps are described by the pattern a client should send; the server also takes
  the other ISO 8601 forms listed in the README (a space for ``T``, no offset, date only).
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from app.config.model import DataMapConfig, RuleConfig
from app.identity import _JUNK, MAX_ID_LENGTH
from app.segment.model import BATCH_MAX_MESSAGES, MESSAGE_ID_MAX

ACCOUNT = {
    "name": "account",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "an account id of the config (404 for any other)",
}
ADMIN: list[dict[str, list[str]]] = [{"admin": []}]
SEGMENT: list[dict[str, list[str]]] = [{"segmentBasic": []}, {}]
"""HTTP Basic with the key; or no header and ``writeKey`` in the body."""

REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _ci(word: str) -> str:
    """``null`` as ``[nN][uU][lL][lL]``: JSON Schema patterns have no case flag."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else _escape(c) for c in word)


def _escape(c: str) -> str:
    return "\\" + c if c in r"\^$.|?*+()[]{}-" else c


_PLACEHOLDERS = "|".join(_ci(w) for w in sorted(_JUNK) if w)

TIMESTAMP = {
    "type": "string",
    "pattern": (
        r"^(19[7-9][0-9]|2[01][0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
        r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
        r"(Z|[+-](0[0-9]|1[0-2]):[0-5][0-9])$"
    ),
    "description": "ISO 8601 date-time, e.g. 2026-01-02T03:04:05.678Z (also accepted: "
    "any valid day, a space for T, no offset meaning UTC, a date alone)",
}
SPACE = r"\s\u001c-\u001f\u0085"
"""What Python's ``str.strip`` removes; JSON Schema's (ECMA) whitespace class lacks 1c-1f and 85."""
USABLE_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "pattern": rf"[^{SPACE}\-0]",
    "not": {"pattern": rf"^[{SPACE}]*({_PLACEHOLDERS})[{SPACE}]*$"},
    "description": "an identifier: not a placeholder such as 'null', 'undefined', "
    "'anonymous', '0', '-1' or all zeros (numbers are accepted too and kept as text)",
}
TEXT = {"type": "string", "pattern": rf"[^{SPACE}]"}
OBJECT = {"type": "object"}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "description": "for programs, e.g. invalid_message"},
        "message": {"type": "string", "description": "for people: what is wrong and where"},
    },
}
PROBLEM_LIST = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["location", "message"],
        "properties": {"location": {"type": "string"}, "message": {"type": "string"}},
    },
}
PROBLEMS_SCHEMA = {
    "type": "object",
    "required": ["code", "message", "problems"],
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "problems": PROBLEM_LIST,
    },
}
VERSION = {
    "type": "integer",
    "minimum": 0,
    "description": "the version the edit started from (409 if it changed)",
}
DURATION = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)?$"},
    ],
    "description": "seconds, or 30s / 15m / 1h / 2d",
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


def _err(desc: str) -> dict[str, Any]:
    return _json(desc, _ref("Error"))


RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}


def _body_errors() -> dict[str, Any]:
    """What the bounded body reader (app.web.bodies) answers, on every route with a body."""
    return {
        "408": _err("the body did not arrive in time (the connection is closed)"),
        "413": _err("the body (inflated) is over the route's limit"),
        "415": _err("a Content-Encoding other than gzip, deflate or none"),
    }


# --------------------------------------------------------------------------- ingest


COMMON_FIELDS: dict[str, Any] = {
    "userId": {**USABLE_ID, "examples": ["user-42"]},
    "anonymousId": {**USABLE_ID, "examples": ["3c4d9e1a-visitor"]},
    "messageId": {"type": "string", "maxLength": MESSAGE_ID_MAX},
    "timestamp": TIMESTAMP,
    "originalTimestamp": TIMESTAMP,
    "sentAt": TIMESTAMP,
    "receivedAt": TIMESTAMP,
    "context": OBJECT,
    "integrations": OBJECT,
    "version": {"type": ["number", "string"]},
    "writeKey": {"type": "string", "description": "the API key, when not sent as Basic"},
}
PER_TYPE: dict[str, tuple[dict[str, Any], list[str]]] = {
    "identify": ({"traits": OBJECT}, []),
    "track": ({"event": TEXT, "properties": OBJECT}, ["event"]),
    "page": ({"name": {"type": "string"}, "properties": OBJECT}, []),
    "screen": ({"name": {"type": "string"}, "properties": OBJECT}, []),
    "group": ({"groupId": TEXT, "traits": OBJECT}, ["groupId"]),
    "alias": (
        {"previousId": {**USABLE_ID, "examples": ["3c4d9e1a-visitor"]}},
        ["previousId", "userId"],
    ),
    "delete": ({}, ["userId"]),
}


def _message(type_: str, type_required: bool) -> dict[str, Any]:
    extra, required = PER_TYPE[type_]
    schema: dict[str, Any] = {
        "type": "object",
        "description": f"a Segment {type_} message; other fields are kept as sent. "
        "At most 32 KB; nested at most 240 levels.",
        "properties": {"type": {"const": type_}, **COMMON_FIELDS, **extra},
        "required": (["type"] if type_required else []) + required,
    }
    if type_ == "alias":
        schema["description"] += " userId must differ from previousId."
    elif "userId" not in required:
        schema["anyOf"] = [{"required": ["userId"]}, {"required": ["anonymousId"]}]
    return schema


BATCH = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {
            "type": "array",
            "maxItems": BATCH_MAX_MESSAGES,
            "items": {"type": "object"},
            "description": "Segment messages (each with its type); an invalid one, or "
            "one that is not an object, is rejected alone (listed in the 200's `rejected`, "
            "dead-lettered)",
        },
        "context": {**OBJECT, "description": "defaults merged into each message's context"},
        "integrations": OBJECT,
        "sentAt": {
            **TIMESTAMP,
            "description": "send time on the device: each message's "
            "sentAt unless it has its own (clock-skew correction)",
        },
        "writeKey": COMMON_FIELDS["writeKey"],
    },
    "description": "At most 500 KB (inflated) and 2,500 messages.",
}
INGEST_OK = {
    "type": "object",
    "required": ["success"],
    "properties": {
        "success": {"const": True},
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "reason"],
                "properties": {
                    "index": {"type": "integer"},
                    "messageId": {"type": ["string", "null"]},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}


def _ingest(summary: str, schema: dict[str, Any], limit: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "tags": ["ingest"],
            "security": SEGMENT,
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {
                "200": _json(
                    "every accepted message is durably in the input topic; invalid "
                    "messages of a batch are listed in `rejected` (and dead-lettered)",
                    _ref("IngestOk"),
                ),
                "400": _err(
                    "malformed JSON, a charset that cannot be decoded, a gzip/deflate body "
                    "that is not, or an invalid single message (dead-lettered)"
                ),
                "401": _err("unknown or missing API key, or a wrong X-Signature"),
                "408": _err(
                    "the body did not arrive in time (5 s without an Authorization "
                    "header, 30 s with one)"
                ),
                "413": _err(f"over Segment's limits ({limit}), also once inflated"),
                "415": _err("a Content-Encoding other than gzip, deflate or none"),
                "429": {
                    **_err("too many requests in flight; retry after Retry-After"),
                    "headers": RETRY_AFTER,
                },
                "503": {
                    **_err("the broker did not acknowledge; retry after Retry-After"),
                    "headers": RETRY_AFTER,
                },
            },
        }
    }


# --------------------------------------------------------------------------- admin


def _pydantic(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    """A config model's JSON Schema, its $defs moved to components, durations fixed up
    (pydantic sees a float; the config also takes ``1h``)."""
    schema = copy.deepcopy(model.model_json_schema(mode="validation"))
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                node["$ref"] = node["$ref"].replace("#/$defs/", REF)
            for key, value in list(node.items()):
                if key == "properties" and isinstance(value, dict):
                    for prop in ("lifetime", "wait", "within"):
                        if prop in value:
                            optional = "null" in str(value[prop])
                            value[prop] = (
                                {"anyOf": [DURATION, {"type": "null"}]} if optional else DURATION
                            )
                fix(value)
        elif isinstance(node, list):
            for item in node:
                fix(item)
        return node

    for sub in components.values():
        fix(sub)
    return fix(schema)


def _admin(
    summary: str,
    tag: str,
    params: list[dict[str, Any]] | tuple[()] = (),
    *,
    ok: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    account: bool = True,
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": ok or _json("OK"),
        "401": _err("admin token missing or wrong"),
    }
    if account:
        responses["404"] = _err("no such account (or person)")
    if body is not None:
        responses["400"] = _err(
            "malformed JSON, an unknown charset, or JSON nested deeper than 64 levels"
        )
        responses.update(_body_errors())
    responses.update(extra or {})
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "security": ADMIN,
        "parameters": [ACCOUNT, *params] if account else list(params),
        "responses": dict(sorted(responses.items())),
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
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
    return _admin(
        f"The account's Emarsys {what} by id and name (from `{call}`), for the console's "
        "pickers; kept 5 minutes per worker (`?refresh=1` fetches again)",
        "catalog",
        [{"name": "refresh", "in": "query", "schema": {"type": "string"}}],
        ok=_json("OK", answer),
        extra={
            "502": _err("Emarsys cannot be reached, or refused the call"),
            "504": _err("Emarsys did not answer in time"),
        },
    )


def document() -> dict[str, Any]:
    components: dict[str, Any] = {
        "Error": ERROR_SCHEMA,
        "Problems": PROBLEMS_SCHEMA,
        "IngestOk": INGEST_OK,
        "Batch": BATCH,
        **{f"{t.capitalize()}Message": _message(t, False) for t in PER_TYPE if t != "delete"},
        "AnyMessage": {"oneOf": [_message(t, True) for t in PER_TYPE]},
    }
    components["DataMap"] = _pydantic(DataMapConfig, components)
    components["Rule"] = _pydantic(RuleConfig, components)
    edit = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "data_maps": {"type": "array", "items": _ref("DataMap")},
            "rules": {"type": "array", "items": _ref("Rule")},
            "version": VERSION,
        },
    }
    config_view = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "primary_key": {"type": "string", "description": "not editable here"},
            "data_maps": {"type": "array", "items": _ref("DataMap")},
            "rules": {"type": "array", "items": _ref("Rule")},
        },
    }
    components["ConfigEdit"] = edit
    components["ConfigDocument"] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["config"],
        "description": "what GET answers; PUT it back edited (version: the check)",
        "properties": {
            "account": {"type": "string", "description": "the path's account"},
            "version": VERSION,
            "config": config_view,
        },
    }
    edit_body = {"anyOf": [_ref("ConfigEdit"), _ref("ConfigDocument")]}
    invalid = {
        "400": _json(
            "invalid: every problem with its location (or a malformed body)",
            {"anyOf": [_ref("Problems"), _ref("Error")]},
        )
    }
    broker_down = {"503": _err("the broker (or the worker that owns the person) did not answer")}
    q_range = [
        {"name": n, "in": "query", "schema": TIMESTAMP, "description": d}
        for n, d in (("from", "start (default: 24 h before `to`)"), ("to", "end (default: now)"))
    ]
    person_query = [
        {"name": n, "in": "query", "schema": {"type": "string"}, "description": d}
        for n, d in (
            ("userId", "the person's userId"),
            ("anonymousId", "an anonymousId of the person"),
            ("primaryKey", "the person's primary key value (the Emarsys contact key)"),
        )
    ]
    paths: dict[str, Any] = {
        f"/v1/{t}": _ingest(
            f"Segment {t} (Tracking API shape)", _ref(f"{t.capitalize()}Message"), "32 KB"
        )
        for t in ("identify", "track", "page", "screen", "group", "alias")
    }
    paths["/v1/batch"] = _ingest(
        'Segment batch: {"batch": [...]}', _ref("Batch"), "500 KB, 2,500 messages"
    )
    paths["/v1/import"] = _ingest("Alias of /v1/batch", _ref("Batch"), "500 KB, 2,500 messages")
    paths["/segment"] = _ingest(
        "One message (any type, also Segment's delete) or a batch",
        {"anyOf": [_ref("AnyMessage"), _ref("Batch")]},
        "32 KB a message, 500 KB / 2,500 a batch",
    )
    retry_body = {
        "type": "object",
        "additionalProperties": False,
        "required": ["ids"],
        "properties": {
            "ids": {
                "type": "array",
                "maxItems": 1000,
                "items": {
                    "type": "string",
                    "pattern": r"^[0-9]{1,9}:[0-9]{1,18}$",
                    "description": "PARTITION:OFFSET as the dead-letter list shows it",
                },
            }
        },
    }
    replay_body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "data_maps": {"type": "array", "items": _ref("DataMap")},
            "rules": {"type": "array", "items": _ref("Rule")},
            "from": TIMESTAMP,
            "to": TIMESTAMP,
        },
    }
    paths.update(
        {
            "/api/accounts": {
                "get": _admin("The accounts of this deployment", "config", account=False)
            },
            "/api/accounts/{account}/config": {
                "get": _admin(
                    "The live data maps and rules (`?format=yaml` in the file's format)",
                    "config",
                    [
                        {
                            "name": "format",
                            "in": "query",
                            "schema": {"enum": ["json", "yaml"]},
                        }
                    ],
                    ok={
                        "description": "the config document",
                        "content": {
                            "application/json": {"schema": _ref("ConfigDocument")},
                            "application/yaml": {
                                "schema": {
                                    "type": "object",
                                    "description": "data_maps and rules as in the file",
                                }
                            },
                        },
                    },
                    extra={"400": _err("format is neither json nor yaml")},
                ),
                "put": _admin(
                    "Replace data maps and/or rules: the edit, or the document GET answered. "
                    "Validated like check-config (a filter naming an unknown data map, a gap "
                    "in sequences... answer 400 with every problem located); applied by every "
                    "worker within seconds",
                    "config",
                    ok=_json("stored and applied: the new document", _ref("ConfigDocument")),
                    body=edit_body,
                    extra={
                        **invalid,
                        "409": _err("someone saved since `version`: reload and edit again"),
                        **broker_down,
                    },
                ),
            },
            "/api/accounts/{account}/config/validate": {
                "post": _admin(
                    "Validate an edit (or a config document) without storing it",
                    "config",
                    ok=_json(
                        "whether it is valid, and every problem with its location",
                        {
                            "type": "object",
                            "required": ["valid"],
                            "properties": {
                                "valid": {"type": "boolean"},
                                "problems": PROBLEM_LIST,
                            },
                        },
                    ),
                    body=edit_body,
                )
            },
            "/api/accounts/{account}/rules": {
                "get": _admin(
                    "Each rule with its funnel: instances at each sequence now, and "
                    "transitions per hour over the period (default: the last 24 h)",
                    "rules",
                    q_range,
                    extra={"400": _err("from/to are not ISO 8601 times")},
                )
            },
            "/api/accounts/{account}/replay": {
                "post": _admin(
                    "Run a rule set (saved or not) over the input topic's history; nothing "
                    "is sent. Answers what `replay --format jsonl` would print",
                    "rules",
                    body=replay_body,
                    extra={**invalid, **broker_down},
                )
            },
            "/api/accounts/{account}/users": {
                "get": _admin(
                    "A person: identity, data map values, Emarsys fields, rule instances, "
                    "recent events and deliveries (answered by the owning worker). Needs one "
                    "of userId, anonymousId, primaryKey (400 without)",
                    "inspection",
                    person_query,
                    extra={"400": _err("none of userId, anonymousId, primaryKey"), **broker_down},
                )
            },
            "/api/accounts/{account}/deliveries": {
                "get": _admin(
                    "Recent Emarsys calls and outcomes: a person's (with a person query) or "
                    "the account's (`failed=1` for failures only), then with the calls being "
                    "retried right now and what waits to be delivered, from every worker",
                    "inspection",
                    [
                        *person_query,
                        {
                            "name": "failed",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "1: failures only",
                        },
                    ],
                    ok=DELIVERIES,
                    extra=broker_down,
                )
            },
            "/api/accounts/{account}/dead-letters": {
                "get": _admin(
                    "Recent dead letters of the account with their reasons",
                    "inspection",
                    [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 10**19 - 1},
                            "description": "how many (default 200; read as 1 to 1000)",
                        }
                    ],
                    extra={"400": _err("limit is not a whole number"), **broker_down},
                )
            },
            "/api/accounts/{account}/dead-letters/retry": {
                "post": _admin(
                    "Put dead letters back where they failed; ids not found (or of another "
                    "account) are listed in `skipped`",
                    "inspection",
                    body=retry_body,
                    extra={
                        "400": _err(
                            'not {"ids": [...]}, more than 1,000 ids, or an id that '
                            "is not PARTITION:OFFSET within Kafka's ranges"
                        ),
                        **broker_down,
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
                    "summary": "Alive: broker reachable, assigned partitions",
                    "tags": ["operations"],
                    "responses": {
                        "200": _json("healthy"),
                        "503": _json("broker unreachable"),
                    },
                }
            },
            "/ready": {
                "get": {
                    "summary": "Processing: partitions assigned and live config read",
                    "tags": ["operations"],
                    "responses": {
                        "200": _json("ready"),
                        "503": {**_err("not yet (see the body)"), "headers": RETRY_AFTER},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus text format",
                    "tags": ["operations"],
                    "responses": {
                        "200": {
                            "description": "metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
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
                    "responses": {
                        "200": {
                            "description": "HTML",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        }
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "emarsys-destination",
            "version": "0.1.0",
            "description": "Segment destination for Emarsys: ingest, inspection, live config. "
            'Every error answers {"code", "message"}.',
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "segmentBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "The account's API key as username, empty password "
                    "(or no Authorization header and `writeKey` in the body)",
                },
                "admin": {"type": "http", "scheme": "bearer", "description": "EMD_ADMIN_TOKEN"},
            },
        },
        "paths": paths,
    }


INTERNAL = ("/_link", "/_pk", "/_person")


async def handler(request: web.Request) -> web.Response:
    return web.json_response(document())


def routes() -> list[web.RouteDef]:
    return [web.get("/api/openapi.json", handler)]
