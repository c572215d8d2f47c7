"""Where the compiled worker's CPU goes, by library and C function (Linux ``perf``).

py-spy (``bench.sampling``) sees Python frames only, so its run imports the sources
(``EMD_PURE=1``), whose shares are not the compiled worker's: compiled, the stages' own
code is a small part and what they call (CPython's dicts and allocator, orjson, RocksDB)
the rest. ``perf record`` samples the worker as it runs, compiled, from outside, and
``perf report`` names the shared object and the C function of every sample (mypyc's
functions are C functions: ``CPyDef_<module>___<function>``), and with the call stacks
(DWARF) the share of the samples under each compiled function, what it calls included.
CPython 3.11 gives perf no names for interpreted Python frames; they are under
``_PyEval_EvalFrameDefault``.

``perf`` is Linux's (Debian's ``linux-perf``); without it, or without permission
(``kernel.perf_event_paranoid`` > 2, a container without ``CAP_PERFMON``), ``make bench``
leaves this part out and says so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.sampling import interrupt

RATE = 999

#: (part, substrings of a shared object's name), first match wins
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the compiled core (mypyc)", ("__mypyc", "app/", "/app.")),
    ("CPython (dicts, objects, allocation, interpreted Python)", ("libpython",)),
    ("orjson (JSON)", ("orjson",)),
    ("RocksDB (rocksdict)", ("rocksdict", "libstdc++")),
    ("C library (malloc, memcpy)", ("libc.so", "libm.so", "ld-linux")),
    ("kernel (sockets, page faults, scheduling)", ("[kernel", "[vdso")),
    ("aiokafka's C record codec", ("default_records", "_crecords", "aiokafka")),
)
OTHER = "other C extensions"
#: C functions shown with their callees' samples beside the compiled core's (CPyDef_*)
INCLUSIVE = ("loads", "dumps", "rocksdb_write", "_PyObject_Malloc", "gc_collect_main")


def available() -> bool:
    return shutil.which("perf") is not None


def start(pid: int, out: Path, log: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("perf")
    if exe is None:
        return None
    cmd = [exe, "record", "-F", str(RATE), "--call-graph", "dwarf,8192", "-p", str(pid),
           "-o", str(out)]  # fmt: skip
    with log.open("wb") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> bool:
    """Ends sampling; True unless perf had to be killed (attached to a process, it exits
    with a status that is not 0 even when it wrote its file)."""
    return interrupt(proc, timeout)


def part_of(dso: str) -> str:
    for name, marks in PARTS:
        if any(m in dso for m in marks):
            return name
    return OTHER


def _report(path: Path, sort: str, children: bool = False) -> list[tuple[float, list[str]]]:
    """(share, columns) per row of ``perf report --sort <sort>``; with ``children`` the
    share is the samples under the row's function, its callees' included."""
    mode = "--children" if children else "--no-children"
    proc = subprocess.run(
        ["perf", "report", "-i", str(path), "--sort", sort, "--stdio", "-q", mode, "-g", "none"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = []
    for line in proc.stdout.splitlines():
        fields = line.split()
        if not fields or not fields[0].endswith("%"):
            continue
        try:
            share = float(fields[0][:-1]) / 100
        except ValueError:
            continue
        rows.append((share, fields[1:]))
    return rows


def summarize(path: Path, top: int = 15) -> dict[str, Any] | None:
    """Shares of the samples per part (shared objects grouped) and the C functions with
    the most samples of their own; None if perf wrote nothing readable."""
    dsos = _report(path, "dso")
    if not dsos:
        return None
    parts: dict[str, float] = {}
    for share, cols in dsos:
        name = part_of(" ".join(cols))
        parts[name] = parts.get(name, 0.0) + share
    symbols = []
    for share, cols in _report(path, "dso,sym")[:top]:
        # columns: the shared object, "[.]" or "[k]", the symbol (which may hold spaces)
        dso, rest = (cols[0], cols[2:]) if len(cols) > 2 else (cols[0] if cols else "?", [])
        symbols.append({"function": " ".join(rest) or "?", "in": Path(dso).name, "share": share})
    inclusive = []
    for share, cols in _report(path, "sym", children=True):
        name = " ".join(cols[2:])  # columns: own share, "[.]", the symbol
        if name.startswith("CPyDef_") or name in INCLUSIVE:
            inclusive.append({"function": name, "share": share})
        if len(inclusive) == top:
            break
    return {
        "method": f"perf record, {RATE} samples/s, every thread, DWARF call stacks",
        "parts": dict(sorted(parts.items(), key=lambda kv: -kv[1])),
        "top": symbols,
        "inclusive": inclusive,
    }
