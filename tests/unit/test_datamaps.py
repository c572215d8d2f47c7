"""Data maps: reading values from events and converting them to Emarsys formats."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.config.model import DataMapConfig
from app.datamaps import (
    LONG_TEXT_MAX,
    SHORT_TEXT_FIELDS,
    SHORT_TEXT_MAX,
    ConversionError,
    DataMaps,
    convert,
    default_max_length,
)
from app.jsonpath import MISSING


def dm(type_: str = "string", name: str = "v", **kw: Any) -> DataMapConfig:
    return DataMapConfig.model_validate({"name": name, "path": "properties.v", "type": type_, **kw})


def fails(d: DataMapConfig, raw: Any) -> str:
    with pytest.raises(ConversionError) as info:
        convert(d, raw)
    assert isinstance(info.value, ValueError)
    return str(info.value)


# --------------------------------------------------------------------------- no value


@pytest.mark.parametrize("type_", ["string", "numeric", "boolean", "date", "datetime"])
def test_null_and_missing_give_no_value(type_: str) -> None:
    assert convert(dm(type_), None) is None
    assert convert(dm(type_), MISSING) is None
    assert convert(dm(type_), "") is None
    assert convert(dm(type_), "   ") is None


def test_null_and_empty_give_no_value_for_choice() -> None:
    d = dm("choice", choices={"a": 1, "null": 3})
    assert convert(d, None) is None  # never the "null" entry: a null is never sent
    assert convert(d, "") is None


# --------------------------------------------------------------------------- string


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ann", "Ann"),
        ("  Ann Lee \n", "Ann Lee"),
        (5, "5"),
        (-12, "-12"),
        (5.0, "5"),
        (14.99, "14.99"),
        (0.1, "0.1"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
    ],
)
def test_string(raw: Any, expected: str) -> None:
    assert convert(dm("string"), raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"a": 1}, "v: object cannot be converted to text"),
        ([1, 2], "v: list cannot be converted to text"),
        (float("nan"), "v: number is not finite"),
        (float("inf"), "v: number is not finite"),
    ],
)
def test_string_failures(raw: Any, reason: str) -> None:
    assert fails(dm("string"), raw) == reason


def test_string_default_max_length_short_text_fields() -> None:
    assert {1, 2, 46} <= SHORT_TEXT_FIELDS
    first = dm("string", name="first_name", field=1)
    assert default_max_length(first) == SHORT_TEXT_MAX == 60
    assert convert(first, "a" * 60) == "a" * 60
    assert fails(first, "a" * 61) == "first_name: text longer than 60 characters"
    # stripping happens before the length check
    assert convert(first, " " + "a" * 60 + " ") == "a" * 60
    last = dm("string", name="last_name", field=2)
    assert fails(last, "b" * 61) == "last_name: text longer than 60 characters"
    salutation = dm("string", name="sal", field=46)
    assert fails(salutation, "c" * 61) == "sal: text longer than 60 characters"


def test_string_default_max_length_long_text() -> None:
    for d in (dm("string", name="email", field=3), dm("string", name="coupon")):
        assert default_max_length(d) == LONG_TEXT_MAX == 255
        assert convert(d, "x" * 255) == "x" * 255
        assert fails(d, "x" * 256) == f"{d.name}: text longer than 255 characters"


def test_string_explicit_max_length_wins() -> None:
    d = dm("string", name="code", field=1, max_length=5)
    assert convert(d, "abcde") == "abcde"
    assert fails(d, "abcdef") == "code: text longer than 5 characters"
    wide = dm("string", name="wide", field=1, max_length=100)
    assert convert(wide, "a" * 100) == "a" * 100


def test_string_never_truncates_and_never_echoes_the_value() -> None:
    d = dm("string", name="email", max_length=10)
    reason = fails(d, "someone.secret@example.com")
    assert reason == "email: text longer than 10 characters"
    assert "secret" not in reason


def test_string_from_long_number() -> None:
    d = dm("string", max_length=3)
    assert fails(d, 12345) == "v: number longer than 3 characters"
    assert fails(dm("string"), 10**5000) == "v: number has more than 255 digits"


# --------------------------------------------------------------------------- numeric


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (12, 12),
        (-3, -3),
        (12.5, 12.5),
        (5.0, 5),
        ("12.50", 12.5),
        ("1e3", 1000),
        ("1E3", 1000),
        ("-3.25", -3.25),
        ("+7", 7),
        (" 42 ", 42),
        (".5", 0.5),
        ("5.", 5),
        ("0", 0),
        ("2.5e-1", 0.25),
        (10**24 - 1, 10**24 - 1),
        ("9" * 24, int("9" * 24)),
        ("123456789012345678901234", 123456789012345678901234),
        ("1e23", 10**23),
        (1e23, 10**23),  # exact, not int(1e23) == 99999999999999991611392
        (9007199254740994.0, 9007199254740994),
        (1e-5, 1e-05),
        ("0012", 12),
        ("-0.0", 0),
        ("39.95", 39.95),
        ("0.000000000000000000000001", 1e-24),
        ("000000000000000000000000000012", 12),
        ("12.5000000000000000000000000000", 12.5),
    ],
)
def test_numeric(raw: Any, expected: int | float) -> None:
    out = convert(dm("numeric"), raw)
    assert out == expected
    assert type(out) is type(expected)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (True, "v: boolean is not a number"),
        (False, "v: boolean is not a number"),
        ("true", "v: text is not a number"),
        ("abc", "v: text is not a number"),
        ("12,50", "v: text is not a number"),
        ("1_000", "v: text is not a number"),
        ("0x10", "v: text is not a number"),
        ("nan", "v: text is not a number"),
        ("NaN", "v: text is not a number"),
        ("inf", "v: text is not a number"),
        ("-Infinity", "v: text is not a number"),
        ("1.2.3", "v: text is not a number"),
        ("١٢", "v: text is not a number"),
        (float("nan"), "v: number is not finite"),
        (float("inf"), "v: number is not finite"),
        (float("-inf"), "v: number is not finite"),
        (10**24, "v: number has more than 24 digits"),
        (-(10**24), "v: number has more than 24 digits"),
        (10**400, "v: number has more than 24 digits"),
        (1e30, "v: number has more than 24 digits"),
        ("1" * 25, "v: text has more than 24 digits"),
        ("1e24", "v: text has more than 24 digits"),
        ("0." + "1" * 25, "v: text has more than 24 digits"),
        ("1e-25", "v: text has more than 24 digits"),
        ("1" + "0" * 24, "v: text has more than 24 digits"),
        ("1e999999999999", "v: text has more than 24 digits"),
        ("1e-999999999999", "v: text has more than 24 digits"),
        ("1e99999999999999999999999999", "v: text is not a number"),
        ("1" * 65, "v: text is not a number"),
        ({"a": 1}, "v: object is not a number"),
        ([1], "v: list is not a number"),
    ],
)
def test_numeric_failures(raw: Any, reason: str) -> None:
    assert fails(dm("numeric"), raw) == reason


def test_numeric_beyond_python_int_text_limit() -> None:
    # str() of such an int raises in Python 3.11: the check must not need it
    assert fails(dm("numeric"), 10**5000) == "v: number has more than 24 digits"


# --------------------------------------------------------------------------- boolean


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("false", False),
        ("FaLsE", False),
        ("yes", True),
        ("YES", True),
        ("no", False),
        ("No", False),
        ("1", True),
        ("0", False),
        (" yes ", True),
        (1, True),
        (0, False),
        (1.0, True),
        (0.0, False),
    ],
)
def test_boolean(raw: Any, expected: bool) -> None:
    assert convert(dm("boolean"), raw) is expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("maybe", "v: text is not a boolean (true/false, yes/no, 1/0)"),
        ("y", "v: text is not a boolean (true/false, yes/no, 1/0)"),
        ("2", "v: text is not a boolean (true/false, yes/no, 1/0)"),
        (2, "v: number is not 0 or 1"),
        (-1, "v: number is not 0 or 1"),
        (0.5, "v: number is not 0 or 1"),
        (float("nan"), "v: number is not 0 or 1"),
        ({}, "v: object is not a boolean"),
        ([True], "v: list is not a boolean"),
    ],
)
def test_boolean_failures(raw: Any, reason: str) -> None:
    assert fails(dm("boolean"), raw) == reason


# --------------------------------------------------------------------------- date


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-01-02", "2024-01-02"),
        (" 1985-03-15 ", "1985-03-15"),
        ("2024-01-02T03:04:05Z", "2024-01-02"),
        ("2024-01-02T03:04:05.678Z", "2024-01-02"),
        ("2024-01-02 03:04:05", "2024-01-02"),
        # the calendar date as written, not moved to UTC
        ("2024-01-02T00:30:00+01:00", "2024-01-02"),
        ("2024-01-02T23:30:00-05:00", "2024-01-02"),
        (0, "1970-01-01"),
        (1704153600, "2024-01-02"),
        (1704239999, "2024-01-02"),
        (1704153600.9, "2024-01-02"),
        (-315619200, "1960-01-01"),
    ],
)
def test_date(raw: Any, expected: str) -> None:
    assert convert(dm("date"), raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("2024-1-2", "v: text is not a valid ISO 8601 date or date-time (expected YYYY-MM-DD)"),
        ("02/01/2024", "v: text is not a valid ISO 8601 date or date-time (expected YYYY-MM-DD)"),
        ("2024-02-30", "v: text is not a valid ISO 8601 date or date-time (expected YYYY-MM-DD)"),
        ("yesterday", "v: text is not a valid ISO 8601 date or date-time (expected YYYY-MM-DD)"),
        (1.7e12, "v: number is out of range for unix seconds"),  # milliseconds, not seconds
        (1e300, "v: number is out of range for unix seconds"),
        (float("nan"), "v: number is not finite"),
        (True, "v: boolean is not a date"),
        ({}, "v: object is not a date"),
        ([2024, 1, 2], "v: list is not a date"),
    ],
)
def test_date_failures(raw: Any, reason: str) -> None:
    assert fails(dm("date"), raw) == reason


# --------------------------------------------------------------------------- datetime


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05.678Z", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05.678+02:00", "2024-01-02T01:04:05Z"),
        ("2024-01-02T00:30:00+01:00", "2024-01-01T23:30:00Z"),
        ("2024-01-02T21:00:00-05:00", "2024-01-03T02:00:00Z"),
        ("2024-01-02T03:04:05", "2024-01-02T03:04:05Z"),  # no offset: UTC
        ("2024-01-02 03:04", "2024-01-02T03:04:00Z"),
        ("2024-01-02", "2024-01-02T00:00:00Z"),  # date only: midnight UTC
        (1704164645, "2024-01-02T03:04:05Z"),
        (1704164645.999, "2024-01-02T03:04:05Z"),
        (0, "1970-01-01T00:00:00Z"),
        (-1, "1969-12-31T23:59:59Z"),
    ],
)
def test_datetime(raw: Any, expected: str) -> None:
    assert convert(dm("datetime"), raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            "2024-01-02T03:04:05 PM",
            "v: text is not a valid ISO 8601 date or date-time "
            "(expected YYYY-MM-DDTHH:MM:SS with Z or an offset)",
        ),
        (
            "2024-01-02T25:00:00Z",
            "v: text is not a valid ISO 8601 date or date-time "
            "(expected YYYY-MM-DDTHH:MM:SS with Z or an offset)",
        ),
        ("0001-01-01T00:00:00+01:00", "v: text is out of range in UTC"),
        (float("inf"), "v: number is not finite"),
        (1e20, "v: number is out of range for unix seconds"),
        (False, "v: boolean is not a date-time"),
        ({"t": 1}, "v: object is not a date-time"),
    ],
)
def test_datetime_failures(raw: Any, reason: str) -> None:
    assert fails(dm("datetime"), raw) == reason


# --------------------------------------------------------------------------- choice


def test_choice_booleans_from_yaml_keys() -> None:
    opt_in = DataMapConfig.model_validate(
        {"name": "opt_in", "path": "traits.optIn", "type": "choice", "field": 31,
         "choices": {True: 1, False: 2}}
    )  # fmt: skip
    assert convert(opt_in, True) == 1
    assert convert(opt_in, False) == 2
    assert convert(opt_in, "true") == 1
    assert convert(opt_in, "FALSE") == 2
    assert fails(opt_in, "yes") == "opt_in: text has no entry in the choices table"
    assert fails(opt_in, 1) == "opt_in: number has no entry in the choices table"


def test_choice_numbers_as_text() -> None:
    gender = dm("choice", name="gender", choices={"1": 10, "2": 20, "2.5": 25})
    assert convert(gender, 1) == 10
    assert convert(gender, 1.0) == 10
    assert convert(gender, "2") == 20
    assert convert(gender, 2.5) == 25
    assert fails(gender, 3) == "gender: number has no entry in the choices table"
    assert fails(gender, float("nan")) == "gender: number is not finite"


def test_choice_text_exact_then_case_insensitive() -> None:
    d = dm("choice", name="sal", choices={"Mr": 1, "Ms": 2, "dr": 3, "DR": 4})
    assert convert(d, "Mr") == 1
    assert convert(d, "mr") == 1
    assert convert(d, " MS ") == 2
    assert convert(d, "DR") == 4  # exact match wins over the case-insensitive one
    assert convert(d, "dr") == 3
    assert convert(d, "Dr") == 3  # first table entry among case-insensitive matches


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("Mrs", "sal: text has no entry in the choices table"),
        ({"a": 1}, "sal: object cannot be a choice"),
        (["Mr"], "sal: list cannot be a choice"),
    ],
)
def test_choice_failures(raw: Any, reason: str) -> None:
    d = dm("choice", name="sal", choices={"Mr": 1})
    assert fails(d, raw) == reason


# --------------------------------------------------------------------------- reasons


SECRET = "ann.secret@example.com"


@pytest.mark.parametrize(
    ("type_", "raw", "extra"),
    [
        ("string", SECRET, {"max_length": 3}),
        ("numeric", SECRET, {}),
        ("boolean", SECRET, {}),
        ("date", SECRET, {}),
        ("datetime", SECRET, {}),
        ("choice", SECRET, {"choices": {"x": 1}}),
        ("string", {"email": SECRET}, {}),
    ],
)
def test_reasons_name_the_map_and_type_but_not_the_value(
    type_: str, raw: Any, extra: dict[str, Any]
) -> None:
    reason = fails(dm(type_, name="email", **extra), raw)
    assert reason.startswith("email: ")
    assert "secret" not in reason
    assert "example" not in reason


# --------------------------------------------------------------------------- DataMaps

CONTRACT_MAPS = [
    DataMapConfig(name="email", path="context.traits.email", type="string", field=3),
    DataMapConfig(name="first_name", path="traits.firstName", type="string", field=1),
    DataMapConfig(name="ecom_event", path="event", type="string"),
    DataMapConfig(name="ecom_revenue", path="properties.revenue", type="numeric"),
    DataMapConfig(name="cart_id", path="properties.cart_id", type="string"),
    DataMapConfig(name="coupon", path="properties.coupon", type="string"),
]


def test_names_in_config_order() -> None:
    assert DataMaps(CONTRACT_MAPS).names == (
        "email",
        "first_name",
        "ecom_event",
        "ecom_revenue",
        "cart_id",
        "coupon",
    )
    assert DataMaps([]).names == ()


def test_evaluate_track() -> None:
    maps = DataMaps(CONTRACT_MAPS)
    msg = {
        "type": "track",
        "event": "Coupon Entered",
        "context": {"traits": {"email": " ann@example.com "}},
        "properties": {"revenue": "39.95", "cart_id": 12345, "coupon": None},
    }
    values, failed = maps.evaluate(msg)
    assert values == {
        "email": "ann@example.com",
        "ecom_event": "Coupon Entered",
        "ecom_revenue": 39.95,
        "cart_id": "12345",
    }
    assert failed == []
    assert maps.fields(values) == {"3": "ann@example.com"}


def test_evaluate_identify_and_fields() -> None:
    maps = DataMaps(CONTRACT_MAPS)
    msg = {
        "type": "identify",
        "traits": {"firstName": "Ann"},
        "context": {"traits": {"email": "ann@example.com"}},
    }
    values, failed = maps.evaluate(msg)
    assert values == {"email": "ann@example.com", "first_name": "Ann"}
    assert failed == []
    assert maps.fields(values) == {"3": "ann@example.com", "1": "Ann"}


def test_evaluate_reports_failures_by_name_and_leaves_them_out() -> None:
    maps = DataMaps(CONTRACT_MAPS)
    msg = {
        "type": "track",
        "event": {"name": "x"},
        "traits": {"firstName": "A" * 61},
        "properties": {"revenue": True, "coupon": "SAVE10"},
    }
    values, failed = maps.evaluate(msg)
    assert values == {"coupon": "SAVE10"}
    assert failed == ["first_name", "ecom_event", "ecom_revenue"]
    values2, reasons = maps.evaluate_with_reasons(msg)
    assert values2 == values
    assert reasons == {
        "first_name": "first_name: text longer than 60 characters",
        "ecom_event": "ecom_event: object cannot be converted to text",
        "ecom_revenue": "ecom_revenue: boolean is not a number",
    }


def test_evaluate_missing_paths_and_nulls_are_not_failures() -> None:
    maps = DataMaps(CONTRACT_MAPS)
    values, failed = maps.evaluate({"type": "page", "traits": {"firstName": None}})
    assert values == {}
    assert failed == []
    # a path through a non-object is missing too
    values, failed = maps.evaluate({"type": "page", "context": {"traits": "x"}, "event": ""})
    assert (values, failed) == ({}, [])


def test_evaluate_indexed_paths() -> None:
    maps = DataMaps(
        [
            DataMapConfig(name="sku", path="properties.products[1].sku"),
            DataMapConfig(name="price", path="properties.products[0].price", type="numeric"),
        ]
    )
    msg = {"properties": {"products": [{"sku": "A", "price": 19}, {"sku": "B"}]}}
    assert maps.evaluate(msg) == ({"sku": "B", "price": 19}, [])
    assert maps.evaluate({"properties": {"products": [{"sku": "A"}]}}) == ({}, [])


def test_every_type_through_evaluate_and_fields() -> None:
    maps = DataMaps(
        [
            DataMapConfig(name="birth", path="traits.birthday", type="date", field=4),
            DataMapConfig(name="seen", path="traits.lastSeen", type="datetime", field=5001),
            DataMapConfig(name="vip", path="traits.vip", type="boolean", field=5002),
            DataMapConfig(name="score", path="traits.score", type="numeric", field=5003),
            DataMapConfig(
                name="opt_in", path="traits.optIn", type="choice", field=31,
                choices={"true": 1, "false": 2},
            ),
        ]
    )  # fmt: skip
    msg = {
        "traits": {
            "birthday": "1985-03-15T00:00:00+02:00",
            "lastSeen": "2024-01-02T03:04:05+01:00",
            "vip": "yes",
            "score": "7.0",
            "optIn": False,
        }
    }
    values, failed = maps.evaluate(msg)
    assert failed == []
    assert maps.fields(values) == {
        "4": "1985-03-15",
        "5001": "2024-01-02T02:04:05Z",
        "5002": True,
        "5003": 7,
        "31": 2,
    }


def test_fields_never_emit_none() -> None:
    maps = DataMaps(CONTRACT_MAPS)
    assert maps.fields({"email": None, "first_name": None}) == {}
    assert maps.fields({}) == {}
    assert maps.fields({"email": "a@b.c", "first_name": None}) == {"3": "a@b.c"}


def test_fields_skip_maps_without_a_field_and_unknown_names() -> None:
    maps = DataMaps(CONTRACT_MAPS)
    assert maps.fields({"coupon": "X", "cart_id": "1", "other": 5}) == {}


def test_fields_keep_false_and_zero() -> None:
    maps = DataMaps(
        [
            DataMapConfig(name="vip", path="traits.vip", type="boolean", field=5002),
            DataMapConfig(name="score", path="traits.score", type="numeric", field=5003),
        ]
    )
    assert maps.fields({"vip": False, "score": 0}) == {"5002": False, "5003": 0}


def test_fields_first_data_map_with_a_value_wins() -> None:
    maps = DataMaps(
        [
            DataMapConfig(name="email", path="traits.email", field=3),
            DataMapConfig(name="ctx_email", path="context.traits.email", field=3),
        ]
    )
    both = {"traits": {"email": "a@x.com"}, "context": {"traits": {"email": "b@x.com"}}}
    assert maps.fields(maps.evaluate(both)[0]) == {"3": "a@x.com"}
    only_ctx = {"context": {"traits": {"email": "b@x.com"}}}
    assert maps.fields(maps.evaluate(only_ctx)[0]) == {"3": "b@x.com"}
    broken_first = {"traits": {"email": ["x"]}, "context": {"traits": {"email": "b@x.com"}}}
    values, failed = maps.evaluate(broken_first)
    assert failed == ["email"]
    assert maps.fields(values) == {"3": "b@x.com"}


# --------------------------------------------------------------------------- properties

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.from_regex(r"\A[ +-]?[0-9]{0,30}(\.[0-9]{0,30})?([eE][+-]?[0-9]{1,12})?\Z")
    | st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)

ALL_TYPES = [
    dm("string"),
    dm("string", field=1),
    dm("numeric"),
    dm("boolean"),
    dm("date"),
    dm("datetime"),
    dm("choice", choices={"true": 1, "false": 2, "1": 3, "a": 4}),
]
RESULT_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "numeric": (int, float),
    "boolean": (bool,),
    "date": (str,),
    "datetime": (str,),
    "choice": (int,),
}


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_convert_never_raises_anything_but_conversion_error(raw: Any) -> None:
    for d in ALL_TYPES:
        try:
            out: Any = convert(d, raw)
        except ConversionError as e:
            assert str(e).startswith("v: ")
            continue
        if out is None:
            continue
        assert type(out) in RESULT_TYPES[d.type]  # exact: a bool is no number here
        if d.type == "numeric":
            assert abs(out) < 10**24
        if d.type == "date":
            assert len(out) == 10
        if d.type == "datetime":
            assert len(out) == 20
            assert out.endswith("Z")
        if d.type == "string":
            assert 0 < len(out) <= default_max_length(d)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["traits", "context", "properties", "event"]), json_values))
def test_evaluate_never_crashes_and_fields_never_none(msg: dict[str, Any]) -> None:
    maps = DataMaps([*CONTRACT_MAPS, DataMapConfig(name="ctx", path="context.traits", field=7)])
    values, failed = maps.evaluate(msg)
    assert set(values).isdisjoint(failed)
    assert all(v is not None for v in values.values())
    assert all(v is not None for v in maps.fields(values).values())
