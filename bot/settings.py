"""The bot's settings: environment variables ``HOTLINE_…`` and an optional file.

Described in docs/configuration.md.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hotline_runtime.settings_util import check_log_level, check_room_id, check_user_id


class BotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOTLINE_", extra="ignore")

    homeserver_url: AnyHttpUrl = Field(description="The homeserver's client API, e.g. http://127.0.0.1:8008.")
    bot_user_id: str = Field(description="The bot's Matrix ID, e.g. @hotline:example.org. A server admin.")
    bot_password: SecretStr = Field(description="The bot's password, used only for its first login; afterwards it reuses its device.")
    data_dir: Path = Field(description="Where the bot keeps its crypto store and routing database (back this up).")
    dispatch_room: str = Field(description="Room ID of the dispatch room: its members are the advocates.")
    admin_room: str | None = Field(default=None, description="Room ID of the admin room, if any.")
    supervisors_room: str | None = Field(default=None, description="Room ID of the supervisors room: its members are supervisors (escalations and !supervisor go there).")
    interpreters_room: str | None = Field(default=None, description="Room ID of the interpreters room: its members are interpreters.")
    max_chats_per_advocate: int = Field(default=3, ge=1, le=20, description="How many chats one advocate may hold at once.")
    shift_guard_minutes: float = Field(default=30, ge=0, description="No new claims this close to the end of an advocate's shift (unless forced); reminders from then on.")
    service_room: str | None = Field(default=None, description="Room ID of the service room (the bot and the gateway's application-service user): emergency closure and pooled answers.")
    survivor_prefix: str = Field(default="chat_", description="Localpart prefix of the web chat gateway's survivor accounts.")
    hotline_phone: str = Field(default="your local hotline", description="The program's hotline number, shown to survivors in notices.")
    reconnect_grace_seconds: float = Field(default=120.0, gt=0, description="How long a chat waits for a survivor whose connection dropped.")
    rights_url: str = Field(default="", description="Link to the program's full statement of rights and limits of confidentiality, quoted in the rights notice. Without it the notice says to ask the advocate for the full text.")
    messages_file: Path | None = Field(default=None, description="A JSON file with the program's own texts: {\"survivor\": {...}, \"canned\": {...}} (see bot/messages.py).")
    timezone: str = Field(default="UTC", description="The program's time zone (statistics are counted per local day).")
    reassure_minutes: float = Field(default=3, gt=0, description="While a survivor waits, how often they are told their place in line.")
    realert_minutes: float = Field(default=5, gt=0, description="How often a chat that is still waiting is announced again in the dispatch room.")
    escalate_minutes: float = Field(default=10, gt=0, description="After how long an unclaimed chat is escalated to the supervisors (or the dispatch room).")
    max_wait_minutes: float = Field(default=30, gt=0, le=24 * 60, description="A chat no advocate has taken after this long is closed: the survivor is told, with the hotline number, and the chat is erased. The dispatch room gets one note for the chats closed together.")
    alert_group_seconds: float = Field(default=10, ge=0, le=600, description="At most HOTLINE_ALERT_BURST dispatch alerts (and as many escalations) in this many seconds: chats are announced at once up to that, later ones together in one alert listing their refs, so that many chats at once cannot bury the dispatch room. 0: every chat alone.")
    alert_burst: int = Field(default=3, ge=1, le=100, description="How many dispatch alerts may go out within HOTLINE_ALERT_GROUP_SECONDS before further chats are grouped.")
    ready_max_age_minutes: float = Field(default=6 * 60, gt=0, le=7 * 24 * 60, description="The web chat gateway opens a few chats ahead (account, room, the bot in it, the rights notice) so that a survivor who presses \"Start chat\" is answered at once. Such a chat is invisible to staff until a survivor starts it; one nobody started after this long (a gateway that stopped without letting it go) is closed and erased without any notice, and counted as ready_unused.")
    inactivity_warning_minutes: float = Field(default=10, gt=0, description="Survivor silence after which they are warned that the chat will close.")
    inactivity_close_minutes: float = Field(default=5, gt=0, description="Minutes after that warning before the chat closes.")
    advocate_reminder_minutes: float = Field(default=3, gt=0, description="An advocate who has not answered the survivor for this long gets a reminder.")
    codeword_pepper: SecretStr | None = Field(default=None, description="Secret key mixed into every code word hash (32+ random characters). Without it, !codeword is off. Never change it: existing code words would stop matching.")
    codeword_valid_days: int = Field(default=90, ge=1, le=3650, description="Days after which a code word must be replaced.")
    codeword_max_failures: int = Field(default=3, ge=1, le=20, description="Wrong code words in a row before a case is locked.")
    codeword_lock_hours: float = Field(default=24, gt=0, description="How long a case stays locked after too many wrong code words.")
    codeword_tries_per_chat: int = Field(default=5, ge=1, le=20, description="Code word checks allowed in one chat.")
    staff_device_verification: bool = Field(default=False, description="Stricter: no staff member's cross-signing identity is trusted on first sight except admins'; an admin confirms each one with !trust after checking it with them (or a session with emoji verification and !verify, or !approve).")
    trust_new_staff_devices: bool = Field(default=False, description="Also share keys with staff sessions that their owner did not cross-sign (old clients, scripts). Only for demos: a password alone then reads chats.")
    erase_redaction_grace_seconds: float = Field(default=5.0, ge=0, le=300, description="After redacting a case room, how long staff clients get to receive the redactions before the room is purged (a purge right after them can leave the content in a client that had not synced yet).")
    erase_retry_max_seconds: float = Field(default=300.0, ge=1, le=3600, description="The longest wait between two tries of an erase that failed (the homeserver was down); it is tried until it is done.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")

    _user_id = field_validator("bot_user_id")(staticmethod(check_user_id))

    @field_validator("codeword_pepper")
    @classmethod
    def _pepper(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (make one with: openssl rand -base64 32)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception:
            raise ValueError("must be a time zone name such as Europe/Berlin") from None
        return value

    _room_id = field_validator("dispatch_room", "admin_room", "service_room", "supervisors_room", "interpreters_room")(staticmethod(check_room_id))

    _level = field_validator("log_level")(staticmethod(check_log_level))

    @property
    def homeserver(self) -> str:
        return str(self.homeserver_url).rstrip("/")
