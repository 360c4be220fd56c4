"""The Roles resource over HTTP: list and fetch (which clients read to resolve role names),
and create, update (permissions, replaced whole) and delete, for custom roles.

Roles are listed in creation order, and a deleted one leaves the list: pages are cut by
position, so a page read while roles are deleted may skip one (the users' paging, by creation
sequence, does not).
"""

from __future__ import annotations

from functools import partial

from aiohttp import web

from service.emulator import errors
from service.emulator.forms import Form, form_fields, text_field
from service.emulator.operations import Operation
from service.emulator.paging import page_meta, page_request, select_page
from service.emulator.pipeline import EMULATOR, origin, serve_call
from service.emulator.records import Role, Service
from service.emulator.representation import UrlForm, render_role
from service.emulator.validation import checked_permissions, checked_role_name, checked_role_type


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
    instance = f"{collection}/{{sid}}"
    return [
        web.get(collection, partial(list_roles, form=form), allow_head=False),
        web.post(collection, partial(create_role, form=form)),
        web.get(instance, partial(fetch_role, form=form), allow_head=False),
        web.post(instance, partial(update_role, form=form)),
        web.delete(instance, partial(delete_role, form=form)),
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
        role = _role(request, service)
        return web.json_response(_render(request, role, form=form, base=origin(request)))

    return await serve_call(request, Operation.FETCH_ROLE, form=form, action=action)


async def create_role(request: web.Request, *, form: UrlForm) -> web.StreamResponse:
    async def action(service: Service) -> web.StreamResponse:
        fields, chat = await form_fields(request), form is UrlForm.CHAT
        name = checked_role_name(text_field(fields, "FriendlyName"))
        scope = checked_role_type(text_field(fields, "Type"), chat=chat)
        permissions = checked_permissions(_permissions(fields), scope, chat=chat)
        role = request.app[EMULATOR].directory.create_role(service, name, scope, permissions)
        body = _render(request, role, form=form, base=origin(request))
        return web.json_response(body, status=201)

    return await serve_call(request, Operation.CREATE_ROLE, form=form, action=action)


async def update_role(request: web.Request, *, form: UrlForm) -> web.StreamResponse:
    async def action(service: Service) -> web.StreamResponse:
        role = _role(request, service)
        fields = await form_fields(request)
        chat = form is UrlForm.CHAT
        permissions = checked_permissions(_permissions(fields), role.scope, chat=chat)
        updated = request.app[EMULATOR].directory.update_role(service, role, permissions)
        return web.json_response(_render(request, updated, form=form, base=origin(request)))

    return await serve_call(request, Operation.UPDATE_ROLE, form=form, action=action)


async def delete_role(request: web.Request, *, form: UrlForm) -> web.StreamResponse:
    async def action(service: Service) -> web.StreamResponse:
        request.app[EMULATOR].directory.delete_role(service, _role(request, service))
        return web.Response(status=204)

    return await serve_call(request, Operation.DELETE_ROLE, form=form, action=action)


def _role(request: web.Request, service: Service) -> Role:
    role = service.roles.get(request.match_info["sid"])
    if role is None:
        raise errors.not_found(request.path)
    return role


def _permissions(fields: Form) -> list[str]:
    """Every `Permission` field (the parameter repeats, one permission each)."""
    return [value for value in fields.getall("Permission", []) if isinstance(value, str)]


def _render(request: web.Request, role: Role, *, form: UrlForm, base: str) -> dict[str, object]:
    account_sid = request.app[EMULATOR].config.account_sid
    return render_role(role, form=form, origin=base, account_sid=account_sid)
