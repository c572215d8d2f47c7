"""Checks that relate config fields to each other, each reported with its location.

Pydantic validates each field; these rules need the whole account: a rule's sequences
must be contiguous, a filter may only name data maps that exist, and so on.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import ValidationError

from app.config.model import (
    LIST_ACTIONS,
    AccountConfig,
    ConditionConfig,
    Config,
    DataMapConfig,
    RuleConfig,
)
from app.config.problem import Problem

_THE = {
    "trigger": "a trigger",
    "add_to_list": "add_to_list",
    "remove_from_list": "remove_from_list",
}
NO_ACTION = (
    "an exit needs an action: a trigger (external event id or name), add_to_list or "
    "remove_from_list (contact list id or name)"
)


def semantic_problems(config: Config) -> list[Problem]:
    problems: list[Problem] = []
    for name, account in config.accounts.items():
        problems += account_problems(account, f"accounts.{name}")
    problems += _shared_key_problems({n: a.api_keys for n, a in config.accounts.items()})
    return problems


def partial_problems(data: Any) -> list[Problem]:
    """The same checks on the parts of a config that failed field validation elsewhere.

    A bad data map type must not hide an unknown data map in a filter: the user fixes the
    file in one pass. An invalid data map still counts by its name (no spurious "unknown
    data map"); a rule that is itself invalid is skipped (its own errors were reported).
    """
    problems: list[Problem] = []
    accounts = data.get("accounts") if isinstance(data, dict) else None
    if not isinstance(accounts, dict):
        return problems
    keys: dict[str, list[str]] = {}
    for name, raw in accounts.items():
        if not isinstance(raw, dict):
            continue
        where = f"accounts.{name}"
        raw_keys = raw.get("api_keys")
        if isinstance(raw_keys, list):
            keys[str(name)] = [k for k in raw_keys if isinstance(k, str)]
        maps: list[DataMapConfig] = []
        for i, dm in enumerate(_list(raw.get("data_maps"))):
            try:
                maps.append(DataMapConfig.model_validate(dm))
            except ValidationError:
                dm_name = dm.get("name") if isinstance(dm, dict) else None
                maps.append(
                    DataMapConfig.model_construct(
                        name=dm_name if isinstance(dm_name, str) else f"\x00{i}",
                        path="",
                        type="string",
                        field=None,
                        choices=None,
                        max_length=None,
                    )
                )
        rules: list[tuple[int, RuleConfig]] = []
        for i, rule in enumerate(_list(raw.get("rules"))):
            try:
                rules.append((i, RuleConfig.model_validate(rule)))
            except ValidationError:
                continue
        account = AccountConfig.model_construct(data_maps=maps, rules=[r for _, r in rules])
        problems += account_problems(account, where, [i for i, _ in rules])
    problems += _shared_key_problems(keys)
    return problems


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _shared_key_problems(keys: dict[str, list[str]]) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for name, api_keys in keys.items():
        for i, key in enumerate(api_keys):
            if key in seen and seen[key] != name:
                problems.append(
                    Problem(
                        f"accounts.{name}.api_keys[{i}]",
                        f"this API key is also used by account {seen[key]!r}",
                    )
                )
            seen[key] = name
    return problems


def account_problems(
    account: AccountConfig, where: str, rule_indexes: list[int] | None = None
) -> list[Problem]:
    """``rule_indexes``: the position of each of ``account.rules`` in the file (default:
    its position in the list)."""
    problems: list[Problem] = []
    names = Counter(dm.name for dm in account.data_maps)
    fields: dict[int, str] = {}
    for i, dm in enumerate(account.data_maps):
        loc = f"{where}.data_maps[{i}]"
        if names[dm.name] > 1:
            problems.append(Problem(f"{loc}.name", f"data map {dm.name!r} is defined twice"))
        if dm.field is not None:
            if dm.field in fields and fields[dm.field] != dm.name:
                problems.append(
                    Problem(
                        f"{loc}.field",
                        f"field {dm.field} is already written by data map {fields[dm.field]!r}",
                    )
                )
            fields.setdefault(dm.field, dm.name)
    rule_names = Counter(r.name for r in account.rules)
    for k, rule in enumerate(account.rules):
        loc = f"{where}.rules[{rule_indexes[k] if rule_indexes is not None else k}]"
        if rule_names[rule.name] > 1:
            problems.append(Problem(f"{loc}.name", f"rule {rule.name!r} is defined twice"))
        problems += rule_problems(rule, account, loc)
    return problems


def _first_gaps(sequences: list[int], most: int = 10) -> str:
    """``[1, 2, 4]`` style text of the first ``most`` numbers missing from ``sequences``."""
    gaps: list[int] = []
    expected = 0
    for seq in sequences:
        while expected < seq and len(gaps) < most:
            gaps.append(expected)
            expected += 1
        if len(gaps) >= most:
            break
        expected = seq + 1
    more = ", ..." if len(gaps) >= most else ""
    return "[" + ", ".join(map(str, gaps)) + more + "]"


def rule_problems(rule: RuleConfig, account: AccountConfig, loc: str) -> list[Problem]:
    from app.rules.fql import FilterError, compile_filter

    problems: list[Problem] = []
    dm_names = {dm.name for dm in account.data_maps}
    if rule.transaction is not None and rule.transaction not in dm_names:
        problems.append(Problem(f"{loc}.transaction", f"unknown data map {rule.transaction!r}"))
    conds = rule.conditions
    sequences = sorted({c.sequence for c in conds})
    last = sequences[-1]
    if last != len(sequences) - 1:  # sorted, distinct, from >= 0: no gap iff last == n - 1
        # Never build range(last): a sequence of 10**30 (an admin API body) would hold
        # the event loop for ever. Name the first few gaps only.
        missing = _first_gaps(sequences)
        problems.append(
            Problem(
                f"{loc}.conditions",
                f"sequences must run 0, 1, 2, ... without gaps; missing {missing}",
            )
        )
    if not any(c.type == "start" for c in conds):
        problems.append(
            Problem(f"{loc}.conditions", "a rule needs a start condition at sequence 0")
        )
    if not any(c.type == "exit" for c in conds):
        problems.append(
            Problem(f"{loc}.conditions", "a rule needs an exit condition (its last sequence)")
        )
    if last == 0:
        problems.append(
            Problem(f"{loc}.conditions", "the exit must come after the start (sequence 1 or more)")
        )
    unmatched_exits = 0
    for j, c in enumerate(conds):
        cl = f"{loc}.conditions[{j}]"
        if c.type == "start" and c.sequence != 0:
            problems.append(Problem(f"{cl}.sequence", "a start condition must be at sequence 0"))
        if c.type in ("step", "exit") and c.sequence == 0:
            article = "an" if c.type == "exit" else "a"
            problems.append(
                Problem(f"{cl}.sequence", f"{article} {c.type} cannot be at sequence 0")
            )
        if c.type == "exit" and c.sequence != last:
            problems.append(
                Problem(f"{cl}.sequence", f"an exit must be the last sequence ({last})")
            )
        if c.type == "step" and c.sequence == last:
            problems.append(
                Problem(f"{cl}.type", "the last sequence is the exit; a step cannot be there")
            )
        if c.type == "exclude" and c.sequence >= last:
            problems.append(
                Problem(
                    f"{cl}.sequence",
                    "an exclude guards the position it is at and must come before the exit",
                )
            )
        if c.type in ("start", "exclude"):
            for attr in ("wait", "within"):
                if getattr(c, attr) is not None:
                    problems.append(Problem(f"{cl}.{attr}", f"a {c.type} cannot have {attr}"))
        if c.type == "exclude" and not c.match:
            problems.append(
                Problem(
                    f"{cl}.match",
                    "an exclude needs matching criteria (it would end every instance)",
                )
            )
        if c.type == "step" and not c.match:
            problems.append(Problem(f"{cl}.match", "a step needs matching criteria"))
        if c.type == "exit":
            if c.match is None:
                unmatched_exits += 1
            problems += _exit_action_problems(c, cl)
            for k, var in enumerate(c.variables):
                if var not in dm_names:
                    problems.append(Problem(f"{cl}.variables[{k}]", f"unknown data map {var!r}"))
        else:
            for attr in ("trigger", *LIST_ACTIONS):
                if getattr(c, attr) is not None:
                    problems.append(
                        Problem(f"{cl}.{attr}", f"only an exit has {_THE[attr]}, not a {c.type}")
                    )
            if c.variables:
                problems.append(Problem(f"{cl}.variables", "only an exit has variables"))
        if c.wait is not None and c.within is not None and c.within < c.wait:
            problems.append(
                Problem(f"{cl}.within", "within is shorter than wait: the step could never happen")
            )
        if c.match is not None:
            try:
                compile_filter(c.match, dm_names)
            except FilterError as exc:
                problems.append(Problem(f"{cl}.match", str(exc)))
    if unmatched_exits > 1:
        problems.append(Problem(f"{loc}.conditions", "at most one exit without matching criteria"))
    return problems


def _exit_action_problems(c: ConditionConfig, cl: str) -> list[Problem]:
    """An exit's actions: at least one of trigger, add_to_list, remove_from_list; each an
    id (1 or more) or a non-empty name; not one list both added to and removed from;
    variables only with a trigger (they go into its data).

    "No action" is reported at ``trigger``: the column a user most often fills, and the
    message names the other two."""
    if c.trigger is None and c.add_to_list is None and c.remove_from_list is None:
        return [Problem(f"{cl}.trigger", NO_ACTION)]
    problems: list[Problem] = []
    if c.trigger is None and c.variables:
        problems.append(
            Problem(
                f"{cl}.variables", "variables fill the trigger's data: this exit has no trigger"
            )
        )
    for attr, what in (
        ("trigger", "an external event"),
        ("add_to_list", "a contact list"),
        ("remove_from_list", "a contact list"),
    ):
        value = getattr(c, attr)
        if isinstance(value, int) and value < 1:
            problems.append(Problem(f"{cl}.{attr}", f"{value} is not {what} id"))
        elif isinstance(value, str) and not value.strip():
            noun = "trigger" if attr == "trigger" else "contact list"
            problems.append(Problem(f"{cl}.{attr}", f"an empty {noun} is neither an id nor a name"))
    add, remove = c.add_to_list, c.remove_from_list
    if add is not None and remove is not None and _same_list(add, remove):
        problems.append(
            Problem(
                f"{cl}.remove_from_list",
                f"the exit adds to and removes from the same list ({add!r}): choose one",
            )
        )
    return problems


def _same_list(a: int | str, b: int | str) -> bool:
    """Without the account's catalog only the same id, or the same name (spaces around it
    do not count, as names resolve), is surely one list; names differing by case may be
    two lists of the account."""
    return str(a).strip() == str(b).strip()
