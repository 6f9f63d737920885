"""The gateway's aiohttp application: the page, its static files, status, answers, the WebSocket."""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator
from importlib import resources

import aiohttp
from aiohttp import WSCloseCode, web
from aiolimiter import AsyncLimiter

from webchat import app_keys
from webchat.answers import MAX_BODY_BYTES, AnswerPool, BadAnswers
from webchat.answer_sender import AnswerSender
from webchat.chats import ChatRegistry
from webchat.handover import root_key
from webchat.limits import AddressLimits, parse_networks
from webchat.page import Texts
from webchat.ready import ReadyChats
from webchat.service import ServiceStatus
from webchat.settings import GatewaySettings
from webchat.ws import chat_socket

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
STATIC = {"chat.js": "text/javascript", "chat.css": "text/css"}
# Answer submissions the whole gateway takes per minute (a flood would only skew the counts).
ANSWERS_PER_MINUTE = 120
SERVICE_TASK = web.AppKey("service_task", asyncio.Task)
ANSWERS_LIMIT = web.AppKey("answers_limit", AsyncLimiter)


@web.middleware
async def security_headers(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as problem:
        response = problem
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if isinstance(response, web.HTTPException):
        raise response
    return response


async def index(request: web.Request) -> web.Response:
    texts = request.app[app_keys.TEXTS]
    tag = texts.pick(request.headers.get("Accept-Language", ""))
    body = texts.render(tag, request.app[app_keys.STATUS].status())
    response = web.Response(body=body, content_type="text/html", charset="utf-8")
    response.headers["Vary"] = "Accept-Language"
    response.headers["Content-Language"] = tag
    response.enable_compression()
    return response


async def service_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[app_keys.STATUS].status())


async def catalog(request: web.Request) -> web.Response:
    texts = request.app[app_keys.TEXTS]
    tag = request.match_info["tag"]
    if tag not in texts.offered:
        raise web.HTTPNotFound(text="no such language")
    response = web.Response(body=texts.catalog_json(tag), content_type="application/json", charset="utf-8")
    response.enable_compression()
    return response


async def answers(request: web.Request) -> web.Response:
    """Optional answers, on their own: no chat id, no cookie, nothing that ties them to a chat."""
    settings = request.app[app_keys.SETTINGS]
    if request.headers.get("Origin") != settings.origin:
        return web.Response(status=403, text="Answers are only taken from the chat page.")
    if not settings.service_room:
        return web.Response(status=404, text="This program does not collect answers.")
    if request.content_length is None or request.content_length > MAX_BODY_BYTES:
        return web.Response(status=413, text=f"At most {MAX_BODY_BYTES} bytes.")
    limits = request.app[app_keys.LIMITS]
    if not await limits.take_answers(limits.key(request)):
        return web.Response(status=429, text="Too many answers from this connection; they were not counted.")
    limiter = request.app[ANSWERS_LIMIT]
    if not limiter.has_capacity():
        return web.Response(status=429, text="Too many answers right now; they were not counted.")
    await limiter.acquire()
    try:
        data = json.loads(await request.text())
        pool = request.app[app_keys.ANSWERS].pool
        checked = pool.check(data)
    except (ValueError, BadAnswers) as problem:
        message = str(problem) if isinstance(problem, BadAnswers) else "not JSON"
        return web.Response(status=400, text=message)
    pool.add(request.app[app_keys.STATUS].today(), checked)
    return web.Response(status=204)


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info.get("name", "favicon.ico")
    if name == "favicon.ico":
        return web.Response(status=204)  # no icon: nothing that stands out in a tab or history
    if name not in STATIC:
        raise web.HTTPNotFound()
    body = resources.files("webchat").joinpath(f"static/{name}").read_bytes()
    response = web.Response(body=body, content_type=STATIC[name], charset="utf-8")
    response.enable_compression()
    return response


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[app_keys.SETTINGS]
    async with aiohttp.ClientSession() as http:
        app[app_keys.HTTP] = http
        pool = AnswerPool(app[app_keys.TEXTS].questions, settings.answers_pool_min)
        app[app_keys.ANSWERS] = answers = AnswerSender(settings, http, pool)
        app[app_keys.STATUS] = status = ServiceStatus(settings, http, answers)
        if settings.service_room:
            await status.refresh()  # the first page already knows about a closure
        task = asyncio.create_task(status.run(), name="service status")
        app[SERVICE_TASK] = task
        app[app_keys.READY] = ready = ReadyChats(settings, http)
        ready.start()
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ready.close()
        if pool.pooled:
            # Fewer than the minimum: sending them now could tie them to a few chats.
            log.info("%d pooled answer submissions dropped at shutdown", pool.pooled)
        await app[app_keys.CHATS].end_all()


async def _hand_over(app: web.Application) -> None:
    """Stopping (SIGTERM): each open chat's page gets its chat, sealed, to resume on the restarted
    gateway (webchat/handover.py), before the sockets close."""
    await app[app_keys.CHATS].hand_over_all(root_key(app[app_keys.SETTINGS].as_token.get_secret_value()))


async def _close_sockets(app: web.Application) -> None:
    for ws in list(app[app_keys.SOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def create_app(settings: GatewaySettings) -> web.Application:
    app = web.Application(middlewares=[security_headers], client_max_size=64 * 1024)
    app[app_keys.SETTINGS] = settings
    app[app_keys.CHATS] = ChatRegistry(settings.reconnect_grace_seconds, settings.max_open_chats)
    app[app_keys.SOCKETS] = weakref.WeakSet()
    app[app_keys.TEXTS] = Texts(settings)
    app[ANSWERS_LIMIT] = AsyncLimiter(ANSWERS_PER_MINUTE, 60)
    app[app_keys.LIMITS] = AddressLimits(
        parse_networks(settings.trusted_proxies), settings.max_sockets_per_address,
        settings.max_starts_per_address, settings.max_answers_per_address, settings.address_limit_minutes * 60)
    app.cleanup_ctx.append(_resources)
    app.on_shutdown.append(_hand_over)
    app.on_shutdown.append(_close_sockets)
    base = settings.chat_path
    app.router.add_get(base, index)
    app.router.add_get(base + "ws", chat_socket)
    app.router.add_get(base + "status", service_status)
    app.router.add_post(base + "answers", answers)
    app.router.add_get(base + "i18n/{tag}.json", catalog)
    app.router.add_get(base + "{name}", static_file)
    if base != "/":
        app.router.add_get("/favicon.ico", static_file)
    return app
