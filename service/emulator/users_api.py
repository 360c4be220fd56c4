"""The Users resource over HTTP, in all three URL forms (see `representation.UrlForm`).

Create and update read `application/x-www-form-urlencoded` bodies; fetch, update and delete take
either the `US…` sid or the (percent-encoded) identity in the path.
"""

from __future__ import annotations

from functools import partial

from aiohttp import web

from service.emulator import errors
from service.emulator.directory import UserFields
from service.emulator.emulator import Emulator
from service.emulator.forms import form_fields, text_field
from service.emulator.operations import Operation
from service.emulator.paging import page_meta, page_request, select_page
from service.emulator.pipeline import EMULATOR, origin, serve_call
from service.emulator.records import Service, User
from service.emulator.representation import UrlForm, render_user


def user_routes(form: UrlForm) -> list[web.RouteDef]:
    collection = f"{form.value}/Users"
    instance = f"{collection}/{{sid}}"
    return [
        web.get(collection, partial(list_users, form=form), allow_head=False),
        web.post(collection, partial(create_user, form=form)),
        web.get(instance, partial(fetch_user, form=form), allow_head=False),
        web.post(instance, partial(update_user, form=form)),
        web.delete(instance, partial(delete_user, form=form)),
    ]


async def create_user(request: web.Request, *, form: UrlForm) -> web.StreamResponse:
    async def action(service: Service) -> web.StreamResponse:
        fields = await _fields(request, creating=True)
        user = request.app[EMULATOR].directory.create_user(service, fields)
        return _user_response(request, user, form=form, status=201)

    return await serve_call(request, Operation.CREATE_USER, form=form, action=action)


async def fetch_user(request: web.Request, *, form: UrlForm) -> web.StreamResponse:
    async def action(service: Service) -> web.StreamResponse:
        return _user_response(request, _user(request, service), form=form)

    return await serve_call(request, Operation.FETCH_USER, form=form, action=action)


async def update_user(request: web.Request, *, form: UrlForm) -> web.StreamResponse:
    async def action(service: Service) -> web.StreamResponse:
        user = _user(request, service)
        fields = await _fields(request, creating=False)
        request.app[EMULATOR].directory.update_user(service, user, fields)
        return _user_response(request, user, form=form)

    return await serve_call(request, Operation.UPDATE_USER, form=form, action=action)


async def delete_user(request: web.Request, *, form: UrlForm) -> web.StreamResponse:
    async def action(service: Service) -> web.StreamResponse:
        request.app[EMULATOR].directory.delete_user(_user(request, service))
        return web.Response(status=204)

    return await serve_call(request, Operation.DELETE_USER, form=form, action=action)


async def list_users(request: web.Request, *, form: UrlForm) -> web.StreamResponse:
    async def action(service: Service) -> web.StreamResponse:
        emulator = request.app[EMULATOR]
        paging = page_request(request.query, max_size=form.max_page_size)
        page = select_page(emulator.directory.users(service.sid), paging, key=_seq)
        base = origin(request)
        users = [_render(emulator, user, form=form, base=base) for user in page.items]
        meta = page_meta(page, paging, url=f"{base}{request.path}", key="users")
        return web.json_response({"users": users, "meta": meta})

    return await serve_call(request, Operation.LIST_USERS, form=form, action=action)


def _seq(user: User) -> int:
    return user.seq


def _user(request: web.Request, service: Service) -> User:
    user = request.app[EMULATOR].directory.users(service.sid).find(request.match_info["sid"])
    if user is None:
        raise errors.not_found(request.path)
    return user


async def _fields(request: web.Request, *, creating: bool) -> UserFields:
    form = await form_fields(request)

    def text(name: str) -> str | None:
        return text_field(form, name)

    return UserFields(
        identity=text("Identity") if creating else None,
        friendly_name=text("FriendlyName"),
        attributes=text("Attributes"),
        role_sid=text("RoleSid"),
    )


def _render(emulator: Emulator, user: User, *, form: UrlForm, base: str) -> dict[str, object]:
    return render_user(user, form=form, origin=base, account_sid=emulator.config.account_sid)


def _user_response(
    request: web.Request, user: User, *, form: UrlForm, status: int = 200
) -> web.Response:
    body = _render(request.app[EMULATOR], user, form=form, base=origin(request))
    return web.json_response(body, status=status)
