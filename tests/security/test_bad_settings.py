"""Every constrained setting, given a bad value, fails at start naming its variable.

The cases are generated from `Settings.model_fields`: each numeric bound (gt/ge/lt/le) is crossed,
and every number also gets the values that broke runs after a clean start (1e300, infinity,
NaN); each enum gets a value outside it, each validated string gets nonsense (and its valid
form with a trailing newline), each boolean gets a non-boolean. A field with a constraint the
generator cannot see fails `test_every_constrained_field_has_a_bad_value`, so new fields cannot
slip through; a number without both bounds fails `test_every_number_is_bounded_both_ways`, and
each bound itself must load. The README's settings table is `Settings` as written: one row per
variable (no more, no fewer), each with the field's default and range, and every field says what
it means in its docstring.
"""

from __future__ import annotations

import ast
import itertools
import re
from enum import Enum
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from pydantic import AliasChoices

from service import config
from service.config import ConfigError, Settings, _env_name, load_settings

VALIDATED_STRINGS = {
    "source_table": "users; drop table x",
    "account_sid": "ACnothex",
    "api_key": "SK123",
    "service_sid": "IS123",
    "protected_identity_pattern": "([",
    "api_token": "short",
    "webhook_secret": "short",
    "webhook_signature_header": "X Sig: 1",
    "webhook_timestamp_header": "",
    "full_sync_cron": "every day at 3",
    "log_level": "LOUD",
    "database_url": "postgresql://u:pw@db/x?sslmod=require",
    "leader_database_url": "postgresql://u:pw@db/x?sslmod=require",
    "region": "eu1",
    "edge": "paris",
    "api_base_url": "conversations.twilio.com",
    "auth_token": "an auth token",
    "api_secret": "a secret",
    "suspended_role": " suspended",
    "suspended_marker": "tab\there",
}
UNCONSTRAINED = {
    "http_host",
}  # fmt: skip
NEARLY_RIGHT = [
    ("source_table", "internal_users\n"),
    ("source_table", "idp.users_v\n"),
    ("source_table", "a" * 64),
    ("source_table", "idp.users.v"),
    ("source_table", "$users"),
    ("account_sid", "AC" + "1" * 32 + "\n"),
    ("api_key", "SK" + "1" * 32 + "\n"),
    ("service_sid", "IS" + "1" * 32 + "\n"),
    ("webhook_signature_header", "X-UserSync-Signature\n"),
    ("full_sync_cron", "*/15 * * * * *"),
    ("full_sync_cron", "0 3 * * * 2030"),
    ("full_sync_cron", "@daily"),
    ("full_sync_cron", "0 0 30 2 *"),
    ("api_base_url", "http://127.0.0.1:4010\n"),
    ("api_base_url", "http://127.0.0.1:99999"),
    ("api_base_url", "ftp://127.0.0.1"),
    ("auth_token", "emulator-auth-token-0123456789abcdef\n"),
    ("auth_token", "\udcff" * 32),  # an environment value that is not UTF-8
    ("api_token", "a-long-enough-admin-token "),
    ("api_token", "a-long-enough-admin-token\udcff"),
    ("webhook_secret", "a-long-enough-webhook\x00secret"),
    ("webhook_timestamp_header", "x-usersync-signature"),  # the other header, so none verifies
]
"""Values one character or one field away from a valid one, each of which passed start-up and
then broke every run (or, for the cron, meant every 15 seconds)."""
ABSURD = ("1e300", "-1e300", "inf", "-inf", "nan", "999999999999")
COMPANIONS: dict[str, dict[str, Any]] = {
    "retry_backoff_base": {"retry_backoff_max": 600},
    "retry_backoff_max": {"retry_backoff_base": 0.001},
    "failure_backoff_base": {"failure_backoff_max": 30 * 86_400},
    "failure_backoff_max": {"failure_backoff_base": 0.001},
    "write_rate": {"write_rate_limit_raised": True, "write_rate_floor": 0.01},
    "write_rate_floor": {"write_rate": 1_000_000, "write_rate_limit_raised": True},
    "incremental_interval": {"full_sync_interval": 30 * 86_400},
    "full_sync_interval": {"incremental_interval": 0.1},
    "delete_grace": {"suspended_role": "suspended"},
}
"""What a bound needs beside it to make a consistent whole (a base under its cap, say)."""


def _numeric_cases(name: str, metadata: list[Any]) -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = [(name, "not-a-number"), *((name, v) for v in ABSURD)]
    for bound in metadata:
        if isinstance(bound, annotated_types.Gt):
            cases.append((name, bound.gt))
        if isinstance(bound, annotated_types.Ge):
            cases.append((name, bound.ge - 1))
        if isinstance(bound, annotated_types.Le):
            cases.append((name, bound.le + 1))
        if isinstance(bound, annotated_types.Lt):
            cases.append((name, bound.lt))
    return cases


def bad_values() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = []
    for name, info in Settings.model_fields.items():
        annotation = info.annotation
        if name in VALIDATED_STRINGS:
            cases.append((name, VALIDATED_STRINGS[name]))
        elif isinstance(annotation, type) and issubclass(annotation, Enum):
            cases.append((name, "no-such-choice"))
        elif annotation is bool:
            cases.append((name, "perhaps"))
        elif annotation in (int, float):
            cases += _numeric_cases(name, info.metadata)
    return cases + NEARLY_RIGHT


def numeric_fields() -> list[str]:
    return [n for n, info in Settings.model_fields.items() if info.annotation in (int, float)]


def bounds(name: str) -> tuple[float | None, float | None]:
    """(lowest, highest) value the field accepts, from its gt/ge/lt/le metadata."""
    low = high = None
    for bound in Settings.model_fields[name].metadata:
        if isinstance(bound, annotated_types.Ge):
            low = bound.ge
        if isinstance(bound, annotated_types.Le):
            high = bound.le
    return low, high


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USERSYNC_SECRETS_DIR", str(tmp_path / "no-secrets"))


def test_every_constrained_field_has_a_bad_value():
    covered = {name for name, _ in bad_values()}
    assert set(Settings.model_fields) - covered == UNCONSTRAINED


@pytest.mark.parametrize(("field", "value"), bad_values(), ids=lambda v: str(v)[:30])
def test_a_bad_value_fails_at_start_naming_the_variable(field: str, value: Any):
    with pytest.raises(ConfigError) as failure:
        load_settings(_env_file=None, **{field: value})
    message = str(failure.value)
    assert _env_name(field) in message
    assert "Traceback" not in message


@pytest.mark.parametrize("field", numeric_fields())
def test_every_number_is_bounded_both_ways(field: str):
    """Inclusive bounds both ways (gt/lt leave "just past the bound" undefined for floats)."""
    low, high = bounds(field)
    assert low is not None, f"{_env_name(field)} has no lower bound"
    assert high is not None, f"{_env_name(field)} has no upper bound"


@pytest.mark.parametrize(
    ("field", "end"), [(f, end) for f in numeric_fields() for end in ("low", "high")]
)
def test_each_bound_of_a_number_loads(field: str, end: str):
    low, high = bounds(field)
    value = low if end == "low" else high
    settings = load_settings(_env_file=None, **{field: value}, **COMPANIONS.get(field, {}))
    assert getattr(settings, field) == value


def _shown(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@pytest.mark.parametrize("field", numeric_fields())
def test_the_readme_gives_each_number_its_range(field: str):
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    name = _env_name(field)
    [row] = [r for r in rows if _variables(r.split(" | ")[0]).count(name)]
    ranges = row.split(" | ")[2].split(" / ")
    low, high = bounds(field)
    assert ranges[_variables(row.split(" | ")[0]).index(name)] == f"{_shown(low)} … {_shown(high)}"


def _variables(cell: str) -> list[str]:
    """`USERSYNC_A` / `_B` names USERSYNC_A and USERSYNC_B; a suffix of two words replaces
    two (`USERSYNC_X_A` / `_Y_B` names USERSYNC_Y_B)."""
    names: list[str] = []
    for found in re.findall(r"`([A-Z_]+)`", cell):
        short = found.startswith("_")
        names.append(names[-1].rsplit("_", found.count("_"))[0] + found if short else found)
    return names


ALSO = re.compile(r" \(or `([A-Z_]+)`\)")
"""`USERSYNC_X` (or `X`): another name the same setting is read from."""


def _configuration_rows() -> list[list[str]]:
    """The cells of each row of the README's settings table."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [row.strip("| ").split(" | ") for row in rows]


def _readme_defaults() -> dict[str, str]:
    """Each variable the table names, with the default it gives (one for all, or one each)."""
    defaults = {}
    for variable, default, *_ in _configuration_rows():
        names = _variables(ALSO.sub("", variable))
        shown = default.split(" / ")
        shown = shown * len(names) if len(shown) == 1 else shown
        for name, value in zip(names, shown, strict=True):
            assert name not in defaults, f"{name} has two rows"
            defaults[name] = value
    return defaults


def _default_shown(field: str) -> str | None:
    """The field's default as the table writes it; None when it has none (any words do)."""
    value = Settings.model_fields[field].default
    if value is None:
        return None
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{_shown(value)}`" if isinstance(value, int | float) else f"`{value}`"


def _field_docstrings() -> dict[str, str]:
    """The docstring under each field of `Settings`, read from its source as pydantic's
    `use_attribute_docstrings` would (left off: it parses the file at every start)."""
    tree = ast.parse(Path(config.__file__).read_text(encoding="utf-8"))
    [body] = [n.body for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings"]
    found = {}
    for field, after in itertools.pairwise(body):
        named = isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
        if named and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            assert isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
            found[field.target.id] = str(after.value.value)
    return found


def test_every_setting_says_what_it_means():
    """Each field's docstring gives its meaning, and its unit if it has one."""
    said = _field_docstrings()
    assert [name for name in Settings.model_fields if not said.get(name, "").strip()] == []


def test_the_readme_table_names_exactly_the_settings():
    assert sorted(_readme_defaults()) == sorted(_env_name(name) for name in Settings.model_fields)


def test_the_readme_table_gives_each_setting_its_default():
    shown = _readme_defaults()
    for name in Settings.model_fields:
        expected, cell = _default_shown(name), shown[_env_name(name)]
        assert cell == expected if expected else not cell.startswith("`"), (name, cell)


def test_each_other_name_in_the_readme_table_is_read():
    """`USERSYNC_REGION` (or `TWILIO_REGION`): both names set the same field."""
    for variable, *_ in _configuration_rows():
        for also in ALSO.findall(variable):
            [name] = _variables(ALSO.sub("", variable))
            field = next(f for f in Settings.model_fields if _env_name(f) == name)
            alias = Settings.model_fields[field].validation_alias
            assert isinstance(alias, AliasChoices) and also in alias.choices, (name, also)


def test_a_dot_env_file_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path):
    (tmp_path / ".env").write_bytes(b"USERSYNC_WRITE_RATE=\xff\n")
    with pytest.raises(ConfigError, match=r"^the \.env file is not UTF-8 text \(byte 21\)$"):
        load_settings()


def test_a_secrets_file_that_is_not_text_is_refused_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "TWILIO_AUTH_TOKEN").write_bytes(b"\xff\xfe")
    monkeypatch.setenv("USERSYNC_SECRETS_DIR", str(secrets))
    with pytest.raises(ConfigError, match=r"^TWILIO_AUTH_TOKEN: its file in the secrets directory"):
        load_settings()
