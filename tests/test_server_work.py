"""What keeps the homeserver's work per relayed message down (issue 15; the measurements are in
docs/performance.md, "Server CPU per relayed message"): the sync filters of the bot and the
gateway, and the Synapse duties turned off in every homeserver.yaml the hotline writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hotline.homeserver import (
    EVENT_PERSISTER,
    NO_APPSERVICE_PUSHES,
    EmbeddedHomeserver,
    generic_worker_names,
    idle_duty_settings,
)
from hotline.production import InitOptions, init
from hotline_runtime.matrix_sync import SYNC_FILTER, without_own_events


@pytest.mark.parametrize("user_id", ["@chat_0a1b:hotline.localhost", "@someone:example.org"])
def test_a_survivor_account_is_not_sent_its_own_events(user_id):
    sync_filter = without_own_events(user_id)
    assert sync_filter["room"]["timeline"]["not_senders"] == [user_id]
    # Everything else as the shared filter, which is left as it was.
    assert sync_filter["room"]["timeline"]["limit"] == SYNC_FILTER["room"]["timeline"]["limit"]
    assert {k: v for k, v in sync_filter["room"].items() if k != "timeline"} == \
        {k: v for k, v in SYNC_FILTER["room"].items() if k != "timeline"}
    assert "not_senders" not in SYNC_FILTER["room"]["timeline"]


@pytest.mark.parametrize(("event_type", "read"), [("m.typing", True), ("m.receipt", False),
                                                  ("org.example.anything", False)])
def test_of_ephemeral_events_only_typing_is_read(event_type, read):
    for sync_filter in (SYNC_FILTER, without_own_events("@chat_x:hotline.localhost")):
        assert (event_type in sync_filter["room"]["ephemeral"]["types"]) is read


def test_the_idle_duties_name_no_process_that_exists():
    settings = idle_duty_settings()
    assert settings["federation_sender_instances"] == []
    names = {"main", "master", EVENT_PERSISTER, *generic_worker_names(8)}
    assert settings["notify_appservices_from_worker"] == NO_APPSERVICE_PUSHES not in names


def test_the_embedded_homeserver_is_written_with_them(tmp_path: Path):
    homeserver = EmbeddedHomeserver(tmp_path / "hs", "hotline.localhost", 8448)
    homeserver.write_config(relaxed_rate_limits=False)
    config = yaml.safe_load(homeserver.config_path.read_text())
    for key, value in idle_duty_settings().items():
        assert config[key] == value, key


@pytest.mark.parametrize("workers", [0, 2])
def test_hotline_init_writes_them(tmp_path: Path, workers: int):
    directory = tmp_path / "etc"
    init(InitOptions("chat.example.org", directory, target="systemd", state_dir=tmp_path / "state",
                     workers=workers))
    config = yaml.safe_load((directory / "synapse/homeserver.yaml").read_text())
    for key, value in idle_duty_settings().items():
        assert config[key] == value, key
    worker_names = {yaml.safe_load(p.read_text()).get("worker_name") for p in directory.rglob("*.yaml")}
    assert NO_APPSERVICE_PUSHES not in worker_names
