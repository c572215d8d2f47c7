"""Identity stitching: junk ids, routing ids and ``resolve`` for every case of its policy."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.identity import MAX_ID_LENGTH, Resolution, resolve, routing_id, usable_id


def links(table: dict[str, str]):
    """A ``lookup`` over a dict of links; records what it was asked."""
    asked: list[str] = []

    def lookup(ident: str) -> str | None:
        asked.append(ident)
        return table.get(ident)

    lookup.asked = asked  # type: ignore[attr-defined]
    return lookup


NO_LINKS = links({})


def msg(type_: str = "track", **fields: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"type": type_, **fields}
    if type_ == "track":
        m.setdefault("event", "Viewed")
    return m


# --------------------------------------------------------------------------- usable_id

JUNK = [
    None,
    "",
    "   ",
    "null",
    "NULL",
    "Null",
    "undefined",
    "anonymous",
    "Anonymous",
    "none",
    "nil",
    "unknown",
    "nan",
    "0",
    "-1",
    " 0 ",
    "00000",
    "000-000",
    "00000000-0000-0000-0000-000000000000",
    "[object Object]",
    0,
    -1,
    0.0,
    -1.0,
    True,
    False,
    {},
    [],
    {"id": "u1"},
    ["u1"],
]


@pytest.mark.parametrize("value", JUNK, ids=repr)
def test_junk_ids_are_not_usable(value: Any) -> None:
    assert usable_id(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("u1", "u1"),
        ("  u1  ", "u1"),
        ("ann@example.com", "ann@example.com"),
        ("5a3e0c4c-8f3b-4d2e-9d57-1f2d3c4b5a69", "5a3e0c4c-8f3b-4d2e-9d57-1f2d3c4b5a69"),
        ("007", "007"),
        ("10", "10"),
        (42, "42"),
        (1234567890123, "1234567890123"),
        (42.0, "42"),
        (1.5, "1.5"),
        (-7, "-7"),
    ],
)
def test_usable_ids_and_numbers_become_text(value: Any, expected: str) -> None:
    assert usable_id(value) == expected


def test_very_long_ids_are_not_usable() -> None:
    assert usable_id("x" * MAX_ID_LENGTH) == "x" * MAX_ID_LENGTH
    assert usable_id("x" * (MAX_ID_LENGTH + 1)) is None
    assert usable_id("x" * 100_000) is None


@given(st.text(min_size=1, max_size=MAX_ID_LENGTH))
def test_usable_id_is_stripped_text_or_none(value: str) -> None:
    out = usable_id(value)
    assert out is None or (out == value.strip() and out)


# --------------------------------------------------------------------------- routing_id


def test_routing_prefers_anonymous_id() -> None:
    assert routing_id(msg(anonymousId="a1", userId="u1")) == "a1"
    assert routing_id(msg(userId="u1")) == "u1"
    assert routing_id(msg(anonymousId="a1")) == "a1"


def test_routing_skips_a_junk_anonymous_id() -> None:
    assert routing_id(msg(anonymousId="null", userId="u1")) == "u1"
    assert routing_id(msg(anonymousId="", userId=42)) == "42"


def test_routing_of_alias_is_previous_id() -> None:
    assert routing_id(msg("alias", previousId="a1", userId="u1", anonymousId="a9")) == "a1"
    assert routing_id(msg("alias", previousId="undefined", userId="u1")) is None


def test_routing_none_when_every_id_is_junk() -> None:
    assert routing_id(msg(anonymousId="null", userId="0")) is None
    assert routing_id(msg()) is None


# --------------------------------------------------------------------------- resolve


def test_anonymous_only_not_linked_is_an_anonymous_person() -> None:
    assert resolve(msg(anonymousId="a1"), NO_LINKS) == Resolution("a:a1")


def test_anonymous_only_linked_goes_to_the_user() -> None:
    r = resolve(msg(anonymousId="a1"), links({"a1": "u1"}))
    assert r == Resolution("u:u1")
    assert r is not None and r.link is None and r.merge_from == ()


def test_user_only_not_aliased() -> None:
    assert resolve(msg(userId="u1"), NO_LINKS) == Resolution("u:u1")


def test_user_only_aliased_to_a_newer_user_follows_the_alias() -> None:
    lookup = links({"old": "new"})
    assert resolve(msg(userId="old"), lookup) == Resolution("u:new")
    assert lookup.asked == ["old"]  # type: ignore[attr-defined]


def test_both_first_link_merges_the_anonymous_person() -> None:
    r = resolve(msg("identify", anonymousId="a1", userId="u1"), NO_LINKS)
    assert r == Resolution("u:u1", link=("a1", "u1"), merge_from=("a:a1",))


def test_both_same_user_again_changes_nothing() -> None:
    r = resolve(msg(anonymousId="a1", userId="u1"), links({"a1": "u1"}))
    assert r == Resolution("u:u1")


def test_both_another_user_relinks_without_merging() -> None:
    # A shared device: the second person takes the device; the two are never fused.
    r = resolve(msg("identify", anonymousId="a1", userId="u2"), links({"a1": "u1"}))
    assert r == Resolution("u:u2", link=("a1", "u2"), relinked_from="u:u1")
    assert r is not None and r.merge_from == ()


def test_after_a_relink_the_anonymous_id_follows_the_new_user() -> None:
    table: dict[str, str] = {"a1": "u1"}
    r = resolve(msg(anonymousId="a1", userId="u2"), links(table))
    assert r is not None and r.link is not None
    table[r.link[0]] = r.link[1]
    assert resolve(msg(anonymousId="a1"), links(table)) == Resolution("u:u2")


def test_alias_new_link_merges_both_candidate_persons() -> None:
    r = resolve(msg("alias", previousId="p1", userId="u1"), NO_LINKS)
    assert r == Resolution("u:u1", link=("p1", "u1"), merge_from=("a:p1", "u:p1"))


def test_alias_to_the_current_link_changes_nothing() -> None:
    r = resolve(msg("alias", previousId="a1", userId="u1"), links({"a1": "u1"}))
    assert r == Resolution("u:u1")


def test_alias_of_an_id_linked_elsewhere_relinks_without_merge() -> None:
    r = resolve(msg("alias", previousId="a1", userId="u2"), links({"a1": "u1"}))
    assert r == Resolution("u:u2", link=("a1", "u2"), relinked_from="u:u1")
    assert r is not None and r.merge_from == ()


def test_alias_to_itself_does_nothing() -> None:
    assert resolve(msg("alias", previousId="u1", userId="u1"), NO_LINKS) is None
    assert resolve(msg("alias", previousId=" u1 ", userId="u1"), NO_LINKS) is None


def test_alias_with_numeric_ids() -> None:
    r = resolve(msg("alias", previousId=17, userId=42), NO_LINKS)
    assert r == Resolution("u:42", link=("17", "42"), merge_from=("a:17", "u:17"))


@pytest.mark.parametrize("junk", ["null", "undefined", "anonymous", "", "0", "-1", "0000"])
def test_junk_anonymous_id_never_links(junk: str) -> None:
    r = resolve(msg("identify", anonymousId=junk, userId="u1"), NO_LINKS)
    assert r == Resolution("u:u1")  # no link, no merge of a shared "null" visitor


@pytest.mark.parametrize("junk", ["null", "undefined", "anonymous", "", "0", "-1", "0000"])
def test_junk_user_id_never_links(junk: str) -> None:
    # An anonymous visitor identified with a placeholder userId stays anonymous.
    r = resolve(msg("identify", anonymousId="a1", userId=junk), NO_LINKS)
    assert r == Resolution("a:a1")


@pytest.mark.parametrize("junk", ["null", "undefined", "anonymous", "", "0", "-1"])
def test_alias_with_junk_ids_never_links(junk: str) -> None:
    assert resolve(msg("alias", previousId=junk, userId="u1"), NO_LINKS) is None
    assert resolve(msg("alias", previousId="a1", userId=junk), NO_LINKS) is None


def test_no_usable_id_at_all() -> None:
    assert resolve(msg(anonymousId="null", userId="undefined"), NO_LINKS) is None


def test_the_link_lives_under_the_routing_id() -> None:
    # The link is stored (and looked up) by the id the message is partitioned by, so the
    # lookup and the link always meet on the same worker.
    for m in (
        msg("identify", anonymousId="a1", userId="u1"),
        msg("alias", previousId="a1", userId="u1"),
    ):
        lookup = links({})
        r = resolve(m, lookup)
        assert r is not None and r.link is not None
        assert r.link[0] == routing_id(m) == "a1"
        assert lookup.asked == ["a1"]  # type: ignore[attr-defined]


ids = st.sampled_from(["a1", "a2", "u1", "u2", "null", "0", "", None])


@given(
    type_=st.sampled_from(["identify", "track", "page", "alias"]),
    anon=ids,
    user=ids,
    prev=ids,
    linked=st.dictionaries(
        st.sampled_from(["a1", "a2", "u1", "u2"]), st.sampled_from(["u1", "u2"])
    ),
)
def test_resolution_invariants(
    type_: str, anon: Any, user: Any, prev: Any, linked: dict[str, str]
) -> None:
    m = msg(type_, anonymousId=anon, userId=user, previousId=prev)
    r = resolve(m, links(linked))
    if r is None:
        return
    junk = {"null", "0", "", None}
    assert r.person.startswith(("u:", "a:"))
    assert r.person[2:] not in junk
    if r.link is not None:
        assert r.link[0] == routing_id(m)
        assert r.link[0] not in junk and r.link[1] not in junk
        assert r.person == f"u:{r.link[1]}"
    if r.relinked_from is not None:
        assert r.merge_from == ()  # a shared device never fuses two people
        assert r.relinked_from != r.person
    assert r.person not in r.merge_from
