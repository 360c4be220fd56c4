"""Reading the form body of a write, refusing in Twilio's shape a body that cannot be read.

aiohttp raises `ValueError` for a multipart body without a (usable) boundary and `LookupError`
for a charset Python does not know; either is the client's mistake, so it gets Twilio's 400
with code 20001 naming the Content-Type, like any other bad parameter.
"""

from __future__ import annotations

from aiohttp import web
from multidict import MultiDictProxy

from service.emulator import errors

Form = MultiDictProxy[str | bytes | bytearray | web.FileField]


async def form_fields(request: web.Request) -> Form:
    try:
        return await request.post()
    except (ValueError, LookupError) as e:
        content_type = request.headers.get("Content-Type", "")
        message = f"The body cannot be read as Content-Type {content_type!r}: {e}"
        raise errors.invalid_parameter(message) from None


def text_field(form: Form, name: str) -> str | None:
    """The value of a plain text field; None if absent (or sent as a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else None
