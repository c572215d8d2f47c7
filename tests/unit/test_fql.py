"""The filter language: parsing, identifier resolution, semantics, errors, event-name index."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.rules.fql import Filter, FilterError, compile_filter, literal_event_names

DATA_MAPS = {
    "ecom_event": "event",
    "ecom_revenue": "properties.revenue",
    "coupon": "properties.coupon",
    "email": "context.traits.email",
    "plan": "traits.plan",
    "is_vip": "traits.vip",
}


def ev(
    text: str,
    event: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    user: dict[str, Any] | None = None,
) -> bool:
    flt = compile_filter(text, DATA_MAPS)
    return flt.evaluate(event or {}, values or {}, user or {})


def err(text: str) -> FilterError:
    with pytest.raises(FilterError) as info:
        compile_filter(text, DATA_MAPS)
    return info.value


TRACK = {
    "type": "track",
    "event": "Order Completed",
    "userId": "u1",
    "properties": {
        "total": 120,
        "price": 9.5,
        "sku": "SHOE-42",
        "tags": ["sale", "new", 3],
        "products": [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": None}],
        "flag": True,
        "count_str": "100",
        "nothing": None,
    },
    "context": {"traits": {"email": "ann@example.com"}},
}


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('event = "Order Completed"', True),
        ('event == "Order Completed"', True),
        ('event = "order completed"', False),
        ('event != "Order Completed"', False),
        ('event != "Other"', True),
        ("properties.total = 120", True),
        ("properties.total = 120.0", True),
        ("properties.total != 120.0", False),
        ("properties.total > 100", True),
        ("properties.total > 120", False),
        ("properties.total >= 120", True),
        ("properties.total < 120", False),
        ("properties.total <= 120", True),
        ("properties.price < 10", True),
        ("properties.price > -1.5", True),
        ("properties.total < 1e3", True),
        ('event > "A"', True),
        ('event < "A"', False),
        ('"Order" < event', True),
        ("properties.flag = true", True),
        ("properties.flag = false", False),
        ("properties.flag != true", False),
    ],
)
def test_comparison_operators(text: str, expected: bool) -> None:
    assert ev(text, TRACK) is expected


def test_boolean_is_not_a_number() -> None:
    assert ev("properties.flag = 1", TRACK) is False
    assert ev("properties.flag != 1", TRACK) is True
    assert ev("properties.flag > 0", TRACK) is False
    assert ev("properties.n = true", {"properties": {"n": 1}}) is False
    assert ev("properties.n in [true]", {"properties": {"n": 1}}) is False
    assert ev("properties.n = properties.b", {"properties": {"n": 1, "b": True}}) is False
    assert ev("properties.n = properties.b", {"properties": {"n": 0, "b": False}}) is False
    assert ev("contains(properties.l, true)", {"properties": {"l": [1]}}) is False


def test_no_string_number_coercion() -> None:
    assert ev("properties.count_str = 100", TRACK) is False
    assert ev('properties.count_str = "100"', TRACK) is True
    assert ev("properties.count_str > 50", TRACK) is False
    assert ev('properties.total = "120"', TRACK) is False


def test_ordering_between_mixed_types_is_false_and_not_negates_it() -> None:
    assert ev('properties.total > "1"', TRACK) is False
    assert ev('not (properties.total > "1")', TRACK) is True
    assert ev("properties.nothing < 5", TRACK) is False
    assert ev("properties.absent >= 0", TRACK) is False
    assert ev("not properties.absent >= 0", TRACK) is True
    assert ev("properties.tags > 1", TRACK) is False


def test_field_to_field_comparison() -> None:
    event = {"properties": {"a": 1, "b": 1.0, "c": [1, {"x": "y"}], "d": [1.0, {"x": "y"}]}}
    assert ev("properties.a = properties.b", event) is True
    assert ev("properties.c = properties.d", event) is True
    assert ev("properties.a != properties.c", event) is True
    assert ev("properties.a < properties.b", event) is False
    assert ev("properties.missing = properties.other", event) is True  # null = null
    assert ev("properties.c = [1, true]", event) is False


def test_list_literal_equality() -> None:
    assert ev('properties.tags = ["sale", "new", 3]', TRACK) is True
    assert ev('properties.tags = ["sale", "new"]', TRACK) is False


def test_and_or_not() -> None:
    assert ev('type = "track" and event = "Order Completed"', TRACK) is True
    assert ev('type = "track" and event = "Other"', TRACK) is False
    assert ev('type = "page" or event = "Order Completed"', TRACK) is True
    assert ev('type = "page" or event = "Other"', TRACK) is False
    assert ev('not type = "page"', TRACK) is True
    assert ev('! type = "track"', TRACK) is False
    assert ev('!(type = "track")', TRACK) is False
    assert ev('not not type = "track"', TRACK) is True
    assert ev('type = "track" and event = "Order Completed" and userId = "u1"', TRACK) is True
    assert ev('type = "a" or type = "b" or type = "track"', TRACK) is True


# --------------------------------------------------------------------------- precedence


def test_or_binds_looser_than_and() -> None:
    # a or (b and c): with a true and b, c false the result is true ...
    assert ev('type = "track" or type = "x" and type = "y"', TRACK) is True
    # ... whereas (a or b) and c would be false
    assert ev('(type = "track" or type = "x") and type = "y"', TRACK) is False
    # (b and c) or a, written the other way round
    assert ev('type = "x" and type = "y" or type = "track"', TRACK) is True


def test_not_binds_tighter_than_and_looser_than_comparison() -> None:
    # not a = 1 and b  ==  (not (a = 1)) and b
    values = {"ecom_revenue": 1, "is_vip": False}
    assert ev("not ecom_revenue = 1 and is_vip", values=values) is False
    values = {"ecom_revenue": 2, "is_vip": True}
    assert ev("not ecom_revenue = 1 and is_vip", values=values) is True
    # if not applied to the whole and-chain, this would be true
    values = {"ecom_revenue": 2, "is_vip": False}
    assert ev("not ecom_revenue = 1 and is_vip", values=values) is False
    assert ev("not (ecom_revenue = 1 and is_vip)", values=values) is True


def test_parentheses_nesting() -> None:
    assert ev('((type = "track") and ((event = "Order Completed")))', TRACK) is True
    assert ev('not (type = "track" and (event = "x" or userId = "u1"))', TRACK) is False
    assert ev("(properties.total > 100) = true", TRACK) is True


def test_keywords_are_case_insensitive() -> None:
    assert ev('type = "track" AND event = "Order Completed"', TRACK) is True
    assert ev('type = "page" Or NOT event = "x"', TRACK) is True
    assert ev("properties.flag = TRUE and properties.nothing = NULL", TRACK) is True
    assert ev('type IN ["track"] and CONTAINS(event, "Order") and Match(event, "O*")', TRACK)
    assert ev('type Not In ["page"]', TRACK) is True


# --------------------------------------------------------------------------- null / missing


def test_missing_behaves_as_null() -> None:
    assert ev("coupon = null") is True
    assert ev("coupon != null") is False
    assert ev("coupon = null", values={"coupon": None}) is True
    assert ev("coupon != null", values={"coupon": "SAVE10"}) is True
    assert ev("coupon = null", values={"coupon": "SAVE10"}) is False
    assert ev('coupon != "X"') is True  # != is exactly not =
    assert ev('coupon = "X"') is False
    assert ev("properties.nothing = null", TRACK) is True
    assert ev("properties.missing.deeper[3] = null", TRACK) is True
    assert ev("properties.missing != null", TRACK) is False
    assert ev("properties.total != null", TRACK) is True
    assert ev("properties.missing in [null, 1]", TRACK) is True


def test_falsy_values_are_present() -> None:
    event = {"properties": {"zero": 0, "empty": "", "f": False, "list": []}}
    for name in ("zero", "empty", "f", "list"):
        assert ev(f"properties.{name} != null", event) is True
    assert ev("properties.zero = 0", event) is True
    assert ev('properties.empty = ""', event) is True
    assert ev("properties.f = false", event) is True
    assert ev("properties.f = null", event) is False


# --------------------------------------------------------------------------- functions


def test_contains() -> None:
    assert ev('contains(properties.sku, "SHOE")', TRACK) is True
    assert ev('contains(properties.sku, "shoe")', TRACK) is False
    assert ev('contains(properties.tags, "sale")', TRACK) is True
    assert ev('contains(properties.tags, "sal")', TRACK) is False
    assert ev("contains(properties.tags, 3.0)", TRACK) is True
    assert ev("contains(properties.total, 1)", TRACK) is False
    assert ev('contains(properties.missing, "x")', TRACK) is False
    assert ev("contains(properties.sku, 4)", TRACK) is False
    assert ev('contains(properties, "sku")', TRACK) is False  # objects: false
    assert ev('contains(event, "")', TRACK) is True
    assert ev('not contains(properties.sku, "BOOT")', TRACK) is True


def test_match_glob() -> None:
    assert ev('match(event, "Order *")', TRACK) is True
    assert ev('match(event, "Order")', TRACK) is False  # whole string
    assert ev('match(event, "*Completed")', TRACK) is True
    assert ev('match(event, "order *")', TRACK) is False  # case-sensitive
    assert ev('match(event, "Order Complete?")', TRACK) is True
    assert ev('match(event, "Order Complete??")', TRACK) is False
    assert ev('match(properties.sku, "SHOE-*")', TRACK) is True
    assert ev('match(properties.total, "1*")', TRACK) is False  # not a string
    assert ev('match(properties.missing, "*")', TRACK) is False
    assert ev('match(properties.x, "a.c")', {"properties": {"x": "abc"}}) is False  # . literal
    assert ev(r'match(properties.x, "a+c\[")', {"properties": {"x": "a+c["}}) is True
    assert ev('match(properties.x, "a**b")', {"properties": {"x": "ab\nb"}}) is True


def test_in_lists() -> None:
    assert ev('type in ["page", "track"]', TRACK) is True
    assert ev('type in ["page", "screen"]', TRACK) is False
    assert ev('type not in ["page", "screen"]', TRACK) is True
    assert ev("properties.total in [1, 120.0]", TRACK) is True
    assert ev('properties.total in ["120"]', TRACK) is False
    assert ev("properties.total in []", TRACK) is False
    assert ev("properties.total not in []", TRACK) is True
    assert ev("properties.total not in [1, 2]", TRACK) is True
    assert ev("properties.total not in [1, 120]", TRACK) is False
    assert ev('properties.missing in ["a"]', TRACK) is False
    assert ev('properties.missing not in ["a"]', TRACK) is True
    assert ev('properties.tags in [[1], ["sale", "new", 3]]', TRACK) is True


def test_string_escapes() -> None:
    event = {"properties": {"q": 'say "hi"\\\n\t'}}
    assert ev(r'properties.q = "say \"hi\"\\\n\t"', event) is True
    assert ev(r'properties.q = "say \"hi\""', event) is False


# --------------------------------------------------------------------------- identifiers


def test_user_data_map_reads_user_table() -> None:
    flt = compile_filter('user.plan = "pro" and plan != "pro"', DATA_MAPS)
    assert flt.user_data_maps == frozenset({"plan"})
    assert flt.data_maps == frozenset({"plan"})
    assert flt.evaluate({}, {"plan": "free"}, {"plan": "pro"}) is True
    assert flt.evaluate({}, {"plan": "pro"}, {"plan": "pro"}) is False
    assert flt.evaluate({}, {}, {}) is False
    assert compile_filter("user.email = null", DATA_MAPS).evaluate({}, {}, {}) is True


def test_data_map_wins_over_json_path() -> None:
    # `coupon` is a data map: read from values, never from the event
    assert ev('coupon = "A"', {"coupon": "B"}, {"coupon": "A"}) is True
    assert ev('coupon = "B"', {"coupon": "B"}, {"coupon": "A"}) is False
    # a data map named like a Segment field shadows that field
    flt = compile_filter('event = "converted"', ["event"])
    assert flt.data_maps == frozenset({"event"})
    assert flt.evaluate({"event": "raw"}, {"event": "converted"}, {}) is True


def test_json_paths_and_top_level_fields() -> None:
    flt = compile_filter('properties.products[1].sku = "B2" and type = "track"', DATA_MAPS)
    assert flt.data_maps == frozenset()
    assert flt.user_data_maps == frozenset()
    assert flt.evaluate(TRACK, {}, {}) is True
    assert ev("properties.products[0].qty = 2", TRACK) is True
    assert ev("properties.products[1].qty = null", TRACK) is True
    assert ev("properties.products[5].qty = null", TRACK) is True
    assert ev('context.traits.email = "ann@example.com"', TRACK) is True
    assert ev('properties.tags[0] = "sale"', TRACK) is True
    assert ev('properties.sku[0] = "S"', TRACK) is False  # strings are not indexable
    assert ev("userId != null and anonymousId = null", TRACK) is True


def test_bare_operand_is_true_only_for_boolean_true() -> None:
    assert ev("is_vip", values={"is_vip": True}) is True
    assert ev("is_vip", values={"is_vip": "yes"}) is False
    assert ev("is_vip", values={"is_vip": 1}) is False
    assert ev("is_vip") is False
    assert ev("not is_vip") is True
    assert ev("user.is_vip", user={"is_vip": True}) is True
    assert ev("properties.flag", TRACK) is True
    assert ev("true") is True
    assert ev("false or null") is False


def test_unknown_data_map_errors() -> None:
    e = err("cart > 1")
    assert (e.message, e.column) == ("unknown data map 'cart'", 1)
    e = err('event = "x" and cart != null')
    assert (e.message, e.column) == ("unknown data map 'cart'", 17)
    e = err("user.cart = 1")
    assert (e.message, e.column) == ("unknown data map 'cart'", 6)
    e = err("user.properties.x = 1")
    assert e.column == 1 and "user." in e.message
    # a dotted path is never a data map reference: no error
    compile_filter("cart.total > 1", DATA_MAPS)


def test_filter_value_object() -> None:
    a = compile_filter('ecom_event = "A"', DATA_MAPS)
    b = compile_filter('ecom_event = "A"', DATA_MAPS)
    assert a == b and hash(a) == hash(b)
    assert a.source == 'ecom_event = "A"'
    assert isinstance(a, Filter)
    assert a != compile_filter('ecom_event = "B"', DATA_MAPS)


# --------------------------------------------------------------------------- Segment's forms

ODD_KEYS = {
    "properties": {
        "order-id": "o-1",
        "first name": "Ann",
        "a.b": 1,
        "2nd": "second",
        "-x": "dash first",
        "weird\\key": "backslash",
        'q"uote': "quote",
        "[x]": "brackets",
        "list-items": [{"sku-code": "S1"}],
        "prénom": "Zoé",
        "first_name": "plain",
    }
}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('properties.order-id = "o-1"', True),  # dashes as they are
        (r'properties.first\ name = "Ann"', True),  # an escaped space
        (r"properties.a\.b = 1", True),  # an escaped dot is part of the key
        ("properties.a.b = 1", False),  # ... an unescaped one is a step
        ('properties.2nd = "second"', True),  # later fields may start with a digit
        ('properties.-x = "dash first"', True),  # ... or a dash
        (r'properties.weird\\key = "backslash"', True),
        (r'properties.q\"uote = "quote"', True),
        (r'properties.\[x\] = "brackets"', True),
        ('properties.list-items[0].sku-code = "S1"', True),
        ('properties.prénom = "Zoé"', True),
        (r'properties.first\_name = "plain"', True),  # escaping a plain character is harmless
        ('properties.order-id != null and properties.order-id = "o-1"', True),
        ('contains(properties.order-id, "-")', True),
        ('properties.order-id in ["o-1", "o-2"]', True),
    ],
)
def test_segment_field_names(text: str, value: bool) -> None:
    assert ev(text, ODD_KEYS) is value


def test_a_dash_never_eats_a_negative_number() -> None:
    event = {"properties": {"n": -2}}
    assert ev("properties.n=-2", event) is True
    assert ev("properties.n >-3", event) is True
    assert ev("properties.n in [-2]", event) is True


def test_escaped_bare_names_are_still_checked() -> None:
    e = err(r"first\ name = 1")
    assert (e.message, e.column) == (r"unknown data map 'first\ name'", 1)
    e = err('event = "x" and order-id = 1')
    assert (e.message, e.column) == ("unknown data map 'order-id'", 17)
    assert ev(r'ecom\_event = "A"', values={"ecom_event": "A"}) is True  # the data map
    # an escaped keyword is a name, not the keyword
    assert err(r"\not = 1").message == r"unknown data map '\not'"


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        # Segment's own table for match()
        ("a*d", "abcd", True),
        ("*", "", True),
        ("ab", "abc", False),
        ("a??d", "abcd", True),
        ("*d", "abcd", True),
        (r"ab\*d", "ab*d", True),
        (r"ab\*d", "abcd", False),
        ("ab[cC]d", "abCd", True),
        ("ab[cC]d", "abcd", True),
        ("ab[cC]d", "abxd", False),
        ("ab[a-z]d", "abcd", True),
        ("ab[A-Z]d", "abcd", False),
        # more of the same rules
        (r"what\?", "what?", True),
        (r"what\?", "whatx", False),
        (r"\[x\]", "[x]", True),
        (r"[\]]", "]", True),
        ("[a-cx-z]", "y", True),
        ("[a-cx-z]", "d", False),
        ("[-a]", "-", True),  # a dash first or last is literal
        ("[a-]", "-", True),
        (r"[a\-z]", "m", False),  # an escaped dash is not a range
        (r"[a\-z]", "-", True),
        ("[*?]", "*", True),  # no wildcards inside a class
        ("[*?]", "x", False),
        ("SHOE-[0-9][0-9]", "SHOE-42", True),
        ("a]b", "a]b", True),  # a lone ] is literal
        (r"a\\b", "a\\b", True),  # \\ is a backslash (as in every string)
        (r"a\nb", "a\nb", True),  # \n stays a newline
        (r"say \"hi\"", 'say "hi"', True),
        (r"\q", "q", True),  # \x is x
        ("[é]t[é]", "été", True),
    ],
)
def test_match_glob_like_segment(pattern: str, subject: str, expected: bool) -> None:
    text = f'match(properties.x, "{pattern}")'
    assert ev(text, {"properties": {"x": subject}}) is expected, text


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ('match(event, "ab[cd")', 17, "unclosed '[' in the pattern"),
        ('event = "x" or match(event, "[")', 30, "unclosed '['"),
        (r'match(event, "ab\[[c")', 19, "unclosed '['"),
        ('match(event, "a[]")', 16, "an empty class [] matches nothing"),
        ('match(event, "[z-a]")', 16, "the range z-a is reversed"),
        ('match(event, "x[!a]")', 16, "a negated class [!...] is not part of Segment's glob"),
        ('match(event, "[^a]")', 15, "negated class"),
        ('event = "a\\*"', 11, "invalid escape '\\*'"),  # a glob escape only in a glob
        ('match(event, "a\\*") and event = "\\*"', 34, "invalid escape '\\*'"),
        ("properties.x\\", 13, "escapes the character after it"),
    ],
)
def test_glob_and_field_errors_point_at_the_column(text: str, column: int, message: str) -> None:
    e = err(text)
    assert e.column == column, e
    assert message in e.message


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("ecom_event = ", 14, "expected a value after '=' but found end of input"),
        ("", 1, "empty expression"),
        ("   ", 1, "empty expression"),
        ('event = "abc', 9, "unterminated string"),
        ('(event = "a"', 13, "expected 'and', 'or' or ')' to close the '(' at column 1"),
        ('event = "a")', 12, "expected 'and', 'or' or end of input but found ')'"),
        ('event = "a" event', 13, "found 'event'"),
        ("event = 1 = 2", 11, "found '='"),
        ('and event = "a"', 1, "expected a condition but found 'and'"),
        ('event = "a" and', 16, "expected a value after 'and' but found end of input"),
        ('event = "a" or or', 16, "expected a value after 'or' but found 'or'"),
        ('foo(event, "a")', 1, "unknown function 'foo'"),
        ("contains(event)", 1, "contains() takes 2 arguments"),
        ('match(event, "a", "b")', 1, "match() takes 2 arguments"),
        ("match(event, type)", 14, "match() needs quoted text"),
        ('contains(event, "a"', 20, "expected ',' or ')' to close contains("),
        ('event in ["a" "b"]', 15, "expected ',' or ']'"),
        ('event in ["a",', 15, "expected a value after ',' but found end of input"),
        ("event in [type]", 11, "a list holds only literal values"),
        ('event in "a"', 10, "expected a list such as"),
        ("event = 'a'", 9, "strings go in double quotes"),
        ('event = "a\\x"', 11, "invalid escape '\\x'"),
        ("event = 12abc", 9, "invalid number '12abc'"),
        ("properties. = 1", 12, "expected a field name after 'properties.'"),
        ("properties[x] = 1", 11, "expected an index such as [0]"),
        ("event = #", 9, "unexpected character '#'"),
        ('event = "a" && type = "b"', 13, "use 'and' instead of '&&'"),
        ("not", 4, "expected a value after 'not' but found end of input"),
        ("(" * 100 + "true" + ")" * 100, 65, "nests more than"),
    ],
)
def test_errors_point_at_the_column(text: str, column: int, message: str) -> None:
    e = err(text)
    assert e.column == column, e
    assert message in e.message
    assert str(e) == f"column {column}: {e.message}"
    assert isinstance(e, ValueError)


def test_filter_error_survives_pickling() -> None:
    e = err("cart = 1")
    copy = pickle.loads(pickle.dumps(e))
    assert (copy.message, copy.column, str(copy)) == (e.message, e.column, str(e))


# --------------------------------------------------------------------------- event-name index


def names(text: str | None) -> frozenset[str] | None:
    flt = None if text is None else compile_filter(text, DATA_MAPS)
    return literal_event_names(flt, DATA_MAPS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ('event = "A"', {"A"}),
        ('"A" = event', {"A"}),
        ('ecom_event = "A"', {"A"}),
        ('ecom_event = "A" and ecom_revenue > 100', {"A"}),
        ('ecom_revenue > 100 and (event = "A")', {"A"}),
        ('event in ["A", "B"]', {"A", "B"}),
        ('event in ["A", "B"] and ecom_event in ["B", "C"]', {"B"}),
        ('event = "A" and event = "B"', set()),
        ('event = "A" or ecom_event = "B"', {"A", "B"}),
        ('(event = "A" or event = "B") and type = "track"', {"A", "B"}),
        ('event = "A" or type = "track"', None),
        ('not event = "A"', None),
        ('event != "A"', None),
        ('event not in ["A"]', None),
        ("event in [1]", None),
        ("event = 1", None),
        ('type = "track"', None),
        ('match(event, "A*")', None),
        ('contains(event, "A")', None),
        ('user.ecom_event = "A"', None),
        ('coupon = "A"', None),
        ('properties.event = "A"', None),
        ('not (event = "A" and type = "track")', None),
    ],
)
def test_literal_event_names(text: str | None, expected: set[str] | None) -> None:
    result = names(text)
    assert result == (None if expected is None else frozenset(expected))


def test_literal_event_names_needs_the_data_map_path() -> None:
    flt = compile_filter('ecom_event = "A"', DATA_MAPS)
    assert literal_event_names(flt, {"ecom_event": "properties.event"}) is None
    assert literal_event_names(flt, {}) is None
    assert literal_event_names(flt, {"ecom_event": " event "}) == frozenset({"A"})


@given(st.sampled_from(["A", "B", "C", "D"]))
def test_literal_event_names_never_excludes_a_matching_event(name: str) -> None:
    texts = [
        'event = "A" and type = "track"',
        'event in ["A", "B"] or ecom_event = "C"',
        '(event = "A" or event = "B") and ecom_event != "B"',
    ]
    for text in texts:
        flt = compile_filter(text, DATA_MAPS)
        allowed = literal_event_names(flt, DATA_MAPS)
        event = {"type": "track", "event": name}
        if flt.evaluate(event, {"ecom_event": name}, {}):
            assert allowed is None or name in allowed


# --------------------------------------------------------------------------- robustness

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["Order Completed", "track", "SHOE", "pro"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["event", "type", "properties", "sku", "total", "products", "x"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)

ROBUST_FILTERS = [
    compile_filter(text, DATA_MAPS)
    for text in [
        'event = "Order Completed" and properties.total > 100',
        "properties.products[0].sku != null or properties.total <= 1.5",
        'contains(properties.sku, "SHOE") or contains(properties, 1)',
        'match(event, "Order *") and not match(properties.sku, "?x*")',
        'type in ["track", 1, null, true, [1, 2]] or event not in ["a"]',
        "properties = properties.products and properties.products[1] > properties.total",
        "ecom_revenue >= user.ecom_revenue or coupon = [1, []] or is_vip",
        "contains(properties.products, properties.sku) and user.plan < plan",
        "properties.x = 1 or properties.x = -2.5e3 or properties.x = false",
        "properties",
    ]
]


@settings(max_examples=300, deadline=None)
@given(event=json_values, values=st.dictionaries(st.sampled_from(list(DATA_MAPS)), json_values))
def test_evaluate_never_raises(event: Any, values: dict[str, Any]) -> None:
    for flt in ROBUST_FILTERS:
        assert flt.evaluate(event, values, values) in (True, False)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab.[]0123456789 \"\\()=!<>,-*?'eventyprosinandortuflcmh#", max_size=40))
def test_compile_raises_only_filter_error(text: str) -> None:
    try:
        flt = compile_filter(text, DATA_MAPS)
    except FilterError as e:
        assert 1 <= e.column <= len(text) + 1
    else:
        assert flt.evaluate(TRACK, {}, {}) in (True, False)


def test_deeply_nested_event_values_compare_false_not_raise() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    event = {"properties": {"a": deep, "b": deep}}
    assert ev("properties.a = properties.b", event) is False
    assert ev("contains(properties.a, properties.b)", event) is False
