"""The web chat gateway's settings: environment variables ``HOTLINE_…`` and an optional file.

Described in docs/configuration.md. The gateway holds no admin token: only the application
service token that lets it create survivor accounts in its own namespace.
"""

from __future__ import annotations

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOTLINE_", extra="ignore")

    homeserver_url: AnyHttpUrl = Field(description="The homeserver's client API, e.g. http://127.0.0.1:8008.")
    bot_user_id: str = Field(description="The bot's Matrix ID; the only account a survivor room invites.")
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
    reconnect_grace_seconds: float = Field(default=120.0, gt=0, description="How long a chat waits for a survivor whose connection dropped.")
    bot_join_timeout_seconds: float = Field(default=20.0, gt=0, description="How long a new chat waits for the bot before telling the survivor chat is unavailable.")
    max_open_chats: int = Field(default=500, ge=1, description="Chats this gateway holds at once; more are told chat is busy.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")

    @field_validator("chat_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value if value.endswith("/") else value + "/"

    @field_validator("bot_user_id")
    @classmethod
    def _user_id(cls, value: str) -> str:
        if not (value.startswith("@") and ":" in value):
            raise ValueError("must be a Matrix user ID like @hotline:example.org")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value

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
