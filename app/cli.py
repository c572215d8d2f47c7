"""``emarsys-destination``: our commands, and Faust's own command line for the rest.

Ours: ``dev``, ``check-config``, ``replay``, ``emarsys-simulator`` (plain argparse, no
Faust import, so they start fast). Everything else (``worker``, ``agents``, ``tables``,
``send``, ...) is Faust's CLI on this app, with two additions: ``--config F`` anywhere on
the line (or ``EMD_CONFIG``), and Faust's global options (``-l info``, ``--datadir``)
accepted after the command too.
"""

from __future__ import annotations

import argparse
import os
import sys

OUR_COMMANDS = ("dev", "check-config", "replay", "emarsys-simulator")
_GLOBAL_WITH_VALUE = ("-l", "--loglevel", "--datadir", "--data-dir", "--workdir", "-W")
_GLOBAL_FLAGS = ("--debug", "--no-debug", "--json")

USAGE = """\
usage: emarsys-destination COMMAND [options]

Commands of this app:
  dev [--config F] [--web-bind ADDR]
                                embedded broker + Emarsys simulator + one worker (make run);
                                listens on 127.0.0.1 unless --web-bind says otherwise
  worker [--config F] [...]     a production worker (Faust's worker options apply)
  check-config F                validate a config file; every problem with its location
  replay --config F --file EVENTS.jsonl [--account A] [--format table|jsonl]
                                run identity, data maps and rules over recorded events
  emarsys-simulator [--port N]  the Emarsys API simulator alone

Faust's commands (agents, tables, send, ...) are available too: emarsys-destination --help-faust
"""


def _take_option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i : i + 2]
            return value
        if arg.startswith(name + "="):
            del argv[i]
            return arg.split("=", 1)[1]
    return None


def _hoist_globals(argv: list[str]) -> list[str]:
    """Move Faust's global options in front of the subcommand."""
    if not argv:
        return argv
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_WITH_VALUE and i + 1 < len(argv):
            front += [arg, argv[i + 1]]
            i += 2
            continue
        if (
            any(arg.startswith(g + "=") for g in _GLOBAL_WITH_VALUE if g.startswith("--"))
            or arg in _GLOBAL_FLAGS
        ):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def check_config_main(args: list[str]) -> int:
    from app.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="emarsys-destination check-config")
    parser.add_argument("file", help="the YAML config to validate")
    ns = parser.parse_args(args)
    try:
        config = load_config(ns.file)
    except ConfigError as exc:
        print(exc.report())
        return 1
    rules = sum(len(a.rules) for a in config.accounts.values())
    maps = sum(len(a.data_maps) for a in config.accounts.values())
    print(f"{ns.file}: OK ({len(config.accounts)} account(s), {maps} data map(s), {rules} rule(s))")
    return 0


def simulator_main(args: list[str]) -> int:
    from app.emarsys.simulator import add_arguments, options_from_args, run

    parser = argparse.ArgumentParser(
        prog="emarsys-destination emarsys-simulator",
        description="The Emarsys API simulator (test equipment held to the real API).",
    )
    add_arguments(parser)
    ns = parser.parse_args(args)
    run(ns.port, options_from_args(ns), host=getattr(ns, "host", "127.0.0.1"))
    return 0


def faust_main(argv: list[str]) -> int:
    config = _take_option(argv, "--config")
    if config:
        os.environ["EMD_CONFIG"] = os.path.abspath(config)
    if not os.environ.get("EMD_CONFIG"):
        print("no config: pass --config FILE or set EMD_CONFIG", file=sys.stderr)
        return 1
    from app.config import ConfigError, load_config

    try:
        load_config(os.environ["EMD_CONFIG"])
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    sys.argv = [sys.argv[0], *_hoist_globals(argv)]
    from app.worker import app

    app.main()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] == "--help-faust":
        argv = ["--help"]
        os.environ.setdefault("EMD_CONFIG", os.path.abspath("examples/config.yaml"))
        return faust_main(argv)
    command = argv[0]
    if command == "check-config":
        return check_config_main(argv[1:])
    if command == "emarsys-simulator":
        return simulator_main(argv[1:])
    if command == "dev":
        from app.dev import dev_main

        return dev_main(argv[1:])
    if command == "replay":
        from app.replay.cli import replay_main

        return replay_main(argv[1:])
    return faust_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
