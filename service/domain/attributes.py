"""Attributes as JSON values: parsing, the one compact text we send, and merging.

The API keeps attributes as text, so two texts can differ while holding the same object (key
order, whitespace). We compare the compact, key-sorted rendering of the parsed value, which
also keeps `true` apart from `1` (Python's `True == 1` would not). Numbers are compared as JSON
texts: `100` and `100.0` differ, and the remote side converges to what the source holds.
NaN and infinities are not JSON and are refused on both sides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

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


def compact(value: object) -> str:
    """The wire form: no whitespace, sorted keys, UTF-8 kept as is, no NaN."""
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, sort_keys=True, allow_nan=False
    )


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _kind(value: object) -> str:
    kinds = {bool: "a boolean", int: "a number", float: "a number", list: "a list"}
    if value is None:
        return "null"
    return kinds.get(type(value), f"a {type(value).__name__}")


def from_value(value: object) -> Attributes:
    """Local attributes as the source holds them: a dict, or text that parses to an object."""
    if value is None:
        return Attributes({}, "{}")
    parsed = isinstance(value, str)
    if isinstance(value, str):
        value = _parse(value)
    if not isinstance(value, dict):
        raise AttributesError(f"must be a JSON object, got {_kind(value)}")
    return _rendered(value, normalize=not parsed)


def _rendered(value: JsonObject, *, normalize: bool) -> Attributes:
    """The object with its compact text. A value not parsed from JSON text is replaced by the
    parse of its text (tuples become lists, and so on); a parsed one already is that."""
    try:
        text = compact(value)
        return Attributes(json.loads(text) if normalize else value, text)
    except (TypeError, ValueError, RecursionError) as e:
        raise AttributesError(f"cannot be written as JSON ({e})") from None


def _parse(text: str) -> object:
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:
        raise AttributesError(f"are text that is not valid JSON ({e})") from None


def from_remote(text: str | None) -> Attributes | None:
    """A remote user's attributes, or None when its text is not a JSON object we can rewrite."""
    try:
        parsed = _parse(text or "{}")
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
