"""The source of truth as SQL: its columns checked once per run, and one row per internal id.

Operators point the service at a table or at a view over their identity system's own tables,
and views hold what identity systems really hold: ids that are integers or uuids, text where a
boolean was meant, a join that repeats an id. So every run starts by reading the relation's
column types from the catalogue (before any API call) and refuses, naming the column and the
type wanted, what it cannot read safely (a text `active` would make `'false'` true). The rows
are then read through `per_id`: one row per id, with how many source rows carry that id and how
many active rows carry its identity, so that duplicates become bad input of those users instead
of failing everyone's run.

The fingerprint is computed here, in SQL, from the same columns the planner sees; a repeated id
and an identity shared by active users give fingerprints of their own, so such a user's state
never passes for a synced row, and the user is looked at again as soon as the repetition ends.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

ROW_FINGERPRINT = (
    "md5(jsonb_build_array(l.identity, l.friendly_name, l.role, l.attributes, l.active)::text)"
)

_TEXT = "text (or varchar)"
_WANTED: dict[str, tuple[frozenset[str], str]] = {
    "id": (frozenset({"S", "int2", "int4", "int8", "uuid"}), "text, an integer or a uuid"),
    "identity": (frozenset({"S"}), _TEXT),
    "friendly_name": (frozenset({"S"}), _TEXT),
    "role": (frozenset({"S"}), _TEXT),
    "attributes": (frozenset({"S", "json"}), "jsonb, json or text holding a JSON object"),
    "active": (frozenset({"bool"}), "boolean"),
    "updated_at": (frozenset({"timestamptz", "timestamp"}), "timestamptz (or timestamp)"),
}
"""Per column, the Postgres type categories (or type names) accepted, and how to say so."""
OPTIONAL = frozenset({"updated_at"})
"""Columns a source may lack: `updated_at` is only shown (`GET /users/{key}`), never synced."""


INSUFFICIENT_PRIVILEGE = "42501"


class SourceError(Exception):
    """The source relation is missing or has a column the service cannot read safely."""


_AS_ID = {
    "text": "x",
    "integer": "x::bigint FROM unnest(CAST(:{p} AS text[])) x WHERE x ~ '^-?[0-9]{{1,18}}$'",
    "uuid": (
        "x::uuid FROM unnest(CAST(:{p} AS text[])) x"
        " WHERE x ~* '^[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}$'"
    ),
}
"""How text ids become the id column's type: only those that can (an id kept in `sync_state`
from another source, say `legacy-1` for an integer id, matches no row and fails nobody)."""


@dataclass(frozen=True, slots=True)
class Source:
    """A checked source relation: its quoted name and the kind of its `id` column (`text`,
    `integer` or `uuid`)."""

    name: str
    id_kind: str = "text"
    has_updated_at: bool = True

    @property
    def relation(self) -> str:
        return quoted(self.name)

    def ids_match(self, parameter: str) -> str:
        """`l.id` is one of the text ids in `:parameter`, in a form that can use its index."""
        if self.id_kind == "text":
            return f"l.id = ANY(CAST(:{parameter} AS text[]))"
        return f"l.id = ANY(ARRAY(SELECT {_AS_ID[self.id_kind].format(p=parameter)}))"


_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def quoted(name: str) -> str:
    """The relation an unquoted `name` means to Postgres (settings validated its shape), quoted
    so it is taken literally: each part folded to lower case as Postgres folds unquoted names,
    ASCII letters only (in a UTF-8 database other letters are kept as they are), so
    `IDP.USERS_V` is `"idp"."users_v"`."""
    return ".".join(f'"{part.translate(_FOLD)}"' for part in name.split("."))


_COLUMNS = text(
    """
    SELECT a.attname, format_type(a.atttypid, NULL), t.typcategory::text, t.typname::text
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = to_regclass(:relation) AND a.attnum > 0 AND NOT a.attisdropped
    """
)


async def inspect(connection: AsyncConnection, name: str) -> Source:
    """The relation `name` with its columns checked; SourceError says what is wrong."""
    found = {
        column: (sql_type, category, type_name)
        for column, sql_type, category, type_name in await connection.execute(
            _COLUMNS, {"relation": quoted(name)}
        )
    }
    if not found:
        raise SourceError(
            f"the source table or view {name} does not exist (or has no columns): check "
            "USERSYNC_SOURCE_TABLE (and the schema, if the name has none: the search_path)"
        )
    problems = [p for p in (_problem(name, c, found.get(c)) for c in _WANTED) if p]
    if problems:
        raise SourceError("; ".join(problems))
    checked = Source(name=name, id_kind=_id_kind(found["id"]), has_updated_at="updated_at" in found)
    await _readable(connection, checked)
    return checked


async def _readable(connection: AsyncConnection, checked: Source) -> None:
    """Read no row, but with every privilege a run needs checked (they are checked before a
    single row is read, so a missing grant shows now, not after the remote listing)."""
    columns = ", ".join(c for c in _WANTED if c not in OPTIONAL or checked.has_updated_at)
    probe = text(f"SELECT {columns} FROM {checked.relation} LIMIT 0")
    try:
        async with connection.begin_nested():
            await connection.execute(probe)
    except DBAPIError as e:
        state = getattr(e.orig, "sqlstate", None)
        if state is None:  # no answer from the server (the connection broke): not the source
            raise
        grant = (
            ": grant SELECT on it (and on what it reads, for a view) to the service's database user"
            if state == INSUFFICIENT_PRIVILEGE
            else ": check USERSYNC_SOURCE_TABLE names a table or a view"
        )
        raise SourceError(
            f"the source {checked.name} cannot be read ({_first_line(e.orig)}){grant}"
        ) from None


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _id_kind(found: tuple[str, str, str]) -> str:
    _, category, type_name = found
    if category == "S":
        return "text"
    return "uuid" if type_name == "uuid" else "integer"


def _problem(name: str, column: str, found: tuple[str, str, str] | None) -> str | None:
    accepted, wanted = _WANTED[column]
    if found is None:
        absent = f"the source {name} has no column {column} (wanted: {wanted})"
        return None if column in OPTIONAL else absent
    sql_type, category, type_name = found
    json_type = type_name in ("json", "jsonb") and "json" in accepted
    if category in accepted or type_name in accepted or json_type:
        return None
    return f"column {column} of the source {name} is {sql_type}; it must be {wanted}"


def per_id(source: Source, *, where: str = "") -> str:
    """One row per internal id: the first of its rows, `copies` (rows with the id) and
    `holders` (active rows with its identity), and its `fingerprint`.

    With `where` (a condition on `l` that keeps or drops whole ids), only those ids are read;
    `holders` then counts over the whole source through its identity.
    """
    holders = (
        "count(*) FILTER (WHERE l.active) OVER (PARTITION BY l.identity)"
        if not where
        else f"(SELECT count(*) FROM {source.relation} o WHERE o.identity = l.identity"
        " AND o.active)"
    )
    return f"""
        SELECT x.id, x.identity, x.friendly_name, x.role, x.attributes, x.active, x.copies,
               x.holders,
               CASE WHEN x.copies > 1 THEN 'duplicate:' || x.copies
                    WHEN x.active AND x.holders > 1 THEN 'shared:' || x.row_fp
                    ELSE x.row_fp END AS fingerprint
        FROM (
            SELECT l.id::text AS id, l.identity::text AS identity,
                   l.friendly_name::text AS friendly_name, l.role::text AS role,
                   l.attributes AS attributes, l.active AS active,
                   {ROW_FINGERPRINT} AS row_fp,
                   count(*) OVER (PARTITION BY l.id) AS copies,
                   {holders} AS holders,
                   row_number() OVER (PARTITION BY l.id ORDER BY {ROW_FINGERPRINT}) AS n
            FROM {source.relation} l {f"WHERE {where}" if where else ""}
        ) x WHERE x.n = 1"""


def fingerprints(source: Source, *, parameter: str) -> str:
    """(id, fingerprint) of the ids in `:parameter` as `per_id` computes them, for the
    compare-and-set of a lease; an id that is gone has no row."""
    holders = (
        f"(SELECT count(*) FROM {source.relation} o"
        " WHERE o.identity = min(l.identity) AND o.active)"
    )
    return f"""
        SELECT l.id::text AS id,
               CASE WHEN count(*) > 1 THEN 'duplicate:' || count(*)
                    WHEN bool_and(l.active) AND {holders} > 1
                        THEN 'shared:' || min({ROW_FINGERPRINT})
                    ELSE min({ROW_FINGERPRINT}) END AS fingerprint
        FROM {source.relation} l WHERE {source.ids_match(parameter)} GROUP BY l.id"""
