"""``tvindex serve``: the web UI and the JSON API over the catalogue, served by waitress."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from tvindex.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the web UI and the JSON API (/api/v1)")
    p.add_argument("--host", help="address to bind (server.host; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (server.port; 0 picks a free one)")
    p.add_argument("--threads", type=int, help="worker threads (server.threads)")
    p.add_argument("--data-dir", type=Path, help="where the store lives (paths.data_dir)")
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


def run(args: argparse.Namespace, settings: Settings) -> int:
    from waitress import create_server

    from webui import create_app
    from webui.app import close_app

    server_cfg = settings.server
    app = create_app(settings)  # never in debug mode: tracebacks stay in the log
    server = create_server(
        app, host=server_cfg.host, port=server_cfg.port, threads=server_cfg.threads,
        # Image uploads (POST /api/v1/similar) may be larger; the app bounds every route.
        max_request_body_size=max(server_cfg.max_request_bytes, server_cfg.max_upload_bytes),
        max_request_header_size=64 * 1024, ident="tvindex", clear_untrusted_proxy_headers=True)
    host = server_cfg.host
    url_host = f"[{host}]" if ":" in host else host
    print(f"tvindex: serving http://{url_host}:{server.effective_port}/ "
          f"(API /api/v1, {server_cfg.threads} threads; Ctrl-C stops)", flush=True)
    if not _is_loopback(host):
        print(f"tvindex: warning: listening on {host}, not only loopback; the server speaks "
              "plain HTTP, put a TLS proxy in front", file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        server.close()
        close_app(app)
    return 0
