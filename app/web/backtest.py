"""``POST /api/accounts/{account}/replay``: a rule set, saved or not, run over history.

Reads the input topic with its own consumer (never the workers' group or state) and runs
the replay driver on fresh state with the edited data maps and rules: what the console's
"Test against history" shows. Runs in a thread so the worker keeps processing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from app.config.live import apply_edit
from app.config.loader import ConfigError
from app.runtime import Runtime
from app.web.admin import guard, problems_body, read_json
from app.web.deadletters import BROKER_ERRORS, broker_unavailable
from app.web.errors import error
from app.web.funnel import _parse

MAX_LINES = 5000
BODY_KEYS = ("data_maps", "rules", "from", "to")


def run_backtest(config: Any, account: str, broker: str, topic: str, start, end):
    from app.replay.driver import Replay
    from app.replay.topic import topic_items

    replay = Replay(config, account=account)
    lines: list[dict[str, Any]] = []
    with topic_items(broker, topic, start, end) as items:
        for raw, acct in items:
            if (acct or config.fallback_account()) != account:
                continue
            lines += replay.feed(raw, account)
    # A backtest asks what would have happened by the end of the period (or now), so the
    # clock runs on to there: waits that ended after the last event still fire.
    if replay.clock is not None:
        lines += replay.advance(min(end, time.time()))
    lines += replay.finish()
    summary = lines.pop() if lines and lines[-1].get("kind") == "summary" else {}
    return lines, summary


class BacktestApi:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/accounts/{account}/replay", self.replay)]

    async def replay(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        denied = guard(self.runtime, request, account)
        if denied:
            return denied
        body = await read_json(request, self.runtime)
        if not isinstance(body, dict):
            return error(400, "the body must be a JSON object")
        unknown = sorted(set(body) - set(BODY_KEYS))
        if unknown:
            return error(400, f"{unknown[0][:40]}: not a replay field (data_maps, rules, from, to)")
        for name in ("from", "to"):
            if body.get(name) is not None and not isinstance(body[name], str):
                return error(400, f"{name}: must be an ISO 8601 time (a string)")
        edit = {k: body[k] for k in ("data_maps", "rules") if k in body}
        try:
            config = apply_edit(self.runtime.config, account, edit)
            end = _parse(body.get("to"), time.time() + 1)
            start = _parse(body.get("from"), 0.0) if body.get("from") else None
        except ConfigError as exc:
            return error(400, "invalid config", "invalid_config", problems=problems_body(exc))
        except ValueError:
            return error(400, "from/to must be ISO 8601 times")
        started = time.monotonic()
        try:
            lines, summary = await asyncio.to_thread(
                run_backtest,
                config,
                account,
                self.runtime.broker_url,
                self.runtime.config.input_topic,
                start,
                end,
            )
        except BROKER_ERRORS as exc:
            return broker_unavailable(exc)
        truncated = len(lines) > MAX_LINES
        return web.json_response(
            {
                "lines": lines[:MAX_LINES],
                "truncated": truncated,
                "summary": summary,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
