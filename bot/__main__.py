"""The bot's entry point: settings, logging, store, Matrix adapter; bot/app.py wires the rest."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import aiohttp

from bot.app import build
from bot.matrix import BotMatrix
from bot.messages import Catalog
from bot.settings import BotSettings
from bot.store import Store
from hotline_runtime.logs import setup_logging
from hotline_runtime.matrix_sync import SessionGone
from hotline_runtime.settings_util import load_settings


async def run(settings: BotSettings, catalog: Catalog) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = await Store.open(settings.data_dir / "routing.db")
    matrix = BotMatrix(settings.homeserver, settings.bot_user_id, settings.data_dir / "crypto")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with aiohttp.ClientSession() as http:
            bot = build(settings, store, matrix, http, catalog)
            running = asyncio.create_task(bot.run())
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if running in done:
                error = running.exception()
                if isinstance(error, SessionGone):
                    return 3
                if error is not None:
                    logging.getLogger("bot").error("the bot stopped: %s", type(error).__name__)
                    return 1
                return 0
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            stopping.cancel()
            return 0
    finally:
        await matrix.close()
        await store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hotline-bot", description="The matrix-hotline bot.")
    parser.add_argument("--config", help="a file of HOTLINE_NAME=value lines (environment variables win)")
    args = parser.parse_args(argv)
    settings = load_settings(BotSettings, "hotline-bot", args.config)
    try:
        catalog = Catalog.load(settings.messages_file, settings.hotline_phone, settings.rights_url)
    except ValueError as error:
        sys.exit(f"hotline-bot: setting HOTLINE_MESSAGES_FILE: {error}")
    setup_logging(settings.log_level)
    sys.exit(asyncio.run(run(settings, catalog)))


if __name__ == "__main__":
    main()
