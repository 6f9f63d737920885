"""Loading a pydantic-settings model with one clear line per bad setting."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)

ENV_PREFIX = "HOTLINE_"
CONFIG_FILE_ENV = "HOTLINE_CONFIG_FILE"


def load_settings(model: type[S], program: str, config_file: str | None = None) -> S:
    """The settings from the environment and an optional file, or exit with a clear error.

    The file (``--config`` or ``HOTLINE_CONFIG_FILE``) holds ``HOTLINE_NAME=value`` lines;
    environment variables win over it.
    """
    import os

    path = config_file or os.environ.get(CONFIG_FILE_ENV)
    if path and not Path(path).is_file():
        sys.exit(f"{program}: the config file {path} does not exist")
    try:
        return model(_env_file=path)  # type: ignore[call-arg]
    except ValidationError as error:
        sys.exit(f"{program}: {describe(error)}")


def describe(error: ValidationError) -> str:
    """``setting HOTLINE_X: problem`` for each bad setting, one per line."""
    lines = []
    for problem in error.errors():
        name = ENV_PREFIX + "_".join(str(part) for part in problem["loc"]).upper()
        lines.append(f"setting {name}: {problem['msg']}")
    return "\n".join(lines) if lines else str(error)


# Validators shared by the settings models (used with pydantic's field_validator).
LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}


def check_user_id(value: str) -> str:
    if not (value.startswith("@") and ":" in value):
        raise ValueError("must be a Matrix user ID like @hotline:example.org")
    return value


def check_room_id(value: str | None) -> str | None:
    if value is not None and value != "" and not value.startswith("!"):
        raise ValueError("must be a room ID starting with !")
    return value


def check_log_level(value: str) -> str:
    value = value.upper()
    if value not in LOG_LEVELS:
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return value
