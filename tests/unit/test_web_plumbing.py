"""Small parts of the web layer: the config document's round trip (pure), /ready's state,
the dead-letter lookup's single pass, error codes on every answer, one-line logs for
broken connections."""

from __future__ import annotations

import logging
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import http_exceptions, web
from aiohttp.test_utils import TestClient

from app.config import ConfigError, load_config_text
from app.config.live import apply_edit, edit_of, editable_view
from app.metrics import Metrics
from app.web import deadletters
from app.web.errors import ensure_code, error
from app.web.readiness import Readiness
from app.web.server import BAD_CONNECTIONS, ServerLog
from tests.servers import WorkerServer

CONFIG = load_config_text(
    """
accounts:
  acme:
    api_keys: [k]
    primary_key: context.traits.email
    emarsys: {api_url: "http://127.0.0.1:1/api/v3", client_id: c, client_secret: s}
    data_maps:
      - {name: email, path: context.traits.email, type: string, field: 3}
    rules:
      - name: R
        lifetime: 2h
        conditions:
          - {sequence: 0, type: start, on: track, match: 'event = "A"'}
          - {sequence: 1, type: exit, wait: 1h, trigger: 12}
""",
    env={},
)


# --------------------------------------------------------------------------- config document


def test_the_document_get_answers_is_a_valid_put() -> None:
    document = {"account": "acme", "version": 3, "config": editable_view(CONFIG, "acme")}
    document["config"]["data_maps"].append({"name": "plan", "path": "traits.plan"})
    edit, version = edit_of(CONFIG, "acme", document)
    assert version == 3 and set(edit) == {"data_maps", "rules"}
    new = apply_edit(CONFIG, "acme", edit)
    assert [d.name for d in new.accounts["acme"].data_maps] == ["email", "plan"]
    assert new.accounts["acme"].rules[0].lifetime == 7200  # "2h" read back


def test_the_plain_edit_still_works() -> None:
    assert edit_of(CONFIG, "acme", {"rules": [], "version": 0}) == ({"rules": []}, 0)
    assert edit_of(CONFIG, "acme", {"rules": []}) == ({"rules": []}, None)


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"account": "beta", "config": {}}, "account"),
        ({"config": {"primary_key": "userId"}}, "config.primary_key"),
        ({"config": {"api_keys": ["x"]}}, "config.api_keys"),
        ({"config": []}, "config"),
        ({"config": {}, "extra": 1}, "extra"),
        ({"rules": [], "version": "3"}, "version"),
        ({"rules": [], "version": True}, "version"),
        ({"rules": [], "version": -1}, "version"),
        ([], ""),
    ],
)
def test_what_cannot_be_put_is_located(body: Any, location: str) -> None:
    with pytest.raises(ConfigError) as err:
        edit_of(CONFIG, "acme", body)
    assert location in [p.location for p in err.value.problems]


# --------------------------------------------------------------------------- readiness


def fake_app(completed: bool, rebalancing: bool) -> Any:
    event = types.SimpleNamespace(is_set=lambda: completed)
    return types.SimpleNamespace(
        tables=types.SimpleNamespace(recovery=types.SimpleNamespace(completed=event)),
        rebalancing=rebalancing,
    )


def test_ready_needs_both_and_then_stays_ready_through_rebalances() -> None:
    loaded = {"v": False}
    app = fake_app(completed=False, rebalancing=True)
    r = Readiness(app, lambda: loaded["v"])
    assert r.state()["ready"] is False
    app.tables.recovery.completed = types.SimpleNamespace(is_set=lambda: True)
    assert r.state()["ready"] is False  # recovered, but still in the rebalance
    app.rebalancing = False
    assert r.state() == {
        "ready": False,
        "partitions_assigned": True,
        "live_config_read": False,
        "rebalancing": False,
    }
    loaded["v"] = True
    assert r.state()["ready"] is True
    app.rebalancing = True  # a later rebalance: still ready, and says so
    app.tables.recovery.completed = types.SimpleNamespace(is_set=lambda: False)
    assert r.state()["ready"] is True and r.state()["rebalancing"] is True


# --------------------------------------------------------------------------- dead letters


class FakeConsumer:
    """Partitions 0 and 1 holding offsets 100..109; counts fetches."""

    def __init__(self) -> None:
        self.fetches = 0
        self.position: dict[Any, int] = {}
        self.stopped = False

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1}

    def assign(self, tps: list[Any]) -> None:
        pass

    async def beginning_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(tps, 100)

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(tps, 110)

    def seek(self, tp: Any, offset: int) -> None:
        self.position[tp] = offset

    async def getmany(self, *tps: Any, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        self.fetches += 1
        if self.fetches == 1:
            return {}  # a fresh consumer's first fetch can come back empty
        out = {}
        for tp in tps:
            start = self.position[tp]
            recs = [
                types.SimpleNamespace(offset=o, value=b'{"account": "acme", "n": %d}' % o)
                for o in range(start, min(start + max_records, 110))
            ]
            if recs:
                out[tp] = recs
        return out

    async def stop(self) -> None:
        self.stopped = True


async def test_missing_dead_letters_are_found_missing_in_one_fetch(monkeypatch) -> None:
    consumer = FakeConsumer()
    api = deadletters.DeadLetterApi(types.SimpleNamespace(broker_url="kafka://x:1"), "dl", None)  # type: ignore[arg-type]

    async def make() -> Any:
        return consumer

    monkeypatch.setattr(api, "_consumer", make)
    wanted = [(0, 105), (1, 100), (1, 109)]
    missing = [(0, 1_000_000 + i) for i in range(25)] + [
        (1, 5),
        (7, 1),
    ]  # past end, deleted, no partition
    found = await api._fetch(wanted + missing)
    assert set(found) == set(wanted)
    assert found[(0, 105)]["n"] == 105
    assert consumer.fetches <= 5  # not one per id
    assert consumer.stopped


@pytest.mark.parametrize(
    ("ident", "parsed"),
    [
        ("3:1042", (3, 1042)),
        ("0:0", (0, 0)),
        ("0:" + "9" * 30, None),
        ("2147483648:1", None),
        ("1:-1", None),
        ("1:1:1", None),
        (" 1:1", None),
        ("1:", None),
        ("\u0661:1", None),  # an Arabic-Indic digit: isdigit() but not an id
        (5, None),
    ],
)
def test_dead_letter_ids(ident: Any, parsed: Any) -> None:
    assert deadletters.parse_id(ident) == parsed


# --------------------------------------------------------------------------- error codes


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    async def plain(request: web.Request) -> web.Response:
        return web.json_response({"message": "no such person"}, status=404)

    async def coded(request: web.Request) -> web.Response:
        return error(409, "changed", "conflict", version=2)

    async def raises(request: web.Request) -> web.Response:
        raise web.HTTPBadRequest(text="plain text reason")

    app = web.Application(middlewares=[ensure_code])
    app.router.add_get("/plain", plain)
    app.router.add_get("/coded", coded)
    app.router.add_get("/raises", raises)
    async with TestClient(WorkerServer(app)) as c:
        yield c


async def test_every_error_answer_carries_a_code(client: TestClient) -> None:
    for path, status, code in (
        ("/plain", 404, "not_found"),
        ("/coded", 409, "conflict"),
        ("/raises", 400, "bad_request"),
        ("/nowhere", 404, "not_found"),
    ):
        resp = await client.get(path)
        body = await resp.json()
        assert resp.status == status and body["code"] == code and body["message"], (path, body)
    resp = await client.post("/plain")
    assert resp.status == 405 and (await resp.json())["code"] == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]


# --------------------------------------------------------------------------- server log


def test_broken_connections_are_one_counted_line_and_bugs_keep_their_traceback(caplog) -> None:
    metrics = Metrics()
    log = ServerLog(metrics, logging.getLogger("test.server"))
    caplog.set_level(logging.DEBUG, logger="test.server")
    log.exception("Error handling request from %s", "10.1.2.3", exc_info=ConnectionResetError())
    bad = http_exceptions.BadHttpMessage("Invalid header")
    log.exception("Error handling request from %s", "10.1.2.3", exc_info=bad)
    log.debug(
        "Error handling request from %s",
        "10.1.2.3",
        exc_info=http_exceptions.BadHttpMethod("\x16"),
    )
    assert metrics.value(BAD_CONNECTIONS, reason="disconnected") == 1
    assert metrics.value(BAD_CONNECTIONS, reason="malformed") == 2
    quiet = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.levelname for r in quiet] == ["INFO", "WARNING"]
    assert all(r.exc_info is None and "10.1.2.3" not in r.getMessage() for r in quiet)
    caplog.clear()
    try:
        raise KeyError("a bug")
    except KeyError as exc:
        log.exception("Error handling request", exc_info=exc)
    (record,) = caplog.records
    assert record.levelname == "ERROR" and record.exc_info is not None
