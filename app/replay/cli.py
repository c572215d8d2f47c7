"""``emarsys-destination replay``: the command line around ``driver.Replay``.

Results go to stdout (JSON lines, or a table for people), everything else (progress,
errors, the ``--apply`` report) to stderr, so ``replay ... > out.jsonl`` captures only
results. The event source is any iterable of raw lines (``Source``): ``--file`` today;
another source (a Kafka topic) plugs into ``run`` without touching the rest.

``--apply`` really writes to Emarsys: after the dry run has computed every line, the
contact updates, the deliverable triggers and the contact-list actions are sent with the
sink's own code (``app.delivery.deliver``), in batches of up to 1000 effects, in output
order (within a batch, a contact's update goes before its list actions and trigger).
Contact deletes are reported but never sent by replay. Each failure is printed on
stderr; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import orjson

from app.replay.driver import TRANSITION_KINDS, Replay, effect_of
from app.replay.event_order import DEFAULT_BUDGET

if TYPE_CHECKING:
    from app.account import Accounts
    from app.delivery import Clients

APPLY_BATCH = 1000
PROGRESS_MIN_LINES = 5000
PROGRESS_MIN_BYTES = 1_000_000
TTY_REFRESH = 0.2
PLAIN_REFRESH = 5.0

# --------------------------------------------------------------------------- sources


@dataclass
class Source:
    """Where the raw events come from: one JSON message per item."""

    label: str
    lines: Iterable[bytes | tuple[bytes, str | None]]  # raw, or (raw, account)
    size: int | None = None  # total bytes, when known (a regular file): for progress
    close: Callable[[], None] = field(default=lambda: None)


def file_source(path: str) -> Source:
    """``path`` read as JSON lines (``-``: stdin). ``OSError`` when it cannot be opened."""
    if path == "-":
        return Source("stdin", _lines(sys.stdin.buffer))
    handle = open(path, "rb")  # noqa: SIM115 (closed by Source.close)
    try:
        size: int | None = os.fstat(handle.fileno()).st_size
    except OSError:
        size = None
    return Source(path, _lines(handle), size, handle.close)


def _iso_seconds(text: str | None) -> float | None:
    from app.segment.model import parse_iso_utc

    return parse_iso_utc(text).timestamp() if text else None


def topic_source(ns: argparse.Namespace, config: Any) -> Source:
    """A topic read whole with its own consumer, merged in event-time order (held in
    memory up to ``--buffer-mb``, the rest in run files removed when the source closes)."""
    from app.replay.topic import topic_items

    broker = ns.broker or config.broker
    if broker == "embedded":
        broker = "kafka://127.0.0.1:9092"
    start, end = _iso_seconds(ns.start), _iso_seconds(ns.end)
    items = topic_items(broker, ns.topic, start, end, budget=ns.buffer_mb * 1024 * 1024)
    return Source(f"topic {ns.topic}", items, items.nbytes, items.close)


def _positive_mb(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of MB: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 MB, not {value}")
    return value


def _lines(handle: IO[bytes]) -> Iterator[bytes]:
    yield from handle


# --------------------------------------------------------------------------- progress


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


class Progress:
    """Progress on stderr for long inputs (over 5,000 lines or 1 MB).

    A bar redrawn at most every 0.2 s when stderr is a terminal; otherwise a plain line
    every 5 s. Short inputs print nothing.
    """

    def __init__(
        self,
        stream: IO[str],
        size: int | None,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.size = size
        self.tty = stream.isatty() if tty is None else tty
        self.clock = clock
        self.start = clock()
        self.last = self.start
        self.active = size is not None and size > PROGRESS_MIN_BYTES
        self.shown = False

    def update(self, lines: int, nbytes: int) -> None:
        if not self.active:
            if lines <= PROGRESS_MIN_LINES and nbytes <= PROGRESS_MIN_BYTES:
                return
            self.active = True
        now = self.clock()
        if now - self.last < (TTY_REFRESH if self.tty else PLAIN_REFRESH):
            return
        self.last = now
        self._show(lines, nbytes, now)

    def done(self, lines: int, nbytes: int) -> None:
        if not self.active:
            return
        now = self.clock()
        if self.tty:
            self._show(lines, nbytes, now)
            self.stream.write("\n")
        else:
            elapsed = max(now - self.start, 1e-9)
            self.stream.write(
                f"replay: done: {lines:,} lines, {_mb(nbytes)} in {elapsed:.1f} s "
                f"({lines / elapsed:,.0f} events/s)\n"
            )
        self.stream.flush()

    def _show(self, lines: int, nbytes: int, now: float) -> None:
        rate = lines / max(now - self.start, 1e-9)
        if self.size:
            share = min(nbytes / self.size, 1.0)
            amount = f"{share:4.0%} {_mb(nbytes)}/{_mb(self.size)}"
        else:
            share = None
            amount = _mb(nbytes)
        if self.tty:
            bar = ""
            if share is not None:
                filled = int(share * 30)
                bar = "[" + "#" * filled + "-" * (30 - filled) + "] "
            self.stream.write(f"\r{bar}{amount}  {lines:,} lines  {rate:,.0f} events/s\x1b[K")
        else:
            self.stream.write(f"replay: {lines:,} lines, {amount}, {rate:,.0f} events/s\n")
        self.stream.flush()
        self.shown = True


# --------------------------------------------------------------------------- output


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()


class JsonlWriter:
    """One JSON object per line, as it comes."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, line: dict[str, Any]) -> None:
        self.out.write(_dumps(line) + "\n")

    def close(self) -> None:
        self.out.flush()


def table_row(line: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """(at, kind, account, contact, details) of one result line."""
    kind = line["kind"]
    at = line.get("at") or "-"
    account = str(line.get("account") or "-")
    contact = "-" if line.get("contact") is None else str(line["contact"])
    if kind == "contact_update":
        details = _dumps(line["fields"])
    elif kind == "trigger":
        data = line.get("data") or {}
        variables = data.get("global", data) if isinstance(data, dict) else data
        details = f"{line['rule']} → {line['external_event']} {_dumps(variables)}"
        if line.get("undeliverable"):
            kind = "undeliverable"
            details += f" ({line['undeliverable']})"
    elif kind in ("list_add", "list_remove"):
        verb = "add to" if kind == "list_add" else "remove from"
        details = f"{line['rule']} → {verb} list {line['list']}"
        if line.get("undeliverable"):
            kind = "undeliverable"
            details += f" ({line['undeliverable']})"
    elif kind == "rejected":
        details = f"line {line.get('line')}: {line['reason']}"
        if line.get("message_id") is not None:
            details += f" (messageId {line['message_id']})"
    elif kind == "contact_delete":
        details = "contact deleted (Segment delete)"
    else:
        details = _dumps({k: v for k, v in line.items() if k not in ("kind", "at")})
    return at, kind, account, contact, details


def summary_text(s: dict[str, Any]) -> list[str]:
    applied = s["events"] - s["rejected"] - s["deduped"]
    transitions = s.get("transitions") or {}
    out = [
        f"{s['events']:,} events: {applied:,} applied, {s['rejected']:,} rejected, "
        f"{s['deduped']:,} duplicates skipped; {s['persons']:,} persons",
        f"would send: {s['contact_updates']:,} contact updates, {s['triggers']:,} triggers,"
        f" {s.get('list_adds', 0):,} list additions, {s.get('list_removes', 0):,} list removals"
        f" ({s['undeliverable']:,} exits undeliverable: no contact key),"
        f" {s.get('contact_deletes', 0):,} contact deletes",
        "rule transitions: "
        + ", ".join(f"{k} {transitions.get(k, 0):,}" for k in TRANSITION_KINDS),
    ]
    if s.get("clock"):
        out.append(f"rule clock at the end: {s['clock']} (deadlines after it did not fire)")
    return out


class TableWriter:
    """Aligned columns ``at  kind  account  contact  details``, then the summary."""

    HEADER = ("at", "kind", "account", "contact", "details")

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.summary: dict[str, Any] | None = None

    def write(self, line: dict[str, Any]) -> None:
        if line["kind"] == "summary":
            self.summary = line
        else:
            self.rows.append(table_row(line))

    def close(self) -> None:
        out = self.out
        if self.rows:
            rows = [self.HEADER, *self.rows]
            widths = [max(len(r[i]) for r in rows) for i in range(4)]
            for r in rows:
                cells = [r[i].ljust(widths[i]) for i in range(4)]
                out.write("  ".join([*cells, r[4]]).rstrip() + "\n")
        else:
            out.write("(nothing would be sent and nothing was rejected)\n")
        if self.summary is not None:
            out.write("\n")
            for text in summary_text(self.summary):
                out.write(text + "\n")
        out.flush()


# --------------------------------------------------------------------------- running


@dataclass
class RunResult:
    summary: dict[str, Any]
    effects: list[dict[str, Any]]


def run(
    replay: Replay,
    source: Source,
    writer: JsonlWriter | TableWriter,
    progress: Progress | None = None,
    *,
    collect: bool = False,
) -> RunResult:
    """Feed every item of ``source`` to ``replay``, write the lines; the summary and, with
    ``collect``, the Emarsys effects the lines stand for (for ``--apply``)."""
    effects: list[dict[str, Any]] = []
    lines = nbytes = 0
    summary: dict[str, Any] = {}

    def emit(out: list[dict[str, Any]]) -> None:
        for line in out:
            writer.write(line)
            if collect:
                effect = effect_of(line)
                if effect is not None:
                    effects.append(effect)

    try:
        for item in source.lines:
            raw, account = item if isinstance(item, tuple) else (item, None)
            lines += 1
            nbytes += len(raw)
            out = replay.feed(raw, account) if account else replay.feed(raw)
            if out:
                emit(out)
            if progress is not None:
                progress.update(lines, nbytes)
    finally:
        source.close()
    final = replay.finish()
    summary = final[-1]
    emit(final)
    writer.close()
    if progress is not None:
        progress.done(lines, nbytes)
    return RunResult(summary, effects)


async def apply_effects(
    effects: list[dict[str, Any]],
    accounts: Accounts,
    clients: Clients,
    err: IO[str],
    *,
    batch: int = APPLY_BATCH,
) -> tuple[int, int]:
    """Send ``effects`` to Emarsys in batches; (accepted, failed). Failures go to ``err``."""
    from app.delivery import close_quietly, deliver

    def configs(name: str):
        acct = accounts.get(name)
        return acct.config.emarsys if acct is not None else None

    ok = failed = 0
    try:
        for i in range(0, len(effects), batch):
            for outcome in await deliver(effects[i : i + batch], configs, clients):
                if outcome.ok:
                    ok += 1
                    continue
                failed += 1
                e = outcome.effect
                what = _what(e)
                code = f" (replyCode {outcome.code})" if outcome.code is not None else ""
                err.write(
                    f"apply: {what} for {e.get('contact')!r} in {e.get('account')} "
                    f"failed{code}: {outcome.text}\n"
                )
    finally:
        await close_quietly(clients)
    return ok, failed


def _what(effect: dict[str, Any]) -> str:
    op = effect["op"]
    if op == "upsert":
        return "contact update"
    if op == "list_add":
        return f"add to list {effect.get('list')}"
    if op == "list_remove":
        return f"remove from list {effect.get('list')}"
    return f"trigger {effect.get('event')}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emarsys-destination replay",
        description=(
            "Run the identity table, data maps and rules over recorded Segment events on "
            "fresh in-memory state and print what would be sent to Emarsys. Dry run "
            "unless --apply. Results on stdout, progress on stderr."
        ),
    )
    parser.add_argument(
        "--config", help="the YAML config (default: the EMD_CONFIG environment variable)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", help="recorded events, one JSON message per line (- = stdin)")
    source.add_argument(
        "--topic",
        help=(
            "read this Kafka topic (e.g. segment-events) with a consumer of its own that "
            "never joins the workers' group. The whole topic is read and --from/--to filter "
            "by event time while reading: the embedded broker looks offsets up by append "
            "time, not event time"
        ),
    )
    parser.add_argument(
        "--buffer-mb",
        type=_positive_mb,
        default=DEFAULT_BUDGET // (1024 * 1024),
        help="with --topic: MB of records held in memory while putting the topic in "
        "event-time order; beyond it sorted runs go to files under TMPDIR, removed at "
        "the end (default: %(default)s)",
    )
    parser.add_argument("--from", dest="start", help="with --topic: events at or after ISO time")
    parser.add_argument("--to", dest="end", help="with --topic: events before ISO time")
    parser.add_argument(
        "--broker",
        help="with --topic: kafka://HOST:PORT (default: the config's broker; 'embedded' "
        "means kafka://127.0.0.1:9092, where `dev` runs it)",
    )
    parser.add_argument(
        "--account",
        help="the account the events belong to (default: default_account, or the only one)",
    )
    parser.add_argument(
        "--format",
        choices=("table", "jsonl"),
        help="output format (default: table on a terminal, jsonl otherwise)",
    )
    parser.add_argument(
        "--apply",
        action="store_true",
        help="REALLY send the contact updates, triggers and list actions to Emarsys after "
        "the dry run",
    )
    return parser


def replay_main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)
    err = sys.stderr
    config_path = ns.config or os.environ.get("EMD_CONFIG")
    if not config_path:
        print("replay: no config: pass --config FILE or set EMD_CONFIG", file=err)
        return 1
    from app.account import Accounts
    from app.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(exc.report(), file=err)
        return 1
    names = ", ".join(sorted(config.accounts))
    if ns.account is not None and ns.account not in config.accounts:
        print(f"replay: unknown account {ns.account!r} (the config has: {names})", file=err)
        return 1
    if ns.account is None and config.fallback_account() is None:
        print(
            f"replay: the config has several accounts ({names}) and no default_account: "
            "pass --account",
            file=err,
        )
        return 1
    if ns.topic:
        try:
            source = topic_source(ns, config)
        except (LookupError, ValueError, OSError) as exc:
            print(f"replay: cannot read topic {ns.topic}: {exc}", file=err)
            return 1
    else:
        try:
            source = file_source(ns.file)
        except OSError as exc:
            print(f"replay: cannot read {ns.file}: {exc.strerror or exc}", file=err)
            return 1

    out = sys.stdout
    fmt = ns.format or ("table" if out.isatty() else "jsonl")
    writer: JsonlWriter | TableWriter = JsonlWriter(out) if fmt == "jsonl" else TableWriter(out)
    accounts = Accounts(config)
    replay = Replay(accounts, account=ns.account)
    try:
        result = run(replay, source, writer, Progress(err, source.size), collect=ns.apply)
    except KeyboardInterrupt:
        print("\nreplay: interrupted", file=err)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 0
    if not ns.apply:
        return 0
    if not result.effects:
        print("replay --apply: nothing to send to Emarsys", file=err)
        return 0
    from app.delivery import Clients

    print(f"replay --apply: sending {len(result.effects):,} effects to Emarsys ...", file=err)
    ok, failed = asyncio.run(apply_effects(result.effects, accounts, Clients(), err))
    print(f"replay --apply: {ok:,} accepted by Emarsys, {failed:,} failed", file=err)
    return 1 if failed else 0


def _silence_stdout() -> None:
    """After a closed pipe (``replay ... | head``), stop Python's exit-time flush error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
