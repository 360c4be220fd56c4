"""How a stored user or role looks on the wire, for each of the three URL forms.

Field sets are exactly the spec's schemas: `conversations.v1.user` (`/v1/Users`),
`conversations.v1.service.service_user` (`/v1/Services/{sid}/Users`) and `chat.v2.service.user`
(`/v2/Services/{sid}/Users`: `service_sid` instead of `chat_service_sid`, plus
`joined_channels_count`, links `user_channels`/`user_bindings`), and the matching role schemas.
URLs are absolute, built from the origin the request came to.

`is_online` and `is_notifiable` are always null: they are null whenever the Service's
reachability indicator is off, which is a new Service's default, and always null in lists.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from service.emulator.records import Role, User
from service.emulator.roles import V1_ROLE_TYPES, V2_ROLE_TYPES, chat_permission


class UrlForm(StrEnum):
    DEFAULT_SERVICE = "/v1"
    """`/v1/Users`: the account's default Conversations Service."""
    CONVERSATIONS = "/v1/Services/{service_sid}"
    CHAT = "/v2/Services/{service_sid}"

    def prefix(self, service_sid: str) -> str:
        return self.value.format(service_sid=service_sid)

    @property
    def max_page_size(self) -> int:
        return 100 if self is UrlForm.CHAT else 50


def render_user(user: User, *, form: UrlForm, origin: str, account_sid: str) -> dict[str, Any]:
    url = f"{origin}{form.prefix(user.service_sid)}/Users/{user.sid}"
    body: dict[str, Any] = {
        "sid": user.sid,
        "account_sid": account_sid,
        "role_sid": user.role_sid,
        "identity": user.identity,
        "friendly_name": user.friendly_name,
        "attributes": user.attributes,
        "is_online": None,
        "is_notifiable": None,
        "date_created": user.created,
        "date_updated": user.updated,
        "url": url,
    }
    if form is UrlForm.CHAT:
        body["service_sid"] = user.service_sid
        body["joined_channels_count"] = 0
        body["links"] = {"user_channels": f"{url}/Channels", "user_bindings": f"{url}/Bindings"}
    else:
        body["chat_service_sid"] = user.service_sid
        body["links"] = {"user_conversations": f"{url}/Conversations"}
    return body


def render_role(role: Role, *, form: UrlForm, origin: str, account_sid: str) -> dict[str, Any]:
    chat = form is UrlForm.CHAT
    permissions = [chat_permission(p) for p in role.permissions] if chat else list(role.permissions)
    body: dict[str, Any] = {
        "sid": role.sid,
        "account_sid": account_sid,
        "friendly_name": role.friendly_name,
        "type": (V2_ROLE_TYPES if chat else V1_ROLE_TYPES)[role.scope],
        "permissions": permissions,
        "date_created": role.created,
        "date_updated": role.updated or role.created,
        "url": f"{origin}{form.prefix(role.service_sid)}/Roles/{role.sid}",
    }
    body["service_sid" if chat else "chat_service_sid"] = role.service_sid
    return body
