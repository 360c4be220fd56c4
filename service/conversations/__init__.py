"""The client of the Twilio Users API (Conversations v1 or Chat v2) and its failure vocabulary.

Import from here: `ConversationsClient`, the pacing (`WriteLimiter`, `Adaptive`, `urgent`)
and retry (`CallRetry`) it is built with, its call accounting (`CallStats`, `CallEvent`) and
every exception it raises.
"""

from service.conversations.adaptive import Adaptive
from service.conversations.client import UNSET, ConversationsClient, Unset
from service.conversations.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    ConnectError,
    ConnectionLost,
    ConversationsError,
    InvalidAttributes,
    InvalidIdentity,
    InvalidResponse,
    NotFound,
    RateLimited,
    RequestTimeout,
    RoleNotFound,
    ServerError,
    TransportError,
    Unauthorized,
    error_from_response,
)
from service.conversations.ratelimit import WriteLimiter, urgent
from service.conversations.retry import CallRetry
from service.conversations.stats import CallEvent, CallStats, Observer

__all__ = [
    "UNSET",
    "Adaptive",
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "CallEvent",
    "CallRetry",
    "CallStats",
    "ConnectError",
    "ConnectionLost",
    "ConversationsClient",
    "ConversationsError",
    "InvalidAttributes",
    "InvalidIdentity",
    "InvalidResponse",
    "NotFound",
    "Observer",
    "RateLimited",
    "RequestTimeout",
    "RoleNotFound",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "Unset",
    "WriteLimiter",
    "error_from_response",
    "urgent",
]
