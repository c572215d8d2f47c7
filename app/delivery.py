"""Delivering a batch of effects to Emarsys: merged upserts, batched list actions and
triggers, deletes.

Used by the sink agent and ``replay --apply``; knows nothing of Faust. For every effect
it returns an ``Outcome`` (accepted, or failed with Emarsys's replyCode and text, or given
up), so the agent can acknowledge the batch only when each effect was accepted or
dead-lettered.

Order inside a batch, per account: contact upserts first (the contact must exist before
anything else names it, or Emarsys answers 2008), then contact-list actions, then
triggers, then deletes; a delete splits the batch so nothing queued before it is applied
after it. List actions go before triggers so that an automation program the trigger
starts already sees the list change its exit made (a program may filter on a list).

List actions (``list_add``/``list_remove``) are batched per list: one
``POST /contactlist/{id}/add|delete`` for up to 10,000 contacts, a contact once per call.
For one list, the batch's adds and removes are applied in topic order (a run of adds,
then a run of removes, ...), so the list ends as the effects say. Both calls are
idempotent (adding a member, or removing a non-member, changes nothing), so a retried
call or a redelivered effect is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.config.model import EmarsysConfig
from app.emarsys.auth import TokenError
from app.emarsys.batching import TRIGGER_MAX_BYTES, chunk, merge_contacts
from app.emarsys.client import (
    LIST_MAX_IDS,
    EmarsysClient,
    EmarsysRejected,
    EmarsysUnavailable,
    ListResult,
)

log = logging.getLogger("emd.delivery")


@dataclass
class Outcome:
    effect: dict[str, Any]
    ok: bool
    code: int | None = None
    text: str = ""
    given_up: bool = False  # retries exhausted (Emarsys unavailable), not a refusal

    def record(self) -> dict[str, Any]:
        """The delivery-log entry (no secrets; the contact key is the person's own)."""
        e = self.effect
        entry: dict[str, Any] = {"op": e["op"], "ok": self.ok, "contact": e.get("contact")}
        if e["op"] == "upsert":
            entry["fields"] = e.get("fields", {})
        if e["op"] == "trigger":
            entry.update(
                rule=e.get("rule"),
                event=e.get("event"),
                trigger_id=e.get("trigger_id"),
                event_time=e.get("event_time"),
            )
        if e["op"] in LIST_OPS:
            entry.update(
                rule=e.get("rule"),
                list=e.get("list"),
                trigger_id=e.get("trigger_id"),
                event_time=e.get("event_time"),
            )
        if not self.ok:
            entry.update(code=self.code, text=self.text, given_up=self.given_up)
        return entry


class Clients:
    """One Emarsys client per account, rebuilt when the account's Emarsys config changes."""

    def __init__(self, factory: Callable[[str, EmarsysConfig], EmarsysClient] = EmarsysClient):
        self._factory = factory
        self._clients: dict[str, tuple[EmarsysConfig, EmarsysClient]] = {}

    async def get(self, account: str, cfg: EmarsysConfig) -> EmarsysClient:
        held = self._clients.get(account)
        if held is not None and held[0] == cfg:
            return held[1]
        if held is not None:
            await held[1].close()
        client = self._factory(account, cfg)
        await client.start()
        self._clients[account] = (cfg, client)
        return client

    async def close(self) -> None:
        for _, client in self._clients.values():
            await client.close()
        self._clients.clear()


LIST_OPS = ("list_add", "list_remove")


def _failure(exc: BaseException) -> tuple[int | None, str, bool]:
    if isinstance(exc, EmarsysRejected):
        # No replyCode: the HTTP status stands in, unless it was a success (a name that
        # resolved to nothing is refused by us, not by Emarsys: no code to show).
        code = exc.reply_code
        if code is None and exc.status >= 300:
            code = exc.status
        return code, exc.reply_text, False
    if isinstance(exc, EmarsysUnavailable):
        return exc.last_status, f"gave up: {exc.reason}", True
    if isinstance(exc, TokenError):
        return getattr(exc, "status", None), f"authentication failed: {exc}", False
    if isinstance(exc, ValueError | TypeError):
        return None, f"not sent: {exc}", False
    raise exc


async def deliver(
    effects: list[dict[str, Any]],
    configs: Callable[[str], EmarsysConfig | None],
    clients: Clients,
) -> list[Outcome]:
    """Deliver ``effects`` (in topic order); one ``Outcome`` per effect."""
    outcomes: list[Outcome] = []
    by_account: dict[str, list[dict[str, Any]]] = {}
    for e in effects:
        by_account.setdefault(e.get("account", ""), []).append(e)
    for account, items in by_account.items():
        cfg = configs(account)
        if cfg is None:
            outcomes += [Outcome(e, False, None, f"unknown account {account!r}") for e in items]
            continue
        client = await clients.get(account, cfg)
        segment: list[dict[str, Any]] = []
        for e in items:
            if e.get("op") == "delete":
                outcomes += await _segment(client, cfg, segment)
                segment = []
                outcomes.append(await _delete(client, e))
            else:
                segment.append(e)
        outcomes += await _segment(client, cfg, segment)
    return outcomes


async def _segment(client: EmarsysClient, cfg: EmarsysConfig, items: list[dict[str, Any]]):
    upserts = [e for e in items if e.get("op") == "upsert"]
    lists = [e for e in items if e.get("op") in LIST_OPS]
    triggers = [e for e in items if e.get("op") == "trigger"]
    others = [e for e in items if e.get("op") not in ("upsert", "trigger", *LIST_OPS)]
    out = [Outcome(e, False, None, f"unknown effect {e.get('op')!r}") for e in others]
    out += await _upserts(client, cfg, upserts)
    out += await _lists(client, lists)
    out += await _triggers(client, triggers)
    return out


async def _upserts(client: EmarsysClient, cfg: EmarsysConfig, effects: list[dict[str, Any]]):
    if not effects:
        return []
    key = str(cfg.key_field)
    rows = merge_contacts(({**e["fields"], key: e["contact"]} for e in effects), cfg.key_field)
    parts = chunk(rows)
    by_contact: dict[str, list[dict[str, Any]]] = {}
    for e in effects:
        by_contact.setdefault(str(e["contact"]), []).append(e)
    out: list[Outcome] = []
    for row, why in parts.too_big:
        out += [Outcome(e, False, 1000, why) for e in by_contact.pop(str(row.get(key)), [])]
    for batch in parts.batches:
        batch_effects = [e for row in batch for e in by_contact.get(str(row.get(key)), [])]
        try:
            result = await client.upsert_contacts(batch)
        except (EmarsysRejected, EmarsysUnavailable, TokenError, ValueError) as exc:
            code, text, given_up = _failure(exc)
            out += [Outcome(e, False, code, text, given_up) for e in batch_effects]
            continue
        errors = {k.lower(): v for k, v in result.errors.items()}
        for e in batch_effects:
            err = result.errors.get(str(e["contact"])) or errors.get(str(e["contact"]).lower())
            out.append(Outcome(e, True) if err is None else Outcome(e, False, err[0], err[1]))
    return out


async def _triggers(client: EmarsysClient, effects: list[dict[str, Any]]):
    if not effects:
        return []
    out: list[Outcome] = []
    by_event: dict[Any, list[dict[str, Any]]] = {}
    for e in effects:
        by_event.setdefault(e["event"], []).append(e)
    for event, group in by_event.items():
        try:
            event_id = await client.resolve_event_id(event)
        except (EmarsysRejected, EmarsysUnavailable, TokenError, ValueError, TypeError) as exc:
            code, text, given_up = _failure(exc)
            out += [Outcome(e, False, code, text, given_up) for e in group]
            continue
        unique: dict[str, dict[str, Any]] = {}
        for e in group:
            unique.setdefault(e["trigger_id"], e)  # a redelivered trigger goes once
        items = [
            {
                "external_id": e["contact"],
                "trigger_id": e["trigger_id"],
                "event_time": e["event_time"],
                "data": e.get("data") or {"global": {}},
            }
            for e in unique.values()
        ]
        parts = chunk(items, max_bytes=TRIGGER_MAX_BYTES)
        failed: dict[str, tuple[int | None, str, bool]] = {}
        for item, why in parts.too_big:
            failed[item["trigger_id"]] = (5008, why, False)
        for batch in parts.batches:
            try:
                result = await client.trigger_event(event_id, batch)
            except (EmarsysRejected, EmarsysUnavailable, TokenError, ValueError) as exc:
                failure = _failure(exc)
                for item in batch:
                    failed[item["trigger_id"]] = failure
                continue
            for item in batch:
                err = result.errors.get(str(item["external_id"]))
                if err is not None:
                    failed[item["trigger_id"]] = (err[0], err[1], False)
        for e in group:
            f = failed.get(e["trigger_id"])
            out.append(Outcome(e, True) if f is None else Outcome(e, False, f[0], f[1], f[2]))
    return out


@dataclass
class _Run:
    """Consecutive effects of one op on one list: one call per ``LIST_MAX_IDS`` contacts."""

    op: str
    list_id: int
    effects: list[dict[str, Any]]


async def _lists(client: EmarsysClient, effects: list[dict[str, Any]]) -> list[Outcome]:
    if not effects:
        return []
    out: list[Outcome] = []
    resolved: dict[Any, int | tuple[int | None, str, bool]] = {}
    runs: list[_Run] = []
    open_runs: dict[int, _Run] = {}
    for e in effects:
        ref = e.get("list")
        if not e.get("contact"):
            out.append(Outcome(e, False, None, "not sent: no contact key"))
            continue
        if isinstance(ref, bool) or not isinstance(ref, int | str):
            out.append(Outcome(e, False, None, f"not sent: {ref!r} is no contact list"))
            continue
        if ref not in resolved:
            try:
                resolved[ref] = await client.resolve_list_id(ref)
            except (EmarsysRejected, EmarsysUnavailable, TokenError) as exc:
                resolved[ref] = _failure(exc)
        found = resolved[ref]
        if isinstance(found, tuple):
            out.append(Outcome(e, False, *found))
            continue
        run = open_runs.get(found)
        if run is None or run.op != e["op"]:
            run = open_runs[found] = _Run(e["op"], found, [])
            runs.append(run)
        run.effects.append(e)
    for run in runs:
        out += await _list_run(client, run)
    return out


async def _list_run(client: EmarsysClient, run: _Run) -> list[Outcome]:
    by_contact: dict[str, list[dict[str, Any]]] = {}
    for e in run.effects:
        by_contact.setdefault(str(e["contact"]), []).append(e)
    contacts = list(by_contact)
    call = client.add_to_list if run.op == "list_add" else client.remove_from_list
    out: list[Outcome] = []
    for i in range(0, len(contacts), LIST_MAX_IDS):
        part = contacts[i : i + LIST_MAX_IDS]
        try:
            result: ListResult = await call(run.list_id, part)
        except (EmarsysRejected, EmarsysUnavailable, TokenError, ValueError) as exc:
            code, text, given_up = _failure(exc)
            out += [Outcome(e, False, code, text, given_up) for c in part for e in by_contact[c]]
            continue
        folded = {k.lower(): v for k, v in result.errors.items()}
        for c in part:
            err = result.errors.get(c) or folded.get(c.lower())
            for e in by_contact[c]:
                out.append(Outcome(e, True) if err is None else Outcome(e, False, err[0], err[1]))
    return out


async def _delete(client: EmarsysClient, effect: dict[str, Any]) -> Outcome:
    try:
        await client.delete_contact(str(effect["contact"]))
    except (EmarsysRejected, EmarsysUnavailable, TokenError) as exc:
        code, text, given_up = _failure(exc)
        return Outcome(effect, False, code, text, given_up)
    return Outcome(effect, True)


async def close_quietly(clients: Clients) -> None:
    try:
        await asyncio.wait_for(clients.close(), 5)
    except Exception:  # shutting down: nothing more to do
        log.debug("closing Emarsys clients failed", exc_info=True)
