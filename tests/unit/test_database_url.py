"""Database URLs read as libpq reads them: every supported parameter, nonsense refused by name.

No I/O: what the URL asks for is checked here; that the driver then connects that way (TLS,
sockets, timeouts, session settings) is checked against real servers in
tests/integration/test_database_urls.py.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.config import ConfigError, load_settings
from service.db.engine import connect_args, connect_kwargs
from service.libpq.tls import ssl_argument
from service.libpq.url import (
    ASYNC_DRIVER,
    MAX_PORT,
    DatabaseUrl,
    DatabaseUrlError,
    DriverUrl,
    SslMode,
    Tls,
    _check_authority,
    parse_database_url,
    shown,
    with_database,
)

PASSWORD = "pä@ss:w/rd%+1"
ENCODED = "p%C3%A4%40ss%3Aw%2Frd%25%2B1"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@db:6543/app",
        "postgres://u@db:6543/app",
    ],
)
def test_every_scheme_psql_takes_names_the_asyncpg_dialect(url: str):
    parsed = parse_database_url(url).url
    assert (parsed.drivername, parsed.host, parsed.port, parsed.database) == (
        "postgresql+asyncpg",
        "db",
        6543,
        "app",
    )


def test_a_percent_encoded_password_is_decoded_exactly():
    assert parse_database_url(f"postgresql://u:{ENCODED}@db/app").url.password == PASSWORD


def test_a_socket_directory_in_host_stays_for_the_driver():
    parsed = parse_database_url("postgresql://u@/app?host=/var/run/postgresql")
    assert parsed.url.host is None
    assert dict(parsed.url.query) == {"host": "/var/run/postgresql"}
    assert parsed.dsn() == "postgresql://u@/app?host=%2Fvar%2Frun%2Fpostgresql"


def test_user_password_and_dbname_may_come_in_the_query_as_libpq_allows():
    parsed = parse_database_url(f"postgresql://db?user=u&password={ENCODED}&dbname=app").url
    assert (parsed.username, parsed.password, parsed.database, dict(parsed.query)) == (
        "u",
        PASSWORD,
        "app",
        {},
    )


@pytest.mark.parametrize("mode", list(SslMode))
def test_every_sslmode_is_read(mode: SslMode):
    assert parse_database_url(f"postgresql://db/app?sslmode={mode}").tls.mode is mode


def test_without_sslmode_the_mode_is_libpqs_default_prefer():
    assert parse_database_url("postgresql://db/app").tls == Tls(mode=SslMode.PREFER)


def test_tls_files_are_read_as_paths():
    tls = parse_database_url(
        "postgresql://db/app?sslmode=verify-full&sslrootcert=/etc/ca.pem"
        "&sslcert=/etc/me.crt&sslkey=/etc/me.key"
    ).tls
    assert (tls.root_cert, tls.cert, tls.key) == (
        Path("/etc/ca.pem"),
        Path("/etc/me.crt"),
        Path("/etc/me.key"),
    )


@pytest.mark.parametrize(
    ("value", "seconds"), [("10", 10.0), ("1", 2.0), ("0", math.inf), ("-5", math.inf)]
)
def test_connect_timeout_follows_libpqs_rules(value: str, seconds: float):
    assert parse_database_url(f"postgresql://db/app?connect_timeout={value}").connect_timeout == (
        seconds
    )


def test_application_name_and_options_become_session_settings_verbatim():
    parsed = parse_database_url(
        "postgresql://db/app?application_name=hr-sync&options=-c%20search_path%3Dhr%2Bx"
    )
    assert parsed.server_settings == {
        "application_name": "hr-sync",
        "options": "-c search_path=hr+x",
    }


def test_the_urls_application_name_wins_over_the_services_default():
    parsed = parse_database_url("postgresql://db/app?application_name=hr-sync")
    arguments = connect_args(parsed, application_name="user-sync", server_settings={"a": "1"})
    assert arguments["server_settings"] == {"application_name": "hr-sync", "a": "1"}


def test_the_urls_connect_timeout_wins_over_the_callers():
    parsed = parse_database_url("postgresql://db/app?connect_timeout=7")
    assert connect_args(parsed, connect_timeout=3)["timeout"] == 7.0
    assert (
        connect_args(parse_database_url("postgresql://db/app"), connect_timeout=3)["timeout"] == 3
    )


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_the_fallback_modes_are_left_to_the_driver_by_name(mode: str):
    assert connect_kwargs(f"postgresql://db/app?sslmode={mode}")["ssl"] == mode


def test_require_without_a_root_certificate_encrypts_without_checking(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.postgresql/root.crt
    context = ssl_argument(Tls(mode=SslMode.REQUIRE))
    assert not isinstance(context, str)
    assert (context.verify_mode.name, context.check_hostname) == ("CERT_NONE", False)


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("postgresql://db/app?sslmod=require", "'sslmod'"),
        ("postgresql://db/app?target_session_attrs=any", "'target_session_attrs'"),
        ("postgresql://db/app?sslmode=sometimes", "sslmode must be one of"),
        (
            "postgresql://db/app?sslmode=require&sslmode=disable",
            "'sslmode' is given more than once",
        ),
        ("postgresql://db/app?connect_timeout=soon", "connect_timeout must be a whole number"),
        ("postgresql://db/app?connect_timeout=2.5", "connect_timeout must be a whole number"),
        ("postgresql://db/app?sslmode", "'sslmode' in the URL has no value"),
        ("postgresql://db/app?sslcert=/x.crt", "sslcert and sslkey need sslmode=require"),
        ("mysql://db/app", "must start with postgresql:// or postgres://"),
        ("postgresql+asyncpg://db/app", "must start with postgresql:// or postgres://"),
        ("postgresql://db:99999/app", "invalid port number '99999'"),
        ("postgresql://db:0/app", "invalid port number '0'"),
        ("postgresql://db:1,db:70000/app", "invalid port number '70000'"),
        ("postgresql://db/app?port=abc", "invalid port number 'abc'"),
        ("postgresql://db/app?host=a,b&port=1,99999", "invalid port number '99999'"),
        ("postgresql://db/app?host=a,b&port=1,2,3", "3 ports given for 2 hosts"),
        ("postgresql://db/ap%ZZp", "invalid percent-encoded token in the database name"),
        ("postgresql://db/app?options=%2", "invalid percent-encoded token in the value of"),
        ("postgresql://db:port/app", "cannot be parsed"),
        ("postgresql://db/app?sslmode=verify-full&sslrootcert=/no/ca.pem", "sslrootcert: file"),
        (
            "postgresql://db/app?sslmode=require&sslcert=/no/me.crt&sslkey=/no/me.key",
            "sslcert: file",
        ),
    ],
)
def test_a_bad_url_fails_at_start_naming_the_parameter_and_never_the_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, parameter: str
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USERSYNC_SECRETS_DIR", str(tmp_path / "no-secrets"))
    with_password = url.replace("://db", f"://u:{ENCODED}@db", 1)
    monkeypatch.setenv("USERSYNC_DATABASE_URL", with_password)
    with pytest.raises(ConfigError) as failure:
        load_settings()
    message = str(failure.value)
    assert "USERSYNC_DATABASE_URL" in message
    assert parameter in message
    assert PASSWORD not in message
    assert ENCODED not in message


@pytest.mark.parametrize("variable", ["USERSYNC_DATABASE_URL", "USERSYNC_LEADER_DATABASE_URL"])
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://u:p%ZZss@db/app", "invalid percent-encoded token in the password"),
        ("postgresql://u:p%00ss@db/app", "invalid percent-encoded token in the password"),
        ("postgresql://u%G1:pw@db/app", "invalid percent-encoded token in the user"),
        ("postgresql://u@db:99999/app", "invalid port number '99999'"),
        ("postgresql://u@db/app?port=abc", "invalid port number 'abc'"),
    ],
)
def test_both_urls_refuse_what_psql_refuses_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, url: str, problem: str
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USERSYNC_SECRETS_DIR", str(tmp_path / "no-secrets"))
    monkeypatch.setenv("USERSYNC_DATABASE_URL", "postgresql://u@db/app")
    monkeypatch.setenv(variable, url)
    with pytest.raises(ConfigError) as failure:
        load_settings()
    message = str(failure.value)
    assert f"{variable}: {problem}" in message
    assert "p%ZZss" not in message
    assert "p%00ss" not in message


@pytest.mark.parametrize(
    ("url", "hosts", "ports"),
    [
        ("postgresql://u:pw@127.0.0.1:1,127.0.0.1:5432/db", "127.0.0.1,127.0.0.1", "1,5432"),
        ("postgresql://u@a,b:5433/db", "a,b", "5432,5433"),
        ("postgresql://u@[::1]:6000,[::2]/db", "::1,::2", "6000,5432"),
        ("postgresql://u@%2Fvar%2Frun%2Fpostgresql:5433/db", "/var/run/postgresql", "5433"),
        ("postgresql://u@%2Fvar%2Frun%2Fpostgresql/db", "/var/run/postgresql", None),
        ("postgresql://u@/db?host=a,b&port=1", "a,b", "1,1"),
    ],
)
def test_several_hosts_or_a_socket_in_the_authority_become_the_query_form(
    url: str, hosts: str, ports: str | None
):
    parsed = parse_database_url(url).url
    assert (parsed.host, parsed.port, parsed.database) == (None, None, "db")
    assert (parsed.query.get("host"), parsed.query.get("port")) == (hosts, ports)


def test_verify_modes_need_a_root_certificate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DatabaseUrlError, match="sslmode=verify-ca needs sslrootcert"):
        ssl_argument(Tls(mode=SslMode.VERIFY_CA))


def test_a_password_in_the_query_is_hidden_in_the_repr():
    parsed = parse_database_url(f"postgresql://db/app?user=u&password={ENCODED}")
    assert PASSWORD not in repr(parsed)
    assert ENCODED not in repr(parsed)
    assert "***" in repr(parsed)


def test_with_database_keeps_the_query_as_written():
    url = "postgresql://u@db/postgres?sslmode=require&options=-c%20a%3Db"
    assert with_database(url, "other") == (
        "postgresql://u@db/other?sslmode=require&options=-c%20a%3Db"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"postgresql://u:{ENCODED}@a:1,b:2/db?password=x&sslmode=require",
            "postgresql://u:***@a:1,b:2/db?sslmode=require",
        ),
        ("postgresql://u@%2Ftmp:5432/db", "postgresql://u@%2Ftmp:5432/db"),
        ("postgres://db", "postgres://db"),
    ],
)
def test_shown_hides_the_password_of_every_form(url: str, expected: str):
    assert shown(url) == expected


def test_with_database_keeps_several_hosts():
    assert with_database("postgresql://u@a:1,b:2/postgres?sslmode=require", "x y") == (
        "postgresql://u@a:1,b:2/x%20y?sslmode=require"
    )


AUTHORITY_CHARACTERS = st.sampled_from(list("ab1:9@[]/?%_+- 0"))


@settings(max_examples=3000, deadline=None)
@given(st.text(AUTHORITY_CHARACTERS, max_size=16))
def test_the_settings_read_port_and_password_as_sqlalchemy_does_without_loading_it(tail: str):
    """The settings check a URL without SQLAlchemy (a quarter second to import), so what its
    parser reads as the port must be read the same way here: a URL the settings took never
    fails later, when the engine is made or a connection looks its host up."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    text = f"{ASYNC_DRIVER}://{tail}"
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError):
        with pytest.raises(DatabaseUrlError):
            _check_authority(text)
        return
    read = DatabaseUrl(DriverUrl(text, parameters={}, query={}))
    assert read.password == parsed.password  # what the logs hide, read without SQLAlchemy
    try:
        _check_authority(text)
    except DatabaseUrlError:
        return  # refusing more than SQLAlchemy is allowed (libpq's rules)
    assert parsed.port is None or 1 <= parsed.port <= MAX_PORT
    assert parsed.host is None or parsed.host.startswith("/") or parsed.host.encode("idna")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u@,db/app", "an empty host in the list of hosts"),
        ("postgresql://u@db:5432,,db2/app", "an empty host in the list of hosts"),
        ("postgresql://u@db/app?host=,db2", "an empty host in the list of hosts"),
        ("postgresql://u@a..b:5432/app", "the host name 'a..b' in the URL is not valid"),
        ("postgresql://u@db/app?host=a..b", "the host name 'a..b' in the URL is not valid"),
        (f"postgresql://u@{'x' * 64}.example/app", "is not valid"),
        ("postgresql://u@db:1_000/app", "invalid port number '1_000'"),
        ("postgresql://u@db/app?port=5_432", "invalid port number '5_432'"),
        ("postgresql://u@db:\u0665\u0664\u0663\u0662/app", "invalid port number"),
        ("postgresql://u@db/app?connect_timeout=1_0", "connect_timeout must be a whole number"),
        (f"postgresql://u@db/app?connect_timeout=1{'0' * 400}", "at most 2147483647 seconds"),
    ],
)
def test_what_would_fail_later_is_refused_with_the_settings(url: str, message: str):
    """Found by an adversary: each of these passed the settings and failed when a connection
    was made, as "a bug of user-sync" with a traceback (or, for the timeout, at once with one);
    psql refuses them too (an empty host in a list means the default socket to psql)."""
    with pytest.raises(DatabaseUrlError, match=re.escape(message)):
        parse_database_url(url)


def test_a_port_as_libpq_reads_it_blanks_and_sign_included():
    for port in ("5432", "+5432", " 5432", "05432"):
        assert parse_database_url(f"postgresql://u@db:{port}/app").url.port == 5432


def test_reading_the_settings_does_not_load_sqlalchemy():
    code = (
        "import sys; from service.config import load_settings; import service.logs;"
        " from service.logs import configure_logging; configure_logging(load_settings());"
        " print(sorted(m for m in sys.modules if m.startswith('sqlalchemy')))"
    )
    env = {
        "PATH": os.defpath,
        "USERSYNC_DATABASE_URL": "postgresql://u:p@db:6543/app?sslmode=require",
    }
    env |= {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "t" * 32}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("password", ["s?cret99", "s?cret99=1", "s&c,ret99", "se:cr#et"])
def test_a_password_is_read_up_to_the_first_at_sign_as_libpq_reads_it(password: str):
    """Found by an adversary: the URL was cut at its first `?` before the password was read,
    so psql's `postgresql://u:s?cret99@db/app` was refused, naming the password's tail as a
    parameter in the message."""
    url = f"postgresql://u:{password}@db:6543/app?sslmode=require"
    parsed = parse_database_url(url)

    assert (parsed.password, parsed.url.password) == (password, password)
    assert (parsed.url.host, parsed.url.port, parsed.url.database) == ("db", 6543, "app")
    assert parsed.tls.mode is SslMode.REQUIRE
    assert shown(url) == "postgresql://u:***@db:6543/app?sslmode=require"
    assert with_database(url, "other") == f"postgresql://u:{password}@db:6543/other?sslmode=require"


def test_a_second_at_sign_is_refused_without_showing_what_follows_the_first():
    with pytest.raises(DatabaseUrlError, match="a second '@'") as refused:
        parse_database_url("postgresql://u:s@cret99@127.0.0.1:5432/app")
    assert "cret99" not in str(refused.value)
