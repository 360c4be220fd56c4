"""The Roles resource over HTTP (list and fetch), which clients read to resolve role names.

A Service's roles never change in the emulator, so their position is a stable paging key.
"""

from __future__ import annotations

from functools import partial

from aiohttp import web

from service.emulator import errors
from service.emulator.operations import Operation
from service.emulator.paging import page_meta, page_request, select_page
from service.emulator.pipeline import EMULATOR, origin, serve_call
from service.emulator.records import Role, Service
from service.emulator.representation import UrlForm, render_role


class RoleSequence:
    """A Service's roles as an `Ordered` collection; sequence numbers are positions from 1."""

    def __init__(self, roles: list[Role]) -> None:
        self._roles = roles

    def after(self, seq: int, limit: int) -> list[tuple[int, Role]]:
        start = max(seq, 0)
        return list(enumerate(self._roles, 1))[start : start + limit]

    def before(self, seq: int, limit: int) -> list[tuple[int, Role]]:
        end = max(min(seq - 1, len(self._roles)), 0)
        return list(enumerate(self._roles, 1))[max(0, end - limit) : end]

    def any_after(self, seq: int) -> bool:
        return seq < len(self._roles)

    def any_before(self, seq: int) -> bool:
        return seq > 1 and bool(self._roles)


def role_routes(form: UrlForm) -> list[web.RouteDef]:
    collection = f"{form.value}/Roles"
    return [
        web.get(collection, partial(list_roles, form=form), allow_head=False),
        web.get(f"{collection}/{{sid}}", partial(fetch_role, form=form), allow_head=False),
    ]


async def list_roles(request: web.Request, *, form: UrlForm) -> web.StreamResponse:
    async def action(service: Service) -> web.StreamResponse:
        paging = page_request(request.query, max_size=form.max_page_size)
        roles = RoleSequence(list(service.roles.values()))
        page = select_page(roles, paging, key=lambda item: item[0])
        base = origin(request)
        rendered = [_render(request, role, form=form, base=base) for _, role in page.items]
        meta = page_meta(page, paging, url=f"{base}{request.path}", key="roles")
        return web.json_response({"roles": rendered, "meta": meta})

    return await serve_call(request, Operation.LIST_ROLES, form=form, action=action)


async def fetch_role(request: web.Request, *, form: UrlForm) -> web.StreamResponse:
    async def action(service: Service) -> web.StreamResponse:
        role = service.roles.get(request.match_info["sid"])
        if role is None:
            raise errors.not_found(request.path)
        return web.json_response(_render(request, role, form=form, base=origin(request)))

    return await serve_call(request, Operation.FETCH_ROLE, form=form, action=action)


def _render(request: web.Request, role: Role, *, form: UrlForm, base: str) -> dict[str, object]:
    account_sid = request.app[EMULATOR].config.account_sid
    return render_role(role, form=form, origin=base, account_sid=account_sid)
