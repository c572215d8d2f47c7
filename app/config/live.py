"""Live edits of an account's data maps and rules (the console's PUT), pure part.

An edit replaces an account's ``data_maps`` and ``rules`` in the running config; it is
validated exactly like ``check-config`` (every problem, located relative to the account:
``rules[0].conditions[1].match``). Secrets and connection settings are not editable here
and never leave the process through ``editable_view``.
"""

from __future__ import annotations

from typing import Any

from app.config.loader import ConfigError, Problem, validate_data
from app.config.model import Config

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
