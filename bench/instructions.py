"""``make bench-count [BASE=<rev>]``: the stages' work per event in instructions, counted.

    python -m bench.instructions [--events 4000] [--base REV]

Timing cannot resolve a change under ~10 % on a shared 2-core machine (an A/A
``make bench-compare --stages-only`` gives 1.04 x). valgrind counts the instructions a
process executes instead: the same code on the same inputs gives the same count whatever
the neighbours do (two runs differ by ~0.05 %). This runs ``bench.core.bench_stages``
(the identity and person stages as the worker runs them, no broker) under
``valgrind --tool=cachegrind`` twice, once warming up only and once over ``events``
events, and prints the difference per event: the instructions the CPython interpreter
and its C extensions (orjson, hashlib, ...) executed for one event. Instructions are not
seconds (cache misses and branches are not counted), but every Python-level step removed
shows in them. With ``--base`` the same is counted for another revision, checked out in a
temporary git worktree and run with this tree's virtualenv, and the ratio is printed.

``PYTHONHASHSEED`` is fixed so that dict and set layouts, and so the counts, repeat; the
collector is off while counting (see ``child``).
Under valgrind a run is ~50 x slower: 4,000 events take ~30 s, the two runs of a tree
in parallel. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 200
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def child(root: str, n: int, full: bool) -> None:
    """What runs under valgrind: the same set-up either way, the measured run if ``full``."""
    import gc

    sys.path.insert(0, root)
    os.chdir(root)
    from bench.core import bench_stages
    from bench.events import generate

    messages = generate(n, max(1, n // 2))
    gc.collect()
    gc.freeze()
    # No collections while counting: when one runs depends on the exact count of
    # allocations, and its cost on which objects it happens to find, so a change that
    # allocates one list less moved the count by +-3 % either way. The worker collects
    # rarely (app.gc_tuning: ~1 % of its time), so the count is the work without them.
    gc.disable()
    bench_stages(messages[:WARM_UP])
    if full:
        bench_stages(messages)


def available() -> bool:
    return shutil.which("valgrind") is not None


def _count(root: Path, n: int, full: bool) -> int:
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
        "--events",
        str(n),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
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


def per_event(root: Path, n: int) -> float:
    """Instructions per event of the stages of the tree at ``root``."""
    with ThreadPoolExecutor(2) as pool:
        warm, full = pool.map(lambda f: _count(root, n, f), (False, True))
    return (full - warm) / n


def count(n: int, base: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"events": n, "this": per_event(ROOT, n)}
    if base is None:
        return out
    tmp = Path(tempfile.mkdtemp(prefix="emd-base-"))
    tree = tmp / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(tree), base], cwd=ROOT, check=True
    )
    try:
        out["base"] = per_event(tree, n)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    out["base_rev"] = base
    out["ratio"] = out["this"] / out["base"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--base", help="a revision to count too, and compare with")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.child:
        child(ns.child, ns.events, ns.full)
        return 0
    if not available():
        print("valgrind is not installed: nothing counted", file=sys.stderr)
        return 1
    r = count(ns.events, ns.base)
    print(json.dumps(r))
    print(f"this tree: {r['this']:,.0f} instructions per event ({r['events']:,} events)")
    if "base" in r:
        print(f"{r['base_rev']}: {r['base']:,.0f} instructions per event")
        print(f"  this / base: {r['ratio']:.4f} (work per event; below 1 is less)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
