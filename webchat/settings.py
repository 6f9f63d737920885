"""The web chat gateway's settings: environment variables ``HOTLINE_…`` and an optional file.

Described in docs/configuration.md. The gateway holds no admin token: only the application
service token that lets it create survivor accounts in its own namespace.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hotline_runtime.hours import ALWAYS, Schedule, ScheduleError
from hotline_runtime.settings_util import check_log_level, check_room_id, check_user_id
from webchat.protocol import MAX_MESSAGE_BYTES

MASTER_KEY = re.compile(r"^[A-Za-z0-9+/]{43}$")
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$")


def _tag_list(value: str) -> list[str]:
    tags = [t.strip() for t in value.split(",") if t.strip()]
    for tag in tags:
        if not LANGUAGE_TAG.match(tag):
            raise ValueError(f"{tag!r} is not a language tag like en or pt-BR")
    return tags


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOTLINE_", extra="ignore")

    homeserver_url: AnyHttpUrl = Field(description="The homeserver's client API, e.g. http://127.0.0.1:8008.")
    bot_user_id: str = Field(description="The bot's Matrix ID; the only account a survivor room invites.")
    bot_master_key: str = Field(description="The bot's cross-signing master key (public; `hotline admin setup` writes it). The gateway shares survivor room keys with, and reads, only bot devices signed by it.")
    as_token: SecretStr = Field(description="The application service token of the gateway's registration (webchat-appservice.yaml).")
    survivor_prefix: str = Field(default="chat_", description="Localpart prefix of survivor accounts; must match the registration's namespace.")
    listen_host: str = Field(default="127.0.0.1", description="Address the gateway listens on (put a TLS proxy in front in production).")
    listen_port: int = Field(default=8080, ge=1, le=65535, description="Port the gateway listens on.")
    public_url: AnyHttpUrl | None = Field(default=None, description="The page's public origin, e.g. https://chat.example.org; WebSockets from other origins are refused. Default: http://LISTEN_HOST:LISTEN_PORT.")
    chat_path: str = Field(default="/", description="Path of the chat page; it shows in the browser's history, so choose a neutral one.")
    page_title: str = Field(default="Chat", description="The page's title; it shows in the browser's history and tabs.")
    program_name: str = Field(default="Support chat", description="The program's name as the page shows it.")
    hotline_phone: str = Field(default="", description="The hotline number, always shown on the page.")
    exit_url: AnyHttpUrl = Field(default=AnyHttpUrl("https://www.wikipedia.org/"), description="Where \"Leave quickly\" goes: a neutral site.")
    max_message_chars: int = Field(default=10_000, ge=100, le=50_000, description="The longest message a survivor can send, in characters.")
    max_message_bytes: int = Field(default=MAX_MESSAGE_BYTES, ge=1_000, le=MAX_MESSAGE_BYTES, description=f"The longest message a survivor can send, in bytes of UTF-8 (a letter of a non-Latin script takes 2 to 4); at most {MAX_MESSAGE_BYTES}, so that every message fits in one encrypted event on the homeserver.")
    reconnect_grace_seconds: float = Field(default=120.0, gt=0, description="How long a chat waits for a survivor whose connection dropped.")
    bot_join_timeout_seconds: float = Field(default=20.0, gt=0, description="How long a new chat waits for the bot (to join, and once started to answer) before telling the survivor chat is unavailable.")
    max_open_chats: int = Field(default=500, ge=1, description="Chats this gateway holds at once; more are told chat is busy. With several gateways (HOTLINE_GATEWAY_NAME) each counts its own.")
    ready_chats: int = Field(default=10, ge=0, le=50, description="Chats this gateway keeps prepared ahead (an account, a room and the bot in it, the rights notice waiting), so that a survivor who presses \"Start chat\" gets the rights notice at once instead of after a few seconds' set-up; set it to the most survivors you expect to start within a few seconds of each other. Each is an empty room and account on the homeserver until a survivor takes it; 0 prepares every chat when it starts.")
    gateway_name: str = Field(default="", pattern=r"^([a-z][a-z0-9]{0,15})?$", description="This gateway's name when several run behind the proxy (`hotline init --gateways N` names them g1, g2…; docs/scaling.md): it starts each chat's id, the page reconnects with it, and the proxy sends those reconnects to this gateway. Empty: the only gateway.")
    # Limits per client address (webchat/limits.py): in memory only, never logged or written.
    trusted_proxies: str = Field(default="127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7", description="Addresses (or networks) of the reverse proxy: by default loopback and private networks (the proxy on the same host, or on the docker compose network). Only a connection from one of them may name the client's address, in X-Real-IP; from one of them without that header no per-address limit applies (the proxy's own limits do). A connection from any other address is limited by that address.")
    max_sockets_per_address: int = Field(default=20, ge=1, le=10_000, description="Chat connections one client address may hold open at once (shared networks such as a shelter's or a phone carrier's put several people behind one address).")
    max_starts_per_address: int = Field(default=10, ge=1, le=10_000, description="New chats one client address may start within HOTLINE_ADDRESS_LIMIT_MINUTES (refilling steadily); more are told chat is not available and given the hotline number.")
    max_answers_per_address: int = Field(default=10, ge=1, le=10_000, description="Answer submissions one client address may send within HOTLINE_ADDRESS_LIMIT_MINUTES; more are not counted.")
    address_limit_minutes: float = Field(default=10, gt=0, le=1440, description="The period of the per-address start and answer limits.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    # Opening hours (hotline_runtime/hours.py): outside them "Start chat" says when chat opens next.
    hours: str = Field(default=ALWAYS, description="When chat is open, e.g. \"mon-fri 09:00-17:00; sat 10:00-14:00\" (a day not named is closed).")
    timezone: str = Field(default="UTC", description="The program's time zone for HOTLINE_HOURS, e.g. America/New_York.")
    holidays: str = Field(default="", description="Dates on which chat is closed all day, e.g. \"2026-12-25, 2027-01-01\".")
    last_intake_minutes: int = Field(default=30, ge=0, le=600, description="No new chat starts this many minutes before closing; open chats continue.")
    # The service room: emergency closure (read) and pooled optional answers (sent).
    service_room: str = Field(default="", description="Room ID of the service room (the bot's closure state; pooled answers). Empty: no closure polling, answers are not kept.")
    service_poll_seconds: float = Field(default=5.0, ge=0.5, le=300, description="How often the gateway reads the service room's closure state.")
    status_poll_seconds: float = Field(default=10.0, ge=1, le=600, description="How often an open page asks whether chat is open.")
    answers_pool_min: int = Field(default=5, ge=1, le=1000, description="Optional answers are sent to the service room only when this many submissions are pooled (or at the end of the day).")
    # The page's texts and languages (docs/page.md). Order matters: later checks use earlier ones.
    catalog_dir: Path | None = Field(default=None, validate_default=True, description="A directory of extra catalogs (<tag>.json): new languages, or the program's own texts overriding shipped ones.")
    default_language: str = Field(default="en", description="The page's language when the browser asks for none the page has.")
    languages: str = Field(default="", validate_default=True, description="The page languages offered, e.g. \"en,es\" (each needs a catalog). Empty: every catalog found.")
    chat_languages: str = Field(default="en", description="Languages advocates can chat in (BCP 47 tags, e.g. \"en,es\"); the page offers them in the preferred-language question.")
    questions_file: Path | None = Field(default=None, validate_default=True, description="A JSON file of optional questions (docs/page.md). Default: the shipped webchat/questions.json. Texts come from the catalogs.")
    rights_url: AnyHttpUrl | None = Field(default=None, description="Link to the program's full text on rights and confidentiality, shown with the summary before a chat.")

    @field_validator("chat_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value if value.endswith("/") else value + "/"

    _user_id = field_validator("bot_user_id")(staticmethod(check_user_id))

    @field_validator("bot_master_key")
    @classmethod
    def _master_key(cls, value: str) -> str:
        if not MASTER_KEY.match(value):
            raise ValueError("must be an Ed25519 public key in unpadded base64 (43 characters), as hotline admin setup writes it")
        return value

    _level = field_validator("log_level")(staticmethod(check_log_level))

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        from webchat.limits import parse_networks

        return ",".join(str(n) for n in parse_networks(value))

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        try:
            Schedule.parse(value)
        except ScheduleError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            Schedule.parse(ALWAYS, value)
        except ScheduleError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("holidays")
    @classmethod
    def _holidays(cls, value: str) -> str:
        try:
            Schedule.parse(ALWAYS, "UTC", value)
        except ScheduleError as error:
            raise ValueError(str(error)) from None
        return value

    _room = field_validator("service_room")(staticmethod(check_room_id))

    @field_validator("default_language")
    @classmethod
    def _tag(cls, value: str) -> str:
        if not LANGUAGE_TAG.match(value):
            raise ValueError("must be a language tag like en or pt-BR")
        return value

    @field_validator("chat_languages")
    @classmethod
    def _tags(cls, value: str) -> str:
        return ",".join(_tag_list(value))

    # Catalogs and questions are checked at start-up, so that a typo stops the gateway with one
    # line naming the setting instead of showing a broken page to a survivor.
    @field_validator("catalog_dir")
    @classmethod
    def _catalogs(cls, value: Path | None) -> Path | None:
        from webchat.i18n import CatalogError, load_catalogs

        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        try:
            load_catalogs(value)
        except CatalogError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: str, info: ValidationInfo) -> str:
        from webchat.i18n import CatalogError, load_catalogs

        if "catalog_dir" not in info.data or "default_language" not in info.data:
            return value  # reported on those settings
        try:
            available = load_catalogs(info.data["catalog_dir"])
        except CatalogError:
            return value
        tags = _tag_list(value) or sorted(available)
        for tag in tags + [info.data["default_language"]]:
            if tag not in available:
                raise ValueError(f"no catalog for {tag!r} (have: {', '.join(sorted(available))})")
        return ",".join(tags)

    @field_validator("questions_file")
    @classmethod
    def _questions(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        from webchat.i18n import CatalogError, load_catalogs, load_questions

        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        if "catalog_dir" not in info.data:
            return value
        try:
            load_questions(value, load_catalogs(info.data["catalog_dir"]))
        except CatalogError as error:
            raise ValueError(str(error)) from None
        return value

    @property
    def schedule(self) -> Schedule:
        return Schedule.parse(self.hours, self.timezone, self.holidays, self.last_intake_minutes)

    @property
    def chat_language_list(self) -> list[str]:
        return [t for t in self.chat_languages.split(",") if t]

    @property
    def language_list(self) -> list[str]:
        return [t for t in self.languages.split(",") if t]

    @property
    def homeserver(self) -> str:
        return str(self.homeserver_url).rstrip("/")

    @property
    def server_name(self) -> str:
        return self.bot_user_id.split(":", 1)[1]

    @property
    def origin(self) -> str:
        url = str(self.public_url) if self.public_url else f"http://{self.listen_host}:{self.listen_port}"
        return url.rstrip("/")
