"""The Emarsys sink: batches effects, calls Emarsys, reports each outcome.

Consumes emarsys-effects (keyed by contact, so a contact's upsert precedes its trigger)
with ``take()``: up to ``sink.batch_size`` effects or ``sink.flush_interval`` seconds.
Faust acknowledges a ``take()`` batch only after the loop body returns, so offsets are
committed once every effect was accepted by Emarsys or dead-lettered: at least once.
Retrying happens inside the body (the client's backoff, up to ``retry_for``), which also
stops the sink from pulling more while Emarsys is down: memory stays bounded.

Outcomes go back to the person agent (``dlv`` on person-events) for the delivery log and
the acknowledged fields; the sink itself writes no table (``take()`` cannot).
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from agents.common import log, send_dead_letter
from app import keys
from app.delivery import Clients, Outcome, close_quietly, deliver
from app.emarsys.client import EmarsysClient
from app.envelope import dumps, loads, now_iso
from app.faust_app import CONFIG, RUNTIME, app, effects_topic, person_topic


def _call_counter(account: str):
    def count(method: str, path: str, status: int | None, code: int | None) -> None:
        parts = [p for p in path.split("/") if p and not p.isdigit()]
        RUNTIME.metrics.inc(
            "emd_emarsys_calls_total",
            account=account,
            call=f"{method} /{'/'.join(parts[:2])}",
            status=str(status) if status is not None else "error",
        )

    return count


CLIENTS = Clients(
    lambda account, cfg: EmarsysClient(account, cfg, on_response=_call_counter(account))
)
BACKLOG = {"effects": 0}
#: The latest deliveries of each account handled by this worker's sink (in memory).
RECENT_DELIVERIES: dict[str, deque[dict[str, Any]]] = defaultdict(lambda: deque(maxlen=500))

RUNTIME.metrics.gauge("emd_sink_backlog", lambda: {(): float(BACKLOG["effects"])})


def _config(account: str):
    acct = RUNTIME.accounts.get(account)
    return acct.config.emarsys if acct is not None else None


@app.agent(effects_topic, name="sink")
async def sink_agent(stream):
    try:
        async for batch in stream.take(CONFIG.sink.batch_size, within=CONFIG.sink.flush_interval):
            effects: list[dict[str, Any]] = []
            for raw in batch:
                try:
                    effects.append(loads(raw))
                except Exception:
                    await send_dead_letter("sink", "effect is not valid JSON", raw=raw)
            BACKLOG["effects"] = len(effects)
            try:
                outcomes = await deliver(effects, _config, CLIENTS)
            except Exception as exc:
                log.exception("delivering a batch failed")
                outcomes = [
                    Outcome(e, False, None, f"internal error: {type(exc).__name__}")
                    for e in effects
                ]
            for outcome in outcomes:
                await report(outcome)
            BACKLOG["effects"] = 0
    finally:
        await close_quietly(CLIENTS)


async def report(outcome: Outcome) -> None:
    e = outcome.effect
    account = e.get("account", "")
    RUNTIME.metrics.inc(
        "emd_emarsys_contacts_total",
        account=account,
        op=str(e.get("op")),
        outcome="ok" if outcome.ok else ("gave_up" if outcome.given_up else "failed"),
    )
    entry = outcome.record()
    entry["at"] = now_iso()
    RECENT_DELIVERIES[account].appendleft({**entry, "person": e.get("person")})
    if e.get("person"):
        await person_topic.send(
            key=keys.key(account, e["person"]),
            value=dumps({"k": "dlv", "a": account, "p": e["person"], **entry}),
        )
    if not outcome.ok:
        reason = f"Emarsys {e.get('op')} failed"
        if outcome.code is not None:
            reason += f" (replyCode {outcome.code})"
        reason += f": {outcome.text}"
        await send_dead_letter("sink", reason, account=account, payload=e)
