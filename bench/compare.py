"""``make bench-compare BASE=<rev>``: this tree against another revision, rounds alternating.

    python -m bench.compare --base REV [--rounds 5] [--events 20000] [--stages-only]

On a shared 2-core machine one ``make bench`` run of the app's row varies by ±20 % from
run to run (neighbours, the broker sharing the cores, which fetch the timer starts on),
so a 5 % change cannot be seen in it. This runs the same measurement for both trees in
turn, ``rounds`` times (base, this, base, this, ...), each in a fresh process with its own
broker, and prints the median of each and their ratio, with the spread:

- ``pipeline``: the app's row of ``make bench`` (``bench.run.pipeline``: a worker and the
  Emarsys simulator, events/s until the person stage has every event);
- ``end_to_end``: the same run until Emarsys acknowledged every effect and the sink
  reported it back (``make bench``'s "through the sink" row);
- ``stages``: the CPU seconds of ``bench.core.bench_stages`` (the identity and person
  stages in memory, no broker), the least of three, with the collector frozen and off as
  in a worker between its collections: the pure work, without the machine's noise.

The base is checked out in a temporary git worktree and run with this tree's virtualenv
(its dependencies must be the same), its core compiled when this tree's is
(``build_native.py``); it needs ``bench.run.pipeline`` and
``bench.core.bench_stages`` as they are in this round's revisions. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.worktree import checkout

ROOT = Path(__file__).resolve().parents[1]


def one(root: str, n: int, stages_only: bool = False) -> dict[str, float]:
    """One measurement of the tree at ``root`` (run in a process of its own)."""
    import asyncio
    import contextlib
    import gc
    import shutil
    import time
    import uuid

    sys.path.insert(0, root)
    os.chdir(root)
    from app.broker import EmbeddedBroker, free_port
    from app.topics import ensure_topics
    from bench import run as bench_run
    from bench.account import ACCOUNT
    from bench.core import bench_stages
    from bench.events import encode, generate

    messages = generate(n, max(1, min(10_000, n // 2)))
    gc.collect()
    gc.freeze()
    gc.disable()
    cpu = []
    for _ in range(3):
        start = time.process_time()
        bench_stages(messages)
        cpu.append(time.process_time() - start)
        gc.collect()
    gc.enable()
    if stages_only:
        return {"stages_cpu_s": min(cpu)}
    logs = Path(tempfile.mkdtemp(prefix="emd-compare-"))
    broker = EmbeddedBroker(port=free_port(), log_path=str(logs / "tansu.log"))
    cleanup: list[Any] = []
    try:
        broker.start()
        topic = f"bench-events-{uuid.uuid4().hex[:8]}"
        asyncio.run(ensure_topics(broker.url, {topic: bench_run.PARTITIONS}))
        asyncio.run(bench_run.produce(broker.bootstrap, topic, encode(messages, ACCOUNT)))
        result = bench_run.pipeline(broker.url, topic, n, logs, cleanup)
    finally:
        for fn in reversed(cleanup):
            with contextlib.suppress(Exception):
                fn()
        broker.stop()
        shutil.rmtree(logs, ignore_errors=True)
    return {
        "pipeline": result["events_per_s"],
        "end_to_end": result["end_to_end_events_per_s"],
        "stages_cpu_s": min(cpu),
    }


def _run_one(root: Path, n: int, stages_only: bool) -> dict[str, float]:
    cmd = [sys.executable, "-m", "bench.compare", "--one", str(root), "--events", str(n)]
    out = subprocess.run(
        [*cmd, "--stages-only"] if stages_only else cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"measuring {root} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _summary(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):,.2f} (min {min(values):,.2f}, max {max(values):,.2f})"
    )


def compare(base: str, rounds: int, n: int, stages_only: bool = False) -> dict[str, Any]:
    from app import native

    results: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
    # like with like: the base's core compiled too when this tree's is
    with checkout(base, compiled=native.compiled()) as (tree, compiled):
        if native.compiled() and not compiled:
            print(
                f"[compare] {base} cannot compile its core: its sources against this "
                "tree's compiled core (EMD_NATIVE=0 make bench-compare for sources on both)",
                file=sys.stderr,
            )
        for i in range(rounds):
            for label, root in (("base", tree), ("this", ROOT)):
                r = _run_one(root, n, stages_only)
                results[label].append(r)
                pipe = (
                    f"pipeline {r['pipeline']:,.0f} events/s, "
                    f"through the sink {r['end_to_end']:,.0f}, "
                    if "pipeline" in r
                    else ""
                )
                print(
                    f"[compare] round {i + 1}/{rounds} {label}: {pipe}"
                    f"stages {r['stages_cpu_s']:.3f} CPU s",
                    file=sys.stderr,
                    flush=True,
                )
    out: dict[str, Any] = {"base": base, "rounds": rounds, "events": n}
    for key in ("stages_cpu_s",) if stages_only else ("pipeline", "end_to_end", "stages_cpu_s"):
        b = [r[key] for r in results["base"]]
        t = [r[key] for r in results["this"]]
        out[key] = {"base": b, "this": t, "ratio": statistics.median(t) / statistics.median(b)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--base", default="HEAD", help="the revision to compare with (default HEAD)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument(
        "--stages-only", action="store_true", help="only the stages' CPU (no broker, fast)"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.one:
        print(json.dumps(one(ns.one, ns.events, ns.stages_only)))
        return 0
    r = compare(ns.base, ns.rounds, ns.events, ns.stages_only)
    s = r["stages_cpu_s"]
    print(f"{r['rounds']} rounds, {r['events']:,} events, base {r['base']} vs this tree")
    if "pipeline" in r:
        p = r["pipeline"]
        print(f"pipeline events/s: base {_summary(p['base'])}; this {_summary(p['this'])}")
        print(f"  this / base: {p['ratio']:.3f}")
        e = r["end_to_end"]
        print(
            "through the sink (until Emarsys acknowledged every effect) events/s: "
            f"base {_summary(e['base'])}; this {_summary(e['this'])}"
        )
        print(f"  this / base: {e['ratio']:.3f}")
    print(f"stages CPU s: base {_summary(s['base'])}; this {_summary(s['this'])}")
    print(f"  speed this / base: {1 / s['ratio']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
