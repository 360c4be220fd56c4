"""Twilio's Regions and Edge Locations: which API host a region and an edge name.

Twilio's hosts are `{product}.{edge}.{region}.twilio.com` (`conversations.dublin.ie1.twilio.com`);
without either, `{product}.twilio.com`, which Twilio processes in us1. The two-part form
`{product}.{region}.twilio.com` (what twilio-python's `get_hostname` builds from a region alone)
stopped working on 2026-04-28 for every region but us1, so a region given without an edge is
given the edge Twilio documents for it (as twilio-java does since its regional-processing change),
and an edge without a region is in us1 (as every Twilio library does). The lists are Twilio's
documented ones (Global Infrastructure: regions, edge locations, legacy region IDs); a value
outside them is refused at start rather than becoming a host that does not resolve.

Pure: no I/O, no settings; `service.config` validates with it and derives the base URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ApiFlavor(StrEnum):
    """Which dialect of the Users API to speak (`USERSYNC_API`); its product names the host."""

    CONVERSATIONS_V1 = "conversations-v1"
    CHAT_V2 = "chat-v2"


DEFAULT_REGION = "us1"
REGION_EDGES = {"us1": "ashburn", "ie1": "dublin", "au1": "sydney", "jp1": "tokyo"}
"""Twilio's processing regions and the edge each is documented with (its default edge)."""
PUBLIC_EDGES = (
    "ashburn", "dublin", "frankfurt", "roaming", "sao-paulo", "singapore", "sydney", "tokyo",
    "umatilla",
)  # fmt: skip
INTERCONNECT_EDGES = (
    "ashburn-ix", "frankfurt-ix", "london-ix", "san-jose-ix", "singapore-ix", "sydney-ix",
    "tokyo-ix",
)  # fmt: skip
EDGES = frozenset(PUBLIC_EDGES + INTERCONNECT_EDGES)


@dataclass(frozen=True, slots=True)
class ApiHost:
    """Where the client goes; `edge` is None for Twilio's unqualified host (processed in us1)."""

    host: str
    region: str
    edge: str | None


def check_region(value: str) -> str:
    region = value.strip().lower()
    if region not in REGION_EDGES:
        known = ", ".join(REGION_EDGES)
        raise ValueError(f"must be one of Twilio's regions: {known}")
    return region


def check_edge(value: str) -> str:
    edge = value.strip().lower()
    if edge not in EDGES:
        known = ", ".join(PUBLIC_EDGES + INTERCONNECT_EDGES)
        raise ValueError(f"must be one of Twilio's edge locations: {known}")
    return edge


def api_host(product: str, *, region: str | None, edge: str | None) -> ApiHost:
    """The host of `product` (`conversations`, `chat`) in `region` through `edge`."""
    if region is None and edge is None:
        return ApiHost(host=f"{product}.twilio.com", region=DEFAULT_REGION, edge=None)
    region = region or DEFAULT_REGION
    edge = edge or REGION_EDGES[region]
    return ApiHost(host=f"{product}.{edge}.{region}.twilio.com", region=region, edge=edge)
