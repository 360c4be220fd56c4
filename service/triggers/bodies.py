"""The JSON bodies the admin API reads, as typed models: one source for the checks and for
the schemas `/openapi.json` publishes, so the two cannot drift apart.

Strict: `"true"` is not a boolean and `1` is not an id. A refusal names the field and says
why, in pydantic's words (`dry_run: Input should be a valid boolean`). A body sent as another
media type than JSON (`text/plain`, a form, multipart) is refused 415 before it is read; a
request without a `Content-Type` is read as JSON.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from aiohttp import hdrs, web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from service.triggers.responses import InvalidRequest, problem, storable

JSON = "application/json"
EventType = Literal["user.created", "user.updated", "user.deleted"]
MAX_ID_LENGTH = 256


def _storable(value: str) -> str:
    if not storable(value):
        raise ValueError("contains a NUL character or a lone surrogate")
    return value


class SyncBody(BaseModel):
    """`POST /sync`: every field optional; an empty body is `{}`."""

    model_config = ConfigDict(strict=True, extra="forbid", title="SyncRequest")

    scope: Literal["full", "incremental"] = "full"
    dry_run: bool = False
    allow_deletes: bool = False
    allow_writes: bool = False


class EventBody(BaseModel):
    """One event of `POST /events`; other fields are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", title="Event")

    type: EventType
    id: Annotated[
        str,
        Field(max_length=MAX_ID_LENGTH, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$"),
        AfterValidator(_storable),
    ]
    """A non-blank internal id, without NUL characters or lone surrogates."""


Body = TypeVar("Body", bound=BaseModel)
PLAINER = {"string_pattern_mismatch": "must hold a non-blank character and no NUL character"}
"""What a refusal says instead of pydantic's words, where those quote a regular expression."""


def parsed(model: type[Body], body: Any, *, where: str) -> Body:
    """The body as `model`, or InvalidRequest naming where, the field and the problem."""
    try:
        return model.model_validate(body)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"])
        first["msg"] = PLAINER.get(first["type"], first["msg"])
        raise InvalidRequest(
            f"{where}: {field}: {first['msg']}" if field else f"{where}: {first['msg']}"
        ) from None


def schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema (draft 2020-12, as OpenAPI 3.1 takes it)."""
    return model.model_json_schema()


def unsupported_media(request: web.Request) -> web.Response | None:
    """415 in the API's error shape when a body comes as anything but `application/json`
    (parameters such as `charset` are fine); None when the body may be read as JSON."""
    if hdrs.CONTENT_TYPE not in request.headers or not request.body_exists:
        return None
    if request.content_type == JSON:
        return None
    return problem(
        415,
        "unsupported_media_type",
        f"the body must be sent as {JSON}, not {request.content_type or 'an empty type'}",
    )
