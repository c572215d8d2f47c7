"""The YAML config: loading, ``${ENV}`` substitution, located errors, rule checks, check-config."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import check_config_main
from app.config import ConfigError, load_config, load_config_text
from app.durations import format_duration, parse_duration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "config.yaml"


def base() -> dict[str, Any]:
    """A valid config (the contract's example rule) as data, to break one thing at a time."""
    return {
        "broker": "kafka://127.0.0.1:9092",
        "accounts": {
            "demo": {
                "api_keys": ["demo-key"],
                "primary_key": "context.traits.email",
                "emarsys": {
                    "api_url": "http://127.0.0.1:9797/api/v3",
                    "client_id": "c",
                    "client_secret": "s",
                    "key_field": 3,
                },
                "data_maps": [
                    {"name": "email", "path": "context.traits.email", "type": "string", "field": 3},
                    {"name": "ecom_event", "path": "event"},
                    {"name": "ecom_revenue", "path": "properties.revenue", "type": "numeric"},
                    {"name": "cart_id", "path": "properties.cart_id"},
                    {"name": "coupon", "path": "properties.coupon"},
                ],
                "rules": [
                    {
                        "name": "Coupon entered but did not complete order",
                        "lifetime": "48h",
                        "transaction": "cart_id",
                        "conditions": [
                            {
                                "sequence": 0,
                                "type": "start",
                                "on": "track",
                                "match": 'ecom_event = "Coupon Entered"',
                            },
                            {
                                "sequence": 0,
                                "type": "exclude",
                                "on": "track",
                                "match": 'ecom_event = "Order Completed"',
                            },
                            {
                                "sequence": 1,
                                "type": "exit",
                                "wait": "1h",
                                "trigger": 1234,
                                "variables": ["coupon", "ecom_revenue"],
                            },
                        ],
                    }
                ],
            }
        },
    }


def load(data: dict[str, Any], env: dict[str, str] | None = None):
    return load_config_text(yaml.safe_dump(data, sort_keys=False), env=env or {})


def problems(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(data, env)
    assert info.value.problems, "a ConfigError must list at least one problem"
    return [str(p) for p in info.value.problems]


def account(data: dict[str, Any]) -> dict[str, Any]:
    return data["accounts"]["demo"]


def with_conditions(*conditions: dict[str, Any]) -> dict[str, Any]:
    data = base()
    account(data)["rules"][0]["conditions"] = list(conditions)
    return data


START = {"sequence": 0, "type": "start", "on": "track", "match": 'ecom_event = "Coupon Entered"'}
EXIT1 = {"sequence": 1, "type": "exit", "trigger": 1234}
RULE = "accounts.demo.rules[0]"


def has(found: list[str], location: str, fragment: str) -> bool:
    return any(p.startswith(location + ": ") and fragment in p for p in found)


# --------------------------------------------------------------------------- the example


def test_example_config_is_valid() -> None:
    config = load_config(EXAMPLE, env={})
    demo = config.accounts["demo"]
    assert config.broker == "embedded"
    assert demo.api_keys == ["demo-key"]  # the ${DEMO_API_KEY:-demo-key} default
    assert demo.emarsys.client_id == "demo-client"
    assert demo.emarsys.key_field == 3
    assert [dm.name for dm in demo.data_maps][:2] == ["email", "first_name"]
    rule = demo.rules[0]
    assert rule.lifetime == 48 * 3600
    assert rule.transaction == "cart_id"
    assert [c.on for c in rule.conditions] == ["track", "track", "any"]
    exit_ = rule.conditions[2]
    assert (exit_.type, exit_.wait, exit_.trigger) == ("exit", 3600.0, 1234)
    assert exit_.variables == ["coupon", "ecom_revenue"]
    lists = demo.rules[1].conditions[1]  # the simulator's lists, by name
    assert (lists.trigger, lists.add_to_list, lists.remove_from_list) == (
        None,
        "VIP customers",
        "Cart abandoners",
    )


def test_example_config_takes_secrets_from_the_environment() -> None:
    config = load_config(
        EXAMPLE, env={"DEMO_API_KEY": "from-env", "DEMO_EMARSYS_CLIENT_SECRET": "shh"}
    )
    assert config.accounts["demo"].api_keys == ["from-env"]
    assert config.accounts["demo"].emarsys.client_secret == "shh"


def test_load_config_reads_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_API_KEY", "process-env-key")
    path = tmp_path / "c.yaml"
    path.write_text(EXAMPLE.read_text())
    assert load_config(path).accounts["demo"].api_keys == ["process-env-key"]


def test_base_config_is_valid() -> None:
    config = load(base())
    assert config.accounts["demo"].rules[0].conditions[2].wait == 3600.0


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert "cannot read" in str(info.value)


# --------------------------------------------------------------------------- ${ENV}


def test_env_substitution_set_default_and_embedded() -> None:
    data = base()
    account(data)["api_keys"] = ["${KEY}", "${OTHER:-fallback}", "pre-${KEY}-post"]
    account(data)["emarsys"]["client_secret"] = "${SECRET:-}x"
    config = load(data, env={"KEY": "k1"})
    assert config.accounts["demo"].api_keys == ["k1", "fallback", "pre-k1-post"]
    assert config.accounts["demo"].emarsys.client_secret == "x"


def test_env_value_wins_over_default() -> None:
    data = base()
    account(data)["api_keys"] = ["${KEY:-default}"]
    assert load(data, env={"KEY": "set"}).accounts["demo"].api_keys == ["set"]


def test_env_substitution_feeds_typed_fields() -> None:
    data = base()
    data["partitions"] = "${PARTS:-4}"
    account(data)["emarsys"]["requests_per_minute"] = "${RPM}"
    config = load(data, env={"RPM": "250"})
    assert config.partitions == 4
    assert config.accounts["demo"].emarsys.requests_per_minute == 250


def test_missing_env_is_an_error_naming_its_location() -> None:
    data = base()
    account(data)["emarsys"]["client_secret"] = "${NOT_SET_ANYWHERE}"
    found = problems(data)
    assert (
        "accounts.demo.emarsys.client_secret: environment variable NOT_SET_ANYWHERE is not set"
        in found
    )


def test_missing_env_in_a_list_names_the_index() -> None:
    data = base()
    account(data)["api_keys"] = ["ok", "${MISSING_KEY}"]
    found = problems(data)
    assert "accounts.demo.api_keys[1]: environment variable MISSING_KEY is not set" in found


def test_env_values_are_not_substituted_twice() -> None:
    data = base()
    account(data)["api_keys"] = ["${A}"]
    assert load(data, env={"A": "${B}", "B": "no"}).accounts["demo"].api_keys == ["${B}"]


# --------------------------------------------------------------------------- YAML


def test_on_track_stays_a_string_not_a_boolean() -> None:
    text = EXAMPLE.read_text()
    assert "on: track" in text  # unquoted, the way users write it
    config = load_config_text(text, env={})
    assert config.accounts["demo"].rules[0].conditions[0].on == "track"


@pytest.mark.parametrize("word", ["on", "off", "yes", "no", "y", "n"])
def test_yaml_11_booleans_are_plain_text(word: str) -> None:
    data = load_config_text(EXAMPLE.read_text().replace("partitions: 8", f"app_id: {word}"), env={})
    assert data.app_id == word


def test_choice_tables_accept_yaml_booleans() -> None:
    text = EXAMPLE.read_text().replace(
        "      - {name: ecom_event, path: event, type: string}",
        "      - {name: ecom_event, path: event, type: string}\n"
        "      - {name: opt_in, path: traits.optIn, type: choice, field: 31,"
        " choices: {true: 1, false: 2}}",
    )
    config = load_config_text(text, env={})
    opt_in = config.accounts["demo"].data_map("opt_in")
    assert opt_in is not None and opt_in.choices == {"true": 1, "false": 2}


def test_yaml_syntax_error_points_at_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("accounts:\n  demo: [\n", env={})
    (problem,) = info.value.problems
    assert problem.location.startswith("line ")
    assert "column" in problem.location
    assert "not valid YAML" in problem.message


@pytest.mark.parametrize("text", ["", "- 1\n- 2\n", "just text\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, env={})
    assert "mapping" in str(info.value)


# --------------------------------------------------------------------------- field errors


def test_bad_data_map_type_is_located() -> None:
    data = base()
    account(data)["data_maps"][2]["type"] = "money"
    found = problems(data)
    assert found[0] == (
        "accounts.demo.data_maps[2].type: Input should be 'string', 'numeric', 'boolean', "
        "'date', 'datetime' or 'choice'"
    )


def test_readme_example_reports_field_and_rule_problems_together() -> None:
    # README: a bad data map type must not hide an unknown data map in a filter.
    data = base()
    account(data)["data_maps"][2]["type"] = "money"
    account(data)["rules"][0]["conditions"][1]["match"] = 'cart = "x"'
    found = problems(data)
    assert has(found, "accounts.demo.data_maps[2].type", "Input should be")
    assert has(found, f"{RULE}.conditions[1].match", "column 1: unknown data map 'cart'")
    assert len(found) == 2


def test_an_invalid_data_map_still_counts_as_known_to_rules() -> None:
    data = base()
    account(data)["data_maps"][4]["type"] = "money"  # coupon, used in the exit's variables
    found = problems(data)
    assert found == [
        "accounts.demo.data_maps[4].type: Input should be 'string', 'numeric', 'boolean', "
        "'date', 'datetime' or 'choice'"
    ]


@pytest.mark.parametrize(
    ("where", "location"),
    [
        (lambda d: d, "brokr"),
        (lambda d: account(d), "accounts.demo.brokr"),
        (lambda d: account(d)["emarsys"], "accounts.demo.emarsys.brokr"),
        (lambda d: account(d)["data_maps"][1], "accounts.demo.data_maps[1].brokr"),
        (lambda d: account(d)["rules"][0], f"{RULE}.brokr"),
        (lambda d: account(d)["rules"][0]["conditions"][2], f"{RULE}.conditions[2].brokr"),
    ],
)
def test_unknown_keys_are_rejected_with_their_location(where: Any, location: str) -> None:
    data = base()
    where(data)["brokr"] = "x"
    assert problems(data) == [f"{location}: unknown key (check the spelling)"]


def test_every_field_problem_is_reported_at_once() -> None:
    data = base()
    data["partitions"] = 0
    account(data)["emarsys"]["api_url"] = "ftp://nope"
    account(data)["data_maps"][0]["name"] = "1bad"
    account(data)["rules"][0]["conditions"][2]["wait"] = "soon"
    found = problems(data)
    assert has(found, "partitions", "greater than or equal to 1")
    assert has(found, "accounts.demo.emarsys.api_url", "is not an http(s) URL")
    assert has(found, "accounts.demo.data_maps[0].name", "not a valid data map name")
    assert has(found, f"{RULE}.conditions[2].wait", "not a duration")
    assert len(found) == 4


@pytest.mark.parametrize(
    ("mutate", "location", "fragment"),
    [
        (lambda a: a["emarsys"].pop("client_secret"), "accounts.demo.emarsys", "client_secret"),
        (lambda a: a["emarsys"].update(auth="wsse"), "accounts.demo.emarsys", "username"),
        (lambda a: a.update(api_keys=[]), "accounts.demo.api_keys", "at least 1"),
        (lambda a: a.update(api_keys=[" "]), "accounts.demo.api_keys", "cannot be empty"),
        (lambda a: a.update(primary_key=""), "accounts.demo.primary_key", "cannot be empty"),
        (
            lambda a: a["data_maps"][1].update(path="a..b"),
            "accounts.demo.data_maps[1].path",
            "invalid JSON path",
        ),
        (
            lambda a: a["data_maps"][1].update(field=0),
            "accounts.demo.data_maps[1].field",
            "greater than or equal to 1",
        ),
        (
            lambda a: a["rules"][0]["conditions"][0].update(on="click"),
            f"{RULE}.conditions[0].on",
            "Input should be",
        ),
        (
            lambda a: a["rules"][0]["conditions"][0].update(sequence=-1),
            f"{RULE}.conditions[0].sequence",
            "greater than or equal to 0",
        ),
        (lambda a: a["rules"][0].update(conditions=[]), f"{RULE}.conditions", "at least 1"),
    ],
)
def test_field_problems_are_located(mutate: Any, location: str, fragment: str) -> None:
    data = base()
    mutate(account(data))
    found = problems(data)
    assert has(found, location, fragment), found


def test_bad_broker_and_default_account() -> None:
    data = base()
    data["broker"] = "localhost:9092"
    found = problems(data)
    assert has(found, "broker", "kafka://")
    data = base()
    data["default_account"] = "nope"
    assert any("default_account 'nope' is not an account" in p for p in problems(data))


def test_bad_account_id() -> None:
    data = base()
    data["accounts"]["bad id!"] = data["accounts"].pop("demo")
    assert any("'bad id!' is not a valid account id" in p for p in problems(data))


# --------------------------------------------------------------------------- rule checks


def test_unknown_data_map_in_match() -> None:
    data = base()
    account(data)["rules"][0]["conditions"][1]["match"] = 'cart = "x"'
    assert problems(data) == [f"{RULE}.conditions[1].match: column 1: unknown data map 'cart'"]


def test_unknown_data_map_in_user_reference() -> None:
    data = base()
    account(data)["rules"][0]["conditions"][0]["match"] = 'user.plan = "pro"'
    assert problems(data) == [f"{RULE}.conditions[0].match: column 6: unknown data map 'plan'"]


def test_unknown_data_map_in_variables() -> None:
    data = base()
    account(data)["rules"][0]["conditions"][2]["variables"] = ["coupon", "discount"]
    assert problems(data) == [f"{RULE}.conditions[2].variables[1]: unknown data map 'discount'"]


def test_unknown_transaction_data_map() -> None:
    data = base()
    account(data)["rules"][0]["transaction"] = "basket"
    assert problems(data) == [f"{RULE}.transaction: unknown data map 'basket'"]


@pytest.mark.parametrize(
    ("match", "column"),
    [
        ("ecom_event = ", 14),
        ('ecom_event = "x" ecom_event', 18),
        ('ecom_event = "x" and', 21),
        ('(ecom_event = "x"', 18),
        ('ecom_event = "x" and nope = 1', 22),
    ],
)
def test_filter_errors_point_at_the_column(match: str, column: int) -> None:
    data = base()
    account(data)["rules"][0]["conditions"][0]["match"] = match
    (problem,) = problems(data)
    assert problem.startswith(f"{RULE}.conditions[0].match: column ")
    reported = int(problem.split("column ")[1].split(":")[0])
    assert 1 <= reported <= len(match) + 1
    assert reported == column, problem


def test_start_not_at_sequence_0() -> None:
    found = problems(
        with_conditions(
            {"sequence": 0, "type": "exclude", "match": 'ecom_event = "X"'},
            {**START, "sequence": 1},
            {**EXIT1, "sequence": 2},
        )
    )
    assert has(found, f"{RULE}.conditions[1].sequence", "a start condition must be at sequence 0")


def test_no_start_at_all() -> None:
    found = problems(with_conditions({**EXIT1, "sequence": 0}))
    assert has(found, f"{RULE}.conditions", "needs a start condition")


def test_sequence_gaps() -> None:
    found = problems(with_conditions(START, {**EXIT1, "sequence": 3}))
    assert found == [
        f"{RULE}.conditions: sequences must run 0, 1, 2, ... without gaps; missing [1, 2]"
    ]


def test_no_exit() -> None:
    found = problems(
        with_conditions(START, {"sequence": 1, "type": "step", "match": 'ecom_event = "B"'})
    )
    assert has(found, f"{RULE}.conditions", "needs an exit condition")


def test_exit_at_sequence_0() -> None:
    found = problems(with_conditions(START, {**EXIT1, "sequence": 0}))
    assert has(found, f"{RULE}.conditions", "the exit must come after the start")
    assert has(found, f"{RULE}.conditions[1].sequence", "an exit cannot be at sequence 0")


def test_exit_not_last() -> None:
    found = problems(
        with_conditions(START, EXIT1, {"sequence": 2, "type": "step", "match": 'ecom_event = "B"'})
    )
    assert has(found, f"{RULE}.conditions[1].sequence", "an exit must be the last sequence (2)")
    assert has(found, f"{RULE}.conditions[2].type", "a step cannot be there")


def test_step_at_the_exits_sequence() -> None:
    found = problems(
        with_conditions(START, {"sequence": 1, "type": "step", "match": 'ecom_event = "B"'}, EXIT1)
    )
    assert found == [
        f"{RULE}.conditions[1].type: the last sequence is the exit; a step cannot be there"
    ]


@pytest.mark.parametrize("sequence", [1, 2])
def test_exclude_at_or_after_the_exit(sequence: int) -> None:
    found = problems(
        with_conditions(
            START, EXIT1, {"sequence": sequence, "type": "exclude", "match": 'ecom_event = "X"'}
        )
    )
    assert has(found, f"{RULE}.conditions[2].sequence", "must come before the exit")


@pytest.mark.parametrize(("index", "kind"), [(0, "start"), (1, "exclude")])
@pytest.mark.parametrize("attr", ["wait", "within"])
def test_wait_and_within_on_start_or_exclude(index: int, kind: str, attr: str) -> None:
    data = base()
    account(data)["rules"][0]["conditions"][index][attr] = "10m"
    assert problems(data) == [f"{RULE}.conditions[{index}].{attr}: a {kind} cannot have {attr}"]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("soon", "not a duration"),
        ("-5m", "not a duration"),
        (-5, "cannot be negative"),
        ("5 hours", "not a duration"),
        (True, "not a duration"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
        ("9" * 400, "not a duration"),
    ],
)
def test_bad_durations(value: Any, fragment: str) -> None:
    data = base()
    account(data)["rules"][0]["conditions"][2]["wait"] = value
    found = problems(data)
    assert has(found, f"{RULE}.conditions[2].wait", fragment), found


@pytest.mark.parametrize("field", ["lifetime"])
def test_bad_rule_lifetime(field: str) -> None:
    data = base()
    account(data)["rules"][0][field] = "forever"
    assert has(problems(data), f"{RULE}.{field}", "not a duration")


def test_within_shorter_than_wait() -> None:
    found = problems(
        with_conditions(
            START,
            {
                "sequence": 1,
                "type": "step",
                "match": 'ecom_event = "B"',
                "wait": "1h",
                "within": "30m",
            },
            {**EXIT1, "sequence": 2},
        )
    )
    assert has(found, f"{RULE}.conditions[1].within", "within is shorter than wait")


@pytest.mark.parametrize(
    ("trigger", "fragment"),
    [
        (0, "0 is not an external event id"),
        (-1, "-1 is not an external event id"),
        ("", "neither an id nor a name"),
        ("   ", "neither an id nor a name"),
        (True, "not an external event id"),
        (1.5, "not an external event id"),
        ([1], "not an external event id"),
    ],
)
def test_trigger_neither_id_nor_name(trigger: Any, fragment: str) -> None:
    data = base()
    account(data)["rules"][0]["conditions"][2]["trigger"] = trigger
    found = problems(data)
    assert len(found) == 1, found
    assert has(found, f"{RULE}.conditions[2].trigger", fragment), found


@pytest.mark.parametrize("trigger", [1234, "segment.com test event", "1234"])
def test_trigger_id_or_name_is_fine(trigger: Any) -> None:
    data = base()
    account(data)["rules"][0]["conditions"][2]["trigger"] = trigger
    assert load(data).accounts["demo"].rules[0].conditions[2].trigger == trigger


def test_exit_without_any_action() -> None:
    data = base()
    del account(data)["rules"][0]["conditions"][2]["trigger"]
    assert problems(data) == [
        f"{RULE}.conditions[2].trigger: an exit needs an action: a trigger (external event id "
        "or name), add_to_list or remove_from_list (contact list id or name)"
    ]


@pytest.mark.parametrize(
    "actions",
    [
        {"add_to_list": 750504659},
        {"remove_from_list": "Cart abandoners"},
        {"add_to_list": "VIP customers", "remove_from_list": 750504660},
        {"trigger": 1234, "add_to_list": "750504659"},
        {"trigger": "segment.com test event", "remove_from_list": 7.0},
    ],
)
def test_list_actions_with_or_without_trigger(actions: dict[str, Any]) -> None:
    data = base()
    exit_ = account(data)["rules"][0]["conditions"][2]
    del exit_["trigger"], exit_["variables"]
    exit_.update(actions)
    loaded = load(data).accounts["demo"].rules[0].conditions[2]
    for key, value in actions.items():
        assert getattr(loaded, key) == (int(value) if isinstance(value, float) else value)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("add_to_list", 0, "0 is not a contact list id"),
        ("remove_from_list", -3, "-3 is not a contact list id"),
        ("add_to_list", "  ", "an empty contact list is neither an id nor a name"),
        ("add_to_list", True, "True is not a contact list id (a whole number) or name (text)"),
        ("remove_from_list", 2.5, "2.5 is not a contact list id"),
        ("remove_from_list", ["VIP"], "is not a contact list id"),
    ],
)
def test_list_action_neither_id_nor_name(key: str, value: Any, fragment: str) -> None:
    data = base()
    account(data)["rules"][0]["conditions"][2][key] = value
    found = problems(data)
    assert len(found) == 1, found
    assert has(found, f"{RULE}.conditions[2].{key}", fragment), found


@pytest.mark.parametrize(("index", "kind"), [(0, "start"), (1, "exclude")])
@pytest.mark.parametrize("key", ["add_to_list", "remove_from_list"])
def test_list_action_on_a_non_exit(index: int, kind: str, key: str) -> None:
    data = base()
    account(data)["rules"][0]["conditions"][index][key] = 750504659
    assert problems(data) == [
        f"{RULE}.conditions[{index}].{key}: only an exit has {key}, not a {kind}"
    ]


def test_variables_without_a_trigger_have_nothing_to_fill() -> None:
    data = base()
    exit_ = account(data)["rules"][0]["conditions"][2]
    del exit_["trigger"]
    exit_["add_to_list"] = "VIP customers"
    assert problems(data) == [
        f"{RULE}.conditions[2].variables: variables fill the trigger's data: this exit has "
        "no trigger"
    ]


@pytest.mark.parametrize(("add", "remove"), [(750504659, "750504659"), ("VIP", " VIP ")])
def test_adding_to_and_removing_from_one_list_is_refused(add: Any, remove: Any) -> None:
    data = base()
    account(data)["rules"][0]["conditions"][2].update(add_to_list=add, remove_from_list=remove)
    found = problems(data)
    assert len(found) == 1, found
    assert has(found, f"{RULE}.conditions[2].remove_from_list", "the same list"), found


def test_check_config_names_a_list_action_where_it_cannot_be(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = base()
    account(data)["rules"][0]["conditions"][0]["add_to_list"] = "VIP customers"
    del account(data)["rules"][0]["conditions"][2]["trigger"]
    del account(data)["rules"][0]["conditions"][2]["variables"]
    path = write(tmp_path, data)
    assert check_config_main([str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        f"  {RULE}.conditions[0].add_to_list: only an exit has add_to_list, not a start",
        f"  {RULE}.conditions[2].trigger: an exit needs an action: a trigger (external event "
        "id or name), add_to_list or remove_from_list (contact list id or name)",
    ]
    account(data)["rules"][0]["conditions"][0].pop("add_to_list")
    account(data)["rules"][0]["conditions"][2]["add_to_list"] = "VIP customers"
    assert check_config_main([str(write(tmp_path, data))]) == 0


def test_list_actions_round_trip_through_the_editable_view() -> None:
    """GET config shows the list actions as written, and nothing for exits without them."""
    from app.config.live import editable_view

    data = base()
    account(data)["rules"][0]["conditions"][2]["add_to_list"] = "VIP customers"
    view = editable_view(load(data), "demo")
    assert view["rules"][0]["conditions"][2]["add_to_list"] == "VIP customers"
    assert "remove_from_list" not in view["rules"][0]["conditions"][2]
    assert "add_to_list" not in view["rules"][0]["conditions"][0]


@pytest.mark.parametrize(("index", "kind"), [(0, "start"), (1, "exclude")])
def test_trigger_on_a_non_exit(index: int, kind: str) -> None:
    data = base()
    account(data)["rules"][0]["conditions"][index]["trigger"] = 99
    assert problems(data) == [
        f"{RULE}.conditions[{index}].trigger: only an exit has a trigger, not a {kind}"
    ]


def test_variables_on_a_non_exit() -> None:
    data = base()
    account(data)["rules"][0]["conditions"][0]["variables"] = ["coupon"]
    assert problems(data) == [f"{RULE}.conditions[0].variables: only an exit has variables"]


def test_exclude_without_match() -> None:
    data = base()
    del account(data)["rules"][0]["conditions"][1]["match"]
    assert problems(data) == [
        f"{RULE}.conditions[1].match: an exclude needs matching criteria "
        "(it would end every instance)"
    ]


def test_step_without_match() -> None:
    found = problems(
        with_conditions(START, {"sequence": 1, "type": "step"}, {**EXIT1, "sequence": 2})
    )
    assert found == [f"{RULE}.conditions[1].match: a step needs matching criteria"]


def test_two_exits_without_match() -> None:
    found = problems(with_conditions(START, EXIT1, {**EXIT1, "trigger": 99}))
    assert found == [f"{RULE}.conditions: at most one exit without matching criteria"]


def test_two_exits_one_matched_is_fine() -> None:
    load(with_conditions(START, EXIT1, {**EXIT1, "trigger": 99, "match": 'ecom_event = "B"'}))


def test_duplicate_data_map_names() -> None:
    data = base()
    account(data)["data_maps"].append({"name": "coupon", "path": "properties.code"})
    assert problems(data) == [
        "accounts.demo.data_maps[4].name: data map 'coupon' is defined twice",
        "accounts.demo.data_maps[5].name: data map 'coupon' is defined twice",
    ]


def test_two_data_maps_writing_one_field() -> None:
    data = base()
    account(data)["data_maps"][1]["field"] = 3
    assert problems(data) == [
        "accounts.demo.data_maps[1].field: field 3 is already written by data map 'email'"
    ]


def test_duplicate_rule_names() -> None:
    data = base()
    account(data)["rules"].append(copy.deepcopy(account(data)["rules"][0]))
    found = problems(data)
    assert found == [
        f"accounts.demo.rules[{i}].name: rule 'Coupon entered but did not complete order' "
        "is defined twice"
        for i in (0, 1)
    ]


def test_one_api_key_in_two_accounts() -> None:
    data = base()
    other = copy.deepcopy(account(data))
    other["api_keys"] = ["own-key", "demo-key"]
    data["accounts"]["other"] = other
    assert problems(data) == [
        "accounts.other.api_keys[1]: this API key is also used by account 'demo'"
    ]


def test_one_api_key_in_two_accounts_reported_with_field_errors() -> None:
    data = base()
    other = copy.deepcopy(account(data))
    other["api_keys"] = ["demo-key"]
    other["partitions"] = 3  # unknown key: field validation fails
    data["accounts"]["other"] = other
    found = problems(data)
    assert "accounts.other.partitions: unknown key (check the spelling)" in found
    assert "accounts.other.api_keys[0]: this API key is also used by account 'demo'" in found


def test_choice_without_choices() -> None:
    data = base()
    account(data)["data_maps"].append({"name": "opt_in", "path": "traits.optIn", "type": "choice"})
    assert problems(data) == [
        "accounts.demo.data_maps[5]: a data map of type choice needs a choices table"
    ]


def test_choices_on_a_non_choice() -> None:
    data = base()
    account(data)["data_maps"][1]["choices"] = {"a": 1}
    assert problems(data) == [
        "accounts.demo.data_maps[1]: choices are only for type choice, not string"
    ]


def test_every_rule_problem_is_reported_at_once() -> None:
    data = with_conditions(
        {**START, "wait": "1m"},
        {"sequence": 0, "type": "exclude"},
        {**EXIT1, "sequence": 2, "trigger": 0, "variables": ["nope"]},
    )
    account(data)["rules"][0]["transaction"] = "basket"
    found = problems(data)
    assert has(found, f"{RULE}.transaction", "unknown data map 'basket'")
    assert has(found, f"{RULE}.conditions", "missing [1]")
    assert has(found, f"{RULE}.conditions[0].wait", "a start cannot have wait")
    assert has(found, f"{RULE}.conditions[1].match", "an exclude needs matching criteria")
    assert has(found, f"{RULE}.conditions[2].trigger", "0 is not an external event id")
    assert has(found, f"{RULE}.conditions[2].variables[0]", "unknown data map 'nope'")
    assert len(found) == 6


# --------------------------------------------------------------------------- check-config


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_check_config_ok_on_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config_main([str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out
    assert "1 account(s), 6 data map(s), 2 rule(s)" in out


def test_check_config_prints_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = base()
    account(data)["data_maps"][2]["type"] = "money"
    account(data)["rules"][0]["conditions"][1]["match"] = 'cart = "x"'
    account(data)["emarsys"]["typo"] = 1
    path = write(tmp_path, data)
    assert check_config_main([str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}: 3 problem(s)"
    assert "  accounts.demo.data_maps[2].type: Input should be" in "\n".join(lines)
    assert "  accounts.demo.emarsys.typo: unknown key (check the spelling)" in lines
    assert f"  {RULE}.conditions[1].match: column 1: unknown data map 'cart'" in lines
    assert len(lines) == 4


def test_check_config_semantic_problems_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, with_conditions(START, {**EXIT1, "sequence": 2}))
    assert check_config_main([str(path)]) == 1
    out = capsys.readouterr().out
    assert "1 problem(s)" in out
    assert "missing [1]" in out


def test_check_config_missing_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EMD_TEST_UNSET_SECRET", raising=False)
    data = base()
    account(data)["emarsys"]["client_secret"] = "${EMD_TEST_UNSET_SECRET}"
    path = write(tmp_path, data)
    assert check_config_main([str(path)]) == 1
    assert "environment variable EMD_TEST_UNSET_SECRET is not set" in capsys.readouterr().out
    monkeypatch.setenv("EMD_TEST_UNSET_SECRET", "now-set")
    assert check_config_main([str(path)]) == 0


def test_check_config_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config_main([str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().out


def test_check_config_invalid_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("accounts: {demo: [}\n")
    assert check_config_main([str(path)]) == 1
    assert "not valid YAML" in capsys.readouterr().out


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        (" 10 m ", 600.0),
        ("45", 45.0),
        (45, 45.0),
        (0.5, 0.5),
        (0, 0.0),
    ],
)
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad", ["", "h", "1y", "-1h", "1h30m", "1 hour", "abc", None, True, [1], -1, float("inf")]
)
def test_bad_duration_values(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"), [(3600, "1h"), (172800, "2d"), (90, "90s"), (900, "15m"), (0.25, "0.25s")]
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(format_duration(seconds)) == seconds


def test_durations_in_the_config_are_seconds() -> None:
    data = base()
    data["dedupe_window"] = "2d"
    data["sink"] = {"flush_interval": "250ms"}
    account(data)["emarsys"]["timeout"] = 10
    config = load(data)
    assert config.dedupe_window == 172800.0
    assert config.sink.flush_interval == 0.25
    assert config.accounts["demo"].emarsys.timeout == 10.0


def test_the_openapi_rule_schema_has_every_field_of_the_config() -> None:
    """The API's description of rules and conditions cannot drift from the config model."""
    from app.config.model import ConditionConfig, RuleConfig
    from app.web.openapi import document

    schemas = document()["components"]["schemas"]
    assert set(schemas["ConditionConfig"]["properties"]) == set(ConditionConfig.model_fields)
    assert set(schemas["Rule"]["properties"]) == set(RuleConfig.model_fields)
    assert "at least one" in schemas["ConditionConfig"]["description"]
