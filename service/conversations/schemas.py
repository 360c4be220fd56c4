"""Wire models: the JSON the Users API sends, checked at the edge and turned into domain values.

Only the fields the service uses are declared; everything else in a response is ignored, so a
field Twilio adds tomorrow breaks nothing. The two dialects differ in small ways this module
absorbs: Conversations v1 names the Service `chat_service_sid`, Chat v2 `service_sid`; both
send `attributes` as a JSON *string* that may be null (read as "{}", what Twilio means by it).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from service.domain.users import RemoteUser, Role, RoleSid, UserSid

EMPTY_ATTRIBUTES = "{}"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class UserWire(_Wire):
    sid: str
    identity: str
    friendly_name: str | None = None
    role_sid: str | None = None
    attributes: str | None = None
    chat_service_sid: str | None = None
    """Conversations v1."""
    service_sid: str | None = None
    """Chat v2."""

    @property
    def service(self) -> str | None:
        return self.chat_service_sid or self.service_sid

    def to_domain(self) -> RemoteUser:
        return RemoteUser(
            sid=UserSid(self.sid),
            identity=self.identity,
            friendly_name=self.friendly_name,
            role_sid=RoleSid(self.role_sid) if self.role_sid else None,
            attributes=self.attributes if self.attributes is not None else EMPTY_ATTRIBUTES,
        )


class RoleWire(_Wire):
    sid: str
    friendly_name: str
    type: str

    def to_domain(self) -> Role:
        return Role(sid=RoleSid(self.sid), friendly_name=self.friendly_name, type=self.type)


class ConfigurationWire(_Wire):
    """The account's Conversations Configuration (`GET /v1/Configuration`)."""

    default_chat_service_sid: str | None = Field(default=None, pattern=r"^IS[0-9a-fA-F]{32}$")
    """The Service `/v1/Users` means; the spec allows null (an account with none)."""


class PageMeta(_Wire):
    page: int | None = None
    page_size: int | None = None
    key: str | None = None
    next_page_url: str | None = None


class Page(_Wire):
    meta: PageMeta


class UserPage(Page):
    users: list[UserWire]


class RolePage(Page):
    roles: list[RoleWire]
