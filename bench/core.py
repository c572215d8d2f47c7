"""The pure core without a broker: rules, data maps, a person's record.

- ``RuleSet.on_event`` with R rules of which M match each event (start conditions on an
  event name plus a revenue test), each event on a fresh person state: the rule index
  means the cost follows M, not R (``RuleSet.evaluations`` counts the filters run).
- ``DataMaps.evaluate`` with the bench account's 20 data maps over the synthetic events.
- The person agent's work per event, without Faust: identity resolution (links in a dict),
  the record's JSON load, ``app.person.apply_event``, and the JSON dump when it changed.
- The state kept per person: bytes of each person's JSON record after all the events.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from app.account import Account, Accounts
from app.config.model import AccountConfig, DataMapConfig, RuleConfig
from app.datamaps import DataMaps
from app.envelope import dumps, loads
from app.identity import resolve
from app.person import apply_event
from app.rules.machine import EventInput, RuleSet, new_state
from app.segment.model import parse_message
from bench.account import ACCOUNT, account_dict
from bench.events import generate

DEFAULT_RULE_SETS: tuple[tuple[int, int], ...] = ((100, 10), (1000, 10), (1000, 100))


def _timed(fn: Callable[[Any], object], items: Sequence[Any], min_seconds: float) -> float:
    """Events per second of ``fn`` over ``items``, repeated until ``min_seconds`` passed."""
    done = 0
    start = time.perf_counter()
    while True:
        for item in items:
            fn(item)
        done += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def rules_workload(
    n_rules: int, matching: int, events: int = 5000, seed: int = 7
) -> tuple[RuleSet, list[EventInput]]:
    """``n_rules`` rules, ``matching`` of which start on every one of ``events`` inputs."""
    account = AccountConfig.model_validate(account_dict())
    maps = account.data_maps
    names = max(1, n_rules // matching)
    rules = [
        RuleConfig.model_validate(
            {
                "name": f"rule {r:04d}",
                "lifetime": "48h",
                "conditions": [
                    {
                        "sequence": 0,
                        "type": "start",
                        "on": "track",
                        "match": f'ecom_event = "Bench {r % names}" and ecom_revenue >= {r % 10}',
                    },
                    {
                        "sequence": 0,
                        "type": "exclude",
                        "on": "track",
                        "match": 'ecom_event = "Order Completed"',
                    },
                    {
                        "sequence": 1,
                        "type": "exit",
                        "wait": "1h",
                        "trigger": r,
                        "variables": ["coupon", "ecom_revenue"],
                    },
                ],
            }
        )
        for r in range(n_rules)
    ]
    ruleset = RuleSet(rules, maps, salt=ACCOUNT)
    dms = DataMaps(maps)
    rng = random.Random(seed)
    inputs = []
    t0 = time.time() - 3600
    for i in range(events):
        msg = {
            "type": "track",
            "event": f"Bench {rng.randrange(names)}",
            "userId": f"user-{i}",
            "messageId": f"m-{i}",
            "properties": {
                "revenue": round(rng.uniform(10, 100), 2),
                "cart_id": f"cart-{i}",
                "coupon": "WELCOME10",
            },
        }
        values, _ = dms.evaluate(msg)
        inputs.append(EventInput(msg, "track", f"m-{i}", t0 + i, values, values))
    return ruleset, inputs


def bench_rules(
    n_rules: int, matching: int, events: int = 5000, min_seconds: float = 1.0, seed: int = 7
) -> dict[str, Any]:
    """``on_event`` with ``n_rules`` rules, ``matching`` of which start on every event."""
    ruleset, inputs = rules_workload(n_rules, matching, events, seed)
    effects = 0

    def one(ev: EventInput) -> None:
        nonlocal effects
        effects += len(ruleset.on_event(new_state(), ev))

    before = ruleset.evaluations
    rate = _timed(one, inputs, min_seconds)
    runs = effects / matching if matching else 0
    return {
        "rules": n_rules,
        "matching": matching,
        "events_per_s": rate,
        "evaluations_per_event": (ruleset.evaluations - before) / runs if runs else 0.0,
        "effects_per_event": effects / runs if runs else 0.0,
    }


def bench_datamaps(messages: Sequence[dict[str, Any]], min_seconds: float = 1.0) -> dict[str, Any]:
    maps = [DataMapConfig.model_validate(d) for d in account_dict()["data_maps"]]
    dms = DataMaps(maps)
    found = sum(len(dms.evaluate(m)[0]) for m in messages)
    return {
        "data_maps": len(maps),
        "events_per_s": _timed(dms.evaluate, messages, min_seconds),
        "values_per_event": found / len(messages),
    }


def person_workload(messages: Sequence[dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """The person agent's work over ``messages`` (parsed beforehand), as a function that
    does it once on fresh state and returns its counts and the records it left."""
    account = Account(ACCOUNT, AccountConfig.model_validate(account_dict()))
    prepared = []
    for m in messages:
        parsed = parse_message(m)
        prepared.append((parsed.data, parsed.message_id, parsed.event_time.timestamp()))
    now = time.time()

    def run() -> dict[str, Any]:
        links: dict[str, str] = {}
        records: dict[str, bytes] = {}
        writes = upserts = 0
        for data, message_id, event_time in prepared:
            res = resolve(data, links.get)
            assert res is not None
            if res.link is not None:
                links[res.link[0]] = res.link[1]
            raw = records.get(res.person)
            out = apply_event(
                account,
                res.person,
                loads(raw) if raw is not None else None,
                data,
                message_id=message_id,
                event_time=event_time,
                now=now,
            )
            if out.changed:
                records[res.person] = dumps(out.record)
                writes += 1
            upserts += sum(1 for e in out.effects if e["op"] == "upsert")
        return {"records": records, "writes": writes, "upserts": upserts, "events": len(prepared)}

    return run


def _stages(partition_of: Callable[[bytes], int] | None = None) -> tuple[Any, Any, Any]:
    """(identity stage, person stage, dict tables) over the bench's account, as the
    worker builds them, with ``partition_of`` (default: the app's partitioner over 8
    partitions). Revisions whose stages take no partitioner (``bench-count`` and
    ``bench-compare`` run a base revision's app) are built without it."""
    # through sender, where revisions before app.batching.partition have it too
    from app.batching.sender import Partitioner
    from app.config.model import Config
    from app.metrics import Metrics
    from app.recent import RecentEvents
    from app.stages.link import LinkStage
    from app.stages.person import PersonStage
    from app.stages.state import DictTables

    cfg = Config.model_validate({"accounts": {ACCOUNT: account_dict()}})
    accounts = Accounts(cfg)
    metrics = Metrics()
    part = partition_of or Partitioner(8)
    try:
        before = Partitioner(8, as_before=True)
        link = LinkStage(lambda: accounts, metrics, lambda: cfg.dedupe_window, part)
        person = PersonStage(lambda: accounts, metrics, RecentEvents(), link, part, before)
    except TypeError:  # a revision before the stages took the partitioner
        link = LinkStage(lambda: accounts, metrics, lambda: cfg.dedupe_window)
        person = PersonStage(lambda: accounts, metrics, RecentEvents(), link)
    return link, person, DictTables()


def returning_history(events: int, users: int) -> list[dict[str, Any]]:
    """Messages of the same ``users`` as ``generate(events, users)``'s, a day earlier (new
    messageIds, new devices): ``bench_stages``'s ``history`` for returning customers."""
    return generate(events, users, seed=11, now=time.time() - 86400.0)


def deliveries_workload(
    reports: int, persons: int = 100, full: int = 50, batch: int = 100
) -> Callable[[], None]:
    """The person stage's work for the sink's delivery reports (``dlv`` records, one
    upsert outcome each) for returning customers, whose delivery logs are full: the logs
    are filled first (``full`` reports each, through the stage), and the function returned
    handles ``reports`` more, ``batch`` persons to a batch as a sink batch reports them."""
    from app.stages.state import Record

    _, stage, tables = _stages()
    now = time.time()

    def report(i: int) -> Record:
        user = f"user-{i % persons:05d}"
        email = f"{user}@example.com"
        entry = {
            "op": "upsert",
            "ok": True,
            "contact": email,
            "fields": {"3": email, "35": "de-AT", "4711": "/c/games"},
            "at": "2026-12-02T03:15:10.123Z",
        }
        body = {"k": "dlv", "a": ACCOUNT, "p": f"u:{user}", "items": [entry]}
        return Record(f"{ACCOUNT}\x1fu:{user}".encode(), dumps(body), 0, i)

    def handle(records: list[Record]) -> None:
        for j in range(0, len(records), batch):
            stage.handle(0, records[j : j + batch], tables, now)

    handle([report(i) for i in range(persons * full)])
    measured = [report(i) for i in range(reports)]
    return lambda: handle(measured)


def bench_person(messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The person agent's work per event, and the records it leaves behind."""
    run = person_workload(messages)
    start = time.perf_counter()
    done = run()
    elapsed = time.perf_counter() - start
    n = done["events"]
    sizes = sorted(len(v) for v in done["records"].values())
    return {
        "events_per_s": n / elapsed,
        "record_writes_per_event": done["writes"] / n,
        "upserts_per_event": done["upserts"] / n,
        "state": {
            "persons": len(sizes),
            "bytes_mean": statistics.fmean(sizes),
            "bytes_p50": sizes[len(sizes) // 2],
            "bytes_p95": sizes[int(len(sizes) * 0.95)],
            "bytes_max": sizes[-1],
            "bytes_total": sum(sizes),
        },
    }


def bench_stages(
    messages: Sequence[dict[str, Any]],
    batch: int = 500,
    history: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The worker's two stages without Faust or a broker (``app.stages``: what each
    fetch costs in decisions), as the worker runs them (``PartitionFlow``): the input
    topic's records through the identity stage and, for the persons of the same partition,
    the person stage in the same call; then the person stage over what was sent to other
    partitions; in batches per partition, with dict tables and the production lateness
    window. With ``history``, the same is done first (untimed) over those messages, two
    hours of wall clock earlier, and the clock closes every window an hour before
    ``messages`` come: the persons of ``messages`` are then returning customers."""
    # through sender, where revisions before app.batching.partition have it too (bench-count
    # runs this workload against a base revision's app)
    from app.batching.sender import Partitioner
    from app.stages.flow import PartitionFlow
    from app.stages.state import PERSON, Record
    from bench.events import encode

    partition = Partitioner(8)
    link, person, tables = _stages(partition)
    flow = PartitionFlow(link, person, partition)

    def by_partition(
        records: Sequence[tuple[bytes, bytes, int | None]],
    ) -> dict[int, list[Record]]:
        out: dict[int, list[Record]] = {}
        for i, (k, v, explicit) in enumerate(records):
            p = partition(k) if explicit is None else explicit
            out.setdefault(p, []).append(Record(k, v, p, i))
        return out

    def sent_on(outputs: list[Any]) -> dict[int, list[Record]]:
        return by_partition([(o.key, o.value, o.partition) for o in outputs if o.topic == PERSON])

    # A worker that has run a while: every partition has been used once since the
    # partitioner changed, and said so to the others (app.stages.relocation).
    notices = [o for q in range(8) for o in flow.clock(q, tables, 0.0)]
    for p, recs in sent_on(notices).items():
        flow.person_events(p, recs, tables, 0.0)

    def run(msgs: Sequence[dict[str, Any]], now: float) -> tuple[float, float, int]:
        inputs = by_partition([(k, v, None) for k, v in encode(list(msgs), ACCOUNT)])
        start = time.perf_counter()
        sent = []
        for p, recs in inputs.items():
            for i in range(0, len(recs), batch):
                sent += flow.input(p, recs[i : i + batch], tables, now)
        link_s = time.perf_counter() - start
        persons = sent_on(sent)
        start = time.perf_counter()
        for p, recs in persons.items():
            for i in range(0, len(recs), batch):
                flow.person_events(p, recs[i : i + batch], tables, now)
        return link_s, time.perf_counter() - start, sum(len(v) for v in persons.values())

    now = time.time()
    if history:
        run(history, now - 7200.0)
        for p in range(8):
            flow.clock(p, tables, now - 3600.0)
    link_s, person_s, person_records = run(messages, now)
    n = len(messages)
    return {
        "link_events_per_s": n / link_s,
        "person_events_per_s": n / person_s,
        "events_per_s": n / (link_s + person_s),
        "person_records": person_records,
    }


def bench_stages_worker_gc(messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``bench_stages`` under the worker's collector settings (``app.gc_tuning``: what
    exists frozen, the young generation collected every 50,000 net allocations), which a
    worker applies once it has started; the defaults are put back afterwards."""
    import gc

    from app import gc_tuning

    before = gc.get_threshold()
    gc_tuning.apply()
    try:
        return bench_stages(messages)
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def count_stage_work(messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The JSON the stages decode and encode per event, counted, not timed (a second,
    untimed ``bench_stages`` with orjson wrapped): on a shared machine a change under ~10 %
    cannot be timed, but the work it removes can be counted. The events' own encoding
    for the input topic is left out."""
    import orjson

    from bench.events import encode

    inputs = encode(messages, ACCOUNT)
    counts = {"loads": 0, "loads_bytes": 0, "dumps": 0, "dumps_bytes": 0}
    loads, dumps = orjson.loads, orjson.dumps

    def counting_loads(raw: Any) -> Any:
        counts["loads"] += 1
        counts["loads_bytes"] += len(raw)
        return loads(raw)

    def counting_dumps(obj: Any, *args: Any, **kwargs: Any) -> bytes:
        out = dumps(obj, *args, **kwargs)
        counts["dumps"] += 1
        counts["dumps_bytes"] += len(out)
        return out

    orjson.loads, orjson.dumps = counting_loads, counting_dumps  # type: ignore[assignment]
    try:
        bench_stages(messages)
    finally:
        orjson.loads, orjson.dumps = loads, dumps  # type: ignore[assignment]
    n = len(messages)
    counts["dumps"] -= n  # bench_stages encodes the input topic's records itself
    counts["dumps_bytes"] -= sum(len(v) for _, v in inputs)
    return {k: v / n for k, v in counts.items()}


def bench_replay(messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``replay`` over the events (identity, data maps, rules, in memory)."""
    from app.config.model import Config
    from app.replay.driver import Replay

    replay = Replay(Config.model_validate({"accounts": {ACCOUNT: account_dict()}}), ACCOUNT)
    start = time.perf_counter()
    lines = 0
    for m in messages:
        lines += len(replay.feed(m))
    lines += len(replay.finish())
    return {"events_per_s": len(messages) / (time.perf_counter() - start), "lines": lines}


def run_core(
    events: int = 20_000,
    users: int = 10_000,
    rule_sets: Sequence[tuple[int, int]] = DEFAULT_RULE_SETS,
    rule_events: int = 5000,
    min_seconds: float = 1.0,
    messages: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every pure-core measurement; ``messages`` defaults to ``generate(events, users)``."""
    msgs = list(messages) if messages is not None else generate(events, users)
    return {
        "rules": [
            bench_rules(n, m, events=rule_events, min_seconds=min_seconds) for n, m in rule_sets
        ],
        "datamaps": bench_datamaps(msgs, min_seconds=min_seconds),
        "person": bench_person(msgs),
        "stages": bench_stages(msgs),
        "stages_worker_gc": bench_stages_worker_gc(msgs),
        # the same people a day later: persons with history (the mix alone is mostly new)
        "stages_returning": bench_stages(msgs, history=returning_history(len(msgs), users)),
        "stage_work": count_stage_work(msgs),
        "replay": bench_replay(msgs),
    }
