"""A tiny stand-in for the worker's console API, for fast browser tests of every page.

It serves ``app/web/static`` at ``/`` and ``/static/*`` with the worker's own routes
(``app.web.console``) and answers each JSON endpoint of the console's contract with
canned, deterministic data (config edits are kept in memory and validated by a small
checker that speaks the real messages' shape, e.g. ``rules[0].conditions[0].match:
column 1: unknown data map 'cart'``). Run it by hand to look at the console without a
broker::

    .venv/bin/python -m tests.browser.fake_api --port 8099    # token: fake-token
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from app.web import console

STATIC = Path(__file__).resolve().parents[2] / "app" / "web" / "static"
TOKEN = "fake-token"

DATA_TYPES = ("string", "numeric", "boolean", "date", "datetime", "choice")
COND_TYPES = ("start", "step", "exclude", "exit")
COND_ON = ("track", "page", "screen", "identify", "group", "alias", "any")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DURATION_RE = re.compile(r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d|w)?\s*$")
SEGMENT_FIELDS = {
    "type", "event", "userId", "anonymousId", "messageId", "name", "category", "groupId",
    "previousId", "timestamp", "originalTimestamp", "sentAt", "receivedAt", "properties",
    "traits", "context", "integrations", "version", "channel",
}  # fmt: skip
KEYWORDS = {"and", "or", "not", "in", "true", "false", "null", "contains", "match"}
TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"|[A-Za-z_][\w]*(?:(?:\.[A-Za-z_]\w*)|\[\d+\])*|\S')


CATALOG: dict[str, list[dict[str, Any]]] = {
    "fields": [
        {"id": 1, "name": "First Name", "type": "shorttext"},
        {"id": 2, "name": "Last Name", "type": "shorttext"},
        {"id": 3, "name": "E-Mail", "type": "longtext"},
        {"id": 31, "name": "Opt-In", "type": "singlechoice"},
        {"id": 4711, "name": "Loyalty tier", "type": "shorttext"},
        {"id": 4712, "name": "Lifetime value", "type": "numeric"},
    ],
    "events": [
        {"id": 1234, "name": "segment.com test event"},
        {"id": 1301, "name": "Cart abandoned"},
        {"id": 1302, "name": "Welcome series"},
    ],
    "lists": [
        {"id": 750504658, "name": "Newsletter subscribers"},
        {"id": 750504659, "name": "VIP customers"},
    ],
}


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str | None, default: datetime) -> datetime:
    if not text:
        return default
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def initial_config() -> dict[str, Any]:
    return {
        "primary_key": "context.traits.email",
        "data_maps": [
            {"name": "email", "path": "context.traits.email", "type": "string", "field": 3},
            {"name": "first_name", "path": "traits.firstName", "type": "string", "field": 1},
            {"name": "ecom_event", "path": "event", "type": "string"},
            {"name": "ecom_revenue", "path": "properties.revenue", "type": "numeric"},
            {"name": "cart_id", "path": "properties.cart_id", "type": "string"},
            {"name": "coupon", "path": "properties.coupon", "type": "string"},
            {
                "name": "opt_in",
                "path": "traits.optIn",
                "type": "choice",
                "field": 31,
                "choices": {"true": 1, "false": 2},
            },
        ],
        "rules": [
            {
                "name": "Coupon entered but did not complete order",
                "lifetime": "2d",
                "multiple_active": False,
                "transaction": "cart_id",
                "enabled": True,
                "conditions": [
                    {
                        "sequence": 0,
                        "type": "start",
                        "on": "track",
                        "match": 'ecom_event = "Coupon Entered"',
                        "variables": [],
                    },
                    {
                        "sequence": 0,
                        "type": "exclude",
                        "on": "track",
                        "match": 'ecom_event = "Order Completed"',
                        "variables": [],
                    },
                    {
                        "sequence": 1,
                        "type": "exit",
                        "on": "any",
                        "wait": "1h",
                        "trigger": 1234,
                        "variables": ["coupon", "ecom_revenue"],
                    },
                ],
            },
            {
                "name": "Browse abandonment",
                "lifetime": "1d",
                "multiple_active": True,
                "enabled": False,
                "conditions": [
                    {
                        "sequence": 0,
                        "type": "start",
                        "on": "track",
                        "match": 'ecom_event = "Product Viewed"',
                        "variables": [],
                    },
                    {
                        "sequence": 1,
                        "type": "step",
                        "on": "track",
                        "within": "30m",
                        "match": 'ecom_event = "Product Added"',
                        "variables": [],
                    },
                    {
                        "sequence": 2,
                        "type": "exit",
                        "on": "any",
                        "wait": "2h",
                        "trigger": "browse-abandon",
                        "variables": [],
                    },
                ],
            },
        ],
    }


# ------------------------------------------------------------------------------- validation


def _problem(location: str, message: str) -> dict[str, str]:
    return {"location": location, "message": message}


def match_problems(text: str, names: set[str], location: str) -> list[dict[str, str]]:
    """Unknown bare identifiers, with their 1-based column (the real parser's message)."""
    out: list[dict[str, str]] = []
    if text.count('"') % 2:
        return [_problem(location, f"column {text.rfind(chr(34)) + 1}: unterminated string")]
    for m in TOKEN_RE.finditer(text):
        tok = m.group(0)
        if not (tok[0].isalpha() or tok[0] == "_"):
            continue
        if tok.lower() in KEYWORDS:
            continue
        if tok.startswith("user."):
            dm = tok[5:]
            if dm not in names:
                out.append(_problem(location, f"column {m.start() + 6}: unknown data map '{dm}'"))
            continue
        if "." in tok or "[" in tok or tok in names or tok in SEGMENT_FIELDS:
            continue
        out.append(_problem(location, f"column {m.start() + 1}: unknown data map '{tok}'"))
    return out


def validate(edit: Any) -> list[dict[str, str]]:
    if not isinstance(edit, dict):
        return [_problem("", "the body must be a JSON object")]
    problems = [
        _problem(k, "not editable here (only data_maps and rules)")
        for k in edit
        if k not in ("data_maps", "rules")
    ]
    maps = edit.get("data_maps") or []
    names: set[str] = set()
    for i, dm in enumerate(maps):
        loc = f"data_maps[{i}]"
        name = dm.get("name", "")
        if not NAME_RE.match(str(name)):
            problems.append(
                _problem(
                    f"{loc}.name",
                    f"Value error, {name!r} is not a valid data map name (letters, digits and _, "
                    "not starting with a digit)",
                )
            )
        elif name in names:
            problems.append(_problem(f"{loc}.name", f"duplicate data map name {name!r}"))
        names.add(str(name))
        if not str(dm.get("path", "")).strip():
            problems.append(_problem(f"{loc}.path", "a JSON path is required"))
        if dm.get("type") not in DATA_TYPES:
            problems.append(
                _problem(
                    f"{loc}.type",
                    "Input should be 'string', 'numeric', 'boolean', 'date', 'datetime' or 'choice'",
                )
            )
        if "field" in dm and not (isinstance(dm["field"], int) and dm["field"] >= 1):
            problems.append(_problem(f"{loc}.field", "Input should be a valid integer >= 1"))
        if dm.get("type") == "choice":
            choices = dm.get("choices") or {}
            if not choices:
                problems.append(_problem(loc, "a data map of type choice needs a choices table"))
            for key, value in choices.items():
                if not isinstance(value, int):
                    problems.append(
                        _problem(f"{loc}.choices.{key}", "Input should be a valid integer")
                    )
    for i, rule in enumerate(edit.get("rules") or []):
        loc = f"rules[{i}]"
        if not str(rule.get("name", "")).strip():
            problems.append(_problem(f"{loc}.name", "String should have at least 1 character"))
        lifetime = rule.get("lifetime")
        if lifetime is not None and not DURATION_RE.match(str(lifetime)):
            problems.append(
                _problem(
                    f"{loc}.lifetime",
                    f"not a duration: {lifetime!r} (use 30s, 15m, 1h, 2d or seconds)",
                )
            )
        if rule.get("transaction") and rule["transaction"] not in names:
            problems.append(
                _problem(f"{loc}.transaction", f"unknown data map {rule['transaction']!r}")
            )
        conds = rule.get("conditions") or []
        if not conds:
            problems.append(_problem(f"{loc}.conditions", "a rule needs at least one condition"))
        for k, cond in enumerate(conds):
            cl = f"{loc}.conditions[{k}]"
            if not isinstance(cond.get("sequence"), int) or cond["sequence"] < 0:
                problems.append(_problem(f"{cl}.sequence", "Input should be a valid integer >= 0"))
            if cond.get("type") not in COND_TYPES:
                problems.append(
                    _problem(f"{cl}.type", "Input should be start, step, exclude or exit")
                )
            if cond.get("on", "any") not in COND_ON:
                problems.append(_problem(f"{cl}.on", "unknown event type"))
            for key in ("wait", "within"):
                if key in cond and not DURATION_RE.match(str(cond[key])):
                    problems.append(
                        _problem(
                            f"{cl}.{key}",
                            f"not a duration: {cond[key]!r} (use 30s, 15m, 1h, 2d or seconds)",
                        )
                    )
            if cond.get("match"):
                problems += match_problems(cond["match"], names, f"{cl}.match")
            actions = ("trigger", "add_to_list", "remove_from_list")
            if cond.get("type") == "exit" and all(cond.get(a) in (None, "") for a in actions):
                problems.append(_problem(f"{cl}.trigger", "an exit needs an action"))
            for v, var in enumerate(cond.get("variables") or []):
                if var not in names:
                    problems.append(_problem(f"{cl}.variables[{v}]", f"unknown data map {var!r}"))
        if conds and all(isinstance(c.get("sequence"), int) for c in conds):
            last = max(c["sequence"] for c in conds)
            exits = [c for c in conds if c.get("type") == "exit"]
            if not exits:
                problems.append(_problem(f"{loc}.conditions", "a rule needs an exit condition"))
            elif any(c["sequence"] != last for c in exits):
                problems.append(
                    _problem(f"{loc}.conditions", "the exit must be at the last sequence")
                )
    return problems


# ------------------------------------------------------------------------------- state


class FakeState:
    """Everything the fake answers; ``requests`` records (method, path, body) for asserts."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.configs = {"demo": initial_config(), "shop": {**initial_config(), "rules": []}}
        self.versions = {"demo": 3, "shop": 1}
        self.requests: list[tuple[str, str, Any]] = []
        self.catalog_down = False  # the account's Emarsys unreachable: catalog routes 502
        self.dead_letters = [
            {
                "id": f"3:{1040 + i}",
                "at": iso(self.now - timedelta(minutes=5 * i + 1)),
                "source": source,
                "reason": reason,
                "message_id": f"msg-{i}",
                "payload": {"type": "track", "event": "Coupon Entered", "userId": f"u{i}"},
            }
            for i, (source, reason) in enumerate(
                [
                    ("sink", "Emarsys 400 replyCode 2008: No contact found with the external id"),
                    ("ingest", "invalid message: 'type' is missing"),
                    ("sink", "gave up after 1h of retries: 503 Service Unavailable"),
                    ("link", "messageId is not a string"),
                ]
            )
        ]

    # -- canned answers

    def rules_stats(self, account: str, start: datetime, end: datetime) -> dict[str, Any]:
        out = []
        for r, rule in enumerate(self.configs[account]["rules"]):
            series: list[dict[str, Any]] = []
            hour = start.replace(minute=0, second=0, microsecond=0)
            k = 0
            while hour <= end:
                if (k + r) % 3 != 2:
                    series.append(
                        {
                            "at": iso(hour),
                            "started": (k * 7 + r) % 5 + 1,
                            "advanced": (k + r) % 2,
                            "excluded": (k * 3) % 4 // 2,
                            "expired": (k % 5 == 0) * 1,
                            "triggered": (k * 5 + r) % 3,
                        }
                    )
                hour += timedelta(hours=1)
                k += 1
            period = {
                key: sum(int(p[key]) for p in series)
                for key in ("started", "advanced", "excluded", "expired", "triggered")
            }
            last = max(c["sequence"] for c in rule["conditions"])
            active = {str(p): max(0, 12 - 5 * p - 3 * r) for p in range(last)}
            out.append(
                {
                    "name": rule["name"],
                    "enabled": rule.get("enabled", True),
                    "lifetime": rule.get("lifetime", "1d"),
                    "transaction": rule.get("transaction"),
                    "conditions": rule["conditions"],
                    "active": active,
                    "period": period,
                    "series": series,
                }
            )
        return {"from": iso(start), "to": iso(end), "rules": out}

    def late_person(self) -> dict[str, Any]:
        """A phone's events delivered hours late, still arriving: a lifetime that ended in
        event time waits out the lateness window (app.timeline)."""
        now = self.now
        body = self.person()
        until = iso(now + timedelta(seconds=40))
        body.update(userId="late1", person="u:late1", primaryKey="late1@example.com")
        body["lateness"] = {"until": until, "inputs": 2}
        body["instances"] = [
            {
                "rule": "Coupon entered but did not complete order",
                "instance": "i-late",
                "position": 0,
                "started": iso(now - timedelta(hours=3)),
                "reached": iso(now - timedelta(hours=3)),
                "transaction": "c-9",
                "variables": {},
                "next": {
                    "at": iso(now - timedelta(hours=1)),
                    "what": "lifetime expires",
                    "heldUntil": until,
                    "note": f"fires at {until} unless a late event moves it "
                    "(the person's events are still arriving)",
                },
            }
        ]
        return body

    def person(self) -> dict[str, Any]:
        now = self.now
        return {
            "account": "demo",
            "person": "u:u1",
            "userId": "u1",
            "anonymousIds": ["anon-1", "anon-2"],
            "primaryKey": "ann@example.com",
            "firstSeen": iso(now - timedelta(days=3)),
            "lastSeen": iso(now - timedelta(minutes=48)),
            "values": {
                "email": "ann@example.com",
                "first_name": "Ann",
                "ecom_event": "Coupon Entered",
                "coupon": "SPRING10",
                "cart_id": "c-77",
            },
            "emarsys": {
                "sent": {"3": "ann@example.com", "1": "Ann", "31": 1},
                "acknowledged": {"3": "ann@example.com", "1": "Ann"},
            },
            "instances": [
                {
                    "rule": "Coupon entered but did not complete order",
                    "instance": "i-9f2c",
                    "position": 0,
                    "started": iso(now - timedelta(minutes=48)),
                    "reached": iso(now - timedelta(minutes=48)),
                    "transaction": "c-77",
                    "variables": {"coupon": "SPRING10"},
                    "next": {"at": iso(now + timedelta(minutes=12, seconds=20)), "what": "exit"},
                }
            ],
            "nextDeadline": iso(now + timedelta(minutes=12, seconds=20)),
            "deliveries": [
                {
                    "op": "upsert",
                    "ok": True,
                    "at": iso(now - timedelta(minutes=47)),
                    "contact": "ann@example.com",
                    "fields": {"3": "ann@example.com", "1": "Ann"},
                },
                {
                    "op": "trigger",
                    "ok": False,
                    "at": iso(now - timedelta(days=1)),
                    "contact": "ann@example.com",
                    "rule": "Browse abandonment",
                    "event": "browse-abandon",
                    "trigger_id": "t-5d1e",
                    "event_time": iso(now - timedelta(days=1)),
                    "code": 2008,
                    "text": "No contact found with the external id: 3",
                },
            ],
            "recentEvents": [
                {
                    "at": iso(now - timedelta(minutes=48)),
                    "type": "track",
                    "event": "Coupon Entered",
                    "messageId": "m-3",
                },
                {
                    "at": iso(now - timedelta(hours=2)),
                    "type": "identify",
                    "event": None,
                    "messageId": "m-2",
                },
            ],
        }

    def deliveries(self) -> list[dict[str, Any]]:
        now = self.now
        out = []
        for i in range(30):
            failed = i % 7 == 3
            out.append(
                {
                    "person": f"u:u{i}",
                    "op": "trigger" if i % 2 else "upsert",
                    "ok": not failed,
                    "at": iso(now - timedelta(minutes=3 * i)),
                    "contact": f"user{i}@example.com",
                    **(
                        {"rule": "Coupon entered but did not complete order", "event": 1234}
                        if i % 2
                        else {"fields": {"3": f"user{i}@example.com"}}
                    ),
                    **(
                        {"code": 2008, "text": "No contact found with the external id: 3"}
                        if failed
                        else {}
                    ),
                }
            )
        return out

    def replay(self, body: dict[str, Any]) -> dict[str, Any]:
        rules = body.get("rules") or []
        name = rules[0]["name"] if rules else "?"
        exits = [c for c in (rules[0]["conditions"] if rules else []) if c.get("type") == "exit"]
        event = exits[0].get("trigger") if exits else None
        end = parse_iso(body.get("to"), self.now)
        lines: list[dict[str, Any]] = []
        for i in range(5):
            at = iso(end - timedelta(hours=2 * i + 1))
            lines.append(
                {
                    "kind": "contact_update",
                    "at": at,
                    "account": "demo",
                    "contact": f"p{i}@example.com",
                    "fields": {"3": f"p{i}@example.com"},
                }
            )
            line: dict[str, Any] = {
                "kind": "trigger",
                "at": at,
                "account": "demo",
                "rule": name,
                "external_event": event,
                "contact": f"p{i}@example.com",
                "user_id": f"u{i}",
                "event_time": at,
                "data": {"global": {"coupon": f"SAVE{i}"}},
                "trigger_id": f"t-{i}",
            }
            if i == 4:
                line.update(contact=None, undeliverable="no primary key value for this person")
            lines.append(line)
        lines.sort(key=lambda x: x["at"])
        lines.append(
            {
                "kind": "rejected",
                "account": "demo",
                "message_id": "bad-1",
                "reason": "invalid message: 'type' is missing",
                "line": 3,
            }
        )
        summary = {
            "events": 240,
            "rejected": 1,
            "deduped": 0,
            "persons": 31,
            "contact_updates": 5,
            "triggers": 5,
            "undeliverable": 1,
            "contact_deletes": 0,
            "transitions": {
                "started": 12,
                "advanced": 0,
                "excluded": 3,
                "expired": 2,
                "triggered": 5,
            },
            "clock": iso(end - timedelta(minutes=20)),
        }
        return {"lines": lines, "summary": summary}


# ------------------------------------------------------------------------------- the app


def make_app(state: FakeState, token: str = TOKEN) -> web.Application:
    @web.middleware
    async def auth(request: web.Request, handler):
        if request.path.startswith("/api/"):
            body = None
            if request.can_read_body:
                body = await request.json()
            state.requests.append((request.method, request.path_qs, body))
            if request.headers.get("Authorization") != f"Bearer {token}":
                return web.json_response({"message": "admin token required"}, status=401)
            account = request.match_info.get("account")
            if account is not None and account not in state.configs:
                return web.json_response({"message": "no such account"}, status=404)
        return await handler(request)

    routes = web.RouteTableDef()

    @routes.get("/health")
    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "broker": {"url": "kafka://fake:9092", "reachable": True},
                "assigned_partitions": {"segment-events": [0, 1, 2, 3]},
                "accounts": sorted(state.configs),
            }
        )

    @routes.get("/metrics")
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="emd_fake 1\n", content_type="text/plain")

    @routes.get("/api/accounts")
    async def accounts(request: web.Request) -> web.Response:
        return web.json_response({"accounts": sorted(state.configs)})

    @routes.get("/api/accounts/{account}/config")
    async def get_config(request: web.Request) -> web.Response:
        a = request.match_info["account"]
        if request.query.get("format") == "yaml":
            editable = {k: state.configs[a][k] for k in ("data_maps", "rules")}
            text = yaml.safe_dump(editable, sort_keys=False, allow_unicode=True)
            return web.Response(text=text, content_type="application/yaml")
        return web.json_response(
            {"account": a, "version": state.versions[a], "config": state.configs[a]}
        )

    @routes.put("/api/accounts/{account}/config")
    async def put_config(request: web.Request) -> web.Response:
        a = request.match_info["account"]
        edit = await request.json()
        problems = validate(edit)
        if problems:
            return web.json_response(
                {
                    "message": f"invalid configuration: {len(problems)} problem(s)",
                    "problems": problems,
                },
                status=400,
            )
        config = state.configs[a]
        for key in ("data_maps", "rules"):
            if key in edit:
                config[key] = copy.deepcopy(edit[key])
        state.versions[a] += 1
        return web.json_response({"version": state.versions[a], "config": config})

    @routes.post("/api/accounts/{account}/config/validate")
    async def validate_config(request: web.Request) -> web.Response:
        problems = validate(await request.json())
        if problems:
            return web.json_response({"valid": False, "problems": problems})
        return web.json_response({"valid": True})

    @routes.get("/api/accounts/{account}/rules")
    async def rules(request: web.Request) -> web.Response:
        a = request.match_info["account"]
        end = parse_iso(request.query.get("to"), state.now)
        start = parse_iso(request.query.get("from"), end - timedelta(hours=24))
        return web.json_response(state.rules_stats(a, start, end))

    @routes.get("/api/accounts/{account}/users")
    async def users(request: web.Request) -> web.Response:
        q = request.query
        if q.get("userId") == "u1" or q.get("primaryKey") == "ann@example.com":
            return web.json_response(state.person())
        if q.get("anonymousId") in ("anon-1", "anon-2"):
            return web.json_response(state.person())
        if q.get("userId") == "late1":
            return web.json_response(state.late_person())
        return web.json_response({"message": "no such user in this account"}, status=404)

    @routes.get("/api/accounts/{account}/deliveries")
    async def deliveries(request: web.Request) -> web.Response:
        now = state.now
        retrying = [
            {
                "call": "POST /event/1234/trigger",
                "attempt": 4,
                "lastStatus": 503,
                "lastReplyCode": None,
                "reason": "HTTP 503 replyCode None",
                "since": iso(now - timedelta(seconds=40)),
                "nextAttemptAt": iso(now + timedelta(seconds=8)),
                "secondsToNextAttempt": 8.0,
                "givesUpAt": iso(now + timedelta(minutes=59)),
                "secondsUntilGivenUp": 3560.0,
                "worker": "http://127.0.0.1:6066",
            }
        ]
        backlog = {
            "state": "parked",
            "effects": 1234,
            "inMemory": 200,
            "parked": 1034,
            "oldestAgeSeconds": 41.5,
        }
        return web.json_response(
            {"deliveries": state.deliveries(), "retrying": retrying, "backlog": backlog}
        )

    @routes.get("/api/accounts/{account}/dead-letters")
    async def dead_letters(request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "200"))
        return web.json_response({"dead_letters": state.dead_letters[:limit]})

    @routes.post("/api/accounts/{account}/dead-letters/retry")
    async def retry(request: web.Request) -> web.Response:
        ids = (await request.json()).get("ids") or []
        known = {d["id"]: d for d in state.dead_letters}
        skipped = []
        retried = 0
        for i in ids:
            letter = known.get(i)
            if letter is None:
                skipped.append({"id": i, "reason": "no such dead letter"})
            elif letter["source"] == "ingest":
                skipped.append({"id": i, "reason": "an invalid message cannot be retried"})
            else:
                retried += 1
        return web.json_response({"retried": retried, "skipped": skipped})

    @routes.get("/api/accounts/{account}/emarsys/{kind}")
    async def catalog(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind not in CATALOG:
            return web.json_response({"message": "not found"}, status=404)
        if state.catalog_down:
            message = "cannot reach Emarsys (GET /event): connection error (ClientConnectorError)"
            return web.json_response({"message": message}, status=502)
        return web.json_response(
            {"account": request.match_info["account"], kind: CATALOG[kind], "cached": False}
        )

    @routes.post("/api/accounts/{account}/replay")
    async def replay(request: web.Request) -> web.Response:
        body = await request.json()
        problems = validate({k: v for k, v in body.items() if k in ("data_maps", "rules")})
        if problems:
            return web.json_response(
                {"message": f"invalid rule set: {len(problems)} problem(s)", "problems": problems},
                status=400,
            )
        await asyncio.sleep(0.05)
        return web.json_response(state.replay(body))

    app = web.Application(middlewares=[auth])
    app.add_routes(routes)
    app.add_routes(console.routes(STATIC))  # the worker's own static serving
    return app


class FakeServer:
    """The fake app on 127.0.0.1 in a background thread (its own event loop)."""

    def __init__(self, token: str = TOKEN, port: int = 0) -> None:
        self.state = FakeState()
        self.token = token
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        self._thread = threading.Thread(target=self._run, name="fake-api", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake API did not start")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._runner = web.AppRunner(make_app(self.state, self.token), access_log=None)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    server = FakeServer(port=args.port).start()
    print(f"fake console API on {server.url}/ (admin token: {TOKEN}); Ctrl-C stops")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
