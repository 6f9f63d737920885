"""A Synapse module for tests only: the homeserver refuses chosen events, so that a test can make one
send fail on a real Synapse (no mock of Matrix).

Loaded by a test stack's Synapse (``modules:`` with ``testkit.synapse_faults.RefuseEvents`` and the
repository on its PYTHONPATH); never shipped. Its file holds one line per refusal,
``<sender> <room id>``: the next event that sender sends into that room is refused with 403
M_FORBIDDEN, as a spam checker refuses, and the line is used up. ``refuse_next`` writes a line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from synapse.api.errors import Codes
from synapse.module_api import NOT_SPAM, ModuleApi

MODULE = "testkit.synapse_faults.RefuseEvents"
REPOSITORY = Path(__file__).resolve().parent.parent


class RefuseEvents:
    def __init__(self, config: dict[str, Any], api: ModuleApi) -> None:
        self._path = Path(config["refusals_file"])
        api.register_spam_checker_callbacks(check_event_for_spam=self.check_event_for_spam)

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(config.get("refusals_file"), str):
            raise ValueError("RefuseEvents needs the string setting 'refusals_file'")
        return config

    async def check_event_for_spam(self, event: Any) -> Any:
        if not self._path.exists():
            return NOT_SPAM
        lines = self._path.read_text().splitlines()
        wanted = f"{event.sender} {event.room_id}"
        if wanted not in lines:
            return NOT_SPAM
        lines.remove(wanted)
        self._path.write_text("".join(f"{line}\n" for line in lines))
        return (Codes.FORBIDDEN, {})


@contextmanager
def loaded_into(stack: Any) -> Iterator[Path]:
    """The module in a DevStack's Synapse (enter before ``stack.start()``); gives its file.

    The module goes into homeserver.yaml before every start of that Synapse; Synapse finds it through
    PYTHONPATH, which names the repository for the processes started inside the block (a restart
    of that Synapse too) and is put back after it: an installed package tested later must not
    import the checkout instead of itself."""
    refusals_file = stack.root.parent / "refusals"
    entry = {"module": MODULE, "config": {"refusals_file": str(refusals_file)}}
    start = stack.synapse.start

    async def start_with_module(*args: Any, **kwargs: Any) -> None:
        path = stack.homeserver.config_path
        config = yaml.safe_load(path.read_text())
        if entry not in config["modules"]:
            config["modules"].append(entry)
            path.write_text(yaml.safe_dump(config, sort_keys=False))
        await start(*args, **kwargs)

    stack.synapse.start = start_with_module
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPOSITORY), *filter(None, [before])])
    try:
        yield refusals_file
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def refuse_next(refusals_file: Path, sender: str, room_id: str) -> None:
    """The homeserver refuses the next event ``sender`` sends into ``room_id``."""
    with refusals_file.open("a") as handle:
        handle.write(f"{sender} {room_id}\n")


def refusals_left(refusals_file: Path) -> int:
    return len(refusals_file.read_text().splitlines()) if refusals_file.exists() else 0
