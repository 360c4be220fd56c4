"""The roles Twilio creates with every new Service, and how each API version names them.

A Conversations Service is a Chat Service under another name (same `IS…` sid), so one set of
roles serves both URL forms: v1 calls the scopes `service`/`conversation`, Chat v2 calls them
`deployment`/`channel` and speaks of channels and members where v1 speaks of conversations and
participants. "service user" is the role a user gets when created without a RoleSid.
"""

from __future__ import annotations

from collections.abc import Callable

from service.emulator.records import Role, RoleScope

DEFAULT_USER_ROLE = "service user"

_SERVICE_USER = ("createConversation", "joinConversation", "editOwnUserInfo")
_SERVICE_ADMIN = (*_SERVICE_USER, "destroyConversation", "editAnyUserInfo")
_CHANNEL_USER = (
    "sendMessage",
    "sendMediaMessage",
    "leaveConversation",
    "editOwnMessage",
    "editOwnMessageAttributes",
    "deleteOwnMessage",
    "editOwnParticipantAttributes",
    "editNotificationLevel",
)
_CHANNEL_ADMIN = (
    *_CHANNEL_USER,
    "addParticipant",
    "removeParticipant",
    "editConversationName",
    "editConversationAttributes",
    "editAnyMessage",
    "editAnyMessageAttributes",
    "deleteAnyMessage",
    "editAnyParticipantAttributes",
)

_DEFAULTS: tuple[tuple[str, RoleScope, tuple[str, ...]], ...] = (
    ("service admin", RoleScope.SERVICE, _SERVICE_ADMIN),
    (DEFAULT_USER_ROLE, RoleScope.SERVICE, _SERVICE_USER),
    ("channel admin", RoleScope.CONVERSATION, _CHANNEL_ADMIN),
    ("channel user", RoleScope.CONVERSATION, _CHANNEL_USER),
)

V1_ROLE_TYPES = {RoleScope.SERVICE: "service", RoleScope.CONVERSATION: "conversation"}
V2_ROLE_TYPES = {RoleScope.SERVICE: "deployment", RoleScope.CONVERSATION: "channel"}


PERMISSIONS = {
    RoleScope.SERVICE: frozenset(_SERVICE_ADMIN),
    RoleScope.CONVERSATION: frozenset(_CHANNEL_ADMIN),
}
"""The permissions a role of each scope may grant (Conversations v1 names)."""


def default_roles(service_sid: str, *, new_sid: Callable[[], str], created: str) -> list[Role]:
    return [
        Role(new_sid(), service_sid, name, scope, permissions, created)
        for name, scope, permissions in _DEFAULTS
    ]


def scope_named(value: str | None, *, chat: bool) -> RoleScope | None:
    """The scope a `Type` names in this API version (`service`/`conversation`, Chat v2
    `deployment`/`channel`); None for anything else."""
    names = V2_ROLE_TYPES if chat else V1_ROLE_TYPES
    return next((scope for scope, name in names.items() if name == value), None)


def stored_permission(permission: str, *, chat: bool) -> str:
    """The v1 name a permission of this API version is stored under (`leaveChannel` ->
    `leaveConversation` for Chat v2); unknown names are returned as given."""
    return _FROM_CHAT.get(permission, permission) if chat else permission


def chat_permission(permission: str) -> str:
    """The Chat v2 name of a Conversations permission (`leaveConversation` -> `leaveChannel`)."""
    return permission.replace("Conversation", "Channel").replace("Participant", "Member")


_FROM_CHAT = {chat_permission(name): name for names in PERMISSIONS.values() for name in names}
