"""Person-events records travel in bundles, one per destination partition and transaction
(``app.stages.bundle``): far fewer records on the topic, the same items in the same order,
and a bundle that cannot be read is dead-lettered with the reason, never dropped."""

from __future__ import annotations

import orjson

from agents.pipeline import _labels
from app import keys
from app.account import Accounts
from app.batching.partition import Partitioner
from app.config import load_config_text
from app.envelope import dumps
from app.metrics import Metrics
from app.recent import RecentEvents
from app.stages.bundle import MAX_BYTES, bundle, unbundle
from app.stages.link import LinkStage
from app.stages.person import PersonStage
from app.stages.state import DEAD, EFFECTS, INPUT, PERSON, DictTables, LocalRecord, Output, Record
from tests.live_sim import LiveSim, partition_of, replay_rows
from tests.unit.test_handoff import BASE, CONFIG, journey, replay_of


def part(key: bytes) -> int:
    return partition_of(key, 4)


def person_output(who: str, kind: str = "pk", **extra: object) -> Output:
    body = {"k": kind, "a": "acme", "p": who, **extra}
    return Output(PERSON, keys.key("acme", who), dumps(body))


def items_by_partition(outputs: list[Output]) -> dict[int, list[tuple[bytes, dict]]]:
    """What each partition's person stage reads of ``outputs``, in order."""
    got: dict[int, list[tuple[bytes, dict]]] = {}
    for o in outputs:
        p = o.partition if o.partition is not None else part(o.key)
        records, bad = unbundle([Record(o.key, o.value, p, 0)], p)
        assert bad == []
        for r in records:
            body = r.body if isinstance(r, LocalRecord) else orjson.loads(r.value)
            got.setdefault(p, []).append((r.key, body))
    return got


def test_one_record_per_partition_with_every_item_in_order():
    outputs = [person_output(f"u:{i}", n=i) for i in range(200)]
    outputs.insert(50, Output(EFFECTS, b"acme\x1fx@example.com", b'{"op":"upsert"}'))
    sent = bundle(outputs, part)
    people = [o for o in sent if o.topic == PERSON]
    assert len(people) == len({part(o.key) for o in outputs if o.topic == PERSON}) == 4
    assert [o for o in sent if o.topic == EFFECTS] == [outputs[50]]  # other topics as they are
    expected: dict[int, list[tuple[bytes, dict]]] = {}
    for o in outputs:
        if o.topic == PERSON:
            expected.setdefault(part(o.key), []).append((o.key, orjson.loads(o.value)))
    assert items_by_partition(people) == expected


def test_a_lone_record_is_sent_as_it_is_and_large_ones_split():
    lone, other = person_output("u:lone"), Output(DEAD, b"acme", b"{}")
    assert bundle([other, lone], part) == [other, lone]
    big = [person_output("u:same", "ev", m={"x": "y" * 3000}, n=i) for i in range(60)]
    sent = bundle(big, part)
    assert len(sent) > 1  # 60 x 3 KB: more than one bundle's bytes
    assert all(len(o.value) <= MAX_BYTES + 64 for o in sent)
    got = items_by_partition(sent)[part(big[0].key)]
    assert [body["n"] for _, body in got] == list(range(60))
    huge = person_output("u:same", "state", state={"x": "y" * MAX_BYTES})
    sent = bundle([big[0], huge, big[1], big[2]], part)
    assert huge in sent  # larger than a bundle: as it is, in its place
    got = items_by_partition(sent)[part(big[0].key)]
    assert [(body["k"], body.get("n")) for _, body in got] == [
        ("ev", 0),
        ("state", None),
        ("ev", 1),
        ("ev", 2),
    ]


def test_records_with_an_explicit_partition_or_other_topics_are_not_bundled():
    explicit = Output(PERSON, b"acme\x1fu:a", b'{"k":"pk"}', partition=3)
    dead = Output(DEAD, b"acme", b'{"reason":"x"}')
    assert bundle([explicit, dead], part) == [explicit, dead]


def stage() -> PersonStage:
    accounts = Accounts(load_config_text(CONFIG))
    partitioner = Partitioner(4)
    link = LinkStage(lambda: accounts, Metrics(), lambda: 86400.0, partitioner)
    return PersonStage(lambda: accounts, Metrics(), RecentEvents(), link, partitioner, None)


def test_an_unreadable_bundle_is_dead_lettered_and_the_rest_of_the_fetch_applied():
    ids = [f"pk:{i}@example.com" for i in range(40)]
    x, y, z = [i for i in ids if part(keys.key("acme", i)) == part(keys.key("acme", ids[0]))][:3]
    good = bundle(
        [person_output(x, "pk", person="u:u1"), person_output(y, "pk", person="u:u2")], part
    )
    p = good[0].partition
    assert p is not None and len(good) == 1
    broken = b'{"k":"b","i":[{"k":"pk","a":"acme"'  # cut short
    item = orjson.dumps({"k": "pk", "a": "acme", "p": z, "person": "u:u3"})
    not_items = b'{"k":"b","i":[' + item + b",42]}"
    records = [
        Record(b"", broken, p, 0),
        Record(b"", not_items, p, 1),
        Record(b"", good[0].value, p, 2),
    ]
    tables = DictTables()
    out = stage().handle_fetched(p, records, tables, BASE)
    dead = [orjson.loads(o.value) for o in out if o.topic == DEAD]
    reasons = [d["reason"] for d in dead]
    assert "a bundle of person-events records that is not valid JSON" in reasons
    assert "an item of a bundle of person-events records is not an object" in reasons
    assert dead[reasons.index("a bundle of person-events records that is not valid JSON")][
        "raw"
    ].startswith('{"k":"b"')
    index = tables("pkindex", p).data
    assert index[keys.key("acme", x)] == b"u:u1"  # the good bundle applied
    assert index[keys.key("acme", y)] == b"u:u2"
    assert index[keys.key("acme", z)] == b"u:u3"  # the second bundle's good item


def test_crash_labels_see_inside_a_bundle():
    sent = bundle([person_output("u:a", "state"), person_output("u:b", "pk")], part)
    assert {"state", "pk"} <= _labels(sent)


def test_a_journey_sends_few_person_event_records_and_fires_as_replay():
    """2,000 visitors who identify: the hand-off's records travel bundled (at most one per
    partition and batch), and the triggers are still replay's."""
    sim = LiveSim(load_config_text(CONFIG), partitions=4)
    sim.now = BASE + 4000
    events = [e for i in range(200) for e in journey(i, BASE + i)]
    for e in events:
        sim.ingest(e, "acme")
    for tp in [tp for tp in sim.pending() if tp[0] == INPUT]:
        sim.step(tp, 10_000)  # each input partition in one fetch
    queued = [r for (topic, _), q in sim.queues.items() if topic == PERSON for r in q]
    items = [i for r in queued for i in unbundle([r], r.partition)[0]]
    # the visitors' events, the link requests and the delivery reports, 3/4 elsewhere ...
    assert len(items) >= 500
    # ... in one record per fetch and person partition, and one of the sink's per call
    assert len(queued) <= 4 * 4 * 2
    sim.drain()
    assert len(sim.triggers) == 200
    assert sim.trigger_rows() == replay_rows(replay_of(events))
