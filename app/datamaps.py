"""Data maps: named values read from each event and converted to Emarsys field formats.

A value that cannot be converted is left out and reported by name, never sent as
garbage; a missing path, JSON null or an empty string gives no value at all (not a
failure), because a null sent to Emarsys wipes the contact's field.

Conversions (``convert``), chosen to match what Emarsys accepts:

- ``string``: text, stripped. Numbers and booleans become their text (``5``, ``14.99``,
  ``true``); objects and lists fail. Longer than ``max_length`` fails (never truncated: a
  cut e-mail address is garbage). Default ``max_length``: 60 for the Emarsys short-text
  system fields in ``SHORT_TEXT_FIELDS`` (1 first name, 2 last name, 46 salutation), 255
  (long text) otherwise.
- ``numeric``: int or float, from numbers or numeric text (``"12.50"`` → 12.5, ``"1e3"`` →
  1000); integral values become int. Booleans, NaN, infinities and more than 24 digits
  fail.
- ``boolean``: ``true``/``false``, 1/0, and the text ``true``/``false``/``yes``/``no``/
  ``1``/``0`` in any case.
- ``date``: ``YYYY-MM-DD``. From an ISO date or date-time, the calendar date as written
  (``2024-01-02T00:30:00+01:00`` is 2024-01-02: a birth date typed in a local form must
  not move a day); from a number, unix seconds in UTC.
- ``datetime``: UTC ``YYYY-MM-DDTHH:MM:SSZ`` from an ISO date-time (no offset means UTC,
  a date alone means midnight UTC) or unix seconds.
- ``choice``: the choice id from the ``choices`` table, looked up by the value's text
  (booleans as ``true``/``false``, integral numbers without ``.0``), exactly first, then
  ignoring case. No entry fails.

Failure reasons name the data map and the type of the value, never the value itself
(values are personal data): ``first_name: text longer than 60 characters``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, DecimalException
from typing import Any, Final

from app.config.model import DataMapConfig
from app.jsonpath import MISSING, PathSet, compile_path
from app.segment.plain import parse_iso

SHORT_TEXT_FIELDS: Final = frozenset({1, 2, 46})
"""Emarsys system fields of type short text (60 characters): first name, last name,
salutation. Any other field defaults to long text (255); ``max_length`` overrides both."""
SHORT_TEXT_MAX: Final = 60
LONG_TEXT_MAX: Final = 255
NUMERIC_MAX_DIGITS: Final = 24

_TRUE: Final = frozenset({"true", "yes", "1"})
_FALSE: Final = frozenset({"false", "no", "0"})
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMERIC_LIMIT: Final = 10**NUMERIC_MAX_DIGITS
_FLOAT_EXACT: Final = 2.0**53
_TEXT_INT_LIMIT: Final = 10**LONG_TEXT_MAX  # beyond any text limit; str() of it is cheap


class ConversionError(ValueError):
    """A value that does not fit its data map's type; the message is safe to log."""


Converter = Callable[[Any], Any]
"""raw (not None) → converted value, or None for "no value"; raises ConversionError."""


def _kind(v: object) -> str:
    """The type of a value in words, for reasons that must not contain the value."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "text"
    if isinstance(v, Mapping):
        return "object"
    if isinstance(v, list | tuple):
        return "list"
    return type(v).__name__


def _number_text(v: int | float) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("number is not finite")
        if v.is_integer():
            return str(int(v))
        return repr(v)
    if not -_TEXT_INT_LIMIT < v < _TEXT_INT_LIMIT:
        raise ValueError(f"number has more than {LONG_TEXT_MAX} digits")
    return str(v)


def _digits(d: Decimal) -> int:
    """Digits of ``d`` written out in plain notation (``12.50`` → 3, ``1e3`` → 4)."""
    _sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)  # finite
    n = len(digits)
    while n > 1 and digits[n - 1] == 0:  # trailing zeros of the coefficient
        n -= 1
        exponent += 1
    lead = 0
    while lead < n - 1 and digits[lead] == 0:
        lead += 1
    n -= lead
    if exponent >= 0:
        return n + exponent
    return max(n, -exponent)


def default_max_length(dm: DataMapConfig) -> int:
    if dm.max_length is not None:
        return dm.max_length
    return SHORT_TEXT_MAX if dm.field in SHORT_TEXT_FIELDS else LONG_TEXT_MAX


def _string_converter(dm: DataMapConfig) -> Converter:
    name = dm.name
    limit = default_max_length(dm)

    def convert(raw: Any) -> str | None:
        if isinstance(raw, str):
            text = raw.strip()
            if not text:
                return None
        elif isinstance(raw, bool):
            text = "true" if raw else "false"
        elif isinstance(raw, int | float):
            try:
                text = _number_text(raw)
            except ValueError as e:
                raise ConversionError(f"{name}: {e}") from None
        else:
            raise ConversionError(f"{name}: {_kind(raw)} cannot be converted to text")
        if len(text) > limit:
            raise ConversionError(f"{name}: {_kind(raw)} longer than {limit} characters")
        return text

    return convert


def _to_number(name: str, d: Decimal, kind: str) -> int | float:
    if not d.is_finite():
        raise ConversionError(f"{name}: {kind} is not a finite number")
    if _digits(d) > NUMERIC_MAX_DIGITS:
        raise ConversionError(f"{name}: {kind} has more than {NUMERIC_MAX_DIGITS} digits")
    if d == d.to_integral_value():
        return int(d)
    return float(d)


def _numeric_converter(dm: DataMapConfig) -> Converter:
    name = dm.name

    def convert(raw: Any) -> int | float | None:
        if isinstance(raw, bool):
            raise ConversionError(f"{name}: boolean is not a number")
        if isinstance(raw, int):
            if not -_NUMERIC_LIMIT < raw < _NUMERIC_LIMIT:
                raise ConversionError(f"{name}: number has more than {NUMERIC_MAX_DIGITS} digits")
            return raw
        if isinstance(raw, float):
            if not math.isfinite(raw):
                raise ConversionError(f"{name}: number is not finite")
            # Fast paths; floats print at most 17 significant digits without an exponent.
            if raw.is_integer():
                if -_FLOAT_EXACT < raw < _FLOAT_EXACT:
                    return int(raw)
            elif "e" not in repr(raw):
                return raw
            return _to_number(name, Decimal(repr(raw)), "number")
        if isinstance(raw, str):
            text = raw.strip()
            if not text:
                return None
            if len(text) > 64 or not _NUMBER_RE.fullmatch(text):
                raise ConversionError(f"{name}: text is not a number")
            if len(text) <= 15 and "e" not in text and "E" not in text:
                # at most 15 digits: exact as float, far below the digit limit
                if "." not in text:
                    return int(text)
                f = float(text)
                return int(f) if f.is_integer() else f
            try:
                return _to_number(name, Decimal(text), "text")
            except DecimalException:  # an exponent beyond Decimal's range
                raise ConversionError(f"{name}: text is not a number") from None
        raise ConversionError(f"{name}: {_kind(raw)} is not a number")

    return convert


def _boolean_converter(dm: DataMapConfig) -> Converter:
    name = dm.name

    def convert(raw: Any) -> bool | None:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int | float):
            if raw == 1:
                return True
            if raw == 0:
                return False
            raise ConversionError(f"{name}: number is not 0 or 1")
        if isinstance(raw, str):
            text = raw.strip().lower()
            if not text:
                return None
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ConversionError(f"{name}: text is not a boolean (true/false, yes/no, 1/0)")
        raise ConversionError(f"{name}: {_kind(raw)} is not a boolean")

    return convert


def _from_unix(name: str, raw: int | float) -> datetime:
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ConversionError(f"{name}: number is not finite")
    try:
        return _EPOCH + timedelta(seconds=raw)
    except (OverflowError, ValueError):
        raise ConversionError(f"{name}: number is out of range for unix seconds") from None


def _parse_text_time(name: str, raw: str, expected: str) -> datetime | None:
    text = raw.strip()
    if not text:
        return None
    try:
        return parse_iso(text)
    except ValueError:
        raise ConversionError(
            f"{name}: text is not a valid ISO 8601 date or date-time (expected {expected})"
        ) from None


def _date_converter(dm: DataMapConfig) -> Converter:
    name = dm.name

    def convert(raw: Any) -> str | None:
        if isinstance(raw, str):
            dt = _parse_text_time(name, raw, "YYYY-MM-DD")
            if dt is None:
                return None
            # The calendar date as written: the text parsed, so it starts with it (and
            # formatting the datetime again costs more than the parse).
            return raw.strip()[:10]
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            dt = _from_unix(name, raw)
        else:
            raise ConversionError(f"{name}: {_kind(raw)} is not a date")
        return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"

    return convert


def _datetime_converter(dm: DataMapConfig) -> Converter:
    name = dm.name

    def convert(raw: Any) -> str | None:
        if isinstance(raw, str):
            dt = _parse_text_time(name, raw, "YYYY-MM-DDTHH:MM:SS with Z or an offset")
            if dt is None:
                return None
            text = raw.strip()
            if dt.tzinfo is UTC and len(text) >= 19 and text[16] == ":":
                # Written in UTC with seconds (``toISOString()``'s shape): the text parsed,
                # so its date and time are the answer, the fraction dropped.
                return f"{text[:10]}T{text[11:19]}Z"
            try:
                dt = dt.astimezone(UTC)
            except OverflowError:
                raise ConversionError(f"{name}: text is out of range in UTC") from None
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            dt = _from_unix(name, raw)
        else:
            raise ConversionError(f"{name}: {_kind(raw)} is not a date-time")
        return (
            f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T"
            f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}Z"
        )

    return convert


def _choice_converter(dm: DataMapConfig) -> Converter:
    name = dm.name
    exact: dict[str, int] = dict(dm.choices or {})
    folded: dict[str, int] = {}
    for key, choice in exact.items():
        folded.setdefault(key.strip().casefold(), choice)

    def convert(raw: Any) -> int | None:
        if isinstance(raw, bool):
            key = "true" if raw else "false"
        elif isinstance(raw, int | float):
            try:
                key = _number_text(raw)
            except ValueError as e:
                raise ConversionError(f"{name}: {e}") from None
        elif isinstance(raw, str):
            key = raw.strip()
            if not key:
                return None
        else:
            raise ConversionError(f"{name}: {_kind(raw)} cannot be a choice")
        choice = exact.get(key)
        if choice is None:
            choice = folded.get(key.casefold())
        if choice is None:
            raise ConversionError(f"{name}: {_kind(raw)} has no entry in the choices table")
        return choice

    return convert


_FACTORIES: Final[dict[str, Callable[[DataMapConfig], Converter]]] = {
    "string": _string_converter,
    "numeric": _numeric_converter,
    "boolean": _boolean_converter,
    "date": _date_converter,
    "datetime": _datetime_converter,
    "choice": _choice_converter,
}


def converter(dm: DataMapConfig) -> Converter:
    """A converter for ``dm`` with its tables prepared once (what ``DataMaps`` keeps)."""
    return _FACTORIES[dm.type](dm)


def convert(dm: DataMapConfig, raw: Any) -> Any:
    """``raw`` in ``dm``'s type; None when there is no value (missing, null, empty text).

    ``ConversionError`` when ``raw`` cannot be converted; its message names ``dm`` and the
    type of ``raw``, never ``raw`` itself.
    """
    if raw is None or raw is MISSING:
        return None
    return converter(dm)(raw)


class DataMaps:
    """An account's data maps, compiled once (paths and converters) and evaluated per event.

    The paths are read in one walk of the message (``PathSet``): the data maps of an
    account mostly share ``traits``, ``properties`` and ``context``, and a page event
    without ``traits`` skips all of its trait maps with one lookup.
    """

    __slots__ = ("_compiled", "_convs", "_fields", "_paths", "maps", "names", "unique_fields")

    def __init__(self, maps: Sequence[DataMapConfig]) -> None:
        self.maps: tuple[DataMapConfig, ...] = tuple(maps)
        self.names: tuple[str, ...] = tuple(dm.name for dm in self.maps)
        self._compiled: tuple[tuple[str, tuple[str | int, ...], Converter], ...] = tuple(
            (dm.name, compile_path(dm.path), converter(dm)) for dm in self.maps
        )
        self._paths = PathSet([steps for _, steps, _ in self._compiled])
        self._convs: tuple[tuple[str, Converter], ...] = tuple(
            (name, conv) for name, _, conv in self._compiled
        )
        # (field id as text, data map name) in config order: when several data maps write
        # the same field, the first one with a value wins (a fallback chain).
        self._fields: tuple[tuple[str, str], ...] = tuple(
            (str(dm.field), dm.name) for dm in self.maps if dm.field is not None
        )
        #: no two data maps write one field (then the first with a value needs no tracking)
        self.unique_fields = len({f for f, _ in self._fields}) == len(self._fields)

    @property
    def reads(self) -> PathSet:
        """The data maps' paths, in config order (``app.projection`` reads them while it
        copies an event)."""
        return self._paths

    @property
    def field_sources(self) -> tuple[tuple[str, str], ...]:
        """(Emarsys field id as text, data map name) in config order: ``fields``' table."""
        return self._fields

    def evaluate(self, message: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """(converted values present in ``message`` by name, names that failed to convert).

        ``evaluate_with_reasons`` without the reasons (the per-event path: no message text
        is built for a failure nobody reads)."""
        values: dict[str, Any] = {}
        failures: list[str] = []
        convs = self._convs
        for i, raw in self._paths.present(message):
            if raw is None:
                continue
            name, conv = convs[i]
            try:
                value = conv(raw)
            except ConversionError:
                if name not in failures:
                    failures.append(name)
                continue
            if value is not None:
                values[name] = value
        return values, failures

    def evaluate_with_reasons(
        self, message: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Like ``evaluate``, with each failure's reason (safe to log: no values in it)."""
        values: dict[str, Any] = {}
        failures: dict[str, str] = {}
        convs = self._convs
        for i, raw in self._paths.present(message):
            if raw is None:
                continue
            name, conv = convs[i]
            try:
                value = conv(raw)
            except ConversionError as e:
                failures[name] = str(e)
                continue
            if value is not None:
                values[name] = value
        return values, failures

    def fields(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Emarsys contact fields ``{"<field id>": value}``; never a None (it would wipe)."""
        out: dict[str, Any] = {}
        for field, name in self._fields:
            if field in out:
                continue
            value = values.get(name)
            if value is not None:
                out[field] = value
        return out
