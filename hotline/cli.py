"""The ``hotline`` command: ``hotline demo`` (more subcommands come with the production issue)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from hotline.devstack import DevStack


async def demo(root: Path, synapse_port: int, gateway_port: int) -> None:
    stack = DevStack(root, synapse_port=synapse_port, gateway_port=gateway_port, relaxed_rate_limits=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print("Starting the homeserver, the bot and the web chat gateway…", flush=True)
        await stack.start()
        creds = stack.credentials()
        print(f"""
matrix-hotline demo is running (everything on 127.0.0.1).

  Chat page (the survivor's side):  {creds['page_url']}
  Homeserver (for Element or any Matrix client):  {creds['homeserver']}
""")
        for account in creds["advocates"]:
            print(f"  Advocate login:  {account['user_id']}   password: {account['password']}")
        for account in creds["admins"]:
            print(f"  Admin login:     {account['user_id']}   password: {account['password']}")
        print(f"""
  The same, for scripts: {root / 'credentials.json'}
  Logs: {stack.logs}

Sign in as the advocate, open the dispatch room, start a chat on the page, then type
!claim in the dispatch room. Press Ctrl-C to stop everything.""", flush=True)
        while not stop.is_set():
            for name, process in stack.processes.items():
                if process.poll() is not None:
                    print(f"{name} stopped unexpectedly; see {stack.logs / name}.log", file=sys.stderr)
                    stop.set()
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
    finally:
        print("\nStopping…", flush=True)
        stack.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hotline", description="matrix-hotline tools")
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser("demo", help="run homeserver, bot and web chat on loopback")
    run_demo.add_argument("--dir", type=Path, default=Path("var/demo"))
    run_demo.add_argument("--synapse-port", type=int, default=8008)
    run_demo.add_argument("--gateway-port", type=int, default=8080)
    args = parser.parse_args(argv)
    if args.command == "demo":
        try:
            asyncio.run(demo(args.dir, args.synapse_port, args.gateway_port))
        except RuntimeError as error:
            sys.exit(f"hotline demo: {error}")


if __name__ == "__main__":
    main()
