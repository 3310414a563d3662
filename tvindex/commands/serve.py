"""``tvindex serve``: the web UI and the JSON API over the catalogue, served by waitress."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from tvindex.commands._common import add_data_dir, command_parser, require_catalogue
from tvindex.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "serve", help="serve the web UI and the JSON API (/api/v1)",
        description="The web UI and the JSON API (/api/v1, described at /api/v1/openapi.json) "
                    "over the catalogue, served by waitress until Ctrl-C. Refuses a data "
                    "directory without a catalogue (index one first).",
        examples=["tvindex serve --data-dir var/demo",
                  "tvindex serve --port 0            # pick a free port (printed)",
                  "tvindex serve --host 0.0.0.0 --port 8080 --threads 8"])
    p.add_argument("--host", help="address to bind (server.host; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (server.port; 0 picks a free one)")
    p.add_argument("--threads", type=int, help="worker threads (server.threads)")
    add_data_dir(p)
    p.set_defaults(settings_overrides=lambda a: {
        "server.host": a.host, "server.port": a.port, "server.threads": a.threads,
        "paths.data_dir": a.data_dir})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _raise_open_file_limit(wanted: int) -> None:
    """Let the process hold ``wanted`` sockets (the soft limit is often 1024); as far as
    the hard limit allows, silently otherwise."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            top = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, top), hard))
    except (ImportError, OSError, ValueError):
        pass


def run(args: argparse.Namespace, settings: Settings) -> int:
    from tvindex.core.images import bound_allocator
    from webui import create_app
    from webui.app import close_app
    from webui.pictures import warm_embedder
    from webui.server import create_server

    require_catalogue(settings)
    server_cfg = settings.server
    # Large transient buffers (decoded uploads) go back to the system when freed.
    bound_allocator()
    _raise_open_file_limit(server_cfg.connection_limit + 64)
    app = create_app(settings)  # never in debug mode: tracebacks stay in the log
    warm_embedder(app)  # in the background: the first picture query need not wait for it
    server = create_server(app, server_cfg)  # waitress (webui/server.py)
    host = server_cfg.host
    url_host = f"[{host}]" if ":" in host else host
    print(f"tvindex: serving http://{url_host}:{server.effective_port}/ "
          f"(API /api/v1, {server_cfg.threads} threads; Ctrl-C stops)", flush=True)
    if not _is_loopback(host):
        print(f"tvindex: warning: listening on {host}, not only loopback; the server speaks "
              "plain HTTP, put a TLS proxy in front", file=sys.stderr, flush=True)
        if server_cfg.allowed_hosts is None:
            print("tvindex: note: only the Host names localhost, 127.0.0.1, [::1] and "
                  f"{host} are answered; list the names clients use in server.allowed_hosts",
                  file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        server.close()
        close_app(app)
    return 0
