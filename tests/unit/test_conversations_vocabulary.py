"""The client's pure parts: error classes, error bodies, Retry-After, backoff, wire models."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.conversations import errors
from service.conversations.endpoints import ApiFlavor, Endpoints
from service.conversations.retry import RETRY_AFTER_CEILING, CallRetry, parse_retry_after
from service.conversations.schemas import UserPage, UserWire
from service.domain.users import RemoteUser


def twilio_body(status: int, code: int, message: str = "m") -> str:
    return (
        f'{{"code": {code}, "message": "{message}", '
        f'"more_info": "https://www.twilio.com/docs/errors/{code}", "status": {status}}}'
    )


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (404, 20404, errors.NotFound),
        (409, 50201, errors.AlreadyExists),
        (409, 20409, errors.BadRequest),
        (409, 20001, errors.BadRequest),
        (400, 50201, errors.BadRequest),
        (400, 50304, errors.InvalidAttributes),
        (400, 50303, errors.InvalidAttributes),
        (400, 50100, errors.RoleNotFound),
        (400, 50204, errors.InvalidIdentity),
        (400, 50207, errors.InvalidIdentity),
        (401, 20003, errors.Unauthorized),
        (403, 20003, errors.Unauthorized),
        (429, 20429, errors.RateLimited),
        (429, 50063, errors.RateLimited),
        (400, 50074, errors.RateLimited),
        (400, 20001, errors.BadRequest),
        (405, 20004, errors.BadRequest),
        (500, 20500, errors.ServerError),
        (503, 20503, errors.ServerError),
        (502, 50201, errors.ServerError),
        (302, 0, errors.ApiError),
    ],
)
def test_classifies_by_status_and_twilio_code(
    status: int, code: int, expected: type[errors.ApiError]
) -> None:
    error = errors.error_from_response(status, twilio_body(status, code))
    assert type(error) is expected
    assert (error.status, error.code, error.message) == (status, code, "m")
    assert error.more_info == f"https://www.twilio.com/docs/errors/{code}"


@pytest.mark.parametrize(
    ("cls", "transient", "ambiguous"),
    [
        (errors.ServerError, True, True),
        (errors.RateLimited, True, False),
        (errors.NotFound, False, False),
        (errors.BadRequest, False, False),
        (errors.Unauthorized, False, False),
    ],
)
def test_knows_which_answers_are_transient_and_which_ambiguous(
    cls: type[errors.ApiError], transient: bool, ambiguous: bool
) -> None:
    error = cls(500, None, "m")
    assert (error.transient, error.ambiguous) == (transient, ambiguous)


def test_transport_errors_are_transient_and_ambiguous_once_sent() -> None:
    assert errors.ConnectError("x").transient and not errors.ConnectError("x").ambiguous
    assert errors.ConnectionLost("x").ambiguous
    assert errors.RequestTimeout("x", sent=True).ambiguous
    assert not errors.RequestTimeout("x", sent=False).ambiguous


@pytest.mark.parametrize(
    "body",
    [
        "<html><body>Bad gateway</body></html>",
        "",
        "[1, 2]",
        "null",
        '{"message": 7}',
        "[" * 100_000,
        '{"code": "\u00b2", "message": "odd"}',
        '{"code": "' + "9" * 5000 + '", "message": "long"}',
    ],
)
def test_reads_any_error_body_without_failing(body: str) -> None:
    error = errors.error_from_response(502, body)
    assert type(error) is errors.ServerError
    assert error.code is None
    assert error.message


def test_truncates_a_huge_body_in_the_message() -> None:
    error = errors.error_from_response(500, "x" * 100_000)
    assert len(error.message) <= errors.MESSAGE_LIMIT
    assert len(str(error)) < errors.MESSAGE_LIMIT + 100


def test_accepts_a_code_sent_as_text() -> None:
    error = errors.error_from_response(404, '{"code": "20404", "message": "gone"}')
    assert (type(error), error.code, str(error)) == (
        errors.NotFound,
        20404,
        "HTTP 404 (Twilio error 20404): gone",
    )


def test_marks_an_answer_that_followed_an_ambiguous_attempt() -> None:
    error = errors.error_from_response(409, twilio_body(409, 50201), after_retry=True)
    assert isinstance(error, errors.AlreadyExists) and error.after_retry
    assert "ambiguous" in str(error)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        ("0", 0.0),
        (" 2.5 ", 2.5),
        (None, None),
        ("", None),
        ("-1", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    ],
)
def test_parses_retry_after_seconds_and_dates(header: str | None, seconds: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == seconds


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    top = CallRetry(backoff_base=0.5, backoff_max=4.0, jitter=lambda: 0.999999)
    assert [round(top.delay(n), 3) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    bottom = CallRetry(backoff_base=0.5, backoff_max=4.0, jitter=lambda: 0.0)
    assert bottom.delay(3) == 0.0


def test_retry_after_is_a_floor_with_a_ceiling() -> None:
    policy = CallRetry(backoff_base=0.5, backoff_max=4.0, jitter=lambda: 0.5)
    assert policy.delay(0, retry_after=10) == 10
    assert policy.delay(5, retry_after=0) == 2.0
    assert policy.delay(0, retry_after=10**9) == RETRY_AFTER_CEILING


def test_refuses_a_nonsensical_policy() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        CallRetry(max_retries=-1)
    with pytest.raises(ValueError, match="backoff_base"):
        CallRetry(backoff_base=2, backoff_max=1)


def test_reads_both_dialects_and_null_attributes() -> None:
    v1 = UserWire.model_validate_json(
        '{"sid": "US1", "identity": "a", "chat_service_sid": "IS1", "attributes": null,'
        ' "friendly_name": null, "role_sid": "RL1", "is_online": null, "links": {}}'
    )
    v2 = UserWire.model_validate_json(
        '{"sid": "US2", "identity": "b", "service_sid": "IS2", "attributes": "{\\"k\\": 1}",'
        ' "friendly_name": "B", "role_sid": null, "joined_channels_count": 3}'
    )
    assert (v1.service, v2.service) == ("IS1", "IS2")
    assert v1.to_domain() == RemoteUser("US1", "a", None, "RL1", "{}")  # type: ignore[arg-type]
    assert v2.to_domain() == RemoteUser("US2", "b", "B", None, '{"k": 1}')  # type: ignore[arg-type]


def test_reads_a_page_with_or_without_a_next_page() -> None:
    page = UserPage.model_validate_json(
        '{"users": [], "meta": {"page": 0, "page_size": 50, "key": "users",'
        ' "next_page_url": null, "url": "u", "first_page_url": "f", "previous_page_url": null}}'
    )
    assert page.users == [] and page.meta.next_page_url is None


@pytest.mark.parametrize(
    ("api", "service_sid", "users", "roles"),
    [
        (ApiFlavor.CONVERSATIONS_V1, None, "/v1/Users", "/v1/Roles?PageSize=50"),
        (
            ApiFlavor.CONVERSATIONS_V1,
            "IS1",
            "/v1/Services/IS1/Users",
            "/v1/Services/IS1/Roles?PageSize=50",
        ),
        (ApiFlavor.CHAT_V2, "IS1", "/v2/Services/IS1/Users", "/v2/Services/IS1/Roles?PageSize=100"),
    ],
)
def test_builds_the_three_url_forms(
    api: ApiFlavor, service_sid: str | None, users: str, roles: str
) -> None:
    endpoints = Endpoints("http://h:1/", api, service_sid)
    assert str(endpoints.users()) == "http://h:1" + users
    assert str(endpoints.roles_first_page()) == "http://h:1" + roles
    assert endpoints.user("a b/c?d#e%f+g").raw_path.endswith("/Users/a%20b%2Fc%3Fd%23e%25f%2Bg")


def test_refuses_chat_v2_without_a_service_and_a_relative_base_url() -> None:
    with pytest.raises(ValueError, match="service sid"):
        Endpoints("http://h", ApiFlavor.CHAT_V2, None)
    with pytest.raises(ValueError, match="absolute"):
        Endpoints("h:1/x", ApiFlavor.CONVERSATIONS_V1, None)


@pytest.mark.parametrize("service_sid", [None, "IS1"])
def test_the_configuration_is_one_account_level_url_whatever_the_service(
    service_sid: str | None,
) -> None:
    endpoints = Endpoints("http://h:1/", ApiFlavor.CONVERSATIONS_V1, service_sid)
    assert str(endpoints.configuration()) == "http://h:1/v1/Configuration"


def test_chat_v2_has_no_configuration_to_read() -> None:
    with pytest.raises(ValueError, match="no account Configuration"):
        Endpoints("http://h", ApiFlavor.CHAT_V2, "IS1").configuration()
