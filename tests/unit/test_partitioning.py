"""Where keys live: an anonymous visitor's person with its input key, and the upgrade.

``app.keys.partition_bytes``: the person ``a:<id>`` is hashed as ``<id>``, the key its
events arrive with, so the identity stage hands a visitor's event to the person stage in
the same transaction. State and records written before (every key hashed as it is) are
moved by the new version: persons and links found in the wrong partition when a
partition is first used, person-events records read in the wrong partition, input
records written to the wrong partition (also by producers with another partitioner).
"""

from __future__ import annotations

import random

import orjson
import rocksdict
from aiokafka.partitioner import DefaultPartitioner, murmur2

from app import keys
from app.batching.partition import Partitioner, ProducerPartitioner
from app.batching.state import PartitionState
from app.stages.relocation import is_meta
from app.stages.state import INPUT, PERSON
from tests.live_sim import LiveSim, replay_contacts, replay_rows
from tests.unit.test_handoff import BASE, cfg, journey, msg, replay_of

PARTITIONS = 4


def legacy(key: bytes) -> int:
    """The partitioner of the versions before: every key hashed as it is."""
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


#: the versions before, as the app builds their partitioner
OLD = Partitioner(PARTITIONS, as_before=True)


def test_an_anonymous_person_lives_in_the_partition_of_its_input_key():
    part = Partitioner(PARTITIONS)
    moved = 0
    for i in range(200):
        anon = f"anon-{i}"
        person_key = keys.key("acme", keys.anon_person(anon))
        assert part(person_key) == part(keys.key("acme", anon))
        moved += legacy(person_key) != part(person_key)
    assert moved > 100  # about 3/4 of them lived elsewhere before
    # every other key is hashed as it is, as aiokafka's DefaultPartitioner does
    for key in (b"acme\x1fu:u1", b"acme\x1fk:a:x@example.com", b"acme\x1fm:1", b"acme", b""):
        assert part(key) == legacy(key)
    assert keys.partition_bytes(b"acme\x1fa:a:x") == b"acme\x1fa:x"  # the first prefix only


def test_fausts_producer_partitions_as_the_batch_path():
    ours, producer = Partitioner(8), ProducerPartitioner()
    everyone = list(range(8))
    for i in range(300):
        for key in (f"acme\x1fa:v{i}".encode(), f"acme\x1fu:{i}".encode(), f"x{i}".encode()):
            assert producer(key, everyone, everyone) == ours(key)
    plain = b"acme\x1fu:user-1"
    assert producer(plain, everyone, everyone) == DefaultPartitioner()(plain, everyone, everyone)
    assert producer(None, everyone, [3]) == 3  # no key: an available partition


def test_an_anonymous_visitors_event_is_applied_in_the_same_transaction():
    sim = LiveSim(cfg(), partitions=PARTITIONS)
    sim.now = BASE + 10
    sim.ingest(msg("track", BASE, "m1", anonymousId="v1", event="Viewed Pricing"), "acme")
    (tp,) = sim.pending()
    sim.step(tp, 10)
    assert sim.pending() == []  # nothing went through person-events
    stored = sim.tables("persons", tp[1]).data
    record = orjson.loads(stored[b"acme\x1fa:v1"])
    assert record["rules"]["r"]["viewed-then-signed-up"]["i"]  # the rule began here


def test_an_input_record_on_another_partition_than_its_key_is_resent_once():
    """A producer whose partitioner is not murmur2 (librdkafka's default is CRC32)."""
    sim = LiveSim(cfg(), partitions=PARTITIONS)
    sim.now = BASE + 10
    message = msg("track", BASE, "m1", anonymousId="v1", event="Viewed Pricing")
    key = keys.key("acme", "v1")
    wrong = (sim.partition_of(key) + 1) % PARTITIONS
    sim._append(INPUT, key, orjson.dumps(message), wrong)
    sim.step((INPUT, wrong), 10)
    # neither applied nor remembered where it does not belong
    assert b"acme\x1fa:v1" not in sim.tables("persons", wrong).data
    assert sim.tables("dedupe", wrong).data == {} and sim.tables("links", wrong).data == {}
    assert sim.pending() == [(INPUT, sim.partition_of(key))]
    sim.drain()
    assert b"acme\x1fa:v1" in sim.tables("persons", sim.partition_of(key)).data


def test_prefix_scans_of_a_rocksdb_partition(tmp_path):
    db = rocksdict.Rdict(str(tmp_path / "db"))
    for key in (b"acme\x1fa:1", b"acme\x1fa:2", b"acme\x1fb", b"acmf\x1fa:3", b"__offset__"):
        db[key] = b"v"
    state = PartitionState(db, 0, b"__offset__")
    assert [k for k, _ in state.items(b"acme\x1fa:")] == [b"acme\x1fa:1", b"acme\x1fa:2"]
    assert len(list(state.items())) == 4  # the offset key is never an entry
    db.close()


def _misplaced(sim: LiveSim, table: str) -> list[bytes]:
    """Keys of ``table`` stored in another partition than the new version's."""
    part = Partitioner(PARTITIONS)
    return [
        key
        for (name, p), t in sim.tables.tables.items()
        if name == table
        for key in t.data
        if not is_meta(key) and part(key) != p
    ]


def _upgrade_midway(seed: int, crash_chance: float = 0.0) -> tuple[LiveSim, list[dict]]:
    """60 visitors begin anonymously under the old partitioner; the new version starts
    with some of their identifies read by the identity stage but not yet by the person
    stage; the rest of their journeys come after. 20 more visitors never identify: a
    coupon wait that began anonymously ends while they still are."""
    sim = LiveSim(cfg(), partitions=PARTITIONS, seed=seed, started=False)
    sim.upgrade(OLD, None)
    journeys = [journey(i, BASE + i) for i in range(60)]
    loners = [
        msg(
            "track",
            BASE + i,
            f"l{i}",
            anonymousId=f"l{i}",
            event="Coupon Entered",
            properties={"coupon": f"C{i}"},
        )
        for i in range(20)
    ]
    sim.now = BASE + 100
    for j in journeys:
        sim.ingest(j[0], "acme")
    for m in loners:
        sim.ingest(m, "acme")
    sim.drain()  # every visitor has a person of its own, where the old version put it
    for j in journeys[:30]:
        sim.ingest(j[1], "acme")
    for tp in [tp for tp in sim.pending() if tp[0] == INPUT]:
        sim.step(tp, 1000)  # read by the identity stage; the person-events records wait
    assert any(tp[0] == PERSON for tp in sim.pending())
    assert _misplaced(sim, "persons")  # what the upgrade has to move
    sim.upgrade(Partitioner(PARTITIONS), OLD)
    for j in journeys[30:]:
        sim.ingest(j[1], "acme")
    for j in journeys:
        sim.ingest(j[2], "acme")
    sim.now = BASE + 200
    sim.run_random(crash_chance=crash_chance)
    sim.settle(BASE + 10 * 86400)
    return sim, [m for j in journeys for m in j] + loners


def test_an_upgrade_moves_anonymous_visitors_and_their_rules_go_on_as_replay():
    sim, events = _upgrade_midway(seed=1)
    lines = replay_of(events)
    assert sim.trigger_rows() == replay_rows(lines)
    assert len([r for r in sim.trigger_rows() if r[1] is not None]) == 60  # every signup
    assert len([r for r in sim.trigger_rows() if r[1] is None]) == 20  # every loner's wait
    assert sim.contacts == replay_contacts(lines)
    assert _misplaced(sim, "persons") == []
    assert _misplaced(sim, "deliveries") == []
    assert sim.metrics.value("emd_relocated_total", table="persons") > 0
    assert sim.metrics.value("emd_relocation_parked_total") > 0  # the race was there


def test_an_upgrade_survives_crashes_while_it_moves_state():
    for seed in range(3):
        sim, events = _upgrade_midway(seed=seed, crash_chance=0.3)
        assert sim.trigger_rows() == replay_rows(replay_of(events)), seed
        assert _misplaced(sim, "persons") == [], seed


def test_a_visitors_event_that_overtakes_its_moving_state_waits_for_it():
    """The visitor's next event reaches the new partition before the old one moved the
    visitor's state: it waits (parked) and applies to the state once it arrived; a
    second copy of the move (the old partition crashed before deleting) merges in as a
    hand-off does, which changes nothing."""
    sim, anon, person_key = _upgraded_visitor()
    new_p, old_p = sim.partition_of(person_key), legacy(person_key)
    sim.ingest(msg("track", BASE + 5, "m2", anonymousId=anon, event="Coupon Entered"), "acme")
    sim.step((INPUT, new_p), 10)  # the new event first, on an empty record
    sim.tick_partition(old_p)  # the old partition's first use: it moves the visitor
    moves = list(sim.queues[(PERSON, new_p)])
    assert moves
    # a second copy: the old partition sent it again after a crash before its delete
    sim.queues[(PERSON, new_p)].extend(moves)
    sim.drain()
    record = orjson.loads(sim.tables("persons", new_p).data[person_key])
    rules = record["rules"]["r"]
    assert len(rules["viewed-then-signed-up"]["i"]) == 1  # from before the upgrade, once
    assert len(rules["coupon-no-order"]["i"]) == 1  # from after it
    assert person_key not in sim.tables("persons", old_p).data


def _moves(key: bytes) -> bool:
    """Whether the upgrade moves ``key`` to another partition."""
    return legacy(key) != Partitioner(PARTITIONS)(key)


def _upgraded_visitor() -> tuple[LiveSim, str, bytes]:
    """A visitor who viewed pricing under the old version, whose state the upgrade
    moves, just after the upgrade: (the simulation, the anonymousId, its person key)."""
    sim = LiveSim(cfg(), partitions=PARTITIONS, started=False)
    sim.upgrade(OLD, None)
    anon = next(f"v{i}" for i in range(100) if _moves(keys.key("acme", keys.anon_person(f"v{i}"))))
    sim.now = BASE + 10
    sim.ingest(msg("track", BASE, "m1", anonymousId=anon, event="Viewed Pricing"), "acme")
    sim.drain()
    sim.upgrade(Partitioner(PARTITIONS), OLD)
    return sim, anon, keys.key("acme", keys.anon_person(anon))


def test_a_link_of_an_id_beginning_with_a_colon_prefix_is_moved():
    sim = LiveSim(cfg(), partitions=PARTITIONS, started=False)
    sim.upgrade(OLD, None)
    ident = next(f"a:x{i}" for i in range(100) if _moves(keys.key("acme", f"a:x{i}")))
    key = keys.key("acme", ident)
    sim.now = BASE + 10
    sim.ingest(msg("identify", BASE, "m1", anonymousId=ident, userId="u1"), "acme")
    sim.drain()
    assert sim.tables("links", legacy(key)).data[key] == b"u1"
    sim.upgrade(Partitioner(PARTITIONS), OLD)
    for p in random.Random(0).sample(range(PARTITIONS), PARTITIONS):
        sim.tick_partition(p)
    sim.drain()
    assert sim.tables("links", sim.partition_of(key)).data[key] == b"u1"
    assert key not in sim.tables("links", legacy(key)).data


def test_a_new_deployment_waits_for_no_notice():
    """The first start: no partition has said it is done yet, but every visitor is new
    (the identity stage marks a visitor's first event), so nothing waits, and whatever
    the order the outcome is replay's."""
    events = [e for i in range(30) for e in journey(i, BASE + i)]
    for seed in range(3):
        sim = LiveSim(cfg(), partitions=PARTITIONS, seed=seed, started=False)
        sim.now = BASE + 200
        for e in events:
            sim.ingest(e, "acme")
        sim.run_random()
        sim.settle(BASE + 10 * 86400)
        assert sim.trigger_rows() == replay_rows(replay_of(events)), seed
        parks = [
            key
            for (name, _), t in sim.tables.tables.items()
            if name == "persons"
            for key, raw in t.data.items()
            if b'"park"' in raw
        ]
        assert parks == [], seed
        assert sim.metrics.value("emd_person_events_total", kind="reloc") > 0
        assert sim.metrics.value("emd_relocation_parked_total") == 0


def test_a_parked_message_applies_after_park_max_when_no_notice_comes():
    """The visitor's old partition never says it is done (it is not used): the parked
    event still applies, PARK_MAX later, on the clock."""
    from app.stages.relocation import PARK_MAX

    sim, anon, person_key = _upgraded_visitor()
    new_p = sim.partition_of(person_key)
    sim.ingest(msg("track", BASE + 5, "m2", anonymousId=anon, event="Coupon Entered"), "acme")
    sim.step((INPUT, new_p), 10)
    assert sim.metrics.value("emd_relocation_parked_total") == 1
    sim.now += PARK_MAX - 1
    sim.tick_partition(new_p)
    assert b'"park"' in sim.tables("persons", new_p).data[person_key]  # still waiting
    sim.now += 2
    sim.tick_partition(new_p)
    record = orjson.loads(sim.tables("persons", new_p).data[person_key])
    assert record["rules"]["r"]["coupon-no-order"]["i"]  # applied at last
