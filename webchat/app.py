"""The gateway's aiohttp application: the page, its two static files and the WebSocket."""

from __future__ import annotations

import html
import json
import weakref
from collections.abc import AsyncIterator
from importlib import resources

import aiohttp
from aiohttp import WSCloseCode, web

from webchat import keys
from webchat.chats import Chats
from webchat.settings import GatewaySettings
from webchat.ws import chat_socket

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


def page_config(settings: GatewaySettings) -> dict[str, object]:
    """What the page's script reads from its JSON data block."""
    return {
        "ws_path": settings.chat_path + "ws",
        "exit_url": str(settings.exit_url),
        "hotline_phone": settings.hotline_phone,
        "program_name": settings.program_name,
        "max_message_chars": settings.max_message_chars,
        "strings": {},
    }


def render_page(settings: GatewaySettings) -> bytes:
    template = resources.files("webchat").joinpath("static/index.html").read_text("utf-8")
    # <, > and & escaped so that no text in the config can close the data block.
    config = (
        json.dumps(page_config(settings), ensure_ascii=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )
    page = (
        template.replace("{{CONFIG_JSON}}", config)
        .replace("{{TITLE}}", html.escape(settings.page_title))
        .replace("{{LANG}}", "en")
        .replace("{{DIR}}", "ltr")
    )
    return page.encode("utf-8")


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
    response = web.Response(body=request.app[keys.PAGE], content_type="text/html", charset="utf-8")
    response.enable_compression()
    return response


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
    async with aiohttp.ClientSession() as http:
        app[keys.HTTP] = http
        yield
        await app[keys.CHATS].end_all()


async def _close_sockets(app: web.Application) -> None:
    for ws in list(app[keys.SOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def create_app(settings: GatewaySettings) -> web.Application:
    app = web.Application(middlewares=[security_headers], client_max_size=64 * 1024)
    app[keys.SETTINGS] = settings
    app[keys.CHATS] = Chats(settings.reconnect_grace_seconds)
    app[keys.SOCKETS] = weakref.WeakSet()
    app[keys.PAGE] = render_page(settings)
    app.cleanup_ctx.append(_resources)
    app.on_shutdown.append(_close_sockets)
    base = settings.chat_path
    app.router.add_get(base, index)
    app.router.add_get(base + "ws", chat_socket)
    app.router.add_get(base + "{name}", static_file)
    if base != "/":
        app.router.add_get("/favicon.ico", static_file)
    return app
