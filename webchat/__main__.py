"""The gateway's composition root: settings, logging, the aiohttp app."""

from __future__ import annotations

import argparse

from aiohttp import web

from hotline_runtime.logs import setup_logging
from hotline_runtime.settings_util import load_settings
from webchat.app import create_app
from webchat.settings import GatewaySettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hotline-webchat", description="The matrix-hotline web chat gateway.")
    parser.add_argument("--config", help="a file of HOTLINE_NAME=value lines (environment variables win)")
    args = parser.parse_args(argv)
    settings = load_settings(GatewaySettings, "hotline-webchat", args.config)
    setup_logging(settings.log_level)
    # access_log=None: aiohttp's access log would record survivors' IP addresses and browsers.
    web.run_app(
        create_app(settings),
        host=settings.listen_host,
        port=settings.listen_port,
        access_log=None,
        print=None,
        shutdown_timeout=15,
    )


if __name__ == "__main__":
    main()
