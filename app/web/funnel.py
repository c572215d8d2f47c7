"""Rule funnels: instances at each sequence now, and transitions per hour over a period.

Each worker counts what its own partitions hold (``local=1``); the answer sums every
worker's, so it is the same whichever worker is asked.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from app import keys
from app.envelope import loads
from app.runtime import Runtime
from app.segment.model import parse_iso_utc
from app.state_reader import StateReader
from app.web.admin import guard
from app.web.cluster import gather

KINDS = ("started", "advanced", "excluded", "expired", "triggered")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str | None, default: float) -> float:
    """An ISO 8601 query parameter as unix seconds (naive = UTC); ValueError when bad."""
    return parse_iso_utc(text).timestamp() if text else default


class FunnelApi:
    def __init__(self, app: Any, runtime: Runtime, state: StateReader) -> None:
        self.app = app
        self.runtime = runtime
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/accounts/{account}/rules", self.rules)]

    def local_counts(self, account: str, start: float, end: float) -> dict[str, Any]:
        """This worker's share: active positions and per-hour transitions."""
        state = self.state
        mine = state.owned_person_partitions()
        acct = self.runtime.accounts[account]
        prefix = f"{account}{keys.SEP}".encode()
        active: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for key, raw in state.items(state.tables.persons, mine):
            if not key.startswith(prefix):
                continue
            record = loads(raw)
            if "fwd" in record:
                continue
            for rule, positions in acct.rules.funnel_positions(record.get("rules") or {}).items():
                for p in positions:
                    active[rule][str(p)] += 1
        series: dict[str, dict[int, dict[str, int]]] = defaultdict(dict)
        for key, raw in state.items(state.tables.funnel, mine):
            if not key.startswith(prefix):
                continue
            _, ident = keys.split(key)
            rule, hour_text, part = ident.split("\x1e")
            hour = int(hour_text)
            if int(part) not in mine or not (start <= hour + 3599 and hour < end):
                continue
            bucket = series[rule].setdefault(hour, dict.fromkeys(KINDS, 0))
            for kind, n in loads(raw).items():
                if kind in bucket:
                    bucket[kind] += n
        return {
            "active": {r: dict(v) for r, v in active.items()},
            "series": {r: {str(h): c for h, c in v.items()} for r, v in series.items()},
        }

    async def rules(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        denied = guard(self.runtime, request, account)
        if denied:
            return denied
        now = time.time()
        try:
            end = _parse(request.query.get("to"), now)
            start = _parse(request.query.get("from"), end - 86400)
        except ValueError:
            return web.json_response({"message": "from/to must be ISO 8601 times"}, status=400)
        if request.query.get("local") == "1":
            return web.json_response(self.local_counts(account, start, end))
        params = {"from": _iso(start), "to": _iso(end)}
        parts = await gather(self.app, request, request.path, params)
        active: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        series: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
        for part in parts:
            for rule, positions in part["active"].items():
                for p, n in positions.items():
                    active[rule][p] += n
            for rule, hours in part["series"].items():
                for hour, counts in hours.items():
                    bucket = series[rule].setdefault(hour, dict.fromkeys(KINDS, 0))
                    for kind, n in counts.items():
                        bucket[kind] = bucket.get(kind, 0) + n
        out = []
        for rule in self.runtime.accounts[account].config.rules:
            hours = sorted(series.get(rule.name, {}).items(), key=lambda kv: int(kv[0]))
            period = dict.fromkeys(KINDS, 0)
            for _, counts in hours:
                for kind in KINDS:
                    period[kind] += counts.get(kind, 0)
            out.append(
                {
                    "name": rule.name,
                    "enabled": rule.enabled,
                    "lifetime": rule.model_dump(mode="json")["lifetime"],
                    "transaction": rule.transaction,
                    "conditions": len(rule.conditions),
                    "active": dict(active.get(rule.name, {})),
                    "period": period,
                    "series": [{"at": _iso(int(h)), **c} for h, c in hours],
                }
            )
        return web.json_response({"from": _iso(start), "to": _iso(end), "rules": out})
