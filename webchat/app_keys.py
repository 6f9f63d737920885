"""Typed keys of the gateway's aiohttp application (``app[app_keys.SETTINGS]`` …)."""

from __future__ import annotations

import weakref

import aiohttp
from aiohttp import web

from webchat.answer_sender import AnswerSender
from webchat.chats import ChatRegistry
from webchat.limits import AddressLimits
from webchat.page import Texts
from webchat.ready import ReadyChats
from webchat.service import ServiceStatus
from webchat.settings import GatewaySettings

SETTINGS = web.AppKey("settings", GatewaySettings)
CHATS = web.AppKey("chats", ChatRegistry)
READY = web.AppKey("ready", ReadyChats)
HTTP = web.AppKey("http", aiohttp.ClientSession)
SOCKETS = web.AppKey("sockets", weakref.WeakSet)
TEXTS = web.AppKey("texts", Texts)
STATUS = web.AppKey("status", ServiceStatus)
ANSWERS = web.AppKey("answers", AnswerSender)
LIMITS = web.AppKey("limits", AddressLimits)
