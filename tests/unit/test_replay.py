"""``replay``: rules.md's worked cases through the driver, identity, dedupe, rejects, output
formats, --apply, progress and speed."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.account import Accounts
from app.config import load_config_text
from app.config.model import EmarsysConfig
from app.delivery import Clients
from app.emarsys.client import ContactResult, ListResult, TriggerResult
from app.replay.cli import Progress, apply_effects, replay_main
from app.replay.driver import ALIAS_LINKS_NOTHING, NO_CLOCK, NO_IDENTIFIER, Replay, effect_of

RULE_NAME = "Coupon entered but did not complete order"
EMAIL = "ann@example.com"

ACCOUNT_YAML = """\
  acme:
    api_keys: ["acme-key"]
    primary_key: context.traits.email
    emarsys:
      api_url: http://127.0.0.1:9/api/v3
      auth: oauth2
      token_url: http://127.0.0.1:9/oauth2/token
      client_id: cid
      client_secret: csecret
      key_field: 3
    data_maps:
      - {name: email, path: context.traits.email, type: string, field: 3}
      - {name: first_name, path: traits.firstName, type: string, field: 1}
      - {name: ecom_event, path: event, type: string}
      - {name: ecom_revenue, path: properties.revenue, type: numeric}
      - {name: cart_id, path: properties.cart_id, type: string}
      - {name: coupon, path: properties.coupon, type: string}
    rules:
      - name: Coupon entered but did not complete order
        lifetime: 48h
        multiple_active: false
        transaction: cart_id
        enabled: true
        conditions:
          - {sequence: 0, type: start, on: track, match: 'ecom_event = "Coupon Entered"'}
          - {sequence: 0, type: exclude, on: track, match: 'ecom_event = "Order Completed"'}
          - {sequence: 1, type: exit, wait: 1h, trigger: 1234, variables: [coupon, ecom_revenue]}
      - name: Viewed then added
        lifetime: 48h
        conditions:
          - {sequence: 0, type: start, on: track, match: 'ecom_event = "Product Viewed"'}
          - {sequence: 1, type: step, on: track, within: 30m, match: 'ecom_event = "Product Added"'}
          - {sequence: 2, type: exit, trigger: 999}
"""

CONFIG_YAML = "accounts:\n" + ACCOUNT_YAML
BETA_YAML = ACCOUNT_YAML.replace("  acme:", "  beta:").replace("acme-key", "beta-key")


def config(text: str = CONFIG_YAML):
    return load_config_text(text)


def iso(hhmm: str) -> str:
    return f"2026-01-02T{hhmm}:00Z"


def ts(hhmm: str) -> float:
    h, m = hhmm.split(":")
    return datetime(2026, 1, 2, int(h), int(m), tzinfo=UTC).timestamp()


_ids = iter(range(1, 10**9))


def track(
    event: str,
    at: str,
    *,
    user: str | None = "u1",
    anon: str | None = None,
    email: str | None = EMAIL,
    mid: str | None = None,
    **props: Any,
) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": "track",
        "event": event,
        "messageId": mid or f"m{next(_ids)}",
        "timestamp": iso(at),
        "properties": props,
    }
    if user is not None:
        msg["userId"] = user
    if anon is not None:
        msg["anonymousId"] = anon
    if email is not None:
        msg["context"] = {"traits": {"email": email}}
    return msg


def coupon(at: str, cart: str = "c1", code: str = "SAVE10", **kw: Any) -> dict[str, Any]:
    return track("Coupon Entered", at, cart_id=cart, coupon=code, revenue=42.5, **kw)


def order(at: str, cart: str = "c1", **kw: Any) -> dict[str, Any]:
    return track("Order Completed", at, cart_id=cart, **kw)


def clock_event(at: str) -> dict[str, Any]:
    """Another user's event: only moves the replay clock."""
    return track("Ping", at, user="clock-user", email=None)


def run_all(events: list[Any], cfg=None, **kw: Any) -> list[dict[str, Any]]:
    replay = Replay(cfg or config(), **kw)
    lines: list[dict[str, Any]] = []
    for e in events:
        lines += replay.feed(orjson.dumps(e) if isinstance(e, dict) else e)
    return lines + replay.finish()


def of_kind(lines: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["kind"] == kind]


def summary(lines: list[dict[str, Any]]) -> dict[str, Any]:
    assert lines[-1]["kind"] == "summary"
    return lines[-1]


# --------------------------------------------------------------------------- worked cases


def test_case1_trigger_an_hour_later_with_coupon_once_the_clock_passes():
    lines = run_all([coupon("10:00"), clock_event("12:00")])
    [trig] = of_kind(lines, "trigger")
    assert trig["at"] == trig["event_time"] == iso("11:00")
    assert trig["rule"] == RULE_NAME
    assert trig["external_event"] == 1234
    assert trig["contact"] == EMAIL
    assert trig["user_id"] == "u1"
    assert trig["data"] == {"global": {"coupon": "SAVE10", "ecom_revenue": 42.5}}
    assert len(trig["trigger_id"]) == 40
    assert "undeliverable" not in trig
    s = summary(lines)
    assert s["triggers"] == 1
    assert s["transitions"]["started"] == 1
    assert s["transitions"]["triggered"] == 1
    assert s["clock"] == iso("12:00")


def test_case1_without_a_later_event_nothing_fires():
    lines = run_all([coupon("10:00")])
    assert of_kind(lines, "trigger") == []
    s = summary(lines)
    assert s["triggers"] == 0
    assert s["transitions"]["started"] == 1
    assert s["clock"] == iso("10:00")


def test_case1_clock_exactly_at_the_deadline_fires():
    lines = run_all([coupon("10:00"), clock_event("11:00")])
    assert [t["at"] for t in of_kind(lines, "trigger")] == [iso("11:00")]


def test_case2_order_before_the_hour_excludes():
    lines = run_all([coupon("10:00"), order("10:30"), clock_event("12:00")])
    assert of_kind(lines, "trigger") == []
    assert summary(lines)["transitions"]["excluded"] == 1


def test_case3_order_after_the_hour_comes_too_late():
    replay = Replay(config())
    replay.feed(orjson.dumps(coupon("10:00")))
    out = replay.feed(orjson.dumps(order("11:30")))
    [trig] = of_kind(out, "trigger")
    assert trig["at"] == iso("11:00")
    assert replay.finish()[-1]["transitions"]["excluded"] == 0


def test_case4_second_coupon_does_not_open_a_second_instance():
    lines = run_all(
        [coupon("10:00", code="FIRST"), coupon("10:10", code="SECOND"), clock_event("12:00")]
    )
    [trig] = of_kind(lines, "trigger")
    assert trig["at"] == iso("11:00")
    assert trig["data"]["global"]["coupon"] == "FIRST"
    assert summary(lines)["transitions"]["started"] == 1


def test_case5_anonymous_coupon_then_identify_triggers_to_that_email():
    events = [
        coupon("10:00", user=None, anon="anon-1", email=None),
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "anon-1",
            "messageId": "id-1",
            "timestamp": iso("10:20"),
            "traits": {"firstName": "Ann"},
            "context": {"traits": {"email": EMAIL}},
        },
        clock_event("11:30"),
    ]
    lines = run_all(events)
    [trig] = of_kind(lines, "trigger")
    assert trig["at"] == iso("11:00")
    assert trig["contact"] == EMAIL
    assert trig["user_id"] == "u1"
    assert trig["data"]["global"]["coupon"] == "SAVE10"
    s = summary(lines)
    assert s["undeliverable"] == 0
    assert s["persons"] == 2  # u1 (the anonymous visitor merged into it) and the clock user


def test_case5_without_identify_the_trigger_is_undeliverable():
    lines = run_all([coupon("10:00", user=None, anon="anon-1", email=None), clock_event("11:30")])
    [trig] = of_kind(lines, "trigger")
    assert trig["contact"] is None
    assert "no primary key value" in trig["undeliverable"]
    assert "context.traits.email" in trig["undeliverable"]
    s = summary(lines)
    assert (s["triggers"], s["undeliverable"]) == (0, 1)


def test_case6_step_after_its_window_expires_the_instance():
    lines = run_all(
        [
            track("Product Viewed", "10:00"),
            track("Product Added", "10:40"),
            clock_event("12:00"),
        ]
    )
    assert of_kind(lines, "trigger") == []
    s = summary(lines)
    assert s["transitions"]["expired"] == 1
    assert s["transitions"]["advanced"] == 0


def test_case6_step_inside_its_window_triggers_at_once():
    lines = run_all([track("Product Viewed", "10:00"), track("Product Added", "10:20")])
    [trig] = of_kind(lines, "trigger")
    assert trig["external_event"] == 999
    assert trig["at"] == iso("10:20")
    assert summary(lines)["transitions"]["advanced"] == 1


# --------------------------------------------------------------------------- identity


def test_alias_links_the_anonymous_instance_to_the_user():
    events = [
        coupon("10:00", user=None, anon="anon-7", email=None),
        {
            "type": "alias",
            "previousId": "anon-7",
            "userId": "u7",
            "messageId": "al-1",
            "timestamp": iso("10:05"),
        },
        {
            "type": "identify",
            "userId": "u7",
            "messageId": "id-7",
            "timestamp": iso("10:10"),
            "context": {"traits": {"email": "u7@example.com"}},
        },
        clock_event("11:30"),
    ]
    lines = run_all(events)
    [trig] = of_kind(lines, "trigger")
    assert (trig["contact"], trig["user_id"]) == ("u7@example.com", "u7")
    assert summary(lines)["undeliverable"] == 0


def test_alias_of_an_old_user_id_moves_its_contact_and_later_events():
    events = [
        coupon("10:00", user="old", email="old@example.com"),
        {
            "type": "alias",
            "previousId": "old",
            "userId": "new",
            "messageId": "al-2",
            "timestamp": iso("10:05"),
        },
        order("10:30", user="old", email=None),  # resolved to "new": excludes the instance
        clock_event("12:00"),
    ]
    lines = run_all(events)
    assert of_kind(lines, "trigger") == []
    assert summary(lines)["transitions"]["excluded"] == 1


def test_event_for_a_merged_person_follows_its_forward():
    # After the alias, u:old is {"fwd": "u:new"}; an event resolved to u:old (its
    # anonymousId is new, so no link redirects it) lands on u:new, as live forwards it.
    events = [
        {
            "type": "identify",
            "userId": "old",
            "messageId": "i-old",
            "timestamp": iso("09:00"),
            "context": {"traits": {"email": "old@example.com"}},
        },
        {
            "type": "alias",
            "previousId": "old",
            "userId": "new",
            "messageId": "al-3",
            "timestamp": iso("09:05"),
        },
        coupon("10:00", user="old", anon="device-2", email=None),
        clock_event("12:00"),
    ]
    lines = run_all(events)
    [trig] = of_kind(lines, "trigger")
    assert trig["contact"] == "old@example.com"
    assert summary(lines)["persons"] == 2  # u:new and the clock user; u:old forwards


def test_event_is_applied_before_the_merged_state_as_live():
    # The identifying event is an Order Completed: live, it reaches the user's partition
    # before the anonymous state does, so it cannot exclude the merged instance.
    events = [
        coupon("10:00", user=None, anon="anon-2", email=None),
        order("10:30", user="u2", anon="anon-2", email="u2@example.com"),
        clock_event("12:00"),
    ]
    lines = run_all(events)
    [trig] = of_kind(lines, "trigger")
    assert trig["contact"] == "u2@example.com"


def test_forwarding_loop_is_rejected_not_spun():
    replay = Replay(config())
    replay.persons[("acme", "u:x")] = {"fwd": "u:y"}
    replay.persons[("acme", "u:y")] = {"fwd": "u:x"}
    out = replay.feed(orjson.dumps(coupon("10:00", user="x")))
    assert [(line["kind"], line["reason"]) for line in out] == [
        ("rejected", "identity forwarding loop")
    ]


def test_delete_forgets_the_person_and_reports_the_contact():
    events = [
        coupon("10:00"),
        {"type": "delete", "userId": "u1", "messageId": "del-1", "timestamp": iso("10:10")},
        {"type": "delete", "userId": "ghost", "messageId": "del-2", "timestamp": iso("10:11")},
        clock_event("12:00"),
    ]
    lines = run_all(events)
    [deleted] = of_kind(lines, "contact_delete")
    assert deleted == {
        "kind": "contact_delete",
        "at": iso("10:10"),
        "account": "acme",
        "contact": EMAIL,
    }
    assert of_kind(lines, "trigger") == []  # the person and its instance are gone
    s = summary(lines)
    assert s["contact_deletes"] == 1
    assert s["persons"] == 1


# --------------------------------------------------------------------------- dedupe, rejects


def test_duplicate_message_id_is_skipped_and_counted():
    first = coupon("10:00", mid="dup")
    again = dict(first, timestamp=iso("10:05"))
    lines = run_all([first, again, coupon("10:06", mid="other", cart="c2")])
    assert len(of_kind(lines, "contact_update")) == 1
    s = summary(lines)
    assert s["deduped"] == 1
    assert s["events"] == 3
    assert s["transitions"]["started"] == 2  # c1 once, c2 once


def test_duplicate_outside_the_dedupe_window_counts_again():
    cfg = config("dedupe_window: 1h\n" + CONFIG_YAML)
    first = track("Ping", "10:00", mid="same")
    lines = run_all(
        [first, dict(first, timestamp=iso("10:30")), dict(first, timestamp=iso("12:00"))], cfg
    )
    assert summary(lines)["deduped"] == 1


def test_rejected_lines_name_the_reason_and_the_line():
    bad_time = coupon("10:00", mid="bt")
    bad_time["timestamp"] = "yesterday"
    lines = run_all(
        [
            b"{not json",
            b"",
            orjson.dumps({"type": "track", "event": "X", "messageId": "no-ids"}),
            orjson.dumps(bad_time),
            orjson.dumps(track("X", "10:00", user="null", email=None, mid="junk")),
            orjson.dumps(
                {"type": "alias", "previousId": "a", "userId": "a", "sentAt": iso("10:00")}
            ),
            orjson.dumps({"type": "launch", "userId": "u1"}),
        ]
    )
    rejected = of_kind(lines, "rejected")
    by_line = {r["line"]: r for r in rejected}
    assert set(by_line) == {1, 3, 4, 5, 6, 7}
    assert by_line[1]["reason"].startswith("not valid JSON")
    assert by_line[1]["message_id"] is None
    assert by_line[3]["reason"] == "userId or anonymousId is required"
    assert by_line[3]["message_id"] == "no-ids"
    assert by_line[4]["reason"].startswith("timestamp: 'yesterday' is not an ISO 8601")
    assert by_line[5]["reason"] == NO_IDENTIFIER
    assert by_line[5]["message_id"] == "junk"
    assert by_line[6]["reason"] == ALIAS_LINKS_NOTHING
    assert by_line[7]["reason"].startswith("type: unknown type 'launch'")
    assert all(r["account"] == "acme" for r in rejected)
    s = summary(lines)
    assert s["rejected"] == 6
    assert s["events"] == 6  # the blank line is no event
    assert s["clock"] is None  # rejected inputs do not move the clock


def test_unknown_or_missing_account_is_rejected():
    two = config("accounts:\n" + ACCOUNT_YAML + BETA_YAML)
    replay = Replay(two)
    [r1] = replay.feed(orjson.dumps(coupon("10:00")))
    assert r1["kind"] == "rejected"
    assert "no default_account" in r1["reason"]
    [r2] = replay.feed(orjson.dumps(coupon("10:00")), account="nope")
    assert r2["reason"] == "unknown account 'nope'"
    ok = replay.feed(orjson.dumps(coupon("10:00")), account="beta")
    assert [line["kind"] for line in ok] == ["contact_update"]
    assert ok[0]["account"] == "beta"


def test_event_without_timestamp_takes_the_replay_clock():
    no_time = {"type": "track", "event": "Coupon Entered", "userId": "u1", "messageId": "nt"}
    no_time["properties"] = {"cart_id": "c1", "coupon": "Z"}
    no_time["context"] = {"traits": {"email": EMAIL}}
    replay = Replay(config())
    [r] = replay.feed(orjson.dumps(no_time))
    assert r["reason"] == NO_CLOCK
    replay.feed(orjson.dumps(clock_event("10:00")))
    assert replay.feed(orjson.dumps(dict(no_time, messageId="nt2")))[0]["at"] == iso("10:00")
    lines = replay.feed(orjson.dumps(clock_event("11:00"))) + replay.finish()
    [trig] = of_kind(lines, "trigger")
    assert (trig["at"], trig["data"]["global"]["coupon"]) == (iso("11:00"), "Z")


# --------------------------------------------------------------------------- lines


def test_contact_updates_carry_the_key_field_and_only_changed_fields():
    def identify(at: str, first: str, mid: str) -> dict[str, Any]:
        return {
            "type": "identify",
            "userId": "u1",
            "messageId": mid,
            "timestamp": iso(at),
            "traits": {"firstName": first},
            "context": {"traits": {"email": EMAIL}},
        }

    lines = run_all(
        [
            identify("10:00", "Ann", "i1"),
            identify("10:01", "Bob", "i2"),
            identify("10:02", "Bob", "i3"),
        ]
    )
    updates = of_kind(lines, "contact_update")
    assert updates == [
        {
            "kind": "contact_update",
            "at": iso("10:00"),
            "account": "acme",
            "contact": EMAIL,
            "fields": {"3": EMAIL, "1": "Ann"},
        },
        {
            "kind": "contact_update",
            "at": iso("10:01"),
            "account": "acme",
            "contact": EMAIL,
            "fields": {"1": "Bob", "3": EMAIL},
        },
    ]
    assert summary(lines)["contact_updates"] == 2


def test_lines_come_in_send_time_order_across_persons_and_instances():
    events = [
        coupon("10:00", user="u1", cart="A"),
        coupon("10:20", user="u2", cart="X", email="u2@example.com"),
        coupon("10:45", user="u1", cart="B"),
        track("Ping", "13:00", user="u3", email="u3@example.com"),  # an update at 13:00
    ]
    lines = run_all(events)
    assert lines[-2]["kind"] == "contact_update" and lines[-2]["at"] == iso("13:00")
    sent = [line for line in lines if line["kind"] in ("trigger", "contact_update")]
    assert [line["at"] for line in sent] == sorted(line["at"] for line in sent)
    assert [(t["at"], t["user_id"]) for t in of_kind(lines, "trigger")] == [
        (iso("11:00"), "u1"),
        (iso("11:20"), "u2"),
        (iso("11:45"), "u1"),
    ]


def test_late_event_fires_its_past_deadline_at_once():
    replay = Replay(config())
    replay.feed(orjson.dumps(clock_event("12:00")))
    out = replay.feed(orjson.dumps(coupon("10:00")))
    assert [(line["kind"], line["at"]) for line in out] == [
        ("contact_update", iso("10:00")),
        ("trigger", iso("11:00")),
    ]
    assert replay.clock == ts("12:00")


def test_effect_of_maps_lines_to_the_sink_effects():
    lines = run_all(
        [coupon("10:00"), coupon("10:00", user="anon", email=None, cart="z"), clock_event("12:00")]
    )
    effects = [e for e in map(effect_of, lines) if e is not None]
    assert [e["op"] for e in effects] == ["upsert", "trigger"]
    assert effects[0]["fields"] == {"3": EMAIL}
    assert effects[1]["event"] == 1234
    assert effects[1]["event_time"] == iso("11:00")


def test_driver_imports_no_faust_kafka_or_http():
    code = (
        "import sys, app.replay.driver, app.replay.cli\n"
        "bad = [m for m in ('faust', 'aiokafka', 'aiohttp', 'mode') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# --------------------------------------------------------------------------- command line


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(CONFIG_YAML)
    return p


def write_events(path: Path, events: list[Any]) -> Path:
    with path.open("wb") as f:
        for e in events:
            f.write((orjson.dumps(e) if isinstance(e, dict) else e) + b"\n")
    return path


SAMPLE = [
    coupon("10:00"),
    b"garbage",
    coupon("10:10", user=None, anon="a", email=None),
    clock_event("12:00"),
]


def test_cli_jsonl(tmp_path: Path, config_file: Path, capsys):
    events = write_events(tmp_path / "e.jsonl", SAMPLE)
    rc = replay_main(["--config", str(config_file), "--file", str(events), "--format", "jsonl"])
    out, _err = capsys.readouterr()
    assert rc == 0
    lines = [orjson.loads(x) for x in out.splitlines()]
    assert [line["kind"] for line in lines] == [
        "contact_update",
        "rejected",
        "trigger",
        "trigger",
        "summary",
    ]
    assert lines[1]["line"] == 2
    assert lines[2]["contact"] == EMAIL
    assert lines[3]["undeliverable"]
    assert lines[-1]["events"] == 4


def test_cli_table(tmp_path: Path, config_file: Path, capsys):
    events = write_events(tmp_path / "e.jsonl", SAMPLE)
    rc = replay_main(["--config", str(config_file), "--file", str(events), "--format", "table"])
    out, _err = capsys.readouterr()
    assert rc == 0
    rows = out.splitlines()
    header = rows[0].split()
    assert header == ["at", "kind", "account", "contact", "details"]
    detail_col = rows[0].index("details")
    assert rows[1].startswith(iso("10:00") + "  contact_update")
    assert rows[1][detail_col:] == '{"3":"ann@example.com"}'
    assert "line 2: not valid JSON" in rows[2]
    assert rows[3][detail_col:] == (f'{RULE_NAME} → 1234 {{"coupon":"SAVE10","ecom_revenue":42.5}}')
    assert "undeliverable" in rows[4]
    assert rows[5] == ""
    assert rows[6].startswith("4 events: 3 applied, 1 rejected, 0 duplicates skipped")
    assert any("rule clock at the end: 2026-01-02T12:00:00Z" in r for r in rows)


def test_cli_is_deterministic(tmp_path: Path, config_file: Path, capsys):
    events = write_events(
        tmp_path / "e.jsonl", [*SAMPLE, coupon("12:30", cart="c9"), order("12:40", cart="c9")]
    )
    argv = ["--config", str(config_file), "--file", str(events), "--format", "jsonl"]
    assert replay_main(argv) == 0
    first = capsys.readouterr().out
    assert replay_main(argv) == 0
    second = capsys.readouterr().out
    assert first == second
    assert first.count("\n") >= 5


def test_cli_defaults_to_a_table_on_a_terminal(
    tmp_path: Path, config_file: Path, capsys, monkeypatch
):
    events = write_events(tmp_path / "e.jsonl", [coupon("10:00")])
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert replay_main(["--config", str(config_file), "--file", str(events)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["at", "kind", "account", "contact", "details"]


def test_feeding_decoded_messages_gives_the_same_lines():
    events = [
        coupon("10:00"),
        coupon("10:10", user=None, anon="a", email=None),
        clock_event("12:00"),
    ]
    as_dicts = Replay(config())
    lines = [line for e in events for line in as_dicts.feed(e)] + as_dicts.finish()
    assert lines == run_all(events)
    assert len(of_kind(lines, "trigger")) == 2


def test_cli_reads_stdin(config_file: Path, capsys, monkeypatch):
    data = orjson.dumps(coupon("10:00")) + b"\n" + orjson.dumps(clock_event("11:00")) + b"\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert replay_main(["--config", str(config_file), "--file", "-", "--format", "jsonl"]) == 0
    kinds = [orjson.loads(x)["kind"] for x in capsys.readouterr().out.splitlines()]
    assert kinds == ["contact_update", "trigger", "summary"]


def test_cli_config_from_environment(tmp_path: Path, config_file: Path, capsys, monkeypatch):
    events = write_events(tmp_path / "e.jsonl", [coupon("10:00")])
    monkeypatch.setenv("EMD_CONFIG", str(config_file))
    assert replay_main(["--file", str(events), "--format", "jsonl"]) == 0
    assert '"kind":"summary"' in capsys.readouterr().out
    monkeypatch.delenv("EMD_CONFIG")
    assert replay_main(["--file", str(events)]) == 1
    assert "no config" in capsys.readouterr().err


def test_cli_missing_file_and_bad_config(tmp_path: Path, config_file: Path, capsys):
    rc = replay_main(["--config", str(config_file), "--file", str(tmp_path / "nope.jsonl")])
    out, err = capsys.readouterr()
    assert rc == 1
    assert out == ""
    assert "cannot read" in err and "nope.jsonl" in err and "No such file" in err

    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG_YAML.replace("type: numeric", "type: number"))
    events = write_events(tmp_path / "e.jsonl", [coupon("10:00")])
    rc = replay_main(["--config", str(bad), "--file", str(events)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert out == ""
    assert "problem(s)" in err and "data_maps[3].type" in err


def test_cli_account_checks(tmp_path: Path, capsys):
    two = tmp_path / "two.yaml"
    two.write_text("accounts:\n" + ACCOUNT_YAML + BETA_YAML)
    events = write_events(tmp_path / "e.jsonl", [coupon("10:00")])
    assert replay_main(["--config", str(two), "--file", str(events)]) == 1
    assert "pass --account" in capsys.readouterr().err
    assert replay_main(["--config", str(two), "--file", str(events), "--account", "zzz"]) == 1
    assert "unknown account 'zzz'" in capsys.readouterr().err
    argv = ["--config", str(two), "--file", str(events), "--account", "beta", "--format", "jsonl"]
    assert replay_main(argv) == 0
    first = orjson.loads(capsys.readouterr().out.splitlines()[0])
    assert first["account"] == "beta"


def test_cli_20000_lines_is_fast_and_stdout_is_only_json(tmp_path: Path, config_file: Path, capsys):
    path = tmp_path / "big.jsonl"
    with path.open("wb") as f:
        for i in range(20_000):
            minute = i // 20  # 1,000 minutes from 00:00
            at = f"{minute // 60:02d}:{minute % 60:02d}"
            user = f"user{i % 500}"
            if i % 3 == 0:
                e = coupon(at, user=user, cart=f"c{i % 700}", email=f"{user}@example.com")
            elif i % 3 == 1:
                e = order(at, user=user, cart=f"c{(i + 3) % 700}", email=None)
            else:
                e = track("Page", at, user=None, anon=f"anon{i % 900}", email=None)
            f.write(orjson.dumps(e) + b"\n")
    started = time.perf_counter()
    rc = replay_main(["--config", str(config_file), "--file", str(path), "--format", "jsonl"])
    elapsed = time.perf_counter() - started
    out, err = capsys.readouterr()
    assert rc == 0
    assert elapsed < 10, f"{elapsed:.1f} s"
    rows = [orjson.loads(x) for x in out.splitlines()]
    assert all(isinstance(r, dict) and "kind" in r for r in rows)
    s = rows[-1]
    assert s["kind"] == "summary" and s["events"] == 20_000 and s["rejected"] == 0
    assert s["triggers"] > 0
    assert "replay: done: 20,000 lines" in err  # long input: progress on stderr only


# --------------------------------------------------------------------------- --apply


class FakeClient:
    calls: list[tuple[str, Any]] = []

    def __init__(self, account: str, cfg: EmarsysConfig) -> None:
        self.account = account

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def upsert_contacts(self, rows: list[dict[str, Any]]) -> ContactResult:
        FakeClient.calls.append(("upsert", rows))
        errors = {r["3"]: (2010, "bad contact") for r in rows if r["3"].startswith("bad")}
        return ContactResult([], errors)

    async def trigger_event(self, event_id: int, items: list[dict[str, Any]]) -> TriggerResult:
        FakeClient.calls.append(("trigger", (event_id, items)))
        return TriggerResult({})

    async def resolve_event_id(self, event: int | str) -> int:
        return int(event)


def test_apply_effects_batches_and_reports_failures():
    FakeClient.calls = []
    lines = run_all(
        [
            coupon("10:00"),
            coupon("10:05", user="b", email="bad@example.com", cart="b"),
            clock_event("12:00"),
        ]
    )
    effects = [e for e in map(effect_of, lines) if e is not None]
    assert [e["op"] for e in effects] == ["upsert", "upsert", "trigger", "trigger"]
    err = io.StringIO()
    accounts = Accounts(config())
    ok, failed = asyncio.run(apply_effects(effects, accounts, Clients(FakeClient), err, batch=3))
    assert (ok, failed) == (3, 1)
    assert (
        "contact update for 'bad@example.com' in acme failed (replyCode 2010): bad contact"
        in err.getvalue()
    )
    assert [c[0] for c in FakeClient.calls] == ["upsert", "trigger", "trigger"]  # 2 batches
    assert FakeClient.calls[1][1][1][0]["external_id"] == EMAIL


def test_cli_apply_sends_after_the_dry_run(tmp_path: Path, config_file: Path, capsys, monkeypatch):
    FakeClient.calls = []
    monkeypatch.setattr("app.delivery.Clients", lambda: Clients(FakeClient))
    events = write_events(tmp_path / "e.jsonl", [coupon("10:00"), clock_event("12:00")])
    argv = ["--config", str(config_file), "--file", str(events), "--format", "jsonl", "--apply"]
    assert replay_main(argv) == 0
    out, err = capsys.readouterr()
    assert [orjson.loads(x)["kind"] for x in out.splitlines()] == [
        "contact_update",
        "trigger",
        "summary",
    ]
    assert [c[0] for c in FakeClient.calls] == ["upsert", "trigger"]
    assert "2 accepted by Emarsys, 0 failed" in err

    FakeClient.calls = []
    assert replay_main(argv[:-1]) == 0  # without --apply nothing is sent
    assert FakeClient.calls == []


# --------------------------------------------------------------------------- progress


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_plain_every_5_seconds_only_for_long_inputs():
    stream = io.StringIO()
    clock = FakeClock()
    p = Progress(stream, None, tty=False, clock=clock)
    for n in range(1, 5001):
        clock.t = n * 0.01  # 50 s over the first 5,000 lines: still silent
        p.update(n, n * 100)
    assert stream.getvalue() == ""
    for n in range(5001, 6001):
        clock.t = 50 + (n - 5000) * 0.01  # 10 more seconds
        p.update(n, n * 100)
    shown = stream.getvalue().splitlines()
    assert len(shown) == 2
    assert shown[0].startswith("replay: ") and "events/s" in shown[0]
    p.done(6000, 600_000)
    assert stream.getvalue().splitlines()[-1].startswith("replay: done: 6,000 lines")


def test_progress_bar_on_a_terminal_at_most_every_200ms():
    stream = io.StringIO()
    clock = FakeClock()
    p = Progress(stream, 4_000_000, tty=True, clock=clock)  # a big file: active at once
    for n in range(1, 101):
        clock.t = n * 0.01  # one second
        p.update(n, n * 20_000)
    text = stream.getvalue()
    assert 4 <= text.count("\r") <= 5
    assert "[" in text and "MB/4.0 MB" in text
    p.done(100, 2_000_000)
    assert stream.getvalue().endswith("\n")


def test_progress_is_silent_for_short_inputs(tmp_path: Path, config_file: Path, capsys):
    events = write_events(tmp_path / "e.jsonl", [coupon("10:00")])
    assert (
        replay_main(["--config", str(config_file), "--file", str(events), "--format", "jsonl"]) == 0
    )
    assert capsys.readouterr().err == ""


def test_the_console_script_dispatches_replay(tmp_path: Path, config_file: Path, capsys):
    from app import cli

    events = write_events(tmp_path / "e.jsonl", [coupon("10:00")])
    argv = ["replay", "--config", str(config_file), "--file", str(events), "--format", "jsonl"]
    assert cli.main(argv) == 0
    kinds = [orjson.loads(x)["kind"] for x in capsys.readouterr().out.splitlines()]
    assert kinds == ["contact_update", "summary"]


# --------------------------------------------------------------------------- list actions

LIST_RULES = """\
      - name: VIP
        conditions:
          - {sequence: 0, type: start, on: track, match: 'ecom_event = "Big Order"'}
          - {sequence: 1, type: exit, wait: 1h, trigger: 1302, add_to_list: 750504659,
             remove_from_list: Cart abandoners}
      - name: Newsletter
        conditions:
          - {sequence: 0, type: start, on: track, match: 'ecom_event = "Subscribed"'}
          - {sequence: 1, type: exit, add_to_list: Newsletter subscribers}
"""
LIST_YAML = CONFIG_YAML + LIST_RULES


def test_list_actions_are_lines_in_send_order_sharing_the_exits_trigger_id():
    lines = run_all(
        [track("Big Order", "10:00"), track("Subscribed", "10:30"), clock_event("12:00")],
        config(LIST_YAML),
    )
    kinds = [(x["kind"], x["at"]) for x in lines[:-1]]
    assert kinds == [
        ("contact_update", iso("10:00")),
        ("list_add", iso("10:30")),  # the newsletter exit fires at once
        ("trigger", iso("11:00")),
        ("list_add", iso("11:00")),
        ("list_remove", iso("11:00")),
    ]
    newsletter, trig, add, remove = lines[1:5]
    assert newsletter == {
        "kind": "list_add",
        "at": iso("10:30"),
        "account": "acme",
        "rule": "Newsletter",
        "list": "Newsletter subscribers",
        "contact": EMAIL,
        "user_id": "u1",
        "event_time": iso("10:30"),
        "trigger_id": newsletter["trigger_id"],
    }
    assert (add["list"], remove["list"]) == (750504659, "Cart abandoners")
    assert add["trigger_id"] == remove["trigger_id"] == trig["trigger_id"]
    s = summary(lines)
    assert (s["triggers"], s["list_adds"], s["list_removes"], s["undeliverable"]) == (1, 2, 1, 0)
    assert s["transitions"]["triggered"] == 2  # two exits, four actions


def test_list_actions_without_a_contact_key_are_undeliverable_counted_per_exit():
    events = [
        track("Big Order", "10:00", email=None),
        track("Subscribed", "10:10", email=None),
        clock_event("12:00"),
    ]
    lines = run_all(events, config(LIST_YAML))
    actions = [x for x in lines if x["kind"] in ("trigger", "list_add", "list_remove")]
    assert [x["kind"] for x in actions] == ["list_add", "trigger", "list_add", "list_remove"]
    assert all(x["contact"] is None and "no primary key" in x["undeliverable"] for x in actions)
    assert [effect_of(x) for x in actions] == [None] * 4
    s = summary(lines)
    assert (s["undeliverable"], s["triggers"], s["list_adds"]) == (2, 0, 0)


def test_effect_of_a_list_line_is_what_the_sink_would_send():
    lines = run_all([track("Subscribed", "10:30")], config(LIST_YAML))
    line = next(x for x in lines if x["kind"] == "list_add")
    assert effect_of(line) == {
        "op": "list_add",
        "account": "acme",
        "contact": EMAIL,
        "user_id": "u1",
        "rule": "Newsletter",
        "list": "Newsletter subscribers",
        "trigger_id": line["trigger_id"],
        "event_time": iso("10:30"),
    }


def test_cli_table_shows_list_actions(tmp_path: Path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(LIST_YAML)
    events = write_events(
        tmp_path / "e.jsonl",
        [track("Subscribed", "10:30"), track("Subscribed", "10:40", user="x", email=None)],
    )
    assert replay_main(["--config", str(path), "--file", str(events), "--format", "table"]) == 0
    out = capsys.readouterr().out
    rows = out.splitlines()
    detail_col = rows[0].index("details")
    assert rows[2][detail_col:] == "Newsletter → add to list Newsletter subscribers"
    assert "list_add" in rows[2]
    assert (
        "undeliverable" in rows[3] and "add to list Newsletter subscribers (no primary" in rows[3]
    )
    assert "1 list additions, 0 list removals (1 exits undeliverable: no contact key)" in out


class ListClient(FakeClient):
    lists = {"Newsletter subscribers": 750504658, "Cart abandoners": 750504660}

    async def resolve_list_id(self, ref: int | str) -> int:
        if isinstance(ref, int):
            return ref
        return self.lists[ref]

    async def add_to_list(self, list_id: int, ids: list[str]) -> ListResult:
        FakeClient.calls.append(("add", (list_id, ids)))
        return ListResult(len(ids), {})

    async def remove_from_list(self, list_id: int, ids: list[str]) -> ListResult:
        FakeClient.calls.append(("remove", (list_id, ids)))
        return ListResult(0, {i: (2008, "No contact found") for i in ids})


def test_apply_sends_list_actions_after_the_upsert_and_reports_failures():
    FakeClient.calls = []
    lines = run_all([track("Big Order", "10:00"), clock_event("12:00")], config(LIST_YAML))
    effects = [e for e in map(effect_of, lines) if e is not None]
    assert [e["op"] for e in effects] == ["upsert", "trigger", "list_add", "list_remove"]
    err = io.StringIO()
    ok, failed = asyncio.run(
        apply_effects(effects, Accounts(config(LIST_YAML)), Clients(ListClient), err)
    )
    assert (ok, failed) == (3, 1)
    assert [c[0] for c in FakeClient.calls] == ["upsert", "add", "remove", "trigger"]
    assert FakeClient.calls[1][1] == (750504659, [EMAIL])
    assert FakeClient.calls[2][1] == (750504660, [EMAIL])
    assert err.getvalue() == (
        f"apply: remove from list Cart abandoners for '{EMAIL}' in acme failed "
        "(replyCode 2008): No contact found\n"
    )
