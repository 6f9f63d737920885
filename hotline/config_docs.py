"""docs/configuration.md, generated from the settings models so that it cannot drift.

Regenerate with ``python -m hotline.config_docs > docs/configuration.md``; a test checks it.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings

from bot.settings import BotSettings
from hotline_runtime.settings_util import ENV_PREFIX
from webchat.settings import GatewaySettings

INTRO = """# Configuration

Each process reads its settings from environment variables named `HOTLINE_…`, and optionally from
a file of `HOTLINE_NAME=value` lines given with `--config FILE` (or `HOTLINE_CONFIG_FILE`);
environment variables win over the file. A bad or missing setting stops the process at start-up
with one line naming it, e.g. `hotline-bot: setting HOTLINE_DISPATCH_ROOM: Value error, must be a
room ID starting with !`. Secrets (passwords, tokens) are never printed.

`make demo` writes both files for you in `var/demo/` (`bot.env`, `webchat.env`).

This page is generated from the settings models (`python -m hotline.config_docs`).
"""


def table(model: type[BaseSettings]) -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        default = "required" if field.is_required() else f"`{field.get_default()}`"
        if field.annotation is not None and "SecretStr" in str(field.annotation):
            default += " (secret)"
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {default} | {field.description or ''} |")
    return "\n".join(rows)


def render() -> str:
    return (
        INTRO
        + "\n## The bot (`python -m bot`, `hotline-bot`)\n\n"
        + table(BotSettings)
        + "\n\n## The web chat gateway (`python -m webchat`, `hotline-webchat`)\n\n"
        + table(GatewaySettings)
        + "\n"
    )


if __name__ == "__main__":
    print(render(), end="")
