"""Attributes as JSON values: parsing, the one compact text we send, and merging.

The API keeps attributes as text, so two texts can differ while holding the same object (key
order, whitespace). We compare the compact, key-sorted rendering of the parsed value, which
also keeps `true` apart from `1` (Python's `True == 1` would not).

Numbers are kept exactly. Every JSON number is read as a `Decimal`, never as a float (which
rounds 3.14159265358979323846 to 3.141592653589793 and 1e-400 to 0.0) nor as an int (which
Python refuses past 4300 digits), and written back with its own digits and exponent. Two numbers
are therefore equal when they have the same digits and exponent: `100`, `100.0` and `1e2` are
three different texts and compare different, as do `1.5` and `1.50` (and `-0.0` keeps its
sign), so the remote side converges to what the source holds; only the spelling of an exponent
is ours: `1e-400`, Postgres's `0.000…1` (its jsonb text of `1e-400`) and `1E-400` are one
number, sent as `1E-400`. NaN and infinities are not JSON and are refused on both sides.

The standard library reads numbers as Decimals (`parse_float`) but cannot write a Decimal as a
JSON number; simplejson does both (`use_decimal`), in C, with the same options otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import simplejson

from service.domain.policy import AttributesMode
from service.domain.users import JsonObject

MAX_ATTRIBUTES_BYTES = 16384
"""The API's limit on the attributes text (16 KB, counted in UTF-8 bytes)."""


class AttributesError(ValueError):
    """Attributes that cannot be sent; the message completes "attributes …"."""


@dataclass(frozen=True, slots=True)
class Attributes:
    """A JSON object with its compact text; equal (and hashed) by the text alone."""

    value: JsonObject = field(compare=False, hash=False)
    text: str

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self.value)

    @property
    def size(self) -> int:
        return len(self.text.encode("utf-8"))


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


# Built once: `simplejson.loads` and `dumps` given options build a new decoder or encoder on
# every call, which a full run would pay for twice per user.
_DECODER = simplejson.JSONDecoder(
    parse_float=Decimal, parse_int=Decimal, parse_constant=_refuse_constant, allow_nan=False
)
_ENCODER = simplejson.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, sort_keys=True, allow_nan=False, use_decimal=True
)


def compact(value: object) -> str:
    """The wire form: no whitespace, sorted keys, UTF-8 kept as is, numbers exact, no NaN."""
    return _ENCODER.encode(value)


def parse(text: str) -> object:
    """The value of a JSON text, every number a `Decimal` with the text's digits and exponent."""
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as e:
        raise AttributesError(f"are text that is not valid JSON ({e})") from None


_KINDS = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    Decimal: "a number",
    list: "a list",
}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return _KINDS.get(type(value), f"a {type(value).__name__}")


def from_value(value: object) -> Attributes:
    """Local attributes as the source holds them: a dict, text that parses to an object, or
    already rendered (the gather renders the text it reads as it reads it)."""
    if isinstance(value, Attributes):
        return value
    if value is None:
        return Attributes({}, "{}")
    parsed = isinstance(value, str)
    if isinstance(value, str):
        value = parse(value)
    if not isinstance(value, dict):
        raise AttributesError(f"must be a JSON object, got {_kind(value)}")
    return _rendered(value, normalize=not parsed)


def from_parsed(value: JsonObject) -> Attributes:
    """An object `parse` returned, with its compact text (raises AttributesError)."""
    return _rendered(value, normalize=False)


def _rendered(value: JsonObject, *, normalize: bool) -> Attributes:
    """The object with its compact text. A value not parsed from JSON text is replaced by the
    parse of its text (tuples become lists, floats Decimals, and so on) and rendered again, so
    that its text is the one the parse of any of its texts renders (a float's `1e+16` is
    `1E+16`); a parsed one already is that."""
    try:
        if normalize:
            value = _DECODER.decode(compact(value))
        return Attributes(value, compact(value))
    except (TypeError, ValueError, RecursionError) as e:
        raise AttributesError(f"cannot be written as JSON ({e})") from None


def from_remote(text: str | None) -> Attributes | None:
    """A remote user's attributes, or None when its text is not a JSON object we can rewrite."""
    try:
        parsed = parse(text or "{}")
        return _rendered(parsed, normalize=False) if isinstance(parsed, dict) else None
    except AttributesError:
        return None


def desired(
    local: Attributes,
    remote: Attributes | None,
    *,
    mode: AttributesMode,
    managed_before: frozenset[str],
) -> Attributes:
    """What the remote attributes should be.

    `merge` keeps the remote keys others set, drops the keys we managed before that are no
    longer local, and writes every local key over the rest. An unreadable remote text has no
    keys worth keeping.
    """
    if mode is AttributesMode.REPLACE or remote is None:
        return local
    kept = {
        key: value
        for key, value in remote.value.items()
        if key not in managed_before or key in local.value
    }
    merged = kept | local.value
    return Attributes(merged, compact(merged))
