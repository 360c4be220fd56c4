"""`user-sync` as a real process with the URLs operators write (the symptom was that every
command died with `TypeError: connect() got an unexpected keyword argument 'sslmode'`)."""

from __future__ import annotations

import os

from tests.e2e.test_cli import run_cli
from tests.fixtures.tls_postgres import PASSWORD, TlsServer


def url_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USERSYNC_", "TWILIO_"))}
    return env | {
        "USERSYNC_DATABASE_URL": url,
        "USERSYNC_LOG_FORMAT": "json",
        "USERSYNC_SECRETS_DIR": "/nonexistent",
    }


async def test_migrate_over_verify_full_with_a_password(tls_server: TlsServer):
    query = f"sslmode=verify-full&sslrootcert={tls_server.ca}&application_name=ops"
    url = tls_server.password_url(query).replace("@127.0.0.1:", "@localhost:")
    code, out, err = await run_cli("migrate", env=url_env(url))
    assert (code, err) == (0, "")
    assert "database at revision" in out


async def test_an_unknown_parameter_exits_2_naming_it_and_not_the_password(
    tls_server: TlsServer,
):
    url = tls_server.password_url("sslmode=require&ssl_mode=verify-full")
    code, out, err = await run_cli("migrate", env=url_env(url))
    assert code == 2
    assert "USERSYNC_DATABASE_URL: unsupported parameter 'ssl_mode'" in err
    assert PASSWORD[:5] not in out + err


async def test_a_host_name_the_certificate_does_not_name_fails_saying_so(tls_server: TlsServer):
    url = tls_server.url(f"sslmode=verify-full&sslrootcert={tls_server.ca}", host="127.0.0.2")
    code, _, err = await run_cli("migrate", env=url_env(url))
    assert code != 0
    assert "certificate is not valid for '127.0.0.2'" in err
