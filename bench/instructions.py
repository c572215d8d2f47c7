"""``make bench-count [BASE=<rev>]``: the stages' work per event in instructions, counted.

    python -m bench.instructions [--events 4000] [--workloads stages,...] [--base REV]

Timing cannot resolve a change under ~10 % on a shared 2-core machine (an A/A
``make bench-compare --stages-only`` gives 1.04 x). valgrind counts the instructions a
process executes instead: the same code on the same inputs gives the same count whatever
the neighbours do (two runs differ by ~0.05 %). This runs ``bench.core.bench_stages``
(the identity and person stages as the worker runs them, no broker) under
``valgrind --tool=cachegrind`` twice, once warming up only and once over ``events``
events, and prints the difference per event: the instructions the CPython interpreter
and its C extensions (orjson, hashlib, ...) executed for one event. The pure core's rows
of ``make bench`` are counted the same way (``WORKLOADS``: ``RuleSet.on_event`` with 100
rules of which 10 match and 1,000 of which 100 match, ``DataMaps.evaluate``, the person
work of ``bench.core.person_workload``), each over the same inputs as its row;
``deliveries`` counts the person stage's handling of the sink's delivery reports for
returning customers (their delivery logs full: ``bench.core.deliveries_workload``),
which the bench's mix of new visitors hardly has; ``stages-returning`` the stages over
the bench's mix for people the stages saw a day before (``bench_stages``'s ``history``). Instructions are not
seconds (cache misses and branches are not counted), but every Python-level step removed
shows in them. With ``--base`` the same is counted for another revision, checked out in a
temporary git worktree and run with this tree's virtualenv, and the ratio is printed.

Where this tree's core is compiled (``build_native.py``) the compiled code is counted
and the base is built the same way first (~1.5 minutes more); ``--pure`` counts the
Python sources of both (``EMD_PURE=1``).

``PYTHONHASHSEED`` is fixed so that dict and set layouts, and so the counts, repeat; the
collector is off while counting (see ``child``).
Under valgrind a run is ~50 x slower: every workload of a tree takes ~2 minutes, two
runs at a time. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.worktree import checkout

ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 200
RESULTS = ROOT / ".bench" / "instructions.json"
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


#: what can be counted: the stages, and the rows of ``make bench``'s pure core
WORKLOADS = (
    "stages",
    "stages-sessions",
    "stages-returning",
    "rules-100-10",
    "rules-1000-100",
    "datamaps",
    "person",
    "deliveries",
)
#: events per person: ``make bench``'s mix (most people seen once or twice), and people
#: in a browsing session (``stages-sessions``: 20 events each, their lateness windows full)
EVENTS_PER_PERSON = {"stages-sessions": 20}


def child(root: str, workload: str, n: int, full: bool) -> None:
    """What runs under valgrind: the same set-up either way, the measured work if ``full``
    (so the difference of the two counts is the work alone)."""
    import gc

    sys.path.insert(0, root)
    os.chdir(root)
    from bench import core
    from bench.events import generate

    gc.collect()
    gc.freeze()
    # No collections while counting: when one runs depends on the exact count of
    # allocations, and its cost on which objects it happens to find, so a change that
    # allocates one list less moved the count by +-3 % either way. The worker collects
    # rarely (app.gc_tuning: ~1 % of its time), so the count is the work without them.
    gc.disable()
    if workload.startswith("rules-"):
        rules, matching = (int(x) for x in workload.split("-")[1:])
        ruleset, inputs = core.rules_workload(rules, matching, events=n)
        for ev in inputs[:WARM_UP]:
            ruleset.on_event(core.new_state(), ev)
        if full:
            for ev in inputs:
                ruleset.on_event(core.new_state(), ev)
        return
    if workload == "deliveries":  # returning customers' delivery reports (full logs)
        core.deliveries_workload(WARM_UP)()
        run = core.deliveries_workload(n)
        if full:
            run()
        return
    messages = generate(n, max(1, n // EVENTS_PER_PERSON.get(workload, 2)))
    if workload in ("stages", "stages-sessions"):
        core.bench_stages(messages[:WARM_UP])
        if full:
            core.bench_stages(messages)
    elif workload == "stages-returning":  # the same people seen a day before
        history = core.returning_history(n, max(1, n // 2))
        core.bench_stages(messages[:WARM_UP])
        core.bench_stages(messages if full else messages[:1], history=history)
    elif workload == "datamaps":
        from app.config.model import DataMapConfig
        from bench.account import account_dict

        dms = core.DataMaps([DataMapConfig.model_validate(d) for d in account_dict()["data_maps"]])
        for m in messages[:WARM_UP]:
            dms.evaluate(m)
        if full:
            for m in messages:
                dms.evaluate(m)
    elif workload == "person":
        core.person_workload(messages[:WARM_UP])()
        run = core.person_workload(messages)
        if full:
            run()
    else:
        raise SystemExit(f"unknown workload {workload!r} (one of {', '.join(WORKLOADS)})")


def available() -> bool:
    return shutil.which("valgrind") is not None


def _count(root: Path, workload: str, n: int, full: bool, pure: bool) -> int:
    cmd = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        str(root),
        "--workloads",
        workload,
        "--events",
        str(n),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    if pure:
        env["EMD_PURE"] = "1"
    out = subprocess.run(
        [*cmd, "--full"] if full else cmd,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = _REFS.search(out.stderr)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"counting {root} failed:\n{out.stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))


def per_event(root: Path, workloads: tuple[str, ...], n: int, pure: bool) -> dict[str, float]:
    """Instructions per event of each workload of the tree at ``root``."""
    runs = [(w, full) for w in workloads for full in (False, True)]
    with ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(lambda r: _count(root, r[0], n, r[1], pure), runs))
    by_run = dict(zip(runs, counts, strict=True))
    return {w: (by_run[(w, True)] - by_run[(w, False)]) / n for w in workloads}


def count(
    n: int, workloads: tuple[str, ...], base: str | None = None, pure: bool = False
) -> dict[str, Any]:
    """Counts of this tree (and ``base``): of the compiled core when this tree has a
    current build and the base can build one (like with like), else of the sources."""
    from app import native

    pure = pure or not native.compiled()
    if base is None:
        return {"events": n, "compiled": not pure, "this": per_event(ROOT, workloads, n, pure)}
    with checkout(base, compiled=not pure) as (tree, compiled):
        pure = not compiled
        out: dict[str, Any] = {"events": n, "compiled": compiled}
        out["this"] = per_event(ROOT, workloads, n, pure)
        out["base"] = per_event(tree, workloads, n, pure)
    out["base_rev"] = base
    out["ratio"] = {w: out["this"][w] / out["base"][w] for w in workloads}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated, of {', '.join(WORKLOADS)} (default all)",
    )
    parser.add_argument("--base", help="a revision to count too, and compare with")
    parser.add_argument(
        "--pure", action="store_true", help="count the Python sources even when compiled"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.child:
        child(ns.child, ns.workloads, ns.events, ns.full)
        return 0
    if not available():
        print("valgrind is not installed: nothing counted", file=sys.stderr)
        return 1
    workloads = tuple(w for w in ns.workloads.split(",") if w)
    r = count(ns.events, workloads, ns.base, ns.pure)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(r, indent=2) + "\n")
    print(f"results in {RESULTS.relative_to(ROOT)}")
    what = "the compiled core" if r["compiled"] else "the Python sources"
    print(f"instructions per event of {what} ({r['events']:,} events; rules: inputs)")
    head = f"| workload | this tree |{f' {ns.base} | this / base |' if 'base' in r else ''}"
    print(head)
    print("|---|---:|" + ("---:|---:|" if "base" in r else ""))
    for w in workloads:
        row = f"| {w} | {r['this'][w]:,.0f} |"
        if "base" in r:
            row += f" {r['base'][w]:,.0f} | {r['ratio'][w]:.4f} |"
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
