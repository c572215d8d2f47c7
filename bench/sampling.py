"""Where a worker's CPU goes, sampled from outside (py-spy), for ``make bench``.

cProfile (``EMD_CPU_PROFILE``) charges every Python call its own bookkeeping, so it
inflates the app's many small functions against C (JSON, RocksDB) several times over, and
it profiles the whole process, start-up and idle waits included. A sampler reading the
worker's stacks 200 times a second from another process changes neither: what it
reports is the share of the worker's busy time (py-spy leaves idle threads out) spent
under each layer. ``py-spy`` is in the bench extra; without it (or without permission to
read another process, e.g. a container without ``SYS_PTRACE``) ``make bench`` falls back
to cProfile.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

RATE = 200

#: (layer, what in a stack puts a sample there, how deep to look), first match wins:
#: start-up first (an import runs under anything), then the JSON of person records inside
#: the stages, the app's own layers anywhere in the stack; the libraries only in the
#: frames on top (every stack has Faust's and mode's worker at its bottom)
TOP = 4
LAYERS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("start-up (imports, opening RocksDB)", ("_find_and_load", "RocksDBOptions.open",
                                            "_open_for_partition", "gc_tuning"), False),
    ("person records: JSON in and out (JsonView)", ("JsonView.get", "JsonView.flush"), False),
    ("commit: send, changelog, RocksDB write", ("Transaction.commit",), False),
    ("identity stage (input records)", ("LinkStage.handle (",), False),
    ("person stage (person-events records, the clock)", ("PersonStage.",), False),
    ("batch glue (flow, pipeline, fetch loop)", ("PartitionFlow.", "Pipeline.", "_drain_once"),
     False),
    ("sink and Emarsys delivery", ("agents/sink.py", "agents/lanes.py", "app/emarsys/"), False),
    ("aiokafka (fetching, producing)", ("aiokafka/",), True),
    ("Faust and mode", ("faust/", "mode/"), True),
    ("the event loop, sockets and the rest", ("",), False),
)  # fmt: skip


def layer_of(stack: str) -> str:
    top = ";".join(stack.rsplit(";", TOP)[1:]) if stack.count(";") >= TOP else stack
    for name, marks, on_top in LAYERS:
        where = top if on_top else stack
        if any(m in where for m in marks):
            return name
    return LAYERS[-1][0]


def _exe() -> str | None:
    """py-spy next to this Python (the virtualenv's), else on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def available() -> bool:
    return _exe() is not None


def start(pid: int, out: Path, log: Path) -> subprocess.Popen[bytes] | None:
    exe = _exe()
    if exe is None:
        return None
    cmd = [exe, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw",
           "--nonblocking", "-o", str(out)]  # fmt: skip
    with log.open("wb") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)


def interrupt(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """SIGINT to a sampler (it writes its file then), waiting for it to end; True unless
    it had to be killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False
    return True


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    """Ends sampling (py-spy writes its file on SIGINT); True if it wrote it."""
    return interrupt(proc, timeout) and proc.returncode == 0


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    """Shares of the samples per layer, and the lines most often on top of the stack."""
    layers: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        layers[layer_of(stack)] += n
        leaves[stack.rsplit(";", 1)[-1]] += n
    total = total or 1
    return {
        "method": f"py-spy, {RATE} samples/s, busy threads only",
        "samples": total,
        "layers": {name: n / total for name, n in layers.most_common()},
        "top": [{"function": f, "own_share": n / total} for f, n in leaves.most_common(top)],
    }
