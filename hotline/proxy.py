"""The reverse proxy's configuration: Caddy (automatic TLS) and an nginx alternative.

One public hostname serves both the chat page and the staff's Matrix client API:

- ``/_matrix/client/…`` and ``/_matrix/media/…`` go to Synapse (what Element and other staff
  clients need). The proxy *overwrites* ``X-Forwarded-For`` with the connecting address, so a
  client cannot forge it, and Synapse's ``user_ips`` keeps it only for ``user_ips_max_age``.
- Every other ``/_matrix/…`` and all of ``/_synapse/…`` (the admin API, metrics, federation,
  key server) answer 404: the admin API is reached only on the host itself (``hotline admin``).
- Everything else goes to the web chat gateway, WebSockets included. The survivor's address
  goes to the gateway only in ``X-Real-IP`` (overwritten), for its per-address limits, which keep
  it in memory only; no ``X-Forwarded-For`` or ``Forwarded`` is passed.
- Limits per client address (nginx): open connections, new chat sockets, ``/answers`` and page
  requests, in shared memory only; rejections answer 429 and are logged below the error log's
  level, so never. Caddy's standard build has no rate limiting: with Caddy the gateway's own
  per-address limits are the only ones (docs/admin-guide.md, "Limits per address").
- No access log. HSTS everywhere; the page's security headers are set by the proxy as well as by
  the gateway (the same values, from ``webchat.app.SECURITY_HEADERS``).
- When the gateway cannot be reached (502, 503, 504), the proxy answers 503 with a static page,
  ``unavailable.html`` (written by ``hotline init`` from the page's catalog: the hotline number,
  the hours, other ways to get help), with the chat page's headers: never a bare "Bad Gateway".
"""

from __future__ import annotations

HSTS = "max-age=63072000; includeSubDomains"
# nginx's limits per client address (see nginx_site). The gateway has its own, per address too.
MAX_CONNECTIONS = 20  # requests and sockets open at once
PAGE_RATE, PAGE_BURST = "10r/s", 40  # page, static files, status polls
SOCKET_RATE, SOCKET_BURST = "20r/m", 10  # new chat sockets: starts and reconnects
ANSWERS_RATE, ANSWERS_BURST = "2r/m", 5  # optional answers: one submission per chat
# Matrix paths that staff clients use. Nothing else of Synapse is reachable from outside.
MATRIX_PUBLIC_PREFIXES = ("/_matrix/client/", "/_matrix/media/")
BLOCKED_PREFIXES = ("/_matrix/", "/_synapse/")
# The page served when the gateway is down: nginx reads it from ERROR_ROOT (NEXT-STEPS.md copies
# it there), the compose file mounts it into Caddy's CADDY_ERROR_ROOT.
ERROR_PAGE = "unavailable.html"
ERROR_ROOT = "/var/www/hotline"
CADDY_ERROR_ROOT = "/srv/hotline"
API_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

# Synapse's worker layout (`hotline init --workers N`; Synapse's docs/workers.md): the proxy sends
# these to the generic workers, everything else to the main process: sending, joins, media, and
# the admin API (room delete with purge, deactivate), which the bot's erase uses. /sync goes by
# user (Synapse: "more efficient if all requests from a particular user are routed to a single
# instance"). Room pagination (/messages) stays on the main process: Synapse asks that a room's
# pagination not run on a worker while the room is purged, and every chat ends in a purge.
WORKER_SYNC_PATHS = (r"^/_matrix/client/((r0|v3)/sync|(api/v1|r0|v3)/(events|initialSync)"
                     r"|(api/v1|r0|v3)/rooms/[^/]+/initialSync)$")
WORKER_READ_PATHS = (r"^/_matrix/client/((api/v1|r0|v3|unstable)/(joined_rooms|rooms/[^/]+/(joined_members|members"
                     r"|state|context/.+|event/.+))|(r0|v3|unstable)/(account/whoami|capabilities|keys/query"
                     r"|keys/changes)|versions)$")
# Where `hotline init --workers N` has the bot, the gateway and `hotline admin` reach Synapse: an
# entrance on the proxy that routes as the public site does, plus the admin API to the main process.
INTERNAL_PORT = 8008

# Several gateways (`hotline init --gateways N`, docs/scaling.md): (name, host:port) each. A chat
# lives in the memory of the gateway that started it; its page reconnects with ?gateway=NAME
# (docs/protocol.md), which the proxy sends to that gateway and nowhere else. A socket without it
# (a new chat) goes to each gateway in turn, counted apart from the page's other requests (which
# also go round) so that a page's fixed number of requests before its socket cannot send every
# new chat to the same gateway. (nginx's least_conn would count only the sockets opened through
# that upstream, not the chats' pinned reconnects.) The optional answers (tied to no chat) all go
# to the first gateway, the others standing in, so that they pool in one place.
Gateways = tuple[tuple[str, str], ...]


# How nginx passes the page, its sockets and the answers on to a gateway (the generated
# proxy/nginx.conf and the dev stack's loopback front alike): WebSocket upgrades, long-lived
# sockets, and the survivor's address only in X-Real-IP (for the gateway's per-address limits,
# memory only), never in the forwarding headers.
GATEWAY_PROXYING = """        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $hotline_connection_upgrade;
        proxy_set_header X-Forwarded-For "";
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header Forwarded "";
        proxy_read_timeout 3600s;
        proxy_buffering off;"""


def gateway_names(count: int) -> tuple[str, ...]:
    return tuple(f"g{i}" for i in range(1, count + 1))


def _nginx_gateway_upstreams(gateways: Gateways) -> str:
    """The gateways' upstreams and the map from the page's ?gateway= to one of them. nginx keeps
    the variables in memory only, like the per-address limits."""
    if not gateways:
        return ""
    pool = "\n".join(f"    server {address};" for _, address in gateways)
    each = "\n".join(f"upstream hotline_gateway_{name} {{\n    server {address};\n}}" for name, address in gateways)
    answers = "\n".join(f"    server {address}{'' if i == 0 else ' backup'};" for i, (_, address) in enumerate(gateways))
    names = "\n".join(f"    {name} hotline_gateway_{name};" for name, _ in gateways)
    return f"""# The web chat gateways (hotline init --gateways {len(gateways)}): a chat's page reconnects with
# ?gateway=NAME and goes to that gateway only; a new chat to each gateway in turn (its own upstream,
# so that the page's other requests do not move its turns); the page and its files to any.
upstream hotline_gateways {{
{pool}
}}
upstream hotline_new_chats {{
{pool}
}}
{each}
upstream hotline_answers {{
{answers}
}}
map $arg_gateway $hotline_gateway {{
    default hotline_new_chats;
{names}
}}
"""


def _gateway_targets(gateway: str, gateways: Gateways) -> tuple[str, str, str]:
    """(where the page goes, where its sockets go, where the answers go) in nginx's proxy_pass."""
    if not gateways:
        return gateway, gateway, gateway
    return "hotline_gateways", "$hotline_gateway", "hotline_answers"


def nginx_gateway_front(gateways: Gateways, *, listen: str, error_log: str) -> str:
    """Plain HTTP on loopback in front of several gateways, with the routes of nginx_site (the
    dev stack's front: hotline/devstack.py). Without nginx_site's TLS, limits and headers."""
    page, sockets, answers = _gateway_targets("", gateways)
    return f"""# matrix-hotline: the gateways' routes of proxy/nginx.conf, on loopback (the dev stack).
map $http_upgrade $hotline_connection_upgrade {{
    default upgrade;
    ''      close;
}}
{_nginx_gateway_upstreams(gateways)}
server {{
    listen {listen};
    server_tokens off;
    access_log off;
    error_log {error_log} crit;
    location / {{
        proxy_pass http://{page};
{GATEWAY_PROXYING}
        location ~ /ws$ {{
            proxy_pass http://{sockets};
        }}
        location ~ /answers$ {{
            proxy_pass http://{answers};
        }}
    }}
}}
"""


def _nginx_worker_upstreams(prefix: str, main: str, workers: tuple[str, ...]) -> str:
    """Upstreams for Synapse's processes, and the /sync key: the user's part of the access token
    (`syt_<user>_…`), else the whole header. Kept in memory only, like every nginx variable."""
    servers = "\n".join(f"    server {worker};" for worker in workers)
    return f"""# Synapse's processes (hotline init --workers {len(workers)}): /sync by user, client reads round robin.
map $http_authorization ${prefix}_sync_user {{
    default $http_authorization;
    "~^Bearer syt_(?<user>[^_]+)_" $user;
}}
upstream {prefix}_sync {{
    hash ${prefix}_sync_user consistent;
{servers}
}}
upstream {prefix}_reads {{
{servers}
}}
upstream {prefix}_main {{
    server {main};
}}
"""


def _nginx_synapse_location(selector: str, upstream: str, extra: str = "") -> str:
    return f"""    location {selector} {{
        proxy_pass http://{upstream};
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        # Overwrite, never append: Synapse trusts this header (x_forwarded).
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_read_timeout 300s;
        client_max_body_size 50m;
{extra}    }}"""


def _nginx_worker_locations(prefix: str, headers: str) -> str:
    return "\n".join((
        "    # Synapse's generic workers: /sync and the client reads (hotline init --workers).",
        _nginx_synapse_location(f'~ "{WORKER_SYNC_PATHS}"', f"{prefix}_sync", headers),
        _nginx_synapse_location(f'~ "{WORKER_READ_PATHS}"', f"{prefix}_reads", headers),
    )) + "\n"


def nginx_internal_site(main: str, workers: tuple[str, ...], *, listen: str = f"127.0.0.1:{INTERNAL_PORT}",
                        error_log: str = "/var/log/nginx/hotline-error.log") -> str:
    """The loopback entrance to Synapse's processes for the bot, the gateway and `hotline admin`
    (their HOTLINE_HOMESERVER_URL): /sync and the reads to the workers, everything else (sending,
    the admin API) to the main process. Plain HTTP on loopback, no access log."""
    prefix = "hotline_internal"
    return f"""# matrix-hotline: the loopback entrance to Synapse's processes (written by `hotline init --workers`).
# The bot, the gateway and `hotline admin` use it (HOTLINE_HOMESERVER_URL). Never public.
{_nginx_worker_upstreams(prefix, main, workers)}
server {{
    listen {listen};
    server_tokens off;
    access_log off;
    error_log {error_log} crit;

{_nginx_worker_locations(prefix, "")}
    # Everything else, the admin API included, goes to the main process.
{_nginx_synapse_location("/", f"{prefix}_main")}
}}
"""


def page_headers() -> dict[str, str]:
    from webchat.app import SECURITY_HEADERS

    return dict(SECURITY_HEADERS)


def well_known_client(domain: str) -> str:
    return '{"m.homeserver": {"base_url": "https://%s"}}' % domain


def _caddy_worker_handles(workers: tuple[str, ...], headers: str) -> str:
    """Caddy's routes to Synapse's generic workers: /sync by user (the user's part of the access
    token, `syt_<user>_…`, in a request header that only the choice of worker uses), reads round
    robin. (Named matchers keep their order: these come before the catch-all client API handle.)"""
    upstreams = " ".join(workers)
    header_block = f"\t\theader {{\n{headers}\n\t\t}}\n" if headers else ""
    by_user = """\t\tmap {http.request.header.Authorization} {hotline_sync_user} {
\t\t\t"~^Bearer syt_([^_]+)_" "${1}"
\t\t\tdefault "-"
\t\t}
\t\trequest_header X-Hotline-Sync-User {hotline_sync_user}
"""
    out = ["\t# Synapse's generic workers: /sync and the client reads (hotline init --workers)."]
    for name, pattern, policy in (("sync", WORKER_SYNC_PATHS, "header X-Hotline-Sync-User"),
                                  ("reads", WORKER_READ_PATHS, "round_robin")):
        out.append(f"""\t@synapse_{name} path_regexp synapse_{name} {pattern}
\thandle @synapse_{name} {{
{header_block}{by_user if name == "sync" else ""}\t\treverse_proxy {upstreams} {{
\t\t\tlb_policy {policy}
\t\t\theader_up X-Forwarded-For {{remote_host}}
\t\t\ttransport http {{
\t\t\t\tread_timeout 5m
\t\t\t}}
\t\t}}
\t}}""")
    return "\n".join(out) + "\n\n"


def caddy_internal_site(main: str, workers: tuple[str, ...], *, port: int = INTERNAL_PORT) -> str:
    """Caddy's entrance to Synapse's processes for the bot, the gateway and `hotline admin` (on the
    compose network only, never published): as nginx_internal_site."""
    return f"""
# The entrance to Synapse's processes for the bot, the gateway and `hotline admin`
# (HOTLINE_HOMESERVER_URL): plain HTTP on the compose network; this port is never published.
http://:{port} {{
{_caddy_worker_handles(workers, "")}\t# Everything else, the admin API included, goes to the main process.
\thandle {{
\t\treverse_proxy {main} {{
\t\t\theader_up X-Forwarded-For {{remote_host}}
\t\t\ttransport http {{
\t\t\t\tread_timeout 5m
\t\t\t}}
\t\t}}
\t}}
}}
"""


def _caddy_gateway_proxy(upstreams: str, indent: str, policy: str = "") -> str:
    lb = (f"{indent}\tlb_policy {policy}\n{indent}\tlb_try_duration 5s\n{indent}\tfail_duration 30s\n"
          if policy else "")
    return f"""{indent}reverse_proxy {upstreams} {{
{lb}{indent}\theader_up X-Real-IP {{remote_host}}
{indent}\theader_up -X-Forwarded-For
{indent}\theader_up -Forwarded
{indent}}}
"""


def _caddy_gateway_routes(gateway: str, gateways: Gateways) -> str:
    """The page's routes to the gateway, or to several (as _nginx_gateway_upstreams: a chat's
    sockets by ?gateway=NAME, a new chat to each in turn, answers to the first). Each handle has
    its own round robin: the page's requests do not move the new chats' turns."""
    if not gateways:
        return _caddy_gateway_proxy(gateway, "\t\t")
    every = " ".join(address for _, address in gateways)
    inner = "\t\t\t"
    out = ["\t\t# The optional answers: to the first gateway (the others stand in), pooled in one place.",
           f"\t\t@answers path */answers\n\t\thandle @answers {{\n{_caddy_gateway_proxy(every, inner, 'first')}\t\t}}",
           "\t\t# A chat's page reconnects with ?gateway=NAME: to that gateway only."]
    for name, address in gateways:
        out.append(f"\t\t@gateway_{name} query gateway={name}\n\t\thandle @gateway_{name} {{\n"
                   f"{_caddy_gateway_proxy(address, inner)}\t\t}}")
    out.append(f"\t\t# A new chat: each gateway in turn.\n\t\t@new_chat path */ws\n\t\thandle @new_chat {{\n"
               f"{_caddy_gateway_proxy(every, inner, 'round_robin')}\t\t}}")
    out.append(f"\t\t# The page, its files and status: any gateway.\n\t\thandle {{\n"
               f"{_caddy_gateway_proxy(every, inner, 'round_robin')}\t\t}}")
    return "\n".join(out) + "\n"


def caddyfile(domain: str, synapse: str, gateway: str, *, acme_email: str | None = None,
              error_root: str = CADDY_ERROR_ROOT, workers: tuple[str, ...] = (),
              internal_port: int = INTERNAL_PORT, gateways: Gateways = ()) -> str:
    """A Caddyfile; ``synapse`` and ``gateway`` are upstream ``host:port``; ``error_root`` holds
    ``unavailable.html``. With ``workers`` (Synapse's generic workers, ``host:port``), /sync and
    the client reads go to them, and an internal site (caddy_internal_site) is added. With
    ``gateways`` ((name, host:port) each) they replace ``gateway``, each chat pinned to its own."""
    page = "\n".join(f'\t\t\t{name} "{value}"' for name, value in page_headers().items())
    error_page_headers = "\n".join("\t" + line for line in page.splitlines())
    api = "\n".join(f'\t\t\t{name} "{value}"' for name, value in API_HEADERS.items())
    email = f"\temail {acme_email}\n" if acme_email else ""
    matrix = " ".join(p + "*" for p in MATRIX_PUBLIC_PREFIXES)
    blocked = " ".join(p + "*" for p in BLOCKED_PREFIXES)
    return f"""# matrix-hotline: Caddy for {domain} (written by `hotline init`).
# Automatic TLS (Let's Encrypt) for {domain}. No site has a `log` directive, so Caddy keeps no
# access log; its own log is held at ERROR.
{{
{email}\tlog {{
\t\tlevel ERROR
\t}}
}}

{domain} {{
\theader Strict-Transport-Security "{HSTS}"
\theader -Server

{_caddy_worker_handles(workers, api) if workers else ""}\t# The staff's Matrix clients: client and media API only.
\t@matrix path {matrix}
\thandle @matrix {{
\t\theader {{
{api}
\t\t}}
\t\treverse_proxy {synapse} {{
\t\t\t# Overwrite, never append: Synapse trusts this header (x_forwarded).
\t\t\theader_up X-Forwarded-For {{remote_host}}
\t\t\ttransport http {{
\t\t\t\tread_timeout 5m
\t\t\t}}
\t\t}}
\t}}

\thandle /.well-known/matrix/client {{
\t\theader Content-Type application/json
\t\theader Access-Control-Allow-Origin *
\t\trespond `{well_known_client(domain)}` 200
\t}}

\t# The admin API, federation, key server and metrics are never public.
\t@blocked path {blocked}
\thandle @blocked {{
\t\trespond 404
\t}}

\t# The chat page and its WebSocket (Caddy passes WebSocket upgrades through).
\thandle {{
\t\theader {{
{page}
\t\t}}
\t\t# Standard Caddy has no per-address rate or connection limits (only third-party plugins
\t\t# built in with xcaddy do). The gateway limits per address itself, from X-Real-IP, which
\t\t# is overwritten here so that a client cannot choose it, and kept in memory only. For
\t\t# limits at the proxy too, use the nginx configuration (proxy/nginx.conf).
\t\trequest_body {{
\t\t\tmax_size 64KB
\t\t}}
{_caddy_gateway_routes(gateway, gateways)}\t}}

\t# The gateway cannot be reached: the static page, with the chat page's headers, as 503.
\thandle_errors {{
\t\t@down {{
\t\t\texpression `{{err.status_code}} in [502, 503, 504]`
\t\t\tnot path {matrix}
\t\t}}
\t\thandle @down {{
\t\t\troot * {error_root}
\t\t\trewrite * /{ERROR_PAGE}
\t\t\theader {{
\t\t\t\tStrict-Transport-Security "{HSTS}"
{error_page_headers}
\t\t\t}}
\t\t\tfile_server {{
\t\t\t\tstatus 503
\t\t\t}}
\t\t}}
\t}}
}}
{caddy_internal_site(synapse, workers, port=internal_port) if workers else ""}"""


def nginx_bootstrap_site(domain: str, *, http_port: int = 80, acme_root: str = "/var/www/letsencrypt") -> str:
    """nginx over plain HTTP for the first certificate: certbot's webroot challenge, nothing else.

    The full site (``nginx_site``) names the certificate's files, so ``nginx -t`` refuses it until
    certbot has run; this one lets nginx start and serve the challenge first.
    """
    return f"""# matrix-hotline: nginx for {domain} over plain HTTP, only until certbot has the certificate
# (written by `hotline init`). Then replace it with nginx.conf. No access log.
server {{
    listen {http_port};
    listen [::]:{http_port};
    server_name {domain};
    server_tokens off;
    access_log off;
    error_log /var/log/nginx/hotline-error.log crit;
    location /.well-known/acme-challenge/ {{
        root {acme_root};
    }}
    location / {{
        return 404;
    }}
}}
"""


def nginx_site(domain: str, synapse: str, gateway: str, *, certificate: str | None = None,
               key: str | None = None, http_port: int = 80, https_port: int = 443,
               acme_root: str = "/var/www/letsencrypt", error_root: str = ERROR_ROOT,
               workers: tuple[str, ...] = (), gateways: Gateways = ()) -> str:
    """An nginx ``server`` configuration (for ``sites-available``); TLS from certbot by default;
    ``error_root`` holds ``unavailable.html``. With ``workers`` (Synapse's generic workers,
    ``host:port``), /sync and the client reads go to them. With ``gateways`` ((name, host:port)
    each) they replace ``gateway``, each chat pinned to its own (_nginx_gateway_upstreams)."""
    page_target, socket_target, answers_target = _gateway_targets(gateway, gateways)
    certificate = certificate or f"/etc/letsencrypt/live/{domain}/fullchain.pem"
    key = key or f"/etc/letsencrypt/live/{domain}/privkey.pem"
    hsts = f'add_header Strict-Transport-Security "{HSTS}" always;'

    def headers(values: dict[str, str], indent: str) -> str:
        lines = [hsts] + [f'add_header {name} "{value}" always;' for name, value in values.items()]
        return "\n".join(indent + line for line in lines)

    hide = "\n".join(f"        proxy_hide_header {name};" for name in page_headers())
    matrix_locations = "\n".join(f"""    location {prefix} {{
        proxy_pass http://{synapse};
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        # Overwrite, never append: Synapse trusts this header (x_forwarded).
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_read_timeout 300s;
        client_max_body_size 50m;
{headers(API_HEADERS, "        ")}
    }}""" for prefix in MATRIX_PUBLIC_PREFIXES)
    blocked = "\n".join(f"    location {prefix} {{\n        return 404;\n    }}" for prefix in BLOCKED_PREFIXES)
    return f"""# matrix-hotline: nginx for {domain} (written by `hotline init`).
# No access log anywhere; the error log only at `crit` (its lines name client addresses).
map $http_upgrade $hotline_connection_upgrade {{
    default upgrade;
    ''      close;
}}

# Limits per client address, in shared memory only (nothing is written). A rejection answers 429
# and is logged at `warn`, below the error log's `crit`: never. Shared networks (a shelter, a
# phone carrier) put several people behind one address, so the numbers are generous.
limit_conn_zone $binary_remote_addr zone=hotline_conn:10m;
limit_req_zone $binary_remote_addr zone=hotline_page:10m rate={PAGE_RATE};
limit_req_zone $binary_remote_addr zone=hotline_socket:10m rate={SOCKET_RATE};
limit_req_zone $binary_remote_addr zone=hotline_answers:10m rate={ANSWERS_RATE};
{("" if not workers else chr(10) + _nginx_worker_upstreams("hotline_public", synapse, workers))}{("" if not gateways else chr(10) + _nginx_gateway_upstreams(gateways))}
server {{
    listen {http_port};
    listen [::]:{http_port};
    server_name {domain};
    access_log off;
    error_log /var/log/nginx/hotline-error.log crit;
    location /.well-known/acme-challenge/ {{
        root {acme_root};
    }}
    location / {{
        return 301 https://$host$request_uri;
    }}
}}

server {{
    listen {https_port} ssl http2;
    listen [::]:{https_port} ssl http2;
    server_name {domain};
    server_tokens off;
    access_log off;
    error_log /var/log/nginx/hotline-error.log crit;

    ssl_certificate {certificate};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets off;

{headers({}, "    ")}

{_nginx_worker_locations("hotline_public", headers(API_HEADERS, "        ") + chr(10)) if workers else ""}    # The staff's Matrix clients: client and media API only.
{matrix_locations}

    location = /.well-known/matrix/client {{
        default_type application/json;
{headers({"Access-Control-Allow-Origin": "*"}, "        ")}
        return 200 '{well_known_client(domain)}';
    }}

    # The admin API, federation, key server and metrics are never public.
{blocked}

    # The chat page and its WebSocket. The survivor's address goes on only in X-Real-IP, for
    # the gateway's own per-address limits (memory only).
    location / {{
        proxy_pass http://{page_target};
{GATEWAY_PROXYING}
        # The gateway cannot be reached: the static page below, as 503.
        error_page 502 503 504 =503 /{ERROR_PAGE};
        limit_conn hotline_conn {MAX_CONNECTIONS};
        limit_conn_status 429;
        limit_conn_log_level warn;
        limit_req zone=hotline_page burst={PAGE_BURST} nodelay;
        limit_req_status 429;
        limit_req_log_level warn;
{hide}
{headers(page_headers(), "        ")}
        # A new chat socket (each start, each reconnect) and the optional answers.
        location ~ /ws$ {{
            limit_req zone=hotline_socket burst={SOCKET_BURST} nodelay;
            proxy_pass http://{socket_target};
        }}
        location ~ /answers$ {{
            limit_req zone=hotline_answers burst={ANSWERS_BURST} nodelay;
            proxy_pass http://{answers_target};
        }}
    }}

    # The page for when the gateway is down (hotline number, hours, other help), with the chat
    # page's headers; only ever served by error_page.
    location = /{ERROR_PAGE} {{
        internal;
        root {error_root};
        default_type text/html;
        charset utf-8;
{headers(page_headers(), "        ")}
    }}
}}
"""
