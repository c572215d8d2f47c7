"""The rules' matching criteria: Segment's filter language (FQL), parsed by hand, no ``eval``.

``compile_filter`` parses the text once (at config load) into a tree of closures, resolving
every identifier up front, so ``Filter.evaluate`` runs per event per candidate rule with no
parsing, no name lookups beyond one dict read, and no chance of raising on odd event data.

Grammar (keywords and function names are case-insensitive; precedence low to high)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := ("not" | "!") not_expr | comparison
    comparison := operand [("=" | "==" | "!=" | "<" | "<=" | ">" | ">=") operand
                           | ["not"] "in" list]
    operand    := literal | list | identifier | function "(" operand, operand ")"
                | "(" expr ")"
    literal    := "text" (escapes \\" \\\\ \\n \\t) | 12 | -3.5 | 1e3 | true | false | null
    list       := "[" [literal ("," literal)*] "]"        (nested lists allowed)
    identifier := field ("." field | "[" digits "]")*
    field      := (letter | digit | "_" | "$" | "-" | "\\" any character)+

Field names are Segment's: letters, digits, ``_`` and ``-`` as they are (plus ``$``); any
other character is escaped with a backslash, so ``properties.order-id`` and
``properties.first\\ name`` (the key ``"first name"``) or ``properties.a\\.b`` (the key
``"a.b"``) read those keys. An identifier starts with a letter, ``_``, ``$`` or a backslash
(a digit or ``-`` would start a number); later fields may start with anything allowed.

Identifiers are resolved in this order:

1. ``user.NAME``: the users table's latest value of data map NAME (NAME must be a data map).
2. A data map name: that data map's value for this event (already converted to its type).
3. A dotted path and/or ``[N]`` indexes (``properties.products[0].sku``): read from the event.
4. A bare top-level Segment field (``event``, ``type``, ``userId``, ``properties``...).
   Any other bare name is the error "unknown data map 'NAME'", because a typo in a data
   map name must not silently become a path that is never present.

Semantics, chosen to be what a Segment user expects, with plain two-valued logic:

- A missing value behaves as ``null``: ``coupon = null`` is true when coupon is absent or
  null, ``coupon != null`` when it is present and not null. ``!=`` is always exactly
  ``not =``, so ``coupon != "X"`` is true when coupon is missing.
- ``=`` compares by value and by JSON type: ``1 = 1.0`` is true, ``true = 1`` is false
  (booleans are not numbers), and ``"100" = 100`` is false: no string/number coercion.
  Data maps convert values to their declared type, so compare a data map when the raw
  event is sloppy about types. Lists and objects compare element by element.
- ``< <= > >=`` hold only between two numbers or two strings (strings compare by code
  point, so ISO dates order correctly). Anything else (null, missing, mixed types) is
  false, and ``not (a > b)`` is then true.
- ``contains(a, b)``: ``a`` is a string containing the string ``b``, or a list holding an
  element equal to ``b``; false otherwise.
- ``match(a, "glob")``: ``a`` is a string matching the whole glob, case-sensitively, as
  Segment's glob does: ``*`` is any run of characters, ``?`` exactly one, ``[abc]`` one of
  the characters listed, ``[a-z]`` one in the range, and ``\\x`` the character ``x``
  itself (``\\*``, ``\\?``, ``\\[``, ``\\]``; ``\\n`` and ``\\t`` stay newline and tab);
  everything else is literal. The glob must be a quoted literal: it is compiled to a regex
  at load time, and a glob that Segment would read differently (an unclosed ``[``, an
  empty or reversed class, a negated ``[!...]``) is refused there with its column rather
  than matched literally.
- ``a in [x, y]`` is ``a = x or a = y``; ``a not in [...]`` is its negation.
- An operand used alone as a condition (``is_vip``, ``user.opted_in``) is true only when
  its value is the boolean ``true``.

Errors are ``FilterError`` with a 1-based column into the source text, and say what was
expected: ``column 14: expected a value after '=' but found end of input``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from app.jsonpath import MISSING, compile_path, read

__all__ = [
    "SEGMENT_FIELDS",
    "Filter",
    "FilterError",
    "compile_filter",
    "event_paths",
    "literal_event_names",
]

#: Bare names that read the event directly when they are not data map names.
SEGMENT_FIELDS: frozenset[str] = frozenset(
    {
        "type", "event", "userId", "anonymousId", "messageId", "name", "category",
        "groupId", "previousId", "timestamp", "originalTimestamp", "sentAt",
        "receivedAt", "properties", "traits", "context", "integrations", "version",
        "channel",
    }
)  # fmt: skip

_MAX_DEPTH = 64  # nesting of ( [ not; deeper input is an error, never a RecursionError
_MAX_EQ_DEPTH = 64  # nesting of event lists/objects compared by value
_NUMBERS = (int, float)
_FUNCTIONS = ("contains", "match")
_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
_LITERAL_KEYWORDS: dict[str, Any] = {"true": True, "false": False, "null": None}
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_NAME = re.compile(r"[A-Za-z_$][\w$]*")  # a data map name
_FIELD_CHARS = frozenset("_$-")  # besides letters and digits, unescaped in a field name
_INDEX = re.compile(r"\[\d+\]")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_OPERATORS = ("==", "!=", "<=", ">=", "=", "<", ">")  # longest first
_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

# (event, values, user) -> value
_Eval = Callable[[Any, dict[str, Any], dict[str, Any]], Any]
#: a compiled filter: (event, values, user) -> bool
Predicate = Callable[[Any, dict[str, Any], dict[str, Any]], bool]


class FilterError(ValueError):
    """A filter the user wrote cannot be compiled; ``column`` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.column))


# --------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True, slots=True)
class _Lit:
    value: Any  # str, int, float, bool, None, or a tuple of literals


@dataclass(frozen=True, slots=True)
class _Ref:
    kind: str  # "event" (JSON path), "value" (this event's data map), "user" (users table)
    name: str
    steps: tuple[str | int, ...] = ()


@dataclass(frozen=True, slots=True)
class _Cmp:
    op: str
    left: _Node
    right: _Node


@dataclass(frozen=True, slots=True)
class _In:
    operand: _Node
    items: tuple[Any, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    args: tuple[_Node, ...]
    regex: re.Pattern[str] | None = None  # match(): the compiled glob


@dataclass(frozen=True, slots=True)
class _Not:
    operand: _Node


@dataclass(frozen=True, slots=True)
class _And:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Or:
    items: tuple[_Node, ...]


_Node = _Lit | _Ref | _Cmp | _In | _Call | _Not | _And | _Or


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Filter:
    """A compiled filter; compare and hash by source and the data maps it reads."""

    source: str
    data_maps: frozenset[str]
    user_data_maps: frozenset[str]
    _test: _Eval = field(repr=False, compare=False)
    _tree: _Node = field(repr=False, compare=False)

    def evaluate(
        self, event: Mapping[str, Any], values: dict[str, Any], user: dict[str, Any]
    ) -> bool:
        """Whether ``event`` matches; ``values``/``user`` map data map names to values."""
        return bool(self._test(event, values, user))

    def predicate(self) -> Predicate:
        """The compiled test itself, ``(event, values, user) -> bool``: what ``evaluate``
        calls, for callers that run it per event and per rule (one call less)."""
        return self._test


def compile_filter(text: str, data_maps: Collection[str]) -> Filter:
    """Parse ``text`` once; ``data_maps`` are the account's data map names."""
    if not isinstance(text, str):
        raise FilterError("a filter must be text", 1)
    parser = _Parser(text, _tokenize(text), frozenset(data_maps))
    tree = parser.parse()
    return Filter(
        source=text,
        data_maps=frozenset(parser.used),
        user_data_maps=frozenset(parser.user_used),
        _test=_bool_fn(tree),
        _tree=tree,
    )


def event_paths(flt: Filter) -> frozenset[tuple[str | int, ...]]:
    """The JSON paths into the event that ``flt`` reads (not data maps, not ``user.``):
    what a copy of an event must keep for the filter to decide the same way."""
    found: set[tuple[str | int, ...]] = set()
    stack: list[Any] = [flt._tree]
    while stack:
        node = stack.pop()
        if isinstance(node, _Ref):
            if node.kind == "event":
                found.add(node.steps)
        elif isinstance(node, _Cmp):
            stack += (node.left, node.right)
        elif isinstance(node, _In | _Not):
            stack.append(node.operand)
        elif isinstance(node, _Call):
            stack += node.args
        elif isinstance(node, _And | _Or):
            stack += node.items
    return frozenset(found)


def literal_event_names(flt: Filter | None, data_maps: Mapping[str, str]) -> frozenset[str] | None:
    """The only event names ``flt`` can match, or ``None`` when it could match any event.

    ``data_maps`` maps data map names to their JSON paths, so a data map reading ``event``
    counts as the event name. Conservative: only ``=`` and ``in`` on the event name inside
    an ``and`` chain constrain; an ``or`` constrains only if every branch does; ``not`` and
    anything else give ``None``. An empty set means the filter can match no event at all.
    """
    if flt is None:
        return None
    return _event_names(flt._tree, data_maps)


def _event_names(node: _Node, data_maps: Mapping[str, str]) -> frozenset[str] | None:
    if isinstance(node, _And):
        found: frozenset[str] | None = None
        for item in node.items:
            names = _event_names(item, data_maps)
            if names is not None:
                found = names if found is None else found & names
        return found
    if isinstance(node, _Or):
        union: set[str] = set()
        for item in node.items:
            names = _event_names(item, data_maps)
            if names is None:
                return None
            union |= names
        return frozenset(union)
    if isinstance(node, _Cmp) and node.op == "=":
        for ref, lit in ((node.left, node.right), (node.right, node.left)):
            if (
                isinstance(lit, _Lit)
                and isinstance(lit.value, str)
                and _is_event_name(ref, data_maps)
            ):
                return frozenset((lit.value,))
        return None
    if (
        isinstance(node, _In)
        and not node.negated
        and all(isinstance(item, str) for item in node.items)
        and _is_event_name(node.operand, data_maps)
    ):
        return frozenset(node.items)
    return None


def _is_event_name(node: _Node, data_maps: Mapping[str, str]) -> bool:
    if not isinstance(node, _Ref):
        return False
    if node.kind == "event":
        return node.steps == ("event",)
    if node.kind == "value":
        path = data_maps.get(node.name)
        if not isinstance(path, str):
            return False
        try:
            return compile_path(path) == ("event",)
        except ValueError:
            return False
    return False


# --------------------------------------------------------------------------- lexer


class _Tok(NamedTuple):
    kind: str  # str num name kw op ( ) [ ] , ! eof
    value: Any  # str: the text (None if it has a bad escape); name: the path's steps
    col: int
    text: str  # as written
    error: FilterError | None = None  # str: a bad escape, raised unless the text is a glob


def _tokenize(src: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c.isspace():
            i += 1
            continue
        col = i + 1
        if c == '"':
            value, j, bad = _read_string(src, i)
            toks.append(_Tok("str", value, col, src[i:j], bad))
        elif c == "'":
            raise FilterError('strings go in double quotes, e.g. "Order Completed"', col)
        elif c in _DIGITS or (c == "-" and i + 1 < n and src[i + 1] in _DIGITS):
            j = _read_number(src, i, toks)
        elif c.isalpha() or c in "_$\\":
            j = _read_name(src, i, toks)
        elif src.startswith(("&&", "||"), i):
            word = "and" if c == "&" else "or"
            raise FilterError(f"use '{word}' instead of '{src[i : i + 2]}'", col)
        else:
            op = next((o for o in _OPERATORS if src.startswith(o, i)), None)
            if op is not None:
                toks.append(_Tok("op", "=" if op == "==" else op, col, op))
                j = i + len(op)
            elif c in "()[],!":
                toks.append(_Tok(c, c, col, c))
                j = i + 1
            else:
                raise FilterError(f"unexpected character {c!r}", col)
        i = j
    toks.append(_Tok("eof", None, n + 1, ""))
    return toks


def _read_string(src: str, start: int) -> tuple[str | None, int, FilterError | None]:
    """The text, the index after the closing quote, and the first bad escape (kept, not
    raised: in a match() pattern ``\\*`` is a glob escape, anywhere else an error)."""
    out: list[str] = []
    bad: FilterError | None = None
    i, n = start + 1, len(src)
    while i < n:
        c = src[i]
        if c == '"':
            return (None if bad else "".join(out)), i + 1, bad
        if c == "\\":
            if i + 1 >= n:
                break
            esc = src[i + 1]
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
            elif bad is None:
                bad = FilterError(
                    f"invalid escape '\\{esc}' in a string: use \\\" \\\\ \\n or \\t", i + 1
                )
            i += 2
            continue
        out.append(c)
        i += 1
    raise FilterError('unterminated string: add the closing "', start + 1)


_DIGITS = "0123456789"
"""ASCII only: ``str.isdigit`` is also true of '²', which no number pattern reads."""


def _read_number(src: str, i: int, toks: list[_Tok]) -> int:
    m = _NUMBER.match(src, i)
    assert m is not None  # the caller saw a digit
    j = m.end()
    if j < len(src) and (src[j].isalnum() or src[j] in "._$"):
        k = j
        while k < len(src) and (src[k].isalnum() or src[k] in "._$-+"):
            k += 1
        raise FilterError(f"invalid number '{src[i:k]}'", i + 1)
    text = m.group()
    value: int | float = float(text) if any(ch in text for ch in ".eE") else int(text)
    toks.append(_Tok("num", value, i + 1, text))
    return j


def _read_field(src: str, i: int) -> tuple[str, int, bool]:
    """One field name from ``i``: (the name, the index after it, whether it had escapes)."""
    out: list[str] = []
    escaped = False
    n = len(src)
    while i < n:
        c = src[i]
        if c == "\\":
            if i + 1 >= n:
                raise FilterError(
                    "a '\\' in a field name escapes the character after it, e.g. first\\ name",
                    i + 1,
                )
            out.append(src[i + 1])
            escaped = True
            i += 2
        elif c.isalnum() or c in _FIELD_CHARS:
            out.append(c)
            i += 1
        else:
            break
    return "".join(out), i, escaped


def _read_name(src: str, i: int, toks: list[_Tok]) -> int:
    if not (src[i].isascii() or src[i] == "\\"):  # a non-ASCII letter first
        raise FilterError(f"unexpected character {src[i]!r}", i + 1)
    first, j, escaped = _read_field(src, i)
    if not escaped and first.lower() in _KEYWORDS:
        toks.append(_Tok("kw", first.lower(), i + 1, first))
        return j
    steps: list[str | int] = [first]
    n = len(src)
    while j < n:
        if src[j] == ".":
            field, k, _ = _read_field(src, j + 1)
            if not field:
                raise FilterError(f"expected a field name after '{src[i : j + 1]}'", j + 2)
            steps.append(field)
            j = k
        elif src[j] == "[":
            m = _INDEX.match(src, j)
            if m is None:
                raise FilterError(f"expected an index such as [0] after '{src[i:j]}'", j + 1)
            steps.append(int(m.group()[1:-1]))
            j = m.end()
        else:
            break
    toks.append(_Tok("name", tuple(steps), i + 1, src[i:j]))
    return j


def _describe(tok: _Tok) -> str:
    if tok.kind == "eof":
        return "end of input"
    text = tok.text if len(tok.text) <= 40 else tok.text[:37] + "..."
    return text if tok.kind == "str" else f"'{text}'"


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, src: str, toks: list[_Tok], data_maps: frozenset[str]) -> None:
        self.src = src
        self.toks = toks
        self.pos = 0
        self.depth = 0
        self.data_maps = data_maps
        self.used: set[str] = set()
        self.user_used: set[str] = set()

    def peek(self, ahead: int = 0) -> _Tok:
        return self.toks[min(self.pos + ahead, len(self.toks) - 1)]

    def advance(self) -> _Tok:
        tok = self.toks[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def is_kw(self, tok: _Tok, word: str) -> bool:
        return tok.kind == "kw" and tok.value == word

    def nest(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise FilterError(f"the filter nests more than {_MAX_DEPTH} levels deep", tok.col)

    def parse(self) -> _Node:
        if self.peek().kind == "eof":
            raise FilterError(
                'empty expression: write a condition such as event = "Order Completed"', 1
            )
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "eof":
            raise FilterError(
                f"expected 'and', 'or' or end of input but found {_describe(tok)}", tok.col
            )
        return node

    def or_expr(self) -> _Node:
        items = [self.and_expr()]
        while self.is_kw(self.peek(), "or"):
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else _Or(tuple(items))

    def and_expr(self) -> _Node:
        items = [self.not_expr()]
        while self.is_kw(self.peek(), "and"):
            self.advance()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else _And(tuple(items))

    def not_expr(self) -> _Node:
        tok = self.peek()
        if self.is_kw(tok, "not") or tok.kind == "!":
            self.advance()
            self.nest(tok)
            node = _Not(self.not_expr())
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> _Node:
        left = self.operand()
        tok = self.peek()
        if tok.kind == "op":
            self.advance()
            return _Cmp(tok.value, left, self.operand())
        negated = self.is_kw(tok, "not") and self.is_kw(self.peek(1), "in")
        if negated or self.is_kw(tok, "in"):
            if negated:
                self.advance()
            in_tok = self.advance()
            opening = self.advance()
            if opening.kind != "[":
                raise FilterError(
                    f'expected a list such as ["a", "b"] after \'{in_tok.text}\' '
                    f"but found {_describe(opening)}",
                    opening.col,
                )
            return _In(left, self.list_body(opening), negated)
        return left

    def expected_value(self, tok: _Tok) -> FilterError:
        if self.pos == 0:
            return FilterError(f"expected a condition but found {_describe(tok)}", tok.col)
        prev = self.toks[self.pos - 1]
        return FilterError(
            f"expected a value after '{prev.text}' but found {_describe(tok)}", tok.col
        )

    def operand(self) -> _Node:
        tok = self.peek()
        if tok.kind in ("str", "num"):
            if tok.error is not None:
                raise tok.error
            self.advance()
            return _Lit(tok.value)
        if tok.kind == "kw" and tok.value in _LITERAL_KEYWORDS:
            self.advance()
            return _Lit(_LITERAL_KEYWORDS[tok.value])
        if tok.kind == "[":
            self.advance()
            return _Lit(self.list_body(tok))
        if tok.kind == "(":
            self.advance()
            self.nest(tok)
            node = self.or_expr()
            close = self.peek()
            if close.kind != ")":
                raise FilterError(
                    f"expected 'and', 'or' or ')' to close the '(' at column {tok.col} "
                    f"but found {_describe(close)}",
                    close.col,
                )
            self.advance()
            self.depth -= 1
            return node
        if tok.kind == "name":
            self.advance()
            if self.peek().kind == "(":
                return self.call(tok)
            return self.resolve(tok)
        raise self.expected_value(tok)

    def list_body(self, opening: _Tok) -> tuple[Any, ...]:
        self.nest(opening)
        items: list[Any] = []
        if self.peek().kind == "]":
            self.advance()
        else:
            while True:
                items.append(self.literal())
                tok = self.advance()
                if tok.kind == "]":
                    break
                if tok.kind != ",":
                    raise FilterError(
                        f"expected ',' or ']' to close the list at column {opening.col} "
                        f"but found {_describe(tok)}",
                        tok.col,
                    )
        self.depth -= 1
        return tuple(items)

    def literal(self) -> Any:
        tok = self.peek()
        if tok.kind == "name":
            raise FilterError(
                "a list holds only literal values (quoted text, numbers, true, false, null) "
                f"but found '{tok.text}'",
                tok.col,
            )
        node = self.operand() if tok.kind != "(" else None
        if not isinstance(node, _Lit):
            raise self.expected_value(tok)
        return node.value

    def call(self, name_tok: _Tok) -> _Node:
        fname = name_tok.text.lower()
        if fname not in _FUNCTIONS:
            raise FilterError(
                f"unknown function '{name_tok.text}': use contains(a, b) or match(a, \"glob*\")",
                name_tok.col,
            )
        opening = self.advance()
        self.nest(opening)
        args: list[_Node] = []
        arg_toks: list[_Tok] = []
        if self.peek().kind == ")":
            self.advance()
        else:
            while True:
                arg_toks.append(self.peek())
                if fname == "match" and len(args) == 1 and self.peek().kind == "str":
                    args.append(_Lit(self.advance().text[1:-1]))  # as written
                else:
                    args.append(self.operand())
                tok = self.advance()
                if tok.kind == ")":
                    break
                if tok.kind != ",":
                    raise FilterError(
                        f"expected ',' or ')' to close {fname}( at column {opening.col} "
                        f"but found {_describe(tok)}",
                        tok.col,
                    )
        self.depth -= 1
        if len(args) != 2:
            usage = "contains(a, b)" if fname == "contains" else 'match(a, "glob*")'
            given = f"{len(args)} {'was' if len(args) == 1 else 'were'} given"
            raise FilterError(
                f"{fname}() takes 2 arguments, {usage}, but {given}",
                name_tok.col,
            )
        if fname == "match":
            pattern = arg_toks[1]
            if pattern.kind != "str":
                raise FilterError(
                    'match() needs quoted text as its pattern, e.g. match(event, "Product *")',
                    pattern.col,
                )
            return _Call(fname, tuple(args), _glob(pattern.text[1:-1], pattern.col + 1))
        return _Call(fname, tuple(args))

    def resolve(self, tok: _Tok) -> _Node:
        name: str = tok.text
        steps: tuple[str | int, ...] = tok.value
        if name.startswith("user."):
            data_map = steps[1] if len(steps) == 2 else None
            if not (isinstance(data_map, str) and _NAME.fullmatch(data_map)):
                raise FilterError(
                    "user. must be followed by a data map name, e.g. user.email", tok.col
                )
            if data_map not in self.data_maps:
                raise FilterError(f"unknown data map '{data_map}'", tok.col + 5)
            self.user_used.add(data_map)
            return _Ref("user", data_map)
        if len(steps) > 1:
            return _Ref("event", name, steps)
        field = steps[0]
        assert isinstance(field, str)
        if field in self.data_maps:
            self.used.add(field)
            return _Ref("value", field)
        if field in SEGMENT_FIELDS:
            return _Ref("event", field, (field,))
        raise FilterError(f"unknown data map '{name}'", tok.col)


# --------------------------------------------------------------------------- evaluation


def _is_number(x: Any) -> bool:
    return isinstance(x, _NUMBERS) and not isinstance(x, bool)


def _eq(a: Any, b: Any, depth: int = 0) -> bool:
    """Equality by JSON value: missing is null, bool is not a number, 1 == 1.0."""
    if a is MISSING:
        a = None
    if b is MISSING:
        b = None
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, str):
        return isinstance(b, str) and a == b
    if isinstance(a, _NUMBERS):
        return _is_number(b) and a == b
    if depth >= _MAX_EQ_DEPTH:
        return False
    if isinstance(a, Mapping):
        return (
            isinstance(b, Mapping)
            and len(a) == len(b)
            and all(k in b and _eq(a[k], b[k], depth + 1) for k in a)
        )
    if _is_list(a):
        return (
            _is_list(b)
            and len(a) == len(b)
            and all(_eq(x, y, depth + 1) for x, y in zip(a, b, strict=True))
        )
    return False


def _is_list(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, str | bytes | bytearray)


def _equals(lit: Any) -> Callable[[Any], bool]:
    """A predicate ``x = lit``, specialised for the literal's type."""
    if lit is None:
        return lambda x: x is None or x is MISSING
    if isinstance(lit, bool):
        return lambda x: x is lit
    if isinstance(lit, str):
        return lambda x: isinstance(x, str) and x == lit
    if isinstance(lit, _NUMBERS):
        return lambda x: _is_number(x) and x == lit
    return lambda x: _eq(x, lit)


def _contains(a: Any, b: Any) -> bool:
    if isinstance(a, str):
        return isinstance(b, str) and b in a
    if _is_list(a):
        return any(_eq(x, b) for x in a)
    return False


_GLOB_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}  # else \x is x


def _glob(raw: str, col: int) -> re.Pattern[str]:
    """Segment's glob, written as ``raw`` (the pattern between its quotes, which starts at
    column ``col``) compiled to an anchored-by-fullmatch regex."""
    parts: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch == "*":
            if not parts or parts[-1] != ".*":  # "**" is "*": no needless backtracking
                parts.append(".*")
        elif ch == "?":
            parts.append(".")
        elif ch == "\\":
            parts.append(re.escape(_GLOB_ESCAPES.get(raw[i + 1], raw[i + 1])))
            i += 1
        elif ch == "[":
            cls, i = _glob_class(raw, i, col)
            parts.append(cls)
        else:
            parts.append(re.escape(ch))
        i += 1
    return re.compile("".join(parts), re.DOTALL)


def _glob_class(raw: str, start: int, col: int) -> tuple[str, int]:
    """The class opened at ``raw[start]`` as a regex class, and the index of its ``]``."""
    if raw[start + 1 : start + 2] in ("!", "^"):
        raise FilterError(
            "a negated class [!...] is not part of Segment's glob: use not match(...) "
            "or list the characters",
            col + start,
        )
    chars: list[tuple[str, int]] = []  # (character, its index in raw)
    i, n = start + 1, len(raw)
    while i < n and raw[i] != "]":
        if raw[i] == "\\":
            i += 1
            chars.append((_GLOB_ESCAPES.get(raw[i], raw[i]), i - 1))
        else:
            chars.append((raw[i], i))
        i += 1
    if i >= n:
        raise FilterError(
            "unclosed '[' in the pattern: close the class with ']' or write \\[ for a literal [",
            col + start,
        )
    if not chars:
        raise FilterError("an empty class [] matches nothing: list characters in it", col + start)
    out: list[str] = []
    k = 0
    while k < len(chars):
        ch, at = chars[k]
        dash = k + 2 < len(chars) and chars[k + 1][0] == "-" and raw[chars[k + 1][1]] == "-"
        if dash:
            hi = chars[k + 2][0]
            if hi < ch:
                raise FilterError(f"the range {ch}-{hi} is reversed: write {hi}-{ch}", col + at)
            out.append(f"{re.escape(ch)}-{re.escape(hi)}")
            k += 3
        else:
            out.append(re.escape(ch))
            k += 1
    return "[" + "".join(out) + "]", i


def _value_fn(node: _Node) -> _Eval:
    if isinstance(node, _Lit):
        value = node.value
        return lambda e, v, u: value
    if isinstance(node, _Ref):
        name = node.name
        if node.kind == "value":
            return lambda e, v, u: v.get(name, MISSING)
        if node.kind == "user":
            return lambda e, v, u: u.get(name, MISSING)
        steps = node.steps
        if len(steps) == 1:
            key = steps[0]

            def top_level(e: Any, v: dict[str, Any], u: dict[str, Any]) -> Any:
                if type(e) is dict:
                    return e.get(key, MISSING)
                return read(e, steps)

            return top_level
        return lambda e, v, u: read(e, steps)
    return _bool_fn(node)


# Closures over one data map lookup: most criteria compare a data map (this event's or the
# user's) with a literal, and building those as one closure instead of a getter, a
# predicate and the comparison around them halves the calls per evaluation. Each mirrors
# the general case it replaces (``_equals``, ``ordered``) exactly; anything else takes the
# general route.


def _direct_equals(ref: _Ref, lit: Any, negated: bool) -> _Eval | None:
    """``ref = lit`` (``!=`` when ``negated``) for a data map ``ref``, as one closure."""
    if ref.kind not in ("value", "user"):
        return None
    name = ref.name
    user = ref.kind == "user"
    if isinstance(lit, str):
        if user:
            if negated:
                return lambda e, v, u: not (isinstance(x := u.get(name), str) and x == lit)
            return lambda e, v, u: isinstance(x := u.get(name), str) and x == lit
        if negated:
            return lambda e, v, u: not (isinstance(x := v.get(name), str) and x == lit)
        return lambda e, v, u: isinstance(x := v.get(name), str) and x == lit
    if lit is None:
        if user:
            if negated:
                return lambda e, v, u: (x := u.get(name, MISSING)) is not None and x is not MISSING
            return lambda e, v, u: (x := u.get(name, MISSING)) is None or x is MISSING
        if negated:
            return lambda e, v, u: (x := v.get(name, MISSING)) is not None and x is not MISSING
        return lambda e, v, u: (x := v.get(name, MISSING)) is None or x is MISSING
    if isinstance(lit, bool):
        if user:
            if negated:
                return lambda e, v, u: u.get(name) is not lit
            return lambda e, v, u: u.get(name) is lit
        if negated:
            return lambda e, v, u: v.get(name) is not lit
        return lambda e, v, u: v.get(name) is lit
    if isinstance(lit, _NUMBERS):
        if user:
            if negated:
                return lambda e, v, u: (
                    not (
                        isinstance(x := u.get(name), _NUMBERS)
                        and x is not True
                        and x is not False
                        and x == lit
                    )
                )
            return lambda e, v, u: (
                isinstance(x := u.get(name), _NUMBERS)
                and x is not True
                and x is not False
                and x == lit
            )
        if negated:
            return lambda e, v, u: (
                not (
                    isinstance(x := v.get(name), _NUMBERS)
                    and x is not True
                    and x is not False
                    and x == lit
                )
            )
        return lambda e, v, u: (
            isinstance(x := v.get(name), _NUMBERS) and x is not True and x is not False and x == lit
        )
    return None


def _direct_ordered(ref: _Ref, lit: Any, op: str, lit_first: bool) -> _Eval | None:
    """``ref OP lit`` (``lit OP ref`` when ``lit_first``) for a data map ``ref`` and a
    number or text literal, as one closure: true only between two numbers or two texts."""
    if ref.kind not in ("value", "user"):
        return None
    name = ref.name
    compare = _ORDERINGS[op]
    if isinstance(lit, str):
        if ref.kind == "user":
            if lit_first:
                return lambda e, v, u: isinstance(x := u.get(name), str) and compare(lit, x)
            return lambda e, v, u: isinstance(x := u.get(name), str) and compare(x, lit)
        if lit_first:
            return lambda e, v, u: isinstance(x := v.get(name), str) and compare(lit, x)
        return lambda e, v, u: isinstance(x := v.get(name), str) and compare(x, lit)
    if isinstance(lit, _NUMBERS) and not isinstance(lit, bool):
        if ref.kind == "user":
            if lit_first:
                return lambda e, v, u: (
                    isinstance(x := u.get(name), _NUMBERS)
                    and x is not True
                    and x is not False
                    and compare(lit, x)
                )
            return lambda e, v, u: (
                isinstance(x := u.get(name), _NUMBERS)
                and x is not True
                and x is not False
                and compare(x, lit)
            )
        if lit_first:
            return lambda e, v, u: (
                isinstance(x := v.get(name), _NUMBERS)
                and x is not True
                and x is not False
                and compare(lit, x)
            )
        return lambda e, v, u: (
            isinstance(x := v.get(name), _NUMBERS)
            and x is not True
            and x is not False
            and compare(x, lit)
        )
    return None


def _bool_fn(node: _Node) -> _Eval:
    if isinstance(node, _Ref) and node.kind in ("value", "user"):
        name = node.name
        if node.kind == "user":
            return lambda e, v, u: u.get(name) is True
        return lambda e, v, u: v.get(name) is True
    if isinstance(node, _Lit | _Ref):
        get = _value_fn(node)
        return lambda e, v, u: get(e, v, u) is True
    if isinstance(node, _Not):
        inner = _bool_fn(node.operand)
        return lambda e, v, u: not inner(e, v, u)
    if isinstance(node, _And | _Or):
        return _junction([_bool_fn(item) for item in node.items], isinstance(node, _And))
    if isinstance(node, _Cmp):
        return _comparison(node)
    if isinstance(node, _In):
        return _membership(node)
    return _call(node)


def _junction(fns: list[_Eval], conjunction: bool) -> _Eval:
    if len(fns) == 2:
        a, b = fns
        if conjunction:
            return lambda e, v, u: a(e, v, u) and b(e, v, u)
        return lambda e, v, u: a(e, v, u) or b(e, v, u)
    items = tuple(fns)
    # Loops rather than all()/any() over a generator: a third of the cost per call.
    if conjunction:

        def every(e: Any, v: dict[str, Any], u: dict[str, Any]) -> bool:
            for f in items:  # noqa: SIM110
                if not f(e, v, u):
                    return False
            return True

        return every

    def some(e: Any, v: dict[str, Any], u: dict[str, Any]) -> bool:
        for f in items:  # noqa: SIM110
            if f(e, v, u):
                return True
        return False

    return some


def _comparison(node: _Cmp) -> _Eval:
    if node.op in ("=", "!="):
        if isinstance(node.right, _Lit) or isinstance(node.left, _Lit):
            lit, other = (
                (node.right, node.left) if isinstance(node.right, _Lit) else (node.left, node.right)
            )
            assert isinstance(lit, _Lit)
            if isinstance(other, _Ref):
                direct = _direct_equals(other, lit.value, node.op == "!=")
                if direct is not None:
                    return direct
            pred = _equals(lit.value)
            get = _value_fn(other)
            if node.op == "=":
                return lambda e, v, u: pred(get(e, v, u))
            return lambda e, v, u: not pred(get(e, v, u))
        left, right = _value_fn(node.left), _value_fn(node.right)
        if node.op == "=":
            return lambda e, v, u: _eq(left(e, v, u), right(e, v, u))
        return lambda e, v, u: not _eq(left(e, v, u), right(e, v, u))
    if isinstance(node.left, _Ref) and isinstance(node.right, _Lit):
        direct = _direct_ordered(node.left, node.right.value, node.op, lit_first=False)
        if direct is not None:
            return direct
    if isinstance(node.left, _Lit) and isinstance(node.right, _Ref):
        direct = _direct_ordered(node.right, node.left.value, node.op, lit_first=True)
        if direct is not None:
            return direct
    compare = _ORDERINGS[node.op]
    left, right = _value_fn(node.left), _value_fn(node.right)

    def ordered(e: Any, v: dict[str, Any], u: dict[str, Any]) -> bool:
        a, b = left(e, v, u), right(e, v, u)
        if isinstance(a, str):
            return isinstance(b, str) and compare(a, b)
        return _is_number(a) and _is_number(b) and compare(a, b)

    return ordered


def _membership(node: _In) -> _Eval:
    get = _value_fn(node.operand)
    negated = node.negated
    if all(isinstance(item, str) for item in node.items):
        names = frozenset(node.items)
        if negated:
            return lambda e, v, u: not (isinstance(x := get(e, v, u), str) and x in names)
        return lambda e, v, u: isinstance(x := get(e, v, u), str) and x in names
    preds = tuple(_equals(item) for item in node.items)

    def member(e: Any, v: dict[str, Any], u: dict[str, Any]) -> bool:
        x = get(e, v, u)
        return any(p(x) for p in preds) is not negated

    return member


def _call(node: _Call) -> _Eval:
    first = _value_fn(node.args[0])
    if node.name == "match":
        regex = node.regex
        assert regex is not None
        return lambda e, v, u: (
            isinstance(x := first(e, v, u), str) and (regex.fullmatch(x) is not None)
        )
    needle = _value_fn(node.args[1])
    return lambda e, v, u: _contains(first(e, v, u), needle(e, v, u))
