"""The ``hotline`` command: ``demo`` (everything on loopback), ``init`` (a production
configuration) and ``admin …`` (staff, service, check, sweep, statistics). See docs/admin-guide.md."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from hotline.devstack import DevStack


async def demo(root: Path, synapse_port: int, gateway_port: int) -> None:
    stack = DevStack(root, synapse_port=synapse_port, gateway_port=gateway_port)  # the shipped rate limits
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
        for kind in ("advocates", "admins", "supervisors", "interpreters"):
            for account in creds.get(kind, []):
                label = kind[:-1].capitalize() + " login:"
                print(f"  {label:<20}{account['user_id']}   password: {account['password']}")
        print(f"""
  The same, for scripts: {root / 'credentials.json'}
  Logs: {stack.logs}

Sign in as the advocate, open the dispatch room, start a chat on the page, then type
!claim in the dispatch room. In the case room, !codeword new asks the survivor for a code word
(as in production, whose setup the demo follows except for TLS and the public domain).
Press Ctrl-C to stop everything.""", flush=True)
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


def run_init(args: argparse.Namespace) -> None:
    from hotline.production import InitError, InitOptions, init

    options = InitOptions(
        domain=args.domain, directory=args.dir, target=args.target, state_dir=args.state_dir,
        synapse_port=args.synapse_port, gateway_port=args.gateway_port, db_host=args.db_host,
        db_port=args.db_port, program_name=args.program_name, hotline_phone=args.phone,
        acme_email=args.acme_email, rights_url=args.rights_url, overwrite=args.overwrite,
        workers=args.workers, gateways=args.gateways,
    )
    try:
        report = init(options)
    except (InitError, OSError) as error:
        sys.exit(f"hotline init: {error}")
    if report.secrets_reused:
        print(f"Kept the existing secrets in {args.dir / 'secrets.yaml'} (no secret was replaced).")
    else:
        print(f"Made fresh secrets in {args.dir / 'secrets.yaml'} (mode 0600): back it up.")
    for path in report.written:
        print(f"  wrote {path}")
    for path in report.kept:
        print(f"  kept  {path} (it exists; --overwrite rewrites it from secrets.yaml)")
    print(f"\nNext: {args.dir / 'NEXT-STEPS.md'}")


def run_admin(args: argparse.Namespace) -> None:
    from hotline import admin

    files = admin.Files.from_args(args.dir, args.bot_config, args.webchat_config, args.homeserver_config)
    try:
        ADMIN_VERBS[args.admin_command](admin, files, args)
    except admin.AdminError as error:
        sys.exit(f"hotline admin: {error}")


def admin_setup(admin: Any, files: Any, args: argparse.Namespace) -> None:
    rooms = asyncio.run(admin.setup(files))
    print("Created the bot account and the rooms; bot.env and webchat.env now name them:")
    for name, room in rooms.items():
        print(f"  {name}: {room}")
    print("Start the bot and the gateway, then add staff with `hotline admin staff add`.")


def admin_check(admin: Any, files: Any, args: argparse.Namespace) -> None:
    result = asyncio.run(admin.check(files, public_url=args.public_url))
    for kind, text in result.lines:
        print(f"{kind:4}  {text}")
    if result.failed:
        sys.exit("hotline admin check: FAILED (see the FAIL lines above)")
    print("All checks passed.")


def admin_staff(admin: Any, files: Any, args: argparse.Namespace) -> None:
    ctx = admin.Context.load(files)
    if args.staff_command == "add":
        password = asyncio.run(admin.staff_add(ctx, args.user_id, args.role))
        print(f"Created {args.user_id} ({args.role}) and added them to the {admin.ROLE_ROOM_NAMES[args.role]}.")
        print(f"One-time password (shown only now): {password}")
        print("They sign in with any Matrix client and change it at once (Settings → Security).")
    elif args.staff_command == "remove":
        asyncio.run(admin.staff_remove(ctx, args.user_id, erase=args.erase))
        print(f"Removed {args.user_id} from the staff rooms and deactivated the account.")
    else:
        for member in asyncio.run(admin.staff_list(ctx)):
            print(f"{member.user_id}  {', '.join(member.roles)}")
            for device in member.devices:
                held = ("  HELD BACK: no keys until an admin approves it "
                        f"(!approve {member.user_id} {device['device_id']} in the admin room)"
                        if device["held_back"] else "")
                print(f"    device {device['device_id']}  {device['display_name'] or '-'}  "
                      f"last seen {device['last_seen']}{held}")
            if not member.devices:
                print("    (no devices: not signed in yet)")


def admin_service(admin: Any, files: Any, args: argparse.Namespace) -> None:
    ctx = admin.Context.load(files)
    closed = args.state == "close"
    asyncio.run(admin.service(ctx, closed, " ".join(args.message)))
    print("The service is closed; survivors see your message." if closed else "The service is open.")


def admin_sweep(admin: Any, files: Any, args: argparse.Namespace) -> None:
    ctx = admin.Context.load(files)
    plan = asyncio.run(admin.sweep(ctx, apply=False, min_age_seconds=args.min_age * 60))
    if not plan.rooms and not plan.accounts:
        print("Nothing to sweep: every chat room and survivor account belongs to an open chat.")
        return
    print(f"Left over (no open chat references them, older than {args.min_age:g} min):")
    for room in plan.rooms:
        print(f"  room {room}")
    for account in plan.accounts:
        print(f"  account {account}")
    if not args.yes:
        print("Run again with --yes to erase them (redact, delete with purge, deactivate with erase).")
        return
    asyncio.run(admin.sweep(ctx, apply=True, min_age_seconds=args.min_age * 60))
    print("Swept.")


def admin_stats(admin: Any, files: Any, args: argparse.Namespace) -> None:
    ctx = admin.Context.load(files)
    text = admin.stats_export(ctx.settings)
    if args.output:
        args.output.write_text(text)
        print(f"wrote {args.output}")
    else:
        print(text, end="")


def run_bot_identity(admin: Any, files: Any, args: argparse.Namespace) -> None:
    from bot.identity import identity_path
    from hotline_runtime.cross_signing import Identity, fingerprint

    if not args.replace:
        settings = admin.load_bot_settings(files.bot)
        own = Identity.load(identity_path(settings.data_dir), settings.bot_user_id)
        if own is None:
            sys.exit(f"hotline admin: no cross-signing identity in {settings.data_dir} yet (the bot makes one at its "
                     "first start, or run `hotline admin setup`)")
        print(f"The bot's cross-signing master key: {own.master_public}")
        print(f"Fingerprint: {fingerprint(own.master_public)}")
        return
    master = asyncio.run(admin.replace_bot_identity(files))
    print(f"The bot has a new cross-signing identity. Master key: {master}")
    print(f"Fingerprint: {fingerprint(master)}")
    if files.webchat is not None:
        print(f"{files.webchat} now pins it (HOTLINE_BOT_MASTER_KEY).")
    else:
        print(f"Set HOTLINE_BOT_MASTER_KEY={master} in the gateway's settings.")
    print("Restart the bot, then the gateway. Staff clients show that the bot's identity changed (Element: a "
          "warning on the bot's messages until it is accepted); tell staff to expect it and to accept it only "
          "after you told them.")


# `hotline admin VERB`: one function a verb.
ADMIN_VERBS = {
    "setup": admin_setup,
    "check": admin_check,
    "staff": admin_staff,
    "service": admin_service,
    "sweep": admin_sweep,
    "bot-identity": run_bot_identity,
    "stats": admin_stats,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline", description="matrix-hotline tools")
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser("demo", help="run homeserver, bot and web chat on loopback")
    run_demo.add_argument("--dir", type=Path, default=Path("var/demo"))
    run_demo.add_argument("--synapse-port", type=int, default=8008)
    run_demo.add_argument("--gateway-port", type=int, default=8080)

    add_init_parser(commands)
    add_admin_parser(commands)
    return parser


def add_init_parser(commands: Any) -> None:
    init = commands.add_parser("init", help="write a production configuration for DOMAIN",
                               description="Write Synapse's config (PostgreSQL, every privacy setting), the "
                               "gateway's registration, bot.env and webchat.env with fresh secrets, the proxy "
                               "configs and systemd units. Existing files and secrets are kept.")
    init.add_argument("domain", help="the public hostname, e.g. chat.example.org (also the Matrix server name)")
    init.add_argument("--dir", type=Path, default=Path("/etc/hotline"), help="where to write (default /etc/hotline)")
    init.add_argument("--target", choices=("compose", "systemd"), default="compose",
                      help="docker compose (deploy/docker-compose.yml) or systemd units on this host")
    init.add_argument("--state-dir", type=Path, default=None, help="Synapse's media and keys, the bot's data (default /var/lib/hotline)")
    init.add_argument("--synapse-port", type=int, default=8008)
    init.add_argument("--gateway-port", type=int, default=8080)
    init.add_argument("--db-host", default=None, help="PostgreSQL host (default: postgres for compose, 127.0.0.1 for systemd)")
    init.add_argument("--db-port", type=int, default=5432)
    init.add_argument("--program-name", default="Support chat", help="the program's name as the page shows it")
    init.add_argument("--phone", default="", help="the hotline's phone number, shown to survivors")
    init.add_argument("--acme-email", default=None, help="an address for Let's Encrypt notices (Caddy, certbot)")
    init.add_argument("--rights-url", default=None,
                      help="your program's web page on rights and the limits of confidentiality (the rights notice links it)")
    init.add_argument("--overwrite", action="store_true", help="rewrite existing files (secrets are still kept)")
    init.add_argument("--workers", type=int, default=0, metavar="N",
                      help="Synapse's worker layout: N generic workers for /sync and client reads, an event "
                           "persister and Redis (docs/scaling.md); default: one Synapse process")
    init.add_argument("--gateways", type=int, default=1, metavar="N",
                      help="N web chat gateways behind the proxy, each chat pinned to the one that started it "
                           "(docs/scaling.md); default: one gateway")


def add_admin_parser(commands: Any) -> None:
    admin = commands.add_parser("admin", help="administer a running hotline (Synapse admin API)")
    admin.add_argument("--dir", type=Path, default=None, help="the directory `hotline init` wrote (default /etc/hotline)")
    admin.add_argument("--bot-config", type=Path, default=None, help="the bot's settings file (default DIR/bot.env)")
    admin.add_argument("--webchat-config", type=Path, default=None, help="the gateway's settings file (default DIR/webchat.env)")
    admin.add_argument("--homeserver-config", type=Path, default=None, help="homeserver.yaml (default DIR/synapse/homeserver.yaml)")
    sub = admin.add_subparsers(dest="admin_command", required=True)
    sub.add_parser("setup", help="once: create the bot account and the staff and service rooms")
    checking = sub.add_parser("check", help="settings valid, homeserver reachable, every privacy setting in force")
    checking.add_argument("--public-url", default=None,
                          help="also check from outside, through the proxy: the page and its headers, the client API, "
                               ".well-known, and that the admin and federation APIs are hidden")
    staff = sub.add_parser("staff", help="add, remove and list staff")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True)
    add = staff_sub.add_parser("add", help="create an account with a one-time password and add it to its role's room")
    add.add_argument("user_id", help="e.g. @alex:chat.example.org")
    add.add_argument("--role", choices=("advocate", "supervisor", "interpreter", "admin"), required=True)
    remove = staff_sub.add_parser("remove", help="remove from the staff rooms and deactivate the account")
    remove.add_argument("user_id")
    remove.add_argument("--erase", action="store_true", help="also erase the profile (display name, avatar)")
    staff_sub.add_parser("list", help="staff by role, with their devices (held-back devices marked)")
    svc = sub.add_parser("service", help="open or close the chat service (emergency closure)")
    svc.add_argument("state", choices=("open", "close"))
    svc.add_argument("message", nargs="*", help="what survivors see while it is closed")
    sweeping = sub.add_parser("sweep", help="find (and with --yes erase) rooms and survivor accounts left by a crash")
    sweeping.add_argument("--yes", action="store_true", help="erase what was found")
    sweeping.add_argument("--min-age", type=float, default=10.0, help="only what is older than this many minutes (default 10)")
    ident = sub.add_parser("bot-identity", help="show the bot's cross-signing master key; --replace makes a new one")
    ident.add_argument("--replace", action="store_true",
                       help="replace the bot's identity (only if its keys were lost or exposed): staff clients will "
                            "show that it changed")
    stats = sub.add_parser("stats", help="aggregate statistics")
    stats_sub = stats.add_subparsers(dest="stats_command", required=True)
    export = stats_sub.add_parser("export", help="daily counts as CSV")
    export.add_argument("--output", type=Path, default=None)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        try:
            asyncio.run(demo(args.dir, args.synapse_port, args.gateway_port))
        except RuntimeError as error:
            sys.exit(f"hotline demo: {error}")
    elif args.command == "init":
        run_init(args)
    elif args.command == "admin":
        run_admin(args)


if __name__ == "__main__":
    main()
