"""The compiled core (``build_native.py``, ``app.native``): same decisions as the
sources, and never a stale build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import native
from bench.events import generate

ROOT = Path(__file__).resolve().parents[2]

# Runs in a process of its own (EMD_PURE decides at import): replay and the worker's
# stages over the same events, with a fixed clock; prints a digest of every output.
DECIDE = r"""
import hashlib, json, sys
import orjson
from app import delivery_log, native
from app.account import Accounts
from app.batching.partition import Partitioner
from app.config.model import Config
from app.metrics import Metrics
from app.recent import RecentEvents
from app.replay.driver import Replay
from app.stages.flow import PartitionFlow
from app.stages.link import LinkStage
from app.stages.person import PersonStage
from app.stages.state import PERSON, DictTables, Record
from bench.account import ACCOUNT, account_dict
from bench.events import encode

def stable(topic_or_table, value):
    # without the wall-clock stamps of dead letters and delivery log entries
    if topic_or_table == "dead":
        body = orjson.loads(value)
        body.pop("at", None), body.pop("ts", None)
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    if topic_or_table == "deliveries":
        entries = delivery_log.entries(value)
        for entry in entries:
            entry.pop("at", None)
        return orjson.dumps(entries, option=orjson.OPT_SORT_KEYS)
    return value

messages = json.load(open(sys.argv[1]))
now = float(sys.argv[2])
digest = hashlib.sha1()
cfg = Config.model_validate({"accounts": {ACCOUNT: account_dict()}})
replay = Replay(cfg, ACCOUNT)
for m in messages:
    for line in replay.feed(m):
        digest.update(orjson.dumps(line, option=orjson.OPT_SORT_KEYS))
for line in replay.finish():
    digest.update(orjson.dumps(line, option=orjson.OPT_SORT_KEYS))
accounts = Accounts(cfg)
part = Partitioner(4)
link = LinkStage(lambda: accounts, Metrics(), lambda: cfg.dedupe_window, part)
flow = PartitionFlow(link, PersonStage(lambda: accounts, Metrics(), RecentEvents(), link, part, Partitioner(4, as_before=True)), part)
tables = DictTables()
pending = [Record(k, v, flow.partition_of(k), i) for i, (k, v) in enumerate(encode(messages, ACCOUNT))]
rounds = 0
while pending and rounds < 20:
    rounds += 1
    sent = []
    for p in range(4):
        records = [r for r in pending if r.partition == p]
        if records:
            step = flow.input if rounds == 1 else flow.person_events
            sent += step(p, records, tables, now + rounds)
    for o in sent:
        digest.update(o.topic.encode() + o.key + stable(o.topic, o.value))
    pending = [Record(o.key, o.value, flow.partition_of(o.key), i) for i, o in enumerate(sent) if o.topic == PERSON]
for p in range(4):
    for o in flow.clock(p, tables, now + 3600 * 49):
        digest.update(o.topic.encode() + o.key + stable(o.topic, o.value))
for (name, p), table in sorted(tables.tables.items()):
    for k, v in sorted(table.data.items()):
        digest.update(name.encode() + k + stable(name, v))
print(json.dumps({"compiled": native.compiled(), "digest": digest.hexdigest(), "rounds": rounds}))
"""


def _decide(events: Path, now: float, pure: bool) -> dict[str, object]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop(native.PURE_ENV, None)
    if pure:
        env[native.PURE_ENV] = "1"
    out = subprocess.run(
        [sys.executable, "-c", DECIDE, str(events), str(now)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.skipif(not native.compiled(), reason="the core is not compiled (make native)")
def test_compiled_core_decides_exactly_as_the_sources(tmp_path: Path) -> None:
    """Replay and the stages over 1,500 events (identity, hand-offs, data maps, rules, the
    clock): every output and every table entry, byte for byte."""
    events = tmp_path / "events.json"
    events.write_text(json.dumps(generate(1500, 600)))
    now = time.time()
    compiled = _decide(events, now, pure=False)
    sources = _decide(events, now, pure=True)
    assert compiled["compiled"] is True and sources["compiled"] is False
    assert compiled["rounds"] == sources["rounds"] and int(str(compiled["rounds"])) > 2
    assert compiled["digest"] == sources["digest"]


def test_a_process_asked_for_the_sources_imports_them() -> None:
    env = {**os.environ, native.PURE_ENV: "1"}
    code = "import app.person, app.native as n; print(app.person.__file__, n.compiled())"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    path, compiled = out.stdout.split()
    assert path.endswith("app/person.py") and compiled == "False"


def _tree(tmp_path: Path, with_extensions: tuple[str, ...]) -> Path:
    suffix = native._SUFFIXES[0]
    for module in native.MODULES:
        source = tmp_path / module
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("")
        os.utime(source, (1_000_000, 1_000_000))
        if module in with_extensions:
            ext = source.with_name(source.stem + suffix)
            ext.write_bytes(b"")
            os.utime(ext, (1_000_100, 1_000_100))
    return tmp_path


def test_no_build_is_not_stale(tmp_path: Path) -> None:
    assert native.stale(_tree(tmp_path, ())) == []


def test_a_complete_build_newer_than_its_sources_is_used(tmp_path: Path) -> None:
    assert native.stale(_tree(tmp_path, native.MODULES)) == []


def test_an_edited_source_or_a_missing_extension_makes_the_build_stale(tmp_path: Path) -> None:
    root = _tree(tmp_path, native.MODULES[1:])
    assert native.stale(root) == [native.MODULES[0]]
    edited = root / native.MODULES[3]
    os.utime(edited, (1_000_200, 1_000_200))
    assert native.stale(root) == [native.MODULES[0], native.MODULES[3]]


def test_files_installed_in_one_go_are_not_stale(tmp_path: Path) -> None:
    """pip writes a wheel's files in turn: a source may be a little newer than its
    extension without an edit in between."""
    root = _tree(tmp_path, native.MODULES)
    source = root / native.MODULES[0]
    os.utime(source, (1_000_101, 1_000_101))
    assert native.stale(root) == []


def test_an_extension_of_a_module_no_longer_compiled_makes_the_build_stale(
    tmp_path: Path,
) -> None:
    """A build of an older module list leaves extensions whose code the new shared
    library no longer has: importing one would fail."""
    root = _tree(tmp_path, native.MODULES)
    left = root / "app" / "batching" / ("sender" + native._SUFFIXES[0])
    left.parent.mkdir(parents=True, exist_ok=True)
    left.write_bytes(b"")
    assert native.stale(root) == ["app/batching/sender.py"]
