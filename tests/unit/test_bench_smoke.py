"""The bench's pure-core part runs (tiny sizes, no broker); speed is never asserted."""

from __future__ import annotations

import gc

from app.segment.model import parse_message
from bench.core import run_core
from bench.events import encode, generate, mix


def test_generated_events_are_valid_segment_messages() -> None:
    messages = generate(300, 100)
    assert len(messages) == 300
    for m in messages:
        parse_message(m)
    assert set(mix(messages)["types"]) == {"identify", "page", "track"}
    assert all(key.startswith(b"bench\x1f") for key, _ in encode(messages, "bench"))


def test_core_returns_positive_rates_and_expected_keys() -> None:
    thresholds = gc.get_threshold()
    result = run_core(
        events=200, users=50, rule_sets=((20, 2), (40, 2)), rule_events=50, min_seconds=0.0
    )
    assert set(result) == {
        "rules",
        "datamaps",
        "person",
        "stages",
        "stages_worker_gc",
        "stages_returning",
        "stage_work",
        "replay",
    }
    assert result["stages_returning"]["events_per_s"] > 0
    # the row under the worker's collector settings puts the process's own back
    assert result["stages_worker_gc"]["person_records"] == result["stages"]["person_records"]
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0
    work = result["stage_work"]
    assert work["loads"] > 0 and work["dumps"] > 0 and work["loads_bytes"] > work["loads"]
    assert result["stages"]["events_per_s"] > 0 and result["stages"]["person_records"] > 0
    for rs in result["rules"]:
        assert rs["events_per_s"] > 0
        assert rs["evaluations_per_event"] == rs["matching"] == 2
    assert result["datamaps"]["data_maps"] == 20
    assert result["datamaps"]["events_per_s"] > 0
    person = result["person"]
    assert person["events_per_s"] > 0
    state = person["state"]
    assert state["persons"] > 0
    assert 0 < state["bytes_p50"] <= state["bytes_max"]


def test_sampled_profile_puts_each_stack_in_its_first_matching_layer(tmp_path) -> None:
    from bench.sampling import summarize

    raw = tmp_path / "worker.spy"
    raw.write_text(
        "main (app/cli.py:1);_drain_once (app/batching/consumer.py:2);"
        "PersonStage._one (app/stages/person.py:3);JsonView.get (app/stages/state.py:4) 30\n"
        "main (app/cli.py:1);_drain_once (app/batching/consumer.py:2);"
        "PersonStage._one (app/stages/person.py:3);apply_event (app/person.py:5) 50\n"
        "main (app/cli.py:1);Transaction.commit (app/batching/transaction.py:6) 15\n"
        "main (app/cli.py:1);_find_and_load (<frozen importlib._bootstrap>:7) 5\n"
    )
    out = summarize(raw)
    assert out["samples"] == 100
    assert out["layers"] == {
        "person stage (person-events records, the clock)": 0.5,
        "person records: JSON in and out (JsonView)": 0.3,
        "commit: send, changelog, RocksDB write": 0.15,
        "start-up (imports, opening RocksDB)": 0.05,
    }
    assert out["top"][0] == {"function": "apply_event (app/person.py:5)", "own_share": 0.5}


def test_every_counted_workload_runs_its_set_up_and_its_work() -> None:
    """``make bench-count`` runs these under valgrind; here, without it, each must run."""
    import gc
    import os
    from pathlib import Path

    from bench.instructions import WORKLOADS, child

    root = str(Path(__file__).resolve().parents[2])
    cwd = os.getcwd()
    try:
        for workload in WORKLOADS:
            for full in (False, True):
                child(root, workload, 250, full)
    finally:  # child() is made for a process of its own
        gc.enable()
        gc.unfreeze()
        os.chdir(cwd)


def test_native_profile_groups_shared_objects_and_keeps_compiled_functions(
    tmp_path, monkeypatch
) -> None:
    """``perf report``'s text (faked here: perf samples a live worker) read into parts,
    the functions with most samples of their own, and the compiled ones with callees."""
    import subprocess
    from types import SimpleNamespace

    from bench import native_profile

    reports = {
        "dso": "    56.50%  libpython3.11.so.1.0\n    12.00%  orjson.cpython-311.so\n"
        "     6.50%  native__mypyc.cpython-311-x86_64-linux-gnu.so\n"
        "     5.00%  [kernel.kallsyms]\n     0.50%  _heapq.cpython-311.so\n",
        "dso,sym": "     6.35%  libpython3.11.so.1.0  [.] _PyObject_Malloc\n"
        "     2.47%  orjson.cpython-311.so  [.] 0x0000000000014ae0\n",
        "sym": "    41.69%     0.09%  [.] CPyDef_stages___person___PersonStage___handle\n"
        "    30.00%     0.00%  [.] task_step\n    11.58%     0.03%  [.] loads\n",
    }

    def fake_run(cmd, **kwargs):
        return SimpleNamespace(stdout=reports[cmd[cmd.index("--sort") + 1]])

    monkeypatch.setattr(subprocess, "run", fake_run)
    out = native_profile.summarize(tmp_path / "worker.perf")
    assert out is not None
    assert out["parts"] == {
        "CPython (dicts, objects, allocation, interpreted Python)": 0.565,
        "orjson (JSON)": 0.12,
        "the compiled core (mypyc)": 0.065,
        "kernel (sockets, page faults, scheduling)": 0.05,
        "other C extensions": 0.005,
    }
    assert out["top"][0] == {
        "function": "_PyObject_Malloc",
        "in": "libpython3.11.so.1.0",
        "share": 0.0635,
    }
    assert [t["function"] for t in out["inclusive"]] == [
        "CPyDef_stages___person___PersonStage___handle",
        "loads",
    ]
