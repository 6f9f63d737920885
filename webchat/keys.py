"""Typed keys of the gateway's aiohttp application."""

from __future__ import annotations

import weakref

import aiohttp
from aiohttp import web

from webchat.chats import Chats
from webchat.limits import AddressLimits
from webchat.page import Texts
from webchat.service import Service
from webchat.settings import GatewaySettings

SETTINGS = web.AppKey("settings", GatewaySettings)
CHATS = web.AppKey("chats", Chats)
HTTP = web.AppKey("http", aiohttp.ClientSession)
SOCKETS = web.AppKey("sockets", weakref.WeakSet)
TEXTS = web.AppKey("texts", Texts)
SERVICE = web.AppKey("service", Service)
LIMITS = web.AppKey("limits", AddressLimits)
