"""Live edits of an account's data maps and rules (the console's PUT), pure part.

An edit replaces an account's ``data_maps`` and ``rules`` in the running config; it is
validated exactly like ``check-config`` (every problem, located relative to the account:
``rules[0].conditions[1].match``). Secrets and connection settings are not editable here
and never leave the process through ``editable_view``.

What a client PUTs is either the edit itself (``{"data_maps"?, "rules"?, "version"?}``)
or the very document ``GET`` answered (``{"account", "version", "config": {...}}``), so
GET, edit, PUT back works; ``edit_of`` turns either into the edit and the version it
started from (the optimistic-concurrency check).
"""

from __future__ import annotations

from typing import Any

from app.config.loader import ConfigError, validate_data
from app.config.model import Config
from app.config.problem import Problem

EDITABLE = ("data_maps", "rules")


def editable_view(config: Config, account: str) -> dict[str, Any]:
    """The account's data maps and rules in the file's format (durations as ``1h``)."""
    acct = config.accounts[account]
    dumped = acct.model_dump(mode="json", exclude_none=True, include={"data_maps", "rules"})
    return {"primary_key": acct.primary_key, **dumped}


def apply_edit(config: Config, account: str, edit: Any) -> Config:
    """``config`` with the account's data maps and rules replaced by ``edit``; raises
    ``ConfigError`` whose problem locations are relative to the account."""
    if not isinstance(edit, dict):
        raise ConfigError([Problem("", "the body must be a JSON object")], account)
    unknown = sorted(set(edit) - set(EDITABLE))
    problems = [Problem(k, "not editable here (only data_maps and rules)") for k in unknown]
    if problems:
        raise ConfigError(problems, account)
    data = config.model_dump(mode="json", exclude_none=True)
    for key in EDITABLE:
        if key in edit:
            data["accounts"][account][key] = edit[key]
    prefix = f"accounts.{account}."
    try:
        return validate_data(data, account, substitute=False)
    except ConfigError as exc:
        located = [
            Problem(p.location.removeprefix(prefix), p.message)
            for p in exc.problems
            if p.location.startswith(prefix) or not p.location.startswith("accounts.")
        ]
        raise ConfigError(located or exc.problems, account) from None


DOCUMENT_KEYS = ("account", "version", "config")


def edit_of(config: Config, account: str, body: Any) -> tuple[dict[str, Any], int | None]:
    """(the edit, the version it started from or None) from a PUT or validate body.

    Raises ``ConfigError``: an ``account`` other than the path's, a ``primary_key`` other
    than the file's (it decides who a contact is: only the file may change it), a
    ``version`` that is not a whole number, keys that are not editable."""
    if not isinstance(body, dict):
        raise ConfigError([Problem("", "the body must be a JSON object")], account)
    problems: list[Problem] = []
    version = body.get("version")
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 0
    ):
        problems.append(Problem("version", "must be the whole number GET answered"))
        version = None
    if "config" not in body:
        edit = {k: v for k, v in body.items() if k != "version"}
    else:
        for key in sorted(set(body) - set(DOCUMENT_KEYS)):
            problems.append(Problem(key, "not part of the config document"))
        if "account" in body and body["account"] != account:
            problems.append(
                Problem("account", f"this is the document of another account, not {account!r}")
            )
        doc = body["config"]
        if not isinstance(doc, dict):
            problems.append(Problem("config", "must be an object"))
            doc = {}
        current = config.accounts[account].primary_key
        if "primary_key" in doc and doc["primary_key"] != current:
            problems.append(
                Problem("config.primary_key", "not editable here (set it in the config file)")
            )
        for key in sorted(set(doc) - {"primary_key", *EDITABLE}):
            problems.append(
                Problem(f"config.{key}", "not editable here (only data_maps and rules)")
            )
        edit = {k: doc[k] for k in EDITABLE if k in doc}
    if problems:
        raise ConfigError(problems, account)
    return edit, version
